"""Reading a training checkpoint (OUT/checkpoints/last.pt, epoch_NNNNN.pt) safely, and the names a
checkpoint file carries. Writing is the Trainer's (run/train.py); rebuilding the net is net.py's.

    from rlp_tune.checkpoint import read_checkpoint, CheckpointError
    state = read_checkpoint("runs/x/checkpoints/last.pt")     # dict: version, epoch, config, net, ...
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import Config, all_keys
from .errors import UserError
from .names import name_problem

CKPT_VERSION = 1
# globals a checkpoint may name besides tensors and containers: numpy's RNG state is an ndarray
CHECKPOINT_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                      (getattr(np, "_core", None) or np.core).multiarray._reconstruct]
# keys that may differ between a checkpoint and the resuming config (they do not change the math).
# Not run.epochs: the cosine schedule spans run.epochs, so a run cannot be extended (docs/reliability.md)
RESUMABLE_KEYS = {"run.device", "run.threads", "run.name", "run.eval_batch_size", "data.root",
                  "data.workers", "run.keep_checkpoints", "run.compile", "probe.every", "probe.probes",
                  "probe.layers", "probe.labels", "probe.k", "probe.masc_threshold", "probe.max_train",
                  "probe.linear", "rlp.eval_samples", "rlp.audit_every", "rlp.audit_epochs", "rlp.audit_standardize"}
RESUMABLE_KEYS |= {k for k in all_keys() if k.startswith("logging.")}   # trackers only watch
WEIGHTS_FORMAT = "rlp_tune.model"   # checkpoints/model.pt, written when training ends (rlp_tune/run/load.py reads it)


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
        ok = (isinstance(state, dict) and state.get("version") == CKPT_VERSION and "net" in state
              and isinstance(state.get("config"), dict))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user-facing error
        msg = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {msg}); "
                              "remove it or use another --out folder") from None
    if not ok:
        raise CheckpointError(f"{path}: not an rlp_tune checkpoint (version {CKPT_VERSION} with its net and "
                              "config expected)")
    if state.get("trial_id") and name_problem(state["trial_id"]):   # it names the files rows go to
        raise CheckpointError(f"{path}: trial_id {state['trial_id']!r} {name_problem(state['trial_id'])}; "
                              "not a checkpoint rlp_tune wrote")
    return state


NET_META = ("in_shape", "num_classes", "m")    # what rebuilding the net needs besides the config (net.DataShape)


def check_net_meta(path: str | Path, meta) -> dict:
    """The net_meta of a checkpoint (or a model.pt's fields); one written before it held NET_META is
    refused in one line naming its version (rlp_tune.load_run rebuilds the net from it, without data)."""
    missing = [k for k in NET_META if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint version {CKPT_VERSION} of an older rlp_tune (no net_meta "
                              f"{', '.join(missing)}: written before 2026-12); load_run needs them: train it again")
    return meta


def check_resumable(path: str | Path, cfg: Config, state: dict) -> None:
    """A checkpoint may resume under `cfg` only if every key outside RESUMABLE_KEYS is equal."""
    mine, theirs = cfg.to_flat(), state["config"]
    theirs = {**Config().to_flat(), **theirs}   # keys added since the checkpoint was made: their defaults
    diff = sorted(k for k in set(mine) | set(theirs) if k not in RESUMABLE_KEYS and mine.get(k) != theirs.get(k))
    if diff:
        shown = ", ".join(f"{k} (checkpoint {theirs.get(k)!r}, config {mine.get(k)!r})" for k in diff[:4])
        why = ("; the LR schedule spans run.epochs, so a run cannot be extended or shortened"
               if "run.epochs" in diff else "")
        raise CheckpointError(f"{path}: checkpoint was made with a different config: {shown}{why}; "
                              "use another --out folder to start a new run")
