"""Tune's searcher for every design: the ledger's unfinished trials first, then each point's replicate
seeds, then the design's new points; every trial recorded in the ledger before Tune starts it.

    search = SweepSearcher(space, ledger, max_concurrent=2)    # what build_tuner hands to Tune
    search.suggest("6a1f2_00003")   # {"rlp.lam": 0.1, "_replicate": 0, "_trial": "6a1f2_00003"}

A trial keeps its id across driver sessions: a trial the ledger holds but that did not end (cut by
a kill or a stop, or failed) is suggested again under its own id (`_trial` in Tune's config, the
`trial_id` of its Parquet rows and its checkpoint folder), and continues from its checkpoint. A
trial ends when the scheduler stopped it, when it ran all its epochs or when it failed; how it ended
is read from its own Parquet rows (what it wrote is what happened, whatever the driver saw) and
recorded in the ledger, then told to the design. The searcher limits concurrency itself, and says
FINISHED when the design has no more points and every unfinished trial was handed out again.
"""
from __future__ import annotations

import time

from ray.tune.search import Searcher

from .designs import FINISHED, make_design
from .ledger import Ledger, TrialRecord
from .space import REPLICATE, TRIAL, SearchSpace


REFRESH_S = 30.0     # how often the searcher asks Ray again how many trials it can place


class SweepSearcher(Searcher):
    def __init__(self, space: SearchSpace, ledger: Ledger, max_concurrent: int, placeable=None):
        """`placeable`: a picklable callable giving the trials Ray can place now (nodes that join a
        running sweep, e.g. SLURM worker jobs, raise it); None keeps `max_concurrent`."""
        super().__init__(metric=space.metric, mode=space.mode)
        self.space, self.ledger, self.max_concurrent = space, ledger, max(1, int(max_concurrent))
        self.placeable, self.asked = placeable, time.monotonic()
        self.todo = [r.trial_id for r in ledger.state.unfinished()]
        self.design = make_design(space, ledger.root)
        self.replayed = False                   # the design is rebuilt from the ledger at the first suggestion
        self.trial_of: dict[str, str] = {}      # Tune's trial id → the sweep's trial id
        self.live: set[str] = set()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max(1, int(max_concurrent))
        return True

    def suggest(self, trial_id: str):
        tune_id = trial_id   # Tune's id of the trial it is about to make
        if not self.replayed:     # not before: Tune pickles the searcher first (an Optuna study does not pickle)
            self.design.replay(self.ledger.state)
            self.replayed = True
        if self.placeable is not None and time.monotonic() - self.asked > REFRESH_S:
            self.asked = time.monotonic()
            try:
                self.max_concurrent = max(1, int(self.placeable()))
            except Exception:  # noqa: BLE001 - a node leaving mid-check: keep the last count
                pass
        if len(self.live) >= self.max_concurrent:
            return None
        rec = self._again() or self._replicate(tune_id)
        if rec is None:
            points = {r.point for r in self.ledger.state.trials.values()}
            # the budget: num_samples points (a grid's is its cells, an adaptive design may end sooner)
            values = FINISHED if len(points) >= self.space.num_samples else self.design.next(self.ledger.state, self.live)
            if values is None or values is FINISHED:
                return Searcher.FINISHED if values is FINISHED else None
            point = 1 + max(points, default=-1)
            rec = self._record(TrialRecord(tune_id, values, 0, point))
        self.trial_of[tune_id] = rec.trial_id
        self.live.add(rec.trial_id)
        return {**rec.config, REPLICATE: rec.replicate, TRIAL: rec.trial_id}

    def _again(self) -> TrialRecord | None:
        while self.todo:
            rec = self.ledger.state.trials[self.todo.pop(0)]
            if not rec.done and rec.trial_id not in self.live:
                return rec
        return None

    def _replicate(self, tune_id: str) -> TrialRecord | None:
        """The next replicate seed of a point that has not run under every seed (its trials in a row;
        a sweep extended with more seeds gives its earlier points the new ones)."""
        points: dict[int, TrialRecord] = {}
        reps: dict[int, set[int]] = {}
        for r in self.ledger.state.trials.values():
            points.setdefault(r.point, r)
            reps.setdefault(r.point, set()).add(r.replicate)
        for p, first in points.items():
            missing = [i for i in range(len(self.space.seeds)) if i not in reps[p]]
            if missing:
                return self._record(TrialRecord(tune_id, first.config, missing[0], p))
        return None

    def _record(self, rec: TrialRecord) -> TrialRecord:
        self.ledger.add_trial(rec)      # before Tune starts it: a kill after this runs it again, same id
        return self.ledger.state.trials[rec.trial_id]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        tid = self.trial_of.pop(trial_id, None)     # Tune's id → the sweep's
        if tid is None:
            return
        self.live.discard(tid)
        if record_end(self.space, self.ledger, tid, error, self.design.evidence_keys()):
            self.design.ended(self.ledger.state, self.ledger.state.trials[tid])

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        pass    # the ledger is the state: Tune's searcher files are not written


def record_end(space: SearchSpace, ledger: Ledger, tid: str, error: bool, keys: list[str]) -> bool:
    """Record in the ledger how trial `tid` ended, read from its Parquet rows: STOPPED (the scheduler
    stopped it), TERMINATED (all epochs), ERROR (it raised); False when it did neither (cut by an
    interrupt: a resume continues it)."""
    from ..reader import read_trial_metrics
    from ..results import ResultWriter, metric_parts, metric_rows
    m = read_trial_metrics(ledger.root, tid)
    s = metric_rows(m, space.metric)
    series = {int(e): float(v) for e, v in zip(s.epoch, s.value)}
    last = int(m.epoch.max()) if len(m) else 0
    stop = ledger.state.stops.get(tid)
    if stop is not None:
        status, last = "STOPPED", stop
    elif last >= space.base.run.epochs or ResultWriter(ledger.root, "", tid).trial_status() == "TERMINATED":
        status = "TERMINATED"
    elif error:
        status = "ERROR"
    else:
        return False
    values = {}
    for key in keys:
        split, name, layer = metric_parts(key)
        v = m[(m.split == split) & (m.metric == name) & (m.layer == layer) & (m["head"] == -1)
              & (m.protocol == "") & (m.epoch == last)].value
        if len(v):
            values[key] = float(v.iloc[-1])
    ledger.add_end(tid, status, last, series, values)
    return True


def settle(space: SearchSpace, ledger: Ledger, keys: list[str]) -> None:
    """At a driver's start: record the ends a kill kept out of the ledger (a trial that ran its last
    epoch, or that the scheduler stopped, before the driver recorded it). `keys`: the design's
    evidence keys."""
    import sys
    for rec in ledger.state.unfinished():
        if rec.status is None:
            if record_end(space, ledger, rec.trial_id, False, keys):   # said once, as the progress line would
                end = ledger.state.trials[rec.trial_id]
                how = "finished" if end.status == "TERMINATED" else "stopped by the scheduler"
                print(f"{rec.trial_id} {how} at epoch {end.epoch} (before the last driver stopped; recorded now)",
                      file=sys.stderr, flush=True)

