"""Paper fig. 2A / 2B: train, test and random-label accuracy vs epoch for the least-regularized
trials (offline RLP accuracy too when recorded), with the median epochs where memorization sets in
and where train and test accuracy part; and random-label accuracy vs epoch for each λ.

    .venv/bin/python analysis/fig_epochs.py runs/sweep1 figs/      # → figs/epochs.png, .svg
"""
import sys

from _common import run


def build(tables, doc):
    from rlp_tune.analysis.figures import epochs_info
    if tables.epochs is None or not len(tables.epochs):
        return []
    return [epochs_info(tables.epochs, doc.trials, doc.fits.get("onset"), f"train.{doc.memorization_metric}")]


if __name__ == "__main__":
    sys.exit(run(__doc__, build))
