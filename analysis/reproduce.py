"""The reproduction table at CPU scale: run (or reuse) the CPU search spaces, measure each claim, write docs/reproduction.md.

    python analysis/reproduce.py --storage results                  # `make reproduce`
    python analysis/reproduce.py --storage /tmp/r --only rlp_lambda,n_labels --boot 500
    python analysis/reproduce.py --storage /tmp/r --no-run          # table from what is there, run nothing

For each space a claim needs (search_spaces/cpu/<name>.toml; analysis/repro_claims.py lists the
claims) the sweep folder STORAGE/<sweep.name> is reused when all its trials finished, resumed
(`rlp-tune resume`) when some did not, and swept (`rlp-tune sweep`) when absent; `--set KEY=VALUE`
is passed to new sweeps (e.g. run.epochs=10 for a smaller version; the table reports the settings
the trials ran with, read from the results). The claims are then measured from the results through
rlp_tune.analysis (SQL views and the Analysis document) and each verdict is computed by the claim's
rule (analysis/repro_table.py). Claims of a space that was not run are "not testable here".
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]       # run from a checkout: rlp_tune and the repro_* modules

from repro_claims import CLAIMS, SWEEPS, Results, evaluate   # noqa: E402
from repro_table import (NOT_IN_REGIME, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED,  # noqa: E402
                         summary_counts, table_markdown)
from rlp_tune.analysis import regime as rg                    # noqa: E402


class ReproduceError(Exception):
    """Bad arguments or a missing space file (one line, before any sweep runs)."""


def space_info(path: Path) -> tuple[str, int]:
    """(sweep name, number of trials the grid design runs) of a CPU space file."""
    if not path.is_file():
        raise ReproduceError(f"{path}: search space not found")
    raw = tomllib.loads(path.read_text())
    sw = raw.get("sweep", {})
    if sw.get("design") != "grid":
        raise ReproduceError(f"{path}: sweep.design must be 'grid' (the table compares fixed cells)")
    cells = math.prod(len(v["values"]) for v in raw.get("search", {}).values())
    return sw.get("name", path.stem), cells * len(sw.get("seeds", [0]))


def finished(folder: Path) -> int:
    from repro_measure import trial_frame
    if not (folder / "parquet").is_dir():
        return 0
    try:
        return len(trial_frame(folder))
    except Exception:     # noqa: BLE001  a folder without trial rows yet
        return 0


def ensure_sweep(space: Path, storage: Path, sets: list[str], run: bool, log) -> Path:
    name, expected = space_info(space)
    folder = storage / name
    done = finished(folder)
    if done >= expected:
        log(f"{space.stem}: reusing {folder} ({done}/{expected} trials finished)")
        return folder
    if not run:
        log(f"{space.stem}: {done}/{expected} trials finished in {folder}; --no-run, measuring what is there")
        return folder
    cli = [sys.executable, "-m", "rlp_tune.cli"]
    if folder.exists() and any(folder.glob("experiment_state-*.json")):
        cmd = cli + ["resume", str(folder)]
    else:
        cmd = cli + ["sweep", str(space), "--storage", str(storage)] + [a for s in sets for a in ("--set", s)]
    log(f"{space.stem}: {shlex.join(cmd[1:])}")
    t0 = dt.datetime.now()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    log(f"{space.stem}: {(dt.datetime.now() - t0).total_seconds():.0f} s, "
        f"{finished(folder)}/{expected} trials finished")
    return folder


MASC_SEEDS = (0, 1)


def ensure_masc_runs(storage: Path, sets: list[str], run: bool, log) -> list[Path]:
    """004's clean- vs corrupted-label subspaces on the same models: `rlp-tune train` of
    configs/masc_mnist1d_mlp.toml (60% corruption, 60 epochs, no in-training probes) per seed, then
    `rlp-tune probe --probes masc --layers all` on its last checkpoint with --labels train and --labels clean."""
    folders = []
    cli = [sys.executable, "-m", "rlp_tune.cli"]
    for seed in MASC_SEEDS:
        out = storage / "masc_runs" / f"seed{seed}"
        folders.append(out)
        if finished(out) and len(_probe_labels(out)) == 2:
            log(f"masc_runs: reusing {out}")
            continue
        if not run:
            continue
        if not finished(out):
            cmd = cli + ["train", "configs/masc_mnist1d_mlp.toml", "--out", str(out), "--no-progress",
                         "--set", f"run.seed={seed}", "--set", "run.epochs=60", "--set", "probe.every=0"]
            cmd += [a for s in sets for a in ("--set", s)]
            log(f"masc_runs: {shlex.join(cmd[1:])}")
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        for labels in ("train", "clean"):
            cmd = cli + ["probe", str(out), "--probes", "masc", "--layers", "all", "--labels", labels]
            log(f"masc_runs: {shlex.join(cmd[1:])}")
            subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return folders


def _probe_labels(root: Path) -> set[str]:
    from rlp_tune.analysis.query import query_df
    try:
        df = query_df(root, "SELECT DISTINCT protocol FROM metrics WHERE metric = 'masc_acc'")
    except Exception:     # noqa: BLE001  no probe rows yet
        return set()
    return {p.split(";")[0] for p in df["protocol"]}


def sweep_wall_s(df) -> float | None:
    """Seconds from the first trial's start to the last trial's last update (the sweep's wall time, read from
    the trials' own timestamps, so a reused sweep still reports what it took)."""
    if df is None or not len(df) or "started" not in df or "updated" not in df:
        return None
    start = df["started"].astype(float).min()
    end = df["updated"].astype(float).max()
    return float(end - start) if math.isfinite(start) and math.isfinite(end) else None


def _minutes(s: float | None) -> str:
    return "–" if s is None else f"{s / 60:.1f} min"


def document(rows, ctx: Results, command: str, when: str, storage: Path | None = None,
             run_s: float | None = None) -> str:
    counts = summary_counts(rows)
    five = sum(1 for r in rows if len(set(r.measurement.seeds)) >= 5)
    walls = {s: sweep_wall_s(ctx.final(s)) for s in SWEEPS + ["masc_runs"]}
    total = sum(w for w in walls.values() if w)
    lines = [
        "# Reproduction at CPU scale (papers 001, 003, 004)", "",
        f"Regenerate: `{command}` (`make reproduce`). Generated {when} by `analysis/reproduce.py` from the "
        "results of the CPU search spaces in `search_spaces/cpu/` (each space's trials, read through "
        "`rlp_tune.analysis`). Nothing in the table is typed by hand: values, CIs, regime checks, seeds and "
        "verdicts come from the results by the rules below.", "",
        f"**{counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced at this scale, "
        f"{counts[NOT_IN_REGIME]} not in regime, {counts[NOT_TESTABLE]} not testable here** (of {len(rows)} "
        f"claims); {five} of the {len(rows)} rows rest on ≥ 5 seeds.", "",
        f"Wall time on this machine (2 CPUs, shared with other jobs): the sweeps took {_minutes(total)} in all "
        "(each sweep's first trial start to its last trial update, read from the results; table below)"
        + (f"; this run of reproduce.py took {_minutes(run_s)} (sweeps it found finished were reused)" if run_s
           else "") + ".", "",
        table_markdown(rows),
        "## How to read it", "",
        "- **Regime checks** (`rlp_tune.analysis.regime`, the same rules `rlp-tune analyze` flags on any sweep), "
        "measured on the claim's own trials (the λ = 0 ones among them where the check is about λ = 0): "
        f"*fits*: λ = 0 train accuracy on the labels it was given ≥ {100 * rg.FIT_MIN:.0f}% (claims about "
        f"memorizing noisy or random labels); *memorizes*: the 95% CI of mean(rand_acc − 1/n) at λ = 0 has its "
        f"lower end above +{100 * rg.MEM_MARGIN:.0f} points (the 'at chance' band is ±2 points), one trial: its "
        f"value; *class head trains*: the CI lower end of mean(test acc − 1/C) at λ = 0 above "
        f"+{100 * rg.CLASS_MARGIN:.0f} points; *edge*: the test-accuracy optimum over λ (the spline optimum of "
        "the analysis' generalization fit where identified, else the λ of best mean) is not at the largest "
        "sampled λ while above λ = 0; *transition*: the memorization logistic (λ50) is identified inside the "
        "sampled range. A failed check makes the row **not in regime**: the rule's outcome there says nothing "
        "about the paper's claim.",
        "- **Memorization** is `train.rand_acc_eval`: the RLP head in eval mode on a fixed sample of the "
        "unaugmented training inputs (`docs/measurements.md`); the 5.2 rows are repeated with "
        "`train.rand_acc_audit`, a fresh head trained on the frozen features at the end, because a "
        "co-trained head can be evaded (label smoothing shrinks the features).",
        f"- **CI**: 95% percentile bootstrap over trials ({ctx.n_boot} resamples, seed {ctx.seed}), trials "
        "resampled within each compared design cell; a statistic that picks the best λ or layer picks it "
        "again in every resample. With 2–3 seeds per cell the CIs are coarse: a percentile bootstrap of "
        "2 values understates the spread, so read the seeds column with them.",
        "- **Verdict rule** (`analysis/repro_table.py`), for a row in regime: *above t*: reproduced when the CI's "
        "lower end > t; *below t*: when its upper end < t; *within [a, b]*: when the CI lies inside. 'At chance' "
        "is within ±2 points of 1/n; 'no gain' is a CI upper end below +1 point. Otherwise *not reproduced "
        "at this scale*; *not testable here* when the quantity could not be measured (no trials, no CI).",
        "- **Settings**: each row names its space (`search_spaces/cpu/<space>.toml`), dataset, model, n and "
        "epochs as the trials recorded them. The papers ran ViT-B/32 on ImageNet, WRN-16-4 on CIFAR-100 "
        "(001), ResNets on CIFAR (003, 004); digits (1,797 8×8 images) and mnist1d are far smaller, so a "
        "claim that does not reproduce here is a statement about this scale, not about the paper.", "",
    ]
    lines += ["## Sweeps read", "", "Folders are relative to the storage folder (`--storage`).", "",
              "| space | folder | finished trials | seeds | wall |", "|---|---|---|---|---|"]
    for s in SWEEPS + ["masc_runs"]:
        df = ctx.final(s)
        n = 0 if df is None else len(df)
        seeds = "–" if not n else ", ".join(str(int(x)) for x in sorted(df["seed"].unique()))
        folder = "–" if not n else "masc_runs/seed*" if s == "masc_runs" else _relative(ctx.roots.get(s), storage)
        lines.append(f"| `{s}` | `{folder}` | {n} | {seeds} | {_minutes(walls[s])} |")
    return "\n".join(lines) + "\n"


def _relative(folder: Path | None, storage: Path | None) -> str:
    if folder is None:
        return "–"
    try:
        return str(folder.relative_to(storage)) if storage is not None else folder.name
    except ValueError:
        return folder.name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default="results", help="folder holding (or receiving) the sweep folders")
    ap.add_argument("--spaces", default=str(REPO / "search_spaces" / "cpu"), help="folder of the CPU spaces")
    ap.add_argument("--out", default=str(REPO / "docs" / "reproduction.md"))
    ap.add_argument("--only", default="", help=f"comma list of spaces to run/measure (of {', '.join(SWEEPS)})")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to new sweeps")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples per claim (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-run", action="store_true", help="run no sweep; measure the finished trials there are")
    args = ap.parse_args(argv)
    try:
        only = [s for s in args.only.split(",") if s] or SWEEPS
        bad = [s for s in only if s not in SWEEPS]
        if bad:
            raise ReproduceError(f"--only {','.join(bad)}: unknown space (choose from {', '.join(SWEEPS)})")
        if args.boot < 20:
            raise ReproduceError(f"--boot {args.boot}: need ≥ 20 resamples for a 95% CI")
        storage, spaces = Path(args.storage), Path(args.spaces)
        infos = {s: space_info(spaces / f"{s}.toml") for s in only}     # every space checked before any runs
    except ReproduceError as e:
        print(f"reproduce: error: {e}", file=sys.stderr)
        return 2
    t_start = dt.datetime.now()
    log = lambda msg: print(f"[reproduce {dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {msg}", flush=True)  # noqa: E731
    roots = {s: storage / space_info(spaces / f"{s}.toml")[0] for s in SWEEPS if (spaces / f"{s}.toml").is_file()}
    for s in only:
        roots[s] = ensure_sweep(spaces / f"{s}.toml", storage, args.set, not args.no_run, log)
    ctx = Results({s: roots[s] if s in only else Path("/nonexistent") for s in SWEEPS},
                  n_boot=args.boot, seed=args.seed)
    if "label_corruption" in only:
        ctx.masc_runs = ensure_masc_runs(storage, args.set, not args.no_run, log)
    rows = evaluate(CLAIMS, ctx)
    when = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    command = "python " + shlex.join(["analysis/reproduce.py"] + (argv if argv is not None else sys.argv[1:]))
    run_s = (dt.datetime.now() - t_start).total_seconds()
    Path(args.out).write_text(document(rows, ctx, command, when, storage, run_s))
    log(f"wrote {args.out}: {summary_counts(rows)} ({len(infos)} spaces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
