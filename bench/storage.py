"""Benchmark: the readers on an object store vs the same sweep on a local folder, side by side.

    .venv/bin/python bench/storage.py                    # analyze: 1,000 trials × 200 epochs; status: 100 trials
    .venv/bin/python bench/storage.py --trials 200 --epochs 50

A real S3 endpoint runs on 127.0.0.1 (moto's server, tests/s3server.py: the S3 protocol over HTTP;
needs the test extra). One synthetic finished sweep (bench/analysis.py's generator: one compacted
final.parquet per trial, trials compacted; the status sweep with the ledger its driver leaves) is written to a local folder and uploaded to a bucket;
then, in this one run, each reader is timed on both (median of --repeat calls):
  - `rlp_tune.analysis.analyze(root)`   loading + every fit + bootstrap  (goal: URI within 3× of local)
  - `rlp-tune status`'s table (tune.status.trial_table) on a --status-trials sweep, and the same as
    a fresh process (`rlp-tune status`: interpreter start and imports included; goal < 2 s on S3)
A moto server on loopback answers faster than a real bucket across a network (no TLS, no distance)
and slower per request than S3 does under parallel load; the ratio says what the code path costs.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import s3server  # noqa: E402
from analysis import make_sweep, write_parquet  # noqa: E402  (bench/analysis.py)

SPACE = """[fixed]
"run.epochs" = {epochs}
[search]
"rlp.lam" = {{ dist = "loguniform", low = 0.01, high = 10000.0 }}
[sweep]
name = "bench"
num_samples = {trials}
metric = "train.acc"
"""


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_ledger(root: Path, epochs: int) -> None:
    """The ledger a driver leaves: each trial's assignment and end, snapshotted as a session ends."""
    from rlp_tune.reader import read_trials
    from rlp_tune.tune.ledger import Ledger, TrialRecord
    led = Ledger(str(root))
    for i, tid in enumerate(read_trials(root).trial_id):
        led.add_trial(TrialRecord(tid, {"rlp.lam": float(i)}, 0, i))
        led.add_end(tid, "TERMINATED", epochs, {e: 0.5 for e in range(1, epochs + 1)}, {})
    led.snapshot()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--status-trials", type=int, default=100)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from rlp_tune.analysis.document import analyze
    from rlp_tune.tune.status import trial_table

    tmp = Path(tempfile.mkdtemp(prefix="rlp_bench_storage_"))
    big, small = tmp / "big", tmp / "small"
    write_parquet(big, make_sweep(args.trials, args.epochs))
    write_parquet(small, make_sweep(args.status_trials, args.epochs, seed=1))
    (small / "space.toml").write_text(SPACE.format(epochs=args.epochs, trials=args.status_trials))
    write_ledger(small, args.epochs)
    print(f"data: analyze {args.trials} trials × {args.epochs} epochs; status {args.status_trials} trials")
    with s3server.running() as bucket:
        b = bucket()
        t = time.perf_counter()
        s3server.upload(big, f"{b}/big")
        s3server.upload(small, f"{b}/small")
        print(f"  uploaded to {b} in {time.perf_counter() - t:.1f} s")
        rows = []
        for name, local, remote in [
            (f"analyze ({args.trials} trials)", lambda: analyze(big, n_boot=args.boot),
             lambda: analyze(f"{b}/big", n_boot=args.boot)),
            (f"status table ({args.status_trials} trials)", lambda: trial_table(str(small), "train.acc"),
             lambda: trial_table(f"{b}/small", "train.acc")),
            (f"`rlp-tune status` process ({args.status_trials} trials)",
             lambda: subprocess.run([sys.executable, "-m", "rlp_tune.cli", "status", str(small)], check=True,
                                    capture_output=True),
             lambda: subprocess.run([sys.executable, "-m", "rlp_tune.cli", "status", f"{b}/small"], check=True,
                                    capture_output=True)),
        ]:
            tl, tr = timed(local, args.repeat), timed(remote, args.repeat)
            rows.append((name, tl, tr))
    print(f"{'reader':<44}{'local':>10}{'s3 (moto)':>12}{'s3/local':>10}")
    for name, tl, tr in rows:
        print(f"{name:<44}{tl:>9.2f}s{tr:>11.2f}s{tr / tl:>9.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
