"""Experiment trackers: every epoch's metrics to TensorBoard, W&B and/or MLflow (`[logging]`, `--log`).

    rlp-tune train configs/digits_mlp.toml --log tensorboard,mlflow     # = --set logging.trackers=...
    rlp-tune sweep search_spaces/demo.toml --log wandb

    sinks = open_trackers(cfg, out_dir, name="lam10")    # a single run (what `rlp-tune train` does)
    for rec in trainer.fit():
        sinks.log(rec.epoch, rec.flat())                  # {"train.acc": .., "test.acc": .., ...}
    sinks.close()
    callbacks = tune_callbacks(cfg.logging, root)         # a sweep: Ray's own logger callbacks

Metric names are the dotted names of `EpochRecord.flat()` (and of Tune's results); the step is the
epoch. Where files go (default OUT/tracking, or `logging.dir`): TensorBoard event files in
`tensorboard/`, W&B runs in `wandb/` (offline mode: `wandb sync` them later), MLflow a local SQLite
store `mlflow.db` (`mlflow ui --backend-store-uri sqlite:///OUT/tracking/mlflow.db`) unless
`logging.mlflow_uri` names another store or a server. A resumed run continues the same W&B run (its
id is derived from the output folder) and the same MLflow run (its id is kept in `mlflow_run_id`).
The packages are optional (`pip install 'rlp_tune[track]'`) and imported only when asked for; a
missing one is a one-line error before training starts (`check_available`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from pathlib import Path

from ..config import Config, Logging
from ..errors import UserError

# tracker → the module it needs, for a single run and for a sweep (Ray's TensorBoard callback uses tensorboardX)
MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb", "wandb"),
           "mlflow": ("mlflow", "mlflow")}


class TrackerError(UserError, ImportError):
    """A requested tracker's package is not installed."""


def check_available(trackers, sweep: bool = False) -> None:
    """Raise TrackerError naming the first requested tracker whose package is missing."""
    for name in trackers:
        module = MODULES[name][1 if sweep else 0]
        if importlib.util.find_spec(module) is None:
            raise TrackerError(f"logging.trackers: {name} needs the Python package {module!r}, which is not "
                               f"installed (pip install {module}, or pip install 'rlp_tune[track]')")


def tracking_dir(lcfg: Logging, out: str | Path) -> Path:
    return Path(lcfg.dir) if lcfg.dir else Path(out) / "tracking"


def mlflow_uri(lcfg: Logging, out: str | Path) -> str:
    # MLflow 3 refuses its old file store (mlruns/) unless told otherwise: a SQLite file is its local store
    if lcfg.mlflow_uri:
        return lcfg.mlflow_uri
    d = tracking_dir(lcfg, out).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


class TensorBoardSink:
    def __init__(self, logdir: Path, config_toml: str):
        from torch.utils.tensorboard import SummaryWriter   # needs the tensorboard package
        self.w = SummaryWriter(log_dir=str(logdir))
        self.w.add_text("config", "```\n" + config_toml + "\n```", 0)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.w.add_scalar(k, v, step)
        self.w.flush()

    def close(self, status: str) -> None:
        self.w.close()


class WandbSink:
    def __init__(self, lcfg: Logging, logdir: Path, name: str, flat: dict, run_id: str):
        import wandb
        logdir.mkdir(parents=True, exist_ok=True)
        mode = {} if lcfg.wandb_mode == "auto" else {"mode": lcfg.wandb_mode}
        self.run = wandb.init(project=lcfg.project, name=name, id=run_id, resume="allow", dir=str(logdir),
                              config=flat, reinit="create_new", **mode)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)


class MLflowSink:
    def __init__(self, lcfg: Logging, out: Path, logdir: Path, name: str, flat: dict):
        from mlflow import MlflowClient
        self.client = MlflowClient(tracking_uri=mlflow_uri(lcfg, out))
        exp = self.client.get_experiment_by_name(lcfg.project)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(lcfg.project)
        id_file = logdir / "mlflow_run_id"    # a resumed run logs into the same MLflow run
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if run_id and not self._exists(run_id):
            run_id = ""
        if not run_id:
            run_id = self.client.create_run(exp_id, run_name=name, tags={"rlp_tune.out": str(out)}).info.run_id
            from mlflow.entities import Param
            params = [Param(k, ",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in flat.items()]
            for i in range(0, len(params), 100):   # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i:i + 100])
            logdir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:  # noqa: BLE001 - MlflowException for an unknown id (e.g. another tracking URI)
            return False

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


class Trackers:
    """The chosen sinks; `log` sends one epoch to each, `close` ends them (FINISHED / KILLED / FAILED)."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def log(self, step: int, metrics: dict[str, float]) -> None:
        metrics = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        for s in self.sinks:
            s.log(step, metrics)

    def close(self, status: str = "FINISHED") -> None:
        for s in self.sinks:
            s.close(status)
        self.sinks = []


def open_trackers(cfg: Config, out: str | Path, name: str) -> Trackers:
    """The sinks of `cfg.logging.trackers` for a single run writing to OUT (empty when none)."""
    from ..config import to_toml
    lcfg, out = cfg.logging, Path(out)
    check_available(lcfg.trackers)
    d = tracking_dir(lcfg, out)
    flat = cfg.to_flat()
    sinks = []
    for t in lcfg.trackers:
        try:
            if t == "tensorboard":
                sinks.append(TensorBoardSink(d / "tensorboard", to_toml(cfg)))
            elif t == "wandb":
                run_id = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]   # stable: a resume continues it
                sinks.append(WandbSink(lcfg, d, name, flat, run_id))
            elif t == "mlflow":
                sinks.append(MLflowSink(lcfg, out, d, name, flat))
        except Exception as e:  # noqa: BLE001 - no login, unreachable server, ...: one line, before any epoch
            Trackers(sinks).close("KILLED")
            hint = {"wandb": "; without a W&B login use logging.wandb_mode=offline (or WANDB_MODE=offline)",
                    "mlflow": f" (tracking URI {mlflow_uri(lcfg, out)})"}.get(t, "")
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise TrackerError(f"logging.trackers: {t} could not start: {type(e).__name__}: {msg}{hint}") from None
    return Trackers(sinks)


def tune_callbacks(lcfg: Logging, root: str, name: str) -> list:
    """Ray Tune logger callbacks for a sweep in ROOT: TensorBoard event files in each Tune trial folder,
    one W&B run per trial (group = the sweep name), one MLflow run per trial (experiment logging.project)."""
    check_available(lcfg.trackers, sweep=True)
    out = []
    for t in lcfg.trackers:
        if t == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback
            out.append(TBXLoggerCallback())
        elif t == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback
            mode = {} if lcfg.wandb_mode == "auto" else {"mode": lcfg.wandb_mode}
            if lcfg.wandb_mode == "offline":   # Ray asks for an API key unless the env says offline
                os.environ["WANDB_MODE"] = "offline"
            d = tracking_dir(lcfg, root)
            d.mkdir(parents=True, exist_ok=True)
            out.append(WandbLoggerCallback(project=lcfg.project, group=name, dir=str(d.resolve()), **mode))
        elif t == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback
            out.append(MLflowLoggerCallback(tracking_uri=mlflow_uri(lcfg, root), experiment_name=lcfg.project,
                                            tags={"rlp_tune.sweep": name}, save_artifact=False))
    return out
