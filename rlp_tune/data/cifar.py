"""CIFAR-10 / CIFAR-100 from torchvision's python pickles, read through a restricted unpickler.

    root/cifar-10-batches-py/{data_batch_1..5,test_batch}   or   root/cifar-100-python/{train,test}
    (root may also be the inner folder); uint8 (3, 32, 32), 50,000 / 10,000 samples.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from .datasets import DatasetError, RawData, register_dataset
from .roots import NEVER, dataset_root, locate

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


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
    root = dataset_root(dcfg, name, expected)
    d = locate(root, [folder], train[0])
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


@register_dataset("cifar10", in_shape=(3, 32, 32), dtype=torch.uint8, num_classes=10, options=("root",))
def cifar10(dcfg) -> RawData:
    """CIFAR-10 from torchvision's python pickles: 50,000 / 10,000 uint8 (3, 32, 32)."""
    return _cifar(dcfg, "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                  "test_batch", b"labels", 10, CIFAR10_STATS)


@register_dataset("cifar100", in_shape=(3, 32, 32), dtype=torch.uint8, num_classes=100, options=("root",))
def cifar100(dcfg) -> RawData:
    """CIFAR-100 (fine labels) from torchvision's python pickles: 50,000 / 10,000 uint8 (3, 32, 32)."""
    return _cifar(dcfg, "cifar100", "cifar-100-python", ["train"], "test", b"fine_labels", 100, CIFAR100_STATS)
