"""The sweep's Optuna study (designs tpe, random, qmc) lives in the sweep folder, as an Optuna journal, and survives resumes.

    ROOT/optuna.journal      Optuna JournalStorage (JournalFileBackend); study name = the sweep's name

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = optuna.load_study(study_name="demo", storage=JournalStorage(JournalFileBackend("results/demo/optuna.journal")))
    study.trials_dataframe()        # params_rlp.lam, value, state (COMPLETE / PRUNED / RUNNING), user_attrs_trial_id

`StudySearcher` is the Tune searcher: it asks the study for each new trial's config, reports every
epoch's metric as the trial's intermediate value (step = epoch) and tells the study how the trial
ended: COMPLETE (all epochs; value = the last epoch's metric), PRUNED (stopped by the scheduler;
value = the metric at the stop epoch), FAIL (error). A trial cut by an interrupt stays RUNNING:
the resumed sweep continues it. Values come from the trial's own Parquet rows, so a result the
driver lost in a kill is still the one told.

Resume = deterministic replay. Ray pickles its searcher (and a study kept in memory) with its
periodically saved experiment state, which leaves out whatever happened after the last save. Here,
on first use in a driver process, the journal is replayed into a fresh study with a fresh sampler
seeded as at the start: the trials Tune knows (ROOT/experiment_state-*.json), asked and told in
their original order (datetime_start / datetime_complete). A seeded sampler given the same
ask/tell sequence draws the same numbers, so the replay restores the sampler's random state and
the next config is the one the uninterrupted sweep would have drawn. Trials created after Tune's
last saved state (Tune will not continue them) are left out. If the replay ever draws a config
other than the recorded one, the recorded configs are enqueued instead (the history is kept, the
random state is not) and a line says so.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from ray.tune.search import Searcher

from ..storage import display, is_remote, read_bytes, write_bytes

JOURNAL = "optuna.journal"
TRIAL_ATTR = "trial_id"     # user attribute: the Tune trial id (= the Parquet trial_id)


def journal_path(root: str) -> Path:
    """The journal file the driver's study writes through: ROOT/optuna.journal for a folder. For an
    object store (no append there) a working copy on the driver's disk
    (TMPDIR/rlp_tune/<hash of ROOT>/optuna.journal), fetched from ROOT/optuna.journal when the study
    is opened and written back whole after every ask and tell (`push_journal`: one PUT, atomic), so a
    resume on another machine, with another TMPDIR, continues the same study."""
    if is_remote(root):
        import hashlib
        import tempfile
        return Path(tempfile.gettempdir()) / "rlp_tune" / hashlib.sha1(display(root).encode()).hexdigest()[:12] / JOURNAL
    return Path(root) / JOURNAL


def fetch_journal(root: str) -> None:
    """Object store: make the driver's working copy ROOT/optuna.journal (none there: no copy)."""
    if not is_remote(root):
        return
    data = read_bytes(root, JOURNAL)
    path = journal_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(f".{path.name}.replaced"), Path(f"{path}.lock")):
        stale.unlink(missing_ok=True)
    if data is not None:
        path.write_bytes(data)


def push_journal(root: str) -> None:
    """Object store: write the working copy back to ROOT/optuna.journal (whole)."""
    path = journal_path(root)
    if is_remote(root) and path.exists():
        write_bytes(root, JOURNAL, path.read_bytes())


def storage(path: str | Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def load_study(root: str, name: str | None = None):
    """The sweep's study, read-only use (`optuna.load_study` on ROOT/optuna.journal; for an object
    store, on a copy of it in a temporary folder)."""
    import optuna
    path = journal_path(root)
    if is_remote(root):
        import tempfile
        path = Path(tempfile.mkdtemp(prefix="rlp_tune_study_")) / JOURNAL
        path.write_bytes(read_bytes(root, JOURNAL) or b"")
    return optuna.load_study(study_name=name or display(root).rstrip("/").rpartition("/")[2], storage=storage(path))


def running_in_study(root: str) -> int:
    """How many of the study's trials are not told yet (0 when there is no study). A driver killed
    after a trial's last epoch but before it told the study leaves one: `resume` must still run."""
    from optuna.trial import TrialState
    if not (read_bytes(root, JOURNAL) if is_remote(root) else journal_path(root).exists()):
        return 0
    return sum(t.state == TrialState.RUNNING for t in load_study(root).get_trials(deepcopy=False))


class StudySearcher(Searcher):
    def __init__(self, root: str, name: str, space: dict, metric: str, mode: str, sampler, max_epochs: int):
        """`sampler`: a picklable callable making the seeded Optuna sampler (called afresh per replay)."""
        super().__init__(metric=metric, mode=mode)
        self.cfg = dict(root=root, name=name, space=space, metric=metric, mode=mode, sampler=sampler,
                        max_epochs=max_epochs)
        self._reset()

    def _reset(self) -> None:
        self._study = None
        self._live: dict[str, object] = {}          # Tune trial id → optuna.Trial (asked, not told)
        self._steps: dict[str, set[int]] = {}       # Tune trial id → epochs reported

    # Ray pickles searchers (tuner.pkl, searcher-state-*.pkl): keep the configuration only
    def __getstate__(self):
        return {"cfg": self.cfg}

    def __setstate__(self, state):
        self.__init__(**state["cfg"])

    def save(self, checkpoint_path: str) -> None:
        import pickle
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        self._reset()    # the state is the journal: replayed on first use

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return False     # the space is set: Tune's param_space holds no searched key

    # ---- the study ---------------------------------------------------------------------------------
    def _sampler(self):
        return self.cfg["sampler"]()

    def study(self):
        if self._study is None:
            self._study = self._open()
        return self._study

    def _open(self):
        """Create the study, or replay the journal's known trials into a fresh one (see the docstring)."""
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        root, path = self.cfg["root"], journal_path(self.cfg["root"])
        fetch_journal(root)            # an object store's journal is the truth, not a working copy left here
        old_path = path.with_name(f".{path.name}.replaced")
        if old_path.exists():          # a replay was cut short: the moved-aside journal is the truth
            path.unlink(missing_ok=True)
            old_path.rename(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            study = self._create(path)
            push_journal(root)
            return study
        old = optuna.load_study(study_name=self.cfg["name"], storage=storage(path)).get_trials(deepcopy=False)
        from .state import known_trials
        known = known_trials(root)   # None: Tune saved no state (a new start)
        keep = [t for t in old if t.user_attrs.get(TRIAL_ATTR) in set(known or ())]
        path.rename(old_path)
        study = self._replay(path, keep, sample=True)
        if study is None:
            print(f"rlp-tune: the Optuna replay of {path} drew other configs than the sweep did; its "
                  "trials are kept, the sampler's random state is not", file=sys.stderr)
            path.unlink(missing_ok=True)
            study = self._replay(path, keep, sample=False)
        old_path.unlink()
        push_journal(root)
        return study

    def _create(self, path: Path):
        import optuna
        Path(f"{path}.lock").unlink(missing_ok=True)   # a stale lock from a killed writer
        return optuna.create_study(study_name=self.cfg["name"], storage=storage(path), sampler=self._sampler(),
                                   direction="maximize" if self.cfg["mode"] == "max" else "minimize")

    def _replay(self, path: Path, trials: list, sample: bool):
        """Ask and tell `trials` again in their original order; None if a drawn config differs."""
        from optuna.trial import TrialState
        study = self._create(path)
        self._live, self._steps = {}, {}
        events = [(t.datetime_start, 0, t) for t in trials]
        events += [(t.datetime_complete, 1, t) for t in trials
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete]
        handle = {}
        for _, kind, t in sorted(events, key=lambda e: (e[0], e[1])):
            tid = t.user_attrs[TRIAL_ATTR]
            if kind == 0:
                if not sample:
                    study.enqueue_trial(t.params)
                new = study.ask(self._distributions())
                if new.params != t.params:
                    return None
                new.set_user_attr(TRIAL_ATTR, tid)
                for step, v in sorted(t.intermediate_values.items()):
                    new.report(v, step)
                handle[tid] = new
                self._live[tid], self._steps[tid] = new, set(t.intermediate_values)
            else:
                if t.state == TrialState.COMPLETE:
                    study.tell(handle[tid], t.value)
                else:
                    study.tell(handle[tid], state=TrialState.PRUNED)
                self._live.pop(tid, None)
        return study

    def _distributions(self) -> dict:
        return self.cfg["space"]

    # ---- Tune's calls ------------------------------------------------------------------------------
    def suggest(self, trial_id: str):
        study = self.study()
        t = study.ask(self._distributions())
        t.set_user_attr(TRIAL_ATTR, trial_id)
        self._live[trial_id], self._steps[trial_id] = t, set()
        push_journal(self.cfg["root"])
        return dict(t.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.study()
        epoch, value = result.get("epoch"), result.get(self.cfg["metric"])
        if epoch is not None and value is not None:
            self._report(trial_id, int(epoch), float(value))

    def _report(self, trial_id: str, step: int, value: float) -> None:
        t = self._live.get(trial_id)
        if t is None or step in self._steps[trial_id] or math.isnan(value):
            return
        t.report(value, step)
        self._steps[trial_id].add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from optuna.trial import TrialState
        study = self.study()
        t = self._live.get(trial_id)
        if t is None:
            return
        if result and self.cfg["metric"] in result and "epoch" not in result:
            study.tell(t, float(result[self.cfg["metric"]]))   # replicates: Tune's Repeater reports their mean
            self._live.pop(trial_id, None)
            push_journal(self.cfg["root"])
            return
        series, stopped, status = self._outcome(trial_id)
        for step, v in series.items():   # epochs whose result the driver never saw (a kill)
            self._report(trial_id, step, v)
        last = max(series, default=0)
        if stopped:
            study.tell(t, state=TrialState.PRUNED)
        elif status == "TERMINATED" or last >= self.cfg["max_epochs"]:
            value = series.get(last) if series else (result or {}).get(self.cfg["metric"])
            study.tell(t, value if value is not None else float("nan"))
        elif error:
            study.tell(t, state=TrialState.FAIL)
        else:
            return   # cut by an interrupt: the resumed sweep continues it
        self._live.pop(trial_id, None)
        push_journal(self.cfg["root"])

    def _outcome(self, trial_id: str) -> tuple[dict[int, float], bool, str | None]:
        """The trial's metric by epoch (its Parquet rows), whether the scheduler stopped it, its status."""
        root = self.cfg["root"]
        from ..reader import read_trial_metrics
        from ..results import ResultWriter, metric_rows
        from .asha import read_stops
        s = metric_rows(read_trial_metrics(root, trial_id), self.cfg["metric"])
        series = {int(e): float(v) for e, v in zip(s.epoch, s.value)}
        return series, trial_id in read_stops(root), ResultWriter(root, "", trial_id).trial_status()
