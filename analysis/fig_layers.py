"""Paper figs. 2C / 8A (and 9): final random-label accuracy of the RLP heads at every layer, one
line per λ, with chance 1/n; class-head accuracy per layer when `probe.class_heads` was on.

    .venv/bin/python analysis/fig_layers.py runs/sweep1 figs/      # → figs/layers.png, .svg
"""
import sys

from _common import run


def build(tables, doc):
    from rlp_tune.analysis.figures import layers_info
    return [layers_info(doc.fits, doc.chance)]


if __name__ == "__main__":
    sys.exit(run(__doc__, build))
