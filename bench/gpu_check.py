"""The GPU check's measurements (run by bench/gpu_check.sh; `--dry`: the same on the CPU at tiny sizes).

    python bench/gpu_check.py [--dry] [--only trainer,loop,heads,sweep] [--budget 450]

Parts, each printing ratios measured side by side in this process (alternating rounds after a
warm-up, medians):
  trainer  the Trainer's wrn16_4 training epoch (synthetic 32x32 data on the device, one RLP head)
           in fp32, bf16 (run.precision), channels_last (model.channels_last), compile (run.compile)
           and all three; ratio = fp32 time / mode time (> 1: faster)
  loop     the Trainer (fp32) against a minimal hand loop of the same model without heads (CE, SGD)
  heads    the fused RLP head step (rlp_tune.heads) against the naive two-pass head
           (bench/rlp_head.py) at n = 100,000 x 10 heads, B = 256, d = 512: time and peak memory
  sweep    a 4-trial sweep (wrn16_4, 2 epochs) at gpus_per_worker = 1 and 0.25: trials per hour;
           needs ray, optuna, duckdb (skipped with a line when they are missing)
A part that would start after `--budget` seconds is skipped with a line (the whole check must end
in 8 minutes on one GPU). `--dry` runs every part on the CPU with tiny sizes (8x8 images; the sweep on an
embedded Ray that declares one GPU, trials on the CPU); compile is left out there (inductor's CPU
build alone takes minutes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

PARTS = ("trainer", "loop", "heads", "sweep")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_line(dev: torch.device) -> str:
    from rlp_tune.provenance import device_name
    if dev.type == "cuda":
        gib = torch.cuda.get_device_properties(dev).total_memory / 2**30
        return f"device: {device_name(dev)} ({gib:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"device: CPU {device_name(dev)} ({torch.get_num_threads()} threads), torch {torch.__version__}"


def wrn_config(a, dev: str, **extra):
    from rlp_tune.config import Config
    samples, batch = a.samples, a.batch
    return Config().replace(**{
        "data.name": "synthetic", "data.synthetic_size": samples, "data.image_size": a.image, "model.name": "wrn16_4",
        "rlp.n": 1000, "rlp.heads": 1, "rlp.lam": 1.0, "rlp.eval_samples": min(256, samples),
        "run.batch_size": batch, "run.epochs": 100, "run.device": dev, "optim.lr": 0.05, **extra})


def epoch_seconds(rec, samples: int) -> float:
    """The training phase of one Trainer epoch (its samples_per_s: evaluation left out)."""
    return samples / rec.get("train", "samples_per_s")


def part_trainer(a, dev) -> None:
    from rlp_tune.run.train import Trainer
    modes = {"fp32": {}, "bf16": {"run.precision": "bf16"}, "channels_last": {"model.channels_last": True},
             "compile": {"run.compile": True},
             "bf16+cl+compile": {"run.precision": "bf16", "model.channels_last": True, "run.compile": True}}
    if a.dry:
        modes = {k: v for k, v in modes.items() if "compile" not in k}
    fits = {}
    for name, extra in modes.items():   # each built and warmed up (compile happens in its first epoch)
        t0 = time.perf_counter()
        fits[name] = Trainer(wrn_config(a, dev.type, **extra)).fit()
        next(fits[name])
        print(f"  {name}: built + warm-up epoch {time.perf_counter() - t0:.1f} s", flush=True)
    times = {k: [] for k in modes}
    for _ in range(a.rounds):
        for name, fit in fits.items():
            times[name].append(epoch_seconds(next(fit), a.samples))
    for fit in fits.values():
        fit.close()
    base = statistics.median(times["fp32"])
    print(f"trainer: wrn16_4 epoch, {a.samples} samples {a.image}x{a.image}, batch {a.batch}, median of {a.rounds}")
    for name in modes:
        med = statistics.median(times[name])
        print(f"  {name:<18}{med:8.3f} s/epoch   x{base / med:5.2f} vs fp32")


def part_loop(a, dev) -> None:
    from overhead import minimal_epoch   # bench/overhead.py: the same baseline on the CPU

    from rlp_tune.data import build_data
    from rlp_tune.models import create_model
    from rlp_tune.run.train import Trainer
    cfg = wrn_config(a, dev.type)
    data = build_data(cfg)
    fit = Trainer(cfg, data=data).fit()
    torch.manual_seed(0)
    model = create_model(cfg.model, data.in_shape, data.num_classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = data.x["train"].to(dev), data.y["train"].to(dev)
    gen = torch.Generator().manual_seed(0)

    def hand() -> float:
        sync(dev)
        t0 = time.perf_counter()
        minimal_epoch(model, opt, x, y, a.batch, gen)
        sync(dev)
        return time.perf_counter() - t0

    next(fit)
    hand()
    t_tr, t_hand = [], []
    for _ in range(a.rounds):
        t_tr.append(epoch_seconds(next(fit), a.samples))
        t_hand.append(hand())
    fit.close()
    r, m = statistics.median(t_tr), statistics.median(t_hand)
    print(f"loop: Trainer (1 RLP head n=1000) {r:.3f} s/epoch, minimal loop (no head) {m:.3f} s/epoch: "
          f"ratio {r / m:.2f}")


def part_heads(a, dev) -> None:
    from rlp_head import clear, make_inputs, step_fused, step_naive   # bench/rlp_head.py
    n, h, B, d = a.head_n, a.head_h, 256, 512
    W, b, z, y = (t.to(dev) for t in make_inputs(B, d, n, h))
    W, b, z = (t.detach().requires_grad_() for t in (W, b, z))
    steps = {"fused": step_fused, "naive": step_naive}
    times, peak = {k: [] for k in steps}, {}
    for r in range(a.rounds + 1):                                # r = 0: warm-up and peak memory
        for name, fn in steps.items():
            clear(W, b, z)
            sync(dev)
            if dev.type == "cuda" and not r:
                torch.cuda.reset_peak_memory_stats(dev)
                before = torch.cuda.memory_allocated(dev)
            t0 = time.perf_counter()
            fn(W, b, z, y)
            sync(dev)
            if r:
                times[name].append(time.perf_counter() - t0)
            elif dev.type == "cuda":
                peak[name] = (torch.cuda.max_memory_allocated(dev) - before) / 2**20
    clear(W, b, z)
    f, nv = statistics.median(times["fused"]), statistics.median(times["naive"])
    mem = (f"peak memory above the inputs: fused {peak['fused']:.0f} MiB, naive {peak['naive']:.0f} MiB "
           f"(x{peak['naive'] / peak['fused']:.2f})") if peak else "peak memory: measured on CUDA only"
    print(f"heads: n = {n:,} x {h} heads, B = {B}, d = {d}, fp32: fused {f * 1e3:.1f} ms/step, naive "
          f"{nv * 1e3:.1f} ms/step (x{nv / f:.2f}); {mem}")


SPACE = """base = "{base}"
[fixed]
"data.val_fraction" = 0.2
"run.device" = "{device}"
[search]
"rlp.lam" = {{ dist = "grid", values = [0.1, 1.0, 10.0, 100.0] }}
[sweep]
design = "grid"
name = "{name}"
[resources]
cpus_per_worker = {cpus}
gpus_per_worker = {gpus}
"""


def part_sweep(a, dev) -> None:
    try:
        import duckdb  # noqa: F401
        import optuna  # noqa: F401
        import ray
    except ImportError as e:
        print(f"sweep: skipped ({e.name} is not installed; see bench/gpu_check.sh's header for the wheels)")
        return
    from rlp_tune.config import to_toml
    from rlp_tune.tune.space import load_space
    from rlp_tune.tune.sweep import run_sweep
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    cfg = wrn_config(a, dev.type, **{"run.epochs": 2})
    (tmp / "base.toml").write_text(to_toml(cfg))
    cpus = max(1, (os.cpu_count() or 4) // 4)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # an embedded Ray of this machine; --dry declares one GPU that the CPU trials only share by name
    ray.init(address="local", num_cpus=4 * cpus, num_gpus=1 if a.dry else None, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    try:
        rate = {}
        for gpus in (1, 0.25):
            name = f"g{str(gpus).replace('.', '_')}"
            p = tmp / f"{name}.toml"
            p.write_text(SPACE.format(base=tmp / "base.toml", device=dev.type, name=name, cpus=cpus, gpus=gpus))
            t0 = time.perf_counter()
            out = run_sweep(load_space(p), storage=str(tmp / "res"), address=ray.get_runtime_context().gcs_address)
            wall = time.perf_counter() - t0
            rate[gpus] = out["n_trials"] / wall * 3600
            print(f"  gpus_per_worker = {gpus}: {out['n_trials']} trials in {wall:.1f} s (exit {out['exit_code']})",
                  flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"sweep: 4 wrn16_4 trials x 2 epochs; trials per hour: {rate[1]:.0f} at 1 GPU each, "
          f"{rate[0.25]:.0f} at 0.25 (x{rate[0.25] / rate[1]:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="on the CPU, tiny sizes (seconds; the sweep ~a minute)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds after which no new part starts")
    a = ap.parse_args()
    parts = [p.strip() for p in a.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"--only: unknown part {bad[0]!r} (one of {', '.join(PARTS)})")
    if a.dry:
        dev = torch.device("cpu")
        a.samples, a.batch, a.image, a.rounds, a.head_n, a.head_h = 32, 16, 8, 1, 2_000, 2
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device visible (use --dry on a CPU machine)")
        dev = torch.device("cuda", 0)
        a.samples, a.batch, a.image, a.rounds, a.head_n, a.head_h = 10_000, 128, 32, 3, 100_000, 10
    print(device_line(dev), flush=True)
    start = time.perf_counter()
    for part in parts:
        spent = time.perf_counter() - start
        if spent > a.budget:
            print(f"{part}: skipped ({spent:.0f} s spent of a {a.budget:.0f} s budget)")
            continue
        t0 = time.perf_counter()
        globals()[f"part_{part}"](a, dev)
        print(f"  ({part}: {time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
