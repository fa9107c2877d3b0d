"""ASHA early stopping whose state survives a resume: rungs rebuilt from the sweep's own Parquet.

    sched = RungScheduler(root, metric="val.acc", mode="max", max_t=30, grace_period=3, reduction_factor=2)
    tune.TuneConfig(scheduler=sched, ...)

Asynchronous successive halving (Li et al. 2020), one bracket, the same rule as Ray's
`ASHAScheduler`: at each rung epoch (grace_period · reduction_factor^k, rounded up, ≤ max_t) a
trial is stopped when its metric is below the (1 − 1/reduction_factor) quantile of the values that
earlier trials recorded at that rung. Decisions are taken at rung epochs only, never between.

What Ray does not keep, this class does: Ray's saved experiment state leaves the scheduler out (a
restored `ASHAScheduler` has empty rungs and stops resumed trials off their rungs). Here the rungs
are rebuilt, on first use in each driver process, from the metric rows every trial wrote under
ROOT/parquet, trials in creation order; the trials the scheduler stopped are kept in
ROOT/scheduler-stops.csv (written before the stop takes effect). A decision lost in a driver kill (the
trial wrote its rung epoch, the driver died before deciding) is taken again during the rebuild.
"""
from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

# trial_id,epoch per line. Not .json / .pkl: Tune copies the sweep folder's top-level .json/.pkl
# files to its staging folder on restore and back on every save, which would bring back stale copies.
SCHEDULER_FILE = "scheduler-stops.csv"


def rung_epochs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The rung epochs, ascending: ceil(grace · rf^k) for every k with grace · rf^k ≤ max_t."""
    out, k = [], 0
    while grace_period * reduction_factor ** k <= max_t * (1 + 1e-9):
        e = math.ceil(grace_period * reduction_factor ** k - 1e-9)
        if not out or e > out[-1]:
            out.append(e)
        k += 1
    return out


def read_stops(root: str) -> dict[str, int]:
    """trial_id → epoch at which the scheduler stopped it ({} when none, or the file is unreadable)."""
    return stops_file(root) or {}


def stops_file(root: str) -> dict[str, int] | None:
    """ROOT/scheduler-stops.csv as read_stops reads it, or None when the sweep has no such file."""
    from .. import storage
    try:
        text = storage.read_text(root, SCHEDULER_FILE)
    except OSError:
        return {}
    if text is None:
        return None
    try:
        return {t: int(e) for t, _, e in (ln.partition(",") for ln in text.splitlines()[1:] if ln.strip())}
    except ValueError:
        return {}


class Rungs:
    """The bookkeeping, without Ray: rung epoch → {trial_id: value (larger is better)}."""

    def __init__(self, epochs: list[int], reduction_factor: float, sign: float):
        self.epochs, self.rf, self.sign = epochs, float(reduction_factor), sign
        self.recorded: dict[int, dict[str, float]] = {e: {} for e in epochs}

    def cutoff(self, epoch: int) -> float | None:
        vals = list(self.recorded[epoch].values())
        return float(np.nanpercentile(vals, (1 - 1 / self.rf) * 100)) if vals else None

    def decide(self, trial_id: str, epoch: int, value: float) -> bool:
        """Record `value` at `epoch` if that is a rung not yet recorded for the trial; True = stop."""
        if epoch not in self.recorded or trial_id in self.recorded[epoch] or value is None \
                or (isinstance(value, float) and math.isnan(value)):
            return False
        v = self.sign * float(value)
        cut = self.cutoff(epoch)
        self.recorded[epoch][trial_id] = v
        return cut is not None and v < cut


def rebuild(root: str, metric: str, rungs: Rungs, max_t: int) -> dict[str, int]:
    """Refill `rungs` from ROOT's Parquet rows, trials in creation order; return the stops: those
    in ROOT/scheduler-stops.csv, plus any decision a driver kill lost (a trial whose last written epoch
    is a rung where it must stop, and that has not finished)."""
    from ..reader import read_metrics, read_trials
    from ..results import metric_rows
    stops = read_stops(root)
    trials = read_trials(root)
    if trials.empty:
        return stops
    created = trials["created"].fillna(trials["started"]) if "created" in trials else trials["started"]
    trials = trials.assign(_order=created).sort_values(["_order", "trial_id"], kind="stable")
    series = metric_rows(read_metrics(root), metric)
    by_trial = {t: dict(zip(g.epoch.astype(int), g.value)) for t, g in series.groupby("trial_id")}
    for t in trials.itertuples():
        vals = by_trial.get(t.trial_id, {})
        last = max(vals, default=0)
        for e in rungs.epochs:
            if e not in vals:
                break                            # the trial has not reached this rung
            stop = rungs.decide(t.trial_id, e, vals[e]) and e < max_t
            if t.trial_id in stops and stops[t.trial_id] <= e:
                break                            # stopped here before
            if stop and last == e and t.status != "TERMINATED":
                stops[t.trial_id] = e            # the driver died between the rung epoch and its decision
                break
            # a trial past a rung where the replay says "stop" continued in the run (with several
            # trials at once the rung held fewer values when it was decided): keep what happened
    return stops


def write_stops(root: str, stops: dict[str, int]) -> None:
    from .. import storage
    storage.write_text(root, SCHEDULER_FILE, "trial_id,epoch\n" + "".join(f"{t},{e}\n" for t, e in stops.items()))


class RungScheduler(FIFOScheduler):
    """The Tune scheduler (a FIFOScheduler: trials run in the order the searcher makes them)."""

    def __init__(self, root: str, metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3):
        super().__init__()
        self.cfg = dict(root=root, metric=metric, mode=mode, max_t=int(max_t), grace_period=int(grace_period),
                        reduction_factor=float(reduction_factor))
        self._state: tuple[Rungs, dict[str, int]] | None = None

    def __getstate__(self):   # pickled into tuner.pkl: the configuration only, the state is rebuilt
        return {"cfg": self.cfg}

    def __setstate__(self, state):
        self.__init__(**state["cfg"])

    def state(self) -> tuple[Rungs, dict[str, int]]:
        if self._state is None:
            c = self.cfg
            rungs = Rungs(rung_epochs(c["max_t"], c["grace_period"], c["reduction_factor"]), c["reduction_factor"],
                          1.0 if c["mode"] == "max" else -1.0)
            stops = rebuild(c["root"], c["metric"], rungs, c["max_t"])
            if stops != read_stops(c["root"]):
                write_stops(c["root"], stops)
            self._state = (rungs, stops)
        return self._state

    def on_trial_add(self, tune_controller, trial):
        self.state()

    def on_trial_result(self, tune_controller, trial, result):
        rungs, stops = self.state()
        if trial.trial_id in stops:
            return TrialScheduler.STOP
        epoch, value = result.get("epoch"), result.get(self.cfg["metric"])
        if epoch is None or value is None:
            return TrialScheduler.CONTINUE
        if rungs.decide(trial.trial_id, int(epoch), value) and int(epoch) < self.cfg["max_t"]:
            stops[trial.trial_id] = int(epoch)
            write_stops(self.cfg["root"], stops)   # before the stop takes effect: a kill cannot lose it
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        pass   # every rung value arrived through on_trial_result

    def on_trial_remove(self, tune_controller, trial):
        pass

    def debug_string(self) -> str:
        rungs, stops = self.state()
        return "RungScheduler: " + ", ".join(f"epoch {e}: {len(r)}" for e, r in rungs.recorded.items()) \
            + f"; {len(stops)} stopped"
