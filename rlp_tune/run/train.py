"""One Trainer for a single process and for DDP: `fit()` yields one `EpochRecord` per epoch.

    from rlp_tune.config import load_config
    from rlp_tune.run.train import Trainer
    trainer = Trainer(load_config("configs/digits_mlp.toml"), out_dir="runs/x")
    for rec in trainer.fit():                      # resumes by itself if runs/x holds a checkpoint
        print(rec.epoch, rec.get("test", "acc"), rec.get("train", "rand_acc", layer="penultimate"))

With `out_dir`, every epoch first writes its Parquet rows (results.py), then an atomic
checkpoint (model, heads, optimizer, schedule, every RNG state), then yields. A crash at any point
resumes without a gap or a duplicate row. Under torch.distributed (initialized by the caller:
torchrun, Ray Train, tests) each rank trains on its share of every global batch; rank 0 writes.
Nothing here knows about Ray. The net is net.py's, the optimizer and schedule optim.py's, reading a
checkpoint checkpoint.py's; what stays here (~420 lines) is one class whose loop, evaluation and
checkpoint state share the Trainer's fields.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .audit import audit_rows, rand_eval_rows
from ..checkpoint import CKPT_VERSION, WEIGHTS_FORMAT, CheckpointError, check_resumable, read_checkpoint
from .checks import check_run
from ..config import Config, ConfigError
from ..data import DataBundle, build_data
from ..data.augment import FixedAugmentSets, make_augment, mixup
from ..data.labels import derive_seed, random_label_table
from ..names import default_trial_id
from ..net import build_net, random_label_count, resolve_device, resolve_threads
from ..optim import lr_lambda, make_optimizer
from ..provenance import provenance
from ..results import ResultWriter
from .rundir import RunLock

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


class Trainer:
    def __init__(self, cfg: Config, out_dir: str | Path | None = None, data: DataBundle | None = None,
                 writer: ResultWriter | None = None, progress: bool = False):
        """out_dir: checkpoints, and the Parquet rows unless a `writer` is given (a sweep's trial:
        the writer names the sweep folder and the trial). Rank 0 writes; other ranks ignore `writer`."""
        self.cfg = cfg
        self._place_process()                  # rank, world size, threads, device
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress and self.rank == 0
        self._load_data(data)
        self._build_net()
        self._build_optimizer()
        self._build_augmentation()
        self._reset_state()
        self._open_results(writer)
        self._resume()
        if getattr(self, "lock", None) is not None and not (self.finished or self.epoch >= self.cfg.run.epochs):
            self.lock.write_pid()

    def _place_process(self) -> None:
        """This process's rank and world size (torch.distributed, if initialized), threads and device."""
        cfg = self.cfg
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if cfg.run.batch_size < self.world:
            raise ConfigError(f"run.batch_size: {cfg.run.batch_size} is smaller than the world size {self.world}")
        self.threads = resolve_threads(cfg.run.threads)   # 0: the usable cores less the busy ones
        self.device = resolve_device(cfg.run.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank % torch.cuda.device_count())))

    def _load_data(self, data: DataBundle | None) -> None:
        data = data or build_data(self.cfg)
        check_run(self.cfg, data, self.device)      # sizes that depend on the data, before building anything
        self.data = data.to(self.device)
        self.seed = self.cfg.run.seed

    def _build_net(self) -> None:
        """The net (same init on every rank), its DDP wrapper and the module the training step calls."""
        cfg = self.cfg
        torch.manual_seed(self.seed)  # same init on every rank
        self.n = random_label_count(cfg, self.data.m)
        net, self.rlp_taps, self.reg_taps = build_net(cfg, self.data)
        self.net = net.to(self.device)
        if cfg.model.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # ddp_net: DDP's wrapper (averages gradients over ranks), or the net itself in one process
        self.ddp_net = (nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device]
                                                            if self.device.type == "cuda" else None)
                        if self.world > 1 else self.net)
        self.train_net = torch.compile(self.ddp_net) if cfg.run.compile else self.ddp_net   # what a step calls

    def _build_optimizer(self) -> None:
        self.steps_per_epoch = -(-self.data.m // self.cfg.run.batch_size)
        self.opt = make_optimizer(self.cfg, self.net.parameters(), heads=list(self.net.heads.parameters()))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(self.cfg, self.steps_per_epoch))

    def _build_augmentation(self) -> None:
        d = self.cfg.data
        self.augment = make_augment(d.augment, self.data.in_shape, mean=self.data.mean, std=self.data.std,
                                    strength=d.augment_strength)
        self.aug_sets = FixedAugmentSets(self.data.m, d.augment_sets, derive_seed(self.seed, "views")) \
            if d.augment_sets else None
        # independent view labels: a noisy sample's label is drawn per (sample, view), 003's setting
        self.view_labels = FixedAugmentSets(self.data.m, d.augment_sets, derive_seed(self.seed, "view-labels")) \
            if d.augment_sets and d.augment_labels == "independent" else None
        self.noisy = (self.data.y["train"] != self.data.y_clean) if d.label_noise < 1 else \
            torch.ones_like(self.data.y_clean, dtype=torch.bool)

    def _reset_state(self) -> None:
        """Training state before the first epoch (a checkpoint replaces it in _resume)."""
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16,
                             enabled=self.cfg.run.precision == "bf16")
        self.epoch, self.finished = 0, False
        self.eval_idx: torch.Tensor | None = None   # rand_acc_eval's fixed sample (drawn on first use)
        self.tables: dict[str, torch.Tensor] = {}
        self.t0 = time.time()

    def _open_results(self, writer: ResultWriter | None) -> None:
        """The results writer (rank 0; a single run's writes into out_dir), the run's identity, and
        the run folder's lock."""
        if writer is None and self.out_dir:
            writer = ResultWriter(self.out_dir, "", self.cfg.run.name or default_trial_id(self.out_dir))
        self.writer = writer if self.rank == 0 else None
        self.trial_id = writer.trial_id if writer else (self.cfg.run.name or "run")
        self.sweep = writer.sweep if writer else ""
        self.trial_extra = {"world_size": self.world, "device": str(self.device),
                            **(provenance(self.device) if self.rank == 0 else {})}
        # one process per run folder, from before the checkpoint is read until fit() ends
        # (its pid is written once the run is known to train: a finished run's folder stays untouched)
        self.lock = RunLock.acquire(self.out_dir, write_pid=False) if self.out_dir and self.rank == 0 else None
        if self.lock is not None:
            remove_partial_saves(self.out_dir / "checkpoints")

    def _resume(self) -> None:
        """Continue from OUT/checkpoints/last.pt when there is one (the lock is released on failure)."""
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
            if self.out_dir and not (self.out_dir / "checkpoints" / "model.pt").exists():
                self.save_weights()   # runs finished before model.pt existed
            return
        if self.writer and self.epoch == 0:
            self.writer.truncate_after(0)
        if self.writer:
            self.writer.write_trial(cfg.to_flat(), "RUNNING", self.epoch, self.trial_extra)
        if self.epoch == 0 and self.out_dir and cfg.run.keep_checkpoints == "all":
            self.save_checkpoint(tag="epoch_00000")
        if self.epoch == 0 and cfg.probe.every and self.writer:   # probes at initialization: the baseline
            self.writer.write_epoch(0, self.probe_rows())
        # Ctrl-C, or a consumer that stops early (Tune), leaves the row RUNNING: interrupted and
        # resumable. Only a sweep's driver knows of a scheduler stop (ResultWriter.mark_status).
        done = False
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
                if done:
                    self.save_weights()
            if self.writer:   # finished before the last yield: a consumer may stop at it (Tune, ASHA max_t)
                if done:
                    self.writer.compact()
                self.writer.write_trial(cfg.to_flat(), "TERMINATED" if done else "RUNNING", self.epoch,
                                        self.trial_extra)
            yield rec

    def run_epoch(self, epoch: int) -> EpochRecord:
        cfg, t_start = self.cfg, time.time()
        torch.manual_seed(derive_seed(self.seed, "torch", epoch, self.rank))  # dropout etc.: resumable
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "augment", epoch, self.rank))
        tables = self.label_tables(epoch)
        sums: dict[str, torch.Tensor] = {}
        n_seen = torch.zeros((), device=self.device)
        self.ddp_net.train()
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
                loss, stats = self.train_net(x, y, {t: tab[idx] for t, tab in tables.items()}, share, mix)
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
        if self.cfg.data.mixup_alpha > 0:
            x, _, weight, perm = mixup(x, None, self.cfg.data.mixup_alpha, gen)
            mix = (perm, weight)
        return x, y, mix

    def probe_rows(self) -> list[dict]:
        """k-NN / linear / MASC / NCM probes and invariance on the configured taps (rank 0)."""
        from ..probes.layers import probe_rows
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
        n_samples = s["n"].item()
        rows = [dict(split=split, layer="", head=-1, metric="acc", value=s["correct"].item() / n_samples),
                dict(split=split, layer="", head=-1, metric="loss_class", value=s["loss_class"].item() / n_samples)]
        rows += [dict(split=split, layer=t, head=-1, metric="class_acc", value=s[f"class_correct/{t}"].item() / n_samples)
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
            "net_meta": self.net_meta(),   # rlp_tune.load_run rebuilds the net from last.pt without the data
        }

    def weights(self) -> dict:
        """The weights-only file's content: plain tensors, numbers, strings and lists, so that
        `torch.load(path, weights_only=True)` reads it; enough to rebuild the net without the data."""
        return {"format": WEIGHTS_FORMAT, "version": CKPT_VERSION, "epoch": self.epoch, "config": self.cfg.to_flat(),
                "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, **self.net_meta()}

    def net_meta(self) -> dict:
        """What rebuilding the net needs besides the config: input shape, classes, training-set size m
        (net.DataShape), random labels n,
        and the input normalization (model input = (x - mean) / std, data.prepare)."""
        d = self.data
        return {"in_shape": list(d.in_shape), "num_classes": d.num_classes, "m": d.m, "n": self.n,
                "mean": None if d.mean is None else d.mean.cpu(), "std": None if d.std is None else d.std.cpu()}

    def save_weights(self) -> Path | None:
        """OUT/checkpoints/model.pt (atomic): the trained net and its flat config, for rlp_tune.load_run."""
        if self.rank != 0 or not self.out_dir:
            return None
        path = self.out_dir / "checkpoints" / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(self.weights(), path)
        return path

    def save_checkpoint(self, tag: str = "last") -> Path | None:
        if self.rank != 0 or not self.out_dir:
            return None
        d = self.out_dir / "checkpoints"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{tag}.pt"
        atomic_save(self.state_dict(), path)   # a crash leaves the previous checkpoint intact
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        path = Path(path)
        state = read_checkpoint(path, self.device)
        check_resumable(path, self.cfg, state)
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
            self.writer = self.writer.for_trial(self.sweep, self.trial_id)


def atomic_save(obj, path: Path) -> None:
    """torch.save to PATH through `.<name>.tmp-<pid>` beside it and a rename. Written through a file
    object, so a full disk is an OSError (ENOSPC), not torch's RuntimeError; a failed write removes
    its temporary file (one left by a kill is removed by the next run: `remove_partial_saves`)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        err = e.__context__ if isinstance(e, RuntimeError) else e   # torch's writer fails again on close
        if isinstance(err, OSError) and err.errno:   # the disk's error, naming the file
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from None
        raise


def remove_partial_saves(folder: Path) -> None:
    """Remove `.<name>.tmp-<pid>` files a killed run left in FOLDER (called under the run's lock:
    no other process is writing there)."""
    for f in folder.glob(".*.tmp-*") if folder.is_dir() else ():
        f.unlink(missing_ok=True)
