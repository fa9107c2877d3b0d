"""The probe contract, checked for every registered probe (rlp_tune.probes.PROBES, `list_probes()`).

    .venv/bin/python -m pytest tests/test_probe_registry.py -q

Every feature probe agrees with a small, independent reference (numpy / scikit-learn, REFERENCES) on
a toy case of overlapping blobs, returns a fraction, and names each of its options in its rows'
protocol; a probe registered without a reference here fails, naming itself. The one non-feature
probe (invariance) agrees with a brute-force eq. 2. A probe registered inside a test (the `toy_probe`
fixture) is picked up by the config check, `run_probes`, `probe_rows` and this contract.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rlp_tune.run.checks import check_probe_names
from rlp_tune.config import ConfigError, Probe
from rlp_tune.probes import PROBES, list_probes, probe_spec, register_probe, run_probes


def _toy(seed=0, n_train=150, n_test=90, d=6, c=3):
    """Overlapping Gaussian blobs: accuracies strictly between chance and 1, so agreement means something."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 1.5
    y = rng.integers(0, c, size=n_train + n_test)
    x = centres[y] + 1.5 * rng.normal(size=(len(y), d))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], c


def _cos(a, b):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T


def knn_ref(xtr, ytr, xte, c, cfg):
    out = []
    for row in _cos(xte, xtr):
        votes = np.bincount(ytr[np.argsort(-row, kind="stable")[:cfg.k]], minlength=c)
        out.append(np.argmax(votes))
    return np.array(out)


def ncm_ref(xtr, ytr, xte, c, cfg):
    means = np.stack([xtr[ytr == k].mean(0) for k in range(c)])
    return _cos(xte, means).argmax(1)


def masc_ref(xtr, ytr, xte, c, cfg):
    from sklearn.decomposition import PCA
    norms = np.linalg.norm(xte, axis=1)
    ang = []
    for k in range(c):
        xc = xtr[ytr == k]
        U = PCA(n_components=cfg.masc_threshold, svd_solver="full").fit(np.vstack([xc, -xc])).components_.T
        ang.append(np.arccos(np.clip(np.linalg.norm(xte @ U, axis=1) / norms, 0, 1)))
    return np.stack(ang, 1).argmin(1)


def linear_ref(xtr, ytr, xte, c, cfg):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    assert cfg.linear == "l2"
    sc = StandardScaler().fit(xtr)
    return LogisticRegression(C=1.0, max_iter=2000, tol=1e-10).fit(sc.transform(xtr), ytr).predict(sc.transform(xte))


# name → reference predictor (xtr, ytr, xte, num_classes, probe_cfg) → predicted classes
REFERENCES = {"knn": knn_ref, "ncm": ncm_ref, "masc": masc_ref, "linear": linear_ref}
# how far a probe may be from its reference, in test rows (linear: L-BFGS vs liblinear-free lbfgs optima)
ROW_TOLERANCE = {"linear": 1}
CFG = Probe(k=7, masc_threshold=0.9)


def check_feature_probe(name: str) -> None:
    spec = probe_spec(name)
    assert name in REFERENCES, f"probe {name!r} has no reference in tests/test_probe_registry.py REFERENCES"
    fields = {f.name for f in dataclasses.fields(Probe)}
    assert set(spec.options.values()) <= fields, f"{name}: options name [probe] fields only"
    xtr, ytr, xte, yte, c = _toy()
    t = lambda a: torch.from_numpy(a)   # noqa: E731
    got = run_probes([name], t(xtr), t(ytr), t(xte), t(yte), c, probe_cfg=CFG)[f"{name}_acc"]
    ref = float((REFERENCES[name](xtr, ytr, xte, c, CFG) == yte).mean())
    assert abs(got - ref) <= ROW_TOLERANCE.get(name, 0) / len(yte), (name, got, ref)
    assert 1 / c < got < 1.0                          # the toy case is informative
    # float32 features (the Trainer's): the same answer within one row
    got32 = run_probes([name], t(xtr).float(), t(ytr), t(xte).float(), t(yte), c, probe_cfg=CFG)[f"{name}_acc"]
    assert abs(got32 - got) <= 1 / len(yte)
    proto = spec.protocol("clean", CFG, n_subset=40)
    assert proto.startswith("labels=clean;") and proto.endswith(";max_train=40")
    for kw, f in spec.options.items():
        assert f"{kw}=" in proto, (name, kw, proto)
        # an option's value changes the protocol (rows of different settings never share a key)
        other = dataclasses.replace(CFG, **{f: {"k": 3, "masc_threshold": 0.5, "linear": "adam20"}.get(f, 1)})
        assert spec.protocol("clean", other) != spec.protocol("clean", CFG), (name, f)


def check_invariance_probe(name: str) -> None:
    """Non-feature probes: invariance, against eq. 2 computed pair by pair."""
    spec = probe_spec(name)
    assert name == "invariance", f"probe {name!r} is not a feature probe and has no reference here"
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64)
    W = torch.randn(4, 3, dtype=torch.float64)
    q = lambda v: torch.tanh(v @ W)     # noqa: E731
    aug = lambda v, g: v + 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype)   # noqa: E731
    got = spec.fn(q, x, aug, n_views=3, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    clean = q(x).numpy()
    views = np.stack([q(aug(x, g)).numpy() for _ in range(3)])
    ref = np.mean([np.mean([np.sum((views[a, i] - views[b, i]) ** 2) for a in range(3) for b in range(a + 1, 3)])
                   / np.mean([np.sum((clean[i] - clean[j]) ** 2) for j in range(6) if j != i]) for i in range(6)])
    assert got == pytest.approx(ref, rel=1e-10)
    assert spec.fn(q, x, lambda v, g: v, n_views=2) == 0.0     # an identity augmentation: invariant


def check_probe(name: str) -> None:
    (check_feature_probe if probe_spec(name).features else check_invariance_probe)(name)


@pytest.mark.parametrize("name", list_probes())
def test_probe_contract(name):
    check_probe(name)


def test_unknown_probe_is_one_line_naming_it():
    with pytest.raises(ConfigError, match="probe.probes: unknown probe 'knnn'"):
        check_probe_names(["knn", "knnn"])
    with pytest.raises(ValueError, match="invariance"):
        run_probes(["invariance"], *[torch.zeros(4, 2)] * 2, *[torch.zeros(4, 2)] * 2, num_classes=2)


# ---- a probe registered in a test is picked up ---------------------------------------------------
def majority_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed, k):
    """Predicts the most frequent training class (k: unused, an option to show the protocol)."""
    return float((test_labels == torch.bincount(train_labels, minlength=num_classes).argmax()).double().mean())


def majority_ref(xtr, ytr, xte, c, cfg):
    return np.full(len(xte), np.bincount(ytr, minlength=c).argmax())


@pytest.fixture
def toy_probe():
    register_probe("toy_majority", options={"k": "k"})(majority_probe)
    REFERENCES["toy_majority"] = majority_ref
    yield "toy_majority"
    PROBES.remove("toy_majority")
    del REFERENCES["toy_majority"]


def test_a_probe_registered_in_a_test_is_picked_up(toy_probe, tiny_cfg):
    from rlp_tune.data import build_data
    from rlp_tune.models import create_model
    from rlp_tune.probes.layers import probe_rows
    assert toy_probe in list_probes()
    check_probe_names([toy_probe])
    for name in list_probes():                     # the contract over every entry, the new one included
        check_probe(name)
    cfg = tiny_cfg.replace(**{"probe.probes": ["knn", toy_probe], "probe.every": 1})
    data = build_data(cfg)
    torch.manual_seed(0)
    model = create_model(cfg.model, data.in_shape, data.num_classes)
    rows = probe_rows(model, data, cfg)
    toy = [r for r in rows if r["metric"] == f"{toy_probe}_acc"]
    y_tr, y_te = data.y_clean.numpy(), data.y["test"].numpy()
    assert len(toy) == 1 and toy[0]["protocol"] == "labels=clean;k=20"
    assert toy[0]["value"] == pytest.approx(float((y_te == np.bincount(y_tr).argmax()).mean()))
