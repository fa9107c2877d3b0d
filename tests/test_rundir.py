"""One process per run folder, and a run's identity kept across resumes.

    pytest tests/test_rundir.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlp_tune.cli import main
from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.run.rundir import RunLock, RunLockedError
from rlp_tune.run.train import Trainer

REPO = Path(__file__).resolve().parents[1]
HOLD = ("import sys; from rlp_tune.run.rundir import RunLock; lock = RunLock.acquire(sys.argv[1]); "
        "print('locked', flush=True); sys.stdin.read()")


def _holder(folder: Path) -> subprocess.Popen:
    """A second process that holds FOLDER's lock until its stdin closes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=env, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_process_on_a_run_folder_is_refused(tiny_cfg, tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        (tmp_path / "c.toml").write_text('[run]\nepochs = 1\ndevice = "cpu"\n[model]\nwidth = 16\n')
        rc = main(["train", str(tmp_path / "c.toml"), "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1
        assert f"another process (pid {holder.pid}) is running in this folder" in err[0]
        assert sorted(p.name for p in out.iterdir()) == [".lock"]       # nothing trained, nothing written
        with pytest.raises(RunLockedError):
            Trainer(tiny_cfg, out_dir=out)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder is gone (the kernel dropped its lock): the folder is free
    assert main(["train", str(tmp_path / "c.toml"), "--out", str(out), "--no-progress"]) == 0


def test_lock_is_held_for_the_run_and_released_at_its_end(tiny_cfg, tmp_path):
    t = Trainer(tiny_cfg, out_dir=tmp_path)
    with pytest.raises(RunLockedError):       # same process, second Trainer: refused as well
        RunLock.acquire(tmp_path)
    fit = t.fit()
    next(fit)
    with pytest.raises(RunLockedError):
        RunLock.acquire(tmp_path)
    list(fit)                                # the run ends: the folder is free
    RunLock.acquire(tmp_path).release()


def test_moved_run_keeps_its_trial_id(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"run.epochs": 2})
    first = Trainer(cfg, out_dir=tmp_path / "a")
    fit = first.fit()
    next(fit)
    fit.close()                               # "interrupted" after epoch 1
    (tmp_path / "a").rename(tmp_path / "b")   # the folder is moved / renamed
    resumed = Trainer(cfg, out_dir=tmp_path / "b")
    assert resumed.epoch == 1 and resumed.trial_id == "a"
    list(resumed.fit())
    trials = read_trials(tmp_path / "b")
    assert trials.trial_id.tolist() == ["a"] and trials.status.tolist() == ["TERMINATED"]
    m = read_metrics(tmp_path / "b")
    assert set(m.trial_id) == {"a"} and sorted(m.epoch.unique()) == [1, 2]
    from rlp_tune.offline.probe import probe_checkpoints     # rows added later join the same trial
    probe_checkpoints(tmp_path / "b", probes=["ncm"])
    m = read_metrics(tmp_path / "b")
    assert set(m.trial_id) == {"a"} and "ncm_acc" in set(m.metric)
