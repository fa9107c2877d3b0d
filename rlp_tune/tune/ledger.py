"""The sweep's ledger: the one owner of a sweep's state, ROOT/ledger/, one object per event.

    ledger = Ledger(root)
    state = ledger.read()                     # LedgerState: every trial in the order it was assigned
    ledger.add_trial(TrialRecord("t1", {"rlp.lam": 0.1}, replicate=0, point=0))
    ledger.add_rung("t1", epoch=3, value=0.91, stop=False)    # an ASHA decision, before it takes effect
    ledger.add_end("t1", "TERMINATED", epoch=30, series={1: 0.5, ...}, values={...})

Each event is one JSON object ROOT/ledger/<seq:08d>-<kind>.json, written whole through storage.py:
a temporary file renamed into place on a local folder or NFS, one PUT on an object store. Both are
atomic, so a kill leaves an event whole or absent, and the same code serves every storage (object
stores have no append and no rename of a file being written: one object per event is what they do
safely). Only the sweep's one driver writes (sweep.py holds the lock); its numbers follow the newest
object found when it read the ledger. Every SNAPSHOT_EVERY events, and when a driver session ends, it writes
`<seq>-snapshot.json` (every event so far, in order) and then deletes the objects the snapshot
holds, so a reader gets the whole state in a few requests however long the sweep ran; a kill between the two leaves objects
that the snapshot already holds, which readers skip.

What a resume needs is here: which trial runs which config and seed (`trial`), each scheduler
decision (`rung`), how each trial ended (`end`: its status, the sweep metric by epoch, the final
values its design learns from). The searcher (tune/searcher.py) and the scheduler (tune/asha.py)
are rebuilt from the ledger alone; Tune's own files in the folder are never read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .. import storage
from ..errors import UserError

FOLDER = "ledger"
SNAPSHOT_EVERY = 50
_NAME = re.compile(r"(\d{8})-(trial|rung|end|snapshot)\.json$")
ENDED = ("TERMINATED", "STOPPED")     # a trial with one of these ends is done; ERROR is retried by a resume


class LedgerError(UserError, ValueError):
    """A ledger object that is not one this toolkit wrote; the message names it."""


@dataclass
class TrialRecord:
    trial_id: str
    config: dict                      # the searched keys (flat dotted names) and their values
    replicate: int = 0                # index into the space's seeds
    point: int = 0                    # the design's point (grid cell, study trial, λ point): replicates share it
    status: str | None = None         # None: assigned, not ended; else TERMINATED / STOPPED / ERROR
    epoch: int = 0                    # the last epoch of its end
    series: dict[int, float] = field(default_factory=dict)    # the sweep metric by epoch, at its end
    values: dict[str, float] = field(default_factory=dict)    # final values its design learns from

    @property
    def done(self) -> bool:
        return self.status in ENDED


@dataclass
class LedgerState:
    trials: dict[str, TrialRecord] = field(default_factory=dict)    # in the order they were assigned
    rungs: list[tuple[str, int, float, bool]] = field(default_factory=list)   # (trial, epoch, value, stop)
    stops: dict[str, int] = field(default_factory=dict)      # trial_id → the epoch the scheduler stopped it at
    events: list[dict] = field(default_factory=list)

    def unfinished(self) -> list[TrialRecord]:
        """Trials a resume runs again from their checkpoints: not ended, or ended in an error."""
        return [r for r in self.trials.values() if not r.done]

    def apply(self, ev: dict) -> None:
        kind = ev["kind"]
        if kind == "trial":
            self.trials[ev["trial"]] = TrialRecord(ev["trial"], dict(ev["config"]), int(ev["replicate"]),
                                                   int(ev["point"]))
        elif kind == "rung":
            self.rungs.append((ev["trial"], int(ev["epoch"]), float(ev["value"]), bool(ev["stop"])))
            if ev["stop"]:     # kept as the events come: the scheduler asks it at every result
                self.stops[ev["trial"]] = int(ev["epoch"])
        elif kind == "end":
            r = self.trials[ev["trial"]]
            r.status, r.epoch = ev["status"], int(ev["epoch"])
            r.series = {int(k): float(v) for k, v in ev["series"].items()}
            r.values = {str(k): float(v) for k, v in ev["values"].items()}
        self.events.append(ev)


class Ledger:
    """Reads ROOT/ledger and, in the driver, appends to it (see the module docstring)."""

    def __init__(self, root: str):
        self.root = root
        self.state = LedgerState()
        self._seq = 0                 # the newest object's number
        self._since_snapshot = 0

    def read(self) -> LedgerState:
        """The state every event so far makes (in order). A ledger object this toolkit did not write
        is a LedgerError naming it."""
        fs, names = _objects(self.root)
        snap = max((n for n in names if n[1] == "snapshot"), default=None)
        state = LedgerState()
        todo = [n for n in names if snap is None or n[0] > snap[0]]
        for seq, kind, path in ([snap] if snap else []) + [n for n in todo if n[1] != "snapshot"]:
            data = self._load(fs, path)
            try:
                for ev in (data["events"] if kind == "snapshot" else [data]):
                    state.apply(ev)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise LedgerError(f"{storage.display(path)}: not a ledger event this version wrote ({type(e).__name__}: "
                                  f"{e})") from None
        self.state, self._seq = state, max((n[0] for n in names), default=0)
        self._since_snapshot = len(todo)
        return state

    def _load(self, fs, path: str):
        try:
            with fs.open_input_stream(path) as f:
                return json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise LedgerError(f"{storage.display(path)}: not a ledger event ({e})") from None

    # -- the driver's writes --------------------------------------------------------------------------
    def add_trial(self, rec: TrialRecord) -> None:
        self._append({"kind": "trial", "trial": rec.trial_id, "config": rec.config, "replicate": rec.replicate,
                      "point": rec.point})

    def add_rung(self, trial_id: str, epoch: int, value: float, stop: bool) -> None:
        self._append({"kind": "rung", "trial": trial_id, "epoch": int(epoch), "value": float(value), "stop": stop})

    def add_end(self, trial_id: str, status: str, epoch: int, series: dict[int, float],
                values: dict[str, float]) -> None:
        self._append({"kind": "end", "trial": trial_id, "status": status, "epoch": int(epoch),
                      "series": {str(k): v for k, v in series.items()}, "values": values})

    def _append(self, ev: dict) -> None:
        self._seq += 1
        storage.write_text(self.root, f"{FOLDER}/{self._seq:08d}-{ev['kind']}.json", json.dumps(ev))
        self.state.apply(ev)
        self._since_snapshot += 1
        if self._since_snapshot >= SNAPSHOT_EVERY:
            self.snapshot()

    def snapshot(self) -> None:
        """Every event so far in one object, then the objects it holds deleted (nothing to do when
        the newest object is a snapshot already)."""
        if self._since_snapshot == 0:
            return
        self._seq += 1
        storage.write_text(self.root, f"{FOLDER}/{self._seq:08d}-snapshot.json",
                           json.dumps({"events": self.state.events}))
        self._since_snapshot = 0
        fs, names = _objects(self.root)
        for seq, _, path in names:
            if seq < self._seq:
                fs.delete_file(path)


def _objects(root: str) -> tuple:
    """(filesystem, [(seq, kind, path)] of ROOT/ledger's event objects, in order); other files there
    (a temporary file a kill left) are not events."""
    fs, base = storage.filesystem(root)
    names = [(int(m.group(1)), m.group(2), p) for p in storage.list_files(fs, f"{base.rstrip('/')}/{FOLDER}")
             if (m := _NAME.search(p))]
    return fs, sorted(names)


def has_ledger(root: str) -> bool:
    return bool(_objects(root)[1])
