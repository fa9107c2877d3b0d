"""MASC, the Minimum Angle Subspace Classifier (004), on frozen layer features.

    m = masc_fit(train_feats, train_labels, num_classes=10, threshold=0.99)
    angles = m.angles(test_feats)        # (M, C) radians, angle between x and class c's subspace
    pred = m.predict(test_feats)         # (M,) argmin angle (ties → lowest class)
    acc = masc_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes=10)

Fit (004, "Method Summary"): for each class c, stack its training features with their negatives,
Z_c = [X_c; −X_c], so the data is zero-mean and the PCA subspace passes through the origin. Its
covariance is Z_cᵀZ_c / (2 n_c) = X_cᵀX_c / n_c; one `torch.linalg.eigh` gives the spectrum
λ_1 ≥ λ_2 ≥ …, and the basis U_c keeps the first k_c eigenvectors with

    k_c = #{j : Σ_{i≤j} λ_i / Σ_i λ_i ≤ threshold} + 1        (threshold = 0.99 in 004)

which is scikit-learn's PCA(n_components=threshold) rule. k_c is capped at the class's numerical
rank (eigenvalues ≤ 1e-12·λ_1 (float64) carry no data, and their eigenvectors are arbitrary), so
threshold = 1 means "the span of the class's training data". When n_c < d the same eigenpairs come
from the n_c × n_c Gram matrix X_c X_cᵀ / n_c (U = X_cᵀV / √(n_c λ)), a smaller eigh.

Predict: the angle between x and subspace U_c is θ_c(x) = arccos(‖U_cᵀx‖ / ‖x‖); x goes to the
class of minimum angle. A class with no training points has an empty subspace (θ = π/2), as does
an all-zero test row for every class (which then goes to class 0). Angles are batched: one matmul
of a test chunk against all bases side by side, then a per-class sum of squares. Math in float64
by default (`dtype=`); runs on the features' device.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register_probe


def explained_variance_k(eigvals_desc: torch.Tensor, threshold: float) -> int:
    """Number of components kept for a spectrum sorted in descending order: the count of leading
    components whose cumulative explained-variance ratio is ≤ threshold, plus one (capped at the
    spectrum's length)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"masc: threshold must be in (0, 1], got {threshold}")
    lam = eigvals_desc.clamp_min(0)
    total = lam.sum()
    if total <= 0:
        return 0
    cum = torch.cumsum(lam, 0) / total
    return min(int((cum <= threshold).sum()) + 1, lam.numel())


@dataclass
class MASC:
    bases: list[torch.Tensor]        # per class: (d, k_c) orthonormal columns (k_c may be 0)
    threshold: float

    @property
    def num_classes(self) -> int:
        return len(self.bases)

    @property
    def dims(self) -> list[int]:
        return [b.shape[1] for b in self.bases]

    def angles(self, test_feats: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """(M, C) angle in radians between each test row and each class subspace."""
        U = torch.cat(self.bases, dim=1)                                          # (d, K), K = Σ k_c
        owner = torch.repeat_interleave(torch.arange(self.num_classes, device=U.device),
                                        torch.tensor(self.dims, device=U.device))  # (K,) class of each column
        out = []
        for lo in range(0, test_feats.shape[0], chunk):
            x = test_feats[lo:lo + chunk].to(device=U.device, dtype=U.dtype)       # (m, d)
            proj2 = (x @ U).square()                                              # (m, K)
            per_class = torch.zeros(x.shape[0], self.num_classes, dtype=U.dtype, device=U.device)
            per_class.index_add_(1, owner, proj2)                                 # (m, C) ‖U_cᵀx‖²
            xnorm = x.norm(dim=1, keepdim=True)                                   # (m, 1)
            cos = torch.where(xnorm > 0, per_class.sqrt() / xnorm.clamp_min(torch.finfo(U.dtype).tiny),
                              torch.zeros_like(per_class))
            out.append(torch.arccos(cos.clamp(0.0, 1.0)))
        if not out:
            return torch.empty(0, self.num_classes, dtype=U.dtype, device=U.device)
        return torch.cat(out)

    def predict(self, test_feats: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        # argmin returns the first minimal index: ties go to the lowest class
        return self.angles(test_feats, chunk=chunk).argmin(dim=1)


def _class_basis(xc: torch.Tensor, threshold: float) -> torch.Tensor:
    n, d = xc.shape
    if n == 0:
        return xc.new_zeros(d, 0)
    if n < d:  # Gram route: eigenpairs of X Xᵀ/n share the nonzero eigenvalues of XᵀX/n
        lam, V = torch.linalg.eigh(xc @ xc.T / n)                                # ascending
    else:
        lam, V = torch.linalg.eigh(xc.T @ xc / n)
    lam, V = lam.flip(0), V.flip(1)                                               # descending
    rank = int((lam > lam[0].clamp_min(0) * (1e-12 if xc.dtype == torch.float64 else 1e-6)).sum())
    k = min(explained_variance_k(lam, threshold), rank)
    if n < d:
        return (xc.T @ V[:, :k]) / torch.sqrt(n * lam[:k])                        # (d, k) unit columns
    return V[:, :k].contiguous()


def masc_fit(train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int | None = None,
             threshold: float = 0.99, dtype: torch.dtype = torch.float64) -> MASC:
    """One subspace per class from [X_c; −X_c] keeping `threshold` of its variance (see module doc)."""
    if train_feats.ndim != 2 or train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"masc: want train_feats (N, d) and train_labels (N,); got "
                         f"{tuple(train_feats.shape)} and {tuple(train_labels.shape)}")
    explained_variance_k(torch.ones(1), threshold)  # validates threshold up front
    y = train_labels.to(train_feats.device).long()
    if num_classes is None:
        num_classes = int(y.max()) + 1
    x = train_feats.to(dtype)
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=num_classes).tolist()
    if len(counts) > num_classes:
        raise ValueError(f"masc: train label {len(counts) - 1} >= num_classes {num_classes}")
    groups = torch.split(x[order], counts)                                        # class c rows
    return MASC(bases=[_class_basis(g, threshold) for g in groups], threshold=threshold)


def masc_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int | None = None,
                  threshold: float = 0.99) -> float:
    pred = masc_fit(train_feats, train_labels, num_classes, threshold).predict(test_feats)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")


__all__ = ["MASC", "masc_fit", "masc_accuracy", "explained_variance_k"]


@register_probe("masc", options={"threshold": "masc_threshold"})
def masc_probe(train_feats, train_labels, test_feats, test_labels, num_classes, seed, threshold):
    """The registered MASC probe (004: threshold 0.99)."""
    return masc_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes, threshold=threshold)
