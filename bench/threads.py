"""Threads on a busy node: one Trainer epoch at several torch thread counts, on the machine as it is
and with a CPU-bound job beside it (this script starts that job itself and ends it by its pid).

    nice -n 10 .venv/bin/python bench/threads.py                 # ~3-5 minutes on 2 cores
    .venv/bin/python bench/threads.py --quick                    # one round, small sizes (a smoke run)

Workloads: the digits MLP of configs/digits_mlp.toml (one epoch: 1,500 training samples, batch 64, and its
evaluation) and wrn16_4 on synthetic 32x32 data (`--wrn-samples`, batch 64, one RLP head n = 64).
Thread counts: torch's default (what `run.threads = 0` meant before: every physical core), 1, every
usable core (`os.sched_getaffinity`), and `auto` (what `run.threads = 0` chooses now:
`rlp_tune.net.auto_threads`, the usable cores less the 1-minute load average of other processes).
Conditions: "as is" (the machine with whatever else runs on it: say so when you quote figures), and
"+ job": a competing process that runs fp32 matmuls on every usable core, started `--settle` seconds
before the measurements so the load average sees it. Within a condition the thread counts alternate
epoch by epoch, round after round (side by side); the table shows median seconds per epoch and the
ratio to the best thread count of that row.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rlp_tune.config import Config, load_config  # noqa: E402
from rlp_tune.net import auto_threads, usable_cpus  # noqa: E402
from rlp_tune.run.train import Trainer  # noqa: E402

TORCH_DEFAULT = torch.get_num_threads()     # before anything sets it

COMPETITOR = """
import torch, time
torch.set_num_threads({threads})
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a / 32)
"""


def trainer_for(workload: str, wrn_samples: int) -> Trainer:
    if workload == "digits_mlp":
        cfg = load_config(str(ROOT / "configs" / "digits_mlp.toml")).replace(**{"run.device": "cpu", "run.epochs": 100})
    else:
        cfg = Config().replace(**{
            "data.name": "synthetic", "data.synthetic_size": wrn_samples, "data.image_size": 32,
            "model.name": "wrn16_4", "rlp.n": 64, "rlp.heads": 1, "run.batch_size": 64, "run.epochs": 100,
            "run.device": "cpu", "rlp.eval_samples": 64})
    return Trainer(cfg)


def measure(trainers: dict, settings: dict, rounds: int) -> dict:
    """{(workload, setting): [seconds per epoch, ...]}, the settings alternating epoch by epoch."""
    times = {}
    for r in range(rounds + 1):                    # round 0: warm-up, not kept
        for wl, tr in trainers.items():
            for name, n in settings.items():
                torch.set_num_threads(n() if callable(n) else n)
                t = time.perf_counter()
                tr.run_epoch(2)
                if r:
                    times.setdefault((wl, name), []).append(time.perf_counter() - t)
        print(f"  round {r}/{rounds} done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return times


def table(title: str, times: dict, trainers: dict, settings: dict) -> list[str]:
    lines = [title, f"{'workload':<12}" + "".join(f"{s:>22}" for s in settings)]
    for wl in trainers:
        med = {s: statistics.median(times[(wl, s)]) for s in settings}
        best = min(med.values())
        lines.append(f"{wl:<12}" + "".join(f"{med[s]:>12.3f} s ({med[s] / best:4.2f}x)" for s in settings))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wrn-samples", type=int, default=256)
    ap.add_argument("--settle", type=float, default=45.0, help="seconds the competing job runs before measuring")
    ap.add_argument("--quick", action="store_true", help="1 round, 64 wrn samples, 5 s settle")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.wrn_samples, a.settle = 1, 64, 5.0
    cpus = usable_cpus()
    print(f"threads.py: {os.cpu_count()} CPUs, {cpus} usable (affinity, capped at torch's default "
          f"{TORCH_DEFAULT}); load average at start {os.getloadavg()[0]:.2f}", flush=True)
    trainers = {wl: trainer_for(wl, a.wrn_samples) for wl in ("digits_mlp", "wrn16_4")}
    choice = {}

    def auto():
        n = auto_threads()
        choice.setdefault(cond, []).append(n)
        return n

    settings = {f"default={TORCH_DEFAULT}": TORCH_DEFAULT, "1": 1, f"all={cpus}": cpus, "auto": auto}
    out = []
    cond = "as is"
    t = measure(trainers, settings, a.rounds)
    out += table(f"\n-- as is (load average {os.getloadavg()[0]:.2f}; auto chose {sorted(set(choice[cond]))})",
                 t, trainers, settings)
    cond = "+ job"
    job = subprocess.Popen([sys.executable, "-c", COMPETITOR.format(threads=cpus)])
    try:
        time.sleep(a.settle)
        t = measure(trainers, settings, a.rounds)
        load = os.getloadavg()[0]
    finally:
        job.kill()
        job.wait()
    out += table(f"\n-- + a {cpus}-thread matmul job (load average {load:.2f}; auto chose {sorted(set(choice[cond]))})",
                 t, trainers, settings)
    print("\n".join(out))
    print(f"\nmedian seconds per epoch (training + evaluation) of {a.rounds} rounds; wrn16_4 on "
          f"{a.wrn_samples} synthetic 32x32 samples, batch 64")


if __name__ == "__main__":
    main()
