"""The one reader of a results folder — a local folder, an NFS mount or an object store (`s3://`,
`gs://`): DuckDB views over Arrow datasets on the storage's own filesystem (storage.py), and the
Python API as thin calls of them (results.py writes; this module reads).

    from rlp_tune.reader import read_metrics, read_trials, read_trial_metrics
    m = read_metrics("runs/sweep1")            # pandas: every metric row, duplicate keys dropped
    t = read_trials("s3://bucket/sweeps/demo") # pandas: one row per trial, newest `updated` first
    con = connect("runs/sweep1")               # DuckDB, views `metrics` and `trials`
    fetch(con, "SELECT trial_id, max(epoch) FROM metrics GROUP BY 1", "rows")

rlp_tune.analysis.query adds the `final` view and `rlp-tune query` on top of `connect`; `rlp-tune
status`, `analyze` and `report` read through these views too. Views (docs/results-schema.md has the
columns):
- `metrics`  long format, one row per (sweep, trial_id, epoch, split, layer, head, metric, protocol),
             the training rows and those of `rlp-tune probe` / `offline-rlp`. A trial folder holding
             one kind of file (final.parquet, or a running trial's epoch files) is scanned lazily as
             part of one Arrow dataset; a folder that can hold the same key twice (final.parquet
             beside epoch files after a crash between compaction and clean-up, or probe / offline
             rows beside the trainer's) is read and deduplicated by the writer's own rule
             (results.dedup_table: the later file by name wins), so the rule is written once.
- `trials`   one row per trial: status, epochs_done, seed, versions and every flat config key as a
             column named by its dotted key (quote it in SQL: "rlp.lam"); of a trial's rows (the
             compacted all-trials.parquet and a later rewrite of its own file) the newest wins
             (results.merged_trials, the writer's rule).

How files are found and read: one listing through pyarrow.fs (a LIST on an object store), so DuckDB
itself opens no file: its sandbox turns all external access off, and a query sees these views and
nothing else, on every storage. Views follow a running sweep (live connections re-list before each
query and rebuild their sources when files came or went); a file listed that vanishes before it is
read (compaction removes per-epoch files) makes the query retry once. A file that is not what it
should be (truncated, not Parquet, without a column the views need, a column of another type) is
left out and named: a `ResultsWarning` per file (the CLI prints each in one line and exits 4), and
every other file is still read.

The Python API returns pandas frames (DuckDB → Arrow → pandas, so the dtypes are pyarrow's): metric
rows ordered by their key, trial rows newest `updated` first; empty frames for a folder without
results.
"""
from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import storage
from .errors import ResultsWarning, UserError
from .results import (METRIC_KEY, METRIC_SCHEMA, ResultsError, check_trial_files, check_version, conform_metrics,
                      dedup_table, merged_trials)

EXTRA_KINDS = ("offline_epoch_", "probe_epoch_")   # rows added after training (results.ResultWriter kinds)
VIEWS = ("metrics", "trials")
_METRICS_ORDER = ", ".join(METRIC_KEY)
_TRIALS_ORDER = "updated DESC, sweep, trial_id"
_TRIAL_MIN = ("sweep", "trial_id")


class QueryError(UserError, ValueError):
    """The SQL itself is wrong (parse / bind / catalog error, or not a read-only SELECT); one line."""


@dataclass
class _Views:
    """What a connection from `connect` reads: its sources are rebuilt when `layout` changes."""
    fs: Any
    base: str                  # ROOT's path inside fs
    shown: str                 # ROOT for messages (storage.display)
    live: bool
    remote: bool               # an object store: files fetched whole, once (see _metrics_source)
    trial: str | None
    views: tuple[str, ...]
    layout: tuple | None = None
    checked: dict = field(default_factory=dict)   # (path, size, mtime) → None (good) or the reason
    warned: set = field(default_factory=set)


_STATE: "weakref.WeakKeyDictionary[Any, _Views]" = weakref.WeakKeyDictionary()   # connection → its views


# ---- names in SQL ------------------------------------------------------------------------------
def sql_literal(s: str) -> str:
    """`s` as a quoted SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (a column or alias): every name from a file or a config
    that reaches SQL goes through here or `sql_literal`, so a name is data, never SQL."""
    return '"' + str(name).replace('"', '""') + '"'


# ---- the folder ------------------------------------------------------------------------------
def _open(root: str | Path) -> tuple[Any, str, str]:
    """(filesystem, ROOT's path in it, ROOT for messages); ResultsError if ROOT is not a folder."""
    shown = storage.display(root)
    try:
        fs, base = storage.filesystem(root)
        isdir = storage.is_dir(fs, base.rstrip("/"))
    except (OSError, ValueError) as e:
        why = one_line(e)
        raise ResultsError(f"{shown}: cannot open the results folder ({why[:240]}{'...' if len(why) > 240 else ''})") from None
    if not isdir:
        raise ResultsError(f"{shown}: results folder not found")
    return fs, base.rstrip("/"), shown


def require_results(root: str | Path) -> str:
    """ROOT as a results folder holding at least one trial's rows (else ResultsError); ROOT for messages."""
    fs, base, shown = _open(root)
    metrics, trials = _listing(fs, base)
    if not metrics and not trials:
        raise ResultsError(f"no results in {shown} (no Parquet files under {shown.rstrip('/')}/parquet)")
    return shown


def _listing(fs, base: str, trial: str | None = None) -> tuple[list, list]:
    """(metric files, trial files) under ROOT/parquet as FileInfo, sorted as paths (folder, then
    name). Metric files are ROOT/parquet/metrics/<trial>/<name>.parquet; `trial`: that trial's only
    (its folder by name)."""
    def pq_files(folder: str, depth: int) -> list:
        out = [i for i in storage.list_tree(fs, folder)
               if i.path.endswith(".parquet") and i.path[len(folder) + 1:].count("/") == depth]
        return sorted(out, key=lambda i: i.path.split("/"))

    mdir = f"{base}/parquet/metrics"
    metrics = pq_files(f"{mdir}/{trial}", 0) if trial is not None else pq_files(mdir, 1)
    trials = pq_files(f"{base}/parquet/trials", 0) if trial is None else []
    return metrics, trials


def _folder(info) -> str:
    return info.path.rsplit("/", 2)[-2]


def _fname(info) -> str:
    return info.path.rpartition("/")[2]


# ---- checking files ------------------------------------------------------------------------
def _metrics_problem(schema) -> str | None:
    missing = [n for n in METRIC_SCHEMA.names if n not in schema.names]
    if missing:
        return f"not an rlp_tune metrics file (no column {', '.join(missing)})"
    bad = [f"{f.name} is {schema.field(f.name).type}, not {f.type}" for f in METRIC_SCHEMA
           if schema.field(f.name).type != f.type]
    return f"not an rlp_tune metrics file ({'; '.join(bad)})" if bad else None


def _problem_or_old(state: _Views, path: str, schema) -> str | None:
    """A file of another results schema version is refused (ResultsError, one line); another file that is
    not an rlp_tune metrics file is a problem (named and left out)."""
    check_version(_shown_path(state, path), schema)
    return _metrics_problem(schema)


def _check(state: _Views, infos: list) -> list:
    """The metric files of `infos` whose footer says they are rlp_tune metric files; the others are
    named in a ResultsWarning and left out. Footers are read in parallel (an object store answers
    each in a round trip) and remembered by (path, size, mtime)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def key(i):
        return (i.path, i.size, i.mtime_ns)

    def problem(i) -> str | None:
        try:
            return _problem_or_old(state, i.path, pq.read_schema(i.path, filesystem=state.fs))
        except FileNotFoundError:
            return None            # vanished: the scan's retry relists
        except ResultsError:
            raise                  # another schema version: refused (check_version)
        except (pa.ArrowException, OSError, ValueError) as e:
            return f"not a readable Parquet file ({one_line(e)})"

    new = [i for i in infos if key(i) not in state.checked]
    if new:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(16, len(new))) as ex:
            for i, p in zip(new, ex.map(problem, new)):
                state.checked[key(i)] = p
    good = []
    for i in infos:
        p = state.checked[key(i)]
        if p is None:
            good.append(i)
        else:
            _warn(state, i.path, p)
    return good


def _warn(state: _Views, path: str, problem: str) -> None:
    msg = f"{_shown_path(state, path)}: {problem}; left out"
    if msg not in state.warned:
        state.warned.add(msg)
        warnings.warn(ResultsWarning(msg), stacklevel=4)


def _shown_path(state: _Views, path: str) -> str:
    """A file's path for messages: under ROOT as ROOT shows it."""
    return state.shown.rstrip("/") + path[len(state.base):] if path.startswith(state.base) else path


# ---- the sources -------------------------------------------------------------------------------
def _read_tables(state: _Views, infos: list, problem=None) -> dict:
    """{path: Table} of `infos`, each file fetched whole in one request (16 at a time: an object store
    answers each in a round trip) and parsed; a file that cannot be read, or whose table `problem`
    rejects, is named in a ResultsWarning and left out. A vanished file raises FileNotFoundError (the
    query's retry relists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(i):
        with state.fs.open_input_stream(i.path) as f:      # FileNotFoundError: vanished
            data = f.read()
        try:
            t = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError, ValueError) as e:
            return None, f"not a readable Parquet file ({one_line(e)})"
        return t, (problem(t, i.path) if problem else None)

    if not infos:
        return {}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(16, len(infos))) as ex:
        got = list(ex.map(read, infos))
    out = {}
    for i, (t, p) in zip(infos, got):
        if p is not None:
            _warn(state, i.path, p)
        else:
            out[i.path] = t
    return out


def _metrics_source(con, state: _Views, infos: list) -> str:
    """Register the `metrics` view's sources for these files and return its SQL.

    Where storage differs: a folder's files are scanned lazily (an Arrow dataset; DuckDB reads only
    the columns and row groups a query needs, at every query); an object store's are fetched whole,
    one GET each, and held in memory for the connection, since every lazy scan would pay a request
    per file and column chunk again (measured with bench/storage.py: `analyze` of 1,000 trials on S3
    took 5.8× the folder's with lazy scans)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if state.remote:
        got = _read_tables(state, infos, lambda t, path: _problem_or_old(state, path, t.schema))
        infos = [i for i in infos if i.path in got]
    else:
        infos = _check(state, infos)
    by_folder: dict[str, list] = {}
    for i in infos:
        by_folder.setdefault(_folder(i), []).append(i)

    def mixed(files) -> bool:   # can hold the same key twice
        names = [_fname(f) for f in files]
        return ("final.parquet" in names and any(n.startswith("epoch_") for n in names)) or \
            any(n.startswith(EXTRA_KINDS) for n in names)

    plain = [f for fs_ in by_folder.values() if not mixed(fs_) for f in fs_]
    dup = [fs_ for fs_ in by_folder.values() if mixed(fs_)]
    parts = []
    if plain and state.remote:
        con.register("_metrics_plain", pa.concat_tables([conform_metrics(got[i.path]) for i in plain]))
        parts.append("SELECT * FROM _metrics_plain")
    elif plain:
        con.register("_metrics_plain", ds.dataset([i.path for i in plain], schema=METRIC_SCHEMA,
                                                  format="parquet", filesystem=state.fs))
        parts.append("SELECT * FROM _metrics_plain")
    if dup:
        def tables_of(files):
            return [got[f.path] for f in files] if state.remote else list(_read_tables(state, files).values())
        tables = [dedup_table(pa.concat_tables([conform_metrics(t) for t in tables_of(files)]
                                               or [METRIC_SCHEMA.empty_table()])) for files in dup]
        con.register("_metrics_dedup", pa.concat_tables(tables))
        parts.append("SELECT * FROM _metrics_dedup")
    if not parts:
        con.register("_metrics_dedup", METRIC_SCHEMA.empty_table())
        return "SELECT * FROM _metrics_dedup"
    return "\nUNION ALL\n".join(parts)


def _trials_source(con, state: _Views, infos: list) -> str:
    import pyarrow as pa

    check_trial_files(state.shown, [_fname(i) for i in infos])

    def problem(t, path) -> str | None:
        missing = [c for c in _TRIAL_MIN if c not in t.column_names]
        return f"not an rlp_tune trials file (no column {', '.join(missing)})" if missing else None

    tables = [t if "updated" in t.column_names else t.append_column("updated", pa.nulls(t.num_rows, pa.float64()))
              for t in _read_tables(state, infos, problem).values()]
    if tables:
        try:
            table = merged_trials(tables)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ResultsError(f"{state.shown}: trial rows whose columns do not agree ({one_line(e)})") from None
    else:
        table = pa.table({"sweep": pa.array([], pa.string()), "trial_id": pa.array([], pa.string()),
                          "status": pa.array([], pa.string()), "epochs_done": pa.array([], pa.int64()),
                          "updated": pa.array([], pa.float64())})
    con.register("_trials", table)
    return "SELECT * FROM _trials"


def _layout(state: _Views) -> tuple:
    metrics, trials = _listing(state.fs, state.base, state.trial)
    return (tuple((i.path, i.size, i.mtime_ns) for i in metrics) if "metrics" in state.views else (),
            tuple((i.path, i.size, i.mtime_ns) for i in trials) if "trials" in state.views else (),
            metrics, trials)


def _make_views(con, state: _Views, layout: tuple) -> None:
    metrics, trials = layout[2], layout[3]
    if "metrics" in state.views:
        con.execute(f"CREATE OR REPLACE VIEW metrics AS {_metrics_source(con, state, metrics)}")
    if "trials" in state.views:
        con.execute(f"CREATE OR REPLACE VIEW trials AS {_trials_source(con, state, trials)}")


# ---- the connection --------------------------------------------------------------------------
def _sandbox(con) -> None:
    """DuckDB opens no file at all (the views' data comes through pyarrow.fs), loads no extension and
    scans no Python variable; `connect` locks the settings once the views exist, so a query cannot
    undo this. DuckDB still allows its own temp_directory (by default `.tmp` under the working
    directory, where anyone's files may lie): it gets a private empty folder instead, removed with
    the connection."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="rlp_tune_duckdb_")
    weakref.finalize(con, shutil.rmtree, tmp, True)
    con.execute(f"SET temp_directory = {sql_literal(tmp)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET python_enable_replacements = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")


def connect(root: str | Path, *, live: bool = True, trial: str | None = None,
            views: tuple[str, ...] = VIEWS):
    """A sandboxed DuckDB connection over ROOT (a folder or a URI) with the views `views` (of
    "metrics", "trials").

    live: re-list the files before each query (through `fetch`) and rebuild the views when they
    changed — for a sweep that is still running; one-shot readers pass False and rely on the retry
    alone. `trial`: the `metrics` view over that one trial's folder.
    """
    import duckdb

    fs, base, shown = _open(root)
    con = duckdb.connect()
    _sandbox(con)
    con.execute("SET enable_progress_bar = false")
    _STATE[con] = _Views(fs=fs, base=base, shown=shown, live=live, remote=storage.is_remote(root), trial=trial,
                         views=tuple(views))
    fetch(con, "SELECT 1", "none")     # layout None → fetch lists the files and makes the views
    con.execute("SET lock_configuration = true")
    return con


def fetch(con, sql, kind: str = "df", params: Any = None):
    """Run `sql` (a string, or a callable making it afresh for a retry) and fetch the result as 'df'
    (pandas), 'arrow', 'rows' or 'none'.

    On connections from `connect`, the views are rebuilt first if the files changed (a trial
    compacted, a new trial started). A file that vanished between listing and reading (a sweep still
    running) → the views are rebuilt and the query retried once; a parse / bind error → QueryError
    (one line); any other failure → ResultsError (one line).
    """
    import duckdb

    state = _STATE.get(con)
    for attempt in (0, 1):
        try:
            if state is not None and (state.live or state.layout is None):
                layout = _layout(state)
                if state.layout is None or layout[:2] != state.layout[:2]:
                    _make_views(con, state, layout)
                    state.layout = layout
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
            raise QueryError(f"query failed: {one_line(e)}") from None
        except duckdb.PermissionException as e:
            raise QueryError(f"query: only the views of the results can be read: {one_line(e)}") from None
        except (duckdb.Error, FileNotFoundError, OSError) as e:
            shown = state.shown if state else "results"
            if _vanished(e):
                if attempt == 0:
                    time.sleep(0.05)
                    if state is not None:
                        state.layout = None  # force new views on the retry
                    continue
                raise ResultsError(f"{shown}: results files changed while reading, twice; try again "
                                   f"({one_line(e)})") from None
            raise ResultsError(f"{shown}: query over the results failed: {one_line(e)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def one_line(e: Exception) -> str:
    """The first non-empty line of an exception's message (DuckDB's run over several)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _vanished(e: Exception) -> bool:
    if isinstance(e, FileNotFoundError):
        return True
    msg = str(e).lower()
    return ("no such file" in msg or "path does not exist" in msg or "nosuchkey" in msg
            or "not found" in msg and "key" in msg)


# ---- the Python API --------------------------------------------------------------------------
def _view_rows(root, view: str, order: str, trial: str | None = None):
    """Every row of `view` over ROOT in `order` (a pyarrow Table), on a connection of its own."""
    con = connect(root, live=False, trial=trial, views=(view,))
    try:
        return fetch(con, f"SELECT * FROM {view} ORDER BY {order}", "arrow")
    finally:
        con.close()


def _has_results(root) -> bool:
    try:
        fs, base, _ = _open(root)
    except ResultsError:
        return False
    return storage.is_dir(fs, f"{base}/parquet")


def read_metrics_table(root: str | Path, trial_id: str | None = None):
    """Every metric row under ROOT (or one trial's) as a pyarrow Table of METRIC_SCHEMA: the
    `metrics` view (duplicate keys dropped), ordered by the key; empty when there are none."""
    if not _has_results(root):
        return METRIC_SCHEMA.empty_table()
    return _view_rows(root, "metrics", _METRICS_ORDER, trial_id).select(METRIC_SCHEMA.names).cast(METRIC_SCHEMA)


def read_metrics(root: str | Path):
    """All metric rows under ROOT as a pandas DataFrame (the `metrics` view)."""
    return read_metrics_table(root).to_pandas()


def read_trial_metrics(root: str | Path, trial_id: str):
    """One trial's metric rows under ROOT (pandas, duplicates dropped); empty if it wrote none."""
    return read_metrics_table(root, trial_id).to_pandas()


def read_trials(root: str | Path):
    """One row per trial under ROOT as a pandas DataFrame (the `trials` view: flat config keys,
    status, epochs_done, ...), newest `updated` first; empty (sweep, trial_id, status, epochs_done)
    when there are none."""
    import pandas as pd
    if not _has_results(root):
        return pd.DataFrame(columns=["sweep", "trial_id", "status", "epochs_done"])
    t = _view_rows(root, "trials", _TRIALS_ORDER)
    if t.num_rows == 0:
        return pd.DataFrame(columns=["sweep", "trial_id", "status", "epochs_done"])
    return t.to_pandas()
