"""Load a trained model: `rlp_tune.load_run(TARGET)` → its config and the net with weights (and heads).

    import rlp_tune
    run = rlp_tune.load_run("runs/digits_mlp")                  # a run folder (`rlp-tune train --out`)
    run = rlp_tune.load_run("results/demo/trials/6a1f2_00003")   # a sweep trial's own folder
    run = rlp_tune.load_run("results/demo/6a1f2_00003_lam=12.3")  # Tune's trial folder → the trial's own
    run = rlp_tune.load_run("s3://bucket/sweeps/demo/trials/6a1f2_00003")   # on an object store
    run = rlp_tune.load_run(result_grid.get_best_result())        # a Tune Result of a sweep
    logits = run.predict(x)                       # raw inputs (as in the dataset) → class logits, eval mode
    logits, feats = run.model(run.prepare(x), taps=("penultimate",))
    run.config.rlp.lam, run.epoch, run.net.heads["penultimate"], run.path

TARGET may also be a file: `checkpoints/model.pt` (weights only, written when training ends) or
`checkpoints/last.pt` (the resumable checkpoint, newest epoch). Without rlp_tune:
`torch.load("runs/x/checkpoints/model.pt", weights_only=True)` → {"state_dict", "config" (flat dotted
keys), "epoch", "in_shape", "num_classes", "n", "mean", "std"}. A sweep's trials keep their own
checkpoints in ROOT/trials/<id>/checkpoints/ (Tune keeps none), on a folder or an object store.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import UserError

WEIGHTS = "model.pt"
LAST = "last.pt"
TRIAL_KEY = "_trial"     # rlp_tune.tune.space.TRIAL: a sweep trial's id in its Tune config


class LoadError(UserError, FileNotFoundError):
    """Nothing loadable at the given place; the message names it."""


@dataclass
class LoadedRun:
    config: Config
    net: Any                 # rlp_tune.net.RLPNet: .model, .heads (RLP heads per tap), .class_heads
    epoch: int               # epochs the weights were trained for
    path: Path               # the file the weights came from
    mean: torch.Tensor | None
    std: torch.Tensor | None

    @property
    def model(self):
        """The network (a TapModel): model(x, taps=(...)) → (logits, {tap: features})."""
        return self.net.model

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (uint8 images or float vectors, as the dataset holds them) → model input."""
        dev = next(self.net.parameters()).device
        x = x.to(dev)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - self.mean.to(dev).view(shape)) / self.std.to(dev).view(shape)
        return x

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for raw inputs, in eval mode."""
        self.net.eval()
        return self.model(self.prepare(x))[0]


def find_weights(target: Any) -> Path:
    """A run folder, sweep trial folder (a path or a URI), Tune trial folder, Tune Result, or a file →
    the file to load: model.pt when training ended, else the newest last.pt."""
    if hasattr(target, "config") and hasattr(target, "metrics") and hasattr(target, "path"):   # ray.tune.Result
        target = _sweep_trial(target)
    if "://" in str(target):
        return _fetched(str(target))
    p = Path(target)
    if p.is_file():
        return p
    if not p.is_dir():
        raise LoadError(f"{p}: no such run folder or checkpoint file")
    for cand in (p / "checkpoints" / WEIGHTS, p / WEIGHTS, p / "checkpoints" / LAST, p / LAST):
        if cand.is_file():
            return cand
    trial = _tune_trial_id(p)
    if trial and (p.parent / "trials" / trial).is_dir():
        return find_weights(p.parent / "trials" / trial)
    raise LoadError(f"{p}: no {WEIGHTS} or {LAST} in this folder")


def _sweep_trial(result) -> str:
    """A Tune Result of a sweep → its trial's own folder, ROOT/trials/<id> (a path or a URI)."""
    tid = (result.config or {}).get(TRIAL_KEY) or (result.metrics or {}).get("trial_id")
    if not tid:
        raise LoadError(f"{result.path}: the Tune result names no sweep trial")
    root = str(result.path).rstrip("/").rpartition("/")[0]
    scheme = getattr(getattr(result, "filesystem", None), "type_name", "local")
    if scheme != "local":
        root = f"{'gs' if scheme == 'gcs' else scheme}://{root}"
    return f"{root}/trials/{tid}"


def _fetched(uri: str) -> Path:
    """A trial folder or a checkpoint file on an object store → a local copy of the file to load."""
    import tempfile

    from .. import storage
    uri = uri.rstrip("/")
    folder, _, name = uri.rpartition("/")
    tries = [(folder, name)] if name.endswith(".pt") else [(uri, f"checkpoints/{WEIGHTS}"), (uri, f"checkpoints/{LAST}")]
    for where, name in tries:
        data = storage.read_bytes(where, name)
        if data is not None:
            path = Path(tempfile.mkdtemp(prefix="rlp_tune_load_")) / name.rpartition("/")[2]
            path.write_bytes(data)
            return path
    raise LoadError(f"{storage.display(uri)}: no {WEIGHTS} or {LAST} there")


def _tune_trial_id(folder: Path) -> str | None:
    """The trial id in a Tune trial folder's result.json (last line), if any."""
    try:
        lines = (folder / "result.json").read_text().strip().splitlines()
        return json.loads(lines[-1]).get("trial_id") if lines else None
    except (OSError, ValueError):
        return None


def load_run(target: Any, device: str | torch.device = "cpu") -> LoadedRun:
    """Config and net (model + RLP heads + class heads) with the trained weights, in eval mode."""
    from ..checkpoint import CheckpointError, WEIGHTS_FORMAT, check_net_meta, read_checkpoint
    from ..net import DataShape, build_net
    path = find_weights(target)
    try:   # model.pt; a full checkpoint (optimizer, RNG states) is not weights-only loadable
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - read below as a full checkpoint, whose errors name the file
        state = None
    if isinstance(state, dict) and state.get("format") == WEIGHTS_FORMAT:
        weights, meta = state["state_dict"], check_net_meta(path, state)
    else:
        state = read_checkpoint(path, "cpu")
        weights, meta = state["net"], check_net_meta(path, state.get("net_meta"))
    cfg = Config.from_flat(state["config"])
    torch.manual_seed(cfg.run.seed)   # the init is overwritten; seeding keeps construction deterministic
    net, _, _ = build_net(cfg, DataShape.from_meta(meta))
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the config ({str(e).splitlines()[0]})") from None
    net.to(device).eval()
    return LoadedRun(cfg, net, int(state["epoch"]), path, meta.get("mean"), meta.get("std"))
