"""How many test rows the k-NN bf16 prefilter certifies (the rest: exact fp32 fallback), by feature kind.

    OMP_NUM_THREADS=2 .venv/bin/python bench/knn_prefilter_cert.py     # 50,000 × 512 train, 2,000 test, k = 20

Random N(0, 1) features (bench/probes.py's data) against class-clustered non-negative ones, which
is what a trained network's penultimate features look like.
"""
import torch

from rlp_tune.probes.knn import knn_neighbors
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
n, m, d, c = 50000, 2000, 512, 10
ytr, yte = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (m,), generator=g)
centres = torch.randn(c, d, generator=g)
for name, spread in [("random N(0,1) (bench/probes.py data)", None), ("10 clusters, noise 1.0, ReLU", 1.0),
                     ("10 clusters, noise 0.5, ReLU", 0.5), ("10 clusters, noise 0.2, ReLU", 0.2)]:
    if spread is None:
        xtr, xte = torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)
    else:
        xtr = (centres[ytr] + spread * torch.randn(n, d, generator=g)).relu()
        xte = (centres[yte] + spread * torch.randn(m, d, generator=g)).relu()
    st = {}
    knn_neighbors(xtr, xte, k=20, prefilter=True, stats=st)
    print(f"{name:40s} certified {st['certified']:5d}  fp32 fallback {st['fallback']:5d}  fp32 (prefilter dropped) {st['fp32']:5d}  of {m}", flush=True)
