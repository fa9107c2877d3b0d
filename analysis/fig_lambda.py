"""Paper figs 4 / 5 (and 7 per dataset fraction or label noise): random-label, train and test
accuracy vs λ on a log axis, with the logistic and spline fits, the λ = 0 baseline and chance 1/n.

    .venv/bin/python analysis/fig_lambda.py runs/sweep1 figs/      # → figs/lambda.png, figs/lambda.svg
    .venv/bin/python analysis/fig_lambda.py runs/sweep1 figs/ --by data.fraction
"""
import sys

from _common import run


def build(tables, doc, by=None):
    from rlp_tune.analysis.curves import per_trial
    from rlp_tune.analysis.plots import _get_lambda_info
    d = per_trial(tables)
    if by is None:
        by = next((c for c in ("data.fraction", "data.label_noise")
                   if any(k.startswith(c + "=") for k in doc.get("groups", {}))), None)
    return [_get_lambda_info(d, doc["fits"], doc.get("groups"), by)]


if __name__ == "__main__":
    argv = sys.argv[1:]
    by = None
    if "--by" in argv:
        i = argv.index("--by")
        by = argv[i + 1]
        del argv[i:i + 2]
    sys.exit(run(__doc__, lambda t, d: build(t, d, by), argv))
