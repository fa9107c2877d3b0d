"""Benchmark: analysis over Parquet results vs loading Ray Tune's result.json files with pandas.

    .venv/bin/python bench/analysis.py                 # 1,000 trials × 200 epochs × 13 layers (~3.6M rows)
    .venv/bin/python bench/analysis.py --trials 100    # a quicker look

One synthetic sweep is written twice into a temporary folder:
  - as rlp_tune Parquet results: one compacted final.parquet per trial (long format, METRIC_SCHEMA)
    and the trials rows compacted into trials/all-trials.parquet, as a finished sweep leaves them;
  - as Ray Tune's per-trial `result.json` (ray.air.constants.EXPR_RESULT_FILE, written by
    ray.tune.logger.json.JsonLoggerCallback): one JSON object per reported iteration and line, the
    metrics as flat keys ("train/rand_acc/block3") plus Tune's auto-filled keys
    (training_iteration, trial_id, time_total_s, ..., and the trial's `config` dict).
Then, side by side in this one run, it times
  A. pandas: pd.read_json(lines=True) per result.json + pd.concat      (loading only)
  B. DuckDB: the deduplicated `metrics` view and the `trials` view (the configs, which result.json
     repeats on every line) read into Arrow tables                       (loading only)
  C. rlp_tune.analysis.analyze(root)                                   (loading + every fit + bootstrap)
  D. `rlp-tune analyze ROOT --json` as a fresh process               (C + interpreter start + imports)
and prints the times and the ratios A/B (like for like: loading), A/C (loading alone vs loading
plus all fits, i.e. the `rlp-tune analyze` code path) and A/D (the command as a user runs it,
paying ~1 s of Python start and imports that A, run in this warm process, does not). The goal
(issue 5) is A/C ≥ 10×: the whole `analyze` — loading and every fit with its bootstrap — at least
ten times faster than merely loading the same metrics from result.json. The machine's other load
moves every number; the ratios come from one run, side by side.
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlp_tune.config import Config  # noqa: E402
from rlp_tune.results import METRIC_SCHEMA, ResultWriter, atomic_write_table, compact_trials  # noqa: E402

LAYERS = [f"block{i}" for i in range(1, 13)] + ["penultimate"]


def synth_trial(rng: np.random.Generator, lam: float, n_epochs: int, n: int) -> dict[str, np.ndarray]:
    """Per-epoch curves of one trial: {metric key: (E,) or (E, L) array}; accuracies are fractions."""
    e = np.arange(1, n_epochs + 1, dtype=np.float64)
    x = np.log10(lam) if lam > 0 else -np.inf
    suppress = 1.0 / (1.0 + np.exp(-2.0 * (x - 1.5)))                   # 0 → no effect, 1 → full
    chance = 1.0 / n
    depth = np.arange(1, len(LAYERS) + 1) / len(LAYERS)                  # (L,)
    final_rand = chance + (0.85 * depth ** 1.5) * (1 - suppress) + rng.normal(0, 0.005, len(LAYERS))
    rise = 1.0 / (1.0 + np.exp(-(e - 0.3 * n_epochs) / (0.07 * n_epochs)))  # (E,)
    rand = chance + (final_rand - chance)[None, :] * rise[:, None]       # (E, L)
    train = 1 - 0.9 * np.exp(-e / (0.15 * n_epochs)) - 0.05 * suppress
    test_final = 0.62 + 0.03 * np.exp(-0.5 * ((x - 1.0) / 0.8) ** 2) - 0.15 * suppress ** 4
    test = test_final * (1 - np.exp(-e / (0.1 * n_epochs)))
    noise = lambda k: rng.normal(0, 0.004, k)  # noqa: E731
    train, test = np.clip(train + noise(n_epochs), 0, 1), np.clip(test + noise(n_epochs), 0, 1)
    return {"train/acc": train, "test/acc": test,
            "train/loss_class": -np.log(np.clip(train, 1e-3, 1)), "test/loss_class": -np.log(np.clip(test, 1e-3, 1)),
            "train/epoch_s": 10 + rng.normal(0, 0.1, n_epochs),
            "train/rand_acc": np.clip(rand + rng.normal(0, 0.003, rand.shape), 0, 1)}


def make_sweep(n_trials: int, n_epochs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lams = np.where(rng.random(n_trials) < 0.1, 0.0, 10 ** rng.uniform(-2, 4, n_trials))
    base = Config().to_flat()
    base.update({"rlp.n": 100, "rlp.layers": ["all"], "run.epochs": n_epochs})
    for i, lam in enumerate(lams):
        cfg = dict(base, **{"rlp.lam": float(lam), "run.seed": i % 3})
        yield f"t{i:04d}", cfg, synth_trial(rng, float(lam), n_epochs, 100)


def write_parquet(root: Path, sweep) -> int:
    rows = 0
    for tid, cfg, curves in sweep:
        E = len(curves["train/acc"])
        cols = {c: [] for c in METRIC_SCHEMA.names}
        epochs = np.arange(1, E + 1, dtype=np.int32)
        parts = []
        for key, arr in curves.items():
            split, metric = key.split("/")
            if arr.ndim == 1:
                parts.append((split, metric, np.full(E, ""), epochs, arr))
            else:
                L = arr.shape[1]
                parts.append((split, metric, np.tile(np.array(LAYERS), E), np.repeat(epochs, L), arr.reshape(-1)))
        for split, metric, layer, ep, val in parts:
            k = len(val)
            cols["split"].append(np.full(k, split)); cols["metric"].append(np.full(k, metric))
            cols["layer"].append(layer); cols["epoch"].append(ep); cols["value"].append(val)
        k = sum(len(v) for v in cols["value"])
        table = pa.table({
            "sweep": np.full(k, "bench"), "trial_id": np.full(k, tid),
            "epoch": np.concatenate(cols["epoch"]).astype(np.int32), "split": np.concatenate(cols["split"]),
            "layer": np.concatenate(cols["layer"]), "head": np.zeros(k, np.int32),
            "metric": np.concatenate(cols["metric"]), "protocol": np.full(k, ""), "value": np.concatenate(cols["value"]),
            "wall_s": np.zeros(k)}, schema=METRIC_SCHEMA)
        atomic_write_table(table, str(root / "parquet" / "metrics" / tid / "final.parquet"))
        ResultWriter(root, "bench", tid).write_trial(cfg, status="TERMINATED", epochs_done=E)
        rows += k
    compact_trials(root)   # a finished sweep compacts its trials rows into one file (rlp_tune.tune.sweep.finish)
    return rows


def write_tune_json(root: Path, sweep) -> int:
    """Ray Tune's layout: <root>/<trial dir>/result.json (+ params.json), one JSON object per line."""
    host, t0 = socket.gethostname(), 1.7e9
    lines = 0
    for tid, cfg, curves in sweep:
        d = root / f"trainable_{tid}_00000"
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        E = len(curves["train/acc"])
        flat = {}
        for key, arr in curves.items():
            if arr.ndim == 1:
                flat[key] = arr
            else:
                for j, layer in enumerate(LAYERS):
                    flat[f"{key}/{layer}"] = arr[:, j]
        with open(d / "result.json", "w") as f:
            for i in range(E):
                res = {k: float(v[i]) for k, v in flat.items()}
                res.update({"timestamp": int(t0 + 10 * i), "checkpoint_dir_name": f"checkpoint_{i:06d}",
                            "done": i == E - 1, "training_iteration": i + 1, "trial_id": tid,
                            "date": "2025-01-01_00-00-00", "time_this_iter_s": 10.0, "time_total_s": 10.0 * (i + 1),
                            "pid": 1234, "hostname": host, "node_ip": "127.0.0.1", "config": cfg,
                            "time_since_restore": 10.0 * (i + 1), "iterations_since_restore": i + 1})
                f.write(json.dumps(res) + "\n")
                lines += 1
    return lines


def load_tune_pandas(root: Path):
    import pandas as pd
    frames = [pd.read_json(p, lines=True) for p in sorted(root.glob("*/result.json"))]
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples per fit in analyze()")
    ap.add_argument("--keep", help="write the data here and keep it (default: a temp dir, removed)")
    args = ap.parse_args(argv)

    from rlp_tune.analysis.document import analyze_tables
    from rlp_tune.reader import connect
    from rlp_tune.reader import fetch
    from rlp_tune.analysis.tables import load_tables

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rlp_bench_analysis_"))
    try:
        pq_root, js_root = tmp / "parquet_results", tmp / "tune_results"
        size = lambda r: sum(p.stat().st_size for p in r.rglob("*") if p.is_file()) / 2**20  # noqa: E731
        print(f"data: {args.trials} trials × {args.epochs} epochs × {len(LAYERS)} layers")
        if args.keep and pq_root.is_dir() and js_root.is_dir():
            print(f"  reusing {pq_root} ({size(pq_root):.1f} MiB) and {js_root} ({size(js_root):.1f} MiB)")
        else:
            t = time.perf_counter()
            rows = write_parquet(pq_root, make_sweep(args.trials, args.epochs))
            t_wp = time.perf_counter() - t
            t = time.perf_counter()
            lines = write_tune_json(js_root, make_sweep(args.trials, args.epochs))
            t_wj = time.perf_counter() - t
            print(f"  parquet: {rows:,} metric rows, {size(pq_root):.1f} MiB, written in {t_wp:.1f} s")
            print(f"  tune result.json: {lines:,} lines, {size(js_root):.1f} MiB, written in {t_wj:.1f} s")

        t = time.perf_counter()
        df = load_tune_pandas(js_root)
        t_pd = time.perf_counter() - t
        print(f"A  pandas read_json(lines=True) × {args.trials} + concat: {t_pd:7.2f} s  "
              f"({len(df):,} rows × {df.shape[1]} cols)")
        del df

        t = time.perf_counter()
        con = connect(pq_root)
        tab = fetch(con, "SELECT * FROM metrics", "arrow")
        t_met = time.perf_counter() - t
        t = time.perf_counter()
        trials = fetch(con, "SELECT * FROM trials", "arrow")
        t_tri = time.perf_counter() - t
        con.close()
        t_duck = t_met + t_tri
        print(f"B  DuckDB views → Arrow: metrics (dedup) {t_met:.2f} s ({tab.num_rows:,} rows) + "
              f"trials {t_tri:.2f} s ({trials.num_rows} rows × {trials.num_columns} cols) = {t_duck:7.2f} s")
        del tab, trials

        # analyze(root) is exactly load_tables + analyze_tables; timed in its two parts
        t = time.perf_counter()
        tables = load_tables(pq_root)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        doc = analyze_tables(tables, n_boot=args.boot).to_dict()
        t_fit = time.perf_counter() - t
        t_an = t_load + t_fit
        print(f"C  analyze(root) = load_tables {t_load:.2f} s + fits {t_fit:.2f} s "
              f"({args.boot} bootstrap resamples each) = {t_an:7.2f} s  "
              f"({doc['n_trials']} trials, {len(doc['fits'])} fits + {len(doc.get('per_layer', {}))} per-layer fits)")
        fit = doc["fits"]["memorization_vs_lambda"]
        if fit.get("fitted"):
            print(f"   recovered lambda50 = {fit['params']['lambda50']:.3g} (true {10 ** 1.5:.3g})")
        print(f"ratio A/B (loading vs loading, metrics + configs): {t_pd / t_duck:6.1f}×")
        cmd = [sys.executable, "-m", "rlp_tune.cli", "analyze", str(pq_root), "--json", "--boot", str(args.boot)]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        t_cli = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"bench/analysis.py: {' '.join(cmd)} failed:\n{p.stderr}")
        print(f"D  rlp-tune analyze --json (fresh process): {t_cli:7.2f} s")
        print(f"ratio A/C (pandas loading only vs analyze = loading + fitting): {t_pd / t_an:6.1f}×  (goal ≥ 10×)")
        print(f"ratio A/D (pandas loading only vs the `rlp-tune analyze` command): {t_pd / t_cli:6.1f}×")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
