"""Where a sweep stands, read from its folder alone (the ledger, the trials' rows, the driver
marker): the counts `rlp-tune status`, `rlp-tune resume` and the progress line use.

    s = sweep_state(root, expected=16)
    s.done, s.expected, s.finished, s.stopped, s.running, s.interrupted, s.failed, s.complete
    mark_driver(root) ... clear_driver(root)      # ROOT/.driver while a driver runs the sweep

A trial is *done* when it finished all its epochs (TERMINATED: the ledger's end, or its own row
when a kill came before the driver recorded it) or the scheduler stopped it. A trial the ledger
holds that is neither, while no driver runs, was cut by an interrupt (Ctrl-C, SIGTERM, a kill, a
wall-time limit) or failed: `rlp-tune resume` continues it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field

from .. import storage

DRIVER_FILE = ".driver"   # JSON; not named .json (see asha.SCHEDULER_FILE)


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
    from .ledger import Ledger
    ledger = Ledger(root).read()
    rows = dict(read_trials(root)[["trial_id", "status"]].itertuples(index=False))
    s = SweepState(expected=expected)
    s.driver, s.driver_note = driver_alive(root)
    for tid, rec in ledger.trials.items():
        if rec.status == "TERMINATED" or (rec.status is None and rows.get(tid) == "TERMINATED"):
            s.finished.append(tid)
        elif rec.status == "STOPPED" or tid in ledger.stops:
            s.stopped.append(tid)
        elif rec.status == "ERROR":
            s.failed.append(tid)
        else:
            s.unfinished.append(tid)
    return s
