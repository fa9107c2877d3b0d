"""Measurements (docs/measurements.md): rand_acc_eval vs the online rand_acc, the fresh-head audit,
the RLP-head param group, 004's adam20 linear probe, and probe rows that carry their protocol.

    .venv/bin/python -m pytest tests/test_measure.py -q
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rlp_tune.run.audit import AuditSettings, standardize_norm, train_fresh_heads
from rlp_tune.config import Config, ConfigError
from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.results import METRIC_KEY
from rlp_tune.optim import make_optimizer
from rlp_tune.run.train import Trainer


def _converge_cfg(**kw):
    return Config().replace(**{
        "data.name": "digits", "model.width": 64, "model.depth": 2, "rlp.n": 10, "optim.lr": 0.1,
        "run.batch_size": 64, "run.device": "cpu", "run.epochs": 20, "rlp.eval_samples": 4096, **kw})


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


# ---------------------------------------------------------------- rand_acc_eval

def test_rand_acc_eval_matches_online_without_dropout_not_with_it():
    """Converged (cosine LR → 0), no dropout or augmentation: the online running average over the last
    epoch and the eval-mode head on clean inputs agree; with dropout the online number is lower."""
    plain = list(Trainer(_converge_cfg()).fit())[-1]
    online, ev = plain.get("train", "rand_acc", "penultimate"), plain.get("train", "rand_acc_eval", "penultimate")
    assert plain.get("train", "acc") > 0.99 and online > 0.15          # converged and memorizing (chance 0.1)
    assert abs(online - ev) < 0.006                                     # measured 0.0013 (seed 0)
    drop = list(Trainer(_converge_cfg(**{"model.dropout": 0.3})).fit())[-1]
    online, ev = drop.get("train", "rand_acc", "penultimate"), drop.get("train", "rand_acc_eval", "penultimate")
    assert ev - online > 0.015                                          # measured 0.029 (seed 0)
    # per head and the head mean, on the whole training set here (eval_samples > m)
    assert drop.get("train", "rand_acc_eval", "penultimate", head=0) == pytest.approx(ev)
    assert ev * 1437 == pytest.approx(round(ev * 1437))


def test_eval_sample_is_fixed_and_measurements_leave_training_unchanged(tiny_cfg):
    """The eval sample is seeded (the same every epoch, bounded by rlp.eval_samples); neither it nor
    the audit draws from the training RNG: parameters are bit-identical with them off."""
    cfg = tiny_cfg.replace(**{"model.dropout": 0.2, "rlp.eval_samples": 100, "rlp.audit_every": 1,
                              "rlp.audit_epochs": 2})
    on = Trainer(cfg)
    recs = list(on.fit())
    idx = on.eval_idx.clone()
    assert len(idx) == 100 and torch.equal(idx, idx.sort().values)
    off = Trainer(cfg.replace(**{"rlp.eval_samples": 0, "rlp.audit_every": 0}))
    recs_off = list(off.fit())
    pa_, pb = _params(on), _params(off)
    assert all(torch.equal(pa_[k], pb[k]) for k in pa_)
    for r in recs:   # every epoch: the eval rows (acc of 100 samples) and the audit row
        v = r.get("train", "rand_acc_eval", "penultimate")
        assert v * 100 == pytest.approx(round(v * 100))
        assert 0 <= r.get("train", "rand_acc_audit", "penultimate") <= 1
    assert all(r.get("train", "rand_acc_eval", "penultimate") != r.get("train", "rand_acc_eval", "penultimate")
               for r in recs_off)   # NaN: not measured when off
    from rlp_tune.run.audit import eval_sample
    assert torch.equal(eval_sample(cfg.run.seed, on.data.m, 100), idx)  # from the seed alone


# ---------------------------------------------------------------- fresh-head audit

def test_audit_recovers_a_planted_signal_and_reads_chance_without_one():
    g = torch.Generator().manual_seed(0)
    m, n = 2000, 10
    lab = torch.randint(0, n, (m, 2), generator=g)                     # two heads, two label tables
    code = torch.randn(n, 16, generator=g)
    # features that encode head 0's labels (plus noise) and nothing of head 1's
    planted = code[lab[:, 0]] + 0.3 * torch.randn(m, 16, generator=g)
    acc = train_fresh_heads(planted, lab, n, heads=2, seed=1, settings=AuditSettings(epochs=10))
    assert acc[0] > 0.95
    # features independent of the labels, too few dimensions to memorize 2000 samples: chance (0.1)
    noise = torch.randn(m, 3, generator=g)
    acc_noise = train_fresh_heads(noise, lab, n, heads=2, seed=1, settings=AuditSettings(epochs=10))
    assert (acc_noise < 0.14).all() and acc[1] < 0.2
    # the planted signal survives any feature scale once standardized (mean row norm √d)
    tiny = planted * 1e-3
    assert standardize_norm(tiny).norm(dim=1).mean() == pytest.approx(4.0, rel=1e-5)
    std = train_fresh_heads(tiny, lab, n, heads=2, seed=1, settings=AuditSettings(epochs=10, standardize=True))
    assert std[0] > 0.95
    # deterministic and independent of the global RNG
    torch.manual_seed(123)
    again = train_fresh_heads(planted, lab, n, heads=2, seed=1, settings=AuditSettings(epochs=10))
    assert torch.equal(acc, again)


# ---------------------------------------------------------------- RLP-head optimizer settings

def test_rlp_head_param_group(tiny_cfg):
    t = Trainer(tiny_cfg)                                                 # defaults: one group, as before
    assert len(t.opt.param_groups) == 1
    same = Trainer(tiny_cfg.replace(**{"rlp.lr": tiny_cfg.optim.lr, "rlp.weight_decay": 0.0}))
    assert len(same.opt.param_groups) == 1
    cfg = tiny_cfg.replace(**{"optim.weight_decay": 5e-4, "rlp.lr": 0.01, "rlp.weight_decay": 0.0})
    t = Trainer(cfg)
    g0, g1 = t.opt.param_groups
    heads = {id(p) for p in t.net.heads.parameters()}
    assert {id(p) for p in g1["params"]} == heads and not heads & {id(p) for p in g0["params"]}
    assert (g0["lr"], g0["weight_decay"], g1["lr"], g1["weight_decay"]) == (0.05, 5e-4, 0.01, 0.0)
    # the cosine schedule scales both groups
    next(t.fit())                                                         # mid-run (epoch 1 of 2)
    lr0, lr1 = (g["lr"] for g in t.opt.param_groups)
    assert 0 < lr1 < 0.01 and lr1 / lr0 == pytest.approx(0.01 / 0.05)
    with pytest.raises(ConfigError, match="rlp.weight_decay"):
        tiny_cfg.replace(**{"rlp.weight_decay": -0.5})
    # SGD without heads: make_optimizer takes any parameter list
    assert len(make_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))]).param_groups) == 1


def test_rlp_head_settings_in_trials_row_and_frozen_heads(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"rlp.lr": 1e-12, "rlp.weight_decay": 0.0, "run.epochs": 1})
    t = Trainer(cfg, out_dir=tmp_path)
    before = {k: v.clone() for k, v in t.net.heads.state_dict().items()}
    list(t.fit())
    after = t.net.heads.state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)   # lr 1e-12: heads stay
    row = read_trials(tmp_path).iloc[0]
    assert row["rlp.lr"] == 1e-12 and row["rlp.weight_decay"] == 0.0


# ---------------------------------------------------------------- 004's linear probe

def _adam20_reference(xtr, ytr, xte, yte, seed):
    """004's probe written independently: nn.Sequential(Linear), DataLoader(shuffle), Adam(1e-3), 20 epochs."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], int(ytr.max()) + 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=128, shuffle=True)
    for _ in range(20):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        return float((net(xte).argmax(1) == yte).float().mean())


def test_adam20_within_seed_noise_of_an_independent_reference():
    from rlp_tune.probes import adam_probe
    rng = np.random.default_rng(3)
    c, d = 5, 20
    centres = rng.normal(size=(c, d)) * 1.5
    y = rng.integers(0, c, 1500)
    x = torch.tensor(centres[y] + 2.0 * rng.normal(size=(1500, d)), dtype=torch.float32)
    y = torch.tensor(y)
    noisy = y.clone()
    flip = torch.tensor(rng.random(1000) < 0.4)
    noisy[:1000][flip] = torch.tensor(rng.integers(0, c, int(flip.sum())))
    xtr, ytr, xte, yte = x[:1000], noisy[:1000], x[1000:], y[1000:]
    ours = np.array([adam_probe(xtr, ytr, xte, yte, seed=s) for s in range(5)])
    ref = np.array([_adam20_reference(xtr, ytr, xte, yte, seed=100 + s) for s in range(5)])
    se = np.sqrt(ours.var(ddof=1) / 5 + ref.var(ddof=1) / 5)
    assert abs(ours.mean() - ref.mean()) <= 3 * se + 0.01, (ours, ref)
    assert ours.mean() > 0.5                                          # it learns (chance 0.2)


# ---------------------------------------------------------------- probe protocols

def test_probe_rows_of_different_label_sets_coexist_and_are_queryable(tiny_cfg, tmp_path):
    from rlp_tune.analysis.query import run_query
    from rlp_tune.offline.probe import probe_checkpoints
    cfg = tiny_cfg.replace(**{"run.keep_checkpoints": "all", "data.label_noise": 0.5, "probe.every": 2,
                              "probe.probes": ["knn"]})
    list(Trainer(cfg, out_dir=tmp_path).fit())
    probe_checkpoints(tmp_path, epochs="2", probes=["knn", "masc"], labels="train")
    probe_checkpoints(tmp_path, epochs="2", probes=["knn"], labels="clean", settings=["probe.k=5"])
    probe_checkpoints(tmp_path, epochs="2", probes=["knn"], labels="train")          # replaces its own rows only
    df = read_metrics(tmp_path)
    assert not df.duplicated(METRIC_KEY).any()
    knn = df[(df.metric == "knn_acc") & (df.epoch == 2) & (df.layer == "penultimate")]
    assert set(knn.protocol) == {"labels=clean;k=20", "labels=train;k=20", "labels=clean;k=5"}
    assert set(df[df.metric == "masc_acc"].protocol) == {"labels=train;threshold=0.99"}
    assert set(df[df.metric == "knn_acc"].epoch) == {0, 2}          # the trainer's rows are still there
    # the DuckDB views (rlp-tune query) see the same rows, once each
    out = run_query(tmp_path, "SELECT protocol, count(*) AS n FROM metrics WHERE metric = 'knn_acc' AND epoch = 2 "
                              "GROUP BY protocol ORDER BY protocol", fmt="csv")
    assert out.splitlines()[1:] == ["labels=clean;k=20,1", "labels=clean;k=5,1", "labels=train;k=20,1"]
    n = int(run_query(tmp_path, "SELECT count(*) FROM metrics", fmt="csv").splitlines()[1])
    assert n == len(df)
    cols = run_query(tmp_path, 'SELECT "test.knn_acc[labels=train;k=20]", "test.masc_acc[labels=train;threshold=0.99]",'
                               ' "train.rand_acc_eval" FROM final', fmt="csv").splitlines()
    assert len(cols) == 2 and "" not in cols[1].split(",")
    # the rows are really different fits (clean vs 50%-corrupted labels)
    assert knn.set_index("protocol").value["labels=clean;k=20"] != knn.set_index("protocol").value["labels=train;k=20"]


def test_version1_files_are_refused_in_one_line(tmp_path):
    """Metrics files written before the protocol column (schema 1): `rlp-tune query` names the file and
    its version in one line and exits 2."""
    d = tmp_path / "parquet" / "metrics" / "old"
    d.mkdir(parents=True)
    v1 = pa.table({"sweep": ["s"], "trial_id": ["old"], "epoch": pa.array([1], pa.int32()), "split": ["test"],
                   "layer": ["penultimate"], "head": pa.array([-1], pa.int32()), "metric": ["knn_acc"],
                   "value": [0.5], "wall_s": [1.0]})
    pq.write_table(v1, d / "final.parquet")
    r = subprocess.run([sys.executable, "-m", "rlp_tune.cli", "query", str(tmp_path), "SELECT * FROM metrics"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{d / 'final.parquet'}: results schema version 1" in r.stderr



# ---------------------------------------------------------------- bad input, old checkpoints

def test_probe_and_offline_settings_are_checked_before_any_work(tmp_path):
    from rlp_tune.errors import UserError
    from rlp_tune.offline.probe import probe_checkpoints
    from rlp_tune.offline.rlp import offline_rlp
    with pytest.raises(UserError, match="rlp.lam: `rlp-tune probe --set` takes probe.\\* keys only"):
        probe_checkpoints(tmp_path / "missing", settings=["rlp.lam=1"])
    with pytest.raises(UserError, match="probe.linear: 'adam' is not one of"):
        probe_checkpoints(tmp_path / "missing", settings=["probe.linear=adam"])
    with pytest.raises(UserError, match="--head-epochs: must be >= 1, got -1"):
        offline_rlp(tmp_path / "missing", head_epochs=-1)


def test_checkpoint_made_before_the_new_keys_resumes(tiny_cfg, tmp_path):
    """A checkpoint whose config lacks keys added since (rlp.lr, rlp.audit_every, probe.linear, ...)
    resumes when the config leaves them at their defaults."""
    cfg = tiny_cfg.replace(**{"run.epochs": 2})
    fit = Trainer(cfg, out_dir=tmp_path).fit()
    next(fit)
    fit.close()
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=False)
    for k in ("rlp.lr", "rlp.weight_decay", "rlp.eval_samples", "rlp.audit_every", "probe.linear"):
        del state["config"][k]
    torch.save(state, path)
    resumed = Trainer(cfg, out_dir=tmp_path)
    assert resumed.epoch == 1 and len(list(resumed.fit())) == 1
