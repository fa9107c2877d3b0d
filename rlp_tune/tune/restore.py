"""What `rlp-tune resume` checks and repairs in a sweep folder before Ray Tune restores it.

    set_aside_unrestorable(root)    # Tune state a kill cut mid-copy → ROOT/broken-state/<session>/
    if restorable(root):
        quarantine_orphans(root)    # rows of trials Tune's saved state does not know → ROOT/orphans/
        tuner = tune.Tuner.restore(root, ...); add_callbacks_on_restore(tuner, [restore_guard(root, known)])

Local sweep folders only (an object-store sweep is restored as Tune finds it). docs/reliability.md
says which failure each step answers.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError
from ..storage import is_remote
from ._ray_compat import newest_experiment_state, session_files, session_problem, state_sessions, trial_ids_in_state
from .state import known_trials


class RestoreError(UserError, RuntimeError):
    """Tune did not restore the sweep it was asked to; the message says what was done instead."""


def restorable(root: str) -> bool:
    """Tune can restore the folder and its newest experiment state holds a trial (Tune 2.60 cannot
    restore a state without trials: it raises IndexError, then restarts without the param space)."""
    from ray import tune
    if not tune.Tuner.can_restore(root):
        return False
    if is_remote(root):
        return True
    state = newest_experiment_state(root)
    if state is None:
        return False
    ids = trial_ids_in_state(state)
    return ids is None or bool(ids)   # unreadable: let Tune say what is wrong with it


def set_aside_unrestorable(root: str) -> list[str]:
    """Move aside the newest driver sessions' Tune state that Tune could not restore from (a driver
    killed while Ray copied it; see _ray_compat.session_problem), to ROOT/broken-state/<session>/, so
    that the restore takes the newest consistent one. Trials that only the moved state knew are then
    orphans (quarantine_orphans); the searchers rebuild from the state that is kept."""
    moved = []
    sessions = state_sessions(root)
    for i in reversed(range(len(sessions))):
        session = sessions[i]
        problem = session_problem(root, session)
        if problem is None:
            break
        dest = Path(root, "broken-state", session)
        dest.mkdir(parents=True, exist_ok=True)
        for f in session_files(root, session):
            f.rename(dest / f.name)
        moved.append(session)
        print(f"rlp-tune: Tune's saved state of driver session {session} cannot be restored ({problem}); "
              f"moved to {dest}" + (", resuming from the state before it" if i > 0 else ""), file=sys.stderr)
    return moved


def restore_guard(root: str, expected: set[str] | None):
    """A Tune callback for a restored run. Tune restores the trials its saved state holds or, when
    restoring fails, logs it and starts the experiment afresh without the sweep's param space (trials
    without their config, and every trial run again). If none of the trials the state holds is there
    at the first step, the driver stops with a one-line error instead."""
    from ray.tune import Callback

    class _RestoreGuard(Callback):
        checked = False

        def on_step_begin(self, iteration, trials, **info):
            if self.checked:
                return
            self.checked = True
            if expected and not expected & {t.trial_id for t in trials}:
                raise RestoreError(f"Ray Tune could not restore the sweep state in {root} (its log says why) "
                                 "and would start the sweep afresh; nothing was run")

        def __reduce__(self):   # pickled with the run config: a later restore gets a no-op
            return (Callback, ())

    return _RestoreGuard()


def quarantine_orphans(root: str) -> list[str]:
    """Move aside the Parquet rows of trials that Tune's saved state does not know.

    Tune saves its experiment state periodically: a driver killed between creating a trial and the
    next save leaves a trial that wrote rows (trials write their own) but that the restored sweep
    will never continue; the searcher proposes a replacement. Its rows would be a partial,
    duplicate trial, so they go to ROOT/orphans/<trial_id>/ (kept for inspection, out of the
    results). Only one-trial files (parquet/trials/<trial_id>.parquet) are candidates: the
    compacted file of a finished sweep is never moved."""
    import shutil

    from ..results import COMPACTED
    known = known_trials(root)
    if known is None:
        return []
    known = set(known)
    moved = []
    for f in Path(root, "parquet", "trials").glob("*.parquet"):
        tid = f.stem
        if tid in known or f.name in COMPACTED:
            continue
        dest = Path(root, "orphans", tid)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(str(f), dest / f.name)
        mdir = Path(root, "parquet", "metrics", tid)
        if mdir.is_dir():
            shutil.move(str(mdir), dest / "metrics")
        moved.append(tid)
    if moved:
        print(f"{len(moved)} trial(s) started after Tune's last saved state and will not be continued; "
              f"their rows moved to {Path(root, 'orphans')}: {', '.join(moved)}", file=sys.stderr)
    return moved


def has_trial_results(root: str) -> bool:
    return not is_remote(root) and any(Path(root, "parquet", "trials").glob("*.parquet"))
