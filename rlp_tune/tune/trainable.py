"""The one function trainable: a Tune trial config (flat dotted keys) → `Config` → the core `Trainer`.

workers_per_trial = 1: the trial trains in its own process. > 1: the trial runs a Ray Train
`TorchTrainer` (DDP: gloo on CPU, NCCL on GPU) with the same loop; rank 0's metrics and checkpoints
reach Tune through `TuneReportCallback`, and the trial's driver holds no CPU of its own.

Every epoch the trial writes its own Parquet rows under the sweep folder (so a driver crash loses
nothing the trial finished), then reports the epoch's metrics and its checkpoint to Tune. A trial
that is retried or resumed restores the newest of Tune's checkpoint and its own folder's.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..storage import is_remote
from .space import trial_config

MANIFEST = "checkpoint.json"    # a Tune checkpoint that names the trial folder's last.pt


@dataclass(frozen=True)
class SweepContext:
    """What a trial knows of its sweep. It reaches the trial through `tune.with_parameters` (made
    afresh by every driver, so a resumed sweep's trials get the resuming driver's), never through
    Tune's trial config, which holds config keys only."""
    sweep: str                       # the sweep's name (the Parquet `sweep` column)
    root: str                        # the sweep folder (local path or URI)
    seeds: tuple[int, ...]           # replicate seeds, chosen by Tune's `__trial_index__`
    workers: int = 1                 # Ray Train workers per trial (> 1: DDP)
    cpus: float = 1.0                # per worker
    gpus: float = 0.0                # per worker
    origin: dict = field(default_factory=dict)   # the driver's git commit and command line (prov.* columns)

    @property
    def train_storage(self) -> str:
        """Where Ray Train keeps a DDP trial's run state."""
        return f"{self.root.rstrip('/')}/train"     # ROOT is absolute (sweep.py) or a URI


def train_trial(config: dict[str, Any], sweep: SweepContext, raw=None) -> None:
    """Tune function trainable (`tune.with_parameters(train_trial, sweep=..., raw=...)`)."""
    from ray import tune
    cfg = trial_config(config, sweep.seeds)
    trial_id = tune.get_context().get_trial_id()
    from .asha import read_stops
    if trial_id in read_stops(sweep.root):   # the scheduler stopped it (a restore brought it back)
        return
    out = trial_dir(sweep, trial_id)
    _restore_from_tune(tune.get_checkpoint(), out)
    if sweep.workers == 1:
        _loop(cfg, sweep, trial_id, out, raw, report=tune.report, checkpoint_cls=tune.Checkpoint, rank=0)
        return
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback
    use_gpu = sweep.gpus > 0
    res = {"CPU": sweep.cpus, **({"GPU": sweep.gpus} if use_gpu else {})}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg, "sweep": sweep, "trial_id": trial_id, "out": str(out), "raw": raw},
        scaling_config=ScalingConfig(num_workers=sweep.workers, use_gpu=use_gpu, resources_per_worker=res),
        # a stable name per trial lets Ray Train find its own run again on retry / resume
        run_config=RunConfig(name=f"train-{trial_id}", storage_path=sweep.train_storage,
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _worker_loop(loop_config: dict) -> None:
    """Ray Train worker: torch.distributed is initialized by Ray Train; rank 0 writes and checkpoints."""
    import ray.train
    cfg, sweep = loop_config["cfg"], loop_config["sweep"]
    rank = ray.train.get_context().get_world_rank()
    out = Path(loop_config["out"])
    if rank == 0:
        _restore_from_tune(ray.train.get_checkpoint(), out)
    torch.distributed.barrier()
    _loop(cfg, sweep, loop_config["trial_id"], out, loop_config["raw"], report=ray.train.report,
          checkpoint_cls=ray.train.Checkpoint, rank=rank)


def _loop(cfg, sweep: SweepContext, trial_id, out: Path, raw, report, checkpoint_cls, rank: int) -> None:
    import ray

    from ..data import build_data
    from ..results import ResultWriter
    from ..train import Trainer
    if cfg.run.device == "auto" and sweep.gpus == 0:
        cfg = cfg.replace(**{"run.device": "cpu"})
    share = max(1, int(sweep.cpus))   # a trial uses the CPUs Ray gave it, not every core of the node
    if not cfg.run.threads or cfg.run.threads > share:
        cfg = cfg.replace(**{"run.threads": share})
    # the trial's rows go into the sweep folder (the trial folder holds checkpoints only); the
    # Trainer writes through it on rank 0 and takes only its identity on the other ranks
    writer = ResultWriter(sweep.root, sweep.sweep, trial_id,
                          extra={"node": ray.get_runtime_context().get_node_id(),
                                 # the GPUs Ray gave this trial (its CUDA_VISIBLE_DEVICES): "" without
                                 "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()), **sweep.origin})
    trainer = Trainer(cfg, out_dir=out, data=build_data(cfg, raw), writer=writer)
    fit = trainer.fit()
    try:
        for rec in fit:
            metrics = rec.flat()
            ckpt = None
            if rank == 0:
                ckpt = checkpoint_cls.from_directory(str(_tune_ckpt_dir(out, rec.epoch, shared=not is_remote(sweep.root))))
            try:
                report(metrics, checkpoint=ckpt)
            except BaseException:
                # Tune ends the trial inside report (sys.exit): a scheduler stop or an interrupt. The
                # driver records which (scheduler-stops.csv, the row's status); the row stays RUNNING here
                fit.close()
                raise
    finally:   # a trial stopped inside report() frees its folder's lock at once (reused actors live on)
        trainer.close()


def _tune_ckpt_dir(out: Path, epoch: int, shared: bool) -> Path:
    """The folder Tune persists as this epoch's checkpoint.

    Shared storage (the sweep folder is a local or network path): the trial folder's own atomic
    `last.pt` already lives there, so Tune gets a manifest naming it and its epoch — persisting it
    costs a few bytes per epoch instead of a copy of the model. Object stores (s3://...): the trial
    folder is node-local, so Tune gets `last.pt` itself (a hard link, no extra serialization)."""
    d = out / "tune_checkpoint"
    d.mkdir(exist_ok=True)
    for f in d.iterdir():
        f.unlink()
    if shared:
        (d / MANIFEST).write_text(json.dumps({"epoch": epoch, "path": str((out / "checkpoints" / "last.pt").resolve())}))
        return d
    try:
        os.link(out / "checkpoints" / "last.pt", d / "last.pt")
    except OSError:  # filesystems without hard links
        shutil.copyfile(out / "checkpoints" / "last.pt", d / "last.pt")
    return d


def trial_dir(sweep: SweepContext, trial_id: str) -> Path:
    """Where a trial keeps its checkpoints: under the sweep folder when that is a local/shared path,
    else (object-store URIs) a node-local folder, restored from Tune's checkpoint on retry."""
    if is_remote(sweep.root):
        return Path(tempfile.gettempdir()) / "rlp_tune" / sweep.sweep / trial_id
    return Path(sweep.root) / "trials" / trial_id


def _restore_from_tune(checkpoint, out: Path) -> None:
    """Take Tune's checkpoint if it is newer than the trial folder's own (or the folder has none)."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as d:
        src = Path(d) / "last.pt"
        if (Path(d) / MANIFEST).exists():   # shared storage: the trial folder's own file is the checkpoint
            src = Path(json.loads((Path(d) / MANIFEST).read_text())["path"])
        if not src.exists() or src.resolve() == (out / "checkpoints" / "last.pt").resolve():
            return
        dst = out / "checkpoints" / "last.pt"
        if dst.exists() and _epoch_of(dst) >= _epoch_of(src):
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".restore-tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def _epoch_of(path: Path) -> int:
    """The checkpoint's epoch, read as the trainer reads it (weights only: a crafted file runs no code)."""
    from ..checkpoint import CheckpointError, read_checkpoint
    try:
        return int(read_checkpoint(path)["epoch"])
    except CheckpointError:   # an unreadable checkpoint loses to a readable one
        return -1
