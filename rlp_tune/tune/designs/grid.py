"""design = "grid": every cell of the full factorial, once, in a fixed order (cells in the order of
the TOML values; the searcher runs each under every seed, next to each other).

    g = make_design(space, root)        # space.design == "grid"
    g.next(state, live)                 # {"rlp.lam": 0.1, "rlp.heads": 1}: the first cell not taken

A cell is taken when a trial of the ledger holds its values, so a resume, or a grid extended with
more values (`rlp-tune resume ROOT --space NEW.toml`), runs only the cells no trial holds.
"""
from __future__ import annotations

import itertools
from typing import Any

from .base import DESIGNS, FINISHED, Design
from ..ledger import LedgerState


def norm_value(v: Any) -> Any:
    """A searched value as a comparable key: numbers as float (JSON may give 1 for 1.0), lists as
    the comma-joined text, the rest as text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def cell_key(cfg: dict, keys: list[str]) -> tuple:
    return tuple(norm_value(cfg.get(k)) for k in keys)


@DESIGNS.register("grid")
class GridDesign(Design):
    def __init__(self, space, root: str):
        super().__init__(space, root)
        self.keys = [d.key for d in space.grid_dists()]
        self.cells = [dict(zip(self.keys, c)) for c in itertools.product(*(d.values for d in space.grid_dists()))]

    def next(self, state: LedgerState, live: set[str]):
        taken = {cell_key(r.config, self.keys) for r in state.trials.values()}
        return next((dict(c) for c in self.cells if cell_key(c, self.keys) not in taken), FINISHED)
