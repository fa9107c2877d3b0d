"""A self-contained HTML report of a sweep's results (`rlp-tune report ROOT --out DIR`).

    from rlp_tune.analysis.report import write_report
    index = write_report("runs/sweep1", "reports/sweep1")   # → reports/sweep1/index.html

One file that opens offline: inline CSS, figures inlined as PNG data URIs, no scripts, no link to
any other file (analysis.json, the same numbers, is written beside it for programs). The first
screen states the findings in words per design cell, each estimate with its 95% CI (findings.py);
a tuning search (tpe / random / qmc) leads instead with the search: what it found, its best trials,
the optimization history and the parameter importances side by side (search.py, search_figures.py),
and its curve fits only for cells with enough λ (else one line); then the figures the design calls
for (figures.py); then a collapsed appendix: every fit's
parameters, fits per layer / cell / group, factor curves, the best and all trials, and the sweep's
space.toml (or the trials' constant and swept config when there is none).
"""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from .. import storage
from ..config import LAM_KEY
from .document import Analysis, analyze_tables
from .findings import cell_findings, factor_findings, run_finding
from .figures import figure_infos
from .render import html_img
from .search import SEARCH_DESIGNS, config_text, search_lines
from .search_figures import search_figure_infos
from .tables import load_tables
from .fits import fit_lines

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1em;margin:.8em 0 .3em}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right;vertical-align:top}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.findings{background:#f5f9ff;border:1px solid #cfe0f7;border-radius:6px;padding:.6em 1.2em;margin:.8em 0}
.findings li{margin:.35em 0;line-height:1.4} li.nf{color:#8a5a00}
.muted{color:#777;font-size:.85em} .note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
.warn{background:#fdecea;border-left:4px solid #d93025;padding:.4em .8em;margin:.4em 0}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
.row{display:flex;gap:1em;align-items:flex-start} .row figure{flex:1 1 0;margin:.4em 0;min-width:0}
details{margin:1.5em 0} summary{cursor:pointer;font-weight:600;font-size:1.1em}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em} .scroll{max-height:40em;overflow:auto}
"""
ACC_COLUMNS = {"rand_acc", "rand_acc_online", "rand_acc_audit", "train_acc", "val_acc", "test_acc", "gap",
               "offline_rand_acc", "chance"}


def _e(v) -> str:
    return html.escape(str(v))


def _sup(text: str) -> str:
    """Escaped text with 10^x written as a superscript."""
    return re.sub(r"10\^(-?[\d.]+)", r"10<sup>\1</sup>", _e(text))


def _cell(col: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if col in ACC_COLUMNS and isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.4g}"
    return _e(v)


def _table(headers, rows, left=()) -> str:
    h = "".join(f'<th class="{"l" if i in left else ""}">{_e(x)}</th>' for i, x in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _df_table(df, cols=None) -> str:
    if df is None or len(df) == 0:
        return '<p class="muted">none</p>'
    cols = [c for c in (cols or list(df.columns)) if c in df.columns]
    rows = [[_cell(c, v) for c, v in zip(cols, r)]
            for r in df[cols].itertuples(index=False)]
    return '<div class="scroll">' + _table(cols, rows, left=(0,)) + "</div>"


def _fit_table(named: list[tuple[str, object]]) -> str:
    rows = []
    for name, f in named:
        lines = fit_lines(f, name)
        lines[0] = lines[0].removeprefix(f"{name}: ").removeprefix(name)   # the name is in column 1
        rows.append([_e(name), "<br>".join(_e(s) for s in lines)])
    return _table(["fit", "result (95% bootstrap CI)"], rows, left=(0, 1))


def _figure(info) -> str:
    return f"<figure>{html_img(info)}<figcaption class='muted'>{_e(info.title)}</figcaption></figure>"


def _search(a: Analysis) -> str:
    """A tuning search's first screen: what it found and the best trials."""
    s = a.search
    out = ["<h2>Search</h2>", "<div class='findings'><ul>"
           + "".join(f"<li>{_e(x)}</li>" for x in search_lines(s)) + "</ul></div>"]
    best = s.best(5)
    if not best:
        return "\n".join(out)
    rows = [[str(t.number), _e(t.trial_id), _cell("val_acc", t.value) if s.metric.endswith("acc") else _cell("", t.value),
             _cell("test_acc", t.test_acc), f"{t.epochs}/{t.target}", _e(config_text(t.params))] for t in best]
    out.append(f"<h3>Best {len(best)} trials by {_e(s.metric)} <span class='muted'>(of the trials that ran to the "
               "end; one trial per config, no CI)</span></h3>")
    out.append(_table(["#", "trial", s.metric, "test.acc", "epochs", "config"], rows, left=(1, 5)))
    return "\n".join(out)


def _findings(a: Analysis) -> str:
    search = a.design.kind in SEARCH_DESIGNS
    out = ["<h2>Curve fits</h2>" if search else "<h2>Findings</h2>"]
    if not a.cells:
        out.append("<p class='muted'>none: no complete trial with metrics.</p>")
    if a.no_fits_line():     # a search without cells to fit: one line, not a block of "not identified" per cell
        out.append(f"<p class='muted'>{_e(a.no_fits_line())}</p>")
    for cell in a.shown_cells:
        found = cell_findings(cell) or [f for f in [run_finding(a)] if f]
        items = "".join(f'<li class="{"" if f.identified else "nf"}">{_sup(f.text)}</li>' for f in found)
        head = f"<h3>{_e(cell.key)} <span class='muted'>({len(cell.trial_ids)} trials)</span></h3>" \
            if len(a.shown_cells) > 1 else ""
        out.append(f"<div class='findings'>{head}<ul>{items or '<li>no fits for these trials</li>'}</ul></div>")
    factors = [f for f in factor_findings(a) if f.identified or not search]
    if factors:
        items = "".join(f'<li class="{"" if f.identified else "nf"}">{_sup(f.text)}</li>' for f in factors)
        out.append(f"<div class='findings'><h3>Factors</h3><ul>{items}</ul></div>")
    if a.evasion.flagged:
        rows = "; ".join(f"{r.why} at {r.layer}" + (f", λ = {r.lam:.3g}" if r.lam is not None else "")
                         + (f" [{r.cell}]" if r.cell else "") for r in a.evasion.rows[:8])
        out.append(f"<p class='warn'>Possible evasion of the co-trained heads ({len(a.evasion.rows)} flag(s)): "
                   f"{_e(rows)}. The online rand_acc may understate memorization.</p>")
    return "\n".join(out)


def _config_section(root: str, d, varying: list[str]) -> str:
    text = storage.read_text(root, "space.toml")
    if text is not None:
        return f"<h3>Search space (space.toml)</h3><pre>{_e(text)}</pre>"
    return f"<h3>Config</h3><p>swept: {_e(', '.join(varying) or 'nothing')}</p>"


def _appendix(a: Analysis, root: str) -> str:
    out = ["<details><summary>Appendix: fitted parameters, trials and config</summary>"]
    out.append("<h3>Fits over all complete trials</h3>")
    out.append(_fit_table(list(a.fits.items())))
    if a.fits.get("onset") is not None:
        out.append(f'<p class="muted">{_e(a.fits["onset"].definition)}</p>')
    if len(a.cells) > 1:
        out.append("<h3>Fits per design cell</h3>")
        out.append(_fit_table([(f"[{c.key}] {k}", f) for c in a.cells for k, f in c.fits.items()]))
    if a.per_layer:
        out.append("<h3>Memorization vs λ per layer</h3>")
        out.append(_fit_table([(f"memorization_vs_lambda@{ln}", f) for ln, f in a.per_layer.items()]))
    for fc in a.factor_curves:
        out.append(f"<h3>Memorization vs {_e(fc.factor)} per λ level</h3>")
        out.append(_fit_table([("all" if lv is None else f"λ = {lv:.3g}", f) for lv, f in fc.by_lambda]))
    if a.search is not None:
        s = a.search
        out.append(f"<h3>Search: every trial by number ({_e(s.source)})</h3>")
        if s.source_note:
            out.append(f"<p class='muted'>{_e(s.source_note)}</p>")
        out.append(_table(["#", "trial", "state", s.metric, "test.acc", "epochs", "config"],
                          [[str(t.number), _e(t.trial_id), t.state, _cell("val_acc" if s.metric.endswith("acc") else "",
                                                                          t.value),
                            _cell("test_acc", t.test_acc), f"{t.epochs}/{t.target}", _e(config_text(t.params))]
                           for t in s.trials], left=(1, 2, 6)))
    d = a.trials
    varying = list(a.varying)
    best = a.best_trials
    out.append(f"<h3>Best trials (by {_e(best.get('by', '—'))})</h3>")
    if best.get("by") == "test_acc":
        out.append("<p class='muted'>no validation split recorded: ranked by test accuracy (do not select "
                   "hyperparameters on this).</p>")
    import pandas as pd
    out.append(_df_table(pd.DataFrame(best.get("rows") or [])))
    cols = ["trial_id", "status", "final_epoch", "complete", "lam"] + [c for c in varying if c != LAM_KEY] + \
        ["rand_acc"] + (["rand_acc_online"] if a.memorization_metric != "rand_acc" else []) + \
        ["rand_acc_audit", "train_acc", "val_acc", "test_acc", "gap"]
    out.append(f"<h3>All trials ({len(d)})</h3>")
    out.append(_df_table(d.sort_values("trial_id"), [c for c in cols if c in d.columns and d[c].notna().any()]))
    out.append(_config_section(root, d, varying))
    out.append("</details>")
    return "\n".join(out)


def write_report(root: str | Path, out_dir: str | Path, *, n_boot: int = 200, seed: int = 0,
                 at_epoch: int | None = None) -> Path:
    """Analyze ROOT (a folder or a URI) and write OUT_DIR/index.html (self-contained) and
    analysis.json; returns the index path."""
    root, out = str(root), Path(out_dir)
    tables = load_tables(root, at_epoch=at_epoch)          # bad input fails here, before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    a = analyze_tables(tables, n_boot=n_boot, seed=seed)
    (out / "analysis.json").write_text(json.dumps(a.to_dict(), indent=1))
    ct = a.curve_trials
    status = ", ".join(f"{k} {v}" for k, v in a.status.items()) or "no status"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rlp_tune report: {_e(storage.name(root))}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>rlp_tune report: {_e(storage.name(root))}</h1>",
             f"<p class='muted'>{_e(storage.display(root))} · design: {_e(a.design.kind)}"
             + (f" (cells: {_e(', '.join(a.design.cell_factors))})" if a.design.cell_factors and a.shown_cells else "")
             + f" · {a.n_trials} trials ({_e(status)}); {ct['used']} complete trials in the curve fits"
             + (f", {ct['left_out']} left out (" + _e("; ".join(
                 k if len(ct["reasons"]) == 1 else f"{v} {k}" for k, v in ct["reasons"].items())) + ")"
                if ct["left_out"] else "")
             + f" · memorization: train.{_e(a.memorization_metric)} at {_e(a.primary_layer)}"
             + (f", chance 1/n = {100 * a.chance:.3g}%" if a.chance else "")
             + f" · 95% CIs: percentile bootstrap over trials ({n_boot} resamples, seed {seed})</p>"]
    search = search_figure_infos(a.search)
    first = [i for i in search if i.name in ("search_history", "search_importance")]
    row = "<div class='row'>" + "".join(_figure(i) for i in first) + "</div>" if first else ""
    if a.search is not None:
        parts.append(_search(a))
        if not a.shown_cells:    # no cell findings to lead with: the history and importances come next
            parts.append(row)
    parts.append(_findings(a))
    # a search's notes are about the curve fits it (mostly) has none of: small print under that line
    note_class = "muted" if a.search is not None and not a.shown_cells else "note"
    parts += [f"<p class='{note_class}'>note: {_e(n)}</p>" for n in a.notes]
    if a.search is not None and a.shown_cells:      # a search with cells to fit: their findings first
        parts.append(row)
    infos = [i for i in search if i not in first] + figure_infos(tables, a)
    if infos:
        parts.append("<h2>Figures</h2>")
        for info in infos:
            parts.append(_figure(info))
    parts.append(_appendix(a, root))
    parts.append("<p class='muted'>analysis.json beside this page holds every number above "
                 "(docs/analysis.md describes it).</p></body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
