"""The numbers of every figure, as FigureInfo (nothing drawn; render.py draws them).

    a = analyze_tables(tables := load_tables(root))
    infos = figure_infos(tables, a)                 # what the report embeds, for this design
    info = lambda_info(per_trial(tables), a.fits)   # one figure; render.draw(info) → Figure

Figures (accuracies in %):
  lambda     random-label / train / test accuracy vs λ (log x) with the fit and its 95% band, one row
             per design cell (paper figs 4, 5, 7)
  epochs     accuracies vs epoch for the least-regularized trials; memorization vs epoch for a few
             λ levels (2A, 2B); for a single run, its curves over epochs
  layers     final memorization per layer per λ (2C, 8A; class_acc, fig. 9) — only with > 1 tap
  memgen     test accuracy and train − test gap vs memorization across trials, with the fit
  factor_<x> memorization vs a swept factor at each λ level (A.3/A.4, A.6, A.8, 7A–C)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import N_KEY, NOISE_KEY
from .bootstrap import boot_mean_ci, rng_for
from .document import Analysis, FactorCurves
from .fit_factors import FACTOR_FITS, LOG_FACTORS, FactorCurve, few_levels, lam_text, least_regularized
from .fit_lambda import Curve, memorization_fit

LAM_LABEL = "λ (RLP regularization strength, log scale)"
PCT = 100.0
DYNAMICS_LEVELS = 5          # λ levels drawn in the dynamics panel


@dataclass
class Series:
    label: str
    x: list
    y: list
    kind: str = "line"              # line | points | errorbar | band (ylo..yhi filled) | step | bar
    ylo: list | None = None         # absolute lower / upper ends of error bars or band (same units as y)
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
    ncols: int = 0                      # panels per row (0 = all in one row)
    height: float = 0.0                 # inches per row of panels (0 = the default)

    def panel(self, title_part: str) -> Panel:
        for p in self.panels:
            if title_part in p.title:
                return p
        raise KeyError(title_part)


def pct(a) -> list:
    return [None if v is None or not np.isfinite(v) else float(v) * PCT for v in np.asarray(a, float)]


def level_means(x, y, max_levels: int = 30, n_boot: int = 200):
    """Per distinct x: mean and its 95% percentile-bootstrap CI (as every CI of the analysis; the
    mean itself where a level has one trial); None when x is not a grid (too many distinct values)
    or no level repeats."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = np.isfinite(x) & np.isfinite(y)
    x, y = x[m], y[m]
    xu = np.unique(x)
    if not len(xu) or len(xu) > max_levels or len(xu) == len(x):
        return None
    rng = rng_for("level_means", 0)
    mean, lo, hi = [], [], []
    for v in xu:
        s = y[x == v]
        c = boot_mean_ci(s, rng, n_boot) or [s.mean(), s.mean()]
        mean.append(s.mean()); lo.append(c[0]); hi.append(c[1])
    return xu, np.array(mean), np.array(lo), np.array(hi)


def _fit_series(curve: Curve, label: str, color) -> list[Series]:
    out = []
    if curve.lo is not None:
        out.append(Series("fit 95% CI band", curve.lam, pct(curve.lo), kind="band", ylo=pct(curve.lo),
                          yhi=pct(curve.hi), color=color, alpha=0.2))
    out.append(Series(label, curve.lam, pct(curve.y), kind="line", color=color))
    return out


# ---- λ figure (4, 5, 7) -----------------------------------------------------------------------
def _lambda_row(sub, fits: dict, tag: str) -> list[Panel]:
    mem = memorization_fit(fits) if fits else None
    normalized = "memorization_vs_lambda_normalized" in (fits or {})
    y_mem = (sub.rand_acc - sub.chance) / (1.0 - sub.chance) if normalized else sub.rand_acc
    specs = [("chance-normalized memorization" if normalized else "random-label accuracy", y_mem, mem, "logistic fit"),
             ("train accuracy", sub.train_acc, None, None),
             ("test accuracy", sub.test_acc, (fits or {}).get("generalization_vs_lambda"), "spline fit")]
    chance = sub.chance.dropna().unique()
    panels = []
    for title, y, fit, fit_label in specs:
        p = Panel(title=title.capitalize() + (f"\n{tag}" if tag else ""), xlabel=LAM_LABEL, ylabel=f"{title} (%)",
                  xscale="log")
        pos = (sub.lam > 0) & y.notna()
        if pos.any():
            lm = level_means(sub.lam[pos], y[pos])
            if lm is None:
                p.series.append(Series("trials", sub.lam[pos].tolist(), pct(y[pos]), kind="points", alpha=0.5))
            else:
                xu, mean, lo, hi = lm
                p.series.append(Series("mean ± 95% CI", xu.tolist(), pct(mean), kind="errorbar",
                                       ylo=pct(lo), yhi=pct(hi), style="o"))
        if fit is not None and fit.fitted:
            p.series.extend(_fit_series(fit.curve, fit_label, "tab:red"))
        base = (sub.lam == 0) & y.notna()
        if base.any():
            p.hlines.append(RefLine(float(y[base].mean()) * PCT, "λ = 0", style="--", color="black"))
        if title == "random-label accuracy" and len(chance) == 1:
            p.hlines.append(RefLine(float(chance[0]) * PCT, f"chance 1/n = {chance[0] * PCT:.3g}%"))
        panels.append(p)
    return panels


def lambda_info(d, fits: dict, cells=None) -> FigureInfo:
    """d: per_trial frame; fits: the pooled fits; cells: document.Cell list (one row each when > 1)."""
    rows = [("", d, fits)]
    if cells and (len(cells) > 1 or getattr(cells[0], "factors", None)):   # also one cell of several (a search)
        rows = [(c.key, d[d.trial_id.isin(set(c.trial_ids))], c.fits) for c in cells]
    panels = [p for tag, sub, f in rows for p in _lambda_row(sub, f, tag)]
    return FigureInfo("lambda", "Accuracies under RLP regularization vs λ" + (" per design cell" if len(rows) > 1
                                                                              else ""), panels, ncols=3)


# ---- epochs figure (2A, 2B) --------------------------------------------------------------------
def epochs_info(epochs, d, onset=None, memorization_col: str = "train.rand_acc") -> FigureInfo:
    """epochs: Tables.epochs (one row per trial and epoch); d: per_trial frame; onset: fit_onset.Onset."""
    # the same least-regularized trials as the onset fit (the median onset line is theirs)
    mask, rng_ = least_regularized(d.lam.to_numpy(float))
    base_ids = set(d.trial_id[mask] if rng_ and d.lam.nunique() > 1 else d.trial_id)
    e = epochs[epochs.trial_id.astype(str).isin(set(d.trial_id))]
    lab = {"train.acc": "train", "test.acc": "test", "val.acc": "val", "train.rand_acc": "random labels (online)",
           "train.rand_acc_eval": "random labels (eval mode)",
           "train.rand_acc_audit": "random labels (fresh-head audit)",
           "offline.rand_acc": "random labels (offline)"}
    if len(d) == 1:
        who = f"Trial {d.trial_id.iloc[0]}" + (f" (λ = {d.lam.iloc[0]:.3g})" if np.isfinite(d.lam.iloc[0]) else "")
    elif rng_ and d.lam.nunique() > 1:
        who = f"Least-regularized trials ({lam_text(rng_)}, mean of {len(base_ids)})"
    else:
        who = f"All trials (mean of {len(base_ids)})"
    pa = Panel(title=who, xlabel="epoch", ylabel="accuracy (%)")
    mean_b = e[e.trial_id.astype(str).isin(base_ids)].groupby("epoch").mean(numeric_only=True)
    for k, name in lab.items():
        if k in mean_b and mean_b[k].notna().any():
            s = mean_b[k].dropna()
            pa.series.append(Series(name, s.index.tolist(), pct(s.to_numpy()), kind="line"))
    ch = d.chance.dropna().unique()
    if len(ch) == 1:
        pa.hlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    ob = onset.baseline if onset is not None else None
    if ob is not None and ob.fitted:
        if ob.onset_median is not None:
            pa.vlines.append(RefLine(ob.onset_median, "memorization onset (median)", style="--", color="tab:red"))
        if ob.divergence_median is not None:
            pa.vlines.append(RefLine(ob.divergence_median, "train/test divergence (median)", style="--",
                                     color="tab:blue"))
    pb = Panel(title="Memorization per λ level", xlabel="epoch", ylabel="random-label accuracy (%)")
    if d.lam.nunique() > 1 and memorization_col in e and e[memorization_col].notna().any():
        lam = e.trial_id.astype(str).map(dict(zip(d.trial_id, d.lam))).astype(float).to_numpy()
        r = e.assign(lev=lam)
        r = r[np.isin(r.lev, few_levels(d.lam, DYNAMICS_LEVELS)) & r[memorization_col].notna()]
        for lv, sub in r.groupby("lev"):
            s = sub.groupby("epoch")[memorization_col].mean()
            pb.series.append(Series(f"λ = {lv:.3g}", s.index.tolist(), pct(s.to_numpy()), kind="line"))
        if len(ch) == 1:
            pb.hlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    return FigureInfo("epochs", "Training dynamics", [pa, pb] if pb.series else [pa])


# ---- layers figure (2C, 8A, 9) -----------------------------------------------------------------
def layers_info(fits: dict, chance: float | None = None) -> FigureInfo | None:
    """Per-layer profiles; None when no profile has more than one tap."""
    panels = []
    for key, title, ylabel in (("layer_profile", "Random-label accuracy per layer", "random-label accuracy (%)"),
                               ("class_acc_layer_profile_train", "Class-head train accuracy per layer",
                                "train accuracy (%)"),
                               ("class_acc_layer_profile_test", "Class-head test accuracy per layer",
                                "test accuracy (%)")):
        f = fits.get(key)
        if f is None or not f.fitted or len(f.layers) < 2:
            continue
        p = Panel(title=title, xlabel="layer (input → output)", ylabel=ylabel, xticks=list(range(len(f.layers))),
                  xticklabels=f.layers)
        for row in f.by_lambda:
            xs = [i for i, m in enumerate(row.mean) if m is not None]
            p.series.append(Series(f"λ = {row.lam:.3g}", xs, pct([row.mean[i] for i in xs]), kind="errorbar",
                                   ylo=pct([row.ci[i][0] if row.ci[i] else row.mean[i] for i in xs]),
                                   yhi=pct([row.ci[i][1] if row.ci[i] else row.mean[i] for i in xs]), style="-o"))
        if key == "layer_profile" and chance:
            p.hlines.append(RefLine(chance * PCT, "chance 1/n"))
        panels.append(p)
    return FigureInfo("layers", "Memorization across layers", panels) if panels else None


# ---- memorization vs generalization ------------------------------------------------------------
def memgen_info(d, fit, cells=None) -> FigureInfo | None:
    """Test accuracy and gap vs memorization across trials; cells (document.Cell list, > 1): one
    colour and one fit per cell, since trials of different cells differ in more than memorization."""
    m = d.rand_acc.notna() & d.test_acc.notna()
    if not m.any():
        return None
    groups = [("", d[m], fit)]
    if cells and (len(cells) > 1 or getattr(cells[0], "factors", None)):   # also one cell of several (a search)
        groups = [(c.key, d[m & d.trial_id.isin(set(c.trial_ids))], c.fits.get("memorization_vs_generalization"))
                  for c in cells]
    pa = Panel(title="Test accuracy vs memorization", xlabel="random-label accuracy (%)", ylabel="test accuracy (%)")
    pb = Panel(title="Generalization gap vs memorization", xlabel="random-label accuracy (%)",
               ylabel="train − test accuracy (%)")
    for k, (tag, sub, f) in enumerate(groups):
        color = f"C{k % 10}" if tag else None
        lab = f" ({tag})" if tag else ""
        pa.series.append(Series(f"trials{lab}", pct(sub.rand_acc), pct(sub.test_acc), kind="points", alpha=0.6,
                                color=color))
        if sub.gap.notna().any():
            pb.series.append(Series(f"trials{lab}", pct(sub.rand_acc), pct(sub.gap), kind="points", alpha=0.6,
                                    color=color))
        if f is not None and f.fitted:
            pa.series.append(Series(f"degree {f.degree} fit, ρ = {f.rho:.2f} ({f.verdict}){lab}", pct(f.curve_x),
                                    pct(f.curve_test), color=color or "tab:red"))
            if f.curve_gap:
                pb.series.append(Series(f"fit ({f.gap_verdict}){lab}", pct(f.curve_x), pct(f.curve_gap),
                                        color=color or "tab:red"))
    ch = d.chance.dropna().unique()
    if len(ch) == 1:
        pa.vlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
        pb.vlines.append(RefLine(float(ch[0]) * PCT, "chance 1/n"))
    title = "Memorization vs generalization across trials" + (" per design cell" if len(groups) > 1 else "")
    return FigureInfo("memgen", title, [pa, pb] if pb.series else [pa])


# ---- factor figures (A.3/A.4, A.6, A.8, 7A–C) ------------------------------------------------------
FACTOR_LABELS = {N_KEY: "number of random labels n", "model.widen": "widening factor w",
                 "model.width": "hidden width", "data.fraction": "dataset fraction",
                 NOISE_KEY: "label noise p", "rlp.hidden": "RLP-head hidden width d_h",
                 "rlp.heads": "number of RLP heads"}


def _factor_panel(factor: str, y_name: str) -> Panel:
    log = factor in LOG_FACTORS
    lab = FACTOR_LABELS.get(factor, factor)
    return Panel(title=f"{y_name} vs {lab}", xlabel=f"{lab} ({factor}{', log scale' if log else ''})",
                 ylabel=f"{y_name} (%)", xscale="log" if log else "linear")


def _factor_series(f: FactorCurve, label: str, color=None) -> Series:
    return Series(label, f.levels, pct(f.mean), kind="errorbar", style="-o", color=color,
                  ylo=pct([c[0] if c else m for c, m in zip(f.mean_ci, f.mean)]),
                  yhi=pct([c[1] if c else m for c, m in zip(f.mean_ci, f.mean)]))


def factor_curves_info(fc: FactorCurves) -> FigureInfo | None:
    """Memorization vs a factor, one series per λ level."""
    ok = [(lv, f) for lv, f in fc.by_lambda if f.fitted]
    if not ok:
        return None
    p = _factor_panel(fc.factor, "Memorization" if ok[0][1].y == "rand_acc" else "Chance-normalized memorization")
    for k, (lv, f) in enumerate(ok):
        p.series.append(_factor_series(f, "all trials" if lv is None else f"λ = {lv:.3g}", f"C{k % 10}"))
    return FigureInfo(f"factor_{FACTOR_FITS.get(fc.factor, fc.factor)}", f"Memorization vs {fc.factor} per λ level",
                      [p], note=f"y = {ok[0][1].y}")


def figure_infos(tables, a: Analysis) -> list[FigureInfo]:
    """Every figure the results and their design support, as FigureInfo (nothing drawn)."""
    d = a.trials
    dc = d[d.complete]
    infos: list[FigureInfo] = []
    single = len(d) <= 1 or dc.lam[dc.lam > 0].nunique() < 2
    # a search (tpe / random / qmc) draws the λ figures only for cells with enough λ to fit (Analysis.shown_cells);
    # without any, its learning curves (search_figures.py) stand in for the dynamics figure
    curves = a.search is None or bool(a.shown_cells)
    if not single and curves:
        infos.append(lambda_info(dc, a.fits, a.shown_cells))
    if tables.epochs is not None and len(tables.epochs) and curves:
        # complete trials where there are some: averaging trials that stop early changes the mix per epoch
        infos.append(epochs_info(tables.epochs, dc if len(dc) else d, a.fits.get("onset"),
                                 f"train.{a.memorization_metric}"))
    li = layers_info(a.fits, a.chance)
    if li:
        infos.append(li)
    if not single and curves:
        mg = memgen_info(dc, a.fits.get("memorization_vs_generalization"), a.shown_cells)
        if mg:
            infos.append(mg)
    for fc in a.factor_curves:
        fi = factor_curves_info(fc)
        if fi:
            infos.append(fi)
    return infos
