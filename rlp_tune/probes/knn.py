"""k-nearest-neighbour probe on frozen features (003: "K-NN probing", K = 20 throughout).

    pred = knn_predict(train_feats, train_labels, test_feats, k=20)          # (M,) int64
    acc = knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=20)
    sims, idx = knn_neighbors(train_feats, test_feats, k=20)                # (M, k) each, best first

Similarity is cosine (dot product of L2-normalized features); the k most similar training points
vote with equal weight and a tie in the vote goes to the lowest class index. Ties in *similarity*
at the k-th place (duplicate training points) are broken by torch.topk, i.e. not specified.

Memory stays bounded whatever N and M are: the test set is processed `chunk` rows at a time and,
within a test chunk, the training set `train_chunk` rows at a time with a running top-k merge, so
the largest temporary is one reused (chunk, train_chunk) similarity block (default ≤ 512 × 65,536
= 32 Mi elements, 128 MiB in fp32). Training rows are not copied: similarity columns are scaled by
1/‖x_j‖ (an (N,) vector). Runs on the tensors' device; float64 inputs are computed in float64,
everything else in float32 (non-fp32 inputs such as bf16 features are converted once).

Certified bf16 prefilter (float32 on CPUs with native bf16 dot products, where a bf16 matmul is
~2× an fp32 one; `prefilter=None` picks it automatically for N ≥ 32,768 training rows, below which
the fixed re-scoring cost outweighs the saving; True/False force it). On 50,000 × 512 random
features it measured 1.6× over the plain fp32 path on a quiet machine (bench/probes.py). The
similarity matmul, nearly all the work, runs in bf16 and keeps k' = k + margin candidates per test row; they are
re-scored exactly in fp32 and the top k taken. The result is the exact fp32 top-k whenever a bound
certifies it: with bf16 unit roundoff u = 2⁻⁸, a bf16 similarity of unit vectors is within
ε = 3u + 4u² + 1.1·d·2⁻²⁴ + 10⁻⁵ of the fp32 one (input rounding ≤ (2u+u²)·Σ|q_i x_i| ≤ 2u+u²,
fp32 accumulation ≤ γ_d, output rounding ≤ u(1+u)²), so every non-candidate scores ≤ (k'-th bf16 score)
+ ε; a row whose exact k-th similarity is above that is certified, any other row is recomputed in
fp32. The error model assumes fp32 accumulation (oneDNN's AVX512-BF16/AMX kernels); if a chunk's
candidates show a bf16-vs-fp32 gap above ε, the prefilter is dropped for the rest of the call.
If over 1/8 of a chunk's rows fail the certificate the margin doubles; if over half fail
(clustered features whose top similarities lie within ε of each other) or the margin reaches its
cap, the prefilter switches off for the rest of the call (costing at most ~one wasted chunk).
The normalized bf16 copy of the training set is kept when ≤ 256 MiB, else each block is
normalized and converted on the fly.
"""
from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

_SIM_BLOCK_ELEMS = 1 << 25    # default cap on chunk × train_chunk similarities
_RERANK_ELEMS = 1 << 23       # cap on rows × candidates × d gathered for the exact re-score
_BF16_U = 2.0 ** -8           # bf16 unit roundoff (8 significant bits)
_BF16_CACHE_BYTES = 256 << 20  # keep a normalized bf16 copy of the train set up to this size
_PREFILTER_MIN_TRAIN = 32768   # auto prefilter only from this many train rows (measured break-even ~2-3e4)


def _check(train_feats, train_labels, test_feats, k):
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(f"knn: features must be 2-D (N, d); got train {tuple(train_feats.shape)}, "
                         f"test {tuple(test_feats.shape)}")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"knn: train width {train_feats.shape[1]} != test width {test_feats.shape[1]}")
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(f"knn: train_labels shape {tuple(train_labels.shape)} != ({train_feats.shape[0]},)")
    if not 1 <= k <= train_feats.shape[0]:
        raise ValueError(f"knn: k={k} must be in [1, {train_feats.shape[0]}] (the number of training points)")


def _compute_dtype(*ts: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 dot-product instructions (AVX512_BF16 / AMX) that oneDNN uses;
    without them a bf16 matmul is emulated and slower than fp32. RLP_KNN_PREFILTER=0/1 overrides."""
    env = os.environ.get("RLP_KNN_PREFILTER")
    if env in ("0", "1"):
        return env == "1"
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    try:
        mkldnn_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_ok = False
    return mkldnn_ok and ("avx512_bf16" in flags or "amx_bf16" in flags)


class _Buf:
    """Named reusable flat buffers: big temporaries (similarity blocks, gathered candidate rows) are
    written into them with out=, so each chunk does not map and page-fault fresh memory."""

    def __init__(self, device):
        self.device, self.bufs = device, {}

    def get(self, name, shape, dtype):
        n = 1
        for s in shape:
            n *= s
        b = self.bufs.get(name)
        if b is None or b.numel() < n or b.dtype != dtype:
            b = self.bufs[name] = torch.empty(n, dtype=dtype, device=self.device)
        return b[:n].view(shape)


def _blockwise_topk(q, get_block, n, kk, train_chunk, buf, col_scale=None):
    """Running top-kk of q @ blockᵀ (· col_scale) over train blocks [tlo, tlo + train_chunk):
    (values (m, kk), index (m, kk))."""
    best_s = best_i = None
    for tlo in range(0, n, train_chunk):
        blk = get_block(tlo, min(n, tlo + train_chunk))                        # (t, d) in q's dtype
        sims = torch.mm(q, blk.T, out=buf.get(f"sims_{q.dtype}", (q.shape[0], blk.shape[0]), q.dtype))   # (m, t)
        if col_scale is not None:
            sims.mul_(col_scale[tlo:tlo + blk.shape[0]])                        # cosine: ÷ ‖x_j‖
        s, i = sims.topk(min(kk, sims.shape[1]), dim=1)                        # (m, ≤kk)
        i = i + tlo
        if best_s is not None:                                                # merge with the running top-kk
            s, j = torch.cat([best_s, s], 1).topk(min(kk, best_s.shape[1] + s.shape[1]), dim=1)
            i = torch.cat([best_i, i], 1).gather(1, j)
        best_s, best_i = s, i
    return best_s, best_i


def _rescore(q, x, inv, cand, buf):
    """Exact cosine similarities of unit rows q (m, d) to the candidate rows x[cand] (m, c) → (m, c)."""
    m, c = cand.shape
    d = q.shape[1]
    rows = max(1, _RERANK_ELEMS // max(c * d, 1))
    out = []
    for lo in range(0, m, rows):
        cb = cand[lo:lo + rows]
        g = torch.index_select(x, 0, cb.reshape(-1), out=buf.get("gather", (cb.numel(), d), x.dtype))
        out.append(torch.bmm(g.view(cb.shape[0], c, d), q[lo:lo + rows, :, None]).squeeze(2))  # (r, c)
    return torch.cat(out).mul_(inv[cand])


def knn_neighbors(train_feats: torch.Tensor, test_feats: torch.Tensor, k: int = 20, chunk: int = 512,
                  train_chunk: int | None = None, prefilter: bool | None = None,
                  stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sims (M, k), index (M, k) int64): the k most cosine-similar training rows of each test row,
    most similar first. `prefilter`: see the module doc (None = auto). `stats`, if given, gets
    counts {"certified", "fallback", "fp32"} of test rows by how they were answered."""
    dt = _compute_dtype(train_feats, test_feats)
    n, d = train_feats.shape
    if train_chunk is None:
        train_chunk = max(k, min(n, _SIM_BLOCK_ELEMS // max(chunk, 1)))
    train_chunk = max(int(train_chunk), k)  # every train block must be able to yield k candidates
    x = train_feats.to(dt)                                                    # no copy when already dt
    # cosine = (q̂ · x_j) / ‖x_j‖: scale similarity columns instead of keeping a normalized copy;
    # the clamp matches F.normalize, so an all-zero row gets similarity 0 to everything
    inv = x.norm(dim=1).clamp_min(1e-12).reciprocal()                         # (N,)
    if prefilter is None:
        # the exact re-score costs ~kk gathered rows per test row whatever N is: pays only for large N
        prefilter = (dt == torch.float32 and x.device.type == "cpu" and n >= _PREFILTER_MIN_TRAIN
                     and cpu_has_native_bf16())
    prefilter = bool(prefilter) and dt == torch.float32
    margin, margin_cap = max(k, 64), max(k, 1024)
    kk = min(n, k + margin)
    if prefilter and kk >= n:          # nothing to prune: the plain path is cheaper
        prefilter = False
    eps = 3 * _BF16_U + 4 * _BF16_U ** 2 + 1.1 * d * 2.0 ** -24 + 1e-5   # + slack for fp32 rounding of exact scores
    # the bf16 prefilter scores normalized rows: cached when small, else normalized per block
    xb = (x * inv[:, None]).to(torch.bfloat16) if prefilter and n * d * 2 <= _BF16_CACHE_BYTES else None

    def bf16_block(lo, hi):
        if xb is not None:
            return xb[lo:hi]
        out = buf.get("block16", (hi - lo, d), torch.bfloat16)
        for a in range(lo, hi, 4096):   # small fp32 temporaries
            out[a - lo:a - lo + 4096].copy_(x[a:min(hi, a + 4096)] * inv[a:min(hi, a + 4096), None])
        return out

    raw_block = lambda lo, hi: x[lo:hi]                                       # noqa: E731
    counts = {"certified": 0, "fallback": 0, "fp32": 0}
    buf = _Buf(x.device)
    out_s, out_i = [], []
    for lo in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[lo:lo + chunk].to(dt), dim=1)               # (m, d)
        s = i = None
        if prefilter:
            sb, cand = _blockwise_topk(q.to(torch.bfloat16), bf16_block, n, kk, train_chunk, buf)  # (m, kk)
            exact = _rescore(q, x, inv, cand, buf)                                             # (m, kk) fp32
            if float((exact - sb.float()).abs().max()) > eps:   # the backend breaks the error model
                prefilter, xb = False, None                     # (e.g. bf16 accumulation): stop using it
            else:
                s, j = exact.topk(k, dim=1)
                i = cand.gather(1, j)
                # every non-candidate scores ≤ (kk-th bf16 score) + ε in fp32
                ok = s[:, -1] > sb[:, -1].float() + eps                                 # (m,) certified rows
                bad = (~ok).nonzero().squeeze(1)
                if len(bad):
                    s2, i2 = _blockwise_topk(q[bad], raw_block, n, k, train_chunk, buf, inv)
                    s, i = s.index_copy(0, bad, s2), i.index_copy(0, bad, i2)
                counts["certified"] += q.shape[0] - len(bad)
                counts["fallback"] += len(bad)
                if len(bad) > q.shape[0] // 8:      # too many uncertified rows: widen, or give up on bf16
                    if len(bad) > q.shape[0] // 2 or margin >= margin_cap or kk >= n:
                        prefilter, xb = False, None
                    else:
                        margin = min(2 * margin, margin_cap)
                        kk = min(n, k + margin)
        if s is None:                   # plain fp32 (prefilter off, or just dropped for this chunk)
            s, i = _blockwise_topk(q, raw_block, n, k, train_chunk, buf, inv)
            counts["fp32"] += q.shape[0]
        out_s.append(s)
        out_i.append(i)
    if stats is not None:
        stats.update(counts)
    if not out_s:
        empty = torch.empty(0, k, device=train_feats.device)
        return empty.to(dt), empty.long()
    return torch.cat(out_s), torch.cat(out_i)


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, k: int = 20,
                num_classes: int | None = None, chunk: int = 512, train_chunk: int | None = None,
                prefilter: bool | None = None) -> torch.Tensor:
    """(M,) int64 predicted class of every test row: unweighted majority of its k cosine-nearest
    training rows; a tied vote goes to the lowest class index."""
    _check(train_feats, train_labels, test_feats, k)
    train_labels = train_labels.long()
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    elif int(train_labels.max()) >= num_classes:
        raise ValueError(f"knn: train label {int(train_labels.max())} >= num_classes {num_classes}")
    _, idx = knn_neighbors(train_feats, test_feats, k=k, chunk=chunk, train_chunk=train_chunk, prefilter=prefilter)
    votes = torch.zeros(idx.shape[0], num_classes, dtype=torch.int32, device=idx.device)
    votes.scatter_add_(1, train_labels.to(idx.device)[idx], torch.ones_like(idx, dtype=torch.int32))
    # torch.argmax returns the first maximal index: the lowest class wins a tied vote
    return votes.argmax(dim=1)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, k: int = 20, num_classes: int | None = None,
                 chunk: int = 512, train_chunk: int | None = None, prefilter: bool | None = None) -> float:
    """Fraction of test rows whose k-NN prediction equals `test_labels`."""
    pred = knn_predict(train_feats, train_labels, test_feats, k=k, num_classes=num_classes, chunk=chunk,
                       train_chunk=train_chunk, prefilter=prefilter)
    return float((pred == test_labels.to(pred.device).long()).double().mean()) if len(pred) else float("nan")
