"""designs "tpe", "random", "qmc": Optuna's seeded samplers, the study rebuilt from the ledger.

    d = make_design(space, root)        # space.design in ("tpe", "random", "qmc")
    d.next(state, live)                 # study.ask(): {"rlp.lam": 12.3, ...}
    d.ended(state, rec)                 # study.tell() once every replicate of the point has ended

Each point is one Optuna trial: its value is the sweep metric at the trial's last epoch (the mean
over the replicate seeds when there are several), PRUNED when the scheduler stopped it; each
epoch's metric is its intermediate value (step = epoch). A trial that failed or was cut by an
interrupt is told nothing: the resumed sweep runs it again.

Resume = deterministic replay from the ledger (tune/ledger.py): a fresh study with a fresh sampler,
seeded as at the start, is asked and told again in the ledger's order. A seeded sampler given the
same ask/tell sequence draws the same numbers, so the next config is the one the uninterrupted
sweep would have drawn. If the replay ever draws a config other than the recorded one, the recorded
configs are enqueued instead (the history is kept, the random state is not) and a line says so.

The study is exported to ROOT/optuna.journal (an Optuna JournalStorage file) for `optuna.load_study`,
optuna-dashboard and the search report (analysis/search.py), and never read back by the sweep: on a
folder the study is that file (replayed into it afresh each session, then appended to); on an object
store, which has no append, the driver works on a copy and puts it whole after every ask and tell.
"""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

from ... import storage
from .base import DESIGNS, Design
from ..ledger import LedgerState, TrialRecord

JOURNAL = "optuna.journal"
TRIAL_ATTR = "trial_id"     # user attribute: the first trial of the point (= the Parquet trial_id)


class OptunaDesign(Design):
    def __init__(self, space, root: str):
        super().__init__(space, root)
        self.study = None
        self.handles: dict[int, object] = {}     # point → optuna.Trial asked, not told yet
        self.remote = storage.is_remote(root)

    def sampler(self):
        raise NotImplementedError

    def replay(self, state: LedgerState) -> None:
        study = self._replay(state, sample=True)
        if study is None:
            print(f"rlp-tune: the Optuna replay of {storage.display(self.root)}'s ledger drew other configs than "
                  "the sweep did; its trials are kept, the sampler's random state is not", file=sys.stderr)
            study = self._replay(state, sample=False)
        self.study = study
        self._export()

    def _create(self):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        if self.remote:   # the driver's working copy (removed with this object)
            self._tmp = tempfile.TemporaryDirectory(prefix="rlp_tune_sweep_study_")
            self.path = Path(self._tmp.name) / JOURNAL
        else:             # the export itself, replayed afresh (with the lock a killed writer left)
            self.path = Path(self.root) / JOURNAL
            for old in (self.path, Path(f"{self.path}.lock")):
                old.unlink(missing_ok=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.create_study(study_name=storage.name(self.root),
                                   storage=JournalStorage(JournalFileBackend(str(self.path))),
                                   sampler=self.sampler(), direction="maximize" if self.space.mode == "max" else "minimize")

    def _replay(self, state: LedgerState, sample: bool):
        """Ask and tell the ledger's points again in their order; None if a drawn config differs."""
        self.study, self.handles = self._create(), {}
        asked: set[int] = set()
        for ev in state.events:
            rec = state.trials.get(ev.get("trial"))
            if ev["kind"] == "trial" and rec.point not in asked:
                asked.add(rec.point)
                if not sample:
                    self.study.enqueue_trial(rec.config)
                t = self._ask()
                if t.params != rec.config:
                    return None
                self.handles[rec.point] = t
            elif ev["kind"] == "end":
                self._tell(state, rec, export=False)
        return self.study

    def _ask(self):
        return self.study.ask(self.space.optuna_space())

    def next(self, state: LedgerState, live: set[str]):
        point = 1 + max((r.point for r in state.trials.values()), default=-1)
        self.handles[point] = t = self._ask()
        self._export()
        return dict(t.params)

    def ended(self, state: LedgerState, rec: TrialRecord) -> None:
        self._tell(state, rec, export=True)

    def _tell(self, state: LedgerState, rec: TrialRecord, export: bool) -> None:
        from optuna.trial import TrialState
        t = self.handles.get(rec.point)
        reps = [r for r in state.trials.values() if r.point == rec.point]
        if t is None or not all(r.done for r in reps) or len(reps) < len(self.space.seeds):
            return
        t.set_user_attr(TRIAL_ATTR, reps[0].trial_id)
        if len(reps) == 1:
            for step, v in sorted(rec.series.items()):
                if not math.isnan(v):
                    t.report(v, step)
        if len(reps) == 1 and rec.status == "STOPPED":
            self.study.tell(t, state=TrialState.PRUNED)
        else:   # replicates: the mean of their last values (as Tune's Repeater told it)
            vals = [r.series[max(r.series)] for r in reps if r.series]
            self.study.tell(t, float(sum(vals) / len(vals)) if vals else float("nan"))
        del self.handles[rec.point]
        if export:
            self._export()

    def _export(self) -> None:
        if self.remote:
            storage.write_bytes(self.root, JOURNAL, self.path.read_bytes())


@DESIGNS.register("tpe")
class TPEDesign(OptunaDesign):
    def sampler(self):
        from optuna.samplers import TPESampler
        return TPESampler(seed=self.space.base.run.seed)


@DESIGNS.register("random")
class RandomDesign(OptunaDesign):
    def sampler(self):
        from optuna.samplers import RandomSampler
        return RandomSampler(seed=self.space.base.run.seed)


@DESIGNS.register("qmc")
class QMCDesign(OptunaDesign):
    """Scrambled Sobol points over the declared ranges, seeded."""
    def sampler(self):
        import warnings

        from optuna.samplers import QMCSampler
        with warnings.catch_warnings():   # "experimental" since Optuna 3.0; the interface we use is stable
            warnings.simplefilter("ignore")
            return QMCSampler(qmc_type="sobol", scramble=True, seed=self.space.base.run.seed)
