"""The search of a tuning sweep (designs tpe, random, qmc): what it found and how it went.

    s = read_search(tables, per_trial(tables), design)    # SearchSummary (None for other designs)
    s.best(5)                  # the best trials that ran to the end, by the sweep's metric
    s.importances.values       # {"rlp.lam": 0.61, ...}; .trust says how far to believe them
    s.epochs_run, s.epochs_full  # epochs the trials ran vs every trial run to run.epochs
    s.to_dict()                # the JSON document's "search" (docs/analysis.md)

Two sources. The trials' Parquet rows: every trial's searched values, its metric and test accuracy
at its last epoch, the epochs it ran, and whether the scheduler stopped it (status STOPPED). The
Optuna study the sweep kept in ROOT/optuna.journal (tune/designs/study.py exports it; only read here): the
order the sampler drew the trials in (trial numbers), its PRUNED / FAIL states, and the parameter
importances, `optuna.importance.get_param_importances` with Optuna's default evaluator (PED-ANOVA)
over the COMPLETE trials — the ones the scheduler stopped carry no final value and do not count.
Results on an object store (s3://...): the journal is read into a temporary folder for the
analysis and removed after. When the study cannot be opened (results copied without the journal,
optuna not installed) the
Parquet rows still give the order (creation time), the history and the slices; `source_note` says
so in one line and the importances say why they are missing.

Figures of these numbers: search_figures.py.
"""
from __future__ import annotations

import math
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import storage
from ..config import LAM_KEY
from .tables import Tables, numeric_column

SEARCH_DESIGNS = ("tpe", "random", "qmc")
JOURNAL = "optuna.journal"          # the file tune/designs/study.py exports the study to
ROUGH_BELOW = 20                    # complete trials under which importances are a rough ranking
STATES = ("complete", "stopped", "failed", "running")


@dataclass
class SearchTrial:
    """One trial of the search, at its last epoch."""
    trial_id: str
    number: int                     # the order the search drew it in (Optuna's trial number, else creation)
    params: dict[str, Any]          # searched key → value
    value: float | None             # the sweep's metric (e.g. val.acc) at its last epoch
    test_acc: float | None
    epochs: int                     # epochs it ran
    target: int                     # its run.epochs
    state: str                      # complete | stopped (by the scheduler) | failed | running

    def to_dict(self) -> dict:
        return {"trial_id": self.trial_id, "number": self.number, "params": self.params, "value": self.value,
                "test_acc": self.test_acc, "epochs": self.epochs, "target_epochs": self.target, "state": self.state}


@dataclass
class Importances:
    """Parameter importances over the complete trials; empty `values` with a `reason` when missing."""
    values: dict[str, float]        # param → importance (sums to 1), largest first
    n_complete: int
    evaluator: str = ""
    trust: str = ""                 # how far to believe them at this number of trials
    reason: str = ""                # why there are none

    def to_dict(self) -> dict:
        return {"values": self.values, "n_complete": self.n_complete, "evaluator": self.evaluator,
                "trust": self.trust, "reason": self.reason}


@dataclass
class SearchSummary:
    design: str
    metric: str                     # the sweep's selection metric, e.g. "val.acc"
    mode: str                       # max | min
    params: list[str]               # the searched keys
    log_params: list[str]           # searched on a log scale (loguniform, intlog)
    trials: list[SearchTrial]       # by number
    importances: Importances
    source: str                     # "optuna.journal" | "parquet"
    source_note: str = ""           # one line when the study could not be opened
    curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict, repr=False)  # id → (epochs, metric)

    def _key(self, t: SearchTrial) -> float:
        return -t.value if self.mode == "max" else t.value

    def best(self, k: int = 5) -> list[SearchTrial]:
        """The k best trials by the metric among those that ran to the end (a stopped trial's value is
        from an earlier epoch: not comparable); all trials with a value when none ran to the end."""
        pool = [t for t in self.trials if t.state == "complete" and t.value is not None]
        pool = pool or [t for t in self.trials if t.value is not None]
        return sorted(pool, key=lambda t: (self._key(t), t.number))[:k]

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def epochs_run(self) -> int:
        return sum(t.epochs for t in self.trials)

    @property
    def epochs_full(self) -> int:
        """Epochs had every trial run to its run.epochs."""
        return sum(max(t.target, t.epochs) for t in self.trials)

    @property
    def epochs_saved(self) -> int:
        """Epochs the scheduler's stops saved (stopped trials only; failed or running ones are not savings)."""
        return sum(t.target - t.epochs for t in self.trials if t.state == "stopped")

    def to_dict(self) -> dict:
        return {"design": self.design, "metric": self.metric, "mode": self.mode, "params": self.params,
                "log_params": self.log_params, "source": self.source, "source_note": self.source_note,
                "counts": {s: self.count(s) for s in STATES},
                "epochs": {"run": self.epochs_run, "full": self.epochs_full, "saved_by_scheduler": self.epochs_saved},
                "best": [t.to_dict() for t in self.best()], "importances": self.importances.to_dict(),
                "trials": [t.to_dict() for t in self.trials]}


def _space(root: str | Path) -> dict:
    """ROOT/space.toml (a folder or a URI) as a dict; {} when missing or unreadable."""
    try:
        text = storage.read_text(root, "space.toml")
        return tomllib.loads(text) if text is not None else {}
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _log_params(space: dict) -> list[str]:
    search = space.get("search") or {}
    return [k for k, v in search.items() if isinstance(v, dict) and v.get("dist") in ("loguniform", "intlog")]


def open_study(root: str | Path, name: str | None = None, workdir: str | Path | None = None):
    """(study, "") from ROOT/optuna.journal, or (None, why) in one line. Only reads: the journal is not
    created when missing (Optuna's file backend would create an empty one). An object store's journal
    is copied into `workdir` (a temporary folder the caller removes after using the study)."""
    missing = f"no Optuna study: {JOURNAL} is missing from the results folder (copied without it?)"
    if storage.is_remote(root):
        data = storage.read_bytes(root, JOURNAL) if workdir is not None else None
        if data is None:
            return None, missing
        path = Path(workdir) / JOURNAL
        path.write_bytes(data)
    else:
        path = Path(root) / JOURNAL
        if not path.is_file():
            return None, missing
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        return None, "no Optuna study: optuna is not installed (pip install 'rlp_tune[ray]')"
    try:
        st = JournalStorage(JournalFileBackend(str(path)))
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        pick = name if name in names else (names[0] if len(names) == 1 else None)
        if pick is None:
            return None, f"no Optuna study: {JOURNAL} holds {len(names)} studies, none named {name!r}"
        return optuna.load_study(study_name=pick, storage=st), ""
    except Exception as e:  # noqa: BLE001 — a damaged or foreign journal: say so, keep the Parquet part
        return None, f"no Optuna study: {JOURNAL} could not be read ({type(e).__name__}: {str(e)[:120]})"


def trust_word(n_complete: int) -> str:
    if n_complete < ROUGH_BELOW:
        return (f"rough: from {n_complete} complete trials (fewer than {ROUGH_BELOW}), a ranking to check, "
                "not a measurement")
    return f"from {n_complete} complete trials"


def importances(study, params: list[str]) -> Importances:
    """Optuna's parameter importances over the study's COMPLETE trials (its default evaluator)."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    n = len(done)
    if n < 2:
        return Importances({}, n, reason=f"not estimated: {n} complete trial(s) in the study (need ≥ 2)")
    ev = PedAnovaImportanceEvaluator()
    try:
        vals = get_param_importances(study, evaluator=ev)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return Importances({}, n, reason=f"not estimated: {str(e).splitlines()[0][:160]}")
    order = [k for k in vals if k in params] + [k for k in vals if k not in params]
    return Importances({k: float(vals[k]) for k in order}, n, evaluator="PED-ANOVA", trust=trust_word(n))


def _value(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _param(v):
    """A searched value as JSON-friendly Python (numpy scalars → int / float)."""
    return v.item() if hasattr(v, "item") else v


def read_search(t: Tables, d, design) -> SearchSummary | None:
    """The search of ROOT (t.root, a folder or a URI) for designs tpe / random / qmc, else None.
    d: tables.per_trial frame; design: design.Design."""
    if design.kind not in SEARCH_DESIGNS or not len(d):
        return None
    space = _space(t.root)
    name = (space.get("sweep") or {}).get("name") or storage.name(t.root)
    with tempfile.TemporaryDirectory(prefix="rlp_tune_study_") as tmp:   # an object store's journal, read here
        study, note = open_study(t.root, name, tmp)
        return summarize(t, d, design, space, study, note)


def summarize(t: Tables, d, design, space: dict, study, note: str) -> SearchSummary:
    """The SearchSummary of the trials (t, d) and the opened study (None: `note` says why)."""
    sweep = space.get("sweep") or {}
    metric, mode = str(sweep.get("metric", "val.acc")), str(sweep.get("mode", "max"))
    # the metric at each trial's last epoch (the `final` view's column), by trial id
    f = t.final
    val = dict(zip(f["trial_id"].astype(str), numeric_column(f, metric)))
    by_id = {}
    if study is not None:
        for st in study.get_trials(deepcopy=False):
            tid = st.user_attrs.get("trial_id")
            if tid is not None:
                by_id[str(tid)] = st
    # creation order from the trials' rows: the order without a study, and after the study's trials
    created = {}
    if "created" in t.trials.columns:
        created = {i: c for i, c in zip(t.trials["trial_id"].astype(str), numeric_column(t.trials, "created"))
                   if c == c}          # NaN would break the sort
    order = sorted(d.trial_id, key=lambda i: (by_id[i].number if i in by_id else math.inf,
                                              created.get(i, math.inf), i))
    rows = d.set_index("trial_id")
    trials = []
    for k, tid in enumerate(order):
        r = rows.loc[tid]
        st = by_id.get(tid)
        ost = st.state.name if st is not None else ""
        if bool(r.complete):
            state = "complete"
        elif r.status == "STOPPED" or ost == "PRUNED":
            state = "stopped"
        elif r.status == "ERROR" or ost == "FAIL":
            state = "failed"
        else:
            state = "running"
        params = {p: _param(r[p]) for p in design.searched if p in rows.columns}
        if LAM_KEY in design.searched:
            params[LAM_KEY] = _value(r.lam)
        epochs = int(r.final_epoch) if r.final_epoch == r.final_epoch else 0
        target = int(r.target_epochs) if r.target_epochs == r.target_epochs else epochs
        trials.append(SearchTrial(tid, st.number if st is not None else k, params, _value(val.get(tid)),
                                  _value(r.test_acc), epochs, target, state))
    curves = {}
    e = t.epochs
    if e is not None and len(e) and metric in e.columns:
        for tid, g in e[e[metric].notna()].groupby(e.trial_id.astype(str), sort=False):
            curves[tid] = (g.epoch.astype(int).tolist(), g[metric].astype(float).tolist())
    elif study is not None:        # a metric the epoch frame does not hold: the study's intermediate values
        for tid, st in by_id.items():
            iv = sorted(st.intermediate_values.items())
            curves[tid] = ([int(s) for s, _ in iv], [float(v) for _, v in iv])
    params = [p for p in design.searched if any(p in tr.params for tr in trials)]
    imp = importances(study, params) if study is not None else \
        Importances({}, sum(tr.state == "complete" for tr in trials), reason=f"not estimated: {note}")
    return SearchSummary(design=design.kind, metric=metric, mode=mode, params=params,
                         log_params=[p for p in _log_params(space) if p in params], trials=trials,
                         importances=imp, source=JOURNAL if study is not None else "parquet",
                         source_note=note or "", curves=curves)


# ---- words --------------------------------------------------------------------------------------
def _p(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.1f}%"


def fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def config_text(params: dict) -> str:
    return ", ".join(f"{'λ' if k == 'rlp.lam' else k} = {fmt_value(v)}" for k, v in params.items())


def search_lines(s: SearchSummary) -> list[str]:
    """The search in words: what it found, how the scheduler went, what mattered (the first lines of
    `rlp-tune analyze` and of the report)."""
    best = s.best(1)
    n = len(s.trials)
    metric = s.metric
    lines = []
    if not best:
        lines.append(f"No trial recorded {metric}, the search's metric ({s.design} search, {n} trials): "
                     "nothing to rank.")
    else:
        b = best[0]
        lines.append(f"Best trial by {metric} ({s.design} search, {n} trials): {b.trial_id} ({config_text(b.params)}): "
                     f"{metric} {_p(b.value)}, test {_p(b.test_acc)}, {b.epochs} epochs"
                     + ("" if b.state == "complete" else " (no trial ran to the end: compared at their last epochs)")
                     + ". One trial per config: no CI.")
    stopped = s.count("stopped")
    run, full = s.epochs_run, s.epochs_full
    sched = (f"The scheduler stopped {stopped} of {n} trials early: {run} of {full} epochs ran, "
             f"{s.epochs_saved} ({100 * s.epochs_saved / full:.0f}%) saved against running every trial to the end."
             if stopped and full else f"No trial was stopped early: {run} of {full} epochs ran.")
    other = [f"{s.count(x)} {x}" for x in ("failed", "running") if s.count(x)]
    lines.append(sched + (f" ({', '.join(other)}.)" if other else ""))
    imp = s.importances
    if imp.values:
        top = ", ".join(f"{k} {v:.2f}" for k, v in imp.values.items())
        lines.append(f"Parameter importances for {metric}: {top} ({imp.trust}).")
    else:
        lines.append(f"Parameter importances: {imp.reason}.")
    return lines
