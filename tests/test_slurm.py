"""The SLURM recipes of cluster/slurm/ on a one-node SLURM that this test brings up (marked `slurm`).

Two tiny digits sweeps (`run.device = "cpu"`, 40 epochs per trial) are submitted at once to the one
node, each with a 2-minute wall time and SIGUSR1 60 s before it: `shared` through the shared-cluster
recipe (head.sbatch: the driver and a Ray head without CPUs, plus one worker job per allocation that
joins it; the worker asks for one CPU, `RLP_WORKER_SBATCH`, where a real one asks for
`--gres=gpu:1`) and `onenode` through sweep.sbatch (the driver's own Ray). SLURM 22.05 checks time
limits every 30 s and sends the warning at the last check before "limit - 60 s", i.e. 30-60 s after
the start, so each sweep stops cleanly in its first allocation and requeues itself; the test then
raises the requeued job's time limit, and the second allocation resumes the sweep and runs it to the
end. Checked for each: the job completes once (exit 0, one requeue), the sweep is complete (every
trial, every epoch), its Parquet files hold no duplicate row, no finished trial ran twice; for the
head job, each allocation's worker joined and left and its job completed; nothing the test started
is left running.

Needs root, SLURM (slurmctld, slurmd, sbatch, ...), munge and unshare (.ci/run installs slurm-wlm
and munge with apt-get); skips with the reason otherwise. Isolation on a shared machine:
* munged, slurmctld and slurmd use their own socket, ports, state and spool folders under tmp; every
  job's Ray temp folder is below one folder of the test's;
* slurmd (and so every job, and every Ray process of a job) runs in its own PID namespace, under a
  small reaping init: `ray symmetric-run` ends with `ray stop`, which stops every Ray process it can
  see, and refuses to start when it sees another Ray; in the namespace it sees only the jobs' own;
* teardown ends the namespace (all of it) and the two daemons outside it, by pid.
Takes ~2-5 minutes: 225-241 s from sbatch to both COMPLETED on a shared 2-core machine at load ~4-7.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.results import METRIC_KEY

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "cluster" / "slurm" / "sweep.sbatch"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TOOLS = ["sbatch", "squeue", "scontrol", "sinfo", "slurmctld", "slurmd", "munged", "unshare"]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (munged runs as munge, slurmd as root, a PID namespace for the jobs)"
    gone = [t for t in TOOLS if shutil.which(t, path=SBIN) is None]
    if gone:
        return f"SLURM/munge not installed ({', '.join(gone)} missing): apt-get install slurm-wlm munge"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (the munge package creates it)"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if r.returncode != 0:
        return f"cannot make a PID namespace here: {r.stderr.decode().strip()}"
    return None


# PID 1 of the namespace: runs slurmd, reaps every orphan (Ray daemons are re-parented here; without
# reaping they stay zombies and `ray stop` waits its whole grace period for them), passes SIGTERM on.
INIT = r"""
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda s, f: child.terminate())
while True:
    try:
        pid, _ = os.wait()
    except ChildProcessError:
        break
    if pid == child.pid:
        break
"""

CONF = """\
ClusterName=rlptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also the wait before a requeued job may start again (default 120 s)
AuthInfo=socket={tmp}/munge/sock,cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/log/slurmctld.log
SlurmdLogFile={tmp}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# the test reads finished worker jobs' states (default: forgotten after 300 s)
MinJobAge=900
NodeName={host} NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked_pids(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if f"{marker}=".encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def slurm(tmp_path):
    """A one-node SLURM (munged, slurmctld outside, slurmd in a PID namespace); yields its env."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    tmp = Path(f"/tmp/rlp_slurm_{uuid.uuid4().hex[:8]}")   # short: socket paths have a length limit
    for d in ("state", "spool", "log", "munge"):
        (tmp / d).mkdir(parents=True)
    shutil.chown(tmp / "munge", "munge", "munge")
    (tmp / "munge").chmod(0o711)   # munged wants its socket's folder reachable by all
    host = socket.gethostname().split(".")[0]
    conf = tmp / "slurm.conf"
    conf.write_text(CONF.format(host=host, tmp=tmp, ctld_port=_free_port(), d_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": SBIN}
    procs = []
    logs = open(tmp / "log" / "daemons.out", "w")

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, env=env, stdout=logs, stderr=subprocess.STDOUT, **kw)
        procs.append(p)
        return p

    try:
        munged = shutil.which("munged", path=SBIN)
        start([munged, "-F", f"--socket={tmp}/munge/sock", f"--pid-file={tmp}/munge/pid",
               f"--log-file={tmp}/munge/log", f"--seed-file={tmp}/munge/seed"], user="munge", group="munge",
              extra_groups=[])
        deadline = time.time() + 20
        while not (tmp / "munge" / "sock").exists():
            assert time.time() < deadline, "munged did not start"
            time.sleep(0.1)
        start([shutil.which("slurmctld", path=SBIN), "-D", "-i"])
        start(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c", INIT,
               shutil.which("slurmd", path=SBIN), "-D"])
        deadline = time.time() + 60
        while True:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if r.stdout.strip() == "idle":
                break
            if time.time() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail(f"one-node SLURM did not come up: {r.stdout} {r.stderr}\n"
                            + (tmp / "log" / "daemons.out").read_text()[-3000:])
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)  # only this SLURM's jobs
        # slurmd's namespace first: unshare ignores SIGTERM, and its SIGKILL takes the namespace's
        # init (--kill-child), so every process in the namespace, with it
        namespace = procs.pop() if len(procs) == 3 else None
        if namespace is not None:
            namespace.kill()
            namespace.wait()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        logs.close()
        shutil.rmtree(tmp, ignore_errors=True)


SPACE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"run.epochs" = {epochs}
"run.device" = "cpu"
"model.width" = 256
"run.batch_size" = 8
[search]
"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}
"rlp.n" = {{ dist = "intlog", low = 8, high = 64 }}
[sweep]
name = "{name}"
num_samples = {samples}
seeds = [0]
[scheduler]
type = "fifo"
[resources]
workers_per_trial = 1
cpus_per_worker = 1
"""

DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
        "PREEMPTED"}


def _job(env, job_id: str) -> dict:
    r = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True)
    return dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)


def _jobs(env, job_id: str) -> list[dict]:
    """Every job of an id (an array job: one per task)."""
    r = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True)
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in r.stdout.splitlines() if line]


def test_two_sweeps_share_a_node_and_survive_wall_time(slurm, tmp_path):
    """Submitted at once on the one node: sweep `shared` through the shared-cluster recipe (head.sbatch:
    a Ray head without CPUs, plus one worker job per allocation that joins it; the test's worker asks
    for one CPU where a real one asks for `--gres=gpu:1`) and sweep `onenode` through sweep.sbatch (the
    driver's own Ray). Four Ray-using jobs share the node over time, each with its own temp folder and
    ports; each sweep stops at its wall-time warning, requeues and resumes until it is complete."""
    epochs = 40   # > 1 min of trials on 2 idle CPUs: more than a first allocation holds
    sweeps = {"shared": (head_sbatch := SBATCH.with_name("head.sbatch"), 4), "onenode": (SBATCH, 8)}
    storage = tmp_path / "res"
    marker = f"RLP_SLURM_TEST_{uuid.uuid4().hex}"
    ray_tmp = Path(f"/tmp/rlp_ray_{uuid.uuid4().hex[:8]}")   # every job's Ray temp folder, below it
    env = {**slurm, marker: "1", "RLP_STORAGE": str(storage), "RLP_VENV": sys.prefix,
           "RAY_USAGE_STATS_ENABLED": "0"}
    jobs = {}
    t0 = time.time()
    for name, (script, samples) in sweeps.items():
        space = tmp_path / f"{name}.toml"
        space.write_text(SPACE.format(root=ROOT, epochs=epochs, samples=samples, name=name))
        opts = ["--time=2", "--signal=B:USR1@60", f"--output={tmp_path / name}.out"]
        if script == head_sbatch:   # the recipe's `--gres=gpu:1` workers, as one CPU each here
            job_env = {**{k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},  # conftest's
                       # "0" (an embedded Ray on 127.0.0.1) would keep the worker's node out of the cluster
                       "RLP_WORKERS": "1", "RLP_RAY_TMPROOT": str(ray_tmp),
                       "RLP_WORKER_SBATCH": f"--cpus-per-task=1 --output={tmp_path}/worker-%A_%a.out"}
            opts.append("--cpus-per-task=1")
        else:
            job_env = {**env, "RLP_RAY_TMPDIR": str(ray_tmp / "onenode"),
                       "RLP_RAY_HEAD_IP": "127.0.0.1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
            opts.append("--cpus-per-task=2")
        sub = subprocess.run(["sbatch", "--parsable", *opts, str(script), str(space)],
                             env=job_env, cwd=ROOT, capture_output=True, text=True)
        assert sub.returncode == 0, sub.stderr
        jobs[name] = sub.stdout.strip().split(";")[0]
    try:
        infos, raised = {}, set()
        while len(infos) < len(jobs):
            for name, job_id in jobs.items():
                info = _job(env, job_id)
                if name not in infos and info.get("JobState") in DONE:
                    infos[name] = info
                log = storage / name / "slurm_jobs.log"
                if name not in raised and log.exists() and "restart=0 end rc=3" in log.read_text():
                    # stopped at its wall time and requeued: its next allocation may run to the end
                    r = subprocess.run(["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"], env=env,
                                       capture_output=True, text=True)
                    assert r.returncode == 0, r.stderr
                    raised.add(name)
            if time.time() - t0 > 480:
                pytest.fail(f"jobs still running after 8 min: {[_job(env, j).get('JobState') for j in jobs.values()]}\n"
                            + "\n".join(_tail(tmp_path / f"{n}.out") for n in jobs))
            time.sleep(2)
        wall = time.time() - t0
        report = []
        for name, (script, samples) in sweeps.items():
            root, info = storage / name, infos[name]
            log = (root / "slurm_jobs.log").read_text() if (root / "slurm_jobs.log").exists() else ""
            out = tmp_path / f"{name}.out"
            assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{log}\n{_tail(out)}"
            allocations = _check_chain(log, info)
            _check_sweep(root, samples, epochs, out.read_text(), env)
            report.append(f"{name}: {allocations} allocations")
            if script == head_sbatch:
                _check_workers(log, jobs[name], allocations, env, tmp_path)

        # --- nothing left: no job in the queue, no process of the jobs (Ray included) alive
        q = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True)
        assert q.returncode == 0 and q.stdout.strip() == ""
        deadline = time.time() + 10
        while [p for p in _marked_pids(marker) if _alive(p)] and time.time() < deadline:
            time.sleep(0.5)
        left = [p for p in _marked_pids(marker) if _alive(p)]
        assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left if Path(f"/proc/{p}").exists()]
        print(f"\nslurm sweeps: {', '.join(report)}; {wall:.0f} s from sbatch to both COMPLETED")
    finally:
        for job_id in jobs.values():
            subprocess.run(["scancel", job_id], env=env, capture_output=True)
        for pid in _marked_pids(marker):   # only after a failure: the namespace teardown ends the rest
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _check_chain(log: str, info: dict) -> int:
    """The allocation chain of one job: started, stopped on the warning, requeued, resumed, ended once."""
    starts = re.findall(r"restart=(\d+) start (sweep|resume)", log)
    ends = re.findall(r"restart=(\d+) end rc=(\d+) (\w+)", log)
    assert len(starts) >= 2, ("the sweep ended within its first allocation: this machine trains faster "
                              f"than assumed, raise epochs or samples\n{log}")    # at least one requeue
    assert [(int(r), m) for r, m in starts] == [(0, "sweep"), (1, "resume")], log
    assert [(int(r), rc, w) for r, rc, w in ends] == [(0, "3", "stopped"), (1, "0", "finished")], log
    assert "restart=0 SIGUSR1" in log and "restart=1 SIGUSR1" not in log and "SIGTERM" not in log, log
    assert int(info["Restarts"]) == 1
    return len(starts)


def _check_sweep(root: Path, samples: int, epochs: int, out: str, env: dict) -> None:
    """One complete sweep: every trial, every epoch, nothing twice."""
    trials = read_trials(root)
    assert len(trials) == samples and (trials.status == "TERMINATED").all(), trials
    assert (trials.epochs_done == epochs).all()
    assert trials[["rlp.lam", "rlp.n"]].drop_duplicates().shape[0] == samples   # Optuna: no config twice
    raw = pa.concat_tables([pq.read_table(f) for f in sorted((root / "parquet" / "metrics").rglob("*.parquet"))])
    files = sorted(p.name for p in (root / "parquet" / "metrics").rglob("*.parquet"))
    assert files == ["final.parquet"] * samples, files             # every trial compacted, no stray epoch file
    df = raw.to_pandas()
    assert not df.duplicated(METRIC_KEY).any()                     # in the files, not only after dedup
    assert len(read_metrics(root)) == len(df)
    for t, g in df.groupby("trial_id"):
        assert sorted(g.epoch.unique()) == list(range(1, epochs + 1)), t
        per_epoch = g.groupby("epoch").size()
        assert per_epoch.nunique() == 1, (t, per_epoch)            # the same rows in every epoch
    for t in trials.trial_id:                                      # no finished trial ran again
        assert len(re.findall(rf"{t} finished at epoch {epochs}", out)) == 1, t
    st = subprocess.run([str(Path(sys.prefix) / "bin" / "rlp-tune"), "status", str(root)], env=env,
                        capture_output=True, text=True)
    assert st.returncode == 0 and f"{samples} of {samples} trials done ({samples} finished, 0 stopped by the scheduler)" \
        in st.stdout and "complete" in st.stdout, st.stdout


def _check_workers(log: str, head: str, allocations: int, env: dict, tmp_path: Path) -> None:
    """head.sbatch: each allocation's worker joined that allocation's Ray and left when its sweep stopped
    or ended; the driver ran on it; every worker job completed; no worker ran past its head."""
    for r in range(allocations):
        assert re.search(rf"job={head} restart={r} driver starts with 1 of 1 workers", log), log
        assert len(re.findall(rf"worker of head {head}\.{r} joined ray=", log)) == 1, log
        assert len(re.findall(rf"worker of head {head}\.{r} left: its head is done", log)) == 1, log
    worker_jobs = re.findall(rf"job={head} restart=\d+ start \w+ .* workers=(\d+) ", log)
    assert len(worker_jobs) == allocations, log
    for w in worker_jobs:
        tasks = _jobs(env, w)
        assert [(t["JobState"], t["ExitCode"]) for t in tasks] == [("COMPLETED", "0:0")], \
            (tasks, _tail(next(tmp_path.glob(f"worker-{w}_*.out"), tmp_path / "none")))


def _tail(path: Path, n: int = 6000) -> str:
    return path.read_text()[-n:] if path.exists() else "(no job output)"
