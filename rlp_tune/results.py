"""Parquet results: the schema and an atomic writer (the reader is rlp_tune/reader.py: DuckDB views).

Layout under a run's or sweep's folder ROOT (schema version SCHEMA_VERSION, docs/results-schema.md):

    ROOT/parquet/metrics/<trial_id>/epoch_00001.parquet   one file per (trial, epoch), long format
    ROOT/parquet/metrics/<trial_id>/final.parquet         all epochs of a finished trial (compacted)
    ROOT/parquet/metrics/<trial_id>/probe_epoch_00030.parquet   rows of `rlp-tune probe` (offline_epoch_*: offline-rlp)
    ROOT/parquet/trials/<trial_id>.parquet                one row per trial (flat config, status, ...)
    ROOT/parquet/trials/all-trials.parquet                a finished sweep's trial rows (compacted)

Every file is written to a temporary file in ROOT/.tmp/ (outside parquet/: polars and DuckDB do
not skip hidden files, and pyarrow/pandas fail on half-written ones) and renamed into place (atomic
on POSIX and on object stores that pyarrow writes whole), so pandas, pyarrow, polars and DuckDB
reading parquet/trials or parquet/metrics see complete files only, at every moment. A resumed trial rewrites the same file names, so crash + resume leaves no
gap and no duplicate; readers still drop duplicate keys (a crash between compaction and the
removal of the per-epoch files leaves the same rows twice). `dedup_table` and `compact_trials`
apply the same rules as the reader's views when the writer compacts files.

    w = ResultWriter(root, sweep="demo", trial_id="t1")
    w.write_epoch(epoch, rows)          # rows: list of dicts with the METRIC_COLUMNS
    w.write_trial(flat_config, status="RUNNING", epochs_done=3)
    df = rlp_tune.reader.read_metrics(root)     # pandas, deduplicated
"""
from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from . import storage
from .errors import UserError
from .names import check_name

SCHEMA_VERSION = 2
METRIC_KEY = ["sweep", "trial_id", "epoch", "split", "layer", "head", "metric", "protocol"]
METRIC_SCHEMA = pa.schema([
    ("sweep", pa.string()), ("trial_id", pa.string()), ("epoch", pa.int32()), ("split", pa.string()),
    ("layer", pa.string()), ("head", pa.int32()), ("metric", pa.string()), ("protocol", pa.string()),
    ("value", pa.float64()), ("wall_s", pa.float64()),
], metadata={"rlp_tune.schema_version": str(SCHEMA_VERSION)})
# layer "" = not per-layer; head -1 = not per-head, or the mean over a tap's heads; protocol "" = the
# settings in the trial's row (probe rows name theirs: "labels=train;k=5", docs/results-schema.md).
_DEFAULTS = {"layer": "", "head": -1, "protocol": ""}


def conform_metrics(table: pa.Table) -> pa.Table:
    """A metrics table → METRIC_SCHEMA (its column order, types and metadata)."""
    return table.select(METRIC_SCHEMA.names).cast(METRIC_SCHEMA)


def metrics_version(schema: pa.Schema) -> int | None:
    """The results schema version a metrics file was written with: its footer's, or 1 for a file with
    the version-1 columns (no protocol); None when it is no rlp_tune metrics file at all."""
    meta = schema.metadata or {}
    raw = meta.get(b"rlp_tune.schema_version")
    if raw is not None and raw.decode(errors="replace").isdigit():
        return int(raw)
    return 1 if set(METRIC_SCHEMA.names) - {"protocol"} <= set(schema.names) and "protocol" not in schema.names \
        else None


def check_version(shown: str, schema: pa.Schema) -> None:
    """A metrics file of another schema version is refused: one ResultsError naming it and its version."""
    v = metrics_version(schema)
    if v is not None and v != SCHEMA_VERSION:
        raise ResultsError(f"{shown}: results schema version {v}; this rlp_tune reads version {SCHEMA_VERSION} "
                           f"only ({'no protocol column' if v == 1 else 'written by another rlp_tune'}; "
                           "docs/results-schema.md)")
TRIAL_STATUSES = ("RUNNING", "TERMINATED", "STOPPED", "ERROR")


class ResultsError(UserError, ValueError):
    """A results file or folder cannot be read; the message names the file."""


def temp_name(path: str) -> str:
    """Where to write `path` before renaming it: ROOT/.tmp/ for a file under ROOT/parquet/ (no
    reader of parquet/ sees it), else a hidden sibling."""
    p = str(path)
    head, _, name = p.rpartition("/")
    tag = f"{name}.tmp-{uuid.uuid4().hex[:8]}"
    i = p.rfind("/parquet/")
    if i >= 0:
        return f"{p[:i]}/.tmp/{tag}"
    return f"{head}/.{tag}" if head else f".{tag}"


def atomic_write_table(table: pa.Table, path: str, filesystem=None) -> None:
    """Write `table` to `path` through a temporary file and a rename. `filesystem`: a pyarrow
    FileSystem with `path` inside it; None = `path` is a local path or a URI (storage.filesystem)."""
    if filesystem is None:
        filesystem, path = storage.filesystem(path)
    tmp = temp_name(path)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    filesystem.create_dir(os.path.dirname(tmp), recursive=True)
    try:
        pq.write_table(table, tmp, filesystem=filesystem)
        filesystem.move(tmp, path)
    except BaseException as e:   # a full disk: no half-written file stays behind in ROOT/.tmp
        try:
            filesystem.delete_file(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno:   # pyarrow's message names no file
            raise OSError(e.errno, os.strerror(e.errno), path) from None
        raise


def versions() -> dict[str, str]:
    import torch

    from . import __version__
    from .provenance import package_version
    return {"version.rlp_tune": __version__, "version.torch": torch.__version__,
            "version.python": platform.python_version(), "version.ray": package_version("ray")}


class ResultWriter:
    """One trial's rows under ROOT/parquet (a local folder or a URI): its metrics, epoch by epoch, and
    its row in `trials`. `extra`: columns added to that row (e.g. the node and the driver's origin);
    they win over the same columns given to `write_trial`."""

    def __init__(self, root: str | Path, sweep: str, trial_id: str, extra: dict[str, Any] | None = None):
        self.root = root
        self.fs, base = storage.filesystem(root)
        self.base = base.rstrip("/")
        # the trial id names its files: one folder name, never a path (names.check_name)
        self.sweep, self.trial_id = sweep, check_name("trial id", trial_id)
        self.extra = dict(extra or {})
        self.metrics_dir = f"{self.base}/parquet/metrics/{trial_id}"
        self.started = time.time()
        self.created: float | None = None

    def for_trial(self, sweep: str, trial_id: str) -> "ResultWriter":
        """The same writer for another identity (a resumed run keeps its checkpoint's)."""
        return ResultWriter(self.root, sweep, trial_id, self.extra)

    def write_epoch(self, epoch: int, rows: Iterable[dict[str, Any]], kind: str = "epoch") -> None:
        """Atomically (re)write one epoch's rows. kind "epoch": the training rows; other kinds
        ("probe", "offline") are rows added after training, in files of their own (<kind>_epoch_NNNNN),
        merged with the rows already there: a row replaces only the row of its own key (same split,
        layer, head, metric and protocol), so probes of other label sets or settings stay."""
        cols = {c: [] for c in METRIC_SCHEMA.names}
        wall = time.time() - self.started
        for r in rows:
            full = {"sweep": self.sweep, "trial_id": self.trial_id, "epoch": epoch, "wall_s": wall, **r}
            for c in cols:
                cols[c].append(full.get(c, _DEFAULTS.get(c)))
        table = pa.table(cols, schema=METRIC_SCHEMA)
        name = f"epoch_{epoch:05d}" if kind == "epoch" else f"{kind}_epoch_{epoch:05d}"
        path = f"{self.metrics_dir}/{name}.parquet"
        if kind != "epoch" and self._exists(path):   # later rows win (dedup keeps the last of a key)
            try:
                old = conform_metrics(pq.read_table(path, filesystem=self.fs))
            except (pa.ArrowInvalid, OSError) as e:
                raise ResultsError(f"{path}: not a readable Parquet file ({e}); remove it to rewrite") from None
            table = dedup_table(pa.concat_tables([old, table]))
        atomic_write_table(table, path, self.fs)

    def write_trial(self, flat_config: dict[str, Any], status: str, epochs_done: int,
                    extra: dict[str, Any] | None = None) -> None:
        assert status in TRIAL_STATUSES, status
        row = {"sweep": self.sweep, "trial_id": self.trial_id, "status": status, "epochs_done": epochs_done,
               "seed": flat_config.get("run.seed"), "created": self._created(), "started": self.started,
               "updated": time.time(),
               "schema_version": SCHEMA_VERSION, **versions()}
        for k, v in flat_config.items():
            row[k] = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
        row.update(extra or {})
        row.update(self.extra)    # the writer's maker knows better (a sweep: the driver's command, not the worker's)
        table = pa.Table.from_pylist([row])
        atomic_write_table(table, f"{self.base}/parquet/trials/{self.trial_id}.parquet", self.fs)

    def mark_status(self, status: str) -> None:
        """The sweep driver's one write to a trial's row, for what only the driver knows ends a trial:
        "STOPPED" (the scheduler stopped it) or "ERROR" (it raised). RUNNING and TERMINATED are the
        Trainer's (an interrupted trial stays RUNNING); a TERMINATED row is not turned into STOPPED.
        No row yet: nothing to mark."""
        assert status in ("STOPPED", "ERROR"), status
        path = f"{self.base}/parquet/trials/{self.trial_id}.parquet"
        if not self._exists(path):
            return
        t = pq.read_table(path, filesystem=self.fs)
        if t.column("status")[0].as_py() == "TERMINATED" and status == "STOPPED":
            return
        t = t.set_column(t.schema.get_field_index("status"), "status", pa.array([status] * t.num_rows))
        atomic_write_table(t, path, self.fs)

    def _created(self) -> float:
        """When this trial first wrote its row (kept across resumes: trials sort by it)."""
        if self.created is None:
            path = f"{self.base}/parquet/trials/{self.trial_id}.parquet"
            try:
                col = pq.read_table(path, filesystem=self.fs).column("created") if self._exists(path) else None
                self.created = float(col[0].as_py()) if col is not None and col[0].as_py() is not None else None
            except (KeyError, pa.ArrowInvalid, OSError, IndexError, TypeError, ValueError):
                pass
            self.created = self.created or self.started
        return self.created

    def trial_status(self) -> str | None:
        """The status in this trial's row, or None if it has none (or it cannot be read)."""
        path = f"{self.base}/parquet/trials/{self.trial_id}.parquet"
        if not self._exists(path):
            return None
        try:
            return pq.read_table(path, columns=["status"], filesystem=self.fs).column(0)[0].as_py()
        except (pa.ArrowInvalid, OSError, IndexError):
            return None

    def compact(self) -> None:
        """Merge this trial's per-epoch files into final.parquet, then remove them."""
        files = self._epoch_files()
        if not files:
            return
        tables = [conform_metrics(pq.read_table(f, filesystem=self.fs)) for f in files]
        final = f"{self.metrics_dir}/final.parquet"
        if self._exists(final):
            tables.insert(0, conform_metrics(pq.read_table(final, filesystem=self.fs)))
        table = dedup_table(pa.concat_tables(tables))
        atomic_write_table(table, final, self.fs)
        for f in files:
            self._remove(f)

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs > `epoch` (a resume from an earlier checkpoint rewrites them)."""
        for f in self._epoch_files():
            if int(Path(f).stem.split("_")[1]) > epoch:
                self._remove(f)
        final = f"{self.metrics_dir}/final.parquet"
        if self._exists(final):
            import pyarrow.compute as pc
            t = pq.read_table(final, filesystem=self.fs)
            if (pc.max(t["epoch"]).as_py() or 0) > epoch:   # rewrite only when there is something to drop
                atomic_write_table(t.filter(pc.less_equal(t["epoch"], epoch)), final, self.fs)

    # one code path for local folders and URIs (storage.filesystem)
    def _epoch_files(self) -> list[str]:
        return [f for f in storage.list_files(self.fs, self.metrics_dir)
                if f.rpartition("/")[2].startswith("epoch_") and f.endswith(".parquet")]

    def _exists(self, path: str) -> bool:
        return storage.exists(self.fs, path)

    def _remove(self, path: str) -> None:
        self.fs.delete_file(path)


def dedup_table(table: pa.Table) -> pa.Table:
    """Keep the last row of each METRIC_KEY (later files win)."""
    if table.num_rows == 0:
        return table
    import pyarrow.compute as pc
    idx = pa.array(range(table.num_rows))
    t = table.append_column("_i", idx)
    last = t.group_by(METRIC_KEY, use_threads=False).aggregate([("_i", "max")])
    keep = pc.sort_indices(last["_i_max"])
    return table.take(pc.take(last["_i_max"], keep))


def metric_rows(m, metric: str):
    """The trainer's rows of `metric` ("split.name" or "split.name.layer"; head mean) in a metrics
    frame: what `[sweep] metric` names, what Tune and the scheduler saw."""
    split, name, layer = metric_parts(metric)
    return m[(m.split == split) & (m.metric == name) & (m.layer == layer) & (m["head"] == -1)
             & (m.protocol == "")]


def metric_parts(metric: str) -> tuple[str, str, str]:
    """"split.name[.layer]" → (split, name, layer); layer "" when not given."""
    split, _, name = metric.partition(".")
    name, _, layer = name.partition(".")
    return split, name, layer


# parquet/trials/all-trials.parquet: a finished sweep's trials in one file. Its name must not start
# with "_" or "." (pyarrow, pandas and polars skip such files) and cannot be a Tune trial id.
TRIALS_COMPACT = "all-trials.parquet"
# trial files of an older layout: refused, naming what to do (check_trial_files)
OLD_TRIAL_FILES = {"_all.parquet": "the compacted trials under their name before all-trials.parquet; "
                                   "rename it to all-trials.parquet"}


def check_trial_files(shown: str, names) -> None:
    """A trials folder holding a file of an older layout is refused: one ResultsError naming it."""
    old = sorted(set(names) & set(OLD_TRIAL_FILES))
    if old:
        raise ResultsError(f"{shown}/parquet/trials/{old[0]}: {OLD_TRIAL_FILES[old[0]]}")


def _trial_files(fs, base: str) -> list[str]:
    return [f for f in storage.list_files(fs, f"{base}/parquet/trials") if f.endswith(".parquet")]


def merged_trials(tables: list[pa.Table]) -> pa.Table:
    """Trial rows (tables in file order), one per trial: of a trial's rows (compacted file + a later
    per-trial rewrite) the newest `updated` wins, a tie going to the earlier file — the rule of the
    `trials` view (rlp_tune/reader.py reads through this function)."""
    t = pa.concat_tables(tables, promote_options="permissive")
    if t.num_rows < 2:
        return t
    import pyarrow.compute as pc
    order = pc.sort_indices(t, [("updated", "descending")])
    t = t.take(order)
    first = t.append_column("_i", pa.array(range(t.num_rows))).group_by(
        ["sweep", "trial_id"], use_threads=False).aggregate([("_i", "min")])
    return t.take(pc.take(first["_i_min"], pc.sort_indices(first["_i_min"])))


def compact_trials(root: str | Path) -> int:
    """Merge a finished sweep's one-row trials/<id>.parquet files into trials/all-trials.parquet
    (atomic), then remove them: readers open one file instead of thousands. A trial that later
    rewrites its own file (a resume) wins over its compacted row (readers keep the newest `updated`).
    ROOT: a folder or a URI (storage.filesystem)."""
    fs, base = storage.filesystem(root)
    base = base.rstrip("/")
    every = _trial_files(fs, base)
    check_trial_files(storage.display(root), [f.rpartition("/")[2] for f in every])
    files = [f for f in every if f.rpartition("/")[2] != TRIALS_COMPACT]
    if not files:
        return 0
    tables = []
    for f in every:
        try:
            tables.append(pq.read_table(f, filesystem=fs))
        except (pa.ArrowInvalid, OSError) as e:
            raise ResultsError(f"{storage.display(root)}/parquet/trials/{f.rpartition('/')[2]}: "
                               f"not a readable Parquet file ({e})") from None
    atomic_write_table(merged_trials(tables), f"{base}/parquet/trials/{TRIALS_COMPACT}", fs)
    for f in files:
        fs.delete_file(f)
    return len(files)
