"""The one function trainable: a Tune trial config (flat dotted keys) → `Config` → the core `Trainer`.

workers_per_trial = 1: the trial trains in its own process. > 1: the trial runs a Ray Train
`TorchTrainer` (DDP: gloo on CPU, NCCL on GPU) with the same loop; rank 0's metrics and checkpoints
reach Tune through `TuneReportCallback`, and the trial's driver holds no CPU of its own.

Every epoch the trial writes its own Parquet rows and its checkpoint under the sweep folder (so a
driver crash loses nothing the trial finished), then reports the epoch's metrics to Tune. The trial's
id is the sweep's (`_trial` in its config, tune/searcher.py), the same in every driver session, so a
trial that is retried or resumed continues from ROOT/trials/<id>/checkpoints/last.pt. On an object
store the trial trains in a node-local folder and puts each epoch's `last.pt` there (one PUT, atomic),
taking it back when it starts on any node. Tune keeps no checkpoint of its own.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import storage
from ..storage import is_remote
from .space import TRIAL, trial_config


@dataclass(frozen=True)
class SweepContext:
    """What a trial knows of its sweep. It reaches the trial through `tune.with_parameters` (made
    afresh by every driver, so a resumed sweep's trials get the resuming driver's), never through
    Tune's trial config, which holds config keys only."""
    sweep: str                       # the sweep's name (the Parquet `sweep` column)
    root: str                        # the sweep folder (local path or URI)
    seeds: tuple[int, ...]           # replicate seeds, chosen by the trial config's `_replicate`
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
    trial_id = config.get(TRIAL) or tune.get_context().get_trial_id()
    out = trial_dir(sweep, trial_id)
    fetch_checkpoint(sweep, trial_id, out)
    if sweep.workers == 1:
        _loop(cfg, sweep, trial_id, out, raw, report=tune.report, rank=0)
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
        fetch_checkpoint(sweep, loop_config["trial_id"], out)
    torch.distributed.barrier()
    _loop(cfg, sweep, loop_config["trial_id"], out, loop_config["raw"], report=ray.train.report, rank=rank)


def _loop(cfg, sweep: SweepContext, trial_id, out: Path, raw, report, rank: int) -> None:
    import ray

    from ..data import build_data
    from ..results import ResultWriter
    from ..run.train import Trainer
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
            if rank == 0:
                put_checkpoint(sweep, trial_id, out)
            try:
                report(rec.flat())
            except BaseException:
                # Tune ends the trial inside report (sys.exit): a scheduler stop or an interrupt. The
                # driver records which (the ledger); the row stays RUNNING here
                fit.close()
                raise
        if rank == 0:
            put_checkpoint(sweep, trial_id, out, "model.pt")
    finally:   # a trial stopped inside report() frees its folder's lock at once (reused actors live on)
        trainer.close()


def trial_dir(sweep: SweepContext, trial_id: str) -> Path:
    """Where a trial keeps its checkpoints: under the sweep folder when that is a local/shared path,
    else (object-store URIs) a node-local folder, filled from the store when the trial starts
    (fetch_checkpoint) and put back every epoch (put_checkpoint)."""
    if is_remote(sweep.root):
        return Path(tempfile.gettempdir()) / "rlp_tune" / sweep.sweep / trial_id
    return Path(sweep.root) / "trials" / trial_id


def _stored(trial_id: str, name: str = "last.pt") -> str:
    return f"trials/{trial_id}/checkpoints/{name}"


def put_checkpoint(sweep: SweepContext, trial_id: str, out: Path, name: str = "last.pt") -> None:
    """Object store: this epoch's checkpoint to ROOT/trials/<id>/checkpoints/ (a folder is the place)."""
    src = out / "checkpoints" / name
    if is_remote(sweep.root) and src.exists():
        storage.write_bytes(sweep.root, _stored(trial_id, name), src.read_bytes())


def fetch_checkpoint(sweep: SweepContext, trial_id: str, out: Path) -> None:
    """Object store: take the stored checkpoint when it is newer than the node-local one (or there is
    none here): a retry or a resume on another node, another TMPDIR, continues from the last epoch."""
    if not is_remote(sweep.root):
        return
    data = storage.read_bytes(sweep.root, _stored(trial_id))
    if data is None:
        return
    dst = out / "checkpoints" / "last.pt"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".fetch-tmp")
    tmp.write_bytes(data)
    if dst.exists() and _epoch_of(dst) >= _epoch_of(tmp):
        tmp.unlink()
        return
    os.replace(tmp, dst)


def _epoch_of(path: Path) -> int:
    """The checkpoint's epoch, read as the trainer reads it (weights only: a crafted file runs no code)."""
    from ..checkpoint import CheckpointError, read_checkpoint
    try:
        return int(read_checkpoint(path)["epoch"])
    except CheckpointError:   # an unreadable checkpoint loses to a readable one
        return -1
