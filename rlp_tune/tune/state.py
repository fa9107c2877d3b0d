"""Where a sweep stands, read from its folder alone: which trials Tune knows, whether a driver is
running, and the counts `rlp-tune status`, `rlp-tune resume` and the progress line use.

    s = sweep_state(root, expected=16)
    s.done, s.expected, s.finished, s.stopped, s.running, s.interrupted, s.failed, s.complete
    mark_driver(root) ... clear_driver(root)      # ROOT/.driver while a driver runs the sweep

A trial is *done* when it finished all its epochs (TERMINATED) or the scheduler stopped it
(listed in ROOT/scheduler-stops.csv). A trial that is neither, while no driver runs, was cut by an
interrupt (Ctrl-C, SIGTERM, a kill, a wall-time limit): `rlp-tune resume` continues it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import storage

DRIVER_FILE = ".driver"   # JSON; not named .json (see asha.SCHEDULER_FILE)


def saved_trials(root: str, quiet: bool = False) -> dict[str, tuple[dict, str]] | None:
    """{trial_id: (config, status)} of the trials in Tune's newest experiment state under ROOT (a
    folder or a URI: the trials a resume continues), or None when there is no saved state (a sweep
    not yet saved) or it cannot be read (said on stderr unless `quiet`)."""
    import sys

    from ._ray_compat import read_newest_experiment_state, trials_in_state
    try:
        found = read_newest_experiment_state(root)
    except OSError:
        return None
    if found is None:
        return None
    path, text = found
    trials = trials_in_state(text) if text is not None else None
    if trials is None and not quiet:
        print(f"rlp-tune: cannot read Tune's experiment state {path}", file=sys.stderr)
    return trials


def known_trials(root: str) -> set[str] | None:
    """The trial ids in Tune's newest saved experiment state (None: no state, or a format this
    version cannot read — then nothing is treated as unknown)."""
    trials = saved_trials(root, quiet=True)
    return None if trials is None else set(trials)


def mark_driver(root: str) -> None:
    """Note that this process drives the sweep (removed by clear_driver; left behind by a kill)."""
    storage.write_text(root, DRIVER_FILE, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                      "started": time.time()}))


def clear_driver(root: str) -> None:
    try:
        if json.loads(storage.read_text(root, DRIVER_FILE) or "{}").get("pid") == os.getpid():
            fs, base = storage.filesystem(root)
            fs.delete_file(f"{base.rstrip('/')}/{DRIVER_FILE}")
    except (OSError, ValueError):
        pass


def driver_alive(root: str) -> tuple[bool | None, str]:
    """(True: a driver runs it, False: none does, None: one may, on another host), and a note."""
    try:
        d = json.loads(storage.read_text(root, DRIVER_FILE) or "")
    except (OSError, ValueError):
        return False, ""
    if d.get("host") != socket.gethostname():
        return None, f"driver pid {d.get('pid')} on {d.get('host')}"
    try:
        os.kill(int(d["pid"]), 0)
    except ProcessLookupError:
        return False, ""
    except (PermissionError, KeyError, ValueError, TypeError):
        pass
    return True, f"driver pid {d.get('pid')}"


@dataclass
class SweepState:
    expected: int
    finished: list[str] = field(default_factory=list)      # all epochs (TERMINATED)
    stopped: list[str] = field(default_factory=list)       # by the scheduler
    failed: list[str] = field(default_factory=list)        # ERROR
    unfinished: list[str] = field(default_factory=list)    # RUNNING rows: running, or cut by an interrupt
    driver: bool | None = False
    driver_note: str = ""

    @property
    def done(self) -> int:
        return len(self.finished) + len(self.stopped)

    @property
    def complete(self) -> bool:
        return self.done >= self.expected and not self.unfinished and not self.failed

    @property
    def running(self) -> list[str]:
        return self.unfinished if self.driver else []

    @property
    def interrupted(self) -> list[str]:
        return self.unfinished if self.driver is False else []


def sweep_state(root: str, expected: int) -> SweepState:
    from ..reader import read_trials
    from .asha import stops_file
    found = stops_file(root)
    stops, legacy = found or {}, found is None   # legacy: sweeps of older versions marked ASHA stops STOPPED
    s = SweepState(expected=expected)
    s.driver, s.driver_note = driver_alive(root)
    for r in read_trials(root)[["trial_id", "status"]].itertuples():
        if r.status == "TERMINATED":
            s.finished.append(r.trial_id)
        elif r.trial_id in stops or (legacy and r.status == "STOPPED"):
            s.stopped.append(r.trial_id)
        elif r.status == "ERROR":
            s.failed.append(r.trial_id)
        else:
            s.unfinished.append(r.trial_id)
    return s
