"""Paper figs 4 / 5 (and 7 per dataset fraction or label noise): random-label, train and test
accuracy vs λ on a log axis, with the logistic and spline fits, the λ = 0 baseline and chance 1/n.

    .venv/bin/python analysis/fig_lambda.py runs/sweep1 figs/      # → figs/lambda.png, figs/lambda.svg
    .venv/bin/python analysis/fig_lambda.py runs/sweep1 figs/ --by data.fraction
"""
import sys
from types import SimpleNamespace

from _common import run


def build(tables, doc, by=None):
    from rlp_tune.analysis.figures import lambda_info
    d = doc.trials[doc.trials.complete]
    if by is None:                  # one row per design cell
        return [lambda_info(d, doc.fits, doc.cells)]
    if by not in d.columns:
        raise SystemExit(f"--by {by}: not a swept key of these results")
    # one row per level of `by` (its λ fits are in doc.groups)
    rows = [SimpleNamespace(key=k, trial_ids=d.trial_id[d[by].astype(str) == g["value"]].tolist(), fits=g)
            for k, g in doc.groups.items() if g["factor"] == by]
    return [lambda_info(d, doc.fits, rows)]


if __name__ == "__main__":
    argv = sys.argv[1:]
    by = None
    if "--by" in argv:
        i = argv.index("--by")
        by = argv[i + 1]
        del argv[i:i + 2]
    sys.exit(run(__doc__, lambda t, d: build(t, d, by), argv))
