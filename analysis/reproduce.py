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
from repro_table import summary_counts, table_markdown        # noqa: E402


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


def document(rows, ctx: Results, command: str, when: str) -> str:
    counts = summary_counts(rows)
    lines = [
        "# Reproduction at CPU scale (papers 001, 003, 004)", "",
        f"Regenerate: `{command}` (`make reproduce`). Generated {when} by `analysis/reproduce.py` from the "
        "results of the CPU search spaces in `search_spaces/cpu/` (each space's trials, read through "
        "`rlp_tune.analysis`). Nothing in the table is typed by hand: values, CIs, seeds and verdicts come "
        "from the results by the rules below.", "",
        f"**{counts['reproduced']} reproduced, {counts['not reproduced at this scale']} not reproduced at this "
        f"scale, {counts['not testable here']} not testable here** (of {len(rows)} claims).", "",
        table_markdown(rows),
        "## How to read it", "",
        "- **Memorization** is `train.rand_acc_eval`: the RLP head in eval mode on a fixed sample of the "
        "unaugmented training inputs (`docs/measurements.md`); the 5.2 rows are repeated with "
        "`train.rand_acc_audit`, a fresh head trained on the frozen features at the end, because a "
        "co-trained head can be evaded (label smoothing shrinks the features).",
        f"- **CI**: 95% percentile bootstrap over trials ({ctx.n_boot} resamples, seed {ctx.seed}), trials "
        "resampled within each compared design cell; a statistic that picks the best λ or layer picks it "
        "again in every resample. With 2–3 seeds per cell the CIs are coarse: a percentile bootstrap of "
        "2 values understates the spread, so read the seeds column with them.",
        "- **Verdict rule** (`analysis/repro_table.py`): *above t*: reproduced when the CI's lower end > t; "
        "*below t*: when its upper end < t; *within [a, b]*: when the CI lies inside. 'At chance' is "
        "within ±2 points of 1/n; 'no gain' is a CI upper end below +1 point. Otherwise *not reproduced "
        "at this scale*; *not testable here* when the quantity could not be measured (no trials, no CI).",
        "- **Settings**: each row names its space (`search_spaces/cpu/<space>.toml`), dataset, model, n and "
        "epochs as the trials recorded them. The papers ran ViT-B/32 on ImageNet, WRN-16-4 on CIFAR-100 "
        "(001), ResNets on CIFAR (003, 004); digits (1,797 8×8 images) and mnist1d are far smaller, so a "
        "claim that does not reproduce here is a statement about this scale, not about the paper.", "",
    ]
    lines += ["## Sweeps read", "", "| space | folder | finished trials | seeds |", "|---|---|---|---|"]
    for s in SWEEPS:
        df = ctx.final(s)
        n = 0 if df is None else len(df)
        seeds = "–" if not n else ", ".join(str(int(x)) for x in sorted(df["seed"].unique()))
        lines.append(f"| `{s}` | `{ctx.roots[s]}` | {n} | {seeds} |")
    return "\n".join(lines) + "\n"


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
    Path(args.out).write_text(document(rows, ctx, command, when))
    log(f"wrote {args.out}: {summary_counts(rows)} ({len(infos)} spaces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
