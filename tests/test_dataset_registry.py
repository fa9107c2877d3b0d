"""The dataset contract, checked for every registered dataset (rlp_tune.data.DATASETS, `list_datasets()`).

    .venv/bin/python -m pytest tests/test_dataset_registry.py -q

Every dataset yields what its registry entry documents: one sample's shape (at the defaults, and at
data.image_size for the datasets that read it), its dtype (uint8 images or float32), labels int64 in
[0, num_classes), the (train, test) counts where the entry fixes them; and through `build_data` the
trainer's batches are float32 (B, *shape) with int64 labels and sample indices. A dataset that reads
files (option "root") is checked on a tiny fake folder in its format (FAKES); one registered without a
fake here fails, naming itself. A dataset registered inside a test (the `toy_dataset` fixture) is
picked up by the config, `build_data` and this contract.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_data import fake_cifar10, fake_imagenet, fake_mnist, fake_tinyimagenet, write_cifar_batch

from rlp_tune.config import Config
from rlp_tune.data import DATASETS, RawData, build_data, dataset_spec, list_datasets, load_raw, register_dataset
from rlp_tune.data.datasets import COMMON_OPTIONS


def fake_cifar100(root):
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(2)
    write_cifar_batch(d / "train", 30, 100, b"fine_labels", rng)
    write_cifar_batch(d / "test", 10, 100, b"fine_labels", rng)


# name → writes a tiny folder of the dataset's files under the given root
FAKES = {"cifar10": fake_cifar10, "cifar100": fake_cifar100,
         "mnist": lambda r: fake_mnist(r / "MNIST" / "raw"), "fashion_mnist": lambda r: fake_mnist(r / "FashionMNIST" / "raw"),
         "tinyimagenet": fake_tinyimagenet, "imagenet": fake_imagenet}


def cfg_for(name, root, **data):
    spec = dataset_spec(name)
    extra = {"data.root": str(root)} if "root" in spec.options else {}
    extra.update({f"data.{k}": v for k, v in data.items()})
    if "synthetic_size" in spec.options:
        extra["data.synthetic_size"] = 40
    if "workers" in spec.options:
        extra["data.workers"] = 0
    return Config().replace(**{"data.name": name, **extra})


def check_dataset(name: str, root) -> None:
    spec = dataset_spec(name)
    known = set(Config().data.__dataclass_fields__)
    assert set(spec.options) <= known - set(COMMON_OPTIONS), f"{name}: options name data.* keys of its own"
    if "root" in spec.options:
        assert name in FAKES, f"dataset {name!r} reads files and has no fake folder in tests/test_dataset_registry.py FAKES"
        FAKES[name](root)
    sizes = [None] + ([8] if "image_size" in spec.options else [])
    for size in sizes:
        cfg = cfg_for(name, root, **({"image_size": size} if size else {}))
        shape = spec.shape(cfg.data)
        assert shape == (spec.in_shape if size is None else (spec.in_shape[0], size, size))
        raw = load_raw(cfg)
        assert isinstance(raw, RawData)
        for x, y in ((raw.x_train, raw.y_train), (raw.x_test, raw.y_test)):
            assert tuple(x.shape[1:]) == shape and x.dtype == spec.dtype, (name, x.shape, x.dtype)
            assert y.dtype == torch.int64 and y.ndim == 1 and len(y) > 0
            assert 0 <= int(y.min()) and int(y.max()) < raw.num_classes
        if spec.num_classes is not None:
            assert raw.num_classes == spec.num_classes
        if spec.sizes is not None:
            assert (len(raw.y_train), len(raw.y_test)) == spec.sizes
        if raw.streamed is None:
            assert len(raw.x_train) == len(raw.y_train) and len(raw.x_test) == len(raw.y_test)
        b = build_data(cfg, raw)
        assert b.in_shape == shape and b.num_classes >= raw.num_classes
        xb, yb, idx = next(b.train_batches(epoch=0, batch_size=4, seed=0))
        assert xb.dtype == torch.float32 and xb.shape == (len(idx), *shape) and len(idx) == min(4, b.m)
        assert yb.dtype == torch.int64 and idx.dtype == torch.int64 and torch.equal(yb, b.y["train"][idx])
        xt, yt, _ = next(b.eval_batches("test", 4))
        assert xt.dtype == torch.float32 and xt.shape[1:] == shape and yt.dtype == torch.int64


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_contract(name, tmp_path):
    check_dataset(name, tmp_path)


def test_unknown_dataset_is_one_line_naming_it():
    from rlp_tune.registry import RegistryError
    with pytest.raises(RegistryError, match="unknown dataset 'cifar11'; did you mean cifar10"):
        load_raw(Config().replace(**{"data.name": "cifar11"}))


# ---- a dataset registered in a test is picked up -------------------------------------------------
def toy_stripes(dcfg) -> RawData:
    """float32 (2, 5) vectors, 3 classes: class c has value c in row 0; 30 / 12 samples."""
    def make(n):
        y = torch.arange(n) % 3
        x = torch.zeros(n, 2, 5)
        x[:, 0] = y[:, None].float()
        return x, y
    return RawData(*make(30), *make(12), 3)


@pytest.fixture
def toy_dataset():
    register_dataset("toy_stripes", in_shape=(2, 5), dtype=torch.float32, num_classes=3, sizes=(30, 12))(toy_stripes)
    yield "toy_stripes"
    DATASETS.remove("toy_stripes")


def test_a_dataset_registered_in_a_test_is_picked_up(toy_dataset, tmp_path):
    from rlp_tune.config import describe
    assert toy_dataset in list_datasets()
    assert "toy_stripes" in next(line for line in describe().splitlines() if line.startswith("data.name"))
    check_dataset(toy_dataset, tmp_path)
    b = build_data(Config().replace(**{"data.name": toy_dataset, "data.val_fraction": 0.2}))
    assert b.in_shape == (2, 5) and b.m == 24 and len(b.y["val"]) == 6
