"""MNIST / Fashion-MNIST from torchvision's IDX files (plain or .gz).

    root/MNIST/raw/, root/FashionMNIST/raw/, or root pointing at the folder holding
    train-images-idx3-ubyte; uint8 (1, 28, 28), 60,000 / 10,000 samples.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .datasets import DatasetError, RawData, register_dataset
from .roots import NEVER, dataset_root, locate

MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_STATS = ((0.2860,), (0.3530,))
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
    root = dataset_root(dcfg, name, f"{folder}/raw/{first}")
    d = locate(root, [f"{folder}/raw", folder, "raw"], first)
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


@register_dataset("mnist", in_shape=(1, 28, 28), dtype=torch.uint8, num_classes=10, options=("root",))
def mnist(dcfg) -> RawData:
    """MNIST from torchvision's IDX files: 60,000 / 10,000 uint8 (1, 28, 28)."""
    return _mnist(dcfg, "mnist", "MNIST", MNIST_STATS)


@register_dataset("fashion_mnist", in_shape=(1, 28, 28), dtype=torch.uint8, num_classes=10,
                  options=("root",))
def fashion_mnist(dcfg) -> RawData:
    """Fashion-MNIST from torchvision's IDX files: 60,000 / 10,000 uint8 (1, 28, 28)."""
    return _mnist(dcfg, "fashion_mnist", "FashionMNIST", FASHION_STATS)
