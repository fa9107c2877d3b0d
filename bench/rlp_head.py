"""Benchmark: the fused one-pass RLP head step vs the naive two-pass reference, side by side.

    .venv/bin/python bench/rlp_head.py                 # full table (takes a few minutes)
    .venv/bin/python bench/rlp_head.py --quick         # smaller sizes, seconds
    .venv/bin/python bench/rlp_head.py --configs 10000x1 --no-memory   # one row, time only

Per configuration (d = 512, B = 256, fp32, torch.set_num_threads(2) unless --threads):
- time of forward+backward of one head step (loss = L_rnd + λ·L_reg; grads to W, b and z),
  fused (`rlp_tune.heads.rlp_head_losses`) vs naive (dense logits computed twice: z detached for
  L_rnd, W/b detached for L_reg), medians of repeats taken alternately in this one process (the
  warm-up round also checks that both give the same gradients);
- peak memory of one step: each variant runs in a fresh subprocess; peak RSS (VmHWM, reset through
  /proc/self/clear_refs once the inputs are allocated) minus the RSS at that point. Both variants
  must return dW (h·n·d floats), db and dz; the table also shows the peak with those unavoidable
  gradient outputs subtracted ("work");
- achieved GFLOP/s of the fused step (matmul flops it performs: 6·B·n·d·h dense, 8·B·n·d·h
  chunked, which recomputes the logits in backward) against this machine's fp32 matmul rate
  (a 2048³ matmul at the same thread count).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from rlp_tune.heads import plan_chunk, rlp_head_losses  # noqa: E402

LAM = 1e3


def make_inputs(B, d, n, h, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = ((torch.rand(h, n, d, generator=g) * 2 - 1) / d ** 0.5).requires_grad_()
    b = ((torch.rand(h, n, generator=g) * 2 - 1) / d ** 0.5).requires_grad_()
    z = torch.randn(B, d, generator=g).requires_grad_()
    y = torch.randint(0, n, (B, h), generator=g)
    return W, b, z, y


def step_fused(W, b, z, y, chunk=0):
    l_rnd, l_reg, _ = rlp_head_losses(z.detach(), z, W, b, y, "log1m", chunk)
    (l_rnd.sum() + LAM * l_reg.mean()).backward()


def step_naive(W, b, z, y, chunk=0):
    # the straightforward two-pass version: dense (h, B, n) logits twice
    h, n, _ = W.shape
    yt = y.t()                                                      # (h, B)
    zd = z.detach().unsqueeze(0).expand(h, -1, -1)                  # (h, B, d)
    s1 = torch.baddbmm(b.unsqueeze(1), zd, W.transpose(1, 2))       # (h, B, n), grads → W, b
    l_rnd = F.cross_entropy(s1.reshape(-1, n), yt.reshape(-1), reduction="none").view(h, -1).mean(1)
    zf = z.unsqueeze(0).expand(h, -1, -1)
    s2 = torch.baddbmm(b.detach().unsqueeze(1), zf, W.detach().transpose(1, 2))   # grads → z
    excl = s2.scatter(2, yt.unsqueeze(2), float("-inf"))
    l_reg = (torch.logsumexp(s2, 2) - torch.logsumexp(excl, 2)).mean(1)
    (l_rnd.sum() + LAM * l_reg.mean()).backward()


STEPS = {"fused": step_fused, "naive": step_naive}


def clear(*ts):
    for t in ts:
        t.grad = None


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key} (Linux only)")


def memory_child(variant, B, d, n, h, chunk):
    """Runs in a fresh process: one step; peak RSS over the RSS after the inputs (bytes).
    The peak (VmHWM) is reset by writing 5 to /proc/self/clear_refs once the inputs exist."""
    W, b, z, y = make_inputs(B, d, n, h)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    STEPS[variant](W, b, z, y, chunk)
    peak = _status_kb("VmHWM")
    grads = sum(t.grad.numel() * t.grad.element_size() for t in (W, b, z))
    print(json.dumps({"peak_delta": peak - base, "grads": grads}))


def measure_memory(variant, B, d, n, h, chunk, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--threads", str(threads),
           "--shape", f"{B},{d},{n},{h},{chunk}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _mm_2048():
    a, c = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t0 = time.perf_counter()
    a @ c
    return time.perf_counter() - t0


def time_side_by_side(B, d, n, h, chunk, repeats):
    """Median seconds per variant, and of a 2048³ matmul, taken in turn after one warm-up round
    (so load from other processes hits all of them alike)."""
    W, b, z, y = make_inputs(B, d, n, h)
    times = {k: [] for k in (*STEPS, "mm")}
    grads = {}
    for r in range(repeats + 1):                                    # r = 0 is the warm-up
        for name, fn in STEPS.items():
            clear(W, b, z)
            t0 = time.perf_counter()
            fn(W, b, z, y, chunk)
            dt = time.perf_counter() - t0
            if r:
                times[name].append(dt)
            else:                                                   # same numbers, or no bench
                grads[name] = (z.grad[:ROWS].clone(), b.grad.clone(), W.grad[:, :1000].clone())
        for _ in range(3):
            dt = _mm_2048()
            if r:
                times["mm"].append(dt)
        if not r:
            clear(W, b, z)
            errs = check_grads(W, b, z, y, grads)
    clear(W, b, z)
    return ({k: statistics.median(v) for k, v in times.items()}, {k: min(v) for k, v in times.items()}, errs)


ROWS = 8


def check_grads(W, b, z, y, grads):
    """Relative max errors of the warm-up gradients: dz of the first ROWS samples against a float64
    computation of λ·L_reg for those rows, db and a slice of dW fused against naive."""
    h, B = W.shape[0], z.shape[0]
    W64, b64 = W.detach().double(), b.detach().double()
    z64 = z.detach()[:ROWS].double().requires_grad_()
    s = torch.einsum("bd,hnd->bhn", z64, W64) + b64                # (ROWS, h, n)
    yr = y[:ROWS].unsqueeze(-1)
    l_reg = torch.logsumexp(s, -1) - torch.logsumexp(s.scatter(-1, yr, float("-inf")), -1)
    (LAM * l_reg.sum() / (h * B)).backward()

    def rel(a, r):
        return float((a.double() - r.double()).abs().max() / r.double().abs().max())
    errs = {f"dz vs fp64 {k}": rel(grads[k][0], z64.grad) for k in STEPS}
    errs["db fused vs naive"] = rel(grads["fused"][1], grads["naive"][1])
    errs["dW fused vs naive"] = rel(grads["fused"][2], grads["naive"][2])
    if errs["dz vs fp64 fused"] > 1e-4 or errs["db fused vs naive"] > 1e-4 or errs["dW fused vs naive"] > 1e-4:
        raise SystemExit(f"fused gradients are off: {errs}")
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--configs", default="10000x1,100000x10", help="n x heads, comma separated")
    ap.add_argument("--repeats", type=int, default=0, help="timed repeats per variant (0 = by size)")
    ap.add_argument("--chunk", type=int, default=0, help="fused chunk size (0 = auto)")
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess memory runs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        B, d, n, h, chunk = map(int, args.shape.split(","))
        memory_child(args.child, B, d, n, h, chunk)
        return
    B, d = 256, 512
    configs = ([(2_000, 1), (20_000, 2)] if args.quick else
               [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")])
    print(f"torch {torch.__version__}, torch.set_num_threads({args.threads}), fp32, B={B}, d={d}, "
          f"loss = L_rnd + {LAM:g}·L_reg, grads to W, b, z; load average at start: {_loadavg()}")
    print("time: seconds per step, fused and naive taken in turn in this process; median of the"
          " repeats, and best-of (closest to an unloaded machine)")
    print("GFLOP/s: matmul flops of the fused step (6·B·n·d·h dense, 8·B·n·d·h chunked: the logits"
          " are recomputed in backward) / its time, against a 2048³ fp32 matmul timed in the same"
          " rounds (median / best-of both)")
    print("memory: peak RSS (VmHWM) of one step in a fresh subprocess minus RSS after the inputs;"
          " 'work' = that minus the gradient outputs (dW, db, dz) that both variants must return")
    hdr = (f"{'n':>7} {'h':>3} {'chunk':>6} | {'median: fused':>13} {'naive':>7} {'ratio':>5} | "
           f"{'best: fused':>11} {'naive':>7} {'ratio':>5} | {'MB fused':>8} {'naive':>6} {'ratio':>5} | "
           f"{'work MB f':>9} {'n':>5} {'ratio':>6} | {'GFLOP/s':>7} {'mm':>5} {'frac':>4} | "
           f"{'best GF/s':>9} {'mm':>5} {'frac':>4}")
    print(hdr)
    print("-" * len(hdr))
    checks = []
    for n, h in configs:
        c = plan_chunk(h, B, n, 4, args.chunk)
        reps = args.repeats or (3 if B * n * h >= 10 ** 8 else 15)
        med, best, errs = time_side_by_side(B, d, n, h, args.chunk, reps)
        checks.append(f"n={n} h={h}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        flops = (6 if c >= n else 8) * B * n * d * h
        mm_flops = 2 * 2048 ** 3
        if args.no_memory:
            mem = f"{'-':>8} {'-':>6} {'-':>5} | {'-':>9} {'-':>5} {'-':>6} |"
        else:
            mf = measure_memory("fused", B, d, n, h, args.chunk, args.threads)
            mn = measure_memory("naive", B, d, n, h, args.chunk, args.threads)
            wf, wn = mf["peak_delta"] - mf["grads"], mn["peak_delta"] - mn["grads"]
            mem = (f"{mf['peak_delta'] / 2**20:8.0f} {mn['peak_delta'] / 2**20:6.0f} "
                   f"{mf['peak_delta'] / mn['peak_delta']:5.2f} | {wf / 2**20:9.0f} {wn / 2**20:5.0f} "
                   f"{wf / wn:6.3f} |")
        gf = {k: (flops / v["fused"] / 1e9, mm_flops / v["mm"] / 1e9) for k, v in (("med", med), ("best", best))}
        print(f"{n:7d} {h:3d} {c:6d} | {med['fused']:13.3f} {med['naive']:7.3f} {med['fused'] / med['naive']:5.3f} | "
              f"{best['fused']:11.3f} {best['naive']:7.3f} {best['fused'] / best['naive']:5.3f} | {mem} "
              f"{gf['med'][0]:7.1f} {gf['med'][1]:5.1f} {gf['med'][0] / gf['med'][1]:4.2f} | "
              f"{gf['best'][0]:9.1f} {gf['best'][1]:5.1f} {gf['best'][0] / gf['best'][1]:4.2f}", flush=True)
    print("ratio = fused / naive (time goal ≤ 0.6, memory goal ≤ 0.1); chunk ≥ n is the dense path")
    print("gradient checks (relative max error; the naive fp32 dz loses digits to p - q cancellation):")
    for line in checks:
        print("  " + line)
    print(f"load average at end: {_loadavg()} (a shared machine: other processes slow both variants)")


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
