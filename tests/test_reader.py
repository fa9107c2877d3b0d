"""The one reader (rlp_tune/reader.py): the Python API's frames are the DuckDB views, and equal what
the writer's own pyarrow rules (results.dedup_table, compact_trials) make of the same files —
rows, order and dtypes — on a folder holding every layout a sweep leaves behind.

    pytest tests/test_reader.py -q
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rlp_tune import reader
from rlp_tune.reader import read_metrics, read_metrics_table, read_trial_metrics, read_trials
from rlp_tune.results import (METRIC_SCHEMA, ResultsError, ResultWriter, merged_trials, compact_trials,
                              conform_metrics, dedup_table)

NAN = float("nan")


def _rows(e: int, tid: str) -> list[dict]:
    v = 0.1 * e + (0.01 if tid.endswith("b") else 0.0)
    return [{"split": "test", "metric": "acc", "value": v},
            {"split": "train", "metric": "acc", "value": NAN if e == 2 else v},     # NaN in the Parquet file
            {"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": 0, "value": v / 2},
            {"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": -1, "value": v / 2}]


def _trial(root: Path, tid: str, epochs: int, compact: bool, status: str = "TERMINATED") -> ResultWriter:
    w = ResultWriter(root, "s", tid)
    for e in range(1, epochs + 1):
        w.write_epoch(e, _rows(e, tid))
    w.write_trial({"run.seed": 0, "rlp.lam": 0.5, "rlp.layers": ["penultimate"]}, status, epochs)
    if compact:
        w.compact()
    time.sleep(0.002)   # distinct `updated` times
    return w


@pytest.fixture()
def folder(tmp_path):
    """t1 compacted; t1-b (a name that sorts after t1 as a folder, before it as a string) with a crash
    leftover (final.parquet + epoch files 2, 3); t2 still running (epoch files); t3 compacted with a
    probe file whose row replaces the trainer's row of the same key; t4 a schema-1 file (no
    protocol column); trials compacted, then t2 rewrites its own row (newer) as a resumed trial does."""
    root = tmp_path / "sweep"
    _trial(root, "t1", 3, compact=True)
    _trial(root, "t1-b", 3, compact=True)
    final = root / "parquet/metrics/t1-b/final.parquet"
    t = pq.read_table(final)
    for e in (2, 3):
        pq.write_table(t.filter(pc.equal(t["epoch"], e)), final.parent / f"epoch_{e:05d}.parquet")
    _trial(root, "t2", 2, compact=False, status="RUNNING")
    w = _trial(root, "t3", 2, compact=True)
    w.write_epoch(2, [{"split": "test", "metric": "acc", "value": 0.77},
                      {"split": "test", "metric": "knn_acc", "protocol": "labels=clean;k=5", "value": NAN}],
                  kind="probe")
    v1 = pa.table({"sweep": ["s"], "trial_id": ["t4"], "epoch": pa.array([1], pa.int32()), "split": ["test"],
                   "layer": [""], "head": pa.array([-1], pa.int32()), "metric": ["acc"], "value": [0.4],
                   "wall_s": [1.0]})
    (root / "parquet/metrics/t4").mkdir()
    pq.write_table(v1, root / "parquet/metrics/t4/final.parquet")
    compact_trials(root)
    ResultWriter(root, "s", "t2").write_trial({"run.seed": 0, "rlp.lam": 0.5}, "TERMINATED", 2)
    return root


def _pyarrow_metrics(files: list[Path]) -> pa.Table:
    """The writer's rule over `files` in Path order: later files win (results.dedup_table)."""
    return dedup_table(pa.concat_tables([conform_metrics(pq.read_table(f)) for f in files]))


def test_metrics_equal_the_writers_dedup_rows_order_and_dtypes(folder):
    m = read_metrics(folder)
    ref = _pyarrow_metrics(sorted((folder / "parquet/metrics").glob("*/*.parquet"))).to_pandas()
    pd.testing.assert_frame_equal(m, ref)                       # same rows, same order, same dtypes
    assert list(m.columns) == METRIC_SCHEMA.names
    assert list(dict.fromkeys(m.trial_id)) == ["t1", "t1-b", "t2", "t3", "t4"]   # folder order
    assert len(m[m.trial_id == "t1-b"]) == 3 * 4                # epoch files 2, 3 duplicated in final: once
    t3 = m[(m.trial_id == "t3") & (m.epoch == 2) & (m.split == "test")]
    assert t3.set_index("metric").value["acc"] == 0.77          # the probe's row won over the trainer's
    assert math.isnan(t3.set_index("metric").value["knn_acc"])
    nan = m[(m.split == "train") & (m.metric == "acc") & (m.epoch == 2)]
    assert len(nan) == 4 and nan.value.isna().all()             # NaN stays NaN
    assert m[m.trial_id == "t4"].protocol.tolist() == [""]      # schema 1 reads as protocol ""
    assert read_metrics_table(folder).schema == METRIC_SCHEMA


def test_one_trials_metrics(folder):
    for tid in ("t1-b", "t3"):
        got = read_trial_metrics(folder, tid)
        ref = _pyarrow_metrics(sorted((folder / "parquet/metrics" / tid).glob("*.parquet"))).to_pandas()
        pd.testing.assert_frame_equal(got, ref)
        assert set(got.trial_id) == {tid}
    none = read_trial_metrics(folder, "t[1]")                   # a name, not a glob: no such trial
    assert none.empty and list(none.columns) == METRIC_SCHEMA.names


def test_trials_newest_row_wins_in_updated_order(folder):
    tr = read_trials(folder)
    files = sorted((folder / "parquet/trials").glob("*.parquet"))
    assert [f.name for f in files] == ["all-trials.parquet", "t2.parquet"]
    pd.testing.assert_frame_equal(tr, merged_trials(files).to_pandas())
    assert tr.trial_id.tolist() == ["t2", "t3", "t1-b", "t1"]     # newest `updated` first
    assert tr.set_index("trial_id").status["t2"] == "TERMINATED"   # the rewrite, not the compacted RUNNING


def test_empty_missing_and_remote_roots(tmp_path):
    assert read_metrics(tmp_path / "nope").empty and list(read_metrics(tmp_path).columns) == METRIC_SCHEMA.names
    tr = read_trials(tmp_path / "nope")
    assert tr.empty and list(tr.columns) == ["sweep", "trial_id", "status", "epochs_done"]
    for f in (read_metrics, read_trials):
        with pytest.raises(ResultsError, match="only local results folders"):
            f("s3://bucket/sweep")


@pytest.mark.parametrize("which", ["metrics", "trials"])
def test_a_corrupt_file_is_named(folder, which):
    bad = folder / ("parquet/metrics/t2/epoch_00001.parquet" if which == "metrics" else "parquet/trials/t2.parquet")
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(ResultsError) as ei:
        (read_metrics if which == "metrics" else read_trials)(folder)
    assert str(bad) in str(ei.value) and "\n" not in str(ei.value)


def test_files_vanishing_between_listing_and_reading(folder, monkeypatch):
    """t2 compacts after its view was made (its view names its epoch files, which vanish): the read
    retries once with fresh views and returns every row, now from final.parquet."""
    key = ["epoch", "split", "metric", "layer", "head"]
    before = read_trial_metrics(folder, "t2")
    real, calls = reader._make_views, []

    def make_then_compact(con, state):
        real(con, state)
        if not calls:
            ResultWriter(folder, "s", "t2").compact()
        calls.append(1)

    monkeypatch.setattr(reader, "_make_views", make_then_compact)
    after = read_trial_metrics(folder, "t2")
    assert len(calls) == 2 and not list((folder / "parquet/metrics/t2").glob("epoch_*"))
    assert len(before) == 2 * 4
    pd.testing.assert_frame_equal(before.sort_values(key).reset_index(drop=True),
                                  after.sort_values(key).reset_index(drop=True))


def test_status_on_a_remote_root(tmp_path):
    """`rlp-tune status` names the limit on an object store; the sweep's closing table has no rows."""
    from rlp_tune.tune.status import format_status, trial_table
    assert trial_table("s3://bucket/sweep", "test.acc") == []
    with pytest.raises(ResultsError, match="only local results folders"):
        format_status("s3://bucket/sweep", "test.acc", "max", [])
