"""`rlp-tune query` and the `final` view: the one reader's DuckDB views (rlp_tune/reader.py) plus
the per-trial pivot the analysis and the query command use.

    con = add_final_view(reader.connect("runs/sweep1"))   # views: metrics, trials, final
    con.sql('SELECT "rlp.lam", "test.acc" FROM final ORDER BY 1').show()
    print(run_query("runs/sweep1", "SELECT count(*) FROM metrics", fmt="csv"))

Views (docs/results-schema.md has the columns): `metrics` and `trials` are rlp_tune.reader's (its
docstring says how they dedup, follow a running sweep and name a bad file);
- `final`    one row per trial: the trial's columns plus its last value of every metric at layer ''
             (or 'penultimate'), head -1 (the mean over heads; the mean of the heads when no -1 row
             exists), pivoted to columns named "<split>.<metric>" ("train.acc", "test.acc",
             "train.rand_acc", ...; a row with a protocol, e.g. a probe's, goes to
             "<split>.<metric>[<protocol>]": "test.knn_acc[labels=clean;k=20]"), and `final_epoch`.
Local folders only (DuckDB would need httpfs for object stores).
"""
from __future__ import annotations

import re
from pathlib import Path

from .. import reader
from ..reader import QueryError, fetch, one_line, sql_identifier, sql_literal

FORMATS = ("table", "csv", "json")


def check_select(con, sql: str) -> None:
    """One read-only statement: SELECT (WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SUMMARIZE)."""
    import duckdb
    try:
        stmts = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"query failed: {one_line(e)}") from None
    if len(stmts) != 1:
        raise QueryError(f"query: one SELECT statement expected, got {len(stmts)} statements")
    if stmts[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"query: only SELECT statements are run (read-only), got {stmts[0].type.name}")


def multi_head_groups(con, src: str = "metrics") -> list[tuple[str, str, str]]:
    """(split, metric, layer) combinations that have rows with head != 0 (several heads or a -1 mean).
    Files where every head is 0 are skipped by their Parquet statistics, so this is cheap."""
    rows = fetch(con, f"SELECT DISTINCT split, metric, layer FROM {src} WHERE head <> 0", "rows")
    return sorted(rows)


def headmean_expr(cond: str | None = None) -> str:
    """The head-collapse rule as one aggregate over a group's rows: the head = -1 row (the mean the
    trainer wrote) where present, else the mean of the heads; `cond` restricts both to its rows."""
    c = f"{cond} AND " if cond else ""
    return f"coalesce(max(value) FILTER (WHERE {c}head = -1), avg(value) FILTER (WHERE {c}head <> -1))"


def headmean_sql(src: str, multi: list[tuple[str, str, str]] | None = None, where: str = "true") -> str:
    """Collapse heads: the head = -1 row (mean over heads) where present, else the mean of all heads.
    Output columns: sweep, trial_id, epoch, split, layer, metric, protocol, value.

    `multi` (from multi_head_groups) limits the GROUP BY to the combinations that have several heads;
    every other row passes through (one head, head 0), which is most rows and much cheaper. None =
    group everything."""
    cols = "sweep, trial_id, epoch, split, layer, metric, protocol"
    agg = f"SELECT {cols}, {headmean_expr()} AS value FROM {src} WHERE ({where}) {{cond}} GROUP BY {cols}"
    if multi is None:
        return agg.format(cond="")
    if not multi:
        return f"SELECT {cols}, value FROM {src} WHERE ({where})"
    lst = ", ".join(f"({sql_literal(s)}, {sql_literal(m)}, {sql_literal(l)})" for s, m, l in multi)
    in_multi = f"(split, metric, layer) IN ({lst})"
    return (f"SELECT {cols}, value FROM {src} WHERE ({where}) AND NOT {in_multi}\nUNION ALL\n"
            + agg.format(cond=f"AND {in_multi}"))


def final_metric_names(con, src: str = "metrics") -> list[tuple[str, str, str]]:
    """Distinct (split, metric, protocol) at layer '' or 'penultimate' (the columns of the `final` view)."""
    rows = fetch(con, f"SELECT DISTINCT split, metric, protocol FROM {src} WHERE layer IN ('', 'penultimate') "
                       f"ORDER BY split, metric, protocol", "rows")
    return [(s, m, p or "") for s, m, p in rows if s is not None and m is not None]


def final_column(split: str, metric: str, protocol: str = "") -> str:
    """The `final` view's column of a metric: "test.acc", or "test.knn_acc[labels=clean;k=20]"."""
    return f"{split}.{metric}" + (f"[{protocol}]" if protocol else "")


def last_sql(src: str = "metrics", multi: list[tuple[str, str, str]] | None = None, where: str = "true") -> str:
    """Per (sweep, trial_id, split, layer, metric, protocol): the latest epoch and its value, heads collapsed."""
    return (f"SELECT sweep, trial_id, split, layer, metric, protocol, max(epoch) AS epoch, "
            f"arg_max(value, epoch) AS value "
            f"FROM ({headmean_sql(src, multi, where)}) GROUP BY ALL")


def final_sql(names: list[tuple[str, ...]], src: str = "metrics", trials: str | None = "trials",
              multi: list[tuple[str, str, str]] | None = None, last: str | None = None) -> str:
    """The `final` view: trials ⟗ last value per (split, metric, protocol) at layer ''/'penultimate',
    head-mean, in columns named by `final_column`. `names`: (split, metric, protocol) triples, or
    (split, metric) pairs when `last` has no protocol column. `last`: a relation already holding
    last_sql's rows (then `src`/`multi` are not used)."""
    layers = "layer IN ('', 'penultimate')"
    lst = f"SELECT * FROM {last} WHERE {layers}" if last else last_sql(src, multi, layers)
    with_protocol = any(len(n) == 3 for n in names) or not last
    names3 = [(n[0], n[1], n[2] if len(n) == 3 else "") for n in names]
    cond = (lambda s, m, p: f"split = {sql_literal(s)} AND metric = {sql_literal(m)}"   # noqa: E731
            + (f" AND protocol = {sql_literal(p)}" if with_protocol else ""))
    cols = ",\n  ".join(f"max(value) FILTER (WHERE {cond(s, m, p)}) AS {sql_identifier(final_column(s, m, p))}"
                        for s, m, p in names3)
    # layer '' before 'penultimate' (arg_min over the layer name) when a metric has both
    proto = "protocol, " if with_protocol else ""
    piv = (f"WITH last AS ({lst}),\n"
           f"one AS (SELECT sweep, trial_id, split, metric, {proto}max(epoch) AS epoch, "
           f"arg_min(value, layer) AS value FROM last GROUP BY ALL)\n"
           f"SELECT sweep, trial_id, max(epoch) AS final_epoch{',' if cols else ''}\n  {cols}\n"
           f"FROM one GROUP BY sweep, trial_id")
    if trials is None:
        return piv
    # a full join: a trial whose trials/ row is missing still shows its metrics
    return (f"SELECT coalesce(t.sweep, p.sweep) AS sweep, coalesce(t.trial_id, p.trial_id) AS trial_id, "
            f"t.* EXCLUDE (sweep, trial_id), p.* EXCLUDE (sweep, trial_id) FROM {trials} t "
            f"FULL JOIN ({piv}) p ON t.sweep = p.sweep AND t.trial_id = p.trial_id")


def add_final_view(con):
    """Add the `final` view to a connection of `rlp_tune.reader.connect` (views `metrics`, `trials`)."""
    names = final_metric_names(con)
    multi = multi_head_groups(con)
    fetch(con, lambda: f"CREATE OR REPLACE VIEW final AS {final_sql(names, multi=multi)}", "none")
    return con


# ---- one-call query for the CLI ---------------------------------------------------------------
def query_df(root: str | Path, sql: str):
    """Run `sql` over ROOT's views and return a pandas DataFrame (empty for statements without rows)."""
    import pandas as pd

    con = reader.connect(root)
    if re.search(r"\bfinal\b", sql, re.IGNORECASE):
        add_final_view(con)
    try:
        check_select(con, sql)
        df = fetch(con, sql, "df")
    finally:
        con.close()
    return df if df is not None else pd.DataFrame()


def run_query(root: str | Path, sql: str, fmt: str = "table") -> str:
    """`rlp-tune query ROOT "SQL" --format table|csv|json`: the result as text."""
    if fmt not in FORMATS:
        raise QueryError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if not sql or not sql.strip():
        raise QueryError("query: empty SQL")
    df = query_df(root, sql)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", double_precision=15)
    if df.empty:
        return "(no rows)" if len(df.columns) else ""
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 60):
        return df.to_string(index=False)
