"""The analysis as text (`rlp-tune analyze ROOT`), one formatter per result type.

    print(format_analysis(analyze("runs/sweep1")))
    format_fit("memorization_vs_lambda", fit)     # → list of lines

Accuracies print as %, λ values with 3 significant digits, every estimate with its 95% CI.
"""
from __future__ import annotations

from functools import singledispatch

from .document import Analysis
from .findings import cell_findings, factor_findings, run_finding
from .fit_factors import FactorCurve, LayerProfile, lam_text
from .fit_lambda import LogisticFit, PeakFit
from .fit_memgen import MemGenFit
from .fit_onset import Onset, OnsetSummary
from .identify import NotIdentified
from .search import SEARCH_DESIGNS, SearchSummary, config_text, search_lines


def pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.1f}%"      # None or NaN → —


def num(v) -> str:
    return "—" if v is None or v != v else f"{v:.3g}"


def with_ci(v, ci, fmt=num) -> str:
    return fmt(v) + (f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]" if ci else " [no CI]")


def format_fit(name: str, fit) -> list[str]:
    """The lines of one fit result, by its type."""
    return lines_for(fit, name)


@singledispatch
def lines_for(fit, name: str) -> list[str]:
    raise TypeError(f"no text format for {type(fit).__name__}")


@lines_for.register
def _(fit: NotIdentified, name: str) -> list[str]:
    return [f"{name}: not fitted: {fit.reason}"]


@lines_for.register
def _(fit: LogisticFit, name: str) -> list[str]:
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


@lines_for.register
def _(fit: PeakFit, name: str) -> list[str]:
    c = fit.ci
    if fit.mode == "max":
        return [f"{name}: λ* = {with_ci(fit.lam_star, c.get(fit.lam_key))}"
                f"{' (at the edge of the λ range)' if fit.at_boundary else ''}; test acc "
                f"{with_ci(fit.star, c.get(f'{fit.prefix}_star'), pct)}; gain over {fit.baseline_kind} "
                f"{with_ci(fit.change, c.get(fit.change_key), pct)}"]
    return [f"{name}: min gap at λ = {with_ci(fit.lam_star, c.get(fit.lam_key))}{' (edge)' if fit.at_boundary else ''}; "
            f"gap {with_ci(fit.star, c.get(f'{fit.prefix}_star'), pct)} vs {pct(fit.baseline_value)} baseline; "
            f"gap at the test-optimal λ {pct(fit.extra.get('gap_at_test_lambda_star'))}"]


@lines_for.register
def _(fit: MemGenFit, name: str) -> list[str]:
    c = fit.ci
    return [f"{name}: Spearman ρ(rand_acc, test acc) = {with_ci(fit.rho, c.get('spearman_rho'))}; "
            f"Δ test acc (low − high memorization) {with_ci(fit.delta_test_acc, c.get('delta_test_acc'), pct)} → "
            f"suppressing memorization {fit.verdict.upper()}",
            f"  gap: ρ = {with_ci(fit.gap_rho, c.get('gap_spearman_rho'))}; Δ gap "
            f"{with_ci(fit.delta_gap, c.get('delta_gap'), pct)} → gap {fit.gap_verdict}; polynomial of degree "
            f"{fit.degree} (AIC), n = {fit.n_points}"]


@lines_for.register
def _(fit: FactorCurve, name: str) -> list[str]:
    lv = ", ".join(f"{num(a)}: {pct(b)}" for a, b in zip(fit.levels, fit.mean))
    extra = ""
    if fit.find:
        extra = (f"; {fit.find} at {fit.short} = {with_ci(fit.at_level, fit.at_ci)}"
                 f"{'' if fit.interior else ' (at the edge)'}, {fit.y} there {pct(fit.at_value)}")
    tail = f"; least-regularized trials: {lam_text(fit.lam_range)}" if fit.lam_range else ""
    return [f"{name} ({fit.factor}): ρ = {with_ci(fit.rho, fit.rho_ci)}{extra}{tail}", f"  {lv}"]


@lines_for.register
def _(fit: LayerProfile, name: str) -> list[str]:
    lines = [f"{name} ({fit.metric}), layers {', '.join(fit.layers)}:"]
    for r in fit.by_lambda:
        lines.append(f"  λ = {num(r.lam)}: " + " ".join(pct(m) for m in r.mean) + f"  (max at {r.argmax_layer})")
    return lines


@lines_for.register
def _(fit: Onset, name: str) -> list[str]:
    return lines_for(fit.baseline, "onset (baseline)") + lines_for(fit.all, "onset (all)")


@lines_for.register
def _(fit: OnsetSummary, name: str) -> list[str]:
    if not fit.n_onset:
        return [f"{name}, {fit.n_trials} trials: rand_acc never rose above chance + the onset margin in any trial; "
                f"train/test diverge at epoch {num(fit.divergence_median)} (median, {fit.n_divergence} trials)"]
    return [f"{name}, {fit.n_trials} trials: rand_acc rises at epoch {num(fit.onset_median)} (median), train/test "
            f"diverge at {num(fit.divergence_median)}; lag {with_ci(fit.lag_median, fit.ci.get('lag_median'))} "
            f"epochs; onset first in {pct(fit.frac_onset_before_divergence)} of {fit.n_both}"]


def format_search(s: SearchSummary, k: int = 5) -> list[str]:
    """A tuning search: what it found, the best trials, how the scheduler went, the importances."""
    out = ["search:"] + [f"  {x}" for x in search_lines(s)]
    out.append(f"  best {min(k, len(s.best(k)))} by {s.metric} (trials that ran to the end):")
    for t in s.best(k):
        out.append(f"    #{t.number} {t.trial_id}: {s.metric} {pct(t.value)}  test {pct(t.test_acc)}  "
                   f"{t.epochs}/{t.target} epochs  {config_text(t.params)}")
    return out


def format_analysis(a: Analysis) -> str:
    """The analysis as text: a search first (designs tpe / random / qmc), the findings per design cell,
    then every fit."""
    out = [f"results: {a.root}  sweep(s): {', '.join(a.sweeps) or '—'}",
           f"trials: {a.n_trials} ({a.n_trials_with_metrics} with metrics) "
           + " ".join(f"{k}={v}" for k, v in a.status.items()),
           f"design: {a.design.kind} ({a.design.source}); primary layer: {a.primary_layer}; memorization metric: "
           f"train.{a.memorization_metric}; chance: {pct(a.chance)}"]
    for c, info in a.varying.items():
        rng_ = f" in [{num(info.get('min'))}, {num(info.get('max'))}]" if "min" in info else ""
        out.append(f"  swept: {c}: {info['n_values']} values{rng_}")
    search = a.design.kind in SEARCH_DESIGNS
    if a.search is not None:
        out.append("")
        out.extend(format_search(a.search))
    if not search:
        out.extend(f"note: {n}" for n in a.notes)
    out.append("")
    out.append("findings:" if a.cells else "findings: none (no complete trial with metrics)")
    if a.no_fits_line():
        out.append(f"  {a.no_fits_line()}")
    for cell in a.shown_cells:
        out.append(f"  [{cell.key}] ({len(cell.trial_ids)} trials)")
        out.extend(f"    {f.text}" for f in cell_findings(cell) or [f for f in [run_finding(a)] if f])
    for f in factor_findings(a):
        if f.identified or not search:      # a search's unidentified factor curves: in the fits below
            out.append(f"  {f.text}")
    if search:
        out.extend(f"note: {n}" for n in a.notes)
    if a.evasion.flagged:
        out.append(f"  possible evasion of the co-trained heads ({len(a.evasion.rows)} flag(s)):")
        for r in a.evasion.rows[:5]:
            out.append(f"    {r.why} at {r.layer}" + (f", λ = {num(r.lam)}" if r.lam is not None else "")
                       + (f" [{r.cell}]" if r.cell else "") + f": online {pct(r.online)}"
                       + (f", audit {pct(r.audit)}" if r.audit is not None else "")
                       + (f", chance {pct(r.chance)}" if r.chance is not None else ""))
    out.append("")
    for name, fit in a.fits.items():
        out.extend(lines_for(fit, name))
    if a.per_layer:
        out.append("")
        out.append("per layer:")
        for ln, f in a.per_layer.items():
            out.extend("  " + s for s in lines_for(f, f"memorization_vs_lambda@{ln}"))
    if len(a.cells) > 1:
        out.append("")
        out.append("by design cell:")
        for cell in a.cells:
            out.append(f"  [{cell.key}] {len(cell.trial_ids)} trials")
            for name, f in cell.fits.items():
                out.extend("    " + s for s in lines_for(f, name))
    for fc in a.factor_curves:
        out.append("")
        out.append(f"memorization vs {fc.factor} per λ level:")
        for lv, f in fc.by_lambda:
            out.extend("  " + s for s in lines_for(f, f"λ = {num(lv)}" if lv is not None else "all"))
    rows = a.best_trials.get("rows") or []
    if rows:
        out.append("")
        out.append(f"best trials by {a.best_trials['by']}:")
        for r in rows[:5]:
            out.append(f"  {r['trial_id']}: λ={num(r.get('lam'))} test {pct(r.get('test_acc'))} "
                       f"val {pct(r.get('val_acc'))} rand {pct(r.get('rand_acc'))}")
    return "\n".join(out)
