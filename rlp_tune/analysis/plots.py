"""Figures of a sweep's results (matplotlib, Agg backend; PNG + SVG), one pure info step per figure.

    from rlp_tune.analysis.curves import load_tables, analyze_tables
    from rlp_tune.analysis.plots import make_figures
    tables = load_tables(root); doc = analyze_tables(tables)
    paths = make_figures(tables, doc, "out/")          # {"lambda": Path("out/lambda.png"), ...}

Each figure is `_get_<name>_info(...) -> FigureInfo` (the numbers to draw: series, axis labels,
log scales, chance lines; accuracies already in %) and `plot_<name>(info, path_stem)`, which only
renders (so tests check the numbers without drawing). Figures:
  lambda     random-label / train / test accuracy vs λ, log x, with fits and chance (paper figs 4, 5, 7)
  epochs     accuracies vs epoch for the least-regularized trials; rand_acc vs epoch per λ (2A, 2B)
  layers     final rand_acc per layer for each λ (2C, 8A) and class_acc per layer when recorded (9)
  memgen     test accuracy and train − test gap vs rand_acc across trials, with the fit
  factor_<x> rand_acc vs a swept factor: rlp.n (A.3), width (A.9), data.fraction (A.7), noise (7C)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .curves import FACTOR_FITS, LOG_FACTORS, lambda_levels

LAM_LABEL = "λ (RLP regularization strength, log scale)"
PCT = 100.0


@dataclass
class Series:
    label: str
    x: list
    y: list
    kind: str = "line"              # line | points | errorbar
    ylo: list | None = None         # absolute lower / upper ends of error bars (same units as y)
    yhi: list | None = None
    style: str = "-"
    alpha: float = 1.0
    color: str | None = None


@dataclass
class RefLine:
    value: float
    label: str
    style: str = ":"
    color: str = "grey"


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"
    hlines: list[RefLine] = field(default_factory=list)
    vlines: list[RefLine] = field(default_factory=list)
    xticks: list | None = None          # categorical axes (layers): positions and labels
    xticklabels: list[str] | None = None


@dataclass
class FigureInfo:
    name: str
    title: str
    panels: list[Panel]
    note: str = ""

    def panel(self, title_part: str) -> Panel:
        for p in self.panels:
            if title_part in p.title:
                return p
        raise KeyError(title_part)


def _pct(a) -> list:
    return [None if v is None or not np.isfinite(v) else float(v) * PCT for v in np.asarray(a, float)]


def _level_means(x, y, max_levels: int = 30):
    """Per distinct x: mean, 95% normal-approx CI (±1.96 SE) and count; None when x is not a grid
    (too many distinct values) or no level repeats."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = np.isfinite(x) & np.isfinite(y)
    x, y = x[m], y[m]
    xu = np.unique(x)
    if not len(xu) or len(xu) > max_levels or len(xu) == len(x):
        return None
    mean, lo, hi = [], [], []
    for v in xu:
        s = y[x == v]
        se = s.std(ddof=1) / np.sqrt(len(s)) if len(s) > 1 else 0.0
        mean.append(s.mean()); lo.append(s.mean() - 1.96 * se); hi.append(s.mean() + 1.96 * se)
    return xu, np.array(mean), np.array(lo), np.array(hi)


# ---- λ figure (4, 5, 7) -----------------------------------------------------------------------
def _get_lambda_info(d, fits: dict, groups: dict | None = None, group_by: str | None = None) -> FigureInfo:
    """d: curves.per_trial frame; fits: doc["fits"]; groups/group_by: per-level fits (fig. 7)."""
    specs = [("random-label accuracy", "rand_acc", "memorization_vs_lambda"),
             ("train accuracy", "train_acc", None),
             ("test accuracy", "test_acc", "generalization_vs_lambda")]
    levels = [(None, d, fits)]
    if group_by and group_by in d.columns and groups:
        levels = []
        for v, sub in d.groupby(d[group_by].astype(str)):
            levels.append((f"{group_by}={v}", sub, groups.get(f"{group_by}={v}", {})))
    chance = d.chance.dropna().unique()
    panels = []
    for title, col, fit_name in specs:
        p = Panel(title=title.capitalize(), xlabel=LAM_LABEL, ylabel=f"{title} (%)", xscale="log")
        for k, (lab, sub, f) in enumerate(levels):
            tag = f" ({lab})" if lab else ""
            color = f"C{k % 10}" if lab else None     # one colour per group: its points, fit and λ = 0 line
            pos = sub[(sub.lam > 0) & sub[col].notna()]
            if pos.empty:
                continue
            lm = _level_means(pos.lam, pos[col])
            if lm is None:
                p.series.append(Series(f"trials{tag}", pos.lam.tolist(), _pct(pos[col]), kind="points", alpha=0.5,
                                       color=color))
            else:
                xu, mean, lo, hi = lm
                p.series.append(Series(f"mean ± 95% CI{tag}", xu.tolist(), _pct(mean), kind="errorbar",
                                       ylo=_pct(lo), yhi=_pct(hi), color=color, style="o"))
            fit = (f or {}).get(fit_name) if fit_name else None
            if fit and fit.get("fitted") and fit.get("curve"):
                name = "logistic fit" if col == "rand_acc" else "spline fit"
                p.series.append(Series(f"{name}{tag}", fit["curve"]["lam"], _pct(fit["curve"]["y"]), kind="line",
                                       color=color if lab else "tab:red"))
            base = sub[(sub.lam == 0) & sub[col].notna()]
            if len(base):
                p.hlines.append(RefLine(float(base[col].mean()) * PCT, f"λ = 0{tag}", style="--",
                                        color=color or "black"))
        if col == "rand_acc" and len(chance) == 1:
            p.hlines.append(RefLine(float(chance[0]) * PCT, f"chance 1/n = {chance[0] * PCT:.3g}%"))
        panels.append(p)
    return FigureInfo("lambda", "Accuracies under RLP regularization vs λ", panels)


def plot_lambda(info: FigureInfo, path_stem) -> list[Path]:
    return render(info, path_stem)


# ---- epochs figure (2A, 2B) --------------------------------------------------------------------
def _get_epochs_info(epochs, d, onset: dict | None = None) -> FigureInfo:
    """epochs: Tables.epochs (one row per trial and epoch); d: per_trial frame."""
    from .curves import _lam_text, _least_regularized
    # the same least-regularized trials as the onset fit (the median onset line is theirs)
    mask, rng_ = _least_regularized(d.lam.to_numpy(float))
    base_ids = set(d.trial_id[mask] if rng_ else d.trial_id)
    e = epochs[epochs.trial_id.astype(str).isin(set(d.trial_id))]
    lab = {"train.acc": "train", "test.acc": "test", "val.acc": "val", "train.rand_acc": "random labels (online)",
           "offline.rand_acc": "random labels (offline)"}
    who = f"Least-regularized trials ({_lam_text(rng_)}" if rng_ else "All trials (no rlp.lam"
    pa = Panel(title=f"{who}, mean of {len(base_ids)})", xlabel="epoch", ylabel="accuracy (%)")
    mean_b = e[e.trial_id.astype(str).isin(base_ids)].groupby("epoch").mean(numeric_only=True)
    for k, name in lab.items():
        if k in mean_b and mean_b[k].notna().any():
            s = mean_b[k].dropna()
            pa.series.append(Series(name, s.index.tolist(), _pct(s.to_numpy()), kind="line"))
    ch = d.chance.dropna().unique()
    if len(ch) == 1:
        pa.hlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    ob = (onset or {}).get("baseline") or {}
    if ob.get("fitted"):
        p = ob["params"]
        if p.get("onset_median") is not None:
            pa.vlines.append(RefLine(p["onset_median"], "memorization onset (median)", style="--", color="tab:red"))
        if p.get("divergence_median") is not None:
            pa.vlines.append(RefLine(p["divergence_median"], "train/test divergence (median)", style="--",
                                     color="tab:blue"))
    pb = Panel(title="Random-label accuracy per λ", xlabel="epoch", ylabel="random-label accuracy (%)")
    if "train.rand_acc" in e and e["train.rand_acc"].notna().any():
        lam = e.trial_id.astype(str).map(dict(zip(d.trial_id, d.lam))).astype(float).to_numpy()
        r = e.assign(lev=lambda_levels(lam))
        r = r[np.isfinite(r.lev) & r["train.rand_acc"].notna()]
        for lv, sub in r.groupby("lev"):
            s = sub.groupby("epoch")["train.rand_acc"].mean()
            pb.series.append(Series(f"λ = {lv:.3g}", s.index.tolist(), _pct(s.to_numpy()), kind="line"))
        if len(ch) == 1:
            pb.hlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    return FigureInfo("epochs", "Training dynamics", [pa, pb] if pb.series else [pa])


def plot_epochs(info: FigureInfo, path_stem) -> list[Path]:
    return render(info, path_stem)


# ---- layers figure (2C, 8A, 9) -----------------------------------------------------------------
def _get_layers_info(fits: dict, chance: float | None = None) -> FigureInfo | None:
    panels = []
    for key, title, ylabel in (("layer_profile", "Random-label accuracy per layer", "random-label accuracy (%)"),
                               ("class_acc_layer_profile_train", "Class-head train accuracy per layer",
                                "train accuracy (%)"),
                               ("class_acc_layer_profile_test", "Class-head test accuracy per layer",
                                "test accuracy (%)")):
        f = fits.get(key)
        if not f or not f.get("fitted"):
            continue
        layers = f["layers"]
        p = Panel(title=title, xlabel="layer (input → output)", ylabel=ylabel, xticks=list(range(len(layers))),
                  xticklabels=layers)
        for row in f["by_lambda"]:
            xs = [i for i, m in enumerate(row["mean"]) if m is not None]
            ci = row["ci"]
            p.series.append(Series(f"λ = {row['lam']:.3g}", xs, _pct([row["mean"][i] for i in xs]), kind="errorbar",
                                   ylo=_pct([ci[i][0] if ci[i] else row["mean"][i] for i in xs]),
                                   yhi=_pct([ci[i][1] if ci[i] else row["mean"][i] for i in xs]), style="-o"))
        if key == "layer_profile" and chance:
            p.hlines.append(RefLine(chance * PCT, "chance 1/n"))
        panels.append(p)
    return FigureInfo("layers", "Memorization across layers", panels) if panels else None


def plot_layers(info: FigureInfo, path_stem) -> list[Path]:
    return render(info, path_stem)


# ---- memorization vs generalization ------------------------------------------------------------
def _get_memgen_info(d, fit: dict) -> FigureInfo | None:
    m = d.rand_acc.notna() & d.test_acc.notna()
    if not m.any():
        return None
    x = d.rand_acc[m]
    pa = Panel(title="Test accuracy vs memorization", xlabel="random-label accuracy (%)", ylabel="test accuracy (%)")
    pb = Panel(title="Generalization gap vs memorization", xlabel="random-label accuracy (%)",
               ylabel="train − test accuracy (%)")
    pa.series.append(Series("trials", _pct(x), _pct(d.test_acc[m]), kind="points", alpha=0.6))
    if d.gap[m].notna().any():
        pb.series.append(Series("trials", _pct(x), _pct(d.gap[m]), kind="points", alpha=0.6))
    if fit and fit.get("fitted"):
        c = fit["curve"]
        rho = fit["params"]["spearman_rho"]
        pa.series.append(Series(f"{fit['model']}, ρ = {rho:.2f} ({fit['verdict']})", _pct(c["x"]),
                                _pct(c["test_acc"]), color="tab:red"))
        if c.get("gap"):
            pb.series.append(Series(f"fit ({fit['gap_verdict']})", _pct(c["x"]), _pct(c["gap"]), color="tab:red"))
    ch = d.chance.dropna().unique()
    if len(ch) == 1:
        pa.vlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
        pb.vlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    return FigureInfo("memgen", "Memorization vs generalization across trials", [pa, pb] if pb.series else [pa])


def plot_memgen(info: FigureInfo, path_stem) -> list[Path]:
    return render(info, path_stem)


# ---- factor figures (A.3, A.9, A.7, 7C) --------------------------------------------------------
FACTOR_LABELS = {"rlp.n": "number of random labels n", "model.widen": "widening factor w",
                 "model.width": "hidden width", "data.fraction": "dataset fraction",
                 "data.label_noise": "label noise p", "rlp.hidden": "RLP-head hidden width d_h",
                 "rlp.heads": "number of RLP heads"}


def _get_factor_info(fit: dict) -> FigureInfo | None:
    if not fit or not fit.get("fitted"):
        return None
    factor = fit["factor"]
    log = factor in LOG_FACTORS
    lab = FACTOR_LABELS.get(factor, factor)
    p = Panel(title=f"Random-label accuracy vs {lab}", xlabel=f"{lab} ({factor}{', log scale' if log else ''})",
              ylabel="random-label accuracy (%)", xscale="log" if log else "linear")
    ci = fit["rand_acc_ci"]
    mean = fit["rand_acc_mean"]
    p.series.append(Series("mean ± 95% CI", fit["levels"], _pct(mean), kind="errorbar",
                           ylo=_pct([c[0] if c else m for c, m in zip(ci, mean)]),
                           yhi=_pct([c[1] if c else m for c, m in zip(ci, mean)]), style="-o"))
    if fit.get("chance"):
        p.series.append(Series("chance 1/n", fit["levels"], _pct(fit["chance"]), style=":", color="grey"))
    for k, v in fit["params"].items():
        if k.endswith("_at_min") and not k.startswith("rand_acc_"):   # the level, not the value there
            p.vlines.append(RefLine(v, f"minimum at {v:.3g}", style="--", color="tab:red"))
    short = FACTOR_FITS.get(factor, factor)
    from .curves import _lam_text
    r = fit.get("restricted_to_lambda_range")
    note = f"least-regularized trials: {_lam_text(r)}" if r else ""
    return FigureInfo(f"factor_{short}", p.title, [p], note=note)


def plot_factor(info: FigureInfo, path_stem) -> list[Path]:
    return render(info, path_stem)


# ---- rendering ---------------------------------------------------------------------------------
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def render(info: FigureInfo, path_stem) -> list[Path]:
    """Draw `info` and write <path_stem>.png and <path_stem>.svg; returns both paths."""
    plt = _pyplot()
    n = len(info.panels)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    for ax, p in zip(axes[0], info.panels):
        for s in p.series:
            xs = np.asarray(s.x, float)
            ys = np.asarray([np.nan if v is None else v for v in s.y], float)
            if s.kind == "points":
                ax.scatter(xs, ys, s=12, alpha=s.alpha, label=s.label, color=s.color)
            elif s.kind == "errorbar":
                lo = np.asarray([np.nan if v is None else v for v in (s.ylo or s.y)], float)
                hi = np.asarray([np.nan if v is None else v for v in (s.yhi or s.y)], float)
                ax.errorbar(xs, ys, yerr=np.vstack([np.maximum(ys - lo, 0), np.maximum(hi - ys, 0)]),
                            fmt=s.style if s.style != "-" else "-o", ms=4, capsize=3, label=s.label, color=s.color)
            else:
                ax.plot(xs, ys, s.style, label=s.label, alpha=s.alpha, color=s.color, lw=2, zorder=3)
        for h in p.hlines:
            ax.axhline(h.value, ls=h.style, color=h.color, lw=1, label=h.label)
        for v in p.vlines:
            ax.axvline(v.value, ls=v.style, color=v.color, lw=1, label=v.label)
        ax.set_xscale(p.xscale)
        ax.set_yscale(p.yscale)
        if p.xticks is not None:
            ax.set_xticks(p.xticks)
            ax.set_xticklabels(p.xticklabels, rotation=45, ha="right", fontsize=8)
        ax.set_title(p.title, fontsize=10)
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        ax.grid(alpha=0.3)
        if p.series or p.hlines or p.vlines:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(info.title + (f"\n{info.note}" if info.note else ""), fontsize=11 if n > 1 else 9)
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(out[0], dpi=110)
    fig.savefig(out[1])
    plt.close(fig)
    return out


def figure_infos(tables, doc: dict) -> list[FigureInfo]:
    """Every figure that the results support, as FigureInfo (nothing drawn)."""
    from .curves import per_trial

    d = per_trial(tables)
    fits = doc.get("fits", {})
    infos: list[FigureInfo] = []
    if d.lam.notna().any() and (d.lam > 0).any():
        gb = next((c for c in ("data.fraction", "data.label_noise") if
                   any(k.startswith(c + "=") for k in doc.get("groups", {}))), None)
        infos.append(_get_lambda_info(d, fits, doc.get("groups"), gb))
    if tables.epochs is not None and len(tables.epochs):
        infos.append(_get_epochs_info(tables.epochs, d, fits.get("onset")))
    li = _get_layers_info(fits, doc.get("chance"))
    if li:
        infos.append(li)
    mg = _get_memgen_info(d, fits.get("memorization_vs_generalization"))
    if mg:
        infos.append(mg)
    for name, f in fits.items():
        if name.startswith("rand_acc_vs_"):
            fi = _get_factor_info(f)
            if fi:
                infos.append(fi)
    return infos


def make_figures(tables, doc: dict, out_dir) -> dict[str, Path]:
    """Render every supported figure into out_dir; {name: PNG path} (an SVG lies beside each)."""
    out = {}
    for info in figure_infos(tables, doc):
        out[info.name] = render(info, Path(out_dir) / info.name)[0]
    return out


def info_dict(info: FigureInfo) -> dict[str, Any]:
    """A FigureInfo as plain data (for JSON dumps / debugging)."""
    import dataclasses
    return dataclasses.asdict(info)
