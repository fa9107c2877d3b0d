"""Is a sweep in the regime its question needs? Measured preconditions with thresholds, one function each.

    c = memorizes(d.rand_acc[d.lam == 0], d.chance[d.lam == 0])     # Check(passed, value, ci, text)
    checks = cell_checks(d_cell, cell.fits)        # the checks `analyze` runs per design cell
    flags = [c for c in checks if not c.passed]    # findings.regime_findings words them

A claim about suppressing memorization means nothing where nothing was memorized, and a "best λ" at
the edge of the sampled range is a range that stopped too early. The rules (used by `analyze` and by
analysis/reproduce.py alike, stated here once; d = per_trial rows, λ = 0 = the unregularized trials):

- FITS       λ = 0 fits the training labels it was given: mean train accuracy ≥ FIT_MIN (95%). Asked
             where those labels are noisy or random (data.label_noise > 0): memorizing them is the point.
- MEMORIZES  λ = 0 memorizes the random labels: the 95% bootstrap CI of mean(rand_acc − 1/n) over the
             λ = 0 trials has its lower end above MEM_MARGIN (+2 points; "at chance" is within ±2
             points, so this is clearly outside that band); one trial (no CI): its value itself.
- CLASS_HEAD the class head trains: the CI lower end of mean(test acc − 1/C) at λ = 0 above
             CLASS_MARGIN (+10 points); C (the number of classes) comes from the caller.
- EDGE       the λ range brackets the test-accuracy optimum: fails when the optimum is at the largest
             sampled λ (or at the smallest λ > 0 when no λ = 0 trial anchors it) and is ≥ FLAT_TOL
             above the λ = 0 (else the least-regularized) mean. The optimum is the spline optimum of
             fit_lambda.fit_peak where it is identified (the analysis' own generalization fit),
             else the λ level of highest mean test accuracy.
- TRANSITION the memorization curve's transition lies inside the sampled range: fit_lambda.fit_logistic
             is identified (its rules put λ50 inside the range and require a resolved curve).
A check that has nothing to look at (no λ = 0 trial, λ not swept) is not made (None).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import NOISE_KEY
from .bootstrap import boot_mean_ci, finite, rng_for
from .fit_lambda import LogisticFit, PeakFit, fit_logistic, fit_peak
from .identify import FLAT_TOL

FIT_MIN = 0.95
MEM_MARGIN = 0.02
CLASS_MARGIN = 0.10
FITS, MEMORIZES, CLASS_HEAD, EDGE, TRANSITION = "fits", "memorizes", "class_head", "edge", "transition"


@dataclass(frozen=True)
class Check:
    """One precondition measured on trials: passed or not, the value (fraction; λ for EDGE) and its CI."""
    name: str
    passed: bool
    value: float | None
    ci: tuple[float, float] | None
    text: str                      # the measured value against its threshold, in words

    def short(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.text}"

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "value": self.value,
                "ci": list(self.ci) if self.ci else None, "text": self.text}


def _pts(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci_pts(ci) -> str:
    return f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else " (one trial, no CI)"


def _mean_ci(y, name: str, n_boot: int, seed: int):
    (y,) = finite(y)
    if not len(y):
        return None, None
    c = boot_mean_ci(y, rng_for(f"regime:{name}", seed), n_boot)
    return float(y.mean()), (tuple(c) if c else None)


def fits_labels(train_acc, noise: float | None = None) -> Check | None:
    """FITS on the λ = 0 trials' final train accuracy (on the labels they were given)."""
    (y,) = finite(train_acc)
    if not len(y):
        return None
    v = float(y.mean())
    given = "its random" if noise and noise >= 1 else f"its {noise:.0%}-noisy" if noise else "its"
    return Check(FITS, v >= FIT_MIN, v, None, f"λ = 0 train acc {_pts(v)} on {given} training labels "
                 f"({'≥' if v >= FIT_MIN else '<'} {_pts(FIT_MIN)})")


def _clear_of(name: str, diff, margin: float, what: str, n_boot: int, seed: int) -> Check | None:
    """Passed when the CI lower end of mean(diff) (its value with one trial) is above margin."""
    v, ci = _mean_ci(diff, name, n_boot, seed)
    if v is None:
        return None
    ok = (ci[0] if ci else v) > margin
    return Check(name, ok, v, ci, f"{what}: {100 * v:+.1f} pts{_ci_pts(ci)} ({'CI lower end ' if ci else ''}"
                 f"{'>' if ok else '≤'} +{100 * margin:.0f} pts)")


def memorizes(rand_acc, chance, *, n_boot: int = 1000, seed: int = 0, what: str = "rand_acc") -> Check | None:
    """MEMORIZES on the λ = 0 trials: mean(rand_acc − chance) and its CI against MEM_MARGIN."""
    r, c = finite(rand_acc, chance)
    if not len(r):
        return None
    return _clear_of(MEMORIZES, r - c, MEM_MARGIN, f"λ = 0 {what} {_pts(float(r.mean()))} vs chance "
                     f"{_pts(float(c.mean()))}", n_boot, seed)


def class_head_trains(test_acc, classes: int, *, n_boot: int = 1000, seed: int = 0) -> Check | None:
    """CLASS_HEAD on the λ = 0 trials: mean(test acc − 1/C) and its CI against CLASS_MARGIN."""
    (y,) = finite(test_acc)
    if not len(y):
        return None
    return _clear_of(CLASS_HEAD, y - 1.0 / classes, CLASS_MARGIN,
                     f"λ = 0 test acc {_pts(float(y.mean()))} vs chance 1/{classes}", n_boot, seed)


def edge_optimum(lam, test_acc, fit=None, *, n_boot: int = 200, seed: int = 0) -> Check | None:
    """EDGE: is the test-accuracy optimum over λ inside the sampled range? fit: the generalization_vs_lambda
    fit of these trials when the caller has it (PeakFit or NotIdentified), else fitted here."""
    lam, y = finite(lam, test_acc)
    levels = np.unique(lam[lam > 0])
    if len(levels) < 2:
        return None
    means = {float(k): float(y[lam == k].mean()) for k in np.unique(lam)}
    base = means.get(0.0, means[float(levels[0])])
    if fit is None:
        fit = fit_peak(lam, y, n_boot=n_boot, seed=seed, name="regime:edge")
    if isinstance(fit, PeakFit):
        star, value, how = fit.lam_star, fit.star, "spline optimum"
        span = np.log10(levels[-1]) - np.log10(levels[0])
        upper = fit.at_boundary and fit.log10_lam_star >= np.log10(levels[-1]) - 0.02 * span
        lower = fit.at_boundary and not upper
    else:
        star = max((k for k in means if k > 0), key=lambda k: means[k])
        value, how = means[star], "best mean"
        upper, lower = star == levels[-1], star == levels[0]
    edge = upper or (lower and 0.0 not in means)
    at_edge = edge and value - base >= FLAT_TOL
    rng = f"[{levels[0]:.3g}, {levels[-1]:.3g}]"
    where = "inside the range" if not edge else (
        ("at the largest sampled λ" if upper else "at the smallest sampled λ")
        + ("" if at_edge else f" but < {100 * FLAT_TOL:.1f} pts above the baseline (flat: no optimum to bracket)"))
    return Check(EDGE, not at_edge, float(star), None,
                 f"test-acc optimum ({how}) λ = {star:.3g} {where} {rng}: {_pts(value)}, "
                 f"{100 * (value - base):+.1f} pts over {'λ = 0' if 0.0 in means else 'the smallest λ'}")


def transition_inside(lam, rand_acc, fit=None, *, chance: float | None = None, n_boot: int = 200,
                      seed: int = 0) -> Check | None:
    """TRANSITION: the memorization logistic is identified (λ50 inside the sampled range, a resolved curve)."""
    lam, y = finite(lam, rand_acc)
    if len(np.unique(lam[lam > 0])) < 2:
        return None
    if fit is None:
        fit = fit_logistic(lam, y, n_boot=n_boot, seed=seed, chance=chance, name="regime:transition")
    if isinstance(fit, LogisticFit):
        return Check(TRANSITION, True, fit.lambda50, None,
                     f"memorization transition inside the range: λ50 = 10^{fit.log10_lambda50:.2f}")
    return Check(TRANSITION, False, None, None, f"memorization transition not located: {fit.reason}")


def cell_checks(d, fits: dict | None = None, *, n_boot: int = 200, seed: int = 0) -> list[Check]:
    """The checks `analyze` makes on one design cell's trials (per_trial rows): FITS where the λ = 0 trials
    had noisy labels, MEMORIZES on the λ = 0 trials, EDGE where λ is swept (reusing the cell's
    generalization_vs_lambda fit)."""
    out: list[Check | None] = []
    fits = fits or {}
    zero = d[d.lam == 0]
    if len(zero):
        noise = zero[NOISE_KEY].astype(float) if NOISE_KEY in zero else None
        if noise is not None and (noise > 0).all():
            out.append(fits_labels(zero.train_acc, float(noise.mean()) if noise.nunique() == 1 else None))
        out.append(memorizes(zero.rand_acc, zero.chance, n_boot=n_boot, seed=seed))
    if d.lam.dropna().nunique() > 2:
        out.append(edge_optimum(d.lam, d.test_acc, fits.get("generalization_vs_lambda"), n_boot=n_boot, seed=seed))
    return [c for c in out if c is not None]


def with_noise(d, final):
    """d (per_trial rows) with a `data.label_noise` column also where the sweep held it fixed (per_trial keeps
    only the swept config columns); read from the `final` frame by trial_id."""
    if NOISE_KEY in d.columns or NOISE_KEY not in final.columns:
        return d
    noise = dict(zip(final["trial_id"].astype(str), final[NOISE_KEY]))
    return d.assign(**{NOISE_KEY: d.trial_id.astype(str).map(noise).astype(float)})
