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
from pathlib import Path
from typing import Any

import torch

META = "__rlp__"        # trial-config key holding sweep metadata (not a Config key)
REPLICATE = "__trial_index__"  # set by Tune's Repeater: which replicate seed this trial runs
MANIFEST = "checkpoint.json"    # a Tune checkpoint that names the trial folder's last.pt


def trial_cfg(config: dict[str, Any]):
    from ..config import Config
    meta = config[META]
    flat = {k: v for k, v in config.items() if k not in (META, REPLICATE)}
    flat["run.seed"] = meta["seeds"][int(config.get(REPLICATE, 0)) % len(meta["seeds"])]
    return Config.from_flat(flat), meta


def train_trial(config: dict[str, Any], raw=None) -> None:
    """Tune function trainable."""
    from ray import tune
    cfg, meta = trial_cfg(config)
    trial_id = tune.get_context().get_trial_id()
    from .asha import read_stops
    if trial_id in read_stops(meta["root"]):   # the scheduler stopped it (a restore brought it back)
        return
    out = trial_dir(meta, trial_id)
    _restore_from_tune(tune.get_checkpoint(), out)
    if meta["workers"] == 1:
        _loop(cfg, meta, trial_id, out, raw, report=tune.report, checkpoint_cls=tune.Checkpoint, rank=0)
        return
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback
    use_gpu = meta["gpus"] > 0
    res = {"CPU": meta["cpus"], **({"GPU": meta["gpus"]} if use_gpu else {})}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": config, "trial_id": trial_id, "out": str(out), "raw": raw},
        scaling_config=ScalingConfig(num_workers=meta["workers"], use_gpu=use_gpu, resources_per_worker=res),
        # a stable name per trial lets Ray Train find its own run again on retry / resume
        run_config=RunConfig(name=f"train-{trial_id}", storage_path=meta["train_storage"],
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _worker_loop(loop_config: dict) -> None:
    """Ray Train worker: torch.distributed is initialized by Ray Train; rank 0 writes and checkpoints."""
    import ray.train
    cfg, meta = trial_cfg(loop_config["config"])
    rank = ray.train.get_context().get_world_rank()
    out = Path(loop_config["out"])
    if rank == 0:
        _restore_from_tune(ray.train.get_checkpoint(), out)
    torch.distributed.barrier()
    _loop(cfg, meta, loop_config["trial_id"], out, loop_config["raw"], report=ray.train.report,
          checkpoint_cls=ray.train.Checkpoint, rank=rank)


def _loop(cfg, meta, trial_id, out: Path, raw, report, checkpoint_cls, rank: int) -> None:
    from ..data import build_data
    from ..train import Trainer
    if cfg.run.device == "auto" and meta["gpus"] == 0:
        cfg = cfg.replace(**{"run.device": "cpu"})
    if not cfg.run.threads:  # a trial uses the CPUs Ray gave it, not every core of the node
        cfg = cfg.replace(**{"run.threads": max(1, int(meta["cpus"]))})
    import ray
    trainer = Trainer(cfg, out_dir=out, data=build_data(cfg, raw), sweep=meta["sweep"], trial_id=trial_id,
                      results_root=meta["root"], trial_extra={"node": ray.get_runtime_context().get_node_id(),
                                                              **meta.get("origin", {})})
    fit = trainer.fit()
    try:
        for rec in fit:
            metrics = rec.flat()
            ckpt = None
            if rank == 0:
                ckpt = checkpoint_cls.from_directory(str(_tune_ckpt_dir(out, rec.epoch, shared="://" not in meta["root"])))
            try:
                report(metrics, checkpoint=ckpt)
            except BaseException:
                # Tune ends the trial inside report (sys.exit): a scheduler stop or an interrupt. The
                # driver records which (scheduler-stops.csv); the trial's row stays RUNNING, not STOPPED
                trainer.writer = None
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


def trial_dir(meta: dict, trial_id: str) -> Path:
    """Where a trial keeps its checkpoints: under the sweep folder when that is a local/shared path,
    else (object-store URIs) a node-local folder, restored from Tune's checkpoint on retry."""
    root = meta["root"]
    if "://" in root:
        return Path(tempfile.gettempdir()) / "rlp_tune" / meta["sweep"] / trial_id
    return Path(root) / "trials" / trial_id


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
