"""Seeded label manipulation: label noise, stratified subsets/splits, random-label tables.

Everything here is a pure function of its inputs and a seed, so the same config gives the same
labels on every rank, at every world size, and after any resume.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts) -> int:
    """A stable 63-bit seed from a base seed and labels (independent streams per purpose)."""
    h = hashlib.blake2b(repr((seed,) + parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def label_noise(y: torch.Tensor, p: float, num_classes: int, seed: int) -> torch.Tensor:
    """Each label replaced with probability p by a uniform random class (which may equal the old one).
    p = 1 gives fully random labels."""
    if p <= 0:
        return y.clone()
    g = _gen(seed)
    flip = torch.rand(len(y), generator=g) < p
    rnd = torch.randint(0, num_classes, (len(y),), generator=g)
    return torch.where(flip, rnd, y)


def stratified_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded subset keeping `fraction` of every class (at least one each)."""
    if fraction >= 1.0:
        return torch.arange(len(y))
    keep, _ = stratified_split(y, 1.0 - fraction, seed)
    return keep


def stratified_split(y: torch.Tensor, frac_b: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split positions into (a, b), b holding round(frac_b · n_c) of each class c (a keeps ≥ 1)."""
    g = _gen(seed)
    a, b = [], []
    for c in torch.unique(y).tolist():
        pos = torch.nonzero(y == c).flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        nb = min(int(round(frac_b * len(pos))), len(pos) - 1)
        b.append(pos[:nb])
        a.append(pos[nb:])
    return torch.sort(torch.cat(a)).values, torch.sort(torch.cat(b)).values


def random_label_table(m: int, heads: int, n: int, seed: int, tap: str = "", mode: str = "fixed",
                       epoch: int = 0) -> torch.Tensor:
    """(m, heads) int64 random labels in [0, n), indexed by global training-sample index.

    mode "fixed": drawn once from the seed (and the tap name, so every tap has its own table);
    "reshuffle": a fresh draw every epoch (paper A.2 sanity check); "unique": head h is a seeded
    permutation of 0..m-1 (n = m, one label per sample, paper A.5)."""
    parts = ("rlp", tap) + ((epoch,) if mode == "reshuffle" else ())
    g = _gen(derive_seed(seed, *parts))
    if mode == "unique":
        return torch.stack([torch.randperm(m, generator=g) for _ in range(heads)], dim=1)
    return torch.randint(0, n, (m, heads), generator=g)
