"""A run folder's saved checkpoints as frozen nets, for the offline commands (probe.py, rlp.py).

    ck, results_root, sweep, trial_id = run_context("runs/x")
    files = select_checkpoints(ck, "0,5,10")
    run = load_frozen(files[0])          # config, data and the net as the Trainer built them
    run.load(read_checkpoint(files[1]))  # the next checkpoint's weights into the same net

The data and net are built exactly as `train.Trainer` builds them (threads, device, `check_run`,
the seeded init, channels_last), without an optimizer, DDP, a writer or a lock.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, read_checkpoint
from ..run.checks import check_run
from ..config import Config
from ..data import DataBundle, build_data
from ..data.labels import random_label_table
from ..net import RLPNet, build_net, random_label_count, resolve_device, resolve_threads


def run_context(root: str | Path) -> tuple[Path, Path, str, str]:
    """(checkpoint folder, results root, sweep, trial_id) of a run folder or a sweep trial folder."""
    root = Path(root)
    ck = root / "checkpoints"
    if not ck.is_dir():
        raise CheckpointError(f"{root}: no checkpoints/ folder (is this an `rlp-tune train --out` folder?)")
    if root.parent.name == "trials" and (root.parent.parent / "parquet").is_dir():
        return ck, root.parent.parent, root.parent.parent.name, root.name
    return ck, root, "", root.name


def select_checkpoints(ck: Path, epochs: str) -> list[Path]:
    files = sorted(ck.glob("epoch_*.pt"))
    if not files:
        files = [ck / "last.pt"] if (ck / "last.pt").exists() else []
    if not files:
        raise CheckpointError(f"{ck}: no checkpoint files")
    if epochs != "all":
        want = {int(e) for e in epochs.split(",") if e.strip()}
        files = [f for f in files if f.stem.startswith("epoch_") and int(f.stem.split("_")[1]) in want]
        if not files:
            raise CheckpointError(f"{ck}: no epoch_*.pt for epochs {epochs} (train with run.keep_checkpoints=all)")
    return files


def run_identity(state: dict, sweep: str, trial_id: str) -> tuple[str, str]:
    """(sweep, trial_id) the run's checkpoint was made under (older checkpoints: the folder's names),
    so rows of a moved or renamed run folder join its own trial."""
    return state.get("sweep", sweep), state.get("trial_id") or trial_id


@dataclass
class FrozenRun:
    cfg: Config
    data: DataBundle          # on `device`
    net: RLPNet               # on `device`; weights of the last `load`
    rlp_taps: list[str]
    n: int                    # random labels per head
    state: dict               # the first checkpoint read (its identity: sweep, trial_id)

    def load(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])

    def label_tables(self, epoch: int = 1) -> dict[str, torch.Tensor]:
        """tap → (m, heads) random labels, as the Trainer draws them for `epoch` (checkpoints without
        stored tables)."""
        c = self.cfg
        return {t: random_label_table(self.data.m, c.rlp.heads, self.n, c.run.seed, t, c.rlp.labels, epoch)
                .to(self.data.device) for t in self.rlp_taps}


def load_frozen(ck_file: Path) -> FrozenRun:
    """The config, data and net of a checkpoint, built as the Trainer builds them (init weights: `load` a state)."""
    state = read_checkpoint(ck_file)
    cfg = Config.from_flat(state["config"]).replace(**{"run.device": "auto"})
    resolve_threads(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    data = build_data(cfg)
    check_run(cfg, data, device)
    data = data.to(device)
    torch.manual_seed(cfg.run.seed)   # the Trainer's init (overwritten by the weights; keeps the RNG as it was)
    n = random_label_count(cfg, data.m)
    net, rlp_taps, _ = build_net(cfg, data)
    net = net.to(device)
    if cfg.model.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return FrozenRun(cfg, data, net, rlp_taps, n, state)
