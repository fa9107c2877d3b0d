"""Memorization vs generalization across trials: test accuracy and the train − test gap against
the final random-label accuracy, with the fitted curve, Spearman ρ and the verdict (did
suppressing memorization help or hurt?).

    .venv/bin/python analysis/fig_memgen.py runs/sweep1 figs/      # → figs/memgen.png, .svg
"""
import sys

from _common import run


def build(tables, doc):
    from rlp_tune.analysis.figures import memgen_info
    return [memgen_info(doc.trials[doc.trials.complete], doc.fits.get("memorization_vs_generalization"))]


if __name__ == "__main__":
    sys.exit(run(__doc__, build))
