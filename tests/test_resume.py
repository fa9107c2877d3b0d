"""A resumed sweep is the uninterrupted sweep; a finished sweep stays as it is; results folders are
readable by plain pandas / pyarrow / polars / DuckDB at every moment; `status` tells interrupted from
finished. Fast tests without a Ray cluster, then one end-to-end test on local Ray (marked `ray`).

    python -m pytest tests/test_resume.py -q -x            # -m "not ray" for the fast ones only
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import pytest

from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.results import METRIC_KEY, ResultWriter, compact_trials, temp_name

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rlp_tune.cli"]


def _trial(root, tid, vals, status="RUNNING", cfg=None):
    """A trial's rows as a sweep trial writes them: one file per epoch of val.acc, then its row."""
    w = ResultWriter(root, "s", tid)
    for e, v in enumerate(vals, 1):
        w.write_epoch(e, [dict(split="val", metric="acc", value=v)])
    w.write_trial(cfg or {"run.seed": 0}, status, len(vals))
    time.sleep(0.002)   # distinct `created` times: trials sort by them


# ---- results folders and plain readers --------------------------------------------------------------
def _readers(folder: Path) -> dict:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq
    return {"pandas": len(pd.read_parquet(folder)), "pyarrow": pq.read_table(folder).num_rows,
            "polars": pl.read_parquet(folder).height,
            "duckdb": duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet')").fetchall()[0][0]}


def test_results_folders_read_by_every_reader_at_every_moment(tmp_path):
    """Per-trial files, then the compacted file, each time beside a half-written temporary file of
    the writer: pandas, pyarrow, polars and DuckDB all see every trial and every metric row."""
    for i, tid in enumerate(["a1", "b2", "c3"]):
        _trial(tmp_path, tid, [0.1 * i, 0.2 * i], "TERMINATED")
    trials, metrics = tmp_path / "parquet" / "trials", tmp_path / "parquet" / "metrics"
    for folder in (trials, metrics):   # a writer killed mid-write leaves its temporary file
        half = Path(temp_name(str(folder / "b2" / "epoch_00003.parquet")))
        half.parent.mkdir(parents=True, exist_ok=True)
        half.write_bytes(b"PAR1 half-written")
        assert not half.is_relative_to(tmp_path / "parquet")
    assert set(_readers(trials).values()) == {3}
    assert set(_readers(metrics).values()) == {6}
    compact_trials(tmp_path)
    names = [p.name for p in trials.iterdir()]
    assert names == ["all-trials.parquet"] and not names[0].startswith(("_", "."))
    assert set(_readers(trials).values()) == {3}
    assert sorted(read_trials(tmp_path).trial_id) == ["a1", "b2", "c3"]


# ---- the ledger, and the ASHA rungs rebuilt from it ---------------------------------------------------
def _ledger(root, trials):
    """A ledger as a driver writes it: per trial (id, its end status or None, the rung epochs it
    passed, the epoch the scheduler stopped it at or None), with its rows' val.acc as rung values."""
    from rlp_tune.reader import read_trial_metrics
    from rlp_tune.tune.ledger import Ledger, TrialRecord
    led = Ledger(str(root))
    led.read()
    for i, (tid, status, rungs, stop) in enumerate(trials):
        led.add_trial(TrialRecord(tid, {"rlp.lam": 0.1 * (i + 1)}, 0, i))
        m = read_trial_metrics(str(root), tid)
        vals = dict(zip(m.epoch, m.value))
        for e in rungs:
            led.add_rung(tid, e, vals[e], e == stop)
        if status:
            led.add_end(tid, status, stop or max(vals), {int(e): v for e, v in vals.items()}, {})
    return led


def test_rung_epochs():
    from rlp_tune.tune.asha import rung_epochs
    assert rung_epochs(30, 3, 2) == [3, 6, 12, 24]
    assert rung_epochs(4, 1, 2) == [1, 2, 4]
    assert rung_epochs(27, 1, 3) == [1, 3, 9, 27]
    assert rung_epochs(10, 1, 1.5) == [1, 2, 3, 4, 6, 8]


def test_rungs_rebuilt_from_the_ledger_and_a_lost_decision_taken_from_the_rows(tmp_path):
    """Trials through rungs 1, 2, 4 (rf 2): a new scheduler holds what the ledger recorded, in its
    order, keeps earlier stops, and at a driver's start stops a trial whose rung-epoch decision a
    kill lost (its rows hold the value); the next trial is judged as in the uninterrupted run."""
    from rlp_tune.tune.asha import RungScheduler
    from rlp_tune.tune.ledger import Ledger
    _trial(tmp_path, "t1", [0.5, 0.6, 0.7, 0.8], "TERMINATED")
    _trial(tmp_path, "t2", [0.4], "RUNNING")          # stopped at rung 1 (0.4 < 0.5)
    _trial(tmp_path, "t3", [0.7, 0.65], "RUNNING")    # cut at epoch 2 (rung 2: 0.65 > 0.6 continues)
    _trial(tmp_path, "t4", [0.9, 0.1], "RUNNING")     # wrote rung 2, the driver died before deciding
    _ledger(tmp_path, [("t1", "TERMINATED", [1, 2, 4], None), ("t2", "STOPPED", [1], 1),
                       ("t3", None, [1, 2], None), ("t4", None, [1], None)])
    led = Ledger(str(tmp_path))
    led.read()
    sched = RungScheduler(led, "val.acc", "max", max_t=4, grace_period=1, reduction_factor=2)
    assert sched.rungs.recorded == {1: {"t1": 0.5, "t2": 0.4, "t3": 0.7, "t4": 0.9}, 2: {"t1": 0.6, "t3": 0.65},
                                    4: {"t1": 0.8}}
    sched.catch_up(["t3", "t4"])
    assert led.state.stops == {"t2": 1, "t4": 2} and sched.rungs.recorded[2]["t4"] == 0.1
    assert Ledger(str(tmp_path)).read().stops == {"t2": 1, "t4": 2}     # written before it takes effect
    assert sched.rungs.cutoff(1) == pytest.approx(0.6) and sched.rungs.decide("t5", 1, 0.55) is True
    assert sched.rungs.decide("t6", 3, -1.0) is False and 3 not in sched.rungs.recorded   # never off a rung
    trial = types.SimpleNamespace(config={"_trial": "t2"}, trial_id="x")
    assert sched.on_trial_result(None, trial, {"epoch": 2, "val.acc": 1.0}) == "STOP"   # stopped stays stopped


def test_min_mode_rungs(tmp_path):
    from rlp_tune.tune.asha import RungScheduler
    _trial(tmp_path, "t1", [1.0, 0.5], "TERMINATED")
    _trial(tmp_path, "t2", [2.0], "RUNNING")
    led = _ledger(tmp_path, [("t1", "TERMINATED", [1, 2], None), ("t2", None, [], None)])
    RungScheduler(led, "val.acc", "min", max_t=2, grace_period=1, reduction_factor=2).catch_up(["t2"])
    assert led.state.stops == {"t2": 1}


def test_ledger_events_survive_as_written_and_a_foreign_object_is_named(tmp_path, monkeypatch):
    """Snapshots hold every event so far (a reader needs a few requests however long the sweep
    ran); a temporary file a kill left is not an event; an object that is not one is named."""
    from rlp_tune.tune import ledger as L
    monkeypatch.setattr(L, "SNAPSHOT_EVERY", 5)
    led = L.Ledger(str(tmp_path))
    for i in range(12):
        led.add_trial(L.TrialRecord(f"t{i}", {"rlp.lam": float(i)}, i % 2, i // 2))
    led.add_end("t3", "TERMINATED", 2, {1: 0.5, 2: float("nan")}, {"train.rand_acc.penultimate": 0.3})
    names = sorted(p.name for p in (tmp_path / "ledger").iterdir())
    assert len(names) < 6 and any(n.endswith("-snapshot.json") for n in names)
    (tmp_path / "ledger" / "00000099-trial.json.tmp-1234").write_text("{cut")
    st = L.Ledger(str(tmp_path)).read()
    assert list(st.trials) == [f"t{i}" for i in range(12)] and st.trials["t3"].done
    assert st.trials["t3"].values == {"train.rand_acc.penultimate": 0.3} and math.isnan(st.trials["t3"].series[2])
    (tmp_path / "ledger" / "00000100-end.json").write_text('{"kind": "end", "trial": "nobody"}')
    with pytest.raises(L.LedgerError, match="00000100-end.json: not a ledger event"):
        L.Ledger(str(tmp_path)).read()


# ---- resume of a finished sweep, status -------------------------------------------------------------
def _sweep_folder(tmp_path, samples=2):
    from rlp_tune.tune.space import load_space
    from rlp_tune.tune.sweep import _write_space
    from test_sweep import write_space
    space = load_space(write_space(tmp_path, "fin", epochs=2, samples=samples))
    root = tmp_path / "res" / "fin"
    _write_space(space, str(root))
    return space, root


def test_resume_of_a_finished_sweep_is_a_no_op(tmp_path):
    """Nothing is moved, Ray is not started, the message says so (the SLURM requeue case)."""
    _, root = _sweep_folder(tmp_path)
    _trial(root, "a1", [0.5, 0.6], "TERMINATED")
    _trial(root, "b2", [0.4], "RUNNING")
    _ledger(root, [("a1", "TERMINATED", [1, 2], None), ("b2", "STOPPED", [1], 1)])
    compact_trials(root)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    r = subprocess.run(CLI + ["resume", str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "is complete (2 of 2 trials done); nothing to resume" in r.stderr, r.stderr
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    assert sorted(read_trials(root).trial_id) == ["a1", "b2"]


def test_a_sweep_of_an_older_version_is_named_not_resumed(tmp_path):
    _, root = _sweep_folder(tmp_path)
    _trial(root, "a1", [0.5], "RUNNING")
    (root / "tuner.pkl").write_bytes(b"not read")
    r = subprocess.run(CLI + ["resume", str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "older rlp_tune (Tune's state, no ledger/)" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_status_tells_interrupted_from_running_and_finished(tmp_path):
    from rlp_tune.tune.state import DRIVER_FILE
    _, root = _sweep_folder(tmp_path, samples=4)
    _trial(root, "a1", [0.5, 0.6], "TERMINATED")
    _trial(root, "b2", [0.4], "RUNNING")
    _trial(root, "c3", [0.7], "RUNNING")
    _ledger(root, [("a1", "TERMINATED", [1, 2], None), ("b2", "STOPPED", [1], 1), ("c3", None, [1], None)])
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / DRIVER_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    out = subprocess.run(CLI + ["status", str(root)], capture_output=True, text=True, timeout=120).stdout
    lines = out.splitlines()
    assert lines[0] == "sweep fin: 2 of 4 trials done (1 finished, 1 stopped by the scheduler), 1 interrupted"
    assert lines[1] == f"interrupted: rlp-tune resume {root.resolve()}"
    assert {ln.split()[0]: ln.split()[1] for ln in lines[3:]} == {"a1": "TERMINATED", "b2": "STOPPED",
                                                                  "c3": "INTERRUPTED"}
    (root / DRIVER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    out = subprocess.run(CLI + ["status", str(root)], capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines()[0].endswith("1 stopped by the scheduler), 1 running")
    assert out.splitlines()[1] == f"running (driver pid {os.getpid()})"


def test_dashboard_command(tmp_path, monkeypatch):
    """Not installed: one line, exit 2. Installed: optuna-dashboard serves the sweep's journal on
    127.0.0.1 (a stand-in module records the call)."""
    import optuna

    from rlp_tune.cli import main
    (tmp_path / "sw").mkdir()
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "sw" / "optuna.journal")))
    st = optuna.create_study(study_name="sw", storage=journal)
    st.tell(st.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)    # as if not installed: import fails
    assert main(["dashboard", str(tmp_path / "sw")]) == 2
    calls = []
    fake = types.SimpleNamespace(run_server=lambda storage, host, port: calls.append((storage, host, port)))
    monkeypatch.setitem(sys.modules, "optuna_dashboard", fake)
    assert main(["dashboard", str(tmp_path / "sw"), "--port", "8123"]) == 0
    (storage, host, port), = calls
    assert (host, port) == ("127.0.0.1", 8123)
    assert [t.state.name for t in optuna.load_study(study_name="sw", storage=storage).trials] == ["COMPLETE"]
    assert main(["dashboard", str(tmp_path)]) == 2      # no study there


# ---- end to end: SIGINT, then SIGKILL of the driver, each resumed = the uninterrupted sweep -----------
def _outcome(root: Path) -> list[tuple]:
    """Per trial, in creation order: searched config, status, epochs, val.acc by epoch (no timings)."""
    t = read_trials(root).sort_values("created")
    m = read_metrics(root)
    assert not m.duplicated(METRIC_KEY).any()
    acc = m[(m.split == "val") & (m.metric == "acc") & (m.layer == "") & (m["head"] == -1)]
    out = []
    for r in t.to_dict("records"):
        series = acc[acc.trial_id == r["trial_id"]].sort_values("epoch")
        assert series.epoch.tolist() == list(range(1, len(series) + 1))
        out.append(((round(r["rlp.lam"], 10), int(r["rlp.n"]), int(r["rlp.heads"])), r["status"],
                    int(r["epochs_done"]), tuple(series.value.round(10))))
    return out


def _wait(root: Path, cond, what: str, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            t = read_trials(root)          # a folder or a URI; empty before the first trial row
        except Exception:   # noqa: BLE001 - a file between writes: read again
            t = None
        if t is not None and cond(t):
            return
        if proc.poll() is not None:
            pytest.fail(f"driver exited ({proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"no {what} in {timeout} s")


@pytest.mark.ray
def test_interrupted_and_killed_sweep_resumes_to_the_uninterrupted_one(tmp_path, s3_endpoint):
    """One trial at a time, TPE + ASHA (rungs 1, 2, 4 of 4 epochs). Uninterrupted, then: SIGINT
    while the second trial runs, resume, SIGKILL of the driver while the fourth runs, resume. Both
    end with the same configs in the same order, the same stop epochs and the same val.acc at every
    epoch; the Optuna study lists every trial with its state; resuming again is a no-op. Then the
    same sweep on an object store (a real S3 endpoint on 127.0.0.1): its driver SIGKILLed while the
    third trial runs, resumed from another working folder with a fresh TMPDIR (nothing of the first
    driver's disk), ends the same, its study in the bucket."""
    from test_sweep import _kill_marked, write_space
    import optuna
    space = write_space(tmp_path, "r", epochs=4, samples=6, extra_fixed='"run.batch_size" = 128')
    space.write_text(space.read_text().replace('seeds = [0]', 'seeds = [0]\nmax_concurrent = 1'))
    marker = f"RLP_TEST_{uuid.uuid4().hex}"
    env = {**os.environ, marker: "1", "RAY_USAGE_STATS_ENABLED": "0"}
    procs = []

    def start(args, storage, cwd=None, extra_env=None):
        p = subprocess.Popen(CLI + args + ([] if storage is None else ["--storage", str(storage)]),
                             env={**env, **(extra_env or {})}, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(p)
        return p

    try:
        ref = tmp_path / "ref" / "r"
        p = start(["sweep", str(space)], tmp_path / "ref")
        assert p.wait(timeout=600) == 0, p.stdout.read()[-3000:]
        want = _outcome(ref)
        assert len(want) == 6 and {w[1] for w in want} == {"TERMINATED", "STOPPED"}
        assert {w[2] for w in want if w[1] == "STOPPED"} <= {1, 2}     # stops on rungs only

        cut = tmp_path / "cut" / "r"
        p = start(["sweep", str(space)], tmp_path / "cut")
        # a trial row appears when the trial starts; waiting to also see it RUNNING raced short trials
        # (the sweep could end between two polls): 4 more trials are still to run when the signal lands
        _wait(cut, lambda t: len(t) >= 2, "second trial started", p)
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=300) == 130, p.stdout.read()[-3000:]
        st = subprocess.run(CLI + ["status", str(cut)], env=env, capture_output=True, text=True, timeout=120)
        assert f"interrupted: rlp-tune resume {cut}" in st.stdout, st.stdout

        p = start(["resume", str(cut)], None)
        _wait(cut, lambda t: len(t) >= 4, "fourth trial started", p)
        p.send_signal(signal.SIGKILL)
        p.wait()
        time.sleep(2)
        _kill_marked(marker)   # Ray's agents outlive a SIGKILLed driver: end what this test started

        p = start(["resume", str(cut)], None)
        assert p.wait(timeout=600) == 0, p.stdout.read()[-3000:]
        assert _outcome(cut) == want

        for folder in (ref, cut):   # the finished and the resumed sweep's study: every trial, its state
            study = optuna.load_study(study_name="r", storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))))
            assert [t.state.name for t in study.trials] == ["PRUNED" if w[1] == "STOPPED" else "COMPLETE"
                                                            for w in want]
            assert [round(t.params["rlp.lam"], 10) for t in study.trials] == [w[0][0] for w in want]
            assert [round(t.value, 10) for t in study.trials] == [w[3][-1] for w in want]

        st = subprocess.run(CLI + ["status", str(cut)], env=env, capture_output=True, text=True, timeout=120)
        assert st.stdout.splitlines()[:2] == ["sweep r: 6 of 6 trials done "
                                              f"({sum(w[1] == 'TERMINATED' for w in want)} finished, "
                                              f"{sum(w[1] == 'STOPPED' for w in want)} stopped by the scheduler)",
                                              "complete"], st.stdout
        r = subprocess.run(CLI + ["resume", str(cut)], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "nothing to resume" in r.stderr
        assert _outcome(cut) == want

        storage = s3_endpoint() + "/sweeps"
        uri = f"{storage}/r"
        p = start(["sweep", str(space)], storage)
        _wait(uri, lambda t: len(t) >= 3, "third trial started", p)
        p.send_signal(signal.SIGKILL)
        p.wait()
        time.sleep(2)
        _kill_marked(marker)
        other = tmp_path / "elsewhere"
        other.mkdir()
        fresh = tempfile.mkdtemp(prefix="rt", dir="/tmp")     # short: Ray's socket paths live under it
        try:
            p = start(["resume", uri], None, cwd=other, extra_env={"TMPDIR": fresh})
            assert p.wait(timeout=600) == 0, p.stdout.read()[-3000:]
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        assert _outcome(uri) == want
        from rlp_tune.storage import read_bytes
        (tmp_path / "from-bucket.journal").write_bytes(read_bytes(uri, "optuna.journal"))
        study = optuna.load_study(study_name="r", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "from-bucket.journal"))))
        assert [t.state.name for t in study.trials] == ["PRUNED" if w[1] == "STOPPED" else "COMPLETE" for w in want]
        assert [round(t.params["rlp.lam"], 10) for t in study.trials] == [w[0][0] for w in want]
        st = subprocess.run(CLI + ["status", uri], env=env, capture_output=True, text=True, timeout=120)
        assert st.stdout.splitlines()[1] == "complete", st.stdout
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        _kill_marked(marker)


def test_progress_line_and_verbose_lines(tmp_path):
    """A sweep prints one compact line (trials done / total, running trials' epochs, best, ETA), on a
    log file when a trial ends; --verbose prints a line per trial epoch. The driver writes only what
    it alone knows: a finished trial keeps the Trainer's TERMINATED, a scheduler stop becomes STOPPED."""
    import io

    from rlp_tune.tune.ledger import Ledger
    from rlp_tune.tune.progress import ProgressPrinter
    space, root = _sweep_folder(tmp_path, samples=3)
    out = {}
    for verbose in (False, True):
        stream = io.StringIO()
        led = Ledger(str(root))
        led.read()
        p = ProgressPrinter(space, led, verbose=verbose, stream=stream)
        p.setup()
        tid = f"a{int(verbose)}"
        tr = types.SimpleNamespace(trial_id="tune-id", config={"rlp.lam": 0.5, "_trial": tid}, last_result={})
        for e, v in [(1, 0.5), (2, 0.75)]:
            _trial(root, tid, [0.5, 0.75][:e], "TERMINATED" if e == 2 else "RUNNING")   # as the Trainer
            p.on_trial_result(0, [], tr, {"epoch": e, "val.acc": v})
        _ledger(root, [(tid, "TERMINATED", [], None)])     # the searcher records the end before the callbacks
        led.read()
        p.on_trial_complete(0, [], tr)
        out[verbose] = stream.getvalue().splitlines()
        assert read_trials(root).set_index("trial_id").loc[tid, "status"] == "TERMINATED"
    compact, verbose = out[False], out[True]
    assert len(compact) == 2 and "0/3 trials done | running a0 1/2 | best val.acc 0.5 (a0) | ETA -" in compact[0]
    assert "1/3 trials done | running - | best val.acc 0.75 (a0) | ETA " in compact[1]
    assert [ln.split("] ")[1].split("  ")[0] for ln in verbose] == [
        "a1 epoch 1/2 val.acc=0.5", "a1 epoch 2/2 val.acc=0.75", "a1 finished at epoch 2"]

    stopped = types.SimpleNamespace(trial_id="b0", config={"rlp.lam": 2.0}, last_result={"epoch": 1, "val.acc": 0.1})
    _trial(root, "b0", [0.1], "RUNNING")
    _ledger(root, [("b0", "STOPPED", [1], 1)])
    led.read()
    p.on_trial_complete(0, [], stopped)
    assert read_trials(root).set_index("trial_id").loc["b0", "status"] == "STOPPED"
    assert stream.getvalue().splitlines()[-1].split("] ")[1] == "b0 stopped by the scheduler at epoch 1"


def test_progress_counts_each_trial_once_and_a_refused_status_write_is_one_line(tmp_path, monkeypatch):
    """A trial that ends twice (its end a stop kept out of the ledger, run again) is counted once (was
    "4/3 trials done"). The driver's own status write refused by the disk (ENOSPC) is one warning
    line and the row stays RUNNING (was an exception through Tune: the driver crashed)."""
    import errno
    import io

    from rlp_tune.results import ResultWriter as RW
    from rlp_tune.tune.progress import ProgressPrinter
    space, root = _sweep_folder(tmp_path, samples=3)
    for tid in ("a", "b"):
        _trial(root, tid, [0.5, 0.75], "TERMINATED")
    led = _ledger(root, [("a", "TERMINATED", [], None), ("b", "TERMINATED", [], None)])
    stream = io.StringIO()
    p = ProgressPrinter(space, led, stream=stream)
    p.setup()
    for tid in ("a", "b"):    # ended again
        p.on_trial_complete(0, [], types.SimpleNamespace(trial_id=tid, config={}, last_result={"epoch": 2}))
    _trial(root, "c", [0.5], "RUNNING")

    def full(self, status):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert p.line().split("] ")[1].startswith("2/3 trials done"), p.line()   # was 4/3
    monkeypatch.setattr(RW, "mark_status", full)
    p.on_trial_error(0, [], types.SimpleNamespace(trial_id="c", config={}, local_path=str(root / "c"), path=""))
    assert p.line().split("] ")[1].startswith("2/3 trials done")
    warn = [ln for ln in stream.getvalue().splitlines() if "warning" in ln]
    assert len(warn) == 1 and "c: cannot mark it ERROR (No space left on device)" in warn[0]
    assert read_trials(root).set_index("trial_id").loc["c", "status"] == "RUNNING"


def test_status_table_numbers_match_the_metric_rows(tmp_path):
    """trial_table's last / best / epochs (one DuckDB aggregate) equal the same numbers computed from
    every row in pandas; NaN values are skipped and other heads, layers and protocols ignored."""
    from rlp_tune.results import metric_rows
    from rlp_tune.tune.status import trial_table
    root = tmp_path / "s"
    for tid, vals in {"a1": [0.5, 0.9, 0.6], "b2": [0.4, float("nan")], "c3": [0.7]}.items():
        w = ResultWriter(root, sweep="s", trial_id=tid)
        for e, v in enumerate(vals, 1):
            w.write_epoch(e, [{"split": "test", "metric": "acc", "value": v},
                              {"split": "test", "metric": "acc", "head": 0, "value": 99.0},
                              {"split": "test", "metric": "acc", "protocol": "k=5", "value": 98.0}])
        w.write_trial({"run.seed": 0}, status="TERMINATED", epochs_done=len(vals))
    ResultWriter(root, sweep="s", trial_id="a1").write_epoch(4, [{"split": "train", "metric": "loss", "value": 1.0}])
    for mode in ("max", "min"):
        rows = {r["trial_id"]: r for r in trial_table(str(root), "test.acc", mode)}
        sel = metric_rows(read_metrics(root), "test.acc").dropna(subset=["value"])
        for tid, r in rows.items():
            s = sel[sel.trial_id == tid].sort_values("epoch").value
            assert r["metric"] == s.iloc[-1] and r["best"] == (s.max() if mode == "max" else s.min())
        assert {t: r["epochs_done"] for t, r in rows.items()} == {"a1": 4, "b2": 2, "c3": 1}
        assert (rows["a1"]["metric"], rows["b2"]["metric"]) == (0.6, 0.4)
    assert [r["trial_id"] for r in trial_table(str(root), "test.acc", "max")] == ["c3", "a1", "b2"]


def test_writer_has_one_code_path_for_paths_and_uris(tmp_path):
    """storage.filesystem: a plain (even relative) path and a file:// URI give the same files, through
    pyarrow.fs; only a URI with a scheme is remote."""
    from rlp_tune import storage
    assert storage.is_remote("s3://b/x") and storage.is_remote(f"file://{tmp_path}")
    assert not storage.is_remote(tmp_path) and not storage.is_remote("runs/x")
    fs, path = storage.filesystem("runs/x")
    assert type(fs).__name__ == "LocalFileSystem" and path == os.path.abspath("runs/x")
    for root in (tmp_path / "plain", f"file://{tmp_path}/uri"):
        w = ResultWriter(root, sweep="s", trial_id="t1")
        w.write_epoch(1, [{"split": "test", "metric": "acc", "value": 0.5}])
        w.write_epoch(2, [{"split": "test", "metric": "acc", "value": 0.75}])
        w.truncate_after(1)
        w.write_epoch(2, [{"split": "test", "metric": "acc", "value": 0.25}])
        w.compact()
        w.write_trial({"run.seed": 3}, status="RUNNING", epochs_done=2)
        w.mark_status("STOPPED")
    for sub in ("plain", "uri"):
        m = read_metrics(tmp_path / sub)
        assert m.value.tolist() == [0.5, 0.25] and m.epoch.tolist() == [1, 2]
        assert sorted(p.name for p in (tmp_path / sub / "parquet" / "metrics" / "t1").iterdir()) == ["final.parquet"]
        assert read_trials(tmp_path / sub).status.tolist() == ["STOPPED"]


def _holding_driver(root: str) -> subprocess.Popen:
    """Another process driving the sweep ROOT (a folder or a URI): it holds `_driving(root)` a minute."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from rlp_tune.tune.sweep import _driving\n"
        f"with _driving({root!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_one_driver_per_sweep_folder(tmp_path):
    """Two drivers of one sweep folder (two `rlp-tune sweep` a second apart, or a resume beside a
    running driver): the second stops in one line naming the first, before Ray starts or it writes."""
    from rlp_tune.tune.sweep import SweepError, _driving
    root = tmp_path / "s"
    holder = _holding_driver(str(root))
    try:
        before = sorted(p.name for p in root.iterdir())
        with pytest.raises(SweepError, match=f"another driver \\(pid {holder.pid}\\) is running this sweep"):
            with _driving(str(root)):
                pass
        assert sorted(p.name for p in root.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    with _driving(str(root)):          # the holder is gone, so is its lock
        assert (root / ".driver").exists()
    assert not (root / ".driver").exists()


def test_one_driver_per_sweep_on_an_object_store(tmp_path, s3_endpoint, monkeypatch):
    """No flock on a bucket: the lease ROOT/.driver is the lock. A live driver's (this host: its pid
    lives; another host: renewed within LEASE_S) refuses a second one in one line; a dead one's is
    taken over; of two claims at the same moment, one goes on."""
    import socket
    import time as _time

    from rlp_tune import storage
    from rlp_tune.tune import state
    from rlp_tune.tune.sweep import SweepError, _driving
    root = s3_endpoint() + "/sweeps/s"
    holder = _holding_driver(root)
    try:
        with pytest.raises(SweepError, match=f"another driver \\(driver pid {holder.pid}\\) is running this sweep"):
            with _driving(root):
                pass
    finally:
        holder.kill()
        holder.wait()
    with _driving(root):               # its process is gone: the lease is taken over
        assert json.loads(storage.read_text(root, ".driver"))["pid"] == os.getpid()
    assert storage.read_text(root, ".driver") is None
    other = {"pid": 1, "host": socket.gethostname() + "-other", "started": _time.time()}
    storage.write_text(root, ".driver", json.dumps({**other, "beat": _time.time()}))
    with pytest.raises(SweepError, match="-other"):          # renewed just now on another host
        with _driving(root):
            pass
    storage.write_text(root, ".driver", json.dumps({**other, "beat": _time.time() - state.LEASE_S - 1}))
    with _driving(root):               # not renewed for LEASE_S: that driver is gone
        pass
    a, b = state.Lease(root), state.Lease(root)          # b claims while a waits to read back: a yields
    monkeypatch.setattr(state.time, "sleep", lambda s: b._write())
    assert "claimed it at the same moment" in a.claim()
    assert json.loads(storage.read_text(root, ".driver"))["token"] == b.token
