"""Faults of the machine while `rlp-tune train` runs (docs/reliability.md "Faults"): a full disk or a
folder turned read-only mid-run stops the run with one line and exit 5 (FAULT_EXIT), leaves no
half-written file, and the same command continues it to the result of an uninterrupted run; a
partial checkpoint a kill left is removed by the next run; rerunning a finished run touches nothing.

    pytest tests/test_faults.py -q

The disk's refusal is injected in this process at the two writers (pyarrow's write_table for the
rows, torch.save for the checkpoint): each writes part of its file, then raises the OSError a full
disk raises.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from rlp_tune.cli import main
from rlp_tune.errors import FAULT_EXIT

TINY = """
[data]
name = "digits"
[model]
name = "mlp"
width = 8
[rlp]
n = 4
[run]
epochs = 3
batch_size = 512
device = "cpu"
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    (d / "tiny.toml").write_text(TINY)
    assert main(["train", str(d / "tiny.toml"), "--out", str(d / "straight"), "--no-progress"]) == 0
    return d


def final_rows(out: Path):
    from rlp_tune.reader import read_metrics
    df = read_metrics(out).drop(columns=["wall_s", "trial_id"])
    df = df[~df.metric.isin(["epoch_s", "samples_per_s"])]     # timings differ run to run
    return df.sort_values(list(df.columns[:-1])).reset_index(drop=True)


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if ".tmp-" in p.name)


@pytest.mark.parametrize("writer", ["rows", "checkpoint"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_refused_write_mid_run_is_one_line_and_the_rerun_continues(straight, tmp_path, monkeypatch, capsys,
                                                                    writer, code):
    import pyarrow.parquet as pq
    import torch

    import rlp_tune.results as results
    import rlp_tune.run.train as train
    out = tmp_path / "run"
    calls = {"n": 0}
    real = {"rows": pq.write_table, "checkpoint": torch.save}[writer]

    def refuse(obj, where, *a, **k):   # the 2nd epoch's write: part of the file, then the disk says no
        calls["n"] += 1
        if calls["n"] == 2 + (writer == "rows"):   # rows: epoch 1 writes its rows and the trial row
            if hasattr(where, "write"):
                where.write(b"PK\x03\x04 partial")
            else:
                Path(where).write_bytes(b"PAR1 partial")
            raise OSError(code, os.strerror(code))
        return real(obj, where, *a, **k)

    if writer == "rows":
        monkeypatch.setattr(results.pq, "write_table", refuse)
    else:
        monkeypatch.setattr(train.torch, "save", refuse)
    rc = main(["train", str(straight / "tiny.toml"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == FAULT_EXIT, err
    assert err[-1].startswith("rlp-tune: error: ") and os.strerror(code) in err[-1] and "Traceback" not in "\n".join(err)
    assert leftovers(out) == []                       # no half-written file stays
    monkeypatch.undo()
    assert main(["train", str(straight / "tiny.toml"), "--out", str(out), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert final_rows(out).equals(final_rows(straight / "straight"))


def test_partial_checkpoint_left_by_a_kill_is_removed_by_the_next_run(straight, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(straight / "straight", out)
    for name in (".last.pt.tmp-99999", ".model.pt.tmp-12345"):
        (out / "checkpoints" / name).write_bytes(b"PK\x03\x04 half")
    assert main(["train", str(straight / "tiny.toml"), "--out", str(out), "--no-progress"]) == 0
    assert leftovers(out) == []


def test_rerun_of_a_finished_run_leaves_the_lock_file_as_it_was(straight, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(straight / "straight", out)
    lock = out / ".lock"
    os.utime(lock, ns=(1, 1))
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    assert main(["train", str(straight / "tiny.toml"), "--out", str(out), "--no-progress"]) == 0
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before


def test_a_sweep_that_fails_on_a_refused_write_ends_with_the_disks_error(tmp_path, monkeypatch):
    """Tune fails on its own half-written files when the disk is full (an EOFError reading a
    trial's truncated error.pkl, seen on a full tmpfs): the driver raises the disk's OSError naming
    the sweep folder instead (the CLI: one line, exit 5); with a disk that takes writes, Tune's own
    error stays as it was."""
    import types

    import rlp_tune.run.rundir as rundir
    from rlp_tune.tune.sweep import _fit

    def tune_fails():
        raise EOFError("Ran out of input")
    tuner = types.SimpleNamespace(fit=tune_fails)
    with pytest.raises(EOFError):
        _fit(tuner, str(tmp_path))
    real_write = os.write

    def full(fd, data):
        if len(data) == 65536:    # the probe's write: the disk says no
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)
    monkeypatch.setattr(rundir.os, "write", full)
    with pytest.raises(OSError) as e:
        _fit(tuner, str(tmp_path))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path)
    assert list(tmp_path.iterdir()) == []      # the probe file is gone
