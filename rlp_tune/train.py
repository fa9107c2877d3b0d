"""One Trainer for a single process and for DDP: `fit()` yields one `EpochRecord` per epoch.

    from rlp_tune.config import load_config
    from rlp_tune.train import Trainer
    trainer = Trainer(load_config("configs/digits_mlp.toml"), out_dir="runs/x")
    for rec in trainer.fit():                      # resumes by itself if runs/x holds a checkpoint
        print(rec.epoch, rec.get("test", "acc"), rec.get("train", "rand_acc", layer="penultimate"))

With `out_dir`, every epoch first writes its Parquet rows (results.py), then an atomic
checkpoint (model, heads, optimizer, schedule, every RNG state), then yields. A crash at any point
resumes without a gap or a duplicate row. Under torch.distributed (initialized by the caller:
torchrun, Ray Train, tests) each rank trains on its share of every global batch; rank 0 writes.
Nothing here knows about Ray.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .audit import audit_rows, rand_eval_rows
from .checks import check_run
from .config import Config, ConfigError
from .data import DataBundle, build_data
from .data.augment import FixedAugmentSets, make_augment, mixup
from .data.labels import derive_seed, random_label_table
from .heads import RLPHeads
from .models import create_model, resolve_taps
from .errors import UserError
from .results import ResultWriter
from .rundir import RunLock

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


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be read or does not belong to this config; nothing was overwritten."""


@dataclass
class EpochRecord:
    epoch: int                       # 1-based; 0 = before training (probes at init)
    rows: list[dict]                 # {split, layer, head, metric, value}: the Parquet rows
    wall_s: float                    # seconds since the run (this process) started
    stop: bool = False               # the trainer stops after this epoch (e.g. run.stop_train_acc)

    def get(self, split: str, metric: str, layer: str = "", head: int = -1, default=float("nan")) -> float:
        for r in self.rows:
            if (r["split"], r["metric"], r["layer"], r["head"]) == (split, metric, layer, head):
                return r["value"]
        return default

    def flat(self) -> dict[str, float]:
        """{'train.acc': .., 'train.rand_acc.penultimate': .., 'epoch': ..} for reporting (head means only)."""
        out = {"epoch": self.epoch}
        for r in self.rows:
            if r["head"] == -1:
                out[".".join(p for p in (r["split"], r["metric"], r["layer"]) if p)] = r["value"]
        return out


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
            perm, lam = mix
            loss_class = lam * loss_class + (1 - lam) * class_loss(logits, y[perm], self.class_loss, self.smoothing)
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {name!r} requested but CUDA is not available")
    return torch.device(name)


def lr_lambda(cfg: Config, steps_per_epoch: int):
    """Per-step LR factor: linear warm-up over optim.warmup_epochs, then cosine to 0 (or constant)."""
    warm = int(round(cfg.optim.warmup_epochs * steps_per_epoch))
    total = cfg.run.epochs * steps_per_epoch

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


class Trainer:
    def __init__(self, cfg: Config, out_dir: str | Path | None = None, data: DataBundle | None = None,
                 sweep: str = "", trial_id: str | None = None, progress: bool = False,
                 results_root: str | Path | None = None, trial_extra: dict | None = None):
        """out_dir: checkpoints (and Parquet unless results_root is given: a sweep's shared folder/URI)."""
        self.cfg = cfg
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if cfg.run.batch_size < self.world:
            raise ConfigError(f"run.batch_size: {cfg.run.batch_size} is smaller than the world size {self.world}")
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.device = resolve_device(cfg.run.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank % torch.cuda.device_count())))
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress and self.rank == 0
        data = data or build_data(cfg)
        check_run(cfg, data, self.device)      # sizes that depend on the data, before building anything
        self.data = data.to(self.device)
        self.seed = cfg.run.seed

        torch.manual_seed(self.seed)  # same init on every rank
        model = create_model(cfg.model, self.data.in_shape, self.data.num_classes)
        rlp_taps = resolve_taps(model, cfg.rlp.layers) if cfg.rlp.heads > 0 else []
        reg = list(cfg.rlp.regularize)
        reg_taps = set(rlp_taps) if reg == ["all"] else set(reg) & set(rlp_taps)   # empty without heads
        missing = set(reg) - set(rlp_taps) - {"all"}
        if cfg.rlp.heads > 0 and cfg.rlp.lam > 0 and missing:
            raise ConfigError(f"rlp.regularize: {', '.join(sorted(missing))} has no RLP head (rlp.layers = "
                              f"{', '.join(rlp_taps)})")
        self.n = self.data.m if cfg.rlp.labels == "unique" else cfg.rlp.n
        heads = nn.ModuleDict({t: RLPHeads(model.tap_dims[t], self.n, cfg.rlp.heads, cfg.rlp.hidden,
                                           norm=t in model.token_taps, layout=cfg.rlp.layout,
                                           num_classes=self.data.num_classes, reg=cfg.rlp.reg, chunk=cfg.rlp.chunk)
                               for t in rlp_taps})
        ch_taps = model.tap_names if cfg.probe.class_heads else []
        class_heads = nn.ModuleDict({t: nn.Linear(model.tap_dims[t], self.data.num_classes) for t in ch_taps})
        self.net = RLPNet(model, heads, class_heads, reg_taps, cfg).to(self.device)
        if cfg.model.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ddp = (nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device] if self.device.type == "cuda"
                                                        else None) if self.world > 1 else self.net)
        self.step_fn = torch.compile(self.ddp) if cfg.run.compile else self.ddp
        self.rlp_taps, self.reg_taps = rlp_taps, reg_taps

        self.steps_per_epoch = -(-self.data.m // cfg.run.batch_size)
        self.opt = make_optimizer(cfg, self.net.parameters(), heads=list(heads.parameters()))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg, self.steps_per_epoch))
        self.augment = make_augment(cfg.data.augment, self.data.in_shape, mean=self.data.mean, std=self.data.std,
                                    strength=cfg.data.augment_strength)
        d = cfg.data
        self.aug_sets = FixedAugmentSets(self.data.m, d.augment_sets, derive_seed(self.seed, "views")) \
            if d.augment_sets else None
        # independent view labels: a noisy sample's label is drawn per (sample, view), 003's setting
        self.view_labels = FixedAugmentSets(self.data.m, d.augment_sets, derive_seed(self.seed, "view-labels")) \
            if d.augment_sets and d.augment_labels == "independent" else None
        self.noisy = (self.data.y["train"] != self.data.y_clean) if d.label_noise < 1 else \
            torch.ones_like(self.data.y_clean, dtype=torch.bool)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=cfg.run.precision == "bf16")
        self.epoch, self.finished = 0, False
        self.eval_idx: torch.Tensor | None = None   # rand_acc_eval's fixed sample (drawn on first use)
        self.tables: dict[str, torch.Tensor] = {}
        self.t0 = time.time()
        self.trial_id = trial_id or cfg.run.name or (self.out_dir.name if self.out_dir else "run")
        self.trial_extra = {"world_size": self.world, "device": str(self.device), **(trial_extra or {})}
        self.results_root, self.sweep = results_root or self.out_dir, sweep
        self.writer = ResultWriter(self.results_root, sweep, self.trial_id) \
            if self.results_root and self.rank == 0 else None
        # one process per run folder, from before the checkpoint is read until fit() ends
        self.lock = RunLock.acquire(self.out_dir) if self.out_dir and self.rank == 0 else None
        if self.out_dir and (self.out_dir / "checkpoints" / "last.pt").exists():
            try:
                self.load_checkpoint(self.out_dir / "checkpoints" / "last.pt")
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Release the run folder (fit() does this when it ends; a Trainer never fitted may call it)."""
        if getattr(self, "lock", None) is not None:
            self.lock.release()
            self.lock = None

    # ---- random labels -----------------------------------------------------------------------
    def label_tables(self, epoch: int) -> dict[str, torch.Tensor]:
        """tap → (m, heads) random labels on device (fixed: drawn once; reshuffle: per epoch)."""
        mode = self.cfg.rlp.labels
        if not self.tables or mode == "reshuffle":
            self.tables = {t: random_label_table(self.data.m, self.cfg.rlp.heads, self.n, self.seed, t, mode,
                                                 epoch).to(self.device) for t in self.rlp_taps}
        return self.tables

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> Iterator[EpochRecord]:
        cfg = self.cfg
        try:
            yield from self._fit()
        finally:
            self.close()

    def _fit(self) -> Iterator[EpochRecord]:
        cfg = self.cfg
        if self.finished or self.epoch >= cfg.run.epochs:   # resumed after the end: bookkeeping only
            if self.writer and self.writer.trial_status() != "TERMINATED":
                self.writer.compact()
                self.writer.write_trial(cfg.to_flat(), "TERMINATED", self.epoch, self.trial_extra)
            return
        if self.writer and self.epoch == 0:
            self.writer.truncate_after(0)
        if self.writer:
            self.writer.write_trial(cfg.to_flat(), "RUNNING", self.epoch, self.trial_extra)
        if self.epoch == 0 and self.out_dir and cfg.run.keep_checkpoints == "all":
            self.save_checkpoint(tag="epoch_00000")
        if self.epoch == 0 and cfg.probe.every and self.writer:   # probes at initialization: the baseline
            self.writer.write_epoch(0, self.probe_rows())
        done = False
        try:
            while not done:
                rec = self.run_epoch(self.epoch + 1)
                self.epoch += 1
                done = self.finished = rec.stop or self.epoch >= cfg.run.epochs
                if self.writer:
                    self.writer.write_epoch(self.epoch, rec.rows)     # rows first, then the checkpoint
                if self.out_dir:
                    self.save_checkpoint()
                    if cfg.run.keep_checkpoints == "all":
                        self.save_checkpoint(tag=f"epoch_{self.epoch:05d}")
                if self.writer:   # finished before the last yield: a consumer may stop at it (Tune, ASHA max_t)
                    if done:
                        self.writer.compact()
                    self.writer.write_trial(cfg.to_flat(), "TERMINATED" if done else "RUNNING", self.epoch,
                                            self.trial_extra)
                yield rec
        except (KeyboardInterrupt, GeneratorExit):   # Ctrl-C, or the consumer stopped early (e.g. ASHA)
            if self.writer and not done:
                self.writer.write_trial(cfg.to_flat(), "STOPPED", self.epoch, self.trial_extra)
            raise

    def run_epoch(self, epoch: int) -> EpochRecord:
        cfg, t_start = self.cfg, time.time()
        torch.manual_seed(derive_seed(self.seed, "torch", epoch, self.rank))  # dropout etc.: resumable
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "augment", epoch, self.rank))
        tables = self.label_tables(epoch)
        sums: dict[str, torch.Tensor] = {}
        n_seen = torch.zeros((), device=self.device)
        self.ddp.train()
        batches = self.data.train_batches(epoch, cfg.run.batch_size, self.seed, self.rank, self.world)
        if self.progress:
            from tqdm import tqdm
            batches = tqdm(batches, total=self.steps_per_epoch, desc=f"epoch {epoch}/{cfg.run.epochs}",
                           leave=False, dynamic_ncols=True)
        m, gb = self.data.m, cfg.run.batch_size
        for i, (x, y, idx) in enumerate(batches):
            x, y, mix = self.augment_batch(x, y, idx, gen)
            if cfg.model.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            # DDP averages gradients over ranks: weight each rank's batch mean by its share of this
            # global batch so the result is exactly the global-batch mean (also for uneven shards)
            share = len(y) * self.world / min(gb, m - i * gb)
            with torch.autocast(**self.autocast):
                loss, stats = self.step_fn(x, y, {t: tab[idx] for t, tab in tables.items()}, share, mix)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.clip > 0:
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.clip)
            self.opt.step()
            self.sched.step()
            for k, v in stats.items():
                sums[k] = sums[k] + v.detach() if k in sums else v.detach().clone()
            n_seen += len(y)
        sums["n"] = n_seen
        train = self._reduce(sums)
        train_s = time.time() - t_start
        rows = self._train_rows(train)
        for split in self.data.splits:
            if split != "train":
                rows += self._eval_rows(split)
        rows.append(dict(split="train", layer="", head=-1, metric="samples_per_s", value=train["n"].item() / train_s))
        rows.append(dict(split="train", layer="", head=-1, metric="epoch_s", value=time.time() - t_start))
        rows.append(dict(split="train", layer="", head=-1, metric="lr", value=self.sched.get_last_lr()[0]))
        if self.rank == 0:   # measurements on the end-of-epoch network (no RNG draws: training unchanged)
            rows += rand_eval_rows(self, tables)
            if cfg.rlp.audit_every and epoch % cfg.rlp.audit_every == 0 and self.rlp_taps:
                rows += audit_rows(self, tables)
        if cfg.probe.every and epoch % cfg.probe.every == 0 and self.rank == 0:
            rows += self.probe_rows()
        stop = cfg.run.stop_train_acc > 0 and train["correct"].item() / train["n"].item() >= cfg.run.stop_train_acc
        return EpochRecord(epoch, rows, time.time() - self.t0, stop)

    def augment_batch(self, x, y, idx, gen):
        """Augmentation (fresh, or one of B fixed views per sample), then optional mixup."""
        if self.aug_sets is None:
            x = self.augment(x, gen)
        else:
            b = self.aug_sets.pick(len(idx), gen, x.device)
            x = self.aug_sets.apply(self.augment, x, idx, b=b)
            if self.view_labels is not None:
                u = self.view_labels.params(idx, b, 1)[:, 0]
                C = self.cfg.data.random_classes or self.data.num_classes
                y = torch.where(self.noisy[idx], (u * C).long().clamp_max(C - 1), y)
        mix = None
        if self.cfg.data.mixup > 0:
            x, _, lam, perm = mixup(x, None, self.cfg.data.mixup, gen)
            mix = (perm, lam)
        return x, y, mix

    def probe_rows(self) -> list[dict]:
        """k-NN / linear / MASC / NCM probes and invariance on the configured taps (rank 0)."""
        from .probes.layers import probe_rows
        aug = None   # invariance needs image inputs; "none" training augmentation → measure under crop_flip
        if len(self.data.in_shape) == 3:
            aug = self.augment if self.cfg.data.augment != "none" else \
                make_augment("crop_flip", self.data.in_shape, mean=self.data.mean, std=self.data.std)
        return probe_rows(self.net.model, self.data, self.cfg, augment=aug)

    def _reduce(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum the epoch's on-device tallies over ranks (one all_reduce per tally, at the log point)."""
        if self.world > 1:
            for v in sums.values():
                dist.all_reduce(v)
        return {k: v.double().cpu() for k, v in sums.items()}   # the epoch's one host sync

    def _train_rows(self, s) -> list[dict]:
        n = s["n"].item()
        row = lambda metric, value, layer="", head=-1: dict(split="train", layer=layer, head=head,  # noqa: E731
                                                            metric=metric, value=float(value))
        rows = [row("acc", s["correct"] / n), row("loss_class", s["loss_class"] / n)]
        for tap in self.rlp_taps:
            acc = s[f"rand_correct/{tap}"] / n
            rows += [row("rand_acc", a, tap, h) for h, a in enumerate(acc.tolist())]
            rows += [row("rand_acc", acc.mean(), tap), row("loss_rnd", s[f"loss_rnd/{tap}"].sum() / n, tap),
                     row("loss_reg", s[f"loss_reg/{tap}"].mean() / n, tap)]
        for tap in self.net.class_heads:
            rows.append(row("class_acc", s[f"class_correct/{tap}"] / n, tap))
        return rows

    @torch.no_grad()
    def _eval_rows(self, split: str) -> list[dict]:
        self.net.eval()
        bs = self.cfg.run.eval_batch_size or 2 * self.cfg.run.batch_size
        sums: dict[str, torch.Tensor] = {}
        n = torch.zeros((), device=self.device)
        for x, y, _ in self.data.eval_batches(split, bs, self.rank, self.world):
            if self.cfg.model.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(**self.autocast):
                stats = self.net.evaluate(x, y)
            for k, v in stats.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            n += len(y)
        sums["n"] = n
        s = self._reduce(sums)
        nn_ = s["n"].item()
        rows = [dict(split=split, layer="", head=-1, metric="acc", value=s["correct"].item() / nn_),
                dict(split=split, layer="", head=-1, metric="loss_class", value=s["loss_class"].item() / nn_)]
        rows += [dict(split=split, layer=t, head=-1, metric="class_acc", value=s[f"class_correct/{t}"].item() / nn_)
                 for t in self.net.class_heads]
        return rows

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "version": CKPT_VERSION, "epoch": self.epoch, "finished": self.finished, "config": self.cfg.to_flat(),
            "trial_id": self.trial_id, "sweep": self.sweep,   # a resumed run keeps its identity
            "net": self.net.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "tables": {t: v.cpu() for t, v in self.tables.items()},
        }

    def save_checkpoint(self, tag: str = "last") -> Path | None:
        if self.rank != 0 or not self.out_dir:
            return None
        d = self.out_dir / "checkpoints"
        d.mkdir(parents=True, exist_ok=True)
        path, tmp = d / f"{tag}.pt", d / f".{tag}.pt.tmp-{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)   # atomic: a crash leaves the previous checkpoint intact
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        state = read_checkpoint(path, self.device)
        mine, theirs = self.cfg.to_flat(), state["config"]
        theirs = {**Config().to_flat(), **theirs}   # keys added since the checkpoint was made: their defaults
        diff = sorted(k for k in set(mine) | set(theirs) if k not in RESUMABLE_KEYS and mine.get(k) != theirs.get(k))
        if diff:
            shown = ", ".join(f"{k} (checkpoint {theirs.get(k)!r}, config {mine.get(k)!r})" for k in diff[:4])
            why = ("; the LR schedule spans run.epochs, so a run cannot be extended or shortened"
                   if "run.epochs" in diff else "")
            raise CheckpointError(f"{path}: checkpoint was made with a different config: {shown}{why}; "
                                  "use another --out folder to start a new run")
        self._adopt_identity(state)
        try:
            self.net.load_state_dict(state["net"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: model/heads do not match the checkpoint ({str(e).splitlines()[0]})") from None
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([r.cpu() for r in rng["cuda"]])
        self.tables = {t: v.to(self.device) for t, v in state.get("tables", {}).items()}
        self.epoch = state["epoch"]
        self.finished = bool(state.get("finished", False))   # e.g. stopped at run.stop_train_acc
        if self.writer:
            self.writer.truncate_after(self.epoch)   # rows of an epoch the checkpoint does not hold are redone

    def _adopt_identity(self, state: dict) -> None:
        """A resumed run keeps the trial id and sweep its checkpoint was made under, whatever its
        folder is called now (a moved or renamed folder must not start a second trial)."""
        tid, sweep = state.get("trial_id"), state.get("sweep")
        if tid is None or (tid, sweep) == (self.trial_id, self.sweep):
            return
        self.trial_id, self.sweep = tid, sweep if sweep is not None else self.sweep
        if self.writer:
            self.writer = ResultWriter(self.results_root, self.sweep, self.trial_id)


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


def rlp_head_settings(cfg: Config) -> tuple[float, float]:
    """(lr, weight decay) of the RLP heads: rlp.lr / rlp.weight_decay, defaulting to optim's."""
    lr = cfg.rlp.lr or cfg.optim.lr
    wd = cfg.optim.weight_decay if cfg.rlp.weight_decay < 0 else cfg.rlp.weight_decay
    return lr, wd


def make_optimizer(cfg: Config, params, heads: list | None = None) -> torch.optim.Optimizer:
    """The run's optimizer. `heads`: the RLP-head parameters among `params`; they get a param group of
    their own when rlp.lr / rlp.weight_decay differ from optim's. Otherwise one group, exactly as
    before these keys existed (same checkpoints, bit-identical results)."""
    o = cfg.optim
    groups = params
    lr, wd = rlp_head_settings(cfg)
    if heads and (lr, wd) != (o.lr, o.weight_decay):
        ids = {id(p) for p in heads}
        groups = [{"params": [p for p in params if id(p) not in ids]},
                  {"params": list(heads), "lr": lr, "weight_decay": wd}]
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)
