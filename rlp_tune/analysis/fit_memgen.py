"""Memorization vs generalization across trials: test accuracy and gap against rand_acc.

    f = fit_mem_gen(rand_acc, test_acc, gap, n_boot=500)   # MemGenFit or NotIdentified
    f.rho, f.ci["spearman_rho"], f.verdict                  # "helped" | "hurt" | "inconclusive"

A linear or quadratic polynomial (AIC; the quadratic must win by 2), Spearman ρ, and delta_test_acc
= fit(rand_acc at the 10th percentile) − fit(at the 90th): the test accuracy of the least-memorizing
trials minus that of the most-memorizing. verdict "helped" when the CI of delta_test_acc is above 0,
"hurt" below, else "inconclusive"; gap_verdict "narrowed" / "widened" / "inconclusive" likewise.
Across-trial correlations mix every factor that varies among the trials: read them per design cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import ci, rng_for
from .fits import register_fit
from .numtext import pct, with_ci
from .identify import FLAT_TOL, NotIdentified
from .numerics import polyfit_rows, polyval_rows, spearman, spearman_rows

VERDICT_RULE = ("delta = fit(rand_acc q10) − fit(rand_acc q90): test acc of the least- minus the "
                "most-memorizing trials; 'helped' if its 95% CI > 0, 'hurt' if < 0")


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


@dataclass
class MemGenFit:
    degree: int
    rho: float
    delta_test_acc: float
    coef: list[float]
    q10: float                   # rand_acc 10th / 90th percentile: where delta compares the fit
    q90: float
    gap_rho: float
    delta_gap: float
    gap_coef: list[float] | None
    ci: dict[str, list[float] | None]
    n_points: int
    n_boot: int
    n_boot_ok: int
    verdict: str                 # helped | hurt | inconclusive
    gap_verdict: str             # narrowed | widened | inconclusive
    curve_x: list[float]
    curve_test: list[float]
    curve_gap: list[float] | None

    fitted = True

    def to_dict(self) -> dict:
        return {"fitted": True, "model": f"polynomial of degree {self.degree} (AIC)", "n_points": self.n_points,
                "params": {"spearman_rho": self.rho, "delta_test_acc": self.delta_test_acc, "coef": self.coef,
                           "rand_acc_low_q10": self.q10, "rand_acc_high_q90": self.q90,
                           "gap_spearman_rho": self.gap_rho, "delta_gap": self.delta_gap, "gap_coef": self.gap_coef},
                "ci": dict(self.ci), "n_boot": self.n_boot, "n_boot_ok": self.n_boot_ok,
                "verdict": self.verdict, "gap_verdict": self.gap_verdict, "verdict_rule": VERDICT_RULE,
                "curve": {"x": self.curve_x, "test_acc": self.curve_test, "gap": self.curve_gap}}


def _verdict(ci_, pos, neg) -> str:
    if ci_ is None:
        return "inconclusive"
    return pos if ci_[0] > 0 else neg if ci_[1] < 0 else "inconclusive"


def fit_mem_gen(rand, test, gap, *, n_boot: int = 500, seed: int = 0,
                name: str = "memorization_vs_generalization") -> MemGenFit | NotIdentified:
    """Test accuracy and train − test gap against final rand_acc across trials (see module doc)."""
    rand, test, gap = (np.asarray(a, float) for a in (rand, test, gap))
    m = np.isfinite(rand) & np.isfinite(test)
    x, y = rand[m], test[m]
    g = gap[m]
    has_gap = bool(np.isfinite(g).all())
    if len(x) < 5:
        return NotIdentified(f"too few points: {len(x)} trials with both rand_acc and test acc (need ≥ 5)",
                             n_points=int(len(x)))
    if np.ptp(x) < FLAT_TOL:
        return NotIdentified(f"flat data: rand_acc varies by less than {100 * FLAT_TOL:.1f} points across trials",
                             n_points=int(len(x)))
    if np.ptp(y) < FLAT_TOL:
        return NotIdentified(f"flat data: test accuracy varies by less than {100 * FLAT_TOL:.1f} points across "
                             "trials", n_points=int(len(x)))
    deg, c = _poly_choose(x, y)
    lo_q, hi_q = (float(q) for q in np.percentile(x, [10, 90]))
    rho = spearman(x, y) if np.ptp(y) > 0 else float("nan")
    delta = float(np.polyval(c, lo_q) - np.polyval(c, hi_q))
    gdeg, gc, grho, gdelta = None, None, float("nan"), float("nan")
    if has_gap:
        gdeg, gc = _poly_choose(x, g)
        grho = spearman(x, g) if np.ptp(g) > 0 else float("nan")
        gdelta = float(np.polyval(gc, lo_q) - np.polyval(gc, hi_q))
    rng = rng_for(name, seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))                  # (R, N) resampled trials
    xb, yb = x[idx], y[idx]
    ok = np.ptp(xb, axis=1) > 0
    xb, yb = xb[ok], yb[ok]
    B = np.full((len(xb), 4), np.nan)
    if len(xb):
        B[:, 0] = spearman_rows(xb, yb)
        cb = polyfit_rows(xb, yb, deg)
        B[:, 1] = polyval_rows(cb, lo_q) - polyval_rows(cb, hi_q)
        if has_gap:
            gb = g[idx][ok]
            cg = polyfit_rows(xb, gb, gdeg)
            B[:, 2] = spearman_rows(xb, gb)
            B[:, 3] = polyval_rows(cg, lo_q) - polyval_rows(cg, hi_q)
    cis = {"spearman_rho": ci(B[:, 0]), "delta_test_acc": ci(B[:, 1]),
           "gap_spearman_rho": ci(B[:, 2]) if has_gap else None, "delta_gap": ci(B[:, 3]) if has_gap else None}
    xs = np.linspace(x.min(), x.max(), 50)
    return MemGenFit(
        degree=deg, rho=rho, delta_test_acc=delta, coef=[float(v) for v in c], q10=lo_q, q90=hi_q,
        gap_rho=grho, delta_gap=gdelta, gap_coef=[float(v) for v in gc] if gc is not None else None,
        ci=cis, n_points=int(len(x)), n_boot=n_boot, n_boot_ok=int(len(B)),
        verdict=_verdict(cis["delta_test_acc"], "helped", "hurt"),
        gap_verdict=_verdict(cis["delta_gap"], "widened", "narrowed") if has_gap else "inconclusive",
        curve_x=xs.tolist(), curve_test=np.polyval(c, xs).tolist(),
        curve_gap=np.polyval(gc, xs).tolist() if gc is not None else None)


def memgen_lines(fit: MemGenFit, name: str) -> list[str]:
    c = fit.ci
    return [f"{name}: Spearman ρ(rand_acc, test acc) = {with_ci(fit.rho, c.get('spearman_rho'))}; "
            f"Δ test acc (low − high memorization) {with_ci(fit.delta_test_acc, c.get('delta_test_acc'), pct)} → "
            f"suppressing memorization {fit.verdict.upper()}",
            f"  gap: ρ = {with_ci(fit.gap_rho, c.get('gap_spearman_rho'))}; Δ gap "
            f"{with_ci(fit.delta_gap, c.get('delta_gap'), pct)} → gap {fit.gap_verdict}; polynomial of degree "
            f"{fit.degree} (AIC), n = {fit.n_points}"]


register_fit("memgen", fit=fit_mem_gen, result=MemGenFit, lines=memgen_lines)
