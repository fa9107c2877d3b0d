"""Probes wired into runs: during training (probe.every, epoch-0 baseline) and on saved checkpoints."""
import subprocess
import sys

import torch

from rlp_tune.reader import read_metrics
from rlp_tune.results import METRIC_KEY
from rlp_tune.run.train import Trainer


def test_probes_during_training_land_in_parquet(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"probe.every": 2, "probe.probes": ["knn", "ncm", "invariance"],
                              "probe.layers": ["input", "penultimate"], "run.epochs": 2, "probe.class_heads": True})
    list(Trainer(cfg, out_dir=tmp_path).fit())
    df = read_metrics(tmp_path)
    probes = df[df.metric.isin(["knn_acc", "ncm_acc"])]
    assert sorted(probes.epoch.unique()) == [0, 2]          # the epoch-0 baseline, then every 2 epochs
    assert set(probes.layer) == {"input", "penultimate"} and (probes.split == "test").all()
    assert probes.value.between(0, 1).all() and probes[probes.layer == "input"].value.min() > 0.8
    inv = df[df.metric == "invariance"]
    assert len(inv) == 4 and (inv.value > 0).all()          # digits features are not translation invariant
    ca = df[(df.metric == "class_acc") & (df.epoch == 2)]
    assert set(ca.split) == {"train", "test"} and set(ca.layer) == {"layer1", "penultimate"}
    assert not df.duplicated(METRIC_KEY).any()


def test_probe_command_on_saved_checkpoints(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"run.keep_checkpoints": "all"})
    list(Trainer(cfg, out_dir=tmp_path).fit())
    cmd = [sys.executable, "-m", "rlp_tune.cli", "probe", str(tmp_path), "--probes", "knn,masc", "--layers", "all"]
    for _ in range(2):   # running it twice replaces the rows, never duplicates them
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    df = read_metrics(tmp_path)
    pr = df[df.metric.isin(["knn_acc", "masc_acc"])]
    assert sorted(pr.epoch.unique()) == [0, 1, 2]
    assert set(pr.layer) == {"input", "layer1", "penultimate"}
    assert not df.duplicated(METRIC_KEY).any()
    bad = subprocess.run(cmd[:5] + ["--epochs", "9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no epoch_*.pt for epochs 9" in bad.stderr


def test_offline_rlp_writes_offline_rows(tiny_cfg, tmp_path):
    """Paper 5.1: fresh heads (same init for every checkpoint) on frozen features, split 'offline'."""
    from rlp_tune.offline.rlp import offline_rlp
    cfg = tiny_cfg.replace(**{"run.keep_checkpoints": "all", "rlp.heads": 2})
    list(Trainer(cfg, out_dir=tmp_path).fit())
    assert offline_rlp(tmp_path) == 3                                  # the run's audit settings
    assert offline_rlp(tmp_path, epochs="2") == 1                      # rerun: rows replaced
    df = read_metrics(tmp_path)
    off = df[df.split == "offline"]
    assert sorted(off.epoch.unique()) == [0, 1, 2] and set(off.metric) == {"rand_acc"}
    assert set(off["head"]) == {-1, 0, 1} and off.value.between(0, 1).all()
    assert not df.duplicated(METRIC_KEY).any()
    # the same init and labels for every checkpoint: identical frozen features give identical accuracy
    from rlp_tune.run.audit import AuditSettings, train_fresh_heads
    f = torch.randn(64, 8)
    lab = torch.randint(0, 4, (64, 2))
    a = train_fresh_heads(f, lab, 4, heads=2, seed=7, settings=AuditSettings(epochs=3))
    b = train_fresh_heads(f, lab, 4, heads=2, seed=7, settings=AuditSettings(epochs=3))
    assert torch.equal(a, b) and a.shape == (2,)
    # another --head-epochs: its own protocol, beside the rows made with the run's audit settings
    assert offline_rlp(tmp_path, head_epochs=2, epochs="2") == 1
    off2 = read_metrics(tmp_path).query("split == 'offline' and epoch == 2")
    assert set(off2.protocol) == {"", "head_epochs=2"} and len(off2) == 6
