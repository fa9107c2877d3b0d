"""The sweep designs: how the next point of a sweep is chosen (`[sweep] design`, docs/search-spaces.md).

    design = make_design(space, root)   # DESIGNS.create(space.design, space, root)
    design.replay(state)                # rebuild from the ledger (tune/ledger.py), nothing else
    design.next(state, live)            # a new point's searched values, None (wait) or FINISHED
    design.ended(state, rec)            # a trial of a point ended (its record holds the outcome)

    grid              designs/grid.py       the full factorial, every cell once (per seed)
    adaptive          designs/adaptive.py   λ placed where it narrows the CI of λ50
    tpe, random, qmc  designs/study.py      Optuna's samplers, seeded

A design proposes points; the searcher (tune/searcher.py) runs each point under every replicate
seed, records each trial in the ledger before it starts, and rebuilds the design from the ledger on
resume. A new design is one file: a `Design` subclass registered with `@DESIGNS.register("name")`,
imported in designs/__init__.py; tests/test_designs.py's contract test runs every registered design.
"""
from __future__ import annotations

from ...registry import Registry
from ..ledger import LedgerState, TrialRecord

DESIGNS = Registry("design")
FINISHED = "FINISHED"     # next(): the design has proposed every point it will


class Design:
    """The base of every design; the defaults suit a design that learns nothing from outcomes."""

    def __init__(self, space, root: str):
        self.space, self.root = space, root

    def replay(self, state: LedgerState) -> None:
        """Rebuild what the design derives from the trials so far (called once per driver session)."""

    def next(self, state: LedgerState, live: set[str]):
        """The searched values of a new point, None to wait for running trials, or FINISHED."""
        raise NotImplementedError

    def ended(self, state: LedgerState, rec: TrialRecord) -> None:
        """A trial ended (TERMINATED, STOPPED or ERROR); `rec` holds its outcome."""

    def evidence_keys(self) -> list[str]:
        """Result keys ("split.metric.layer") whose final values the design learns from: the ledger
        keeps them with each trial's end."""
        return []
