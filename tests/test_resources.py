"""A sweep's resources and failure policy, checked without Ray running: fractional GPUs (what Ray can
place per node), `[sweep] max_failures` and `time_budget`, the failed-trial lines, and the torch
thread count a run picks (`run.threads = 0`). tests/test_sweep.py runs a sweep of 0.25-GPU trials
on a local Ray cluster that declares one GPU."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlp_tune.tune.space import SpaceError, load_space, parse_duration

ROOT = Path(__file__).resolve().parents[1]


def space_file(tmp_path, sweep="", resources="", name="r"):
    p = tmp_path / f"{name}.toml"
    p.write_text(f'base = "{ROOT}/configs/digits_mlp.toml"\n[fixed]\n"data.val_fraction" = 0.1\n'
                 f'[search]\n"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}\n'
                 f"[sweep]\nnum_samples = 4\n{sweep}\n[resources]\n{resources}\n")
    return p


# ---- fractional GPUs --------------------------------------------------------------------------------
@pytest.mark.parametrize("gpus", [0.5, 0.25, 0.1, 1, 2])
def test_gpu_fractions_below_one_and_whole_gpus_load(tmp_path, gpus):
    assert load_space(space_file(tmp_path, resources=f"gpus_per_worker = {gpus}")).gpus_per_worker == gpus


@pytest.mark.parametrize("resources", ["gpus_per_worker = 1.5", "gpus_per_worker = 2.25",
                                       "workers_per_trial = 2\ngpus_per_worker = 0.5"])
def test_gpu_fraction_above_one_or_under_ddp_is_refused(tmp_path, resources):
    """Ray 2.60 raises "GPU resource quantities >1 must be whole numbers" when the trial is placed;
    two DDP ranks on one GPU would fail in NCCL."""
    with pytest.raises(SpaceError) as e:
        load_space(space_file(tmp_path, resources=resources))
    assert str(e.value).startswith("resources.gpus_per_worker:") and "\n" not in str(e.value)


def test_cli_exits_2_on_an_unplaceable_gpu_fraction(tmp_path):
    p = space_file(tmp_path, resources="gpus_per_worker = 1.5")
    r = subprocess.run([sys.executable, "-m", "rlp_tune.cli", "sweep", str(p), "--storage", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("rlp-tune: error: resources.gpus_per_worker: 1.5")
    assert len(r.stderr.strip().splitlines()) == 1


def _space(tmp_path, workers=1, cpus=1, gpus=0, max_concurrent=0):
    return load_space(space_file(tmp_path, sweep=f"max_concurrent = {max_concurrent}",
                                 resources=f"workers_per_trial = {workers}\ncpus_per_worker = {cpus}\n"
                                           f"gpus_per_worker = {gpus}"))


@pytest.mark.parametrize("nodes, cpus, gpus, want", [
    ([{"CPU": 2, "GPU": 1}], 0.5, 0.25, 4),           # 4 quarter-GPU trials on one GPU
    ([{"CPU": 2, "GPU": 1}], 1, 0.25, 2),             # ... unless the CPUs hold fewer
    ([{"CPU": 16, "GPU": 2}], 1, 0.4, 4),             # a fraction stays inside one GPU: 2 per GPU, not 5
    ([{"CPU": 16, "GPU": 1}, {"CPU": 16, "GPU": 1}], 1, 0.5, 4),
    ([{"CPU": 8, "GPU": 4}, {"CPU": 1, "GPU": 4}], 1, 1, 5),   # per node: 4 + 1 (CPU-bound), not min(9, 8)
    ([{"CPU": 4}], 1, 0, 4),
    ([{"CPU": 1}], 0.1, 0, 10),                       # Ray's fixed point: 1 / 0.1 is 10
])
def test_concurrency_is_what_ray_places_per_node(tmp_path, nodes, cpus, gpus, want):
    from rlp_tune.tune.sweep import max_concurrent
    assert max_concurrent(_space(tmp_path, cpus=cpus, gpus=gpus), nodes) == want


def test_an_embedded_ray_offers_the_cpus_of_this_process(monkeypatch):
    """A SLURM job without a whole node runs in a cpuset: the embedded Ray holds those CPUs only."""
    from rlp_tune.tune.sweep import local_resources
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7})
    assert local_resources()[0]["CPU"] == 3.0


def test_concurrency_of_ddp_trials_and_the_cap(tmp_path):
    from rlp_tune.tune.sweep import max_concurrent
    nodes = [{"CPU": 4, "GPU": 2}, {"CPU": 4, "GPU": 1}]
    assert max_concurrent(_space(tmp_path, workers=2, gpus=1), nodes) == 1    # 3 GPU workers: one 2-worker trial
    assert max_concurrent(_space(tmp_path, workers=2, cpus=3), nodes) == 1    # 1 + 1 three-CPU workers
    assert max_concurrent(_space(tmp_path, cpus=1, max_concurrent=3), nodes) == 3


@pytest.mark.parametrize("nodes, workers, gpus, key", [
    ([{"CPU": 8, "GPU": 1}, {"CPU": 8, "GPU": 1}], 1, 2, "resources.gpus_per_worker"),  # 2 GPUs, 1 per node
    ([{"CPU": 8, "GPU": 0}], 1, 0.5, "resources.gpus_per_worker"),
    ([{"CPU": 8, "GPU": 1}], 2, 1, "resources.workers_per_trial"),
])
def test_a_trial_ray_cannot_place_names_the_key(tmp_path, nodes, workers, gpus, key):
    from rlp_tune.tune.sweep import max_concurrent
    with pytest.raises(SpaceError) as e:
        max_concurrent(_space(tmp_path, workers=workers, gpus=gpus), nodes)
    assert str(e.value).startswith(key + ":") and "\n" not in str(e.value)


# ---- failures and the time budget -------------------------------------------------------------------
def test_max_failures_and_time_budget_are_read_and_checked(tmp_path):
    s = load_space(space_file(tmp_path, sweep='max_failures = 5\ntime_budget = "1h30m"'))
    assert (s.max_failures, s.time_budget) == (5, 5400.0)
    d = load_space(space_file(tmp_path))
    assert (d.max_failures, d.time_budget) == (2, 0.0)       # today's defaults: 2 retries, no budget
    for bad, key in (("max_failures = -1", "sweep.max_failures"), ('max_failures = "2"', "sweep.max_failures"),
                     ('time_budget = "2 hours"', "sweep.time_budget"), ("time_budget = -5", "sweep.time_budget")):
        with pytest.raises(SpaceError, match=f"^{key}:"):
            load_space(space_file(tmp_path, sweep=bad))


@pytest.mark.parametrize("text, secs", [(90, 90.0), (2.5, 2.5), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
                                        ("1h30m", 5400.0), ("1d", 86400.0), ("0", None), ("h", None), (True, None)])
def test_parse_duration(text, secs):
    if secs is None:
        with pytest.raises(SpaceError, match="^sweep.time_budget:"):
            parse_duration("sweep.time_budget", text)
    else:
        assert parse_duration("sweep.time_budget", text) == secs


def test_time_budget_stops_like_sigusr1(monkeypatch, handlers):
    """After `time_budget` seconds of Tune's run the callback asks for the same clean stop as SIGUSR1:
    Tune's handler is called once, the exit code is 3; a complete sweep is never stopped."""
    import signal
    import time

    from rlp_tune.tune.signals import RESUME_EXIT, StopRequest
    calls = []
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    running, finished = SimpleNamespace(is_finished=lambda: False), SimpleNamespace(is_finished=lambda: True)
    for trials, want in (([running], True), ([finished], False)):
        stop = StopRequest(pidfile="", stopfile="").install()
        signal.signal(signal.SIGUSR1, lambda sig, frame: calls.append(sig))   # Tune's handler, once Tune runs
        cb = stop.callback(expected_trials=1, time_budget=60)
        cb.setup()                                   # attaches to Tune's handler, starts the clock
        cb.on_step_end(iteration=1, trials=trials)
        assert not stop.requested
        now[0] += 61
        cb.on_step_end(iteration=2, trials=trials)
        cb.on_step_end(iteration=3, trials=trials)
        assert stop.requested is want and stop.exit_code() == (RESUME_EXIT if want else 0)
        stop.uninstall()
    assert len(calls) == 1 and stop.signame is None
    assert calls == [signal.SIGINT]                  # Tune's "experiment interrupted", as for SIGUSR1


def test_failed_trial_lines_name_the_trial_and_its_log(tmp_path):
    from rlp_tune.tune.sweep import failed_trials
    bad = tmp_path / "6a1f2_00003_lam=12.3"
    bad.mkdir()
    (bad / "error.txt").write_text("Failure # 1 (occurred at x)\nboom\nFailure # 2 (occurred at y)\nboom\n"
                                   "Failure # 3 (occurred at z)\nboom\n")
    grid = [SimpleNamespace(error=None, path=str(tmp_path / "ok"), metrics={}),
            SimpleNamespace(error=RuntimeError("boom"), path=str(bad), metrics={})]
    assert failed_trials(grid, 2) == [f"trial 6a1f2_00003 failed 3 time(s) (sweep.max_failures = 2): {bad}/error.txt"]


# ---- threads ----------------------------------------------------------------------------------------
def test_auto_threads_follow_affinity_load_and_ranks(monkeypatch):
    from rlp_tune import net
    monkeypatch.setattr(net, "_TORCH_THREADS", 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))   # a cpuset of 4 (SLURM, taskset)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.9, 0, 0))                # idle but for this process
    assert net.usable_cpus() == 4 and net.auto_threads() == 4
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0, 0))                # 2 other busy processes
    assert net.auto_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (19.0, 0, 0))               # a crowded node: never 0
    assert net.auto_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0, 0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")                               # 2 DDP ranks on this node
    assert net.auto_threads() == 2
    monkeypatch.setattr(net, "_TORCH_THREADS", 2)                             # no more than physical cores
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert net.auto_threads() == 2


def test_trainer_sets_the_threads_it_chose(tiny_cfg):
    import torch

    from rlp_tune.run.train import Trainer
    before = torch.get_num_threads()
    try:
        assert Trainer(tiny_cfg.replace(**{"run.threads": 1})).threads == 1 == torch.get_num_threads()
        t = Trainer(tiny_cfg)                      # run.threads = 0: auto
        assert 1 <= t.threads == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
