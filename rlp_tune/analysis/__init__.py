"""Analysis of Parquet results: DuckDB queries, curve fits with bootstrap CIs, figures, HTML report.

    from rlp_tune.analysis import run_query, analyze, format_analysis, write_report
    print(run_query("runs/sweep1", 'SELECT "rlp.lam", "test.acc" FROM final', fmt="table"))
    doc = analyze("runs/sweep1"); print(format_analysis(doc))
    write_report("runs/sweep1", "reports/sweep1")        # → reports/sweep1/index.html

Modules: query (DuckDB views), curves (fits), plots (matplotlib figures), report (HTML). Heavy
imports (duckdb, pandas, matplotlib) happen on first use, so `import rlp_tune.analysis` is cheap; the
fits are numpy only (no scipy: its import alone cost ~1 s of every `rlp-tune analyze`).
"""
from __future__ import annotations

__all__ = ["run_query", "connect", "analyze", "format_analysis", "write_report", "load_tables", "QueryError"]


def run_query(root, sql: str, fmt: str = "table") -> str:
    from .query import run_query as f
    return f(root, sql, fmt)


def connect(root, **kw):
    from .query import connect as f
    return f(root, **kw)


def analyze(root, **kw) -> dict:
    from .curves import analyze as f
    return f(root, **kw)


def format_analysis(doc: dict) -> str:
    from .curves import format_analysis as f
    return f(doc)


def load_tables(root, at_epoch=None):
    from .curves import load_tables as f
    return f(root, at_epoch=at_epoch)


def write_report(root, out_dir, **kw):
    from .report import write_report as f
    return f(root, out_dir, **kw)


def __getattr__(name):
    if name == "QueryError":
        from .query import QueryError
        return QueryError
    raise AttributeError(name)
