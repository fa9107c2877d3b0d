"""The trained network: model + RLP heads + detached class heads as one module (`RLPNet`), the
class loss, and `build_net`, which builds it from a config the same way for training
(train.Trainer), loading (load.load_run) and the offline commands (rlp_tune/offline/).

    from rlp_tune.net import build_net, random_label_count
    torch.manual_seed(cfg.run.seed)                       # the Trainer's init
    net, rlp_taps, reg_taps = build_net(cfg, data)        # data: a DataBundle, or a DataShape (load_run)
    loss, stats = net(x, y, {tap: y_rand}, scale=1.0)     # training forward (stats: on-device sums)
    stats = net.evaluate(x, y)                            # class accuracy / loss sums

Nothing here knows about optimizers, checkpoints or results.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config, ConfigError
from .heads import RLPHeads
from .models import create_model, resolve_taps


class RLPNet(nn.Module):
    """Network + RLP heads (+ detached class heads): one module, so DDP wraps a single forward.

    forward → (loss, stats); stats are on-device tensors summed over the local batch."""

    def __init__(self, model, heads: nn.ModuleDict, class_heads: nn.ModuleDict, regularize: set[str],
                 cfg: Config):
        super().__init__()
        self.model, self.heads, self.class_heads = model, heads, class_heads
        self.regularize = regularize
        self.lam = cfg.rlp.lam
        self.smoothing, self.class_loss = cfg.optim.label_smoothing, cfg.optim.class_loss
        self.taps = tuple(sorted(set(heads.keys()) | set(class_heads.keys()),
                                 key=lambda t: model.tap_names.index(t)))

    def forward(self, x, y, y_rand: dict[str, torch.Tensor], scale: float = 1.0, mix=None):
        logits, feats = self.model(x, taps=self.taps)
        loss_class = class_loss(logits, y, self.class_loss, self.smoothing)
        if mix is not None:   # mixup: the class loss is the same mix of the two samples' losses
            perm, weight = mix
            loss_class = weight * loss_class + (1 - weight) * class_loss(logits, y[perm], self.class_loss, self.smoothing)
        stats = {"loss_class": loss_class.detach() * len(y), "correct": (logits.argmax(1) == y).sum()}
        loss = loss_class
        for tap, head in self.heads.items():
            out = head(feats[tap].float(), y_rand[tap], y, regularize=tap in self.regularize)
            loss = loss + out.loss_rnd
            if tap in self.regularize and self.lam > 0:
                loss = loss + self.lam * out.loss_reg
            stats[f"loss_rnd/{tap}"] = out.loss_rnd_heads * len(y)      # (h,)
            stats[f"loss_reg/{tap}"] = out.loss_reg_heads * len(y)      # (h,)
            stats[f"rand_correct/{tap}"] = out.correct                  # (h,)
        for tap, lin in self.class_heads.items():
            cl = lin(feats[tap].detach().float())                       # detached: probes only
            loss = loss + F.cross_entropy(cl, y)
            stats[f"class_correct/{tap}"] = (cl.argmax(1) == y).sum()
        # scale makes each rank's mean a share of the global-batch mean (exact DDP equivalence)
        return loss * scale, stats

    @torch.no_grad()
    def evaluate(self, x, y):
        logits, feats = self.model(x, taps=tuple(self.class_heads.keys()))
        stats = {"loss_class": F.cross_entropy(logits.float(), y, reduction="sum"),
                 "correct": (logits.argmax(1) == y).sum()}
        for tap, lin in self.class_heads.items():
            stats[f"class_correct/{tap}"] = (lin(feats[tap].float()).argmax(1) == y).sum()
        return stats


def class_loss(logits, y, kind: str, smoothing: float):
    if kind == "mse":  # 003's default: MSE on one-hot targets
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        if smoothing:
            target = target * (1 - smoothing) + smoothing / logits.shape[1]
        return F.mse_loss(logits.float(), target.float(), reduction="sum") / len(y)
    return F.cross_entropy(logits.float(), y, label_smoothing=smoothing)


@dataclass(frozen=True)
class DataShape:
    """What building the net needs of the data (a DataBundle has the same three fields): the input
    shape (C, H, W) or (D,), the number of classes and the training-set size m (n = m for unique
    random labels). A checkpoint stores them (`DataShape.from_meta`), so load_run needs no data."""
    in_shape: tuple[int, ...]
    num_classes: int
    m: int

    @classmethod
    def from_meta(cls, meta: dict) -> "DataShape":
        """From a checkpoint's net_meta (checkpoint.check_net_meta: it holds all three)."""
        return cls(tuple(meta["in_shape"]), int(meta["num_classes"]), int(meta["m"]))


def build_net(cfg: Config, data: DataShape) -> tuple[RLPNet, list[str], set[str]]:
    """The network, its RLP heads (random_label_count(cfg, data.m) labels per head) and detached class
    heads, as the Trainer trains them and rlp_tune.load_run rebuilds them → (net on CPU, RLP taps,
    regularized taps). `data`: a DataBundle or a DataShape."""
    num_classes, n = data.num_classes, random_label_count(cfg, data.m)
    model = create_model(cfg.model, tuple(data.in_shape), num_classes)
    rlp_taps = resolve_taps(model, cfg.rlp.layers) if cfg.rlp.heads > 0 else []
    reg = list(cfg.rlp.regularize)
    reg_taps = set(rlp_taps) if reg == ["all"] else set(reg) & set(rlp_taps)   # empty without heads
    missing = set(reg) - set(rlp_taps) - {"all"}
    if cfg.rlp.heads > 0 and cfg.rlp.lam > 0 and missing:
        raise ConfigError(f"rlp.regularize: {', '.join(sorted(missing))} has no RLP head (rlp.layers = "
                          f"{', '.join(rlp_taps)})")
    heads = nn.ModuleDict({t: RLPHeads(model.tap_dims[t], n, cfg.rlp.heads, cfg.rlp.hidden,
                                       norm=t in model.token_taps, layout=cfg.rlp.layout,
                                       num_classes=num_classes, reg=cfg.rlp.reg, chunk=cfg.rlp.chunk)
                           for t in rlp_taps})
    ch_taps = model.tap_names if cfg.probe.class_heads else []
    class_heads = nn.ModuleDict({t: nn.Linear(model.tap_dims[t], num_classes) for t in ch_taps})
    return RLPNet(model, heads, class_heads, reg_taps, cfg), rlp_taps, reg_taps


def random_label_count(cfg: Config, m: int) -> int:
    """n, the number of random labels per head: one per training sample (m) for rlp.labels = 'unique'."""
    return m if cfg.rlp.labels == "unique" else cfg.rlp.n


_TORCH_THREADS = torch.get_num_threads()   # torch's own default (physical cores), read once at import


def affinity_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a SLURM job's cpuset, `taskset`), not the
    whole node's os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):    # not Linux
        return os.cpu_count() or 1


def usable_cpus() -> int:
    """affinity_cpus(), never more than torch's default (physical cores: a second hyper-thread per
    core does not pay)."""
    return max(1, min(affinity_cpus(), _TORCH_THREADS))


def auto_threads() -> int:
    """`run.threads = 0`: the usable CPUs less those other processes keep busy (the 1-minute load
    average, less this process), shared among the node's ranks of a DDP job. On a busy node, threads
    that wait for a core make every step wait for the slowest one (docs/performance.md, "Threads");
    on an idle one this is every usable core."""
    # ranks of one job on this node (torchrun and Ray Train set LOCAL_WORLD_SIZE) share its cores
    cpus = max(1, usable_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        others = 0.0
    return max(1, min(cpus, round(cpus - others)))


_PROCESS_THREADS: list[int] = []   # auto_threads() as first decided in this process


def resolve_threads(threads: int) -> int:
    """torch CPU threads for `run.threads` (0 = auto_threads(), decided once per process: every
    Trainer and loaded run of one process computes with the same count, so their results agree bit
    for bit); sets them and returns the number."""
    if not threads and not _PROCESS_THREADS:
        _PROCESS_THREADS.append(auto_threads())
    n = threads or _PROCESS_THREADS[0]
    torch.set_num_threads(n)
    return n


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {name!r} requested but CUDA is not available")
    return torch.device(name)
