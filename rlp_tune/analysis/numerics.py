"""Vendored numerics of the fits: numpy re-implementations of scipy pieces, batched over bootstrap
resamples (scipy is not imported on the analysis path: its import alone was ~1 s of every
`rlp-tune analyze`, and the batched forms are what make a bootstrap of hundreds of refits cheap).

    from rlp_tune.analysis.numerics import fit4, logistic4, PSpline, spearman
    r = fit4(x, y, starts, bounds)          # FitResult(x=(high, low, x50, slope), cost=½ Σ r²)

What each piece reproduces, and the test that checks it against the reference (tests/test_analysis.py
unless named otherwise):

- `fit4_weighted`: scipy.optimize.least_squares(method="trf") on the 4-parameter logistic, once per
  row of a weight matrix (bootstrap counts = the resampled, duplicated points); measured 15–20×
  faster than looping least_squares (bench/analysis.py).
  Test: test_batched_bootstrap_fits_equal_scipy_on_resampled_data.
- `fit4`: the best of several least_squares starts.
  Test: test_multistart_fit_finds_the_global_optimum_from_bad_starts.
- `bspline_design`: scipy.interpolate.BSpline.design_matrix(x, t, 3), dense.
  Test: test_bspline_design_matches_scipy.
- `rank_rows`, `spearman_rows`: scipy.stats.rankdata(axis=1) (average ranks for ties) and
  scipy.stats.spearmanr per row. Test: test_spearman_matches_scipy.
- `boot_counts`: rng.multinomial(n, [1/n]*n, size=R) (the resample counts), from one bincount.
  Test: test_boot_counts_are_resamples_with_replacement.
- `column_percentiles`: np.nanpercentile(a, q, axis=0) with linear interpolation, without its
  per-column Python loop (10× slower on a bootstrap band).
  Test: tests/test_analysis_design.py::test_column_percentiles_match_nanpercentile.

`PSpline` (Eilers & Marx's P-spline with GCV) and `polyfit_rows` (`np.polyfit` per row) are plain
linear algebra on top of these. Change a piece only together with its test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def logistic4(x, high, low, x50, slope):
    """low + (high − low) / (1 + exp(slope · (x − x50))): `high` at x → −∞ when slope > 0."""
    z = np.clip(slope * (np.asarray(x, float) - x50), -500, 500)
    return low + (high - low) / (1.0 + np.exp(z))



@dataclass
class FitResult:
    """A least-squares optimum: parameters x and cost = ½ Σ residual² (scipy's convention)."""
    x: np.ndarray
    cost: float


def fit4(x, y, p0s, bounds):
    """Best 4PL least-squares fit over the starts p0s, all run at once through the batched
    Levenberg–Marquardt below (unit weights, one row per start). Returns FitResult(x (4,), cost
    = ½ Σ r², as scipy's least_squares reports it), or None when every start failed."""
    P0 = np.clip(np.asarray(p0s, float), bounds[0] + 1e-9, bounds[1] - 1e-9)   # (S, 4)
    P, cost = fit4_weighted(x, y, np.ones((len(P0), len(x))), P0, bounds, iters=200)
    cost = np.where(np.isfinite(cost), cost, np.inf)
    if not np.isfinite(cost).any():
        return None
    i = int(np.argmin(cost))
    return FitResult(x=P[i].copy(), cost=0.5 * float(cost[i]))


def fit4_weighted(x, y, W, P0, bounds, iters: int = 40):
    """Levenberg–Marquardt for many weightings at once: W (R, N) weights (bootstrap counts), one 4PL
    fit per row started at P0 ((4,) for all rows, or (R, 4)). Returns (params (R, 4), weighted
    cost (R,)), NaN parameter rows where it failed. A bootstrap resample is the data with
    multinomial counts as weights, so R fits are one batched solve per iteration instead of R scipy
    calls. JᵀWJ and JᵀWr are assembled from (R, N) row sums: with e = 1/(1+exp(s·(x−x50))),
    d = x − x50 and q = (high−low)·e(1−e), the Jacobian columns are e, 1−e, s·q, −q·d."""
    R = W.shape[0]
    lo, hi = bounds
    P = np.array(np.broadcast_to(np.asarray(P0, float), (R, 4)))     # (R, 4), a writable copy
    iu = np.triu_indices(4, 1)
    dg = np.arange(4)

    def dot(a, b):                                                    # row-wise Σ_n a·b → (r,)
        return np.einsum("rn,rn->r", a, b)

    def model(P):
        high, low, x50, s = (P[:, i:i + 1] for i in range(4))         # (r, 1) each
        d = x[None, :] - x50                                          # (r, N)
        e = 1.0 / (1.0 + np.exp(np.clip(s * d, -500, 500)))
        return low + (high - low) * e, e, d

    def normal_equations(W, P, f, e, d):
        # Model f = low + (high − low)·e, e = 1/(1 + exp(s·d)), d = x − x50, q = (high − low)·e(1 − e).
        # Jacobian columns (∂f/∂θ per point), θ = (high, low, x50, s):
        #   J0 = ∂f/∂high = e     J1 = ∂f/∂low = 1 − e     J2 = ∂f/∂x50 = s·q     J3 = ∂f/∂s = −q·d
        # Normal equations (JᵀWJ) δ = −JᵀW r, r = f − y, entry by entry as weighted row sums Σ_n W·(·):
        #   A00 = Σ W e² (see)       A01 = Σ W e(1−e) = se − see      A11 = Σ W (1−e)² = ΣW − 2 se + see
        #   A02 = s Σ W q e (s·sqe)  A12 = s Σ W q (1−e) = s (sq − sqe)
        #   A03 = −Σ W q d e (−sqde) A13 = −Σ W q d (1−e) = −(sqd − sqde)
        #   A22 = s² Σ W q²          A23 = −s Σ W q² d                A33 = Σ W q² d²
        #   g = JᵀW r = (Σ W r e, Σ W r (1−e), s Σ W r q, −Σ W r q d)
        s = P[:, 3]
        q = (P[:, 0] - P[:, 1])[:, None] * e * (1 - e)                # (r, N)
        We, Wq = W * e, W * q
        Wqd = Wq * d
        Wr = W * (f - y[None, :])
        see, se = dot(We, e), We.sum(1)
        sqe, sq = dot(Wq, e), Wq.sum(1)
        sqde, sqd = dot(Wqd, e), Wqd.sum(1)
        A = np.empty((len(P), 4, 4))
        A[:, 0, 0], A[:, 0, 1], A[:, 1, 1] = see, se - see, W.sum(1) - 2 * se + see
        A[:, 0, 2], A[:, 1, 2] = s * sqe, s * (sq - sqe)
        A[:, 0, 3], A[:, 1, 3] = -sqde, -(sqd - sqde)
        A[:, 2, 2], A[:, 2, 3], A[:, 3, 3] = s * s * dot(Wq, q), -s * dot(Wqd, q), dot(Wqd, q * d)
        A[:, iu[1], iu[0]] = A[:, iu[0], iu[1]]
        ge, gr = dot(Wr, e), Wr.sum(1)
        g = np.stack([ge, gr - ge, s * dot(Wr, q), -dot(Wr, q * d)], axis=1)   # (r, 4)
        return A, g

    f, e, d = model(P)
    cost = (W * (f - y) ** 2).sum(1)
    damp = np.full(R, 1e-3)
    act = np.arange(R)               # rows still moving: a converged row leaves the batch
    for _ in range(iters):
        Wa, Pa = W[act], P[act]
        A, g = normal_equations(Wa, Pa, f[act], e[act], d[act])
        A[:, dg, dg] += damp[act, None] * (A[:, dg, dg] + 1e-12)      # Marquardt's scaled damping
        try:
            step = np.linalg.solve(A, -g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        Pn = np.clip(Pa + step, lo, hi)
        fn, en, dn = model(Pn)
        cn = (Wa * (fn - y) ** 2).sum(1)
        ok = cn < cost[act]
        k = act[ok]
        P[k], f[k], e[k], d[k], cost[k] = Pn[ok], fn[ok], en[ok], dn[ok], cn[ok]
        damp[act] = np.where(ok, damp[act] * 0.3, damp[act] * 10.0)
        # converged: the proposed step is negligible (a rejected step shrinks as damping grows)
        act = act[~np.all(np.abs(step) < 1e-7 * (1.0 + np.abs(P[act])), axis=1)]
        if not len(act):
            break
    bad = ~np.all(np.isfinite(P), axis=1)
    P[bad], cost[bad] = np.nan, np.nan
    return P, cost


def boot_counts(rng, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) float counts: how often each of n items is drawn in each resample of n with
    replacement (multinomial(n, 1/n) rows, from one bincount — much faster than rng.multinomial)."""
    idx = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)



def bspline_design(x, t, k: int = 3) -> np.ndarray:
    """Dense B-spline design matrix (N, len(t) − k − 1) of degree k on knots t at points x in
    [t[k], t[-k-1]] (Cox–de Boor, the k + 1 non-zero basis values of each point at once; the
    right end belongs to the last interval). Same values as scipy's BSpline.design_matrix."""
    x = np.asarray(x, float)
    n = len(t) - k - 1                                                    # number of basis functions
    j = np.clip(np.searchsorted(t, x, side="right") - 1, k, n - 1)        # (N,) knot interval
    Nb = np.zeros((len(x), k + 1))
    Nb[:, 0] = 1.0
    left = np.zeros((len(x), k + 1))
    right = np.zeros((len(x), k + 1))
    for d in range(1, k + 1):
        left[:, d] = x - t[j + 1 - d]
        right[:, d] = t[j + d] - x
        saved = np.zeros(len(x))
        for r in range(d):
            tmp = Nb[:, r] / (right[:, r + 1] + left[:, d - r])
            Nb[:, r] = saved + right[:, r + 1] * tmp
            saved = left[:, d - r] * tmp
        Nb[:, d] = saved
    out = np.zeros((len(x), n))
    np.put_along_axis(out, (j - k)[:, None] + np.arange(k + 1), Nb, axis=1)
    return out


class PSpline:
    """Cubic P-spline on [a, b]: clamped B-spline basis on equally spaced knots and a second-difference
    penalty α·‖D c‖² (Eilers & Marx). One smoothing α serves any number of weightings, so the
    bootstrap is a batched (R, K, K) solve instead of R separate fits."""

    def __init__(self, a: float, b: float, n_seg: int):
        self.a, self.b = float(a), float(b)
        inner = np.linspace(a, b, n_seg + 1)
        self.t = np.r_[[a] * 3, inner, [b] * 3]
        self.K = n_seg + 3
        D = np.diff(np.eye(self.K), 2, axis=0)                           # (K-2, K)
        self.P = D.T @ D

    def basis(self, x) -> np.ndarray:
        x = np.clip(np.asarray(x, float), self.a, self.b)
        return bspline_design(x, self.t, 3)                               # (N, K)

    def solve(self, B, y, W, alpha) -> np.ndarray:
        """Coefficients (R, K) for weights W (R, N) (or (N,) → (K,))."""
        one = W.ndim == 1
        W2 = W[None] if one else W
        N, K = B.shape
        # BᵀWB for every row of W as one GEMM: W (R, N) @ [B_nk·B_nl] (N, K·K)
        A = (W2 @ (B[:, :, None] * B[:, None, :]).reshape(N, K * K)).reshape(-1, K, K)
        A += alpha * self.P[None] + 1e-10 * np.eye(K)[None]                # (R, K, K)
        rhs = W2 @ (B * y[:, None])                                       # (R, K)
        c = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
        return c[0] if one else c

    def gcv_alpha(self, B, y) -> float:
        """α minimizing generalized cross-validation N·RSS / (N − edf)² over a log grid (unit weights)."""
        BtB = B.T @ B
        scale = np.trace(BtB) / max(np.trace(self.P), 1e-12)
        best, best_a = np.inf, scale
        n = len(y)
        for a in scale * np.logspace(-8, 4, 49):
            M = np.linalg.solve(BtB + a * self.P + 1e-10 * np.eye(self.K), np.c_[B.T @ y, BtB])
            c, H = M[:, 0], M[:, 1:]
            edf = float(np.trace(H))
            rss = float(((B @ c - y) ** 2).sum())
            if n - edf <= 1e-6:
                continue
            g = n * rss / (n - edf) ** 2
            if g < best:
                best, best_a = g, a
        return float(best_a)


def rank_rows(X) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along axis 1 of X (R, N)."""
    X = np.asarray(X, float)
    R, N = X.shape
    order = np.argsort(X, axis=1, kind="stable")
    S = np.take_along_axis(X, order, 1)                                   # sorted rows
    pos = np.broadcast_to(np.arange(N), (R, N))
    new = np.ones((R, N), bool)
    new[:, 1:] = S[:, 1:] != S[:, :-1]                                    # a tie group starts here
    end = np.ones((R, N), bool)
    end[:, :-1] = new[:, 1:]                                              # a tie group ends here
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(end, pos, N - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((R, N))
    np.put_along_axis(ranks, order, 0.5 * (first + last) + 1.0, axis=1)
    return ranks


def spearman_rows(X, Y) -> np.ndarray:
    """Spearman ρ of each row pair of X, Y (R, N) (average ranks for ties); NaN for a constant row."""
    rx, ry = rank_rows(X), rank_rows(Y)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / den, np.nan)


def spearman(x, y) -> float:
    return float(spearman_rows(np.asarray(x, float)[None], np.asarray(y, float)[None])[0])


def polyfit_rows(X, Y, deg: int) -> np.ndarray:
    """Least-squares polynomial per row (R, N) → coefficients (R, deg+1), highest power first."""
    V = X[:, :, None] ** np.arange(deg, -1, -1)                          # (R, N, d)
    Vt = np.swapaxes(V, 1, 2)
    return np.linalg.solve(Vt @ V + 1e-12 * np.eye(deg + 1), (Vt @ Y[:, :, None]))[:, :, 0]


def polyval_rows(C, x: float) -> np.ndarray:
    return (C * x ** np.arange(C.shape[1] - 1, -1, -1)).sum(1)


def column_percentiles(A, qs) -> list[np.ndarray]:
    """Percentiles qs (in %) of each column's finite values of A (R, G), linear interpolation as
    np.nanpercentile; NaN for a column with fewer than 2 finite values."""
    S = np.sort(A, axis=0)                                               # NaN sort last
    n = np.isfinite(A).sum(0)                                            # (G,)
    top = np.maximum(n - 1, 0)
    out = []
    for q in qs:
        pos = top * (q / 100.0)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, top)
        a, b = np.take_along_axis(S, i0[None], 0)[0], np.take_along_axis(S, i1[None], 0)[0]
        out.append(np.where(n >= 2, a + (b - a) * (pos - i0), np.nan))
    return out
