"""Build, run and restore a sweep: Optuna (TPE) inside Ray Tune, ASHA early stopping, replicate seeds.

    rlp-tune sweep search_spaces/demo.toml                 # embedded local Ray on 127.0.0.1
    rlp-tune sweep SPACE.toml --address auto --storage /shared/sweeps
    rlp-tune resume results/demo                           # after a crash / Ctrl-C / wall-time stop

The sweep folder STORAGE/NAME (a folder, NFS or an object store: one code path, storage.py) holds
`space.toml` (the search space as run), `ledger/` (the sweep's state: every trial, scheduler decision
and trial end, tune/ledger.py), `parquet/` (every trial's rows, written by the trials), `trials/<id>/`
(each trial's checkpoints) and `optuna.journal` (an export of the study, tune/study.py). Tune's own
files there are a cache of one driver session: every session, the first and each resume, starts a
new Tuner whose searcher and scheduler are rebuilt from the ledger alone, so a resume needs nothing
Tune saved, and nothing from the driver's disk.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UserError
from ..names import check_name
from ..net import affinity_cpus
from ..run.rundir import LOCK_FILE, check_folder, write_fault
from ..storage import display, is_remote, read_bytes, resolve, write_text
from ..storage import name as storage_name
from ..run.trackers import tune_callbacks
from ._ray_compat import loopback_only, node_ip_kwargs
from .fmt import fmt_value
from .ledger import Ledger, has_ledger
from .signals import StopRequest
from .space import REPLICATE, SPACE_FILE, TRIAL, SearchSpace, SpaceError, load_space, space_path
from .state import LEASE_S, Lease, sweep_state
from .trainable import SweepContext, train_trial



class SweepError(UserError, RuntimeError):
    """A sweep folder that cannot be started, resumed or shown as asked; the message names it."""


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (`address`), or start an embedded one bound to 127.0.0.1."""
    import ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's own console box (and a TensorBoard hint at a /tmp folder Ray deletes on exit) even at
    # verbose=0; the sweep prints its own lines (progress.py). RAY_AIR_NEW_OUTPUT=1 brings it back.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    if address:
        os.environ.setdefault("RAY_AUTH_MODE", "token")   # clusters started with token auth need it too
        ray.init(address=address, log_to_driver=False)
        return
    loopback_only()
    # address="local": always a new embedded cluster, never one a `ray start` on this machine left
    # running (ray.init() alone would join that one, and then refuses num_cpus)
    ray.init(address="local", num_cpus=num_cpus or affinity_cpus(), **node_ip_kwargs("127.0.0.1"),
             dashboard_host="127.0.0.1",
             log_to_driver=False, configure_logging=True, logging_level="ERROR")


def max_concurrent(space: SearchSpace, nodes: list[dict] | None = None) -> int:
    """Trials at once: what Ray can place on the cluster's nodes, never more (trials would wait).
    `nodes`: each node's {"CPU": .., "GPU": ..} (default: the connected Ray's alive nodes). A value
    no node can place is a SpaceError naming the key (exit 2), before any trial starts."""
    if nodes is None:
        import ray
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    slots = [worker_slots(space, n) for n in nodes]
    if not any(slots):   # not even one worker fits on a node: name the key that does not
        for kind, key, need in (("CPU", "resources.cpus_per_worker", space.cpus_per_worker),
                                ("GPU", "resources.gpus_per_worker", space.gpus_per_worker)):
            if need and not any(_fits(kind, need, n.get(kind, 0)) for n in nodes):
                have = ", ".join(f"{n.get(kind, 0):g}" for n in nodes) or "none"
                raise SpaceError(f"{key}: one worker needs {need:g} {kind}s on one node; the cluster's "
                                 f"{len(nodes)} node(s) have {have}")
        raise SpaceError("resources: no node has both the CPUs and the GPUs one worker needs "
                         f"({space.cpus_per_worker:g} CPU, {space.gpus_per_worker:g} GPU; nodes: "
                         + "; ".join(f"{n.get('CPU', 0):g} CPU {n.get('GPU', 0):g} GPU" for n in nodes) + ")")
    fit = sum(slots) // space.workers_per_trial     # a DDP trial's workers may span nodes (PACK is soft)
    if fit < 1:
        raise SpaceError(f"resources.workers_per_trial: one trial needs {space.workers_per_trial} workers, "
                         f"the cluster places {sum(slots)} at once")
    return min(fit, space.max_concurrent or fit)


def worker_slots(space: SearchSpace, node: dict) -> int:
    """How many of the space's workers Ray places on one node at once. CPUs are a pool; a GPU
    fraction (0.5, 0.25, ...) must fit inside one GPU (Ray's unit instances), so 0.4 GPU places
    2 workers per GPU, not 2.5; whole GPUs come from one node."""
    n = 1 << 30
    if space.cpus_per_worker:
        n = min(n, _count(node.get("CPU", 0), space.cpus_per_worker))
    g = space.gpus_per_worker
    if g and g < 1:
        n = min(n, int(node.get("GPU", 0)) * _count(1, g))
    elif g:
        n = min(n, _count(node.get("GPU", 0), g))
    return n


def _count(have: float, need: float) -> int:
    """floor(have / need) in Ray's fixed point (1/10,000 of a unit), so 1 / 0.1 is 10, not 9."""
    return int(round(have * 10_000)) // int(round(need * 10_000))


def _fits(kind: str, need: float, have: float) -> bool:
    if kind == "GPU" and need < 1:   # a fraction needs one whole GPU to share
        return int(have) >= 1
    return _count(have, need) >= 1


def local_resources() -> list[dict]:
    """The one node an embedded Ray started here holds: the CPUs of this process (a SLURM job's cpuset,
    not the whole node), every visible GPU."""
    import torch
    return [{"CPU": float(affinity_cpus()), "GPU": float(torch.cuda.device_count())}]


def _trainable(space: SearchSpace, root: str, raw):
    """The trial function with what it needs beside its config: the sweep's context and the shared
    dataset (Tune puts both in the object store; the trial's config holds config keys only)."""
    from ray import tune
    return tune.with_resources(tune.with_parameters(train_trial, sweep=_context(space, root), raw=raw),
                               space.trial_resources())


def _load_shared_raw(space: SearchSpace):
    """Load the dataset once in the driver; Tune puts it in the object store (once per node)."""
    if any(d.key.startswith("data.name") or d.key == "data.root" for d in space.search):
        return None   # trials differ in dataset: each loads its own
    from ..data import load_raw
    return load_raw(space.base)


def _context(space: SearchSpace, root: str) -> SweepContext:
    from ..provenance import origin
    return SweepContext(sweep=_split(root)[1], root=root, seeds=tuple(space.seeds), workers=space.workers_per_trial,
                        cpus=space.cpus_per_worker, gpus=space.gpus_per_worker,
                        origin=origin())   # this driver's git commit and command line, for every trials row


def build_tuner(space: SearchSpace, ledger: Ledger, raw, at_once: int, callbacks=(), verbose: bool = False):
    """A new Tuner for this driver session: its searcher and scheduler rebuilt from the ledger (read);
    `at_once`: the trials Ray places now (max_concurrent)."""
    from functools import partial

    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from .asha import RungScheduler
    from .searcher import SweepSearcher, settle

    root = ledger.root
    search = SweepSearcher(space, ledger, at_once, placeable=partial(max_concurrent, space))
    sched = space.scheduler
    scheduler = FIFOScheduler()
    if sched["type"] == "asha":
        scheduler = RungScheduler(ledger, space.metric, space.mode, max_t=space.base.run.epochs,
                                  grace_period=int(sched.get("grace_period", 1)),
                                  reduction_factor=float(sched.get("reduction_factor", 3)))
        scheduler.catch_up([r.trial_id for r in ledger.state.unfinished() if r.status is None])
    settle(space, ledger, search.design.evidence_keys())    # ends a kill kept out of the ledger
    storage, name = _split(root)
    return tune.Tuner(
        _trainable(space, root, raw),
        param_space=space.param_space(),
        # the searcher limits concurrency itself; Tune reads the limiter's number as how many
        # trials may wait for resources at once (without one it lets a custom searcher queue one)
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(search, max_concurrent=at_once),
                                    scheduler=scheduler, metric=space.metric, mode=space.mode,
                                    num_samples=-1,   # the searcher says when the sweep has all its trials
                                    # one-process trials reuse their actor: no new Python + torch import
                                    # per trial (all such trials ask for the same resources)
                                    reuse_actors=space.workers_per_trial == 1,
                                    trial_dirname_creator=TrialDirname([d.key for d in space.search])),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            callbacks=[*_driver_callbacks(space, ledger, verbose), *tune_callbacks(space.base.logging, root, name),
                       *callbacks],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            # retries of a trial that raised; a driver stopped by a signal or its time budget stops its
            # trials without an error (not counted), and Ray counts no failure for a preempted node
            failure_config=tune.FailureConfig(max_failures=space.max_failures)),
    )


def _stop_callback(space: SearchSpace, stop: StopRequest):
    """The driver's StopRequest in Tune: signals, completion, and the space's `time_budget` (Ray's own
    `TuneConfig(time_budget_s)` would end the sweep for good: it marks the trials TERMINATED and the
    searcher finished, so a resume would not continue them; this stop is the SIGUSR1 one, exit 3)."""
    return stop.callback(0, time_budget=space.time_budget)   # complete or not: finish() asks the ledger


def _driver_callbacks(space: SearchSpace, ledger: Ledger, verbose: bool) -> list:
    from .progress import ProgressPrinter
    return [ProgressPrinter(space, ledger, verbose=verbose)]


class TrialDirname:
    """Tune trial folder name: the trial id and the searched values, e.g. `6a1f2_00003_lam=12.3_heads=2`
    (Tune's default is `train_trial_<id>_<n>_<every config key>`, mostly internal metadata)."""

    def __init__(self, keys: list[str]):
        self.keys = keys

    def __call__(self, trial) -> str:
        import re
        parts = [trial.config.get(TRIAL, trial.trial_id)] + [f"{k.split('.')[-1]}={fmt_value(trial.config.get(k))}" for k in self.keys]
        rep = trial.config.get(REPLICATE)
        if rep is not None:
            parts.append(f"rep={rep}")
        return re.sub(r"[^\w.=,+-]", "-", "_".join(parts))[:120]


def _join(storage: str, name: str) -> str:
    return f"{resolve(storage).rstrip('/')}/{name}"


def run_sweep(space: SearchSpace, storage: str = "results", name: str | None = None, address: str | None = None,
              stop: StopRequest | None = None, verbose: bool = False):
    """Run a sweep to its end, or until `stop` (SIGUSR1/SIGTERM/Ctrl-C) asks for a clean stop; the
    returned dict's `exit_code` is 0, RESUME_EXIT (3: stopped, `rlp-tune resume` continues) or 130."""
    name = check_name("--name", name or space.name)    # a folder under --storage, never a path out of it
    storage = resolve(storage)
    root = _join(storage, name)
    if not is_remote(storage):
        check_folder(storage, "--storage")
    _refuse_existing(root)
    return _drive(space, Ledger(root), address, stop, verbose, new=True, write_space=True)


def _drive(space: SearchSpace, ledger: Ledger, address, stop, verbose: bool, new: bool, write_space: bool) -> dict:
    """One driver session of the sweep in ROOT: checks, the lock, Ray, a Tuner rebuilt from `ledger`
    (read again once the lock is held)."""
    root = ledger.root
    if not address:
        max_concurrent(space, local_resources())
    raw = _load_shared_raw(space)
    from .preflight import preflight
    preflight(space, raw)         # the trials' data sizes and the metric they report, before Ray starts
    with _stopping(stop) as stop, _driving(root):   # the one-driver lock, before Ray starts or anything is written
        if new:
            _refuse_existing(root)    # a driver that started and ended meanwhile
        ledger.read()                 # under the lock: what a driver that ended meanwhile wrote too
        init_ray(address)
        at_once = max_concurrent(space)   # what Ray places on this cluster's nodes: checked before any trial
        if write_space:
            _write_space(space, root)
        print(f"sweep {storage_name(root)}: {space.num_samples} configs x {len(space.seeds)} seed(s), metric "
              f"{space.metric} ({space.mode}), up to {at_once} trial(s) at once; results in {display(root)}",
              file=sys.stderr)
        grid = _fit(build_tuner(space, ledger, raw, at_once, [_stop_callback(space, stop)], verbose), root)
        return finish(space, root, grid, stop)


def _refuse_existing(root: str) -> None:
    if has_ledger(root) or read_bytes(root, SPACE_FILE) is not None:
        raise SweepError(f"{display(root)} already holds a sweep; `rlp-tune resume {display(root)}` continues it")


def resume_sweep(root: str, address: str | None = None, stop: StopRequest | None = None, verbose: bool = False,
                 space_file: str | None = None):
    """Continue a stopped or crashed sweep from its folder: its unfinished trials from their
    checkpoints, the design and the scheduler rebuilt from the ledger. With `space_file`, extend it
    first: more seeds, grid values or samples (tune/extend.py). A complete sweep is left as it is."""
    root = resolve(root)
    space = load_space(space_path(root))
    ledger = Ledger(root)
    if not ledger.read().events and read_bytes(root, "tuner.pkl") is not None:   # Tune's state, no ledger
        raise SweepError(f"{display(root)} was made by an older rlp_tune (Tune's state, no ledger/): finish it with "
                         "that version, or start it again with `rlp-tune sweep ... --fresh`")
    if space_file is not None:
        from .extend import extended
        space = extended(space, load_space(space_file))
    st = sweep_state(root, space.total_trials(), ledger.state)
    if st.complete and space_file is None:
        print(f"rlp-tune: sweep {display(root)} is complete ({st.done} of {st.expected} trials done); "
              "nothing to resume", file=sys.stderr)
        return {"root": root, "best": None, "n_trials": st.done, "exit_code": 0, "stopped_by": None}
    print(f"resuming sweep {display(root)}", file=sys.stderr)
    return _drive(space, ledger, address, stop, verbose, new=False, write_space=space_file is not None)


def _fit(tuner, root: str):
    """tuner.fit(); when it raises and ROOT refuses a write now (a full disk, a read-only folder),
    that OSError instead (the CLI: one line, exit 5, `resume` continues once it is fixed): Tune
    fails on its own half-written files then (e.g. EOFError reading a trial's error.pkl)."""
    try:
        return tuner.fit()
    except Exception:
        fault = None if is_remote(root) else write_fault(root)
        if fault is not None:
            raise fault from None
        raise


class _driving:
    """`with _driving(root):` this process is the sweep's one driver: it holds ROOT/.lock (an flock,
    dropped when the process ends, however it ends; local folders and NFS) and the lease ROOT/.driver
    (state.Lease: names the driver for `status`, renewed while it runs; on an object store, which
    has no lock pyarrow can take, the lease is the lock). A second `rlp-tune sweep` / `resume` of the
    same sweep stops here, in one line, before Ray starts or anything is written."""

    def __init__(self, root: str):
        self.root, self.lock, self.lease = root, None, Lease(root)

    def __enter__(self):
        if not is_remote(self.root):
            from ..run.rundir import RunLock, RunLockedError
            try:
                self.lock = RunLock.acquire(self.root)
            except RunLockedError:
                pid = Path(self.root, LOCK_FILE).read_text().strip() if Path(self.root, LOCK_FILE).exists() else ""
                raise SweepError(f"{self.root}: another driver{f' (pid {pid})' if pid else ''} is running this "
                                 "sweep; wait for it to end (rlp-tune status shows it)") from None
        held = self.lease.claim()
        if held is not None:
            if self.lock is not None:
                self.lock.release()
            raise SweepError(f"{display(self.root)}: another driver ({held}) is running this sweep; wait for it to "
                             f"end, or {int(LEASE_S)} s after it stopped renewing ROOT/.driver (rlp-tune status shows it)")

    def __exit__(self, *exc):
        self.lease.release()
        if self.lock is not None:
            self.lock.release()


class _stopping:
    """`with _stopping(stop) as s:` a StopRequest for the Tune run (a fresh one, handlers installed
    for the run only, when none was given); uninstalled afterwards only if created here."""

    def __init__(self, stop: StopRequest | None):
        self.given, self.stop = stop is not None, stop or StopRequest(pidfile="", stopfile="")

    def __enter__(self) -> StopRequest:
        if not self.given:
            self.stop.install()
        return self.stop

    def __exit__(self, *exc) -> None:
        if not self.given:
            self.stop.uninstall()


def _split(root: str) -> tuple[str, str]:
    """(storage, name) of a sweep folder (an absolute path or a URI)."""
    storage, _, name = root.rstrip("/").rpartition("/")
    return storage, name


def _write_space(space: SearchSpace, root: str) -> None:
    """Store the search space (with its base config inlined) beside the results: resume needs no
    file outside the sweep folder. Written at each session's start (an extension changes it)."""
    from ..config import to_toml
    body = space.text.split("\n")
    text = "\n".join(line for line in body if not line.strip().startswith("base ") and not line.strip().startswith("base="))
    base = "\n".join(f"[base.{line[1:]}" if line.startswith("[") else line for line in to_toml(space.base).split("\n"))
    content = text + "\n\n# the base config as run (the [fixed] overrides applied)\n" + base + "\n"
    write_text(root, SPACE_FILE, content)


def finish(space: SearchSpace, root: str, grid, stop: StopRequest | None = None) -> dict:
    from ..reader import read_trials
    ledger = Ledger(root)  # read again, not the session's object: what the searcher and scheduler wrote
    ledger.read()
    ledger.snapshot()      # the session's events in one object: `status` reads a few objects
    complete = sweep_state(root, space.total_trials(), ledger.state).complete
    code = stop.exit_code(complete=complete) if stop is not None else 0
    failed = grid.num_errors if code == 0 else 0
    if code == 0:   # the sweep is complete: one trials file instead of one per trial
        from ..results import compact_trials
        compact_trials(root)
    df = read_trials(root)
    best = None
    try:
        r = grid.get_best_result(metric=space.metric, mode=space.mode, scope="last")
        best = {"trial_id": r.config.get(TRIAL), space.metric: r.metrics.get(space.metric),
                "config": {k: v for k, v in r.config.items() if k in {d.key for d in space.search}}}
    except Exception:  # noqa: BLE001 - no finished trial reported the metric
        pass
    print(format_best(space, root), file=sys.stdout)
    if code:
        print(f"rlp-tune: sweep stopped by {stop.signame} before its end; its state is saved. Continue it with:\n"
              f"  rlp-tune resume {root}", file=sys.stderr, flush=True)
    elif failed:   # the sweep ended, but not every trial did: say so in the exit code (1)
        code = 1
        for line in failed_trials(grid, space.max_failures):
            print(f"rlp-tune: {line}", file=sys.stderr, flush=True)
        print(f"rlp-tune: {failed} trial(s) failed; `rlp-tune resume {root}` retries each once more",
              file=sys.stderr, flush=True)
    return {"root": root, "best": best, "n_trials": 0 if df is None else len(df), "exit_code": code,
            "stopped_by": stop.signame if code else None}


def failed_trials(grid, max_failures: int) -> list[str]:
    """One line per trial that kept failing: its id, how often it failed, and its log (Tune's error.txt,
    one "Failure # N" entry per failure, the traceback of each)."""
    import re
    lines = []
    for r in grid:
        if r.error is None:
            continue
        folder = Path(r.path)
        m = re.match(r"[^_]+_\d+", folder.name)     # TrialDirname: the trial id first
        tid = (r.metrics or {}).get("trial_id") or (m.group(0) if m else folder.name)
        log = folder / "error.txt"
        n = log.read_text(errors="replace").count("Failure # ") if log.is_file() else 0
        times = f"{n} time(s)" if n else "again"
        lines.append(f"trial {tid} failed {times} (sweep.max_failures = {max_failures}): {log}")
    return lines


def format_best(space: SearchSpace, root: str, top: int = 5) -> str:
    from .status import trial_table
    rows = trial_table(root, space.metric, space.mode)
    keys = [d.key for d in space.search]
    lines = ["", f"== sweep {storage_name(root)}: best trials by final {space.metric} ({space.mode}) =="]
    head = f"{'trial':<14}{'status':<11}{'epochs':>7}{space.metric:>12}" + "".join(f"{k:>14}" for k in keys)
    lines.append(head)
    for r in rows[:top]:
        vals = "".join(f"{fmt_value(r.get(k)):>14}" for k in keys)
        lines.append(f"{r['trial_id']:<14}{r['status']:<11}{r['epochs_done']:>7}{fmt_value(r['metric']):>12}{vals}")
    lines += [f"{len(rows)} trials; Parquet results: {root}/parquet",
              f"  rlp-tune status {root}    rlp-tune query {root} \"SELECT * FROM final\""]
    return "\n".join(lines)


