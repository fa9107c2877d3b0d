"""Fits against λ: a 4-parameter logistic for memorization, a P-spline optimum for test accuracy and gap.

    r = fit_logistic(lam, rand_acc, n_boot=200, chance=0.1)   # LogisticFit or NotIdentified
    r.lambda50, r.ci["log10_lambda50"], r.to_dict()
    p = fit_peak(lam, test_acc)                               # PeakFit: λ*, value, gain over baseline

x = log10 λ; λ = 0 trials are not on the log axis: they are the `baseline`.

memorization: rand_acc(x) = low + (high − low) / (1 + exp(slope · (x − log10 λ50))), slope ≥ 0 so
`high` is the small-λ asymptote; bounded least squares through the batched Levenberg–Marquardt of
numerics.py (every start at once; every bootstrap resample as a row of count weights).

generalization / gap: penalized cubic spline (B-splines on equal segments of the sampled x range,
one per ~3 distinct λ, 4 to 20; second-difference penalty; smoothing by GCV over all trials, kept
for the resamples). The optimum is sought over the sampled range and its value capped to what the
trials reached; a resample's optimum is sought only over its own trials' λ range. A spline rather
than a parabola: test accuracy is usually flat, then falls steeply at large λ.

Identification rules: identify.py. CIs: bootstrap.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .bootstrap import Baseline, baseline, ci, finite, rng_for
from .fits import register_fit
from .numtext import num, pct, with_ci
from .identify import (CI_RANGE_FRACTION, FLAT_TOL, MIN_DISTINCT_LAMBDA, R2_MIN, SLOPE_MAX,
                       NotIdentified)
from .numerics import PSpline, boot_counts, column_percentiles, fit4, fit4_weighted, logistic4


def _band(curves: np.ndarray) -> tuple[list | None, list | None]:
    """Pointwise 95% band of bootstrap curves (R, G), NaN = not covered by a resample; (None, None)
    with too few resamples."""
    if len(curves) < 20:
        return None, None
    lo, hi = column_percentiles(curves, (2.5, 97.5))
    return lo.tolist(), hi.tolist()


@dataclass
class Curve:
    """A fitted curve on a λ grid, with its pointwise 95% bootstrap band (None without resamples)."""
    lam: list[float]
    y: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None

    def to_dict(self) -> dict:
        return {"lam": self.lam, "y": self.y, "lo": self.lo, "hi": self.hi}


@dataclass
class LogisticFit:
    """Memorization vs λ. CIs (`ci`) are keyed like the JSON params: lambda50, log10_lambda50,
    rand_acc_high, rand_acc_low, slope."""
    lambda50: float
    log10_lambda50: float
    high: float                 # small-λ asymptote
    low: float                  # large-λ asymptote
    slope: float                # per decade, ≥ 0
    r2: float | None
    n_points: int
    n_boot: int
    n_boot_ok: int
    ci: dict[str, list[float] | None]
    curve: Curve
    baseline: Baseline | None = None
    chance: float | None = None
    y: str | None = None        # what was fitted when not the raw rand_acc, e.g. the normalized form
    note: str | None = None
    metric: str | None = None   # the memorization metric, e.g. "train.rand_acc_eval"

    fitted = True

    @property
    def direction(self) -> str:
        return "decreasing" if self.high > self.low else "increasing"

    def to_dict(self) -> dict:
        out = {"fitted": True, "model": "4-parameter logistic in log10(λ)", "n_points": self.n_points,
               "params": {"lambda50": self.lambda50, "log10_lambda50": self.log10_lambda50,
                          "rand_acc_high": self.high, "rand_acc_low": self.low, "slope": self.slope,
                          "chance": self.chance},
               "ci": dict(self.ci), "n_boot": self.n_boot, "n_boot_ok": self.n_boot_ok, "r2": self.r2,
               "direction": self.direction, "baseline": self.baseline.to_dict() if self.baseline else None,
               "chance": self.chance, "curve": self.curve.to_dict()}
        for k in ("y", "note", "metric"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


def fit_logistic(lam, y, *, n_boot: int = 200, seed: int = 0, name: str = "memorization_vs_lambda",
                 chance: float | None = None, y_name: str = "rand_acc") -> LogisticFit | NotIdentified:
    """4-parameter logistic of y (e.g. final rand_acc) against log10 λ over trials with λ > 0."""
    lam, y = finite(lam, y)
    rng = rng_for(name, seed)
    base = baseline(y[lam == 0], rng, n_boot)
    pos = lam > 0
    x, y = np.log10(lam[pos]), y[pos]

    def no(reason):
        return NotIdentified(reason, n_points=int(len(x)), baseline=base, chance=chance)

    nx = len(np.unique(np.round(x, 9)))
    if nx < MIN_DISTINCT_LAMBDA:
        return no(f"too few points: {nx} distinct λ > 0 (need ≥ {MIN_DISTINCT_LAMBDA} for 4 parameters)")
    if np.ptp(y) < FLAT_TOL:
        return no(f"flat data: {y_name} varies by less than {100 * FLAT_TOL:.1f} points across λ")
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
    bounds = (np.array([a_lo, a_lo, lo_x - 1.0, 0.0]), np.array([a_hi, a_hi, hi_x + 1.0, SLOPE_MAX]))
    p0s = [np.array([y_left, y_right, xc, sc]) for xc in (cross, 0.5 * (lo_x + hi_x)) for sc in (1.0, 3.0, 10.0)]
    r = fit4(x, y, p0s, bounds)
    if r is None:                       # every start failed (a row with NaNs never wins: cost inf)
        return no("fit failed (least squares did not converge)")
    high, low, x50, slope = (float(v) for v in r.x)
    rng_text = f"[{10 ** lo_x:.3g}, {10 ** hi_x:.3g}]"
    if abs(high - low) < FLAT_TOL:
        return no(f"flat fit: the {y_name} asymptotes differ by less than {100 * FLAT_TOL:.1f} points")
    if slope >= 0.99 * SLOPE_MAX:
        return no(f"slope at its bound ({SLOPE_MAX:g} per decade): a step between two sampled λ, not a "
                  "resolved transition; sample λ more densely there")
    if not lo_x <= x50 <= hi_x:
        return no(f"λ50 lies outside the sampled λ range {rng_text} (the transition is not in the data)")
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - 2 * float(r.cost) / ss_tot if ss_tot > 0 else None
    if r2 is not None and r2 < R2_MIN:
        return no(f"R² below {R2_MIN:g}: the logistic does not describe {y_name} vs λ")
    # bootstrap: resample trials (multinomial counts as weights), refit from the full-data optimum
    W = boot_counts(rng, len(x), n_boot)                                   # (R, N)
    B = fit4_weighted(x, y, W, r.x, bounds)[0] if n_boot else np.zeros((0, 4))
    B = B[np.all(np.isfinite(B), axis=1)]
    ci_x50 = ci(B[:, 2]) if len(B) else None
    if ci_x50 and ci_x50[1] - ci_x50[0] >= CI_RANGE_FRACTION * (hi_x - lo_x):
        return no(f"the 95% CI of λ50 is as wide as the sampled λ range {rng_text}: the data do not locate it")
    xs = np.linspace(lo_x, hi_x, 100)
    lo_b, hi_b = _band(logistic4(xs[None, :], B[:, :1], B[:, 1:2], B[:, 2:3], B[:, 3:4]))
    return LogisticFit(
        lambda50=10 ** x50, log10_lambda50=x50, high=high, low=low, slope=slope, r2=r2,
        n_points=int(len(x)), n_boot=n_boot, n_boot_ok=int(len(B)),
        ci={"lambda50": [10 ** v for v in ci_x50] if ci_x50 else None, "log10_lambda50": ci_x50,
            "rand_acc_high": ci(B[:, 0]) if len(B) else None, "rand_acc_low": ci(B[:, 1]) if len(B) else None,
            "slope": ci(B[:, 3]) if len(B) else None},
        curve=Curve((10 ** xs).tolist(), logistic4(xs, high, low, x50, slope).tolist(), lo_b, hi_b),
        baseline=base, chance=chance)


@dataclass
class PeakFit:
    """The optimum of a spline of y vs log10 λ: the max (mode 'max', test accuracy) or min ('min', gap).
    Names in the JSON: <lam_key>, log10_<lam_key>, <prefix>_star, <prefix>_baseline and
    <prefix>_gain ('max') / <prefix>_change ('min')."""
    mode: str
    prefix: str                 # "test_acc" | "gap"
    lam_key: str                # "lambda_star" | "gap_lambda_star"
    lam_star: float
    log10_lam_star: float
    star: float                 # the curve's optimum, capped to the trials' values
    baseline_value: float       # mean of the λ = 0 trials, else the curve at the smallest λ
    baseline_kind: str          # "lambda=0" | "smallest lambda"
    at_boundary: bool
    n_points: int
    n_baseline: int
    n_boot: int
    n_boot_ok: int
    ci: dict[str, list[float] | None]
    curve: Curve
    extra: dict[str, float] = field(default_factory=dict)   # gap_at_test_lambda_star, ...
    evaluate: Callable[[float], float] | None = field(default=None, repr=False, compare=False)

    fitted = True

    @property
    def change_key(self) -> str:
        return f"{self.prefix}_gain" if self.mode == "max" else f"{self.prefix}_change"

    @property
    def change(self) -> float:
        return self.star - self.baseline_value

    def to_dict(self) -> dict:
        return {"fitted": True, "model": "penalized cubic spline (P-spline) in log10(λ), GCV smoothing",
                "mode": self.mode, "n_points": self.n_points, "n_baseline": self.n_baseline,
                "params": {self.lam_key: self.lam_star, f"log10_{self.lam_key}": self.log10_lam_star,
                           f"{self.prefix}_star": self.star, f"{self.prefix}_baseline": self.baseline_value,
                           self.change_key: self.change, **self.extra},
                "ci": dict(self.ci), "baseline_kind": self.baseline_kind, "at_boundary": self.at_boundary,
                "n_boot": self.n_boot, "n_boot_ok": self.n_boot_ok, "curve": self.curve.to_dict()}


def fit_peak(lam, y, *, mode: str = "max", n_boot: int = 200, seed: int = 0, name: str = "generalization_vs_lambda",
             prefix: str = "test_acc", lam_key: str = "lambda_star") -> PeakFit | NotIdentified:
    """Penalized cubic spline of y against log10 λ (λ > 0) and its max (mode='max') or min ('min')."""
    lam, y = finite(lam, y)
    rng = rng_for(name, seed)
    sign = 1.0 if mode == "max" else -1.0
    y0 = y[lam == 0]
    pos = lam > 0
    x, y = np.log10(lam[pos]), y[pos]
    nx = len(np.unique(np.round(x, 9)))

    def no(reason):
        return NotIdentified(reason, n_points=int(len(x)))

    if nx < MIN_DISTINCT_LAMBDA:
        return no(f"too few points: {nx} distinct λ > 0 (need ≥ {MIN_DISTINCT_LAMBDA} for the spline)")
    # about 3 distinct λ per segment: with few trials a knot per point lets GCV pick a curve that
    # threads every point (and bootstrap resamples overshoot); the penalty smooths the rest
    sp = PSpline(x.min(), x.max(), n_seg=int(min(20, max(4, nx // 3))))
    B = sp.basis(x)
    grid = np.linspace(x.min(), x.max(), 401)
    Bg = sp.basis(grid)
    try:
        alpha = sp.gcv_alpha(B, y)
        c = sp.solve(B, y, np.ones(len(x)), alpha)
    except np.linalg.LinAlgError:
        return no("fit failed (singular spline system)")
    v = Bg @ c
    if not np.all(np.isfinite(v)):
        return no("fit failed (curve not finite)")
    if np.ptp(v) < FLAT_TOL / 5:
        return no(f"flat data: the fitted {prefix} varies by less than {100 * FLAT_TOL / 5:.1f} points across λ")
    i = int(np.argmax(sign * v))
    # the optimum's value is not reported beyond what a trial reached: between few points a spline
    # can overshoot (the same cap applies to each bootstrap resample, over its own trials)
    xs, ys = float(grid[i]), float(np.clip(v[i], y.min(), y.max()))
    kind = "lambda=0" if len(y0) else "smallest lambda"
    b = float(y0.mean()) if len(y0) else float(v[0])
    # bootstrap: multinomial counts as weights over the λ > 0 trials; λ = 0 trials resampled apart
    W = boot_counts(rng, len(x), n_boot)                                   # (R, N)
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
    ci_x = ci(bx)
    if ci_x and ci_x[1] - ci_x[0] >= CI_RANGE_FRACTION * (grid[-1] - grid[0]):
        return no(f"the 95% CI of the optimum's λ spans the whole sampled λ range "
                  f"[{10 ** grid[0]:.3g}, {10 ** grid[-1]:.3g}]: the data do not locate an optimum")
    edge = 0.01 * (grid[-1] - grid[0])
    change_key = f"{prefix}_gain" if mode == "max" else f"{prefix}_change"
    lo_b, hi_b = _band(np.where(inside, V, np.nan)[:, ::4])
    return PeakFit(
        mode=mode, prefix=prefix, lam_key=lam_key, lam_star=float(10 ** xs), log10_lam_star=xs, star=ys,
        baseline_value=b, baseline_kind=kind, at_boundary=bool(xs <= grid[0] + edge or xs >= grid[-1] - edge),
        n_points=int(len(x)), n_baseline=int(len(y0)), n_boot=n_boot, n_boot_ok=int(len(V)),
        ci={lam_key: [10 ** q for q in ci_x] if ci_x else None, f"log10_{lam_key}": ci_x,
            f"{prefix}_star": ci(by), change_key: ci(by - bb)},
        curve=Curve((10 ** grid[::4]).tolist(), v[::4].tolist(), lo_b, hi_b),
        evaluate=lambda q: float((sp.basis(np.atleast_1d(q)) @ c)[0]))


def memorization_fit(fits: dict):
    """The primary memorization fit of a set of λ fits: the chance-normalized one when n varies."""
    return fits.get("memorization_vs_lambda_normalized") or fits["memorization_vs_lambda"]


# ---- text and registration ------------------------------------------------------------------
def logistic_lines(fit: LogisticFit, name: str) -> list[str]:
    c = fit.ci
    lines = [f"{name}: λ50 = {with_ci(fit.lambda50, c.get('lambda50'))}; rand_acc "
             f"{with_ci(fit.high, c.get('rand_acc_high'), pct)} → {with_ci(fit.low, c.get('rand_acc_low'), pct)}; "
             f"slope {num(fit.slope)}/decade; chance {pct(fit.chance)}; R² {num(fit.r2)}; n = {fit.n_points}"]
    if fit.y:
        lines[0] += f"  [y = {fit.y}]"
    if fit.metric:
        lines[0] += f"  [{fit.metric}]"
    if fit.baseline:
        lines.append(f"  baseline (λ = 0, {fit.baseline.n} trials): rand_acc {pct(fit.baseline.mean)}")
    if fit.note:
        lines.append(f"  note: {fit.note}")
    return lines


def peak_lines(fit: PeakFit, name: str) -> list[str]:
    c = fit.ci
    if fit.mode == "max":
        return [f"{name}: λ* = {with_ci(fit.lam_star, c.get(fit.lam_key))}"
                f"{' (at the edge of the λ range)' if fit.at_boundary else ''}; test acc "
                f"{with_ci(fit.star, c.get(f'{fit.prefix}_star'), pct)}; gain over {fit.baseline_kind} "
                f"{with_ci(fit.change, c.get(fit.change_key), pct)}"]
    return [f"{name}: min gap at λ = {with_ci(fit.lam_star, c.get(fit.lam_key))}{' (edge)' if fit.at_boundary else ''}; "
            f"gap {with_ci(fit.star, c.get(f'{fit.prefix}_star'), pct)} vs {pct(fit.baseline_value)} baseline; "
            f"gap at the test-optimal λ {pct(fit.extra.get('gap_at_test_lambda_star'))}"]


register_fit("logistic", fit=fit_logistic, result=LogisticFit, lines=logistic_lines)
register_fit("peak", fit=fit_peak, result=PeakFit, lines=peak_lines)
