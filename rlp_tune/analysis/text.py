"""The analysis as text (`rlp-tune analyze ROOT`), each fit in the words of its registered kind (analysis/fits.py).

    print(format_analysis(analyze("runs/sweep1")))
    format_fit("memorization_vs_lambda", fit)     # → list of lines (the fit's registered text, fits.py)

Accuracies print as %, λ values with 3 significant digits, every estimate with its 95% CI.
"""
from __future__ import annotations

from .document import Analysis
from .findings import cell_findings, factor_findings, run_finding
from .fits import fit_lines
from .numtext import num, pct
from .search import SEARCH_DESIGNS, SearchSummary, config_text, search_lines


def format_fit(name: str, fit) -> list[str]:
    """The lines of one fit result (its registered kind's text, analysis/fits.py)."""
    return fit_lines(fit, name)


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
        out.extend(fit_lines(fit, name))
    if a.per_layer:
        out.append("")
        out.append("per layer:")
        for ln, f in a.per_layer.items():
            out.extend("  " + s for s in fit_lines(f, f"memorization_vs_lambda@{ln}"))
    if len(a.cells) > 1:
        out.append("")
        out.append("by design cell:")
        for cell in a.cells:
            out.append(f"  [{cell.key}] {len(cell.trial_ids)} trials")
            for name, f in cell.fits.items():
                out.extend("    " + s for s in fit_lines(f, name))
    for fc in a.factor_curves:
        out.append("")
        out.append(f"memorization vs {fc.factor} per λ level:")
        for lv, f in fc.by_lambda:
            out.extend("  " + s for s in fit_lines(f, f"λ = {num(lv)}" if lv is not None else "all"))
    rows = a.best_trials.get("rows") or []
    if rows:
        out.append("")
        out.append(f"best trials by {a.best_trials['by']}:")
        for r in rows[:5]:
            out.append(f"  {r['trial_id']}: λ={num(r.get('lam'))} test {pct(r.get('test_acc'))} "
                       f"val {pct(r.get('val_acc'))} rand {pct(r.get('rand_acc'))}")
    return "\n".join(out)
