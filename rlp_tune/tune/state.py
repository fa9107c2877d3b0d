"""Where a sweep stands, read from its folder alone (the ledger, the trials' rows, the driver
marker): the counts `rlp-tune status`, `rlp-tune resume` and the progress line use.

    s = sweep_state(root, expected=16)
    s.done, s.expected, s.finished, s.stopped, s.running, s.interrupted, s.failed, s.complete
    lease = Lease(root); lease.claim() ... lease.release()   # ROOT/.driver while a driver runs the sweep

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


LEASE_S = 90.0       # a driver whose marker was not renewed for this long is gone
HEARTBEAT_S = 30.0   # how often a driver renews it
SETTLE_S = 2.0       # an object store: wait this long after claiming, then read back who holds it


class Lease:
    """ROOT/.driver: which process drives the sweep, renewed every HEARTBEAT_S (a thread). On an
    object store it is the one-driver lock too, as safe as an object store without conditional
    writes allows: a claim is refused while another driver's marker is fresh (on another host) or
    its process lives (on this one); two claims at the same moment both write, wait SETTLE_S and
    read back: only the one whose marker stayed goes on. On a folder the flock comes first."""

    def __init__(self, root: str):
        self.root, self.token, self.stop, self.started = root, os.urandom(8).hex(), None, time.time()

    def claim(self) -> str | None:
        """None when this process now drives the sweep, else who does (for the one-line error)."""
        alive, note = driver_alive(self.root)
        if alive is not False:
            return note
        self.started = time.time()
        self._write()
        if storage.is_remote(self.root):
            time.sleep(SETTLE_S)
            held = _marker(self.root)
            if held.get("token") != self.token:
                return f"driver pid {held.get('pid')} on {held.get('host')}, which claimed it at the same moment"
        import threading
        self.stop = threading.Event()
        threading.Thread(target=self._beat, daemon=True, name="rlp-tune-lease").start()
        return None

    def _write(self) -> None:
        storage.write_text(self.root, DRIVER_FILE, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                               "started": self.started, "beat": time.time(),
                                                               "token": self.token}))

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:   # a full disk or a store gone for a moment: the next beat tries again
                pass

    def release(self) -> None:
        if self.stop is not None:
            self.stop.set()
        try:
            if _marker(self.root).get("token") == self.token:
                fs, base = storage.filesystem(self.root)
                fs.delete_file(f"{base.rstrip('/')}/{DRIVER_FILE}")
        except OSError:
            pass


def _marker(root: str) -> dict:
    try:
        d = json.loads(storage.read_text(root, DRIVER_FILE) or "{}")
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def driver_alive(root: str) -> tuple[bool | None, str]:
    """(True: a driver runs it, False: none does, None: one may, on another host: its marker is
    fresher than LEASE_S), and a note naming it."""
    d = _marker(root)
    if not d:
        return False, ""
    if d.get("host") != socket.gethostname():
        age = time.time() - float(d.get("beat") or d.get("started") or 0)
        if age > LEASE_S:
            return False, ""
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


def sweep_state(root: str, expected: int, ledger=None, rows: dict | None = None) -> SweepState:
    """`ledger` (the sweep's LedgerState) and `rows` ({trial_id: its row's status}): what the caller
    has read already; read here when not given."""
    from ..reader import read_trials
    from .ledger import Ledger
    ledger = ledger if ledger is not None else Ledger(root).read()
    if rows is None:
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
