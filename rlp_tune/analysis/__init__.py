"""Analysis of Parquet results: DuckDB queries, fits per design cell with bootstrap CIs, figures, HTML report.

    from rlp_tune.analysis import run_query, analyze, format_analysis, write_report
    print(run_query("runs/sweep1", 'SELECT "rlp.lam", "test.acc" FROM final', fmt="table"))
    a = analyze("runs/sweep1"); print(format_analysis(a)); doc = a.to_dict()
    write_report("runs/sweep1", "reports/sweep1")        # → reports/sweep1/index.html (self-contained)

Modules, by layer (each imports only the ones above it):
  query      the `final` view and `rlp-tune query`, over rlp_tune.reader's DuckDB views
  tables     load the frames once; one row per trial          design   the design and its cells
  numerics   vendored, batched numerics (LM, B-splines, ranks) bootstrap  CIs, seeded generators
  identify   when a fit is identified; NotIdentified
  fit_lambda / fit_memgen / fit_factors / fit_onset / evasion   the fits, typed results
  search     a tuning search (tpe / random / qmc): best trials, history, importances (optuna.journal)
  document   Analysis: every fit, per cell (`analyze`)        findings / text   words and text
  figures    FigureInfo per figure (numbers only)             search_figures   the search's FigureInfos
  render     matplotlib (optional ax)
  report     the HTML page
Heavy imports (duckdb, pandas, matplotlib) happen on first use, so `import rlp_tune.analysis` is cheap; the
fits are numpy only (no scipy: its import alone cost ~1 s of every `rlp-tune analyze`).
docs/analysis.md documents the JSON document.
"""
from __future__ import annotations

__all__ = ["run_query", "connect", "analyze", "format_analysis", "write_report", "load_tables", "QueryError"]


def run_query(root, sql: str, fmt: str = "table") -> str:
    from .query import run_query as f
    return f(root, sql, fmt)


def connect(root, **kw):
    from .query import connect as f
    return f(root, **kw)


def analyze(root, **kw):
    """The `Analysis` of ROOT (document.analyze); `.to_dict()` is the JSON document."""
    from .document import analyze as f
    return f(root, **kw)


def format_analysis(a) -> str:
    from .text import format_analysis as f
    return f(a)


def load_tables(root, at_epoch=None):
    from .tables import load_tables as f
    return f(root, at_epoch=at_epoch)


def write_report(root, out_dir, **kw):
    from .report import write_report as f
    return f(root, out_dir, **kw)


def __getattr__(name):
    if name == "QueryError":
        from .query import QueryError
        return QueryError
    raise AttributeError(name)
