"""Percentile-bootstrap helpers shared by the fits: seeded generators, CIs, means with CIs.

    rng = rng_for("memorization_vs_lambda", seed=0)
    ci([...samples...])                    # [2.5th, 97.5th] percentile, or None with < 20 samples

Every CI in the analysis is a percentile bootstrap (2.5 / 97.5) over trials resampled with
replacement; a fit's generator is seeded by (seed, crc32(name)) so the same results give the same
CIs, whatever order the fits run in.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CI_MIN_SAMPLES = 20      # fewer finite bootstrap values than this: no CI (None)


def rng_for(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def ci(samples, min_ok: int = CI_MIN_SAMPLES) -> list[float] | None:
    """[2.5, 97.5] percentiles of the finite samples; None with fewer than min_ok of them."""
    a = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if len(a) < min_ok:
        return None
    lo, hi = np.percentile(a, [2.5, 97.5])
    return [float(lo), float(hi)]


def boot_mean_ci(y, rng, n_boot: int) -> list[float] | None:
    """CI of the mean of y's finite values (None with fewer than 2)."""
    y = np.asarray(y, float)
    y = y[np.isfinite(y)]
    if len(y) < 2:
        return None
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    return ci(y[idx].mean(axis=1))


def finite(*arrays):
    """The arrays restricted to the positions where every one of them is finite."""
    m = np.ones(len(arrays[0]), bool)
    for a in arrays:
        m &= np.isfinite(np.asarray(a, float))
    return [np.asarray(a, float)[m] for a in arrays]


@dataclass
class Baseline:
    """The λ = 0 trials of a λ fit: their count, mean and its CI."""
    n: int
    mean: float
    ci: list[float] | None

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "ci": self.ci}


def baseline(y0, rng, n_boot) -> Baseline | None:
    y0 = np.asarray(y0, float)
    y0 = y0[np.isfinite(y0)]
    if not len(y0):
        return None
    return Baseline(n=int(len(y0)), mean=float(y0.mean()), ci=boot_mean_ci(y0, rng, n_boot))
