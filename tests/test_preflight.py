"""The sweep preflight's metric check (rlp_tune/tune/preflight.py), no Ray: the stand-in epoch knows
every metric a trial can report, also those measured only every k epochs (the fresh-head audit, the
probes); one Tune needs in every report is refused when it is not, naming the key; the trials keep
their own schedule.

    PYTHONPATH=. python -m pytest tests/test_preflight.py -q
"""
from pathlib import Path

import pytest

from rlp_tune.tune.preflight import check_metric, reported_metrics
from rlp_tune.tune.space import SpaceError, load_space

ROOT = Path(__file__).resolve().parents[1]
AUDIT = "train.rand_acc_audit.penultimate"

SPACE = """
base = "{root}/configs/digits_mlp.toml"
[fixed]
"data.val_fraction" = 0.15
"run.epochs" = 4
"model.width" = 16
"rlp.audit_epochs" = 2
{extra}
[search]
"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}
[sweep]
metric = "{metric}"
mode = "max"
num_samples = 2
"""


def _space(tmp_path, metric, extra):
    p = tmp_path / "s.toml"
    p.write_text(SPACE.format(root=ROOT, metric=metric, extra=extra))
    return load_space(p)


def test_metrics_measured_every_k_epochs_are_known(tmp_path):
    """rand_acc_audit (rlp.audit_every = 3) and the probes (probe.every = 5) are not in a trial's
    first report, yet a trial reports them: the stand-in names them all; the trial config keeps its k."""
    space = _space(tmp_path, "val.acc", '"rlp.audit_every" = 3\n"probe.every" = 5\n"probe.probes" = ["knn"]')
    cfg = space.trial_config({"rlp.lam": 1.0})
    names = reported_metrics(cfg)
    assert {AUDIT, "train.rand_acc.penultimate", "val.acc"} <= names
    assert any(n.startswith("test.knn_acc") for n in names), sorted(names)
    first = reported_metrics(cfg, first_epoch=True)
    assert AUDIT not in first and not any(n.startswith("test.knn_acc") for n in first)
    assert names - first == {AUDIT} | {n for n in names if n.startswith("test.knn_acc")}
    assert cfg.rlp.audit_every == 3 and cfg.probe.every == 5 and cfg.run.epochs == 4
    check_metric(space)                                       # val.acc: in every report


def test_audit_metric_every_epoch_accepted_every_k_refused(tmp_path):
    """sweep.metric = rand_acc_audit: accepted with rlp.audit_every = 1; with 3 it is one line naming
    the key (Tune's strict metric check would raise at the trial's first report, after Ray started);
    with the audit off, 'no trial reports' it."""
    check_metric(_space(tmp_path, AUDIT, '"rlp.audit_every" = 1'))
    with pytest.raises(SpaceError) as e:
        check_metric(_space(tmp_path, AUDIT, '"rlp.audit_every" = 3'))
    assert str(e.value) == (f"sweep.metric: '{AUDIT}' is reported only every few epochs (rlp.audit_every = 3) "
                            "and Tune needs it in every report: set rlp.audit_every = 1 or choose another metric")
    with pytest.raises(SpaceError, match=f"^sweep.metric: no trial reports '{AUDIT}'") as e:
        check_metric(_space(tmp_path, AUDIT, '"rlp.audit_every" = 0'))
    assert "\n" not in str(e.value)
