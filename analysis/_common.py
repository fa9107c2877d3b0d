"""Shared plumbing of the figure scripts in analysis/: arguments, loading, fitting, rendering.

Not run directly; each fig_*.py calls `run(__doc__, build)` where build(tables, doc) returns the
FigureInfo objects (rlp_tune.analysis.figures) to draw;
build receives the loaded tables and the typed Analysis (rlp_tune.analysis.document).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without installing


def run(doc: str, build, argv=None) -> int:
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    ap.add_argument("root", help="results folder (holds parquet/metrics and parquet/trials)")
    ap.add_argument("out", help="folder for the PNG + SVG files")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples per fit (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from rlp_tune.analysis.document import analyze_tables
    from rlp_tune.analysis.render import save
    from rlp_tune.analysis.tables import load_tables
    from rlp_tune.results import ResultsError

    try:
        tables = load_tables(args.root)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    doc = analyze_tables(tables, n_boot=args.boot, seed=args.seed)
    infos = [i for i in build(tables, doc) if i is not None]
    if not infos:
        print(f"{args.root}: these results hold nothing for this figure", file=sys.stderr)
        return 1
    for info in infos:
        png, svg = save(info, Path(args.out) / info.name)
        print(f"wrote {png} and {svg.name}")
    return 0
