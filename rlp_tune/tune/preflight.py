"""A sweep's trials checked before Ray starts: the metric they report, the data sizes they meet.

    preflight(space, raw)             # both checks below; a one-line UserError or nothing
    check_metric(space, raw)          # SpaceError naming sweep.metric and the close matches, or nothing
    reported_metrics(cfg, raw)        # {"epoch", "train.acc", "val.acc", "train.rand_acc.penultimate", ...}
    check_data(space, raw)            # checks.check_run on the first and the last corner trial's data

The names are not a list kept here: they are the keys of `EpochRecord.flat()` (what a trial reports
to Tune) from one epoch of the real Trainer on a few stand-in samples of the dataset's shape, on
CPU, with no output folder. So a metric the trainer gains or loses is known here at once. The
trial checked is the base config with every searched key at its first corner (low bound / first
choice); with probes on, they run in that epoch (probe.k capped to the stand-in set).
"""
from __future__ import annotations

import difflib

import torch

from ..config import Config
from ..errors import UserError
from .space import SearchSpace, SpaceError, trial_config

STAND_IN = 8   # training samples of the dry run (one step)


def _stand_in(cfg: Config, raw):
    """A DataBundle with the splits, input shape and class count a trial of `cfg` has, STAND_IN samples each."""
    from ..data import DataBundle
    if raw.streamed is not None:
        in_shape, x = raw.streamed.in_shape, None
    else:
        in_shape, x = tuple(raw.x_train.shape[1:]), raw.x_train[:STAND_IN]
    if x is None or len(x) < STAND_IN:
        x = torch.zeros((STAND_IN, *in_shape), dtype=raw.x_train.dtype if raw.streamed is None else torch.uint8)
    n_cls = max(raw.num_classes, cfg.data.random_classes)
    y = torch.arange(STAND_IN) % raw.num_classes
    splits = ["train", "test"] + (["val"] if cfg.data.val_fraction > 0 else [])
    as_t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return DataBundle(cfg.data.name, {s: x.clone() for s in splits}, {s: y.clone() for s in splits}, y.clone(),
                      n_cls, in_shape, as_t(raw.mean), as_t(raw.std))


def reported_metrics(cfg: Config, raw=None) -> set[str]:
    """The metric names a trial of `cfg` reports each epoch (probe metrics included when probes run)."""
    from ..data import load_raw
    from ..train import Trainer
    raw = raw if raw is not None else load_raw(cfg)
    small = cfg.replace(**{"run.epochs": 1, "run.device": "cpu", "run.compile": False, "run.batch_size": STAND_IN,
                           "run.eval_batch_size": STAND_IN, "probe.every": 1 if cfg.probe.every else 0,
                           "probe.k": min(cfg.probe.k, STAND_IN), "run.stop_train_acc": 0.0,
                           "data.augment_sets": min(cfg.data.augment_sets, 2)})
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(small, data=_stand_in(small, raw))
        return set(trainer.run_epoch(1).flat())
    finally:
        torch.set_num_threads(threads)


def _corner(space: SearchSpace, i: int) -> Config:
    """The trial config with every searched key at corner i (0: low / first choice, -1: high / last)."""
    return trial_config(space, {d.key: d.corners()[i] for d in space.search}, space.seeds[0])


def preflight(space: SearchSpace, raw=None) -> None:
    check_data(space, raw)
    check_metric(space, raw)


def check_data(space: SearchSpace, raw=None) -> None:
    """Validation split not empty, probe.k and probe names (checks.check_run without the memory part:
    the driver may not hold the trials' device) for the two corner trials' real data."""
    from ..checks import check_run
    from ..data import build_data
    for i in (0, -1):
        cfg = _corner(space, i)
        try:
            check_run(cfg, build_data(cfg, raw), device=None)
        except SpaceError:
            raise
        except UserError as e:
            raise SpaceError(f"{e} (a trial of the search space)") from None


def check_metric(space: SearchSpace, raw=None) -> None:
    names = reported_metrics(_corner(space, 0), raw)
    if space.metric in names:
        return
    close = difflib.get_close_matches(space.metric, sorted(names), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(sorted(n for n in names if n.count(".") == 1 and not n.startswith("train.")))
    raise SpaceError(f"sweep.metric: no trial reports {space.metric!r}{hint}; reported e.g. {shown}")
