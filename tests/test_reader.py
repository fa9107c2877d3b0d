"""The one reader (rlp_tune/reader.py): the Python API's frames are the DuckDB views, and equal what
the writer's own pyarrow rules (results.dedup_table, compact_trials) make of the same files —
rows and dtypes — on a folder holding every layout a sweep leaves behind, and on the same folder in
an object store (a real S3 endpoint: moto's server on 127.0.0.1). A file that is not what it should
be is named and left out; the rest is read.

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
from rlp_tune.results import (METRIC_KEY, METRIC_SCHEMA, ResultsError, ResultWriter, merged_trials,
                              compact_trials, conform_metrics, dedup_table)

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
    probe file whose row replaces the trainer's row of the same key; t4 a one-row file written by
    hand (pyarrow, not the writer); trials compacted, then t2 rewrites its own row (newer) as a resumed trial does."""
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
    one = pa.table({"sweep": ["s"], "trial_id": ["t4"], "epoch": pa.array([1], pa.int32()), "split": ["test"],
                    "layer": [""], "head": pa.array([-1], pa.int32()), "metric": ["acc"], "protocol": [""],
                    "value": [0.4], "wall_s": [1.0]})
    (root / "parquet/metrics/t4").mkdir()
    pq.write_table(one, root / "parquet/metrics/t4/final.parquet")
    compact_trials(root)
    ResultWriter(root, "s", "t2").write_trial({"run.seed": 0, "rlp.lam": 0.5}, "TERMINATED", 2)
    return root


def _pyarrow_metrics(files: list[Path]) -> pd.DataFrame:
    """The writer's rule over `files` in Path order: later files win (results.dedup_table); rows
    ordered by the key, as the reader returns them."""
    t = dedup_table(pa.concat_tables([conform_metrics(pq.read_table(f)) for f in files]))
    return t.sort_by([(k, "ascending") for k in METRIC_KEY]).to_pandas()


def test_metrics_equal_the_writers_dedup_rows_order_and_dtypes(folder):
    m = read_metrics(folder)
    ref = _pyarrow_metrics(sorted((folder / "parquet/metrics").glob("*/*.parquet")))
    pd.testing.assert_frame_equal(m, ref)                       # same rows, same order, same dtypes
    assert list(m.columns) == METRIC_SCHEMA.names
    assert list(dict.fromkeys(m.trial_id)) == ["t1", "t1-b", "t2", "t3", "t4"]   # key order
    assert len(m[m.trial_id == "t1-b"]) == 3 * 4                # epoch files 2, 3 duplicated in final: once
    t3 = m[(m.trial_id == "t3") & (m.epoch == 2) & (m.split == "test")]
    assert t3.set_index("metric").value["acc"] == 0.77          # the probe's row won over the trainer's
    assert math.isnan(t3.set_index("metric").value["knn_acc"])
    nan = m[(m.split == "train") & (m.metric == "acc") & (m.epoch == 2)]
    assert len(nan) == 4 and nan.value.isna().all()             # NaN stays NaN
    assert m[m.trial_id == "t4"].value.tolist() == [0.4]
    assert read_metrics_table(folder).schema == METRIC_SCHEMA


def test_one_trials_metrics(folder):
    for tid in ("t1-b", "t3"):
        got = read_trial_metrics(folder, tid)
        ref = _pyarrow_metrics(sorted((folder / "parquet/metrics" / tid).glob("*.parquet")))
        pd.testing.assert_frame_equal(got, ref)
        assert set(got.trial_id) == {tid}
    none = read_trial_metrics(folder, "t[1]")                   # a name, not a glob: no such trial
    assert none.empty and list(none.columns) == METRIC_SCHEMA.names


def test_trials_newest_row_wins_in_updated_order(folder):
    tr = read_trials(folder)
    files = sorted((folder / "parquet/trials").glob("*.parquet"))
    assert [f.name for f in files] == ["all-trials.parquet", "t2.parquet"]
    pd.testing.assert_frame_equal(tr, merged_trials([pq.read_table(f) for f in files]).to_pandas())
    assert tr.trial_id.tolist() == ["t2", "t3", "t1-b", "t1"]     # newest `updated` first
    assert tr.set_index("trial_id").status["t2"] == "TERMINATED"   # the rewrite, not the compacted RUNNING


def test_empty_and_missing_roots(tmp_path):
    assert read_metrics(tmp_path / "nope").empty and list(read_metrics(tmp_path).columns) == METRIC_SCHEMA.names
    tr = read_trials(tmp_path / "nope")
    assert tr.empty and list(tr.columns) == ["sweep", "trial_id", "status", "epochs_done"]
    with pytest.raises(ResultsError, match="results folder not found"):
        reader.connect(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsError, match="results folder not found"):
        reader.require_results(tmp_path / "file")


def test_an_object_store_reads_as_the_folder(folder, s3_endpoint):
    """The same files in a bucket: every reader gives the same frames, through pyarrow.fs (DuckDB
    itself opens no file: no extension, no download)."""
    from s3server import upload
    uri = s3_endpoint() + "/sweeps/s"
    upload(folder, uri)
    pd.testing.assert_frame_equal(read_metrics(uri), read_metrics(folder))
    pd.testing.assert_frame_equal(read_trials(uri), read_trials(folder))
    pd.testing.assert_frame_equal(read_trial_metrics(uri, "t1-b"), read_trial_metrics(folder, "t1-b"))
    con = reader.connect(uri)
    assert reader.fetch(con, "SELECT count(DISTINCT trial_id) FROM metrics", "rows") == [(5,)]
    with pytest.raises(reader.QueryError, match="only the views"):
        reader.fetch(con, f"SELECT * FROM read_parquet('{folder}/parquet/trials/t2.parquet')", "rows")


def test_a_bad_file_in_an_object_store_is_named_and_left_out(folder, s3_endpoint):
    """On an object store the files are fetched whole (one request each) and checked the same way."""
    from pyarrow import fs as pafs
    from s3server import upload
    uri = s3_endpoint() + "/sweeps/s"
    upload(folder, uri)
    fs, base = pafs.FileSystem.from_uri(uri)
    with fs.open_output_stream(f"{base}/parquet/metrics/t2/epoch_00001.parquet") as f:
        f.write(b"PAR1 not parquet")
    with pytest.warns(reader.ResultsWarning, match=r"s3://.*/t2/epoch_00001.parquet: not a readable Parquet"):
        got = read_metrics(uri)
    assert set(got[got.trial_id == "t2"].epoch) == {2} and len(set(got.trial_id)) == 5


def test_credentials_in_a_uri_are_never_printed():
    from rlp_tune import storage
    assert storage.display("s3://AKIA:s3cr3t@bucket/x/y?region=eu") == "s3://bucket/x/y"
    assert storage.display("/a/b") == "/a/b" and storage.name("gs://b/sweeps/demo/") == "demo"
    # GCS: a bounded retry (pyarrow's default waits minutes for an unreachable store), unless the URI says
    def retry(uri):   # the GCS filesystem's settings, as pyarrow pickles them
        return storage.filesystem(uri)[0].__reduce__()[1][0]["retry_time_limit"].total_seconds()
    assert retry("gs://b/x") == storage.GCS_RETRY_S and retry("gs://b/x?retry_limit_seconds=3") == 3


def _left_out(folder, bad: Path, read):
    """`read(folder)` with one bad file: the file is named in one ResultsWarning, the rest is read."""
    with pytest.warns(reader.ResultsWarning) as rec:
        got = read(folder)
    msgs = [str(w.message) for w in rec if issubclass(w.category, reader.ResultsWarning)]
    assert len(msgs) == 1 and str(bad) in msgs[0] and "\n" not in msgs[0] and "left out" in msgs[0]
    return got


@pytest.mark.parametrize("which", ["metrics", "trials"])
def test_a_corrupt_file_is_named_and_left_out(folder, which):
    bad = folder / ("parquet/metrics/t2/epoch_00001.parquet" if which == "metrics" else "parquet/trials/t2.parquet")
    bad.write_bytes(bad.read_bytes()[:100])
    got = _left_out(folder, bad, read_metrics if which == "metrics" else read_trials)
    if which == "metrics":
        assert set(got.trial_id) == {"t1", "t1-b", "t2", "t3", "t4"} and set(got[got.trial_id == "t2"].epoch) == {2}
    else:   # t2's own (newer) row is gone: its compacted row stands
        assert got.set_index("trial_id").status["t2"] == "RUNNING" and len(got) == 4


def test_a_file_of_another_schema_is_named_not_dropped_silently(folder):
    """A final.parquet replaced by another table (the silent-loss case: the old reader read its rows
    as missing) and a metrics file whose `value` column holds strings."""
    other = folder / "parquet/metrics/t1/final.parquet"
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), other)
    got = _left_out(folder, other, read_metrics)
    assert "t1" not in set(got.trial_id) and {"t1-b", "t2", "t3", "t4"} <= set(got.trial_id)
    t = pq.read_table(other.parent.parent / "t4/final.parquet")
    strings = other.parent.parent / "t4/final.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("value"), "value", pa.array(["0.4"])), strings)
    with pytest.warns(reader.ResultsWarning) as rec:           # t1's file is still named too
        got = read_metrics(folder)
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 2 and "t4/final.parquet: not an rlp_tune metrics file (value is string, not double)" in msgs[1]
    assert "t4" not in set(got.trial_id)


def test_files_of_an_older_layout_are_refused_naming_the_version(folder):
    """A schema-1 metrics file (no protocol column) and a compacted trials file under its old name
    (_all.parquet): one ResultsError (a UserError: exit 2) naming the file and what it is."""
    v1 = folder / "parquet/metrics/t4/final.parquet"
    t = pq.read_table(v1).drop_columns(["protocol"])
    pq.write_table(t.replace_schema_metadata({"rlp_tune.schema_version": "1"}), v1)
    for read in (read_metrics, lambda root: read_trial_metrics(root, "t4")):
        with pytest.raises(ResultsError) as e:
            read(folder)
        assert str(e.value) == (f"{v1}: results schema version 1; this rlp_tune reads version 2 only "
                                "(no protocol column; docs/results-schema.md)")
    v1.unlink()
    (folder / "parquet/trials/all-trials.parquet").rename(folder / "parquet/trials/_all.parquet")
    for call in (read_trials, compact_trials):
        with pytest.raises(ResultsError, match=r"parquet/trials/_all.parquet: the compacted trials under their "
                                               r"name before all-trials.parquet; rename it to all-trials.parquet$"):
            call(folder)


def test_a_folder_name_with_glob_characters(tmp_path):
    """`[` in the results path is a name, not a pattern."""
    root = tmp_path / "runs[1]" / "sweep*"
    _trial(root, "t1", 2, compact=True)
    assert len(read_metrics(root)) == 2 * 4 and read_trials(root).trial_id.tolist() == ["t1"]


def test_files_vanishing_between_listing_and_reading(folder, monkeypatch):
    """t2 compacts after its view was made (its view names its epoch files, which vanish): the read
    retries once with fresh views and returns every row, now from final.parquet."""
    key = ["epoch", "split", "metric", "layer", "head"]
    before = read_trial_metrics(folder, "t2")
    real, calls = reader._make_views, []

    def make_then_compact(con, state, layout):
        real(con, state, layout)
        if not calls:
            ResultWriter(folder, "s", "t2").compact()
        calls.append(1)

    monkeypatch.setattr(reader, "_make_views", make_then_compact)
    after = read_trial_metrics(folder, "t2")
    assert len(calls) == 2 and not list((folder / "parquet/metrics/t2").glob("epoch_*"))
    assert len(before) == 2 * 4
    pd.testing.assert_frame_equal(before.sort_values(key).reset_index(drop=True),
                                  after.sort_values(key).reset_index(drop=True))


def test_status_on_an_object_store(folder, s3_endpoint):
    """`rlp-tune status` on a bucket shows what it shows on the same folder."""
    from s3server import upload
    from rlp_tune.tune.status import format_status
    uri = s3_endpoint() + "/sweeps/s"
    upload(folder, uri)
    local = format_status(str(folder), "test.acc", "max", ["rlp.lam"])
    assert format_status(uri, "test.acc", "max", ["rlp.lam"]) == local and "t1-b" in local
