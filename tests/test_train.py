"""Trainer: metrics per epoch, Parquet rows, bit-exact resume, checkpoint errors, λ lowers memorization, DDP."""
import os
import shutil
import socket

import pytest
import torch

from rlp_tune.config import Config
from rlp_tune.data.labels import random_label_table
from rlp_tune.reader import read_metrics, read_trials
from rlp_tune.results import METRIC_KEY
from rlp_tune.checkpoint import CheckpointError
from rlp_tune.run.train import Trainer


def test_epoch_records_have_the_metrics(tiny_cfg):
    cfg = tiny_cfg.replace(**{"rlp.heads": 2, "rlp.layers": ["layer1", "penultimate"]})
    recs = list(Trainer(cfg).fit())
    assert [r.epoch for r in recs] == [1, 2]
    r = recs[-1]
    for split, metric in [("train", "acc"), ("train", "loss_class"), ("test", "acc"), ("test", "loss_class"),
                          ("train", "samples_per_s"), ("train", "epoch_s")]:
        assert r.get(split, metric) == r.get(split, metric)  # not NaN
    for tap in ["layer1", "penultimate"]:
        for head in [0, 1, -1]:
            assert 0.0 <= r.get("train", "rand_acc", layer=tap, head=head) <= 1.0
        assert r.get("train", "loss_rnd", layer=tap) > 0 and r.get("train", "loss_reg", layer=tap) > 0
    assert r.get("train", "acc") > 0.3 and r.get("test", "acc") > 0.3   # learns (chance: 0.1)


def _params(trainer):
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


def test_resume_is_bit_exact(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"run.epochs": 4, "model.dropout": 0.2, "data.augment": "none"})
    straight = Trainer(cfg, out_dir=tmp_path / "a")
    rows_a = [r.rows for r in straight.fit()]

    first = Trainer(cfg, out_dir=tmp_path / "b")
    fit = first.fit()
    rows_b = [next(fit).rows, next(fit).rows]        # "crash" after epoch 2
    fit.close()
    resumed = Trainer(cfg, out_dir=tmp_path / "b")
    assert resumed.epoch == 2
    rows_b += [r.rows for r in resumed.fit()]

    timing = {"samples_per_s", "epoch_s"}
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows if r["metric"] not in timing]  # noqa: E731
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]
    pa, pb = _params(straight), _params(resumed)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)

    # Parquet: epochs 1..4 once each, no duplicate key, trial finished
    df = read_metrics(tmp_path / "b")
    assert sorted(df.epoch.unique()) == [1, 2, 3, 4]
    assert not df.duplicated(METRIC_KEY).any()
    assert read_trials(tmp_path / "b").status.tolist() == ["TERMINATED"]


def test_crash_after_rows_before_checkpoint_leaves_no_duplicate(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"run.epochs": 3})
    t = Trainer(cfg, out_dir=tmp_path)
    fit = t.fit()
    next(fit)
    fit.close()
    # simulate: epoch 2's rows were written, then the process died before its checkpoint
    t.writer.write_epoch(2, [dict(split="train", layer="", head=-1, metric="acc", value=0.123)])
    resumed = Trainer(cfg, out_dir=tmp_path)
    assert resumed.epoch == 1
    list(resumed.fit())
    df = read_metrics(tmp_path)
    assert sorted(df.epoch.unique()) == [1, 2, 3] and not df.duplicated(METRIC_KEY).any()
    assert 0.123 not in df[(df.epoch == 2) & (df.metric == "acc")].value.tolist()


def test_corrupt_checkpoint_is_a_clear_error_and_untouched(tiny_cfg, tmp_path):
    list(Trainer(tiny_cfg.replace(**{"run.epochs": 1}), out_dir=tmp_path).fit())
    ck = tmp_path / "checkpoints" / "last.pt"
    ck.write_bytes(ck.read_bytes()[:100])
    before = ck.read_bytes()
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        Trainer(tiny_cfg, out_dir=tmp_path)
    assert ck.read_bytes() == before


def test_mismatched_checkpoint_names_the_key(tiny_cfg, tmp_path):
    list(Trainer(tiny_cfg.replace(**{"run.epochs": 1}), out_dir=tmp_path).fit())
    with pytest.raises(CheckpointError, match=r"rlp\.n \(checkpoint 16, config 32\)"):
        Trainer(tiny_cfg.replace(**{"rlp.n": 32}), out_dir=tmp_path)
    # a longer schedule is refused (the cosine schedule spans run.epochs); keys outside the math resume
    with pytest.raises(CheckpointError, match=r"run\.epochs \(checkpoint 1, config 3\).*cannot be extended"):
        Trainer(tiny_cfg.replace(**{"run.epochs": 3}), out_dir=tmp_path)
    assert Trainer(tiny_cfg.replace(**{"run.epochs": 1, "run.threads": 1}), out_dir=tmp_path).epoch == 1


def test_random_labels_do_not_depend_on_batching(tiny_cfg):
    a = Trainer(tiny_cfg.replace(**{"run.batch_size": 32})).label_tables(1)
    b = Trainer(tiny_cfg.replace(**{"run.batch_size": 256})).label_tables(1)
    assert torch.equal(a["penultimate"], b["penultimate"])
    t = random_label_table(100, 3, 7, seed=5, tap="penultimate")
    assert t.shape == (100, 3) and t.max() < 7
    assert torch.equal(t, random_label_table(100, 3, 7, seed=5, tap="penultimate"))
    # reshuffle mode draws new labels every epoch, unique mode is a permutation of 0..m-1
    assert not torch.equal(random_label_table(100, 1, 7, 5, "p", "reshuffle", 1),
                           random_label_table(100, 1, 7, 5, "p", "reshuffle", 2))
    u = random_label_table(100, 2, 100, 5, "p", "unique")
    assert torch.equal(u[:, 0].sort().values, torch.arange(100))


def test_raising_lambda_lowers_random_label_accuracy():
    """The sign of eq. 4: L_reg must *suppress* random-label predictions as λ grows."""
    base = Config().replace(**{
        "data.name": "digits", "data.fraction": 0.1, "model.width": 512, "model.depth": 2, "rlp.n": 8,
        "optim.lr": 0.1, "optim.schedule": "constant", "run.epochs": 30, "run.batch_size": 32, "run.device": "cpu",
        "run.threads": 1})
    acc = {}
    for lam in [0.0, 1.0, 10.0]:
        rec = list(Trainer(base.replace(**{"rlp.lam": lam})).fit())[-1]
        acc[lam] = rec.get("train", "rand_acc", layer="penultimate")
    chance = 1 / 8
    assert acc[0.0] > chance + 0.15, acc        # memorization is measured without λ
    assert acc[1.0] < acc[0.0] - 0.1 and acc[10.0] <= acc[1.0] + 0.02, acc   # monotone (to sampling noise)
    assert acc[10.0] < chance + 0.1, acc


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        t = Trainer(cfg)
        list(t.fit())
        if rank == 0:
            torch.save({k: v.cpu() for k, v in t.net.state_dict().items()}, out)
        del t                 # release DDP's reducer before the group goes away
        dist.barrier()        # no rank tears gloo down while its peer still talks to it
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_equal_one(tiny_cfg, tmp_path):
    # m = 1437 is not a multiple of the batch: the last, uneven shard is covered too
    cfg = tiny_cfg.replace(**{"run.batch_size": 100, "rlp.heads": 2, "rlp.lam": 1.0})
    one = Trainer(cfg)
    list(one.fit())
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(out)), nprocs=2, join=True)
    ddp = torch.load(out)
    ref = one.net.state_dict()
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-5, atol=1e-5, msg=k)


def test_stop_train_acc_ends_the_run_for_good(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(**{"run.epochs": 10, "run.stop_train_acc": 0.2})
    recs = list(Trainer(cfg, out_dir=tmp_path).fit())
    assert recs[-1].stop and len(recs) < 10
    assert read_trials(tmp_path).status.tolist() == ["TERMINATED"]
    again = Trainer(cfg, out_dir=tmp_path)
    assert list(again.fit()) == [] and again.epoch == len(recs)     # a resume does not train on


@pytest.mark.parametrize("variant", [
    {"rlp.labels": "reshuffle"},
    {"rlp.labels": "unique"},
    {"rlp.layout": "per_class", "rlp.reg": "uniform", "rlp.lam": 1.0},
    {"rlp.layers": ["all"], "rlp.regularize": ["layer1"], "rlp.lam": 1.0, "rlp.hidden": 16, "rlp.heads": 2},
    {"model.name": "vit_tiny4", "data.name": "synthetic", "data.synthetic_size": 64, "rlp.layers": ["block2", "penultimate"],
     "rlp.regularize": ["all"], "rlp.lam": 1.0, "probe.class_heads": True},
], ids=["reshuffle", "unique", "per_class-uniform", "all-taps-hidden", "vit-token-taps"])
def test_rlp_variants_train(tiny_cfg, variant):
    t = Trainer(tiny_cfg.replace(**{"run.epochs": 1, **variant}))
    rec = list(t.fit())[-1]
    if variant.get("rlp.labels") == "unique":
        assert t.n == t.data.m                             # n = m: one label per sample
    for tap in t.rlp_taps:
        assert 0 <= rec.get("train", "rand_acc", layer=tap) <= 1
        assert rec.get("train", "loss_reg", layer=tap) == rec.get("train", "loss_reg", layer=tap)
    if "model.name" in variant:
        assert all(isinstance(t.net.heads[tap].norm, torch.nn.LayerNorm) == (tap != "penultimate") for tap in t.rlp_taps)


def test_reshuffled_labels_cannot_be_memorized():
    """Paper A.2's sanity check: labels redrawn every epoch stay at chance; fixed ones are learned."""
    base = Config().replace(**{
        "data.name": "digits", "data.fraction": 0.1, "model.width": 512, "rlp.n": 8, "optim.lr": 0.1,
        "optim.schedule": "constant", "run.epochs": 30, "run.batch_size": 32, "run.device": "cpu", "run.threads": 1})
    fixed = list(Trainer(base).fit())[-1].get("train", "rand_acc", layer="penultimate")
    shuffled = list(Trainer(base.replace(**{"rlp.labels": "reshuffle"})).fit())[-1].get(
        "train", "rand_acc", layer="penultimate")
    assert shuffled < 1 / 8 + 0.06 < fixed, (shuffled, fixed)
