"""A self-contained HTML report of a sweep's results (`rlp-tune report ROOT --out DIR`).

    from rlp_tune.analysis import write_report
    index = write_report("runs/sweep1", "reports/sweep1")   # → reports/sweep1/index.html

The folder gets index.html, the figures as PNG (+ SVG) beside it, referenced by relative paths,
and analysis.json (the `analyze` document). It opens from disk with no server and no network
(inline CSS, no scripts). Sections: summary, figures, fitted parameters with 95% bootstrap CIs
(or the reason a fit was not made), fits per layer and per group, the best trials, all trials with
their swept config and final metrics, and the sweep's config (ROOT/sweep.toml or ROOT/space.toml
when present, else the trials' constant and swept config columns).
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .nf{color:#a33} .ok{color:#2a6} pre{background:#f7f7f7;padding:1em;overflow:auto}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee} .muted{color:#777;font-size:.85em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
.scroll{max-height:40em;overflow:auto}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(key, x) for x in v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v)
    k = key.lower()
    is_lambda = k.startswith(("lambda", "log10_", "gap_lambda"))
    if ("acc" in k or "gap" in k or k == "chance") and not is_lambda and "rho" not in k:
        return f"{100 * v:.2f}%"
    return f"{v:.4g}"


def _table(headers, rows, left=()) -> str:
    h = "".join(f'<th class="{"l" if i in left else ""}">{_e(x)}</th>' for i, x in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _fit_rows(name: str, fit: dict) -> list[list[str]]:
    if not isinstance(fit, dict):
        return []
    if fit.get("fitted") is False:
        return [[_e(name), f'<span class="nf">not fitted: {_e(fit.get("reason"))}</span>', "", "", ""]]
    rows = []
    ci = fit.get("ci") or {}
    for k, v in (fit.get("params") or {}).items():
        if isinstance(v, list):
            continue
        c = ci.get(k)
        rows.append([_e(name), _e(k), _fmt(k, v), _fmt(k, c[0]) if c else "—", _fmt(k, c[1]) if c else "—"])
    for k in ("y", "note", "verdict", "gap_verdict", "direction", "baseline_kind", "at_boundary", "model", "n_points", "r2",
              "n_trials", "n_onset", "n_divergence", "n_both"):
        if k in fit:
            rows.append([_e(name), _e(k), _fmt(k, fit[k]), "", ""])
    if fit.get("baseline"):
        b = fit["baseline"]
        c = b.get("ci")
        rows.append([_e(name), f"baseline (λ = 0, {b['n']} trials)", _fmt("acc", b["mean"]),
                     _fmt("acc", c[0]) if c else "—", _fmt("acc", c[1]) if c else "—"])
    return rows


def _fits_section(doc: dict) -> str:
    out = []
    rows = []
    for name, fit in doc.get("fits", {}).items():
        if name == "onset":
            for k in ("baseline", "all"):
                rows += _fit_rows(f"onset ({k})", fit.get(k))
            continue
        if "layer_profile" in name or name.startswith("rand_acc_vs_"):
            continue
        rows += _fit_rows(name, fit)
    out.append(_table(["fit", "parameter", "value", "95% CI low", "95% CI high"], rows, left=(0, 1)))
    onset_def = (doc.get("fits", {}).get("onset") or {}).get("definition")
    if onset_def:
        out.append(f'<p class="muted">{_e(onset_def)}</p>')
    mg = doc.get("fits", {}).get("memorization_vs_generalization") or {}
    if mg.get("verdict_rule"):
        out.append(f'<p class="muted">verdict rule: {_e(mg["verdict_rule"])}</p>')
    for name, fit in doc.get("fits", {}).items():
        if not name.startswith("rand_acc_vs_"):
            continue
        out.append(f"<h3>{_e(name)}</h3>")
        if not fit.get("fitted"):
            out.append(f'<p class="nf">not fitted: {_e(fit.get("reason"))}</p>')
            continue
        trs = []
        for i, lv in enumerate(fit["levels"]):
            c = fit["rand_acc_ci"][i]
            trs.append([_fmt("x", lv), _fmt("acc", fit["rand_acc_mean"][i]), _fmt("acc", c[0]) if c else "—",
                        _fmt("acc", c[1]) if c else "—", str(fit["count"][i]),
                        _fmt("acc", fit["chance"][i]) if fit.get("chance") else ""])
        out.append(_table([fit["factor"], "rand_acc", "CI low", "CI high", "trials", "chance"], trs))
        out.append(_table(["fit", "parameter", "value", "95% CI low", "95% CI high"], _fit_rows(name, fit), left=(0, 1)))
        if "restricted_to_lambda_range" in fit:
            from .curves import _lam_text
            out.append(f'<p class="muted">least-regularized trials only: '
                       f'{_e(_lam_text(fit["restricted_to_lambda_range"]))}</p>')
    return "\n".join(out)


def _per_layer_section(doc: dict) -> str:
    pl = doc.get("per_layer") or {}
    if not pl:
        return ""
    rows = []
    for ln, fs in pl.items():
        f = fs.get("memorization_vs_lambda", {})
        if not f.get("fitted"):
            rows.append([_e(ln), f'<span class="nf">not fitted: {_e(f.get("reason"))}</span>', "", "", ""])
            continue
        p, ci = f["params"], f.get("ci") or {}
        c = ci.get("lambda50")
        rows.append([_e(ln), _fmt("lambda50", p["lambda50"]) + (f" [{_fmt('l', c[0])}, {_fmt('l', c[1])}]" if c else ""),
                     _fmt("acc", p["rand_acc_high"]), _fmt("acc", p["rand_acc_low"]), _fmt("x", p["slope"])])
    return "<h2>Memorization vs λ per layer</h2>" + _table(
        ["layer", "λ50 [95% CI]", "rand_acc (small λ)", "rand_acc (large λ)", "slope / decade"], rows, left=(0,))


def _groups_section(doc: dict) -> str:
    g = doc.get("groups") or {}
    if not g:
        return ""
    rows = []
    for key, grp in g.items():
        for name in ("memorization_vs_lambda", "generalization_vs_lambda", "gap_vs_lambda"):
            rows += _fit_rows(f"[{key}] {name}", grp.get(name))
    return "<h2>λ fits per group</h2>" + _table(["fit", "parameter", "value", "95% CI low", "95% CI high"],
                                                 rows, left=(0, 1))


def _df_table(df, max_rows: int | None = None) -> str:
    if df is None or len(df) == 0:
        return '<p class="muted">none</p>'
    d = df if max_rows is None else df.head(max_rows)
    rows = [[_fmt(c, v) if not isinstance(v, str) else _e(v) for c, v in zip(d.columns, r)] for r in d.itertuples(index=False)]
    return '<div class="scroll">' + _table(list(d.columns), rows, left=(0,)) + "</div>"


def _config_section(root: Path, trials, varying: list[str]) -> str:
    for name in ("sweep.toml", "space.toml"):
        p = root / name
        if p.is_file():
            return f"<h2>Sweep config ({_e(name)})</h2><pre>{_e(p.read_text())}</pre>"
    if trials is None or not len(trials):
        return ""
    cfg_cols = [c for c in trials.columns if "." in c and not c.startswith("version.")]
    const = [(c, trials[c].dropna().iloc[0]) for c in cfg_cols if c not in varying and trials[c].notna().any()]
    rows = [[_e(c), _e(v)] for c, v in const]
    return ("<h2>Config (from the trials)</h2>"
            f"<p>swept: {_e(', '.join(varying) or 'nothing')}</p>"
            + _table(["key", "value (same in every trial)"], rows, left=(0, 1)))


def write_report(root: str | Path, out_dir: str | Path, *, n_boot: int = 200, seed: int = 0,
                 at_epoch: int | None = None) -> Path:
    """Analyze ROOT and write OUT_DIR/index.html with its figures beside it; returns the index path."""
    from .curves import analyze_tables, load_tables, per_trial, varying_columns
    from .plots import make_figures

    root, out = Path(root), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = load_tables(root, at_epoch=at_epoch)
    doc = analyze_tables(tables, n_boot=n_boot, seed=seed)
    (out / "analysis.json").write_text(json.dumps(doc, indent=1))
    figs = make_figures(tables, doc, out)
    d = per_trial(tables)
    trials = tables.trials if len(tables.trials) else tables.final
    varying = varying_columns(trials)

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>rlp_tune report: {_e(root.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>rlp_tune report: {_e(root)}</h1>",
             f"<p>sweep(s): {_e(', '.join(doc.get('sweeps') or []) or '—')}; trials: {doc['n_trials']} "
             f"({doc['n_trials_with_metrics']} with metrics; "
             + _e(", ".join(f"{k} {v}" for k, v in (doc.get("status") or {}).items()) or "no status")
             + f"); primary layer: {_e(doc.get('primary_layer'))}; chance 1/n: {_fmt('chance', doc.get('chance'))}</p>",
             "<p class='muted'>Accuracies are in %. Confidence intervals: 95% percentile bootstrap over trials "
             f"({n_boot} resamples, seed {seed}).</p>"]
    parts += [f"<p class='note'>note: {_e(n)}</p>" for n in doc.get("notes") or []]
    if figs:
        parts.append("<h2>Figures</h2>")
        for name, png in figs.items():
            parts.append(f"<figure><img src='{_e(png.name)}' alt='{_e(name)}'>"
                         f"<figcaption class='muted'>{_e(name)} (<a href='{_e(png.with_suffix('.svg').name)}'>SVG</a>)"
                         "</figcaption></figure>")
    parts.append("<h2>Fitted parameters</h2>")
    parts.append(_fits_section(doc))
    parts.append(_per_layer_section(doc))
    parts.append(_groups_section(doc))
    best = doc.get("best_trials") or {}
    parts.append(f"<h2>Best trials (by {_e(best.get('by', '—'))})</h2>")
    if best.get("by") == "test_acc":
        parts.append("<p class='muted'>no validation split recorded: ranked by test accuracy (do not select "
                     "hyperparameters on this).</p>")
    import pandas as pd
    parts.append(_df_table(pd.DataFrame(best.get("rows") or [])))
    cols = ["trial_id", "status", "final_epoch", "lam"] + [c for c in varying if c in d.columns and c != "rlp.lam"] + \
        ["rand_acc", "train_acc", "val_acc", "test_acc", "gap"]
    parts.append(f"<h2>All trials ({len(d)})</h2>")
    parts.append(_df_table(d[[c for c in cols if c in d.columns and d[c].notna().any()]].sort_values("trial_id")))
    parts.append(_config_section(root, trials, varying))
    parts.append("<p class='muted'>analysis.json beside this page holds every number above.</p></body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
