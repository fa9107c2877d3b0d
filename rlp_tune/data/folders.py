"""Image folders too large to hold, streamed: file lists in memory, JPEGs decoded by DataLoader
workers into uint8 batches of `data.image_size` (default 64 / 224); one class per train folder
(Tiny ImageNet 200, ImageNet-1k 1,000).

    tinyimagenet    root/train/<wnid>/images/*.JPEG (or <wnid>/*.JPEG), root/val/images +
                    root/val/val_annotations.txt (or val/<wnid>/ folders); val is the test split
    imagenet        ImageFolder layout: root/train/<wnid>/*.JPEG, root/val/<wnid>/*.JPEG
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from . import labels as L
from .datasets import DatasetError, RawData, dataset_spec, register_dataset, shard
from .roots import NEVER, dataset_root

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TINY_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


class PathTable:
    """An immutable list of file paths stored as one byte blob + offsets (numpy), so DataLoader
    workers neither copy-on-write millions of Python strings nor pickle them slowly."""

    def __init__(self, paths: Sequence[str] = (), *, _blob=None, _off=None):
        if _blob is None:
            enc = [p.encode() for p in paths]
            _off = np.zeros(len(enc) + 1, dtype=np.int64)
            np.cumsum([len(e) for e in enc], out=_off[1:])
            _blob = np.frombuffer(b"".join(enc), dtype=np.uint8).copy()
        self.blob, self.off = _blob, _off

    def __len__(self) -> int:
        return len(self.off) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.off[i]:self.off[i + 1]].tobytes().decode()

    def take(self, pos) -> "PathTable":
        """The paths at positions `pos` (tensor/array of ints), in that order."""
        pos = np.asarray(pos.cpu() if isinstance(pos, torch.Tensor) else pos, dtype=np.int64)
        lo, hi = self.off[pos], self.off[pos + 1]
        lens = hi - lo
        off = np.zeros(len(pos) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        # byte k of new entry j comes from lo[j] + k: one vectorized gather
        src = np.repeat(lo - off[:-1], lens) + np.arange(off[-1], dtype=np.int64)
        return PathTable(_blob=self.blob[src], _off=off)


def decode_image(path: str, size: int) -> torch.Tensor:
    """One image file → uint8 (3, size, size): shorter side resized to `size`, then center crop.
    JPEGs are decoded at reduced scale first (PIL draft) when much larger than needed."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            w, h = im.size
            s = size / min(w, h)
            if im.format == "JPEG" and s < 0.5:
                im.draft("RGB", (max(size, int(w * s + 1)), max(size, int(h * s + 1))))
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            if (nw, nh) != (w, h):
                im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
            l, t = (nw - size) // 2, (nh - size) // 2
            im = im.crop((l, t, l + size, t + size))
            a = np.asarray(im, dtype=np.uint8)
    except Exception as e:
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    return torch.from_numpy(a.copy()).permute(2, 0, 1)


class _BatchDecode(torch.utils.data.Dataset):
    """dataset[list of positions] → (uint8 (b, 3, S, S), int64 positions): one worker decodes a
    whole batch, so the DataLoader's in-order delivery keeps batch order worker-independent."""

    def __init__(self, paths: PathTable, size: int):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, str]:
        out = torch.empty((len(positions), 3, self.size, self.size), dtype=torch.uint8)
        try:
            for j, p in enumerate(positions):  # per-file decode is the unavoidable part; runs in workers
                out[j] = decode_image(self.paths[p], self.size)
        except DatasetError as e:   # (None, message): StreamedData._emit raises it in the main process,
            return None, str(e)     # one line (a worker's exception comes back with its traceback)
        return out, torch.as_tensor(positions, dtype=torch.int64)


@dataclass
class StreamedData:
    """File lists + the decode size for an image-folder dataset; yields batches like DataBundle.

    `files[split]` is aligned with `bundle.y[split]`: position i of the split is file i."""
    files: dict[str, PathTable]
    size: int
    workers: int = 4

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def subset(self, train_positions: torch.Tensor, val_positions: torch.Tensor | None) -> "StreamedData":
        """Train (and val) file lists cut from the raw train list at the given positions."""
        full = self.files["train"]
        files = {"train": full.take(train_positions)}
        if val_positions is not None:
            files["val"] = full.take(val_positions)
        files["test"] = self.files["test"]
        return StreamedData(files, self.size, self.workers)

    def _loader(self, split: str, index_batches: list[torch.Tensor], device: torch.device) -> Iterator:
        from torch.utils.data import DataLoader
        if split not in self.files:
            raise DatasetError(f"streamed dataset has no split {split!r} (has {', '.join(self.files)})")
        ds = _BatchDecode(self.files[split], self.size)
        sampler = [b.tolist() for b in index_batches]  # ordered list of index batches
        return iter(DataLoader(ds, sampler=sampler, batch_size=None, num_workers=self.workers,
                               pin_memory=device.type == "cuda" and torch.cuda.is_available(),
                               prefetch_factor=4 if self.workers > 0 else None))

    def _emit(self, bundle, split: str, batches: list[torch.Tensor]):
        dev = bundle.device
        for xb, pos in self._loader(split, batches, dev):
            if xb is None:
                raise DatasetError(pos)
            idx = pos.to(dev, non_blocking=True)
            yield bundle.prepare(xb.to(dev, non_blocking=True)), bundle.y[split][idx], idx

    def train_batches(self, bundle, epoch: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                      drop_last: bool = False):
        """Same permutation and sharding as DataBundle.train_batches (derive_seed(seed, 'order', epoch))."""
        m = len(self.files["train"])
        g = torch.Generator().manual_seed(L.derive_seed(seed, "order", epoch))
        perm = torch.randperm(m, generator=g)
        n_batches = m // batch_size if drop_last else -(-m // batch_size)
        batches = [shard(perm[i * batch_size:(i + 1) * batch_size], rank, world) for i in range(n_batches)]
        yield from self._emit(bundle, "train", batches)

    def eval_batches(self, bundle, split: str, batch_size: int, rank: int = 0, world: int = 1):
        """Unshuffled batches of a split, each rank a disjoint contiguous shard of every batch."""
        n = len(self.files[split]) if split in self.files else 0
        all_idx = torch.arange(n)
        batches = [shard(all_idx[i:i + batch_size], rank, world) for i in range(0, n, batch_size)]
        yield from self._emit(bundle, split, batches)


def _images_in(d: Path) -> list[str]:
    return sorted(e.path for e in os.scandir(d) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS))


def _class_folders(split_dir: Path, classes: list[str], name: str, sub: str = "") -> tuple[list[str], list[int]]:
    """Files and labels of a <wnid>/[sub/]*.JPEG layout, classes numbered by `classes` order."""
    paths, ys = [], []
    for c, wnid in enumerate(classes):
        d = split_dir / wnid
        if sub and (d / sub).is_dir():
            d = d / sub
        if not d.is_dir():
            raise DatasetError(f"{name}: expected class folder {d} (class {wnid} is in train/)")
        files = _images_in(d)
        paths += files
        ys += [c] * len(files)
    return paths, ys


def _streamed(name: str, size: int, workers: int, stats, classes, tr, te) -> RawData:
    (tr_paths, tr_y), (te_paths, te_y) = tr, te
    if not tr_paths:
        raise DatasetError(f"{name}: found no images (*.JPEG) in the train class folders")
    streamed = StreamedData({"train": PathTable(tr_paths), "test": PathTable(te_paths)}, size, workers)
    empty = torch.empty((0, 3, size, size), dtype=torch.uint8)  # placeholder: images stay on disk
    return RawData(empty, torch.tensor(tr_y, dtype=torch.int64), empty, torch.tensor(te_y, dtype=torch.int64),
                   len(classes), *stats, streamed=streamed)


def _train_classes(root: Path, name: str, layout: str) -> list[str]:
    tr = root / "train"
    if not tr.is_dir():
        raise DatasetError(f"{name}: expected {tr}/<wnid>/{layout} under {root}; {NEVER}")
    classes = sorted(e.name for e in os.scandir(tr) if e.is_dir())
    if not classes:
        raise DatasetError(f"{name}: no class folders in {tr} (expected {tr}/<wnid>/{layout}); {NEVER}")
    return classes


@register_dataset("tinyimagenet", in_shape=(3, 64, 64), dtype=torch.uint8, num_classes=None,
                  options=("root", "image_size", "workers"))
def tinyimagenet(dcfg) -> RawData:
    """Tiny ImageNet (200 classes, 100,000 / 10,000 images), streamed from the folder; the labelled
    val split is the test split. Images decoded to `data.image_size` (default 64)."""
    name = "tinyimagenet"
    root = dataset_root(dcfg, name, "train/<wnid>/images/*.JPEG and val/")
    classes = _train_classes(root, name, "images/*.JPEG")
    tr = _class_folders(root / "train", classes, name, sub="images")
    val = root / "val"
    ann = val / "val_annotations.txt"
    if ann.is_file():
        index = {w: c for c, w in enumerate(classes)}
        paths, ys = [], []
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise DatasetError(f"{ann}:{n}: expected '<file>\\t<wnid>...' with a wnid from train/")
            p = val / "images" / parts[0]
            if not p.is_file():
                raise DatasetError(f"{name}: {ann} lists {parts[0]} but {p} is missing")
            paths.append(str(p))
            ys.append(index[parts[1]])
        te = (paths, ys)
    elif val.is_dir() and any((val / c).is_dir() for c in classes):
        te = _class_folders(val, classes, name, sub="images")
    else:
        raise DatasetError(f"{name}: expected {ann} with val/images/, or val/<wnid>/ folders, under {root}; {NEVER}")
    return _streamed(name, dataset_spec(name).image_size(dcfg), dcfg.workers, TINY_STATS, classes, tr, te)


@register_dataset("imagenet", in_shape=(3, 224, 224), dtype=torch.uint8, num_classes=None,
                  options=("root", "image_size", "workers"))
def imagenet(dcfg) -> RawData:
    """ImageNet-1k in ImageFolder layout, streamed; decoded to `data.image_size` (default 224)."""
    name = "imagenet"
    root = dataset_root(dcfg, name, "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    classes = _train_classes(root, name, "*.JPEG")
    if not (root / "val").is_dir():
        raise DatasetError(f"{name}: expected {root / 'val'}/<wnid>/*.JPEG (ImageFolder layout); {NEVER}")
    tr = _class_folders(root / "train", classes, name)
    te = _class_folders(root / "val", classes, name)
    return _streamed(name, dataset_spec(name).image_size(dcfg), dcfg.workers, IMAGENET_STATS, classes, tr, te)
