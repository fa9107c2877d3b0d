"""Every figure the results support (what `rlp-tune report` embeds), as PNG + SVG.

    .venv/bin/python analysis/all_figures.py runs/sweep1 figs/
"""
import sys

from _common import run


def build(tables, doc):
    from rlp_tune.analysis.figures import figure_infos
    return figure_infos(tables, doc)


if __name__ == "__main__":
    sys.exit(run(__doc__, build))
