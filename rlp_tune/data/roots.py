"""Where a dataset's files are: `data.root` checked, and the folder inside it that holds a marker file.

    root = dataset_root(dcfg, "cifar10", "cifar-10-batches-py/data_batch_1")   # DatasetError if unset/missing
    d = locate(root, ["cifar-10-batches-py"], "data_batch_1")                 # root/<inner>/ or root; None

Every loader that reads files uses these, so the messages (and NEVER: nothing is downloaded) are one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .datasets import DatasetError

NEVER = "rlp_tune never downloads datasets"


def dataset_root(dcfg, name: str, expected: str) -> Path:
    """`data.root` as a Path; a clear error when it is unset or missing."""
    if not dcfg.root:
        raise DatasetError(f"{name}: data.root is empty; set it to the folder holding {expected}; {NEVER}")
    root = Path(dcfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: data.root {root} is not a folder (expected {expected} there); {NEVER}")
    return root



def locate(root: Path, inner: Sequence[str], marker: str) -> Path | None:
    """The first of root/<inner>/, root itself that holds `marker` (a file, maybe also marker.gz)."""
    for d in [root / i for i in inner] + [root]:
        if (d / marker).is_file() or (d / (marker + ".gz")).is_file():
            return d
    return None
