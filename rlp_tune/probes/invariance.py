"""Normalized invariance I(x; q, T) of a representation q under random augmentations (003, eq. 2).

    from rlp_tune.probes.invariance import invariance, invariance_per_sample
    g = torch.Generator(device=x.device).manual_seed(0)
    inv = invariance(lambda v: model(v, taps=("penultimate",))[1]["penultimate"], x, augment, n_views=4, generator=g)

003, Sec. 5.2, eq. (2):

    I(x; q, T) := E_{T1,T2 ~ U(T)} ‖q(T1(x)) − q(T2(x))‖²  /  E_{x' ≠ x} ‖q(x) − q(x')‖²

0 means fully invariant (every augmentation of x maps to the same representation); larger means
less invariant. The denominator (distances between clean representations of different samples)
keeps a collapsed, constant q from scoring as invariant; for a collapsed q it is 0 and I is
inf (or nan when the numerator is 0 as well). `invariance` returns the batch mean of I(x) (003's
Fig. 6 "averaged normalized invariance", lower = more invariant).

Estimators, per sample x of the batch (B ≥ 2 samples, V = n_views ≥ 2 independent draws T_1..T_V):
  numerator   mean over the V(V−1)/2 pairs a < b of ‖q(T_a x) − q(T_b x)‖² (computed directly, so
              identical views give exactly 0; V is small)
  denominator mean over the B−1 other samples x' of the batch of ‖q(x) − q(x')‖²
              = B/(B−1) · (‖q(x) − q̄‖² + mean_j ‖q(x_j) − q̄‖²)      (Lemma B.1, a = q(x))
so the cost is V + 1 forward passes and O(V²·B·a) arithmetic, no B × B matrix. q's outputs are
flattened to (B, a); q runs under torch.no_grad.
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import register_probe

FeatureFn = Callable[[torch.Tensor], torch.Tensor]
AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def invariance_per_sample(feature_fn: FeatureFn, x: torch.Tensor, augment: AugmentFn, n_views: int = 4,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) float64 tensor of I(x_i; q, T) for every sample of the batch `x`."""
    if n_views < 2:
        raise ValueError(f"invariance: n_views must be >= 2 (pairs of augmentations), got {n_views}")
    if x.shape[0] < 2:
        raise ValueError(f"invariance: the batch needs >= 2 samples (E over x' != x), got {x.shape[0]}")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(0)
    with torch.no_grad():
        q = lambda v: feature_fn(v).reshape(v.shape[0], -1).double()  # noqa: E731  (B, a)
        clean = q(x)                                                     # (B, a)
        views = torch.stack([q(augment(x, generator)) for _ in range(n_views)])  # (V, B, a)
    V, B = n_views, x.shape[0]
    num = torch.zeros(B, dtype=torch.float64, device=views.device)
    for a in range(V - 1):
        num += (views[a + 1:] - views[a]).square().sum(-1).sum(0)       # (B,) Σ_b>a ‖q(T_a x) − q(T_b x)‖²
    num /= V * (V - 1) / 2
    dev = (clean - clean.mean(0)).square().sum(-1)                       # (B,) ‖q(x) − q̄‖²
    den = (dev + dev.mean()) * (B / (B - 1))
    return num / den


def invariance(feature_fn: FeatureFn, x: torch.Tensor, augment: AugmentFn, n_views: int = 4,
               generator: torch.Generator | None = None) -> float:
    """Batch mean of I(x; q, T) (003 eq. 2); 0 = invariant, larger = less invariant."""
    return float(invariance_per_sample(feature_fn, x, augment, n_views, generator).mean())


# not a feature probe: probes/layers.py runs it on each tap with the run's augmentation
register_probe("invariance", features=False)(invariance)
