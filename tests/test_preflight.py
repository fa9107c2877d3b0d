"""The sweep preflight's metric check (rlp_tune/tune/preflight.py), no Ray: every metric a trial can
report is accepted, also those measured only every k epochs, and the real trials keep their config.

    PYTHONPATH=. python -m pytest tests/test_preflight.py -q
"""
from pathlib import Path

import pytest

from rlp_tune.tune.preflight import check_metric, reported_metrics
from rlp_tune.tune.space import SpaceError, load_space, trial_config

ROOT = Path(__file__).resolve().parents[1]

SPACE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"run.epochs" = 4
"model.width" = 16
"rlp.audit_every" = 3
"rlp.audit_epochs" = 2
{extra}
[search]
"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}
[sweep]
metric = "{metric}"
mode = "max"
num_samples = 2
"""


def _space(tmp_path, metric, extra=""):
    p = tmp_path / "s.toml"
    p.write_text(SPACE.format(root=ROOT, metric=metric, extra=extra))
    return load_space(p)


def test_metrics_reported_every_k_epochs_are_accepted(tmp_path):
    """rand_acc_audit (rlp.audit_every = 3) and the probes (probe.every = 5) are not reported at
    epoch 1, yet a trial reports them: the preflight accepts them as sweep.metric."""
    space = _space(tmp_path, "train.rand_acc_audit.penultimate", '"probe.every" = 5\n"probe.probes" = ["knn"]')
    check_metric(space)                                       # no SpaceError
    names = reported_metrics(trial_config(space, {"rlp.lam": 1.0}, space.seeds[0]))
    assert {"train.rand_acc_audit.penultimate", "train.rand_acc.penultimate", "val.acc"} <= names
    assert any(n.startswith("test.knn_acc") for n in names), sorted(names)
    # the trials themselves keep their schedule: the stand-in's settings are not the trial's
    cfg = trial_config(space, {"rlp.lam": 1.0}, space.seeds[0])
    assert cfg.rlp.audit_every == 3 and cfg.probe.every == 5 and cfg.run.epochs == 4


def test_audit_off_is_still_refused(tmp_path):
    """Without the audit (rlp.audit_every = 0) no trial reports rand_acc_audit: one line, named."""
    p = tmp_path / "s.toml"
    p.write_text(SPACE.format(root=ROOT, metric="train.rand_acc_audit.penultimate", extra="")
                 .replace('"rlp.audit_every" = 3', '"rlp.audit_every" = 0'))
    with pytest.raises(SpaceError, match="^sweep.metric: no trial reports 'train.rand_acc_audit.penultimate'") as e:
        check_metric(load_space(p))
    assert "\n" not in str(e.value)
