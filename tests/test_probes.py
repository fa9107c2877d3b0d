"""Layer probes (rlp_tune/probes) against independent numpy / scikit-learn references on small fixed data.

    .venv/bin/python -m pytest tests/test_probes.py -q
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlp_tune.config import Probe
from rlp_tune.probes import (explained_variance_k, extract_features, fit_logreg, invariance,
                             invariance_per_sample, knn_neighbors, knn_predict, linear_probe, masc_accuracy, masc_fit,
                             ncm_accuracy, ncm_predict, run_probes)


def _blobs(n, d, c, seed, spread=1.0):
    """Gaussian blobs around random class centres: (x (n, d) float64, y (n,) int64)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 2.0
    y = rng.integers(0, c, size=n)
    x = centres[y] + spread * rng.normal(size=(n, d))
    return torch.from_numpy(x), torch.from_numpy(y).long()


# ---------------------------------------------------------------- k-NN

def knn_reference(xtr, ytr, xte, k, num_classes):
    """Brute force: cosine similarity, stable sort, unweighted vote, ties → lowest class."""
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    sims = b @ a.T
    out = []
    for row in sims:
        nbr = np.argsort(-row, kind="stable")[:k]
        votes = np.bincount(ytr[nbr], minlength=num_classes)
        out.append(int(np.argmax(votes)))  # np.argmax: first maximum
    return np.array(out)


def test_knn_matches_numpy_reference_exactly():
    xtr, ytr = _blobs(300, 12, 5, seed=0, spread=2.0)
    xte, _ = _blobs(120, 12, 5, seed=1, spread=2.0)
    for k in (1, 4, 20):
        ref = knn_reference(xtr.numpy(), ytr.numpy(), xte.numpy(), k, 5)
        got = knn_predict(xtr, ytr, xte, k=k, num_classes=5).numpy()
        np.testing.assert_array_equal(got, ref)
    # float32 inputs: same neighbours (no near-ties in this data)
    got32 = knn_predict(xtr.float(), ytr, xte.float(), k=20, num_classes=5).numpy()
    np.testing.assert_array_equal(got32, knn_reference(xtr.numpy(), ytr.numpy(), xte.numpy(), 20, 5))


def test_knn_tied_vote_goes_to_lowest_class():
    # query (1, 0); the 4 nearest (by angle) are labelled 2, 1, 2, 1 → 2-2 tie → class 1;
    # the far point (−1, 0) of class 0 is not among them.
    xtr = torch.tensor([[1.0, 0.10], [1.0, -0.15], [1.0, 0.30], [1.0, -0.35], [-1.0, 0.0]])
    ytr = torch.tensor([2, 1, 2, 1, 0])
    xte = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    got = knn_predict(xtr, ytr, xte, k=4, num_classes=3)
    assert got.tolist() == [1, 1]
    ref = knn_reference(xtr.numpy(), ytr.numpy(), xte.numpy(), 4, 3)
    assert ref.tolist() == [1, 1]
    # k = 3: two votes for class 2 → 2 (the vote, not the label order, decides)
    assert knn_predict(xtr, ytr, xte, k=3).tolist() == [2, 2]


def test_knn_matches_sklearn_where_no_tie():
    from sklearn.neighbors import KNeighborsClassifier
    xtr, ytr = _blobs(400, 10, 4, seed=2, spread=2.5)
    xte, _ = _blobs(150, 10, 4, seed=3, spread=2.5)
    k = 9
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="cosine").fit(xtr.numpy(), ytr.numpy())
    sk = clf.predict(xte.numpy())
    # rows whose vote has a unique winner
    a = xtr.numpy() / np.linalg.norm(xtr.numpy(), axis=1, keepdims=True)
    b = xte.numpy() / np.linalg.norm(xte.numpy(), axis=1, keepdims=True)
    nbr = np.argsort(-(b @ a.T), axis=1, kind="stable")[:, :k]
    votes = np.stack([np.bincount(r, minlength=4) for r in ytr.numpy()[nbr]])
    unique = (votes == votes.max(1, keepdims=True)).sum(1) == 1
    assert unique.sum() > 100
    got = knn_predict(xtr, ytr, xte, k=k).numpy()
    np.testing.assert_array_equal(got[unique], sk[unique])


def test_knn_chunking_does_not_change_results():
    xtr, ytr = _blobs(257, 8, 6, seed=4, spread=3.0)
    xte, _ = _blobs(101, 8, 6, seed=5, spread=3.0)
    big = knn_predict(xtr, ytr, xte, k=20)
    tiny = knn_predict(xtr, ytr, xte, k=20, chunk=3, train_chunk=20)   # many train blocks, running merge
    odd = knn_predict(xtr, ytr, xte, k=20, chunk=50, train_chunk=37)
    assert torch.equal(big, tiny) and torch.equal(big, odd)
    # float32, train blocks smaller than k + 64
    f32 = knn_predict(xtr.float(), ytr, xte.float(), k=20, chunk=7, train_chunk=30)
    assert torch.equal(big, f32)


def test_knn_fp32_equals_a_float64_reference():
    """The one fp32 path returns the float64 reference's neighbours and votes on spread-out data."""
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(3000, 64, generator=g)
    ytr = torch.randint(0, 7, (3000,), generator=g)
    xte = torch.randn(300, 64, generator=g)
    s0, i0 = knn_neighbors(xtr, xte, k=20, chunk=100)
    s64, i64 = knn_neighbors(xtr.double(), xte.double(), k=20)
    assert s0.dtype == torch.float32 and s64.dtype == torch.float64
    assert torch.equal(i0.sort(1).values, i64.sort(1).values)
    assert torch.allclose(s0.double(), s64, atol=1e-6)
    ref = knn_reference(xtr.double().numpy(), ytr.numpy(), xte.double().numpy(), 20, 7)
    np.testing.assert_array_equal(knn_predict(xtr, ytr, xte, k=20).numpy(), ref)


def test_knn_bad_input_is_named():
    x, y = _blobs(10, 3, 2, seed=0)
    with pytest.raises(ValueError, match="k=11"):
        knn_predict(x, y, x, k=11)
    with pytest.raises(ValueError, match="width"):
        knn_predict(x, y, x[:, :2], k=3)


# ---------------------------------------------------------------- MASC

def test_explained_variance_rule_on_constructed_spectrum():
    lam = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0])   # cumulative ratio .5 .75 .875 .9375 1
    assert explained_variance_k(lam, 0.4) == 1        # none ≤ .4 → 0 + 1
    assert explained_variance_k(lam, 0.5) == 2        # equality counts
    assert explained_variance_k(lam, 0.87) == 3
    assert explained_variance_k(lam, 0.875) == 4
    assert explained_variance_k(lam, 0.9) == 4
    assert explained_variance_k(lam, 0.99) == 5
    assert explained_variance_k(lam, 1.0) == 5        # capped at the spectrum length
    with pytest.raises(ValueError, match="threshold"):
        explained_variance_k(lam, 0.0)


def _subspace_classes(n, d, c, r, seed, noise=0.05):
    """Class c = random ±combinations of r directions of its own + small isotropic noise."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(c, r, d))
    y = rng.integers(0, c, size=n)
    coef = rng.normal(size=(n, r)) * np.linspace(3.0, 1.0, r)
    x = np.einsum("nr,nrd->nd", coef, dirs[y]) + noise * rng.normal(size=(n, d))
    return torch.from_numpy(x), torch.from_numpy(y).long()


def masc_reference(xtr, ytr, xte, num_classes, threshold):
    """sklearn PCA(n_components=threshold) on [X_c; −X_c]; angle = arccos(‖Uᵀx‖ / ‖x‖)."""
    from sklearn.decomposition import PCA
    angles, ks = [], []
    for c in range(num_classes):
        xc = xtr[ytr == c]
        pca = PCA(n_components=threshold, svd_solver="full").fit(np.vstack([xc, -xc]))
        U = pca.components_.T                                           # (d, k)
        ks.append(U.shape[1])
        cos = np.linalg.norm(xte @ U, axis=1) / np.linalg.norm(xte, axis=1)
        angles.append(np.arccos(np.clip(cos, 0, 1)))
    return np.stack(angles, 1), ks


@pytest.mark.parametrize("n_train", [600, 60])   # classes with n_c > d (covariance eigh) and n_c < d (Gram eigh)
def test_masc_matches_numpy_reference(n_train):
    d, c = 24, 4
    x, y = _subspace_classes(n_train + 200, d, c, r=5, seed=6)
    xtr, ytr, xte = x[:n_train], y[:n_train], x[n_train:].clone()
    xte[:, 0] += 0.3   # off the training subspaces a little, so angles are not all ~0
    for thr in (0.9, 0.99):
        ref, ks = masc_reference(xtr.numpy(), ytr.numpy(), xte.numpy(), c, thr)
        m = masc_fit(xtr, ytr, num_classes=c, threshold=thr)
        assert m.dims == ks
        got = m.angles(xte)
        assert got.dtype == torch.float64 and got.shape == (200, c)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(m.predict(xte).numpy(), ref.argmin(1))
        np.testing.assert_allclose(m.angles(xte, chunk=7).numpy(), got.numpy(), atol=1e-12, rtol=0)


def test_masc_separates_sign_symmetric_subspaces_where_ncm_cannot():
    # every class has mean ≈ 0 (random ± coefficients): class means carry no signal, subspaces do
    x, y = _subspace_classes(1200, 30, 5, r=3, seed=8)
    xtr, ytr, xte, yte = x[:800], y[:800], x[800:], y[800:]
    assert masc_accuracy(xtr, ytr, xte, yte, num_classes=5, threshold=0.99) > 0.97
    assert ncm_accuracy(xtr, ytr, xte, yte, num_classes=5) < 0.5
    # bases are orthonormal
    m = masc_fit(xtr, ytr, 5)
    for U in m.bases:
        np.testing.assert_allclose((U.T @ U).numpy(), np.eye(U.shape[1]), atol=1e-8)


def test_masc_empty_class_and_zero_row():
    xtr, ytr = _subspace_classes(200, 10, 3, r=2, seed=10)
    ytr[ytr == 1] = 0                                   # class 1 has no training points
    m = masc_fit(xtr, ytr, num_classes=3)
    assert m.dims[1] == 0
    a = m.angles(torch.cat([xtr[:5], torch.zeros(1, 10, dtype=xtr.dtype)]))
    assert torch.allclose(a[:, 1], torch.full((6,), math.pi / 2, dtype=a.dtype))
    assert torch.allclose(a[5], torch.full((3,), math.pi / 2, dtype=a.dtype))


# ---------------------------------------------------------------- linear

def test_linear_probe_matches_sklearn_logreg():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    x, y = _blobs(800, 16, 4, seed=11, spread=4.0)
    xtr, ytr, xte, yte = x[:400], y[:400], x[400:], y[400:]
    xtr = xtr * torch.linspace(0.1, 10.0, 16, dtype=xtr.dtype) + 5.0   # unequal scales: standardization matters
    xte = xte * torch.linspace(0.1, 10.0, 16, dtype=xte.dtype) + 5.0
    sc = StandardScaler().fit(xtr.numpy())
    for C in (0.01, 1.0):
        sk = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(sc.transform(xtr.numpy()), ytr.numpy())
        sk_acc = sk.score(sc.transform(xte.numpy()), yte.numpy())
        acc = linear_probe(xtr, ytr, xte, yte, C=C, max_iter=500)
        assert 0.4 < sk_acc < 0.99                     # not a trivial problem
        assert abs(acc - sk_acc) <= 0.01, (C, acc, sk_acc)
        W, b, _, _ = fit_logreg(xtr, ytr, 4, C=C, max_iter=500)
        # same objective and optimum (sklearn's coef_ is identifiable up to a shared shift; L2 fixes it)
        np.testing.assert_allclose(W.numpy(), sk.coef_, atol=2e-3 * max(1.0, np.abs(sk.coef_).max()))
    # float32 features (the usual case): float32 math, same accuracy
    assert abs(linear_probe(xtr.float(), ytr, xte.float(), yte) - linear_probe(xtr, ytr, xte, yte)) <= 0.01
    # deterministic: same call, same weights
    assert torch.equal(fit_logreg(xtr, ytr, 4)[0], fit_logreg(xtr, ytr, 4)[0])


# ---------------------------------------------------------------- NCM

def test_ncm_matches_numpy_reference():
    """004's definition: class means of the RAW rows, cosine similarity of the test row to each mean."""
    xtr, ytr = _blobs(300, 9, 6, seed=13, spread=3.0)
    xte, _ = _blobs(200, 9, 6, seed=14, spread=3.0)
    a = xtr.numpy()
    means = np.stack([a[ytr.numpy() == c].mean(0) for c in range(6)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    b = xte.numpy() / np.linalg.norm(xte.numpy(), axis=1, keepdims=True)
    ref = np.argmax(b @ means.T, axis=1)
    np.testing.assert_array_equal(ncm_predict(xtr, ytr, xte, 6).numpy(), ref)
    np.testing.assert_array_equal(ncm_predict(xtr, ytr, xte, 6, chunk=11).numpy(), ref)
    # rows of very different norms: raw means (004) and means of normalized rows disagree somewhere;
    # the probe follows 004
    scale = torch.from_numpy(np.random.default_rng(15).uniform(0.05, 20.0, size=(300, 1)))
    xs = (xtr - xtr.mean(0)) * scale
    raw = np.stack([xs.numpy()[ytr.numpy() == c].mean(0) for c in range(6)])
    unit = xs.numpy() / np.linalg.norm(xs.numpy(), axis=1, keepdims=True)
    normed = np.stack([unit[ytr.numpy() == c].mean(0) for c in range(6)])
    cos = lambda M: np.argmax(b @ (M / np.linalg.norm(M, axis=1, keepdims=True)).T, axis=1)  # noqa: E731
    b = (xte - xtr.mean(0)).numpy()
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    got = ncm_predict(xs, ytr, xte - xtr.mean(0), 6).numpy()
    np.testing.assert_array_equal(got, cos(raw))
    assert (got != cos(normed)).any()
    # a class without training rows is never predicted
    y2 = ytr.clone()
    y2[y2 == 0] = 1
    assert (ncm_predict(xtr, y2, xte, 6) != 0).all()


# ---------------------------------------------------------------- invariance

def _noise_in_tail(d1):
    def aug(x, g):  # 003's toy augmentation: noise on coordinates d1: only
        a = torch.randn(x.shape, generator=g, dtype=x.dtype)
        a[:, :d1] = 0
        return x + a
    return aug


def test_invariance_zero_for_invariant_map_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g, dtype=torch.float64)
    aug = _noise_in_tail(4)
    head = lambda v: v[:, :4] * 3.0                     # noqa: E731  ignores the augmented coordinates
    assert invariance(head, x, aug, n_views=4, generator=torch.Generator().manual_seed(1)) == 0.0
    ident = invariance(lambda v: v, x, aug, n_views=4, generator=torch.Generator().manual_seed(1))
    assert ident > 0.5   # noise variance 1 on 6 of 10 coordinates, as big as the data spread
    # scale-free, and seeded: the same generator seed gives the same value
    assert invariance(lambda v: 5 * v, x, aug, 4, torch.Generator().manual_seed(1)) == pytest.approx(ident, rel=1e-12)
    # a collapsed (constant) representation is not "invariant": 0/0 → nan
    assert math.isnan(invariance(lambda v: torch.zeros(v.shape[0], 3, dtype=v.dtype), x, aug, 4))


def test_invariance_equals_brute_force_eq2():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    W = torch.randn(5, 3, generator=g, dtype=torch.float64)
    q = lambda v: torch.tanh(v @ W)                      # noqa: E731
    seen = []

    def aug(v, gen):
        out = v + 0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype)
        seen.append(q(out).numpy())
        return out
    got = invariance_per_sample(q, x, aug, n_views=5, generator=torch.Generator().manual_seed(3)).numpy()
    views, clean, V, B = np.stack(seen), q(x).numpy(), 5, 7
    ref = []
    for i in range(B):
        num = np.mean([np.sum((views[a, i] - views[b, i]) ** 2) for a in range(V) for b in range(V) if a != b])
        den = np.mean([np.sum((clean[i] - clean[j]) ** 2) for j in range(B) if j != i])
        ref.append(num / den)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


# ---------------------------------------------------------------- dispatch and extraction

def test_run_probes_dispatch():
    x, y = _blobs(300, 8, 3, seed=15, spread=2.0)
    xtr, ytr, xte, yte = x[:200], y[:200], x[200:], y[200:]
    out = run_probes(["knn", "linear", "masc", "ncm"], xtr, ytr, xte, yte, num_classes=3,
                     probe_cfg=Probe(k=5, masc_threshold=0.9))
    assert set(out) == {"knn_acc", "linear_acc", "masc_acc", "ncm_acc"}
    assert out["knn_acc"] == float((knn_predict(xtr, ytr, xte, k=5) == yte).double().mean())
    assert out["masc_acc"] == masc_accuracy(xtr, ytr, xte, yte, 3, threshold=0.9)
    assert out["linear_acc"] == linear_probe(xtr, ytr, xte, yte)
    assert all(0.0 <= v <= 1.0 for v in out.values())
    with pytest.raises(ValueError, match="invariance"):
        run_probes(["knn", "invariance"], xtr, ytr, xte, yte, num_classes=3)


def test_extract_features_in_idx_order():
    from rlp_tune.config import Model
    from rlp_tune.models import create_model
    torch.manual_seed(0)
    model = create_model(Model(name="mlp", width=16, depth=3, dropout=0.5), in_shape=(2, 5), num_classes=3)
    model.train()
    x = torch.randn(50, 2, 5)
    y = torch.randint(0, 3, (50,))
    perm = torch.randperm(50)
    batches = [(x[perm[i:i + 8]], y[perm[i:i + 8]], perm[i:i + 8]) for i in range(0, 50, 8)]
    feats, labels = extract_features(model, batches, ["input", "layer1", "penultimate"], device="cpu",
                                     with_labels=True)
    assert model.training                                  # mode restored
    model.eval()
    with torch.no_grad():
        _, ref = model(x, taps=("layer1", "penultimate"))
    assert torch.equal(feats["input"], x.flatten(1))
    assert torch.allclose(feats["layer1"], ref["layer1"], atol=1e-6)
    assert torch.allclose(feats["penultimate"], ref["penultimate"], atol=1e-6)
    assert feats["penultimate"].shape == (50, 16) and torch.equal(labels, y)
    with pytest.raises(ValueError, match="nope"):
        extract_features(model, batches, ["nope"])
