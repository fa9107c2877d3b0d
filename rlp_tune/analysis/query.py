"""DuckDB over a results folder's Parquet files: deduplicated views and a one-call query runner.

    con = connect("runs/sweep1")                       # views: metrics, trials, final
    con.sql('SELECT "rlp.lam", "test.acc" FROM final ORDER BY 1').show()
    print(run_query("runs/sweep1", "SELECT count(*) FROM metrics", fmt="csv"))

Views (docs/results-schema.md has the columns):
- `metrics`  long format, one row per (sweep, trial_id, epoch, split, layer, head, metric, protocol),
             the training rows and those of `rlp-tune probe` / `offline-rlp`: files are
             read with read_parquet over globs (union_by_name, no hive partitioning) and duplicate
             keys dropped (a crash between compaction and the removal of the per-epoch files leaves
             the same rows twice; final.parquet wins, as in rlp_tune.results.dedup_table). Only
             trial folders holding both kinds of file pay for a dedup pass (`metrics_sql`).
- `trials`   one row per trial: status, epochs_done, seed, versions and every flat config key as a
             column named by its dotted key (quote it in SQL: "rlp.lam").
- `final`    one row per trial: the trial's columns plus its last value of every metric at layer ''
             (or 'penultimate'), head -1 (the mean over heads; the mean of the heads when no -1 row
             exists), pivoted to columns named "<split>.<metric>" ("train.acc", "test.acc",
             "train.rand_acc", ...; a row with a protocol, e.g. a probe's, goes to
             "<split>.<metric>[<protocol>]": "test.knn_acc[labels=clean;k=20]"), and `final_epoch`.

Views re-read the files at every query, so they work while a sweep is still writing: per-epoch
files are replaced by atomic renames, and a file listed by a glob that vanishes before it is read
(compaction removes per-epoch files) makes the query retry once. A truncated or corrupt file gives
a `ResultsError` naming the file. Local folders only (DuckDB would need httpfs for object stores).
"""
from __future__ import annotations

import re
import time
import weakref
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..results import METRIC_KEY, METRIC_SCHEMA, ResultsError
from ..storage import is_remote

EXTRA_KINDS = ("offline_epoch_", "probe_epoch_")   # rows added after training (results.ResultWriter kinds)

FORMATS = ("table", "csv", "json")
_DUCK_TYPES = {"string": "VARCHAR", "int32": "INTEGER", "double": "DOUBLE"}
_ROOTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()  # connection → root, layout


class QueryError(UserError, ValueError):
    """The SQL itself is wrong (parse / bind / catalog error, or not a read-only SELECT); one line."""


# ---- connection ------------------------------------------------------------------------------
def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _root(root: str | Path) -> Path:
    if is_remote(root):
        raise ResultsError(f"{root}: only local results folders can be queried (copy or mount it first)")
    p = Path(root)
    if not p.is_dir():
        raise ResultsError(f"{p}: results folder not found")
    return p.resolve()     # absolute: DuckDB's allowed_directories compares paths


def require_results(root: str | Path) -> Path:
    """ROOT as a results folder holding at least one trial's rows (else ResultsError)."""
    r = _root(root)
    if not _files(r, "metrics") and not _files(r, "trials"):
        raise ResultsError(f"no results in {root} (no Parquet files under {Path(root) / 'parquet'})")
    return r


def _sandbox(con, r: Path) -> None:
    """Files only under ROOT, no extensions, no attached databases; settings locked once the
    views exist (a query cannot undo this)."""
    con.execute(f"SET allowed_directories = [{_sql_str(str(r) + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")


def check_select(con, sql: str) -> None:
    """One read-only statement: SELECT (WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SUMMARIZE)."""
    import duckdb
    try:
        stmts = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"query failed: {_one_line(e)}") from None
    if len(stmts) != 1:
        raise QueryError(f"query: one SELECT statement expected, got {len(stmts)} statements")
    if stmts[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"query: only SELECT statements are run (read-only), got {stmts[0].type.name}")


def _files(root: Path, kind: str) -> list[Path]:
    pattern = "*/*.parquet" if kind == "metrics" else "*.parquet"
    d = root / "parquet" / kind
    return sorted(d.glob(pattern)) if d.is_dir() else []


def _empty_metrics_sql() -> str:
    cols = ", ".join(f"NULL::{_DUCK_TYPES[str(f.type)]} AS {f.name}" for f in METRIC_SCHEMA)
    return f"SELECT {cols} WHERE false"


def _read(src: str) -> str:
    return f"read_parquet({src}, union_by_name=true, hive_partitioning=false)"


def _conformed(src: str) -> str:
    """SELECT of the metric columns from read_parquet(src); version-1 files (no `protocol` column)
    read as protocol '' (an empty relation supplies the column when no file has it; any other
    missing column stays a bind error, which names the file)."""
    cols = ", ".join("coalesce(protocol, '') AS protocol" if c == "protocol" else c for c in METRIC_SCHEMA.names)
    return f"SELECT {cols} FROM (SELECT NULL::VARCHAR AS protocol WHERE false UNION ALL BY NAME SELECT * FROM {_read(src)})"


def metrics_sql(root: Path) -> str:
    """The deduplicated `metrics` relation for ROOT's current file layout.

    Duplicate keys arise only in a trial folder holding both final.parquet and epoch_*.parquet (a
    crash between compaction and the removal of the per-epoch files, or a resumed trial still
    running): there, epoch-file rows whose key is already in final.parquet are dropped (final wins,
    as in rlp_tune.results.dedup_table). Folders without overlap need no dedup pass, which keeps a
    finished sweep a plain scan (see bench/analysis.py). Rows of `rlp-tune probe` / `offline-rlp`
    (probe_epoch_* / offline_epoch_* files) are part of the view; where a trial has them, training
    rows with the same key (e.g. a probe rerun with the trainer's own protocol) give way to them.
    The layout is listed when the SQL is made; `_fetch` re-lists before each query on connections
    made by `connect`.
    """
    files = _files(root, "metrics")
    finals = {f.parent for f in files if f.name == "final.parquet"}
    epoch_dirs = {f.parent for f in files if f.name.startswith("epoch_")}
    extra_dirs = {f.parent for f in files if f.name.startswith(EXTRA_KINDS)}
    if not files:
        return _empty_metrics_sql()
    base = root / "parquet" / "metrics"
    key = ", ".join(METRIC_KEY)
    parts = []
    if finals:
        parts.append(_conformed(_sql_str(str(base / '*' / 'final.parquet'))))
    if epoch_dirs:
        ep = _conformed(_sql_str(str(base / '*' / 'epoch_*.parquet')))
        overlap = sorted(finals & epoch_dirs)
        if overlap:
            lst = "[" + ", ".join(_sql_str(str(d / "final.parquet")) for d in overlap) + "]"
            ep = (f"SELECT {', '.join('e.' + c for c in METRIC_SCHEMA.names)} FROM ({ep}) e "
                  f"ANTI JOIN ({_conformed(lst)}) f USING ({key})")
        parts.append(ep)
    training = "\nUNION ALL\n".join(parts)
    if not extra_dirs:
        return training
    extras = " UNION ALL ".join(_conformed(_sql_str(str(base / "*" / f"{k}*.parquet"))) for k in EXTRA_KINDS
                                if any(f.name.startswith(k) for f in files))
    if parts:
        training = (f"SELECT {', '.join('t.' + c for c in METRIC_SCHEMA.names)} FROM ({training}) t "
                    f"ANTI JOIN ({extras}) x USING ({key})")
        return f"{training}\nUNION ALL\n{extras}"
    return extras


def _layout(root: Path) -> tuple:
    files = _files(root, "metrics")
    finals = frozenset(f.parent.name for f in files if f.name == "final.parquet")
    epochs = frozenset(f.parent.name for f in files if f.name.startswith("epoch_"))
    extras = frozenset(f.name.partition("epoch_")[0] for f in files if f.name.startswith(EXTRA_KINDS))
    return (bool(finals), bool(epochs), finals & epochs, extras, bool(_files(root, "trials")))


def multi_head_groups(con, src: str = "metrics") -> list[tuple[str, str, str]]:
    """(split, metric, layer) combinations that have rows with head != 0 (several heads or a -1 mean).
    Files where every head is 0 are skipped by their Parquet statistics, so this is cheap."""
    rows = _fetch(con, f"SELECT DISTINCT split, metric, layer FROM {src} WHERE head <> 0", "rows")
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
    lst = ", ".join(f"({_sql_str(s)}, {_sql_str(m)}, {_sql_str(l)})" for s, m, l in multi)
    in_multi = f"(split, metric, layer) IN ({lst})"
    return (f"SELECT {cols}, value FROM {src} WHERE ({where}) AND NOT {in_multi}\nUNION ALL\n"
            + agg.format(cond=f"AND {in_multi}"))


def final_metric_names(con, src: str = "metrics") -> list[tuple[str, str, str]]:
    """Distinct (split, metric, protocol) at layer '' or 'penultimate' (the columns of the `final` view)."""
    rows = _fetch(con, f"SELECT DISTINCT split, metric, protocol FROM {src} WHERE layer IN ('', 'penultimate') "
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
    cond = (lambda s, m, p: f"split = {_sql_str(s)} AND metric = {_sql_str(m)}"   # noqa: E731
            + (f" AND protocol = {_sql_str(p)}" if with_protocol else ""))
    cols = ",\n  ".join(f"max(value) FILTER (WHERE {cond(s, m, p)}) AS \"{final_column(s, m, p)}\""
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


def _trials_sql(root: Path) -> str:
    if not _files(root, "trials"):
        return ("SELECT NULL::VARCHAR AS sweep, NULL::VARCHAR AS trial_id, NULL::VARCHAR AS status, "
                "NULL::BIGINT AS epochs_done WHERE false")
    # a trial row may exist twice (compacted _all.parquet + a later per-trial rewrite): newest wins
    return (f"SELECT * FROM {_read(_sql_str(str(root / 'parquet' / 'trials' / '*.parquet')))} "
            "QUALIFY row_number() OVER (PARTITION BY sweep, trial_id ORDER BY updated DESC) = 1")


def _make_views(con, r: Path) -> None:
    con.execute(f"CREATE OR REPLACE VIEW metrics AS {metrics_sql(r)}")
    con.execute(f"CREATE OR REPLACE VIEW trials AS {_trials_sql(r)}")


def connect(root: str | Path, *, final: bool = True, live: bool = True):
    """A DuckDB connection with the views `metrics`, `trials` and (if `final`) `final`.

    live: re-list the files before each query (through `_fetch`) and remake the views when the
    layout changed — for a sweep that is still running; one-shot readers (load_tables) pass False
    and rely on the retry alone. The views re-read the files at every query.
    """
    import duckdb

    r = _root(root)
    con = duckdb.connect()
    _sandbox(con, r)
    con.execute("SET enable_progress_bar = false")
    # footers read when a view binds are reused by the scans that follow (1000s of small files)
    con.execute("SET parquet_metadata_cache = true")
    # views bind (and read every file's schema) when made: _fetch makes them, so a bad file is named
    _ROOTS[con] = {"root": r, "layout": None, "live": live}
    _fetch(con, "SELECT 1", "none")     # layout None → _fetch lists the files and makes the views
    if final:
        names = final_metric_names(con)
        multi = multi_head_groups(con)
        _fetch(con, lambda: f"CREATE OR REPLACE VIEW final AS {final_sql(names, multi=multi)}", "none")
    con.execute("SET lock_configuration = true")
    return con


# ---- executing with retry and diagnosis ------------------------------------------------------
def _fetch(con, sql, kind: str = "df", params: Any = None):
    """Run `sql` (a string, or a callable making it afresh for a retry) and fetch the result as 'df' (pandas), 'arrow', 'rows' or 'none'.

    On connections from `connect`, the views are remade first if the file layout changed (a trial
    compacted, a new trial started). A file that vanished between listing and reading (a sweep still
    running) → the views are remade and the query retried once; a file that cannot be read →
    ResultsError naming it; a parse / bind error → QueryError (one line).
    """
    import duckdb

    state = _ROOTS.get(con)
    for attempt in (0, 1):
        try:
            if state is not None and (state["live"] or state["layout"] is None):
                layout = _layout(state["root"])
                if layout != state["layout"]:
                    _make_views(con, state["root"])
                    state["layout"] = layout
            text = sql() if callable(sql) else sql
            # con.sql runs statements without a result (CREATE, SET) at once and returns None
            rel = con.sql(text, params=params) if params is not None else con.sql(text)
            if rel is None:
                return None
            if kind == "none":
                rel.fetchall()
                return None
            if kind == "df":
                return rel.df()
            if kind == "arrow":
                return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
            if kind == "rows":
                return rel.fetchall()
            raise ValueError(f"kind: {kind!r}")
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException) as e:
            bad = find_bad_file(state["root"]) if state and isinstance(e, duckdb.BinderException) else None
            if bad:   # a results file without a column the views need, not the user's SQL
                raise ResultsError(bad) from None
            raise QueryError(f"query failed: {_one_line(e)}") from None
        except duckdb.PermissionException as e:
            raise QueryError(f"query: outside the results folder or not read-only: {_one_line(e)}") from None
        except duckdb.Error as e:
            if attempt == 0 and _vanished(e):
                time.sleep(0.05)
                if state is not None:
                    state["layout"] = None  # force new views on the retry
                continue
            root = state["root"] if state else None
            bad = find_bad_file(root)
            if bad:
                raise ResultsError(bad) from None
            if _vanished(e):  # vanished twice: the sweep is churning; say so
                raise ResultsError(f"{root}: results files changed while reading, twice; try again "
                                   f"({_one_line(e)})") from None
            raise ResultsError(f"{root}: query over the results failed: {_one_line(e)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _one_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _vanished(e: Exception) -> bool:
    msg = str(e).lower()
    return ("no such file" in msg or "no files found" in msg or "cannot open file" in msg
            or "could not open file" in msg or "does not exist" in msg)


def find_bad_file(root: str | Path | None) -> str | None:
    """'<file>: not a readable Parquet file (<reason>)' for the first unreadable file under
    ROOT/parquet, or None when every file reads (files that vanish meanwhile are skipped)."""
    if root is None:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    r = Path(root)
    need = {"metrics": (set(METRIC_KEY) - {"protocol"}) | {"value"}, "trials": {"sweep", "trial_id"}}  # v1: no protocol
    for kind in ("metrics", "trials"):
        for f in _files(r, kind):
            try:
                names = set(pq.read_table(f).column_names)
            except FileNotFoundError:
                continue
            except (pa.ArrowException, OSError, ValueError) as e:
                if not f.exists():
                    continue
                return f"{f}: not a readable Parquet file ({_one_line(e)})"
            missing = sorted(need[kind] - names)
            if missing:
                return f"{f}: not an rlp_tune {kind} file (no column {', '.join(missing)})"
    return None


# ---- one-call query for the CLI ---------------------------------------------------------------
def query_df(root: str | Path, sql: str):
    """Run `sql` over ROOT's views and return a pandas DataFrame (empty for statements without rows)."""
    import pandas as pd

    con = connect(root, final=bool(re.search(r"\bfinal\b", sql, re.IGNORECASE)))
    try:
        check_select(con, sql)
        df = _fetch(con, sql, "df")
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


# ---- public doors for the other analysis modules -----------------------------------------------
def fetch(con, sql, kind: str = "df", params: Any = None):
    """Run SQL on a `connect` connection with the retry and diagnosis of `_fetch` (same arguments)."""
    return _fetch(con, sql, kind, params)


def sql_literal(s: str) -> str:
    """`s` as a quoted SQL string literal."""
    return _sql_str(s)
