"""When a fit is identified, and the typed result of one that is not.

    from rlp_tune.analysis.identify import NotIdentified, R2_MIN
    r = fit_logistic(lam, y)
    if not r.fitted: print(r.reason)           # says why, carries no fitted number

A fit reports numbers only when the data pin them down. The rules (docs/analysis.md lists them):

- too few distinct λ: fewer than MIN_DISTINCT_LAMBDA distinct λ > 0 (4 parameters / a spline);
- flat: the data or the fitted curve move less than FLAT_TOL (half a percentage point);
- slope at its bound: the logistic's steepness reached SLOPE_MAX per decade (a step between two
  sampled λ, not a resolved transition — λ50 is then anywhere between them);
- λ50 outside the sampled range: the transition is an extrapolation;
- R² below R2_MIN: the logistic does not describe the data;
- CI wider than the sampled range: the 95% CI of log10 λ50 (or log10 λ*) is as wide as the λ range
  the trials span, so the data do not locate it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .bootstrap import Baseline

MIN_DISTINCT_LAMBDA = 5
FLAT_TOL = 0.005        # accuracy fraction: half a percentage point
SLOPE_MAX = 30.0        # logistic steepness bound, per decade of λ
R2_MIN = 0.5            # a memorization logistic explaining less than half the variance is not reported
CI_RANGE_FRACTION = 0.99  # a CI spanning ≥ 99% of the sampled log10 λ range "covers the range"


@dataclass
class NotIdentified:
    """A fit that was not made or not identified: the reason, and what is known without a fit."""
    reason: str
    n_points: int | None = None
    baseline: Baseline | None = None    # λ fits: the λ = 0 trials (data, not a fitted number)
    chance: float | None = None
    factor: str | None = None           # factor curves: which factor
    note: str | None = None
    y: str | None = None                # what was fitted when not the raw metric
    lam_range: tuple[float, float] | None = None   # factor curves: the λ range of the trials used

    fitted = False

    def to_dict(self) -> dict:
        out = {"fitted": False, "reason": self.reason}
        for k in ("n_points", "chance", "factor", "note", "y"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict()
        if self.lam_range is not None:
            out["restricted_to_lambda_range"] = list(self.lam_range)
        return out
