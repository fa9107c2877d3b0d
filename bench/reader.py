"""Benchmark: the Python API's readers (rlp_tune.reader: DuckDB views, a connection per call) vs the
pyarrow path they replaced (every file read with pyarrow, then the writer's rules: results.dedup_table
for metrics, the newest-row merge of compact_trials for trials), on the same folder, side by side.

    .venv/bin/python bench/reader.py                          # 16 trials × 30 epochs
    .venv/bin/python bench/reader.py --trials 200 --epochs 100 --repeat 5

Two layouts of one synthetic sweep (24 metric rows per epoch: 3 layers × (2 heads + mean) × 2
metrics, + accuracies):
  running   one file per trial and epoch, one trials/<id>.parquet per trial: what `rlp-tune status`
            and the tests' polling of read_trials see while a sweep writes
  finished  final.parquet per trial and trials/all-trials.parquet, as a finished sweep leaves them
For each, the median of --repeat calls of read_trials, read_metrics and read_trial_metrics (one
trial), old (pyarrow) and new (DuckDB), and the ratio old/new (> 1: the new reader is faster).
The machine's other load moves every number; compare the ratios of one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from rlp_tune import reader  # noqa: E402
from rlp_tune.results import ResultWriter, merged_trials, compact_trials, conform_metrics, dedup_table  # noqa: E402


def write_sweep(root: Path, trials: int, epochs: int, finished: bool) -> None:
    for t in range(trials):
        w = ResultWriter(root, "bench", f"t{t:04d}")
        for e in range(1, epochs + 1):
            rows = [{"split": s, "metric": "acc", "value": 0.5 + 0.001 * e} for s in ("train", "val", "test")]
            for layer in ("block1", "block2", "penultimate"):
                for metric in ("rand_acc", "rand_acc_eval"):
                    rows += [{"split": "train", "metric": metric, "layer": layer, "head": h, "value": 0.1 * e}
                             for h in (0, 1, -1)]
            rows += [{"split": "test", "metric": "loss_class", "value": 1.0 / e}, {"split": "train", "metric": "loss",
                                                                                    "value": 1.0 / e}]
            w.write_epoch(e, rows)
        w.write_trial({"run.seed": t, "rlp.lam": 10.0 ** (t % 7 - 3)}, "TERMINATED" if finished else "RUNNING", epochs)
        if finished:
            w.compact()
    if finished:
        compact_trials(root)


def old_metrics(root: Path, trial: str | None = None):
    files = sorted((root / "parquet" / "metrics").glob("*/*.parquet" if trial is None else f"{trial}/*.parquet"))
    return dedup_table(pa.concat_tables([conform_metrics(pq.read_table(f)) for f in files])).to_pandas()


def old_trials(root: Path):
    return merged_trials([pq.read_table(f) for f in sorted((root / "parquet" / "trials").glob("*.parquet"))]).to_pandas()


def median_s(fn, repeat: int) -> float:
    fn()    # warm: imports, page cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{a.trials} trials × {a.epochs} epochs; median of {a.repeat} calls")
        print(f"{'layout':<10}{'reader':<20}{'old pyarrow':>13}{'new DuckDB':>13}{'old/new':>9}")
        for layout in ("running", "finished"):
            root = Path(tmp) / layout
            write_sweep(root, a.trials, a.epochs, layout == "finished")
            one = "t0000"
            pairs = {"read_trials": (lambda: old_trials(root), lambda: reader.read_trials(root)),
                     "read_metrics": (lambda: old_metrics(root), lambda: reader.read_metrics(root)),
                     "read_trial_metrics": (lambda: old_metrics(root, one),
                                            lambda: reader.read_trial_metrics(root, one))}
            for name, (old, new) in pairs.items():
                assert len(old()) == len(new())
                to, tn = median_s(old, a.repeat), median_s(new, a.repeat)
                print(f"{layout:<10}{name:<20}{to * 1e3:>11.1f}ms{tn * 1e3:>11.1f}ms{to / tn:>9.2f}")


if __name__ == "__main__":
    main()
