"""Registered datasets → one `DataBundle` the trainer slices by index.

    from rlp_tune.data import build_data, list_datasets
    bundle = build_data(cfg)                 # applies data.fraction, data.val_fraction, data.label_noise
    for x, y, idx in bundle.train_batches(epoch=0, batch_size=128, device=dev): ...

In-memory datasets are one tensor each (uint8 images or float32 vectors); a batch is an index
slice, moved to the device once (`bundle.to(device)`), and normalized on the device. Every batch
carries the global sample indices `idx` (positions in the final training set), which index the
random-label tables. Loaders read only local files; nothing is ever downloaded.

A dataset is one loader in the file of its family (shipped.py, cifar.py, idx.py, folders.py),
registered with what it yields: `@register_dataset(name, in_shape=..., dtype=..., num_classes=...)`
returns a `RawData` from a `Data` config section. Its entry (`DatasetSpec`) documents one sample's
shape and dtype at the defaults, the sample counts where fixed, and the `data.*` options it reads
beyond the common ones (fraction, noise, split, seed), e.g. `image_size` (the side of a square
image, default its in_shape's) or `synthetic_size`. Adding a dataset: its loader in a family file
(or a new file imported in data/__init__.py); tests/test_dataset_registry.py checks every entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch

from ..errors import UserError
from ..registry import Registry
from . import labels as L

DATASETS = Registry("dataset")
list_datasets = DATASETS.list
# the data.* keys every dataset goes through build_data with (a loader's own are on its entry)
COMMON_OPTIONS = ("name", "label_noise", "fraction", "val_fraction", "random_classes", "seed")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[..., "RawData"]           # (Data section) → RawData
    in_shape: tuple[int, ...]               # one sample at the defaults; with option image_size: (C, s, s)
    dtype: torch.dtype                      # uint8 images (0..255, normalized on the device) or float32
    num_classes: int | None                 # None: one per class folder found
    sizes: tuple[int, int] | None = None    # (train, test) samples where fixed; None: as the files hold
    options: tuple[str, ...] = ()           # data.* keys it reads beyond COMMON_OPTIONS ("root": needs files)

    def image_size(self, dcfg) -> int:
        """The image side: data.image_size, or the dataset's own (0 = native)."""
        return dcfg.image_size or self.in_shape[-1]

    def shape(self, dcfg) -> tuple[int, ...]:
        """One sample's shape under this Data section."""
        if "image_size" in self.options:
            return (self.in_shape[0], self.image_size(dcfg), self.image_size(dcfg))
        return self.in_shape


def register_dataset(name: str, *, in_shape: tuple[int, ...], dtype: torch.dtype, num_classes: int | None,
                     sizes: tuple[int, int] | None = None, options: tuple[str, ...] = ()) -> Callable:
    """Decorator: register a loader `fn(data_cfg) -> RawData` as dataset `name` (module doc)."""
    def deco(fn):
        DATASETS.add(name, DatasetSpec(name, fn, tuple(in_shape), dtype, num_classes, sizes, tuple(options)))
        return fn
    return deco


def dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; an unknown name is a one-line RegistryError listing close ones."""
    return DATASETS.get(name)


class DatasetError(UserError, ValueError):
    """A dataset folder is missing or incomplete; the message says what was expected where."""


@dataclass
class RawData:
    """What a loader returns: train and test splits, CPU tensors."""
    x_train: torch.Tensor            # (m, *in_shape) uint8 (images, 0..255) or float32
    y_train: torch.Tensor            # (m,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None   # per-channel, applied after uint8 → [0, 1]
    std: tuple[float, ...] | None = None
    streamed: object | None = None   # a StreamedData for image folders too large to hold (folders.py)


@dataclass
class DataBundle:
    """The training-ready dataset: splits, clean and training labels, normalization."""
    name: str
    x: dict[str, torch.Tensor]       # split → inputs ("train", "val", "test")
    y: dict[str, torch.Tensor]       # split → labels used for training / evaluation ("train" may be noisy)
    y_clean: torch.Tensor            # (m,) clean train labels (before label noise)
    num_classes: int
    in_shape: tuple[int, ...]
    mean: torch.Tensor | None = None  # (C,) or None
    std: torch.Tensor | None = None
    streamed: object | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def m(self) -> int:
        """Number of training samples (the random-label tables have this many rows)."""
        return len(self.y["train"])

    @property
    def splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in self.y]

    def to(self, device: torch.device | str) -> "DataBundle":
        d = torch.device(device)
        mv = lambda t: None if t is None else t.to(d, non_blocking=True)  # noqa: E731
        return replace(self, x={k: mv(v) for k, v in self.x.items()}, y={k: mv(v) for k, v in self.y.items()},
                       y_clean=mv(self.y_clean), mean=mv(self.mean), std=mv(self.std), device=d)

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """Batch on device → float32 model input: uint8 → [0,1], then per-channel normalization."""
        x = xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()
        if self.mean is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            x = (x - self.mean.view(shape)) / self.std.view(shape)
        return x

    def train_batches(self, epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                      drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Shuffled (x, y, idx) batches of the global batch `batch_size`; rank r of `world` gets its
        contiguous 1/world share of every global batch, so the union over ranks is the 1-process batch."""
        if self.streamed is not None:
            yield from self.streamed.train_batches(self, epoch, batch_size, seed, rank, world, drop_last)
            return
        m = self.m
        g = torch.Generator().manual_seed(L.derive_seed(seed, "order", epoch))
        perm = torch.randperm(m, generator=g).to(self.device)
        n_batches = m // batch_size if drop_last else -(-m // batch_size)
        for i in range(n_batches):
            gidx = perm[i * batch_size:(i + 1) * batch_size]
            idx = shard(gidx, rank, world)
            yield self.prepare(self.x["train"][idx]), self.y["train"][idx], idx

    def eval_batches(self, split: str, batch_size: int, rank: int = 0, world: int = 1
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Unshuffled (x, y, idx) batches of a split, each rank a disjoint shard."""
        if self.streamed is not None:
            yield from self.streamed.eval_batches(self, split, batch_size, rank, world)
            return
        n = len(self.y[split])
        all_idx = torch.arange(n, device=self.device)
        for i in range(0, n, batch_size):
            idx = shard(all_idx[i:i + batch_size], rank, world)
            yield self.prepare(self.x[split][idx]), self.y[split][idx], idx


def shard(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s contiguous part of a global batch (sizes differ by at most one)."""
    if world == 1:
        return idx
    n = len(idx)
    lo, hi = (n * rank) // world, (n * (rank + 1)) // world
    return idx[lo:hi]


def load_raw(cfg) -> RawData:
    """The registered loader's RawData for `data.name` (what a sweep loads once and shares)."""
    return dataset_spec(cfg.data.name).load(cfg.data)


def build_data(cfg, raw: RawData | None = None) -> DataBundle:
    """Config → DataBundle: load the raw dataset (or take a shared one), then fraction, validation
    split and label noise, all seeded from `data.seed` (or `run.seed`). CPU tensors; `.to(device)` once."""
    raw = raw if raw is not None else load_raw(cfg)
    seed = cfg.data.seed if cfg.data.seed >= 0 else cfg.run.seed
    x_tr, y_tr = raw.x_train, raw.y_train
    keep = L.stratified_subset(y_tr, cfg.data.fraction, L.derive_seed(seed, "fraction"))
    if cfg.data.val_fraction > 0:
        tr_pos, val_pos = L.stratified_split(y_tr[keep], cfg.data.val_fraction, L.derive_seed(seed, "val"))
        val_keep, keep = keep[val_pos], keep[tr_pos]
    x = {"train": _take(x_tr, keep, raw.streamed)}
    y_clean = y_tr[keep]
    n_cls = max(raw.num_classes, cfg.data.random_classes)   # noisy labels may use extra classes (003)
    y_noisy = L.label_noise(y_clean, cfg.data.label_noise, cfg.data.random_classes or raw.num_classes,
                            L.derive_seed(seed, "noise"))
    y = {"train": y_noisy}
    if cfg.data.val_fraction > 0:
        x["val"], y["val"] = _take(x_tr, val_keep, raw.streamed), y_tr[val_keep]
    x["test"], y["test"] = raw.x_test, raw.y_test
    streamed = raw.streamed.subset(keep, val_keep if cfg.data.val_fraction > 0 else None) if raw.streamed else None
    in_shape = tuple(raw.x_train.shape[1:]) if raw.streamed is None else raw.streamed.in_shape
    as_t = lambda v: None if v is None else torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return DataBundle(cfg.data.name, x, y, y_clean, n_cls, in_shape,
                      as_t(raw.mean), as_t(raw.std), streamed)


def _take(x: torch.Tensor, idx: torch.Tensor, streamed) -> torch.Tensor:
    return x if streamed is not None else x[idx]
