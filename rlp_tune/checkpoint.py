"""Reading a training checkpoint (OUT/checkpoints/last.pt, epoch_NNNNN.pt) safely, and the names a
checkpoint file carries. Writing is the Trainer's (train.py); rebuilding the net is net.py's.

    from rlp_tune.checkpoint import read_checkpoint, CheckpointError
    state = read_checkpoint("runs/x/checkpoints/last.pt")     # dict: version, epoch, config, net, ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import UserError

CKPT_VERSION = 1
# globals a checkpoint may name besides tensors and containers: numpy's RNG state is an ndarray
CHECKPOINT_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                      (getattr(np, "_core", None) or np.core).multiarray._reconstruct]
WEIGHTS_FORMAT = "rlp_tune.model"   # checkpoints/model.pt, written when training ends (rlp_tune/load.py reads it)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be read or does not belong to this config; nothing was overwritten."""


def read_checkpoint(path: str | Path, device="cpu") -> dict:
    """Load and sanity-check a checkpoint file; any problem is a one-line CheckpointError.

    weights_only=True: tensors, containers and plain values only, plus numpy's RNG-state array
    (CHECKPOINT_GLOBALS); a file that names any other global is refused before anything runs."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            state = torch.load(path, map_location=device, weights_only=True)
        ok = isinstance(state, dict) and state.get("version") == CKPT_VERSION and "net" in state
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing error
        msg = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {msg}); "
                              "remove it or use another --out folder") from None
    if not ok:
        raise CheckpointError(f"{path}: not an rlp_tune checkpoint (version {CKPT_VERSION} expected)")
    return state
