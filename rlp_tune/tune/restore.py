"""What `rlp-tune resume` checks and repairs in a sweep folder before Ray Tune restores it.

    set_aside_unrestorable(root)    # Tune state a kill cut mid-copy → ROOT/broken-state/<session>/
    if restorable(root):
        quarantine_orphans(root)    # rows of trials Tune's saved state does not know → ROOT/orphans/
        tuner = tune.Tuner.restore(root, ...); add_callbacks_on_restore(tuner, [restore_guard(root, known)])

`restorable`, `quarantine_orphans` and `has_trial_results` work on a folder or a URI (storage.py);
`set_aside_unrestorable` reads Tune's per-session files on a local folder only (on an object store
Ray writes each whole). docs/reliability.md says which failure each step answers.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .. import storage
from ..errors import UserError
from ._ray_compat import (checkpoint_paths_in_state, read_newest_experiment_state, session_files, session_problem,
                          state_sessions, trials_in_state)
from .state import known_trials


class RestoreError(UserError, RuntimeError):
    """Tune did not restore the sweep it was asked to; the message says what was done instead."""


def restorable(root: str) -> bool:
    """Tune can restore the folder and its newest experiment state holds a trial (Tune 2.60 cannot
    restore a state without trials: it raises IndexError, then restarts without the param space)."""
    from ray import tune
    if not tune.Tuner.can_restore(root):
        return False
    found = read_newest_experiment_state(root)
    if found is None:
        return False
    ids = trials_in_state(found[1]) if found[1] is not None else None
    return ids is None or bool(ids)   # unreadable: let Tune say what is wrong with it


COPIES = "tune-state"   # ROOT/tune-state/<session>/: whole copies of a session's Tune files


def set_aside_unrestorable(root: str) -> list[str]:
    """Move aside the newest driver sessions' Tune state that Tune could not restore from (a driver
    killed while Ray copied it; see _ray_compat.session_problem), to ROOT/broken-state/<session>/, so
    that the restore takes the newest consistent one. Trials that only the moved state knew are then
    orphans (quarantine_orphans); the searchers rebuild from the state that is kept.

    Ray re-copies every earlier session's files into the folder on each save of a restored run (its
    staging folder holds them all), so one kill can cut the files of the session a resume came from
    too (seen: a SIGKILL cut the killed driver's searcher state to 0 bytes and the earlier session's
    experiment state in half). So the session a resume restores from is kept whole in
    ROOT/tune-state/<session>/ (written atomically, never touched by Ray), and a session whose files
    in the folder are cut is put back from that copy."""
    moved = []
    sessions = state_sessions(root)
    for i in reversed(range(len(sessions))):
        session = sessions[i]
        problem = session_problem(root, session)
        if problem is not None and _put_back(root, session):
            print(f"rlp-tune: Tune's saved state of driver session {session} was cut ({problem}); put back "
                  f"from {Path(root, COPIES, session)}", file=sys.stderr)
            problem = None
        if problem is None:
            _keep_copy(root, session)
            break
        dest = Path(root, "broken-state", session)
        dest.mkdir(parents=True, exist_ok=True)
        for f in session_files(root, session):
            f.rename(dest / f.name)
        moved.append(session)
        print(f"rlp-tune: Tune's saved state of driver session {session} cannot be restored ({problem}); "
              f"moved to {dest}" + (", resuming from the state before it" if i > 0 else ""), file=sys.stderr)
    return moved


def _keep_copy(root: str, session: str) -> None:
    """A whole copy of a restorable session's files in ROOT/tune-state/<session>/ (once)."""
    import os
    import shutil
    dest = Path(root, COPIES, session)
    if dest.is_dir():
        return
    tmp = Path(root, COPIES, f".{session}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in session_files(root, session):
        shutil.copyfile(f, tmp / f.name)
    tmp.rename(dest)        # the folder appears whole or not at all


def _put_back(root: str, session: str) -> bool:
    """Replace `session`'s files in ROOT by its whole copy, if there is one that can be restored."""
    import os
    import shutil
    src = Path(root, COPIES, session)
    if not src.is_dir() or session_problem(src, session) is not None:
        return False
    for f in src.iterdir():
        tmp = Path(root, f".{f.name}.tmp-{os.getpid()}")
        shutil.copyfile(f, tmp)
        os.replace(tmp, Path(root, f.name))
    return True


GONE = ".rlp-tune-gone"   # what stands in a checkpoint folder Tune's saved state names but deleted


def mend_missing_checkpoints(root: str) -> list[str]:
    """Stand-ins for the trial checkpoints Tune's newest saved state names but Tune had deleted.

    Tune keeps a trial's newest 2 checkpoints and deletes older ones as new ones come, but saves its
    experiment state only every so often: a driver killed in between leaves a state naming a
    checkpoint that is gone, and the restored trial then fails in `Trainable.restore` ("does not exist
    on storage anymore"), is retried, fails again and ends as ERROR (seen: the grid kill-and-resume
    test on S3; `rlp-tune: 1 trial(s) failed` after a resume). A stand-in folder (one marker file) lets
    Tune restore; the trial then continues from its own folder's newer `last.pt`
    (trainable._restore_from_tune), or from its start where it has none (a fresh machine on an object
    store): training is seeded per epoch, so it ends as the uninterrupted trial."""
    found = read_newest_experiment_state(root)
    if found is None or found[1] is None:
        return []
    fs, _ = storage.filesystem(root)
    mended = []
    for path in checkpoint_paths_in_state(found[1]):
        if not storage.exists(fs, path):
            fs.create_dir(path, recursive=True)
            with fs.open_output_stream(f"{path}/{GONE}") as f:
                f.write(b"deleted by Tune after its last saved state\n")
            mended.append(path)
    if mended:
        print(f"rlp-tune: {len(mended)} trial checkpoint(s) Tune's saved state names were deleted after it was "
              "saved; those trials continue from their own latest checkpoint", file=sys.stderr)
    return mended


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
    from ..results import COMPACTED
    known = known_trials(root)
    if known is None:
        return []
    fs, base = storage.filesystem(root)
    base = base.rstrip("/")
    moved = []
    for f in storage.list_files(fs, f"{base}/parquet/trials"):
        name = f.rpartition("/")[2]
        tid = name.removesuffix(".parquet")
        if tid in known or name in COMPACTED or not name.endswith(".parquet"):
            continue
        dest = f"{base}/orphans/{tid}"
        fs.create_dir(f"{dest}/metrics", recursive=True)
        fs.move(f, f"{dest}/{name}")        # one file at a time: an object store has no folder rename
        for m in storage.list_tree(fs, f"{base}/parquet/metrics/{tid}"):
            fs.move(m.path, f"{dest}/metrics/{m.base_name}")
        moved.append(tid)
    if moved:
        print(f"{len(moved)} trial(s) started after Tune's last saved state and will not be continued; "
              f"their rows moved to {storage.display(root)}/orphans: {', '.join(moved)}", file=sys.stderr)
    return moved


def has_trial_results(root: str) -> bool:
    fs, base = storage.filesystem(root)
    return any(f.endswith(".parquet") for f in storage.list_files(fs, f"{base.rstrip('/')}/parquet/trials"))
