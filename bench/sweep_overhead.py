"""Sweep overhead: a Ray Tune sweep of 4 trials against the same 4 trainings run back to back in one
process, in the same script.

    .venv/bin/python bench/sweep_overhead.py [--epochs 20] [--concurrent 1]

Both sides train the same 4 configs (λ from a fixed grid via `choice`, FIFO scheduler, one CPU per
trial). With --concurrent 1 the sweep runs one trial at a time, so the ratio is pure overhead (Ray
start, trial actors, Parquet, Tune reporting and checkpoints); with the default (what the machine
holds) the sweep may also win by running trials in parallel. The sequential side uses one thread
per training, as a one-CPU trial does.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAMS = [0.0, 0.1, 1.0, 10.0]

SPACE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"run.epochs" = {epochs}
"run.threads" = 1
[search]
"rlp.lam" = {{ dist = "choice", values = {lams} }}
[sweep]
name = "overhead"
num_samples = 4
max_concurrent = {concurrent}
[scheduler]
type = "fifo"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=1)
    a = ap.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from rlp_tune.tune.space import load_space
    from rlp_tune.tune.sweep import loopback_only
    loopback_only()
    tmp = Path(tempfile.mkdtemp())
    space_file = tmp / "overhead.toml"
    space_file.write_text(SPACE.format(root=ROOT, epochs=a.epochs, lams=LAMS, concurrent=a.concurrent))
    space = load_space(space_file)

    import torch
    from rlp_tune.run.train import Trainer
    t0 = time.perf_counter()
    seq_each = []
    for lam in LAMS:
        t = time.perf_counter()
        list(Trainer(space.base.replace(**{"rlp.lam": lam}), out_dir=tmp / "seq" / f"lam{lam}").fit())
        seq_each.append(time.perf_counter() - t)
    t_seq = time.perf_counter() - t0
    torch.set_num_threads(1)

    from rlp_tune.tune.sweep import run_sweep
    t0 = time.perf_counter()
    run_sweep(space, storage=str(tmp / "sweep"))
    t_sweep = time.perf_counter() - t0

    print(f"4 trainings of digits_mlp, {a.epochs} epochs, λ in {LAMS}; sweep concurrency {a.concurrent}", file=sys.stderr)
    print(f"  back to back in one process: {t_seq:.1f} s  (each: {', '.join(f'{v:.1f}' for v in seq_each)})")
    print(f"  Ray Tune sweep (incl. Ray start/stop): {t_sweep:.1f} s")
    print(f"  ratio sweep/sequential: {t_sweep / t_seq:.2f}  (goal <= 1.25)")


if __name__ == "__main__":
    main()
