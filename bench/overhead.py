"""Trainer overhead: a training epoch of wrn16_4 on 32×32 synthetic data with one RLP head
(n = 10,000) against a minimal hand-written PyTorch loop of the same model without heads.

    .venv/bin/python bench/overhead.py [--samples 512] [--batch 128] [--reps 3] [--threads 2]

Both sides run in this process, alternating, after a warm-up epoch each; the ratio uses the median
epoch time. The trainer's epoch time is its training phase (the `samples_per_s` it records), not
its evaluation pass, so both sides do the same work apart from the RLP head and the bookkeeping.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from rlp_tune.config import Config
from rlp_tune.data import build_data
from rlp_tune.models import create_model
from rlp_tune.run.train import Trainer


def minimal_epoch(model, opt, x, y, batch, gen):
    """The baseline: index-sliced batches from one tensor, CE, SGD. Nothing else."""
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    t = time.perf_counter()
    for i in range(0, len(y), batch):
        idx = perm[i:i + batch]
        xb = x[idx].float().div_(255)
        loss = F.cross_entropy(model(xb)[0], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = Config().replace(**{
        "data.name": "synthetic", "data.synthetic_size": a.samples, "data.image_size": 32, "model.name": "wrn16_4",
        "rlp.n": a.n, "rlp.heads": 1, "rlp.lam": 1.0, "run.batch_size": a.batch, "run.epochs": 100,
        "run.device": "cpu", "optim.lr": 0.05})
    data = build_data(cfg)
    trainer = Trainer(cfg, data=data)
    fit = trainer.fit()

    torch.manual_seed(0)
    model = create_model(cfg.model, data.in_shape, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y, gen = data.x["train"], data.y["train"], torch.Generator().manual_seed(0)

    next(fit)                                   # warm-up epochs
    minimal_epoch(model, opt, x, y, a.batch, gen)
    t_rlp, t_min = [], []
    for _ in range(a.reps):
        rec = next(fit)
        t_rlp.append(a.samples / rec.get("train", "samples_per_s"))
        t_min.append(minimal_epoch(model, opt, x, y, a.batch, gen))
    fit.close()
    r, m = statistics.median(t_rlp), statistics.median(t_min)
    print(f"wrn16_4, {a.samples} synthetic 32x32 samples, batch {a.batch}, {a.threads} threads, {a.reps} reps")
    print(f"  rlp_tune Trainer, 1 RLP head n={a.n} (λ=1): {r:.3f} s/epoch  (all: {', '.join(f'{v:.3f}' for v in t_rlp)})")
    print(f"  minimal PyTorch loop, no head:          {m:.3f} s/epoch  (all: {', '.join(f'{v:.3f}' for v in t_min)})")
    print(f"  ratio trainer/minimal: {r / m:.3f}  (goal <= 1.15)")


if __name__ == "__main__":
    main()
