"""A sweep's trials checked before Ray starts: the metric they report, the data sizes they meet.

    preflight(space, raw)             # both checks below; a one-line UserError or nothing
    check_metric(space, raw)          # SpaceError naming sweep.metric and the close matches, or nothing
    reported_metrics(cfg, raw)        # {"epoch", "train.acc", "val.acc", "train.rand_acc.penultimate", ...}
    reported_metrics(cfg, raw, first_epoch=True)   # only those in a trial's first report
    check_data(space, raw)            # checks.check_run on the first and the last corner trial's data

The names are not a list kept here: they are the keys of `EpochRecord.flat()` (what a trial reports
to Tune) from one epoch of the real Trainer on a few stand-in samples of the dataset's shape, on
CPU, with no output folder. So a metric the trainer gains or loses is known here at once. The
trial checked is the base config with every searched key at its first corner (low bound / first
choice). Metrics a trial measures only every k epochs are measured in that one epoch: with probes
on (probe.every) they run (probe.k capped to the stand-in set), with the fresh-head audit on
(rlp.audit_every) it runs for one head epoch. Only the stand-in's copy of the config changes.

Tune checks `sweep.metric` in every report a trial makes (Ray's strict metric checking raises at the
first report without it), so a metric measured only every k > 1 epochs is refused here, naming the
key that spaces it, instead of failing in Ray after the sweep started.
"""
from __future__ import annotations

import difflib

import torch

from ..config import Config
from ..errors import UserError
from .space import SearchSpace, SpaceError

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


def reported_metrics(cfg: Config, raw=None, *, first_epoch: bool = False) -> set[str]:
    """The metric names a trial of `cfg` can report (those measured every k epochs included: probes,
    the fresh-head audit); first_epoch: only the names in its first report (epoch 1)."""
    from ..data import load_raw
    from ..run.train import Trainer
    raw = raw if raw is not None else load_raw(cfg)
    # every k epochs in a trial: in the stand-in's one epoch too (first_epoch: the trial's own k)
    every = {"probe.every": cfg.probe.every, "rlp.audit_every": cfg.rlp.audit_every} if first_epoch else \
        {"probe.every": 1 if cfg.probe.every else 0, "rlp.audit_every": 1 if cfg.rlp.audit_every else 0}
    small = cfg.replace(**{"run.epochs": 1, "run.device": "cpu", "run.compile": False, "run.batch_size": STAND_IN,
                           "run.eval_batch_size": STAND_IN, **every,
                           "probe.k": min(cfg.probe.k, STAND_IN), "run.stop_train_acc": 0.0,
                           "rlp.audit_epochs": min(cfg.rlp.audit_epochs, 1),
                           "data.augment_sets": min(cfg.data.augment_sets, 2)})
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(small, data=_stand_in(small, raw))
        return set(trainer.run_epoch(1).flat())
    finally:
        torch.set_num_threads(threads)


def _corner(space: SearchSpace, i: int) -> Config:
    """The trial config with every searched key at corner i (0: low / first choice, -1: high / last)."""
    return space.trial_config({d.key: d.corners()[i] for d in space.search})


def preflight(space: SearchSpace, raw=None) -> None:
    check_data(space, raw)
    check_metric(space, raw)


def check_data(space: SearchSpace, raw=None) -> None:
    """Validation split not empty, probe.k and probe names (checks.check_run without the memory part:
    the driver may not hold the trials' device) for the two corner trials' real data."""
    from ..run.checks import check_run
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
    cfg = _corner(space, 0)
    names = reported_metrics(cfg, raw)
    if space.metric in names:
        if space.metric in reported_metrics(cfg, raw, first_epoch=True):
            return
        spaced = [f"{k} = {v}" for k, v in (("rlp.audit_every", cfg.rlp.audit_every),
                                            ("probe.every", cfg.probe.every)) if v > 1]
        raise SpaceError(f"sweep.metric: {space.metric!r} is reported only every few epochs ({', '.join(spaced)}) "
                         f"and Tune needs it in every report: set {spaced[0].split(' = ')[0]} = 1 or choose "
                         "another metric")
    close = difflib.get_close_matches(space.metric, sorted(names), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(sorted(n for n in names if n.count(".") == 1 and not n.startswith("train.")))
    raise SpaceError(f"sweep.metric: no trial reports {space.metric!r}{hint}; reported e.g. {shown}")
