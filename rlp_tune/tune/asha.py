"""ASHA early stopping whose every decision is in the sweep's ledger (tune/ledger.py).

    sched = RungScheduler(ledger, metric="val.acc", mode="max", max_t=30, grace_period=3, reduction_factor=2)
    tune.TuneConfig(scheduler=sched, ...)

Asynchronous successive halving (Li et al. 2020), one bracket, the same rule as Ray's
`ASHAScheduler`: at each rung epoch (grace_period · reduction_factor^k, rounded up, ≤ max_t) a
trial is stopped when its metric is below the (1 − 1/reduction_factor) quantile of the values that
earlier trials recorded at that rung. Decisions are taken at rung epochs only, never between.

Ray's saved experiment state leaves the scheduler out (a restored `ASHAScheduler` has empty rungs).
Here each value recorded at a rung, and whether it stopped the trial, is a ledger event written
before the decision takes effect; a resume refills the rungs from those events in their order. A
decision a kill lost (the trial wrote its rung epoch, the driver died before deciding) is taken at
the next driver's start (`catch_up`), from the value in the trial's own Parquet rows, before the
trial runs on.
"""
from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from .ledger import Ledger
from .space import TRIAL


def rung_epochs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The rung epochs, ascending: ceil(grace · rf^k) for every k with grace · rf^k ≤ max_t."""
    out, k = [], 0
    while grace_period * reduction_factor ** k <= max_t * (1 + 1e-9):
        e = math.ceil(grace_period * reduction_factor ** k - 1e-9)
        if not out or e > out[-1]:
            out.append(e)
        k += 1
    return out


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


class RungScheduler(FIFOScheduler):
    """The Tune scheduler (a FIFOScheduler: trials run in the order the searcher makes them)."""

    def __init__(self, ledger: Ledger, metric: str, mode: str, max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3):
        super().__init__()
        self.ledger, self.key, self.max_t = ledger, metric, int(max_t)
        self.rungs = Rungs(rung_epochs(int(max_t), int(grace_period), float(reduction_factor)), reduction_factor,
                           1.0 if mode == "max" else -1.0)
        for t, e, v, _ in ledger.state.rungs:    # the ledger's decisions, in their order
            self.rungs.recorded[e][t] = self.rungs.sign * v

    def catch_up(self, trial_ids) -> None:
        """At a driver's start, for the ledger's unfinished trials in order: the decisions a kill lost
        (the trial wrote a rung epoch, the driver died before deciding), from the trial's own rows,
        before the trial runs on."""
        for tid in trial_ids:
            values = self._values(tid)
            for e in self.rungs.epochs:
                if e not in values:
                    break
                if tid not in self.rungs.recorded[e] and self._decide(tid, e, values[e]):
                    break

    def _decide(self, tid: str, epoch: int, value) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        stop = self.rungs.decide(tid, epoch, value) and epoch < self.max_t
        self.ledger.add_rung(tid, epoch, value, stop)     # before the stop takes effect: a kill cannot lose it
        return stop

    def on_trial_result(self, tune_controller, trial, result):
        tid = trial.config.get(TRIAL, trial.trial_id)
        if tid in self.ledger.state.stops:
            return TrialScheduler.STOP
        epoch = result.get("epoch")
        if epoch in self.rungs.recorded and tid not in self.rungs.recorded[epoch] \
                and self._decide(tid, int(epoch), result.get(self.key)):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _values(self, tid: str) -> dict[int, float]:
        from ..reader import read_trial_metrics
        from ..results import metric_rows
        s = metric_rows(read_trial_metrics(self.ledger.root, tid), self.key)
        return {int(e): float(v) for e, v in zip(s.epoch, s.value)}

