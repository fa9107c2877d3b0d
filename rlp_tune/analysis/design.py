"""What experiment the results come from: the design, the searched keys, and the design cells.

    des = read_design("runs/sweep1", per_trial_frame, varying_keys)
    des.kind            # grid | qmc | random | tpe | adaptive | single run | unknown | empty
    des.cell_factors    # e.g. ["data.label_noise"]: the λ fits are made once per combination

The sweep folder's space.toml names the searched keys (`[search]`) and the design (`[sweep] design`,
absent = tpe). Without it (a folder of single runs), the config keys that vary across trials stand
in. A design cell is one combination of the searched factors other than λ (and seeds): every key
of a grid / adaptive design, and, for sampled designs, keys that take 2–8 values with ≥ 3 trials
each (a `choice`); factors drawn continuously are pooled in every cell, and the document says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import storage
from ..config import LAM_KEY
from ..tomlfile import TomlError, parse_toml
from .tables import IDENTITY_KEYS

CELL_MAX_LEVELS = 8
CELL_MIN_TRIALS = 3
GRID_DESIGNS = ("grid", "adaptive")


@dataclass
class Design:
    kind: str
    searched: list[str]
    cell_factors: list[str] = field(default_factory=list)
    pooled_factors: list[str] = field(default_factory=list)   # searched, not λ, drawn continuously
    source: str = "trials"                                    # "space.toml" | "trials"

    @property
    def lam_swept(self) -> bool:
        return LAM_KEY in self.searched

    def to_dict(self) -> dict:
        return {"kind": self.kind, "searched": self.searched, "cell_factors": self.cell_factors,
                "pooled_factors": self.pooled_factors, "source": self.source}


def _space(root: str | Path) -> dict | None:
    """The sweep's stored space.toml as a table (tomlfile.parse_toml, the parse every space and config
    file goes through), or None: results without one (single runs) or one that cannot be read."""
    try:
        data = storage.read_bytes(root, "space.toml")
        return parse_toml(data, f"{storage.display(root)}/space.toml") if data is not None else None
    except (TomlError, OSError):
        return None


def read_design(root: str | Path, d, varying: list[str]) -> Design:
    """The design of ROOT's results; d: tables.per_trial frame; varying: tables.varying_columns."""
    space = _space(root)
    search = (space or {}).get("search")
    if isinstance(search, dict) and search:
        kind = str(((space or {}).get("sweep") or {}).get("design", "tpe"))
        searched, source = [k for k in search if k not in IDENTITY_KEYS], "space.toml"
    else:
        kind = {0: "empty", 1: "single run"}.get(len(d), "unknown")
        searched, source = [k for k in varying if k not in IDENTITY_KEYS], "trials"
    cells, pooled = [], []
    for k in searched:
        if k == LAM_KEY or k not in d.columns:
            continue
        counts = d[k].astype(str).value_counts()
        grid_like = 2 <= len(counts) <= CELL_MAX_LEVELS and counts.min() >= CELL_MIN_TRIALS
        if (kind in GRID_DESIGNS and 2 <= len(counts)) or grid_like:
            cells.append(k)
        elif len(counts) > 1:
            pooled.append(k)
    return Design(kind=kind, searched=searched, cell_factors=cells, pooled_factors=pooled, source=source)
