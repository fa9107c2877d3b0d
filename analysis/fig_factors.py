"""Paper figs. A.3 (rlp.n), A.9 (model width), A.7 / 7A (data.fraction), 7C (data.label_noise),
A.5 (rlp.hidden), A.8 (rlp.heads): random-label accuracy vs every factor the sweep varies, with
95% CIs (chance 1/n drawn for n). Only the least-regularized trials when λ is swept too.

    .venv/bin/python analysis/fig_factors.py runs/n_sweep figs/    # → figs/factor_n.png, ...
"""
import sys

from _common import run


def build(tables, doc):
    from rlp_tune.analysis.figures import factor_curves_info
    return [factor_curves_info(fc) for fc in doc.factor_curves]


if __name__ == "__main__":
    sys.exit(run(__doc__, build))
