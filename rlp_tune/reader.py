"""The one reader of a results folder: DuckDB views over its Parquet files, and the Python API as
thin calls of them (results.py writes; this module reads).

    from rlp_tune.reader import read_metrics, read_trials, read_trial_metrics
    m = read_metrics("runs/sweep1")            # pandas: every metric row, duplicate keys dropped
    t = read_trials("runs/sweep1")             # pandas: one row per trial, newest `updated` first
    con = connect("runs/sweep1")               # DuckDB, views `metrics` and `trials`
    fetch(con, "SELECT trial_id, max(epoch) FROM metrics GROUP BY 1", "rows")

rlp_tune.analysis.query adds the `final` view and `rlp-tune query` on top of `connect`; `rlp-tune
status`, `analyze` and `report` read through these views too. Views (docs/results-schema.md has the
columns):
- `metrics`  long format, one row per (sweep, trial_id, epoch, split, layer, head, metric, protocol),
             the training rows and those of `rlp-tune probe` / `offline-rlp`: files are read with
             read_parquet over globs (union_by_name, no hive partitioning) and duplicate keys
             dropped (a crash between compaction and the removal of the per-epoch files leaves the
             same rows twice; final.parquet wins, as in the writer's `results.dedup_table`). Only
             trial folders holding both kinds of file pay for a dedup pass (`metrics_sql`).
- `trials`   one row per trial: status, epochs_done, seed, versions and every flat config key as a
             column named by its dotted key (quote it in SQL: "rlp.lam"); of a trial's rows (the
             compacted all-trials.parquet and a later rewrite of its own file) the newest wins.

Views re-read the files at every query, so they work while a sweep is still writing: per-epoch
files are replaced by atomic renames, and a file listed by a glob that vanishes before it is read
(compaction removes per-epoch files) makes the query retry once. A truncated or corrupt file gives
a `ResultsError` naming the file.

The Python API returns pandas frames (DuckDB → Arrow → pandas, so the dtypes are pyarrow's): the
columns of the files, rows in file order (trial folder, file name, row in the file; for trials
newest `updated` first), empty frames for a folder without results. Local folders only: DuckDB
would need its httpfs extension for an object store, which the sandbox forbids; a root that
`storage.is_remote` calls remote gives a ResultsError ("copy or mount it first"). Nothing in
rlp_tune reads results from a URI (the sweep driver skips these reads for remote roots).
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .results import METRIC_KEY, METRIC_SCHEMA, ResultsError
from .storage import is_remote

EXTRA_KINDS = ("offline_epoch_", "probe_epoch_")   # rows added after training (results.ResultWriter kinds)
VIEWS = ("metrics", "trials")
_DUCK_TYPES = {"string": "VARCHAR", "int32": "INTEGER", "double": "DOUBLE"}
# with positions=True the views carry where each row was read from (the Python API orders by them)
_POSITIONS = ("_file", "_row")
# Path order of ROOT/parquet/metrics/<trial>/<file> (by folder, then name), then the row in the file
_METRICS_ORDER = "parse_dirpath(_file), parse_filename(_file), _row"
_TRIALS_ORDER = "updated DESC, _file, _row"


class QueryError(UserError, ValueError):
    """The SQL itself is wrong (parse / bind / catalog error, or not a read-only SELECT); one line."""


@dataclass
class _Views:
    """What a connection from `connect` reads: its views are remade when `layout` changes."""
    root: Path
    live: bool
    trial: str | None
    views: tuple[str, ...]
    positions: bool
    layout: tuple | None = None


_STATE: "weakref.WeakKeyDictionary[Any, _Views]" = weakref.WeakKeyDictionary()   # connection → its views


# ---- the folder ------------------------------------------------------------------------------
def sql_literal(s: str) -> str:
    """`s` as a quoted SQL string literal."""
    return "'" + str(s).replace("'", "''") + "'"


def _root(root: str | Path) -> Path:
    p = local_root(root)
    if not p.is_dir():
        raise ResultsError(f"{p}: results folder not found")
    return p.resolve()     # absolute: DuckDB's allowed_directories compares paths


def require_results(root: str | Path) -> Path:
    """ROOT as a results folder holding at least one trial's rows (else ResultsError)."""
    r = _root(root)
    if not _files(r, "metrics") and not _files(r, "trials"):
        raise ResultsError(f"no results in {root} (no Parquet files under {Path(root) / 'parquet'})")
    return r


def _files(root: Path, kind: str, trial: str | None = None) -> list[Path]:
    """ROOT's Parquet files of `kind` ("metrics" or "trials"); `trial`: that trial's metric files
    only (its folder by name: a trial id is not a glob pattern). Sorted as Paths (folder, then name)."""
    d = root / "parquet" / kind
    if kind == "metrics" and trial is not None:
        d, pattern = d / trial, "*.parquet"
    else:
        pattern = "*/*.parquet" if kind == "metrics" else "*.parquet"
    return sorted(d.glob(pattern)) if d.is_dir() else []


# ---- the views' SQL --------------------------------------------------------------------------
def _read(src: str, positions: bool = False) -> str:
    pos = ", filename=true, file_row_number=true" if positions else ""
    return f"read_parquet({src}, union_by_name=true, hive_partitioning=false{pos})"


def _columns(positions: bool) -> list[str]:
    return list(METRIC_SCHEMA.names) + (list(_POSITIONS) if positions else [])


def _empty_metrics_sql(positions: bool = False) -> str:
    cols = [f"NULL::{_DUCK_TYPES[str(f.type)]} AS {f.name}" for f in METRIC_SCHEMA]
    cols += ["NULL::VARCHAR AS _file", "NULL::BIGINT AS _row"] if positions else []
    return f"SELECT {', '.join(cols)} WHERE false"


def _conformed(src: str, positions: bool = False) -> str:
    """SELECT of the metric columns from read_parquet(src); version-1 files (no `protocol` column)
    read as protocol '' (an empty relation supplies the column when no file has it; any other
    missing column stays a bind error, which names the file)."""
    cols = ", ".join("coalesce(protocol, '') AS protocol" if c == "protocol" else c for c in METRIC_SCHEMA.names)
    cols += ", filename AS _file, file_row_number AS _row" if positions else ""
    return (f"SELECT {cols} FROM (SELECT NULL::VARCHAR AS protocol WHERE false UNION ALL BY NAME "
            f"SELECT * FROM {_read(src, positions)})")


def metrics_sql(root: Path, trial: str | None = None, positions: bool = False) -> str:
    """The deduplicated `metrics` relation for ROOT's current file layout.

    Duplicate keys arise only in a trial folder holding both final.parquet and epoch_*.parquet (a
    crash between compaction and the removal of the per-epoch files, or a resumed trial still
    running): there, epoch-file rows whose key is already in final.parquet are dropped (final wins,
    as in rlp_tune.results.dedup_table). Folders without overlap need no dedup pass, which keeps a
    finished sweep a plain scan (see bench/analysis.py). Rows of `rlp-tune probe` / `offline-rlp`
    (probe_epoch_* / offline_epoch_* files) are part of the view; where a trial has them, training
    rows with the same key (e.g. a probe rerun with the trainer's own protocol) give way to them.
    The layout is listed when the SQL is made; `fetch` re-lists before each query on live
    connections. `trial`: that trial's folder only (its files by name). `positions`: two more
    columns, `_file` and `_row`, where each row was read from.
    """
    files = _files(root, "metrics", trial)
    if not files:
        return _empty_metrics_sql(positions)
    base = root / "parquet" / "metrics"

    def src(prefix: str, glob: str) -> str:   # all trials: one glob; one trial: its files by name
        if trial is None:
            return sql_literal(str(base / "*" / glob))
        return "[" + ", ".join(sql_literal(str(f)) for f in files if f.name.startswith(prefix)) + "]"

    finals = {f.parent for f in files if f.name == "final.parquet"}
    epoch_dirs = {f.parent for f in files if f.name.startswith("epoch_")}
    cols = _columns(positions)
    key = ", ".join(METRIC_KEY)
    parts = []
    if finals:
        parts.append(_conformed(src("final.parquet", "final.parquet"), positions))
    if epoch_dirs:
        ep = _conformed(src("epoch_", "epoch_*.parquet"), positions)
        overlap = sorted(finals & epoch_dirs)
        if overlap:
            lst = "[" + ", ".join(sql_literal(str(d / "final.parquet")) for d in overlap) + "]"
            ep = (f"SELECT {', '.join('e.' + c for c in cols)} FROM ({ep}) e "
                  f"ANTI JOIN ({_conformed(lst)}) f USING ({key})")
        parts.append(ep)
    training = "\nUNION ALL\n".join(parts)
    kinds = [k for k in EXTRA_KINDS if any(f.name.startswith(k) for f in files)]
    if not kinds:
        return training
    extras = " UNION ALL ".join(_conformed(src(k, f"{k}*.parquet"), positions) for k in kinds)
    if not parts:
        return extras
    training = (f"SELECT {', '.join('t.' + c for c in cols)} FROM ({training}) t "
                f"ANTI JOIN ({extras}) x USING ({key})")
    return f"{training}\nUNION ALL\n{extras}"


def trials_sql(root: Path, positions: bool = False) -> str:
    """The `trials` relation: of a trial's rows (the compacted all-trials.parquet and a later
    per-trial rewrite) the newest `updated` wins; a tie goes to the first file by name."""
    pos = ", NULL::VARCHAR AS _file, NULL::BIGINT AS _row" if positions else ""
    if not _files(root, "trials"):
        return ("SELECT NULL::VARCHAR AS sweep, NULL::VARCHAR AS trial_id, NULL::VARCHAR AS status, "
                f"NULL::BIGINT AS epochs_done{pos} WHERE false")
    pos = ", filename AS _file, file_row_number AS _row" if positions else ""
    src = _read(sql_literal(str(root / "parquet" / "trials" / "*.parquet")), positions=True)
    return (f"SELECT * EXCLUDE (filename, file_row_number){pos} FROM {src} QUALIFY row_number() OVER "
            "(PARTITION BY sweep, trial_id ORDER BY updated DESC, filename, file_row_number) = 1")


def _layout(state: _Views) -> tuple:
    """What the views' SQL depends on: which trial folders hold which kinds of file (one trial:
    its file names, since its view lists them)."""
    r, out = state.root, []
    if "metrics" in state.views:
        files = _files(r, "metrics", state.trial)
        if state.trial is not None:
            out.append(tuple(f.name for f in files))
        else:
            finals = frozenset(f.parent.name for f in files if f.name == "final.parquet")
            epochs = frozenset(f.parent.name for f in files if f.name.startswith("epoch_"))
            extras = frozenset(f.name.partition("epoch_")[0] for f in files if f.name.startswith(EXTRA_KINDS))
            out += [bool(finals), bool(epochs), finals & epochs, extras]
    if "trials" in state.views:
        out.append(bool(_files(r, "trials")))
    return tuple(out)


def _make_views(con, state: _Views) -> None:
    if "metrics" in state.views:
        con.execute(f"CREATE OR REPLACE VIEW metrics AS {metrics_sql(state.root, state.trial, state.positions)}")
    if "trials" in state.views:
        con.execute(f"CREATE OR REPLACE VIEW trials AS {trials_sql(state.root, state.positions)}")


# ---- the connection --------------------------------------------------------------------------
def _sandbox(con, r: Path) -> None:
    """Files only under ROOT, no extensions, no attached databases (`connect` locks the settings
    once the views exist: a query cannot undo this)."""
    con.execute(f"SET allowed_directories = [{sql_literal(str(r) + '/')}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")


def connect(root: str | Path, *, live: bool = True, trial: str | None = None,
            views: tuple[str, ...] = VIEWS, positions: bool = False):
    """A sandboxed DuckDB connection over ROOT with the views `views` (of "metrics", "trials").

    live: re-list the files before each query (through `fetch`) and remake the views when the
    layout changed — for a sweep that is still running; one-shot readers pass False and rely on the
    retry alone. The views re-read the files at every query. `trial`: the `metrics` view over that
    one trial's folder. `positions`: the views carry `_file` and `_row` (where a row was read from).
    """
    import duckdb

    r = _root(root)
    con = duckdb.connect()
    _sandbox(con, r)
    con.execute("SET enable_progress_bar = false")
    # footers read when a view binds are reused by the scans that follow (1000s of small files)
    con.execute("SET parquet_metadata_cache = true")
    # views bind (and read every file's schema) when made: fetch makes them, so a bad file is named
    _STATE[con] = _Views(root=r, live=live, trial=trial, views=tuple(views), positions=positions)
    fetch(con, "SELECT 1", "none")     # layout None → fetch lists the files and makes the views
    con.execute("SET lock_configuration = true")
    return con


def fetch(con, sql, kind: str = "df", params: Any = None):
    """Run `sql` (a string, or a callable making it afresh for a retry) and fetch the result as 'df'
    (pandas), 'arrow', 'rows' or 'none'.

    On connections from `connect`, the views are remade first if the file layout changed (a trial
    compacted, a new trial started). A file that vanished between listing and reading (a sweep still
    running) → the views are remade and the query retried once; a file that cannot be read →
    ResultsError naming it; a parse / bind error → QueryError (one line).
    """
    import duckdb

    state = _STATE.get(con)
    for attempt in (0, 1):
        try:
            if state is not None and (state.live or state.layout is None):
                layout = _layout(state)
                if layout != state.layout:
                    _make_views(con, state)
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
            bad = find_bad_file(state.root) if state and isinstance(e, duckdb.BinderException) else None
            if bad:   # a results file without a column the views need, not the user's SQL
                raise ResultsError(bad) from None
            raise QueryError(f"query failed: {one_line(e)}") from None
        except duckdb.PermissionException as e:
            raise QueryError(f"query: outside the results folder or not read-only: {one_line(e)}") from None
        except duckdb.Error as e:
            if attempt == 0 and _vanished(e):
                time.sleep(0.05)
                if state is not None:
                    state.layout = None  # force new views on the retry
                continue
            root = state.root if state else None
            bad = find_bad_file(root)
            if bad:
                raise ResultsError(bad) from None
            if _vanished(e):  # vanished twice: the sweep is churning; say so
                raise ResultsError(f"{root}: results files changed while reading, twice; try again "
                                   f"({one_line(e)})") from None
            raise ResultsError(f"{root}: query over the results failed: {one_line(e)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def one_line(e: Exception) -> str:
    """The first non-empty line of an exception's message (DuckDB's run over several)."""
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
                return f"{f}: not a readable Parquet file ({one_line(e)})"
            missing = sorted(need[kind] - names)
            if missing:
                return f"{f}: not an rlp_tune {kind} file (no column {', '.join(missing)})"
    return None


# ---- the Python API --------------------------------------------------------------------------
def local_root(root: str | Path) -> Path:
    """ROOT as a local path; a remote root (storage.is_remote) → ResultsError (DuckDB reads local folders)."""
    if is_remote(root):
        raise ResultsError(f"{root}: only local results folders can be read (copy or mount it first)")
    return Path(root)


def _view_rows(root: Path, view: str, order: str, trial: str | None = None):
    """Every row of `view` over ROOT in `order` (a pyarrow Table), on a connection of its own."""
    con = connect(root, live=False, trial=trial, views=(view,), positions=True)
    try:
        return fetch(con, f"SELECT * EXCLUDE (_file, _row) FROM {view} ORDER BY {order}", "arrow")
    finally:
        con.close()


def read_metrics_table(root: str | Path, trial_id: str | None = None):
    """Every metric row under ROOT (or one trial's) as a pyarrow Table of METRIC_SCHEMA: the
    `metrics` view (duplicate keys dropped), rows in file order; empty when there are none."""
    r = local_root(root)
    if not _files(r, "metrics", trial_id):
        return METRIC_SCHEMA.empty_table()
    return _view_rows(r, "metrics", _METRICS_ORDER, trial_id).select(METRIC_SCHEMA.names).cast(METRIC_SCHEMA)


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
    r = local_root(root)
    if not _files(r, "trials"):
        return pd.DataFrame(columns=["sweep", "trial_id", "status", "epochs_done"])
    return _view_rows(r, "trials", _TRIALS_ORDER).to_pandas()
