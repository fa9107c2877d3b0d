"""Benchmark: tuning λ with TPE + ASHA vs the λ grid of the demo, both selecting on `val`, in one run.

    .venv/bin/python bench/tuning.py                  # two real sweeps on digits (minutes)

Both sweeps train real trials on digits with the demo's setup (search_spaces/demo.toml: MLP, n = 8,
40 epochs, embedded local Ray):
  grid      the demo itself: 9 λ in [0, 30] × 3 seeds, every trial to the end (27 trials)
  tpe+asha  Optuna TPE over λ log-uniform in [0.01, 30], one seed, ASHA (grace 5 epochs, factor 3),
            `--trials` trials (default 12)
Selection on `val` only: the grid picks the λ with the best mean final val.acc over its seeds; TPE
picks its trial with the best final val.acc. Printed: each pick's test accuracy (the grid's with the
SD over its seeds: the seed noise), the epochs each sweep trained, and the ratio of epochs.
Goal (issue 11): the TPE pick's test accuracy within the grid's seed noise at ≤ 25% of its epochs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TPE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"rlp.n" = 8
"run.epochs" = 40
[search]
"rlp.lam" = {{ dist = "loguniform", low = 0.01, high = 30 }}
[sweep]
design = "tpe"
name = "tpe"
num_samples = {trials}
seeds = [0]
[scheduler]
type = "asha"
grace_period = 5
reduction_factor = 3
"""


def final_values(root: str):
    """One row per trial: λ, seed, epochs trained, final val.acc and test.acc."""
    from rlp_tune.reader import read_metrics, read_trials
    m = read_metrics(root)
    m = m[(m.metric == "acc") & (m.layer == "") & (m["head"] == -1)]
    last = m.sort_values("epoch").groupby(["trial_id", "split"]).value.last().unstack()
    t = read_trials(root).set_index("trial_id")[["rlp.lam", "seed", "epochs_done"]]
    return t.join(last[["val", "test"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=12, help="TPE trials")
    args = ap.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from rlp_tune.tune.space import load_space
    from rlp_tune.tune.sweep import run_sweep
    tmp = Path(tempfile.mkdtemp(prefix="rlp_bench_tuning_"))
    (tmp / "tpe.toml").write_text(TPE.format(root=ROOT, trials=args.trials))
    times = {}
    for name, space in (("grid", load_space(ROOT / "search_spaces" / "demo.toml")),
                        ("tpe", load_space(tmp / "tpe.toml"))):
        t0 = time.perf_counter()
        out = run_sweep(space, storage=str(tmp / "res"), name=name)
        times[name] = time.perf_counter() - t0
        if out["exit_code"]:
            raise SystemExit(f"{name} sweep exited {out['exit_code']}")
    grid, tpe = final_values(str(tmp / "res" / "grid")), final_values(str(tmp / "res" / "tpe"))
    by_lam = grid.groupby("rlp.lam")
    lam = by_lam.val.mean().idxmax()
    g_test, g_sd = by_lam.test.mean()[lam], by_lam.test.std()[lam]
    best = tpe.val.idxmax()
    e_grid, e_tpe = int(grid.epochs_done.sum()), int(tpe.epochs_done.sum())
    print(f"grid: {len(grid)} trials, {e_grid} epochs, {times['grid']:.0f} s; pick λ = {lam:.3g} "
          f"(mean val {by_lam.val.mean()[lam]:.4f}): test {g_test:.4f} ± {g_sd:.4f} (SD over {by_lam.size()[lam]} seeds)")
    print(f"tpe+asha: {len(tpe)} trials, {e_tpe} epochs, {times['tpe']:.0f} s; pick λ = {tpe.loc[best, 'rlp.lam']:.3g} "
          f"(val {tpe.loc[best, 'val']:.4f}, {int(tpe.loc[best, 'epochs_done'])} epochs): test {tpe.loc[best, 'test']:.4f}")
    diff = tpe.loc[best, "test"] - g_test
    print(f"tpe+asha / grid: epochs {e_tpe / e_grid:.2f}x; test accuracy difference {diff:+.4f} "
          f"({abs(diff) / g_sd if g_sd > 0 else float('inf'):.1f} grid seed SDs)")
    print(f"(results in {tmp})")


if __name__ == "__main__":
    main()
