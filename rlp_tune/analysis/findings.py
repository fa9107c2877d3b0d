"""The findings of a design cell in words, each estimate with its CI (the report's first screen).

    for f in cell_findings(cell): print(f.text)
    # RLP regularization suppresses memorization: λ50 = 10^1.50 [10^1.45, 10^1.55] ...

A fit that is not identified (`fitted` false: identify.NotIdentified) is said in words with its
reason and no number.
"""
from __future__ import annotations

from dataclasses import dataclass

from .fit_lambda import memorization_fit
from .regime import EDGE, FITS, MEMORIZES


@dataclass
class Finding:
    topic: str          # memorization | generalization | memgen
    text: str
    identified: bool


def log_lambda(v: float) -> str:
    return f"10^{v:.2f}"


def _ci_log(ci) -> str:
    return f" [{log_lambda(ci[0])}, {log_lambda(ci[1])}]" if ci else " [no CI]"


def _ci_points(ci) -> str:
    return f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else " [no CI]"


def memorization_finding(f) -> Finding:
    if not f.fitted:
        return Finding("memorization", f"Memorization vs λ: not identified: {f.reason}.", False)
    what = "chance-normalized memorization" if f.y else "memorization"
    verb = "suppresses" if f.direction == "decreasing" else "does not suppress (it rises with λ)"
    rng = f"{100 * f.high:.1f}% → {100 * f.low:.1f}%" + (f", chance {100 * f.chance:.1f}%" if f.chance else "")
    return Finding("memorization", f"RLP regularization {verb} {what}: λ50 = {log_lambda(f.log10_lambda50)}"
                   f"{_ci_log(f.ci.get('log10_lambda50'))} (rand_acc {rng}"
                   + (f"; R² {f.r2:.2f}" if f.r2 is not None else "") + ").", True)


def generalization_finding(f) -> Finding:
    if not f.fitted:
        return Finding("generalization", f"Test accuracy vs λ: not identified: {f.reason}.", False)
    ref = "the λ = 0 trials" if f.baseline_kind == "lambda=0" else "the least-regularized trials"
    gain_ci = f.ci.get(f.change_key)
    lam = f"{log_lambda(f.log10_lam_star)}{_ci_log(f.ci.get('log10_' + f.lam_key))}"
    gain = f"{100 * f.change:+.1f} points{_ci_points(gain_ci)} over {ref}"
    if gain_ci and gain_ci[0] <= 0 <= gain_ci[1]:
        # a peak whose gain the CI cannot tell from 0 is not a finding: lead with that, not with λ*
        return Finding("generalization", f"Test accuracy: no detectable gain from RLP regularization "
                       f"(at its best λ, {lam}, {100 * f.star:.1f}%: {gain}).", True)
    where = "peaks at" if not f.at_boundary else "is highest at the edge of the sampled range,"
    return Finding("generalization", f"Test accuracy {where} λ* = {lam}, {100 * f.star:.1f}%: {gain}.", True)


def memgen_finding(f) -> Finding:
    if not f.fitted:
        return Finding("memgen", f"Memorization vs generalization: not identified: {f.reason}.", False)
    rho_ci = f.ci.get("spearman_rho")
    effect = {"helped": "suppressing memorization helped", "hurt": "suppressing memorization hurt",
              "inconclusive": "suppressing memorization had no detectable effect"}[f.verdict]
    return Finding("memgen", f"Memorization vs generalization: ρ = {f.rho:.2f}"
                   + (f" [{rho_ci[0]:.2f}, {rho_ci[1]:.2f}]" if rho_ci else " [no CI]")
                   + f": {effect} (test accuracy of the least- minus the most-memorizing trials "
                   f"{100 * f.delta_test_acc:+.1f} points{_ci_points(f.ci.get('delta_test_acc'))}).", True)


# a failed regime check (regime.py) as a finding: what was measured, and what it means for the fits
REGIME_FLAGS = {
    FITS: ("λ = 0 did not fit its training labels", "nothing noisy was memorized, so suppressing memorization "
           "cannot help here: train longer or use a larger model"),
    MEMORIZES: ("λ = 0 did not memorize", "there is no memorization for RLP regularization to suppress"),
    EDGE: ("Optimum at the edge of the sampled λ range", "the range may stop before the optimum: extend λ past it"),
}


def regime_findings(checks) -> list[Finding]:
    """The failed regime checks of a cell (regime.Check), each a finding of its own."""
    return [Finding("regime", f"{REGIME_FLAGS[c.name][0]}: {c.text}; {REGIME_FLAGS[c.name][1]}.", True)
            for c in checks if not c.passed and c.name in REGIME_FLAGS]


def cell_findings(cell) -> list[Finding]:
    """The findings of one design cell (document.Cell): failed regime checks first, memorization and test accuracy
    vs λ (when λ is swept), and memorization vs generalization across its trials."""
    out = regime_findings(getattr(cell, "regime", ()))
    if "memorization_vs_lambda" in cell.fits:
        out.append(memorization_finding(memorization_fit(cell.fits)))
        out.append(generalization_finding(cell.fits["generalization_vs_lambda"]))
    if "memorization_vs_generalization" in cell.fits:
        out.append(memgen_finding(cell.fits["memorization_vs_generalization"]))
    return out


def run_finding(a) -> Finding | None:
    """A single run's final numbers (document.Analysis with one trial), in words."""
    if len(a.trials) != 1:
        return None
    r = a.trials.iloc[0]

    def p(v) -> str:
        return "—" if v != v else f"{100 * v:.1f}%"          # NaN → —
    lam = f" (λ = {r.lam:.3g})" if r.lam == r.lam else ""
    chance = f", chance {p(r.chance)}" if r.chance == r.chance else ""
    return Finding("run", f"Single run{lam} after {r.final_epoch:.0f} epochs: train accuracy {p(r.train_acc)}, test "
                   f"{p(r.test_acc)}; random-label accuracy {p(r.rand_acc)} at {a.primary_layer}{chance}. "
                   "Fits against λ need a sweep.", True)


def factor_findings(a) -> list[Finding]:
    """Memorization vs each swept factor with ≥ 3 levels, at the least-regularized λ level."""
    out = []
    for fc in a.factor_curves:
        lv, f = fc.by_lambda[0]
        at = "" if lv is None else f" at λ = {lv:.3g}"
        if not f.fitted:
            out.append(Finding("factor", f"Memorization vs {fc.factor}{at}: not identified: {f.reason}.", False))
            continue
        rho = f" [{f.rho_ci[0]:.2f}, {f.rho_ci[1]:.2f}]" if f.rho_ci else " [no CI]"
        trend = ("rises with" if f.rho_ci and f.rho_ci[0] > 0 else "falls with" if f.rho_ci and f.rho_ci[1] < 0
                 else "shows no detectable trend with")
        text = (f"Memorization{at} {trend} {fc.factor}: Spearman ρ = {f.rho:.2f}{rho}; {f.y} "
                f"{100 * f.mean[0]:.1f}% at {f.levels[0]:.3g} → {100 * f.mean[-1]:.1f}% at {f.levels[-1]:.3g}")
        if f.find and f.interior:
            ci = f" [{f.at_ci[0]:.3g}, {f.at_ci[1]:.3g}]" if f.at_ci else " [no CI]"
            text += f"; {'minimum' if f.find == 'min' else 'maximum'} at {f.short} = {f.at_level:.3g}{ci}"
        out.append(Finding("factor", text + ".", True))
    return out
