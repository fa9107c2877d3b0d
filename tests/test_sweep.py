"""Sweeps: search-space validation (no Ray), and few, small end-to-end runs on local Ray (marked `ray`).

Ray tests send traffic to 127.0.0.1 only and stop every process they started, by pid."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.results import METRIC_KEY
from rlp_tune.tune.space import SpaceError, load_space

ROOT = Path(__file__).resolve().parents[1]

SPACE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"run.epochs" = {epochs}
"model.width" = 64
{extra_fixed}
[search]
"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}
"rlp.n" = {{ dist = "intlog", low = 8, high = 64 }}
"rlp.heads" = {{ dist = "int", low = 1, high = 2 }}
[sweep]
name = "{name}"
num_samples = {samples}
seeds = {seeds}
{sweep_extra}
[scheduler]
type = "{sched}"
grace_period = 1
reduction_factor = 2
[resources]
workers_per_trial = {workers}
cpus_per_worker = {cpus}
gpus_per_worker = {gpus}
"""


def write_space(tmp_path, name="t", epochs=2, samples=3, sched="asha", workers=1, seeds="[0]", extra_fixed="",
                sweep_extra="", cpus=1, gpus=0):
    p = tmp_path / f"{name}.toml"
    p.write_text(SPACE.format(root=ROOT, name=name, epochs=epochs, samples=samples, sched=sched, workers=workers,
                              seeds=seeds, extra_fixed=extra_fixed, sweep_extra=sweep_extra, cpus=cpus, gpus=gpus))
    return p


# ---- validation, before Ray starts ----------------------------------------------------------------
@pytest.mark.parametrize("search, key", [
    ('"rlp.lamda" = { dist = "loguniform", low = 1e-2, high = 1 }', "rlp.lamda"),
    ('"rlp.lam" = { dist = "gauss", low = 1e-2, high = 1 }', "rlp.lam"),
    ('"rlp.hidden" = { dist = "choice", values = [] }', "rlp.hidden"),
    ('"rlp.lam" = { dist = "uniform", low = 2, high = 1 }', "rlp.lam"),
    ('"rlp.lam" = { dist = "loguniform", low = 0, high = 1 }', "rlp.lam"),
    ('"rlp.n" = { dist = "int", low = 1, high = 8 }', "rlp.n"),          # 1 is out of rlp.n's range
    ('"rlp.heads" = { dist = "choice", values = ["two"] }', "rlp.heads"),
])
def test_invalid_spaces_name_the_key(tmp_path, search, key):
    p = tmp_path / "bad.toml"
    p.write_text(f'base = "{ROOT}/configs/digits_mlp.toml"\n[fixed]\n"data.val_fraction" = 0.1\n[search]\n{search}\n')
    with pytest.raises(SpaceError) as e:
        load_space(p)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_val_metric_needs_a_validation_split(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(f'base = "{ROOT}/configs/digits_mlp.toml"\n[search]\n"rlp.lam" = {{ dist = "uniform", low = 0, high = 1 }}\n')
    with pytest.raises(SpaceError, match="^sweep.metric: a 'val' metric needs data.val_fraction"):
        load_space(p)


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_spaces_load(path):
    s = load_space(path)
    assert s.search and s.metric.startswith("val.")


def test_cli_invalid_space_exits_2_before_ray(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(f'base = "{ROOT}/configs/digits_mlp.toml"\n[search]\n"rlp.lam" = {{ dist = "loguniform", low = -1, high = 1 }}\n')
    r = subprocess.run([sys.executable, "-m", "rlp_tune.cli", "sweep", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("rlp-tune: error: rlp.lam:")


# ---- end to end on local Ray ------------------------------------------------------------------------
def _check_results(root: Path, n_trials: int, epochs: int):
    trials = read_trials(root)
    assert len(trials) == n_trials, trials
    m = read_metrics(root)
    assert not m.duplicated(METRIC_KEY).any()
    for t in trials.itertuples():
        got = sorted(m[m.trial_id == t.trial_id].epoch.unique())
        assert got == list(range(1, len(got) + 1)), (t.trial_id, got)   # no gap
        if t.status == "TERMINATED":
            assert got[-1] == epochs
    return trials, m


def local_cluster(nodes: list[dict]):
    """A simulated Ray cluster on 127.0.0.1 of these nodes (Cluster's node arguments), connected."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={**nodes[0], "node_ip_address": "127.0.0.1"})
    for node in nodes[1:]:
        cluster.add_node(**node, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def two_node_cluster(s3_endpoint):
    """Two nodes of 1 CPU; started after the S3 endpoint, so their processes reach it too."""
    yield from local_cluster([{"num_cpus": 1}, {"num_cpus": 1}])


@pytest.mark.ray
def test_sweep_on_two_nodes_then_ddp_trial(tmp_path, s3_endpoint, two_node_cluster, capsys):
    """A sweep of 2-epoch trials across a simulated two-node cluster (ASHA on) whose storage is an
    object store (a real S3 endpoint on 127.0.0.1): trials on both nodes write their rows, checkpoints
    and the ledger's driver its events to the bucket; then a trial of 2 DDP workers on the cluster's
    2 CPUs (its driver holds no CPU)."""
    import ray
    from rlp_tune.tune.ledger import Ledger
    from rlp_tune.tune.sweep import run_sweep
    space = load_space(write_space(tmp_path, "two_nodes", epochs=2, samples=4))
    storage = s3_endpoint() + "/res"
    out = run_sweep(space, storage=storage, address=two_node_cluster.address)
    root = f"{storage}/two_nodes"
    trials, m = _check_results(root, 4, 2)
    ledger = Ledger(root).read()
    assert set(ledger.trials) == set(trials.trial_id) and all(r.done for r in ledger.trials.values())
    from rlp_tune.storage import read_bytes
    finished = trials[trials.status == "TERMINATED"].trial_id
    assert all(read_bytes(root, f"trials/{t}/checkpoints/model.pt") for t in finished)
    assert out["best"] is not None and out["best"]["val.acc"] == pytest.approx(
        m[(m.metric == "acc") & (m.split == "val")].groupby("trial_id").value.last().max())
    assert "best trials by final val.acc" in capsys.readouterr().out
    assert trials["node"].nunique() == 2          # both nodes ran trials
    assert len(ray.nodes()) == 2

    ddp = load_space(write_space(tmp_path, "ddp", epochs=2, samples=1, sched="fifo", workers=2))
    run_sweep(ddp, storage=str(tmp_path / "res"), address=two_node_cluster.address)
    trials, m = _check_results(tmp_path / "res" / "ddp", 1, 2)
    assert trials.status.tolist() == ["TERMINATED"] and trials.world_size.tolist() == [2]


@pytest.fixture
def one_gpu_cluster():
    """A one-node Ray cluster that declares 1 GPU (none needed: trials run on the CPU) and 2 CPUs."""
    yield from local_cluster([{"num_cpus": 2, "num_gpus": 1}])


@pytest.mark.ray
def test_quarter_gpu_trials_share_one_gpu_and_a_time_budget_stop_resumes(tmp_path, one_gpu_cluster, capsys):
    """gpus_per_worker = 0.25 on a cluster with 1 GPU: Ray places 4 trials at once, each sees GPU 0
    (its own rows say so, and their started..updated intervals overlap). A 1 s time budget stops the
    first driver cleanly (exit 3, like SIGUSR1); `resume` then finishes the sweep."""
    from rlp_tune.tune.signals import RESUME_EXIT
    from rlp_tune.tune.sweep import max_concurrent, resume_sweep, run_sweep
    space = load_space(write_space(tmp_path, "quarter", epochs=12, samples=4, sched="fifo", cpus=0.5, gpus=0.25,
                                   extra_fixed='"run.device" = "cpu"', sweep_extra='time_budget = "1s"'))
    assert space.time_budget == 1.0
    assert max_concurrent(space) == 4               # what Ray places: 4 x 0.25 GPU, 4 x 0.5 CPU
    first = run_sweep(space, storage=str(tmp_path / "res"), address=one_gpu_cluster.address)
    assert first["exit_code"] == RESUME_EXIT and first["stopped_by"] == "time_budget"
    assert "time_budget of 1 s spent" in capsys.readouterr().err
    root = tmp_path / "res" / "quarter"
    stored = root / "space.toml"                      # each driver gets the budget afresh: lift it to finish
    stored.write_text(stored.read_text().replace('time_budget = "1s"', "time_budget = 0"))
    assert resume_sweep(str(root), address=one_gpu_cluster.address)["exit_code"] == 0
    trials, _ = _check_results(root, 4, 12)
    assert trials.status.tolist() == ["TERMINATED"] * 4
    assert trials.gpu_ids.tolist() == ["0"] * 4       # Ray's CUDA_VISIBLE_DEVICES for each trial
    assert trials.started.max() < trials.updated.min()  # all 4 ran at once
    assert not list(root.rglob("error.txt"))             # the budget's stop is no trial failure


def _marked_pids(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def start_sweep_driver(space, storage):
    """`rlp-tune sweep SPACE --storage STORAGE` in its own session, its processes marked by an environment
    variable so `_kill_marked(marker)` ends what it started (Ray's agents outlive a SIGKILLed driver).
    Returns (driver, marker, env, cmd): env and cmd run later commands (resume, status) the same way."""
    marker = f"RLP_TEST_{uuid.uuid4().hex}"
    env = {**os.environ, marker: "1", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "rlp_tune.cli"]
    driver = subprocess.Popen(cmd + ["sweep", str(space), "--storage", str(storage)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return driver, marker, env, cmd


def _kill_marked(marker: str) -> None:
    for pid in _marked_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.ray
def test_kill_driver_then_resume(tmp_path):
    """kill -9 the sweep driver mid-run; `rlp-tune resume` completes it: every trial's rows, no
    duplicate, and a trial that had finished is not run again."""
    space = write_space(tmp_path, "killed", epochs=6, samples=3, sched="fifo",
                        extra_fixed='"model.width" = 1024\n"run.batch_size" = 16')
    space.write_text(space.read_text().replace('"model.width" = 64\n', ""))
    storage, root = tmp_path / "res", tmp_path / "res" / "killed"
    driver, marker, env, cmd = start_sweep_driver(space, storage)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:   # wait until one trial finished and another is mid-way
            tr = read_trials(root) if (root / "parquet").exists() else None
            if tr is not None and (tr.status == "TERMINATED").any() and (tr.status == "RUNNING").any():
                break
            time.sleep(0.5)
        else:
            pytest.fail("sweep did not reach a finished and a running trial in time")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(2)
        _kill_marked(marker)   # Ray's agents outlive a SIGKILLed driver: end what this test started
        before = read_trials(root)
        finished = before[before.status == "TERMINATED"].trial_id.tolist()
        files = lambda t: [root / "parquet" / "metrics" / t / "final.parquet",  # noqa: E731
                           root / "trials" / t / "checkpoints" / "last.pt"]
        stamps = {t: [f.stat().st_mtime_ns for f in files(t)] for t in finished}

        r = subprocess.run(cmd + ["resume", str(root)], env=env, capture_output=True, text=True, timeout=400)
        (tmp_path / "resume.stderr").write_text(r.stderr)
        assert r.returncode == 0, f"resume exited {r.returncode}:\n" + "\n".join(r.stderr.splitlines()[-40:])
        trials, m = _check_results(root, 3, 6)
        assert (trials.status == "TERMINATED").all(), trials[["trial_id", "status"]]
        for t in finished:   # not trained again, its rows not rewritten
            assert [f.stat().st_mtime_ns for f in files(t)] == stamps[t]
        st = subprocess.run(cmd + ["status", str(root)], env=env, capture_output=True, text=True)
        assert st.returncode == 0 and st.stdout.splitlines()[:2] == [
            "sweep killed: 3 of 3 trials done (3 finished, 0 stopped by the scheduler)", "complete"], st.stdout

        # extended: one more sample runs, the three trials before are not touched; other epochs are refused
        def more(**kw):
            p = write_space(tmp_path, "more", sched="fifo", extra_fixed='"model.width" = 1024\n"run.batch_size" = 16', **kw)
            p.write_text(p.read_text().replace('"model.width" = 64\n', ""))
            return str(p)
        bad = subprocess.run(cmd + ["resume", str(root), "--space", more(epochs=7, samples=4)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and bad.stderr.startswith("rlp-tune: error: run.epochs:") \
            and bad.stderr.count("\n") == 1, bad.stderr
        stamps = {t: [f.stat().st_mtime_ns for f in files(t)] for t in trials.trial_id}
        r = subprocess.run(cmd + ["resume", str(root), "--space", more(epochs=6, samples=4)], env=env,
                           capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, "\n".join(r.stderr.splitlines()[-40:])
        extended, _ = _check_results(root, 4, 6)
        assert (extended.status == "TERMINATED").all()
        assert {t: [f.stat().st_mtime_ns for f in files(t)] for t in trials.trial_id} == stamps
    finally:
        if driver.poll() is None:
            driver.kill()
        _kill_marked(marker)


def test_trials_compaction_keeps_one_newest_row_per_trial(tmp_path):
    """A finished sweep merges its one-row trials files; a later per-trial rewrite wins."""
    import time as _t

    from rlp_tune.analysis.query import run_query
    from rlp_tune.results import ResultWriter, compact_trials
    for tid in ["a", "b", "c"]:
        w = ResultWriter(tmp_path, "s", tid)
        w.write_epoch(1, [dict(split="test", metric="acc", value=0.5)])
        w.write_trial({"rlp.lam": 1.0}, "TERMINATED", 1)
    assert compact_trials(tmp_path) == 3
    assert [p.name for p in (tmp_path / "parquet" / "trials").iterdir()] == ["all-trials.parquet"]
    _t.sleep(0.01)
    ResultWriter(tmp_path, "s", "b").write_trial({"rlp.lam": 1.0}, "RUNNING", 2)   # e.g. resumed later
    t = read_trials(tmp_path).set_index("trial_id")
    assert sorted(t.index) == ["a", "b", "c"] and t.loc["b", "status"] == "RUNNING"
    out = run_query(tmp_path, "SELECT trial_id, status FROM trials ORDER BY trial_id", "csv")
    assert out.split() == ["trial_id,status", "a,TERMINATED", "b,RUNNING", "c,TERMINATED"]
