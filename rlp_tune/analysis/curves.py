"""Fits of memorization and generalization against λ and the other swept factors, with bootstrap CIs.

    doc = analyze("runs/sweep1")             # one JSON-serializable dict
    print(format_analysis(doc))              # the same for humans (`rlp-tune analyze ROOT`)
    tables = load_tables("runs/sweep1")      # the frames the fits and plots use
    df = per_trial(tables)                   # one row per trial: lam, rand_acc, train/test/val acc, gap, ...

What is fitted (accuracies are fractions; "rand_acc" is the final-epoch random-label accuracy of
split "train" at the primary layer — "penultimate" when heads sit there, else the deepest tap
with heads — head -1 (mean over heads) or the mean of the heads; x = log10 λ):

- memorization_vs_lambda: 4-parameter logistic
      rand_acc(x) = low + (high - low) / (1 + exp(slope · (x - log10 λ50)))
  params lambda50, log10_lambda50, rand_acc_high (the small-λ asymptote), rand_acc_low (the
  large-λ asymptote), slope (per decade; > 0 = falls with λ), chance (1/rlp.n). λ = 0 trials are
  not in the log-x fit; they are the `baseline`.
- generalization_vs_lambda: test acc vs x, a penalized cubic spline (P-spline: B-splines on equal
  segments of the sampled x range, one per ~3 distinct λ, 4 to 20; second-difference penalty,
  smoothing chosen by generalized cross-validation over all trials). The optimum's value, and each
  bootstrap resample's, is capped to the values its trials reached, and a resample's optimum is
  sought only over the λ range of its own trials (no extrapolated optimum). Chosen over a quadratic because test accuracy is
  usually flat then falls steeply at large λ, which a parabola misplaces. params lambda_star (argmax over the sampled λ range), test_acc_star,
  test_acc_baseline (mean of the λ = 0 trials, else the spline at the smallest λ), test_acc_gain.
- gap_vs_lambda: the same spline for the train − test gap, minimized: gap_lambda_star, gap_star,
  gap_baseline, gap_change (gap_star − gap_baseline), gap_at_test_lambda_star.
- memorization_vs_generalization: test acc and gap against rand_acc over all trials: a linear or
  quadratic polynomial (chosen by AIC), Spearman ρ, and delta_test_acc = fit(rand_acc at the 10th
  percentile) − fit(at the 90th): the test accuracy of the least-memorizing trials minus that of the
  most-memorizing. verdict "helped" (CI of delta_test_acc > 0), "hurt" (< 0), else "inconclusive";
  gap_verdict "narrowed" / "widened" / "inconclusive" likewise for the gap.
- rand_acc_vs_<factor> for swept factors (rlp.n → n, A.3: the n of minimum rand_acc;
  model.widen or model.width → width (model.widen → widen when both are swept), A.9; data.fraction → fraction, 7A/B, A.7;
  data.label_noise → label_noise, 7C; rlp.hidden → hidden; rlp.heads → heads): level means with
  CIs and Spearman ρ, on the least-regularized trials when λ is swept too (those at the
  smallest λ if ≥ 3, else the lowest quarter of the λ values, as TPE draws λ continuously).
- layer_profile (2C / 8A): final rand_acc per layer for each λ level (and class_acc per layer,
  fig. 9, when recorded); per_layer[layer].memorization_vs_lambda: the logistic at each layer.
- onset (2A): per trial the first epoch rand_acc > chance + delta_rand and the first epoch
  train acc − test acc > delta_gap; medians and the median lag (onset − divergence) with a CI.
- groups: the λ fits repeated for each level of every other swept factor with few levels
  (e.g. data.fraction=0.1), as in fig. 7.

"Final" is each trial's last epoch; trials stopped early (ASHA) thus enter with shorter training,
which the document's `notes` say. analyze(root, at_epoch=E) (`--at-epoch E`) instead reads every
metric at epoch E and keeps only the trials that reached it.

Every CI is a percentile bootstrap (2.5 / 97.5) over trials resampled with replacement, with a
fixed seed per fit. A fit that cannot be made returns {"fitted": False, "reason": ...}.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DELTA_RAND = 0.05   # onset: rand_acc above chance by this much (accuracy fraction)
DELTA_GAP = 0.05    # divergence: train − test accuracy above this
FLAT_TOL = 0.005    # a curve that moves less than this (half a percentage point) is "flat"
SECTION_PREFIXES = ("data.", "model.", "rlp.", "optim.", "probe.", "run.")
# config keys that identify a trial or the machine, never a studied factor
IDENTITY_KEYS = {"run.seed", "data.seed", "run.name", "run.device", "run.threads", "data.root",
                 "data.workers", "run.keep_checkpoints", "run.eval_batch_size"}
FACTOR_FITS = {"rlp.n": "n", "model.widen": "widen", "model.width": "width", "data.fraction": "fraction",
               "data.label_noise": "label_noise", "rlp.hidden": "hidden", "rlp.heads": "heads"}
LOG_FACTORS = {"rlp.n", "model.widen", "model.width", "rlp.hidden", "rlp.heads"}


# ---- loading ---------------------------------------------------------------------------------
@dataclass
class Tables:
    """What the fits and plots read, loaded once from ROOT (pandas DataFrames).

    trials:  one row per trial (status, config columns "rlp.lam", ...)
    final:   the `final` view: trials ⟗ final "<split>.<metric>" at layer ''/'penultimate'
    layers:  trial_id, split, layer, metric, epoch, value — the last value per trial of every
             per-layer metric (layer != ''), heads collapsed
    epochs:  one row per (trial_id, epoch) with the columns EPOCH_COLUMNS ("train.acc", "val.acc",
             "test.acc" at layer ''; "train.rand_acc", "offline.rand_acc" at the primary layer,
             heads collapsed); NaN where not recorded
    primary_layer: the layer whose rand_acc the trial-level fits use (None: no rand_acc recorded)
    at_epoch: None = every trial's last epoch; E = rows up to epoch E only, and per_trial keeps the
             trials that reached E (compares trials at one training length, e.g. across ASHA rungs)
    """
    trials: Any
    final: Any
    layers: Any
    epochs: Any
    primary_layer: str | None
    root: str = ""
    at_epoch: int | None = None


def layer_order(names) -> list[str]:
    """Tap names in depth order: 'input', then names by their trailing number (block2 < block10),
    then 'encoder', then 'penultimate'."""
    def key(n: str):
        if n == "input":
            return (0, "", 0)
        if n == "penultimate":
            return (3, "", 0)
        if n == "encoder":
            return (2, "", 0)
        m = re.match(r"^(.*?)(\d+)$", n)
        return (1, m.group(1), int(m.group(2))) if m else (1, n, -1)
    return sorted(set(names), key=key)


EPOCH_COLUMNS = ("train.acc", "val.acc", "test.acc", "train.rand_acc", "offline.rand_acc")


def load_tables(root: str | Path, at_epoch: int | None = None) -> Tables:
    """Read ROOT's Parquet results once (DuckDB) into the frames of `Tables`: two scans of the metrics
    (last values; per-epoch curves) and one read of the trials. at_epoch: see `Tables`."""
    from .query import _fetch, _sql_str, connect, final_sql, headmean_expr

    if at_epoch is not None and (isinstance(at_epoch, bool) or not isinstance(at_epoch, int) or at_epoch < 0):
        raise ValueError(f"at_epoch must be an epoch number ≥ 0, got {at_epoch!r}")
    src = "metrics" if at_epoch is None else f"(SELECT * FROM metrics WHERE epoch <= {int(at_epoch)})"
    con = connect(root, final=False, live=False)
    try:
        # fetched results are registered back as relations (zero-copy Arrow): DuckDB temp tables of
        # wide rows are slow to build, and every relation below is small
        tr = _fetch(con, "SELECT * FROM trials", "arrow")                # many small files: read once
        con.register("tr", tr)
        # scan 1: the last value of every (trial, split, layer, metric, head), then heads collapsed
        # (the head -1 row where present, else the mean of the heads)
        last = _fetch(con, f"SELECT sweep, trial_id, split, layer, metric, max(epoch) AS epoch, {headmean_expr()} "
                           "AS value FROM (SELECT sweep, trial_id, split, layer, metric, head, max(epoch) AS epoch, "
                           f"arg_max(value, epoch) AS value FROM {src} GROUP BY ALL) "
                           "GROUP BY sweep, trial_id, split, layer, metric", "arrow")
        con.register("last", last)
        names = [tuple(r) for r in _fetch(con, "SELECT DISTINCT split, metric FROM last WHERE layer IN "
                                               "('', 'penultimate') ORDER BY ALL", "rows")]
        final = _fetch(con, f"SELECT * FROM ({final_sql(names, trials='tr', last='last')}) "
                            "ORDER BY sweep, trial_id", "df")
        trials = tr.to_pandas()
        # ordered: the bootstrap resamples rows by position, so the same results give the same CIs
        layers = _fetch(con, "SELECT trial_id, split, layer, metric, epoch, value FROM last WHERE layer <> '' "
                             "ORDER BY trial_id, split, layer, metric", "df")
        rand_layers = set(layers.loc[(layers.metric == "rand_acc") & (layers.split == "train"), "layer"])
        primary = None
        if rand_layers:
            primary = "penultimate" if "penultimate" in rand_layers else layer_order(rand_layers)[-1]
        # scan 2: per-epoch curves, one row per (trial, epoch) — accuracies at layer '' and rand_acc
        # at the primary layer (head -1, else the mean of the heads)
        cols = []
        for k in EPOCH_COLUMNS:
            split, metric = k.split(".")
            layer = _sql_str(primary or "") if metric == "rand_acc" else "''"
            cond = f"split = {_sql_str(split)} AND metric = {_sql_str(metric)} AND layer = {layer}"
            cols.append(f"{headmean_expr(cond)} AS \"{k}\"")
        # the IN filters are pushed into the Parquet scan; the OR picks the exact pairs
        where = (f"metric IN ('acc', 'rand_acc') AND layer IN ('', {_sql_str(primary or '')}) AND "
                 f"((layer = '' AND metric = 'acc') OR (metric = 'rand_acc' AND layer = {_sql_str(primary or '')}))")
        epochs = _fetch(con, f"SELECT trial_id, epoch, {', '.join(cols)} FROM {src} WHERE {where} "
                             f"GROUP BY trial_id, epoch ORDER BY trial_id, epoch", "df")
    finally:
        con.close()
    return Tables(trials=trials, final=final, layers=layers, epochs=epochs, primary_layer=primary,
                  root=str(root), at_epoch=at_epoch)


def _col(df, name):
    import pandas as pd
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


def varying_columns(trials) -> list[str]:
    """Config columns (dotted keys) with more than one distinct value, identity keys excluded."""
    out = []
    for c in trials.columns:
        if not c.startswith(SECTION_PREFIXES) or c in IDENTITY_KEYS:
            continue
        v = trials[c].dropna()
        try:
            n = v.nunique()
        except TypeError:          # unhashable cells (list-valued keys such as rlp.layers)
            n = v.astype(str).nunique()
        if n > 1:
            out.append(c)
    return out


def per_trial(t: Tables):
    """One row per trial: trial_id, sweep, status, lam, chance, rand_acc (primary layer), train_acc,
    test_acc, val_acc, gap (train − test), offline_rand_acc, final_epoch + the swept config columns."""
    import pandas as pd

    f = t.final
    out = pd.DataFrame({"trial_id": f["trial_id"].astype(str), "sweep": f.get("sweep")})
    out["status"] = f["status"] if "status" in f.columns else None
    out["lam"] = _col(f, "rlp.lam")
    out["chance"] = 1.0 / _col(f, "rlp.n")
    out["train_acc"] = _col(f, "train.acc")
    out["test_acc"] = _col(f, "test.acc")
    out["val_acc"] = _col(f, "val.acc")
    out["offline_rand_acc"] = _col(f, "offline.rand_acc")
    out["final_epoch"] = _col(f, "final_epoch")
    lay = t.layers
    if t.primary_layer is not None and len(lay):
        sel = lay[(lay.metric == "rand_acc") & (lay.split == "train") & (lay.layer == t.primary_layer)]
        out["rand_acc"] = out["trial_id"].map(dict(zip(sel.trial_id.astype(str), sel.value))).astype(float)
    else:
        out["rand_acc"] = np.nan
    out["gap"] = out["train_acc"] - out["test_acc"]
    for c in varying_columns(t.trials if len(t.trials) else f):
        if c in f.columns and c not in out.columns:
            out[c] = f[c].values
    if t.at_epoch is not None:   # rows were read up to at_epoch: keep the trials that got there
        out = out[out.final_epoch == t.at_epoch]
    return out.reset_index(drop=True)


# ---- small helpers ---------------------------------------------------------------------------
def not_fitted(reason: str, **extra) -> dict:
    return {"fitted": False, "reason": reason, **extra}


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _ci(samples, min_ok: int = 20) -> list[float] | None:
    """[2.5, 97.5] percentiles of the finite samples; None with fewer than min_ok of them."""
    a = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if len(a) < min_ok:
        return None
    lo, hi = np.percentile(a, [2.5, 97.5])
    return [float(lo), float(hi)]


def _boot_mean_ci(y, rng, n_boot: int) -> list[float] | None:
    y = np.asarray(y, float)
    y = y[np.isfinite(y)]
    if len(y) < 2:
        return None
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    return _ci(y[idx].mean(axis=1))


def _boot_counts(rng, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) float counts: how often each of n items is drawn in each resample of n with
    replacement (multinomial(n, 1/n) rows, from one bincount — much faster than rng.multinomial)."""
    idx = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


def _finite(*arrays):
    m = np.ones(len(arrays[0]), bool)
    for a in arrays:
        m &= np.isfinite(np.asarray(a, float))
    return [np.asarray(a, float)[m] for a in arrays]


def _baseline(y0, rng, n_boot) -> dict | None:
    y0 = np.asarray(y0, float)
    y0 = y0[np.isfinite(y0)]
    if not len(y0):
        return None
    return {"n": int(len(y0)), "mean": float(y0.mean()), "ci": _boot_mean_ci(y0, rng, n_boot)}


# ---- memorization vs λ: 4-parameter logistic -------------------------------------------------
def logistic4(x, high, low, x50, slope):
    """low + (high − low) / (1 + exp(slope · (x − x50))): `high` at x → −∞ when slope > 0."""
    z = np.clip(slope * (np.asarray(x, float) - x50), -500, 500)
    return low + (high - low) / (1.0 + np.exp(z))


@dataclass
class FitResult:
    """A least-squares optimum: parameters x and cost = ½ Σ residual² (scipy's convention)."""
    x: np.ndarray
    cost: float


def _fit4(x, y, p0s, bounds):
    """Best 4PL least-squares fit over the starts p0s, all run at once through the batched
    Levenberg–Marquardt below (unit weights, one row per start). Returns FitResult(x (4,), cost
    = ½ Σ r², as scipy's least_squares reports it), or None when every start failed."""
    P0 = np.clip(np.asarray(p0s, float), bounds[0] + 1e-9, bounds[1] - 1e-9)   # (S, 4)
    P, cost = _fit4_weighted(x, y, np.ones((len(P0), len(x))), P0, bounds, iters=200)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    if not np.isfinite(cost).any():
        return None
    i = int(np.argmin(cost))
    return FitResult(x=P[i].copy(), cost=0.5 * float(cost[i]))


def _fit4_weighted(x, y, W, P0, bounds, iters: int = 40):
    """Levenberg–Marquardt for many weightings at once: W (R, N) weights (bootstrap counts), one 4PL
    fit per row started at P0 ((4,) for all rows, or (R, 4)). Returns (params (R, 4), weighted
    cost (R,)), NaN parameter rows where it failed. A bootstrap resample is the data with
    multinomial counts as weights, so R fits are one batched solve per iteration instead of R scipy
    calls. JᵀWJ and JᵀWr are assembled from (R, N) row sums: with e = 1/(1+exp(s·(x−x50))),
    d = x − x50 and q = (high−low)·e(1−e), the Jacobian columns are e, 1−e, s·q, −q·d."""
    R = W.shape[0]
    lo, hi = bounds
    P = np.array(np.broadcast_to(np.asarray(P0, float), (R, 4)))     # (R, 4), a writable copy
    iu = np.triu_indices(4, 1)
    dg = np.arange(4)

    def dot(a, b):                                                    # row-wise Σ_n a·b → (r,)
        return np.einsum("rn,rn->r", a, b)

    def model(P):
        high, low, x50, s = (P[:, i:i + 1] for i in range(4))         # (r, 1) each
        d = x[None, :] - x50                                          # (r, N)
        e = 1.0 / (1.0 + np.exp(np.clip(s * d, -500, 500)))
        return low + (high - low) * e, e, d

    def normal_equations(W, P, f, e, d):
        s = P[:, 3]
        q = (P[:, 0] - P[:, 1])[:, None] * e * (1 - e)                # (r, N)
        We, Wq = W * e, W * q
        Wqd = Wq * d
        Wr = W * (f - y[None, :])
        see, se = dot(We, e), We.sum(1)
        sqe, sq = dot(Wq, e), Wq.sum(1)
        sqde, sqd = dot(Wqd, e), Wqd.sum(1)
        A = np.empty((len(P), 4, 4))
        A[:, 0, 0], A[:, 0, 1], A[:, 1, 1] = see, se - see, W.sum(1) - 2 * se + see
        A[:, 0, 2], A[:, 1, 2] = s * sqe, s * (sq - sqe)
        A[:, 0, 3], A[:, 1, 3] = -sqde, -(sqd - sqde)
        A[:, 2, 2], A[:, 2, 3], A[:, 3, 3] = s * s * dot(Wq, q), -s * dot(Wqd, q), dot(Wqd, q * d)
        A[:, iu[1], iu[0]] = A[:, iu[0], iu[1]]
        ge, gr = dot(Wr, e), Wr.sum(1)
        g = np.stack([ge, gr - ge, s * dot(Wr, q), -dot(Wr, q * d)], axis=1)   # (r, 4)
        return A, g

    f, e, d = model(P)
    cost = (W * (f - y) ** 2).sum(1)
    damp = np.full(R, 1e-3)
    act = np.arange(R)               # rows still moving: a converged row leaves the batch
    for _ in range(iters):
        Wa, Pa = W[act], P[act]
        A, g = normal_equations(Wa, Pa, f[act], e[act], d[act])
        A[:, dg, dg] += damp[act, None] * (A[:, dg, dg] + 1e-12)      # Marquardt's scaled damping
        try:
            step = np.linalg.solve(A, -g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        Pn = np.clip(Pa + step, lo, hi)
        fn, en, dn = model(Pn)
        cn = (Wa * (fn - y) ** 2).sum(1)
        ok = cn < cost[act]
        k = act[ok]
        P[k], f[k], e[k], d[k], cost[k] = Pn[ok], fn[ok], en[ok], dn[ok], cn[ok]
        damp[act] = np.where(ok, damp[act] * 0.3, damp[act] * 10.0)
        # converged: the proposed step is negligible (a rejected step shrinks as damping grows)
        act = act[~np.all(np.abs(step) < 1e-7 * (1.0 + np.abs(P[act])), axis=1)]
        if not len(act):
            break
    bad = ~np.all(np.isfinite(P), axis=1)
    P[bad], cost[bad] = np.nan, np.nan
    return P, cost


def fit_logistic(lam, y, *, n_boot: int = 200, seed: int = 0, name: str = "memorization_vs_lambda",
                 chance: float | None = None, y_name: str = "rand_acc") -> dict:
    """4-parameter logistic of y (e.g. final rand_acc) against log10 λ over trials with λ > 0;
    λ = 0 trials are reported as `baseline`. See the module docstring for the parameters."""
    lam, y = _finite(lam, y)
    rng = _rng(name, seed)
    base = _baseline(y[lam == 0], rng, n_boot)
    pos = lam > 0
    x, y = np.log10(lam[pos]), y[pos]
    extra = {"baseline": base, "chance": chance, "n_points": int(len(x))}
    nx = len(np.unique(np.round(x, 9)))
    if nx < 5:
        return not_fitted(f"too few points: {nx} distinct λ > 0 (need ≥ 5 for 4 parameters)", **extra)
    if np.ptp(y) < FLAT_TOL:
        return not_fitted(f"flat data: {y_name} varies by {np.ptp(y):.4f} across λ", **extra)
    lo_x, hi_x = float(x.min()), float(x.max())
    order = np.argsort(x)
    k = max(1, len(x) // 5)
    y_left, y_right = float(y[order[:k]].mean()), float(y[order[-k:]].mean())
    mid = 0.5 * (y_left + y_right)
    cross = x[order][np.argmin(np.abs(y[order] - mid))]
    yr = float(np.ptp(y))
    # slope ≥ 0 makes the parametrization unique: `high` is always the small-λ asymptote
    a_lo, a_hi = y.min() - yr, y.max() + yr
    if y.min() >= 0 and y.max() <= 1:   # accuracies: an asymptote outside [0, 1] is meaningless
        a_lo, a_hi = max(a_lo, 0.0), min(a_hi, 1.0)
    bounds = (np.array([a_lo, a_lo, lo_x - 1.0, 0.0]), np.array([a_hi, a_hi, hi_x + 1.0, 30.0]))
    p0s = [np.array([y_left, y_right, xc, sc]) for xc in (cross, 0.5 * (lo_x + hi_x)) for sc in (1.0, 3.0, 10.0)]
    r = _fit4(x, y, p0s, bounds)
    if r is None:                       # every start failed (a row with NaNs never wins: cost inf)
        return not_fitted("fit failed (least squares did not converge)", **extra)
    high, low, x50, slope = (float(v) for v in r.x)
    if abs(high - low) < FLAT_TOL:
        return not_fitted(f"flat fit: {y_name} asymptotes differ by {abs(high - low):.4f}", **extra)
    if not lo_x <= x50 <= hi_x:
        return not_fitted(f"the transition (log10 λ50 = {x50:.2f}) lies outside the sampled λ range "
                          f"[{10 ** lo_x:.3g}, {10 ** hi_x:.3g}]", **extra)
    # bootstrap: resample trials (multinomial counts as weights), refit from the full-data optimum
    W = _boot_counts(rng, len(x), n_boot)                                  # (R, N)
    B = _fit4_weighted(x, y, W, r.x, bounds)[0] if n_boot else np.zeros((0, 4))
    B = B[np.all(np.isfinite(B), axis=1)]
    ss_tot = float(((y - y.mean()) ** 2).sum())
    xs = np.linspace(lo_x, hi_x, 100)
    ci_x50 = _ci(B[:, 2]) if len(B) else None
    return {
        "fitted": True, "model": "4-parameter logistic in log10(λ)", "n_points": int(len(x)),
        "params": {"lambda50": 10 ** x50, "log10_lambda50": x50, "rand_acc_high": high,
                   "rand_acc_low": low, "slope": slope, "chance": chance},
        "ci": {"lambda50": [10 ** v for v in ci_x50] if ci_x50 else None, "log10_lambda50": ci_x50,
               "rand_acc_high": _ci(B[:, 0]) if len(B) else None,
               "rand_acc_low": _ci(B[:, 1]) if len(B) else None,
               "slope": _ci(B[:, 3]) if len(B) else None},
        "n_boot": n_boot, "n_boot_ok": int(len(B)),
        "r2": 1 - 2 * float(r.cost) / ss_tot if ss_tot > 0 else None,
        "direction": "decreasing" if high > low else "increasing",
        "baseline": base, "chance": chance,
        "curve": {"lam": (10 ** xs).tolist(), "y": logistic4(xs, high, low, x50, slope).tolist()},
    }


# ---- generalization vs λ: penalized cubic spline ----------------------------------------------
def bspline_design(x, t, k: int = 3) -> np.ndarray:
    """Dense B-spline design matrix (N, len(t) − k − 1) of degree k on knots t at points x in
    [t[k], t[-k-1]] (Cox–de Boor, the k + 1 non-zero basis values of each point at once; the
    right end belongs to the last interval). Same values as scipy's BSpline.design_matrix."""
    x = np.asarray(x, float)
    n = len(t) - k - 1                                                    # number of basis functions
    j = np.clip(np.searchsorted(t, x, side="right") - 1, k, n - 1)        # (N,) knot interval
    Nb = np.zeros((len(x), k + 1))
    Nb[:, 0] = 1.0
    left = np.zeros((len(x), k + 1))
    right = np.zeros((len(x), k + 1))
    for d in range(1, k + 1):
        left[:, d] = x - t[j + 1 - d]
        right[:, d] = t[j + d] - x
        saved = np.zeros(len(x))
        for r in range(d):
            tmp = Nb[:, r] / (right[:, r + 1] + left[:, d - r])
            Nb[:, r] = saved + right[:, r + 1] * tmp
            saved = left[:, d - r] * tmp
        Nb[:, d] = saved
    out = np.zeros((len(x), n))
    np.put_along_axis(out, (j - k)[:, None] + np.arange(k + 1), Nb, axis=1)
    return out


class PSpline:
    """Cubic P-spline on [a, b]: clamped B-spline basis on equally spaced knots and a second-difference
    penalty α·‖D c‖² (Eilers & Marx). One smoothing α serves any number of weightings, so the
    bootstrap is a batched (R, K, K) solve instead of R separate fits."""

    def __init__(self, a: float, b: float, n_seg: int):
        self.a, self.b = float(a), float(b)
        inner = np.linspace(a, b, n_seg + 1)
        self.t = np.r_[[a] * 3, inner, [b] * 3]
        self.K = n_seg + 3
        D = np.diff(np.eye(self.K), 2, axis=0)                           # (K-2, K)
        self.P = D.T @ D

    def basis(self, x) -> np.ndarray:
        x = np.clip(np.asarray(x, float), self.a, self.b)
        return bspline_design(x, self.t, 3)                               # (N, K)

    def solve(self, B, y, W, alpha) -> np.ndarray:
        """Coefficients (R, K) for weights W (R, N) (or (N,) → (K,))."""
        one = W.ndim == 1
        W2 = W[None] if one else W
        N, K = B.shape
        # BᵀWB for every row of W as one GEMM: W (R, N) @ [B_nk·B_nl] (N, K·K)
        A = (W2 @ (B[:, :, None] * B[:, None, :]).reshape(N, K * K)).reshape(-1, K, K)
        A += alpha * self.P[None] + 1e-10 * np.eye(K)[None]                # (R, K, K)
        rhs = W2 @ (B * y[:, None])                                       # (R, K)
        c = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
        return c[0] if one else c

    def gcv_alpha(self, B, y) -> float:
        """α minimizing generalized cross-validation N·RSS / (N − edf)² over a log grid (unit weights)."""
        BtB = B.T @ B
        scale = np.trace(BtB) / max(np.trace(self.P), 1e-12)
        best, best_a = np.inf, scale
        n = len(y)
        for a in scale * np.logspace(-8, 4, 49):
            M = np.linalg.solve(BtB + a * self.P + 1e-10 * np.eye(self.K), np.c_[B.T @ y, BtB])
            c, H = M[:, 0], M[:, 1:]
            edf = float(np.trace(H))
            rss = float(((B @ c - y) ** 2).sum())
            if n - edf <= 1e-6:
                continue
            g = n * rss / (n - edf) ** 2
            if g < best:
                best, best_a = g, a
        return float(best_a)


def fit_peak(lam, y, *, mode: str = "max", n_boot: int = 200, seed: int = 0, name: str = "generalization_vs_lambda",
             prefix: str = "test_acc", lam_key: str = "lambda_star") -> dict:
    """Penalized cubic spline of y against log10 λ (λ > 0) and its max (mode='max') or min ('min').

    params: <lam_key>, log10_<lam_key>, <prefix>_star, <prefix>_baseline and the change star −
    baseline (<prefix>_gain for mode 'max', <prefix>_change for 'min'); baseline_kind says whether
    the baseline is the λ = 0 trials' mean or the curve at the smallest λ. The smoothing is chosen by
    GCV on all trials and kept for the bootstrap resamples.
    """
    lam, y = _finite(lam, y)
    rng = _rng(name, seed)
    sign = 1.0 if mode == "max" else -1.0
    y0 = y[lam == 0]
    pos = lam > 0
    x, y = np.log10(lam[pos]), y[pos]
    nx = len(np.unique(np.round(x, 9)))
    extra = {"n_points": int(len(x)), "n_baseline": int(len(y0))}
    if nx < 5:
        return not_fitted(f"too few points: {nx} distinct λ > 0 (need ≥ 5 for the spline)", **extra)
    # about 3 distinct λ per segment: with few trials a knot per point lets GCV pick a curve that
    # threads every point (and bootstrap resamples overshoot); the penalty smooths the rest
    sp = PSpline(x.min(), x.max(), n_seg=int(min(20, max(4, nx // 3))))
    B = sp.basis(x)
    grid = np.linspace(x.min(), x.max(), 401)
    Bg = sp.basis(grid)
    try:
        alpha = sp.gcv_alpha(B, y)
        c = sp.solve(B, y, np.ones(len(x)), alpha)
    except np.linalg.LinAlgError as e:
        return not_fitted(f"fit failed: {e}", **extra)
    v = Bg @ c
    if not np.all(np.isfinite(v)):
        return not_fitted("fit failed (curve not finite)", **extra)
    if np.ptp(v) < FLAT_TOL / 5:
        return not_fitted(f"flat data: the fitted {prefix} varies by {np.ptp(v):.4f} across λ", **extra)
    i = int(np.argmax(sign * v))
    # the optimum's value is not reported beyond what a trial reached: between few points a spline
    # can overshoot (the same cap applies to each bootstrap resample, over its own trials)
    xs, ys = float(grid[i]), float(np.clip(v[i], y.min(), y.max()))
    kind = "lambda=0" if len(y0) else "smallest lambda"
    b = float(y0.mean()) if len(y0) else float(v[0])
    # bootstrap: multinomial counts as weights over the λ > 0 trials; λ = 0 trials resampled apart
    W = _boot_counts(rng, len(x), n_boot)                                  # (R, N)
    try:
        V = sp.solve(B, y, W, alpha) @ Bg.T                              # (R, G)
    except np.linalg.LinAlgError:
        V, W = np.zeros((0, len(grid))), W[:0]
    # a resample's curve counts only over the λ range its own trials span: beyond them the spline
    # merely extrapolates, and its extrapolation would set the CI (e.g. test accuracy above 100%)
    drawn = W > 0
    xlo = np.where(drawn, x[None, :], np.inf).min(1)                     # (R,)
    xhi = np.where(drawn, x[None, :], -np.inf).max(1)
    inside = (grid[None, :] >= xlo[:, None] - 1e-12) & (grid[None, :] <= xhi[:, None] + 1e-12)   # (R, G)
    j = np.argmax(np.where(inside, sign * V, -np.inf), axis=1)
    ylo = np.where(drawn, y[None, :], np.inf).min(1)
    yhi = np.where(drawn, y[None, :], -np.inf).max(1)
    bx, by = grid[j], np.clip(V[np.arange(len(V)), j], ylo, yhi)
    if len(y0):
        bb = y0[rng.integers(0, len(y0), size=(len(V), len(y0)))].mean(axis=1)
    else:                       # the curve at the resample's smallest λ
        bb = V[np.arange(len(V)), np.argmax(inside, axis=1)]
    change_key = f"{prefix}_gain" if mode == "max" else f"{prefix}_change"
    edge = 0.01 * (grid[-1] - grid[0])
    ci_x = _ci(bx)
    return {
        "fitted": True, "model": "penalized cubic spline (P-spline) in log10(λ), GCV smoothing", "mode": mode,
        "n_points": int(len(x)), "n_baseline": int(len(y0)),
        "params": {lam_key: float(10 ** xs), f"log10_{lam_key}": xs, f"{prefix}_star": ys,
                   f"{prefix}_baseline": b, change_key: ys - b},
        "ci": {lam_key: [10 ** q for q in ci_x] if ci_x else None, f"log10_{lam_key}": ci_x,
               f"{prefix}_star": _ci(by), change_key: _ci(by - bb)},
        "baseline_kind": kind, "at_boundary": bool(xs <= grid[0] + edge or xs >= grid[-1] - edge),
        "n_boot": n_boot, "n_boot_ok": int(len(V)),
        "curve": {"lam": (10 ** grid[::4]).tolist(), "y": v[::4].tolist()},
        "_eval": lambda q: float((sp.basis(np.atleast_1d(q)) @ c)[0]),
    }


# ---- memorization vs generalization across trials -------------------------------------------
def _poly_choose(x, y):
    """Linear or quadratic least squares, chosen by AIC (quadratic needs ≥ 8 points)."""
    best = None
    for deg in ((1, 2) if len(x) >= 8 else (1,)):
        c = np.polyfit(x, y, deg)
        rss = float(((np.polyval(c, x) - y) ** 2).sum())
        aic = len(x) * math.log(max(rss, 1e-300) / len(x)) + 2 * (deg + 1)
        if best is None or aic < best[2] - 2:  # the quadratic must earn its parameter clearly
            best = (deg, c, aic)
    return best[0], best[1]


def _rank_rows(X) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along axis 1 of X (R, N)."""
    X = np.asarray(X, float)
    R, N = X.shape
    order = np.argsort(X, axis=1, kind="stable")
    S = np.take_along_axis(X, order, 1)                                   # sorted rows
    pos = np.broadcast_to(np.arange(N), (R, N))
    new = np.ones((R, N), bool)
    new[:, 1:] = S[:, 1:] != S[:, :-1]                                    # a tie group starts here
    end = np.ones((R, N), bool)
    end[:, :-1] = new[:, 1:]                                              # a tie group ends here
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(end, pos, N - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((R, N))
    np.put_along_axis(ranks, order, 0.5 * (first + last) + 1.0, axis=1)
    return ranks


def _spearman_rows(X, Y) -> np.ndarray:
    """Spearman ρ of each row pair of X, Y (R, N) (average ranks for ties); NaN for a constant row."""
    rx, ry = _rank_rows(X), _rank_rows(Y)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def _spearman(x, y) -> float:
    return float(_spearman_rows(np.asarray(x, float)[None], np.asarray(y, float)[None])[0])


def _polyfit_rows(X, Y, deg: int) -> np.ndarray:
    """Least-squares polynomial per row (R, N) → coefficients (R, deg+1), highest power first."""
    V = X[:, :, None] ** np.arange(deg, -1, -1)                          # (R, N, d)
    Vt = np.swapaxes(V, 1, 2)
    return np.linalg.solve(Vt @ V + 1e-12 * np.eye(deg + 1), (Vt @ Y[:, :, None]))[:, :, 0]


def _polyval_rows(C, x: float) -> np.ndarray:
    return (C * x ** np.arange(C.shape[1] - 1, -1, -1)).sum(1)


def fit_mem_gen(rand, test, gap, *, n_boot: int = 500, seed: int = 0, name: str = "memorization_vs_generalization") -> dict:
    """Test accuracy and train − test gap against final rand_acc across trials (see module doc)."""
    rand, test, gap = (np.asarray(a, float) for a in (rand, test, gap))
    m = np.isfinite(rand) & np.isfinite(test)
    x, y = rand[m], test[m]
    g = gap[m]
    has_gap = bool(np.isfinite(g).all())
    if len(x) < 5:
        return not_fitted(f"too few points: {len(x)} trials with both rand_acc and test acc (need ≥ 5)",
                          n_points=int(len(x)))
    if np.ptp(x) < FLAT_TOL:
        return not_fitted(f"flat data: rand_acc varies by {np.ptp(x):.4f} across trials", n_points=int(len(x)))
    deg, c = _poly_choose(x, y)
    lo_q, hi_q = (float(q) for q in np.percentile(x, [10, 90]))
    rho = _spearman(x, y) if np.ptp(y) > 0 else float("nan")
    delta = float(np.polyval(c, lo_q) - np.polyval(c, hi_q))
    gdeg, gc, grho, gdelta = None, None, float("nan"), float("nan")
    if has_gap:
        gdeg, gc = _poly_choose(x, g)
        grho = _spearman(x, g) if np.ptp(g) > 0 else float("nan")
        gdelta = float(np.polyval(gc, lo_q) - np.polyval(gc, hi_q))
    rng = _rng(name, seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))                  # (R, N) resampled trials
    xb, yb = x[idx], y[idx]
    ok = np.ptp(xb, axis=1) > 0
    xb, yb = xb[ok], yb[ok]
    B = np.full((len(xb), 4), np.nan)
    if len(xb):
        B[:, 0] = _spearman_rows(xb, yb)
        cb = _polyfit_rows(xb, yb, deg)
        B[:, 1] = _polyval_rows(cb, lo_q) - _polyval_rows(cb, hi_q)
        if has_gap:
            gb = g[idx][ok]
            cg = _polyfit_rows(xb, gb, gdeg)
            B[:, 2] = _spearman_rows(xb, gb)
            B[:, 3] = _polyval_rows(cg, lo_q) - _polyval_rows(cg, hi_q)
    ci = {"spearman_rho": _ci(B[:, 0]), "delta_test_acc": _ci(B[:, 1]),
          "gap_spearman_rho": _ci(B[:, 2]) if has_gap else None, "delta_gap": _ci(B[:, 3]) if has_gap else None}

    def verdict(ci_, pos, neg):
        if ci_ is None:
            return "inconclusive"
        return pos if ci_[0] > 0 else neg if ci_[1] < 0 else "inconclusive"

    xs = np.linspace(x.min(), x.max(), 50)
    return {
        "fitted": True, "model": f"polynomial of degree {deg} (AIC)", "n_points": int(len(x)),
        "params": {"spearman_rho": rho, "delta_test_acc": delta, "coef": [float(v) for v in c],
                   "rand_acc_low_q10": lo_q, "rand_acc_high_q90": hi_q,
                   "gap_spearman_rho": grho, "delta_gap": gdelta,
                   "gap_coef": [float(v) for v in gc] if gc is not None else None},
        "ci": ci, "n_boot": n_boot, "n_boot_ok": int(len(B)),
        "verdict": verdict(ci["delta_test_acc"], "helped", "hurt"),
        "gap_verdict": verdict(ci["delta_gap"], "widened", "narrowed") if has_gap else "inconclusive",
        "verdict_rule": "delta = fit(rand_acc q10) − fit(rand_acc q90): test acc of the least- minus the "
                        "most-memorizing trials; 'helped' if its 95% CI > 0, 'hurt' if < 0",
        "curve": {"x": xs.tolist(), "test_acc": np.polyval(c, xs).tolist(),
                  "gap": np.polyval(gc, xs).tolist() if gc is not None else None},
    }


# ---- factor curves (n, width, fraction, noise, ...) ------------------------------------------
def _quantile_bins(t, k: int) -> np.ndarray:
    """Bin 0..k-1 of each value of t among t's k quantile bins (ties stay in one bin)."""
    edges = np.quantile(t, np.linspace(0, 1, k + 1))
    return np.clip(np.searchsorted(edges, t, side="right") - 1, 0, k - 1)


def _levels(x, max_levels: int = 20, log: bool = False):
    """Level of each point: distinct values, or quantile bins (median as the level) beyond max_levels."""
    xu = np.unique(x)
    if len(xu) <= max_levels:
        return x.copy()
    b = _quantile_bins(np.log10(np.maximum(x, 1e-300)) if log else x, 10)
    lev = np.empty_like(x)
    for k in np.unique(b):
        lev[b == k] = np.median(x[b == k])
    return lev


def factor_curve(x, y, *, factor: str, n_boot: int = 200, seed: int = 0, chance=None,
                 find: str | None = None, log: bool = False) -> dict:
    """Mean y per level of a swept factor with bootstrap CIs, Spearman ρ (CI), and the level of the
    minimum (find='min') or maximum ('max') with the bootstrap distribution of that level."""
    x, y = _finite(x, y)
    rng = _rng(f"factor:{factor}", seed)
    if len(x) < 3:
        return not_fitted(f"too few points: {len(x)} trials with {factor} and rand_acc", factor=factor)
    lev = _levels(x, log=log)
    levels = np.unique(lev)
    if len(levels) < 3:
        return not_fitted(f"too few levels: {factor} takes {len(levels)} value(s) (need ≥ 3)", factor=factor)
    means = np.array([y[lev == v].mean() for v in levels])
    counts = [int((lev == v).sum()) for v in levels]
    cis = [_boot_mean_ci(y[lev == v], rng, n_boot) for v in levels]
    rho = _spearman(lev, y) if np.ptp(y) > 0 else float("nan")
    idx_all = rng.integers(0, len(x), size=(n_boot, len(x)))
    boots_rho = _spearman_rows(lev[idx_all], y[idx_all]) if n_boot else []
    boots_arg = []
    if find:
        # level means per resample: (R, L) from per-level sums; a level absent from a resample is skipped
        onehot = (lev[idx_all][:, :, None] == levels[None, None, :])          # (R, N, L)
        cnt = onehot.sum(1)
        sums = (onehot * y[idx_all][:, :, None]).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.inf if find == "min" else -np.inf)
        boots_arg = levels[np.argmin(mb, 1) if find == "min" else np.argmax(mb, 1)].tolist()
    out = {"fitted": True, "factor": factor, "levels": levels.tolist(), "rand_acc_mean": means.tolist(),
           "rand_acc_ci": cis, "count": counts, "n_points": int(len(x)),
           "params": {"spearman_rho": rho}, "ci": {"spearman_rho": _ci(boots_rho)}, "n_boot": n_boot}
    if chance is not None:
        out["chance"] = [float(c) for c in chance(levels)]
    if find:
        i = int(np.argmin(means) if find == "min" else np.argmax(means))
        key = f"{FACTOR_FITS.get(factor, factor)}_at_{find}"
        out["params"][key] = float(levels[i])
        out["params"][f"rand_acc_at_{find}"] = float(means[i])
        out["ci"][key] = _ci(boots_arg)
        out["interior"] = bool(0 < i < len(levels) - 1)
    return out


# ---- per-layer profiles ----------------------------------------------------------------------
def _least_regularized(lam) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(mask, (λ lo, λ hi)) of the least-regularized trials: those at the smallest λ when there are
    ≥ 3 of them (a grid with seeds), else the lowest of 4 λ quantile levels (λ drawn continuously,
    e.g. by TPE, puts one trial at each value)."""
    ok = np.isfinite(lam)
    if not ok.any():
        return np.zeros(len(lam), bool), None
    m = lam == lam[ok].min()
    if m.sum() < 3:
        lev = lambda_levels(lam[ok], max_levels=4)
        m = np.zeros(len(lam), bool)
        m[np.flatnonzero(ok)[lev == lev.min()]] = True
    return m, (float(lam[m].min()), float(lam[m].max()))


def _lam_text(r) -> str:
    return f"λ = {r[0]:.3g}" if r[0] == r[1] else f"λ in [{r[0]:.3g}, {r[1]:.3g}]"


def lambda_levels(lam, max_levels: int = 8) -> np.ndarray:
    """λ grouped for per-λ summaries: distinct values, or (beyond max_levels) quantile bins of
    log10 λ labelled by their geometric mean; λ = 0 stays its own level."""
    lam = np.asarray(lam, float)
    out = lam.copy()
    pos = lam > 0
    if len(np.unique(lam[pos])) > max_levels:
        x = np.log10(lam[pos])
        b = _quantile_bins(x, max_levels - (1 if np.any(lam == 0) else 0))
        lab = np.empty_like(x)
        for j in np.unique(b):
            lab[b == j] = float(f"{10 ** x[b == j].mean():.3g}")
        out[pos] = lab
    return out


def layer_profile(layers, lam_by_trial: dict, *, metric: str = "rand_acc", split: str = "train",
                  n_boot: int = 200, seed: int = 0) -> dict:
    """Final `metric` per layer (depth order) for each λ level: means, CIs, counts, argmax layer."""
    sel = layers[(layers.metric == metric) & (layers.split == split)]
    if sel.empty:
        return not_fitted(f"no per-layer {split} {metric} recorded")
    names = layer_order(sel.layer.unique())
    lam = sel.trial_id.astype(str).map(lam_by_trial).astype(float).to_numpy()
    ok = np.isfinite(lam)
    sel, lam = sel[ok], lam[ok]
    if sel.empty:
        return not_fitted("no trial with per-layer values has rlp.lam")
    lev = lambda_levels(lam)
    rng = _rng(f"layers:{split}.{metric}", seed)
    rows = []
    for lv in np.unique(lev):
        s = sel[lev == lv]
        means, cis, counts = [], [], []
        for ln in names:
            v = s.value[s.layer == ln].to_numpy(float)
            v = v[np.isfinite(v)]
            means.append(float(v.mean()) if len(v) else None)
            cis.append(_boot_mean_ci(v, rng, n_boot))
            counts.append(int(len(v)))
        finite = [(m, ln) for m, ln in zip(means, names) if m is not None]
        rows.append({"lam": float(lv), "mean": means, "ci": cis, "count": counts,
                     "argmax_layer": max(finite)[1] if finite else None})
    return {"fitted": True, "metric": f"{split}.{metric}", "layers": names, "by_lambda": rows}


# ---- onset of memorization vs train/test divergence (2A) -------------------------------------
def onset_epochs(epochs, chance_by_trial: dict, *, delta_rand: float = DELTA_RAND,
                 delta_gap: float = DELTA_GAP):
    """Per trial: onset (first epoch train rand_acc > chance + delta_rand) and divergence (first epoch
    train acc − test acc > delta_gap; val acc when test is absent). NaN when never reached.
    `epochs` is Tables.epochs (one row per trial and epoch)."""
    import pandas as pd

    if epochs is None or epochs.empty:
        return pd.DataFrame(columns=["trial_id", "onset", "divergence"])
    w = epochs.sort_values(["trial_id", "epoch"])
    ids = w.trial_id.astype(str)
    out = pd.DataFrame({"trial_id": ids.unique()})
    rand = w["train.rand_acc"] if "train.rand_acc" in w else None
    if rand is not None and rand.notna().any():
        ch = ids.map(chance_by_trial).astype(float)
        # unknown chance (no rlp.n): the trial's own first-epoch rand_acc stands in
        ch = ch.fillna(rand.groupby(ids).transform("first"))
        hit = w.epoch[(rand > ch + delta_rand).to_numpy()]
        out["onset"] = out.trial_id.map(hit.groupby(ids[hit.index]).min())
    else:
        out["onset"] = np.nan
    held = next((c for c in ("test.acc", "val.acc") if c in w and w[c].notna().any()), None)
    if "train.acc" in w and held:
        hit = w.epoch[((w["train.acc"] - w[held]) > delta_gap).to_numpy()]
        out["divergence"] = out.trial_id.map(hit.groupby(ids[hit.index]).min())
    else:
        out["divergence"] = np.nan
    return out


def onset_summary(on, trial_ids, *, n_boot: int = 200, seed: int = 0, label: str = "all") -> dict:
    o = on[on.trial_id.isin(set(map(str, trial_ids)))]
    if o.empty:
        return not_fitted("no per-epoch curves for these trials")
    rng = _rng(f"onset:{label}", seed)
    both = o.dropna(subset=["onset", "divergence"])
    lag = (both.onset - both.divergence).to_numpy(float)
    out = {"fitted": True, "n_trials": int(len(o)), "n_onset": int(o.onset.notna().sum()),
           "n_divergence": int(o.divergence.notna().sum()), "n_both": int(len(both)),
           "params": {"onset_median": float(o.onset.median()) if o.onset.notna().any() else None,
                      "divergence_median": float(o.divergence.median()) if o.divergence.notna().any() else None,
                      "lag_median": float(np.median(lag)) if len(lag) else None,
                      "frac_onset_before_divergence": float((lag < 0).mean()) if len(lag) else None,
                      "frac_onset_same_epoch": float((lag == 0).mean()) if len(lag) else None},
           "ci": {}}
    if len(lag) >= 2:
        idx = rng.integers(0, len(lag), size=(n_boot, len(lag)))
        out["ci"]["lag_median"] = _ci(np.median(lag[idx], axis=1))
    return out


# ---- the whole analysis ----------------------------------------------------------------------
def _lam_fits(d, n_boot, seed, tag="") -> dict:
    chance = d.chance.dropna().unique()
    ch = float(chance[0]) if len(chance) == 1 else None
    fits = {"memorization_vs_lambda": fit_logistic(d.lam, d.rand_acc, n_boot=n_boot, seed=seed, chance=ch,
                                                   name=f"mem{tag}"),
            "generalization_vs_lambda": fit_peak(d.lam, d.test_acc, n_boot=n_boot, seed=seed, name=f"gen{tag}"),
            "gap_vs_lambda": fit_peak(d.lam, d.gap, mode="min", n_boot=n_boot, seed=seed, name=f"gap{tag}",
                                      prefix="gap", lam_key="gap_lambda_star")}
    if len(chance) > 1:
        # rlp.n varies: raw rand_acc mixes chance levels (1/8 vs 1/256 is not the same memorization);
        # fit it also as the fraction of the way from chance to perfect recall
        lo, hi = float(chance.min()), float(chance.max())
        fits["memorization_vs_lambda"]["note"] = (
            f"chance varies across trials ({_pct(lo)} to {_pct(hi)}, rlp.n swept): raw rand_acc mixes chance "
            "levels; memorization_vs_lambda_normalized fits (rand_acc − chance) / (1 − chance)")
        norm = (d.rand_acc - d.chance) / (1.0 - d.chance)
        fits["memorization_vs_lambda_normalized"] = fit_logistic(
            d.lam, norm, n_boot=n_boot, seed=seed, chance=0.0, name=f"memnorm{tag}",
            y_name="normalized rand_acc")
        fits["memorization_vs_lambda_normalized"]["y"] = "(rand_acc − 1/n) / (1 − 1/n)"
    g, gen = fits["gap_vs_lambda"], fits["generalization_vs_lambda"]
    if g.get("fitted") and gen.get("fitted"):
        at = g["_eval"](gen["params"]["log10_lambda_star"])
        g["params"]["gap_at_test_lambda_star"] = at
        g["params"]["gap_change_at_test_lambda_star"] = at - g["params"]["gap_baseline"]
    return fits


def _grid_factors(d, varying) -> list[str]:
    out = []
    for c in varying:
        if c == "rlp.lam" or c not in d.columns:
            continue
        counts = d[c].astype(str).value_counts()
        if 2 <= len(counts) <= 8 and counts.min() >= 3:
            out.append(c)
    return out


def _epoch_notes(t: Tables, d) -> list[str]:
    """What a reader must know about the training lengths behind the fits."""
    if t.at_epoch is not None:
        n_all = int(t.final["trial_id"].nunique()) if len(t.final) else 0
        return [f"metrics at epoch {t.at_epoch}: the {len(d)} trials that reached it "
                f"({n_all - len(d)} of {n_all} ended earlier and are left out)"]
    fe = d.final_epoch.dropna().astype(int)
    if fe.nunique() <= 1:
        return []
    top = int(fe.max())
    reached = ", ".join(f"{e}: {int((fe >= e).sum())}" for e in sorted(fe.unique()))
    return [f"trials end at different epochs ({int((fe < top).sum())} of {len(fe)} stopped before epoch {top}, "
            f"e.g. by ASHA): the fits use each trial's last epoch, which mixes training lengths. Trials "
            f"reaching each epoch: {reached}. `--at-epoch E` compares the trials that reached E at E."]


def analyze_tables(t: Tables, *, n_boot: int = 200, seed: int = 0, delta_rand: float = DELTA_RAND,
                   delta_gap: float = DELTA_GAP) -> dict:
    """The analysis document from loaded tables (see `analyze`)."""
    d = per_trial(t)
    trials = t.trials if len(t.trials) else t.final
    varying = varying_columns(trials)
    doc: dict[str, Any] = {
        "schema": "rlp_tune.analysis/1", "root": t.root,
        "sweeps": sorted(map(str, d.sweep.dropna().unique())) if "sweep" in d else [],
        "n_trials": int(len(d)), "n_trials_with_metrics": int(d.final_epoch.notna().sum()),
        "status": {str(k): int(v) for k, v in d.status.value_counts().items()} if d.status.notna().any() else {},
        "primary_layer": t.primary_layer, "varying": {}, "fits": {}, "groups": {}, "per_layer": {},
        "settings": {"n_boot": n_boot, "seed": seed, "delta_rand": delta_rand, "delta_gap": delta_gap,
                     "ci": "percentile bootstrap 2.5/97.5 over trials"},
    }
    for c in varying:
        vals = trials[c].dropna()
        num = np.asarray(vals.to_numpy(), dtype=object)
        info = {"n_values": int(vals.astype(str).nunique())}
        try:
            f = vals.astype(float)
            info.update(min=float(f.min()), max=float(f.max()))
        except (TypeError, ValueError):
            pass
        if info["n_values"] <= 12:
            info["values"] = sorted({str(v) for v in num})
        doc["varying"][c] = info
    if d.final_epoch.notna().any():
        doc["final_epoch"] = {"min": int(d.final_epoch.min()), "max": int(d.final_epoch.max())}
    doc["notes"] = _epoch_notes(t, d)
    chance = d.chance.dropna().unique()
    doc["chance"] = float(chance[0]) if len(chance) == 1 else None

    fits = doc["fits"]
    fits.update(_lam_fits(d, n_boot, seed))
    fits["memorization_vs_generalization"] = fit_mem_gen(d.rand_acc, d.test_acc, d.gap, n_boot=n_boot, seed=seed)

    # the least-regularized trials when λ is swept: factor curves and 2A use them
    base_mask, lam_range = _least_regularized(d.lam.to_numpy(float)) if "rlp.lam" in varying else \
        (np.ones(len(d), bool), None)
    for c, short in FACTOR_FITS.items():
        if c == "model.widen" and "model.width" not in varying:
            short = "width"          # the model's width factor, whichever key the model uses
        if c in varying and c in d.columns:
            b = d[base_mask]
            f = fits[f"rand_acc_vs_{short}"] = factor_curve(
                b[c].astype(float), b.rand_acc, factor=c, n_boot=n_boot, seed=seed,
                find="min" if c == "rlp.n" else None, log=c in LOG_FACTORS,
                chance=(lambda lv: 1.0 / np.asarray(lv, float)) if c == "rlp.n" else None)
            if lam_range is not None:
                f["restricted_to_lambda_range"] = list(lam_range)
                if f.get("fitted") is False:
                    f["reason"] += (f" (while λ is swept only the least-regularized trials count: "
                                    f"{int(base_mask.sum())} at {_lam_text(lam_range)})")

    lam_map = dict(zip(d.trial_id, d.lam))
    fits["layer_profile"] = layer_profile(t.layers, lam_map, n_boot=n_boot, seed=seed)
    for split in ("train", "test"):
        if len(t.layers) and ((t.layers.metric == "class_acc") & (t.layers.split == split)).any():
            fits[f"class_acc_layer_profile_{split}"] = layer_profile(t.layers, lam_map, metric="class_acc",
                                                                    split=split, n_boot=n_boot, seed=seed)
    on = onset_epochs(t.epochs, dict(zip(d.trial_id, d.chance)), delta_rand=delta_rand, delta_gap=delta_gap)
    fits["onset"] = {"baseline": onset_summary(on, d.trial_id[base_mask], n_boot=n_boot, seed=seed, label="base"),
                     "all": onset_summary(on, d.trial_id, n_boot=n_boot, seed=seed, label="all"),
                     "definition": f"onset: first epoch rand_acc > chance + {delta_rand}; divergence: first "
                                   f"epoch train acc − test acc > {delta_gap}; lag = onset − divergence"}
    doc["onset_per_trial"] = on.to_dict(orient="list")

    # per layer: the logistic at every tap with rand_acc
    if len(t.layers):
        ra = t.layers[(t.layers.metric == "rand_acc") & (t.layers.split == "train")]
        for ln in layer_order(ra.layer.unique()):
            s = ra[ra.layer == ln]
            lam = s.trial_id.astype(str).map(lam_map).astype(float)
            ch = doc["chance"]
            doc["per_layer"][ln] = {"memorization_vs_lambda": fit_logistic(
                lam, s.value, n_boot=n_boot, seed=seed, chance=ch, name=f"mem@{ln}")}

    # the λ fits again for each level of every other swept factor with few levels (fig. 7)
    if "rlp.lam" in varying:
        for c in _grid_factors(d, varying):
            for v, sub in d.groupby(d[c].astype(str)):
                key = f"{c}={v}"
                doc["groups"][key] = {"factor": c, "value": v, "n_trials": int(len(sub)),
                                      **_lam_fits(sub, n_boot, seed, tag=key)}

    # best trials: by val acc when recorded (selection must not use test), else by test acc
    by = "val_acc" if d.val_acc.notna().any() else "test_acc"
    top = d[d[by].notna()].sort_values(by, ascending=False).head(10)
    cols = ["trial_id", "lam", "rand_acc", "train_acc", "val_acc", "test_acc", "gap", "status"] + \
        [c for c in varying if c in d.columns and c != "rlp.lam"]
    doc["best_trials"] = {"by": by, "rows": top[[c for c in cols if c in top.columns]].to_dict(orient="records")}
    return _clean(doc)


def analyze(root: str | Path, *, n_boot: int = 200, seed: int = 0, at_epoch: int | None = None, **kw) -> dict:
    """Load ROOT's Parquet results and fit everything: one JSON-serializable document with keys
    schema, root, sweeps, n_trials, status, varying, primary_layer, chance, fits{name: fit},
    groups{"<key>=<value>": {fits}}, per_layer{layer: {fits}}, best_trials, onset_per_trial."""
    return analyze_tables(load_tables(root, at_epoch=at_epoch), n_boot=n_boot, seed=seed, **kw)


def _clean(o):
    """JSON-safe: numpy → Python, NaN/inf → None, private keys (leading '_') dropped."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return [_clean(v) for v in o.tolist()]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if o is None or isinstance(o, (str, int, bool)):
        return o
    try:
        import pandas as pd
        if pd.isna(o):
            return None
    except (TypeError, ValueError):
        pass
    return str(o)


# ---- printing --------------------------------------------------------------------------------
def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _num(v) -> str:
    return "—" if v is None else f"{v:.3g}"


def _with_ci(fit, key, fmt=_num) -> str:
    v = fit.get("params", {}).get(key)
    ci = (fit.get("ci") or {}).get(key)
    s = fmt(v)
    return s + (f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]" if ci else " [no CI]")


def format_fit(name: str, fit: dict) -> list[str]:
    if not isinstance(fit, dict):
        return []
    if fit.get("fitted") is False:
        return [f"{name}: not fitted: {fit.get('reason')}"]
    p = fit.get("params", {})
    if name.startswith("memorization_vs_lambda"):
        base = fit.get("baseline")
        lines = [f"{name}: λ50 = {_with_ci(fit, 'lambda50')}; rand_acc {_with_ci(fit, 'rand_acc_high', _pct)} "
                 f"→ {_with_ci(fit, 'rand_acc_low', _pct)}; slope {_num(p.get('slope'))}/decade; "
                 f"chance {_pct(fit.get('chance'))}; R² {_num(fit.get('r2'))}; n = {fit.get('n_points')}"]
        if fit.get("y"):
            lines[0] += f"  [y = {fit['y']}]"
        if base:
            lines.append(f"  baseline (λ = 0, {base['n']} trials): rand_acc {_pct(base['mean'])}")
        if fit.get("note"):
            lines.append(f"  note: {fit['note']}")
        return lines
    if name.startswith("generalization_vs_lambda"):
        return [f"{name}: λ* = {_with_ci(fit, 'lambda_star')}{' (at the edge of the λ range)' if fit.get('at_boundary') else ''}; "
                f"test acc {_with_ci(fit, 'test_acc_star', _pct)}; gain over {fit.get('baseline_kind')} "
                f"{_with_ci(fit, 'test_acc_gain', _pct)}"]
    if name.startswith("gap_vs_lambda"):
        return [f"{name}: min gap at λ = {_with_ci(fit, 'gap_lambda_star')}{' (edge)' if fit.get('at_boundary') else ''}; "
                f"gap {_with_ci(fit, 'gap_star', _pct)} vs {_pct(p.get('gap_baseline'))} baseline; "
                f"gap at the test-optimal λ {_pct(p.get('gap_at_test_lambda_star'))}"]
    if name == "memorization_vs_generalization":
        return [f"{name}: Spearman ρ(rand_acc, test acc) = {_with_ci(fit, 'spearman_rho')}; "
                f"Δ test acc (low − high memorization) {_with_ci(fit, 'delta_test_acc', _pct)} → "
                f"suppressing memorization {fit.get('verdict').upper()}",
                f"  gap: ρ = {_with_ci(fit, 'gap_spearman_rho')}; Δ gap {_with_ci(fit, 'delta_gap', _pct)} "
                f"→ gap {fit.get('gap_verdict')}; {fit.get('model')}, n = {fit.get('n_points')}"]
    if name.startswith("rand_acc_vs_"):
        lv = ", ".join(f"{_num(a)}: {_pct(b)}" for a, b in zip(fit["levels"], fit["rand_acc_mean"]))
        extra = ""
        for k in p:   # "<factor>_at_min" = the level; "rand_acc_at_min" = the value there
            if k.endswith(("_at_min", "_at_max")) and not k.startswith("rand_acc_"):
                where = "min" if k.endswith("_at_min") else "max"
                extra = (f"; {where} at {k[:-7]} = {_with_ci(fit, k)}{'' if fit.get('interior') else ' (at the edge)'}"
                         f", rand_acc there {_pct(p.get(f'rand_acc_at_{where}'))}")
        tail = f"; least-regularized trials: {_lam_text(fit['restricted_to_lambda_range'])}" \
            if fit.get("restricted_to_lambda_range") else ""
        return [f"{name} ({fit.get('factor')}): ρ = {_with_ci(fit, 'spearman_rho')}{extra}{tail}", f"  {lv}"]
    if "layer_profile" in name:
        lines = [f"{name} ({fit.get('metric')}), layers {', '.join(fit['layers'])}:"]
        for r in fit["by_lambda"]:
            lines.append(f"  λ = {_num(r['lam'])}: " + " ".join(_pct(m) for m in r["mean"])
                         + f"  (max at {r['argmax_layer']})")
        return lines
    return [f"{name}: {p}"]


def format_analysis(doc: dict) -> str:
    """The analysis document as text (`rlp-tune analyze ROOT`)."""
    out = [f"results: {doc.get('root')}  sweep(s): {', '.join(doc.get('sweeps') or []) or '—'}",
           f"trials: {doc.get('n_trials')} ({doc.get('n_trials_with_metrics')} with metrics) "
           + " ".join(f"{k}={v}" for k, v in (doc.get("status") or {}).items()),
           f"primary layer: {doc.get('primary_layer')}; chance: {_pct(doc.get('chance'))}"]
    for c, info in (doc.get("varying") or {}).items():
        rng_ = f" in [{_num(info.get('min'))}, {_num(info.get('max'))}]" if "min" in info else ""
        out.append(f"  swept: {c}: {info['n_values']} values{rng_}")
    out.extend(f"note: {n}" for n in doc.get("notes") or [])
    out.append("")
    fits = doc.get("fits") or {}
    for name, fit in fits.items():
        if name == "onset":
            for k in ("baseline", "all"):
                f = fit.get(k) or {}
                if f.get("fitted") is False:
                    out.append(f"onset ({k}): not fitted: {f.get('reason')}")
                    continue
                p = f.get("params", {})
                if not f.get("n_onset"):
                    out.append(f"onset ({k}, {f.get('n_trials')} trials): rand_acc never rose above chance + "
                               f"{(doc.get('settings') or {}).get('delta_rand')} in any trial; train/test diverge at "
                               f"epoch {_num(p.get('divergence_median'))} (median, {f.get('n_divergence')} trials)")
                    continue
                out.append(f"onset ({k}, {f.get('n_trials')} trials): rand_acc rises at epoch {_num(p.get('onset_median'))} "
                           f"(median), train/test diverge at {_num(p.get('divergence_median'))}; lag "
                           f"{_with_ci(f, 'lag_median')} epochs; onset first in "
                           f"{_pct(p.get('frac_onset_before_divergence'))} of {f.get('n_both')}")
            continue
        out.extend(format_fit(name, fit))
    if doc.get("per_layer"):
        out.append("")
        out.append("per layer:")
        for ln, fs in doc["per_layer"].items():
            out.extend("  " + s for s in format_fit(f"memorization_vs_lambda@{ln}", fs["memorization_vs_lambda"]))
    if doc.get("groups"):
        out.append("")
        out.append("by group:")
        for key, g in doc["groups"].items():
            out.append(f"  [{key}] {g['n_trials']} trials")
            for name in ("memorization_vs_lambda", "generalization_vs_lambda", "gap_vs_lambda"):
                out.extend("    " + s for s in format_fit(name, g[name]))
    best = doc.get("best_trials") or {}
    if best.get("rows"):
        out.append("")
        out.append(f"best trials by {best['by']}:")
        for r in best["rows"][:5]:
            out.append(f"  {r['trial_id']}: λ={_num(r.get('lam'))} test {_pct(r.get('test_acc'))} "
                       f"val {_pct(r.get('val_acc'))} rand {_pct(r.get('rand_acc'))}")
    return "\n".join(out)
