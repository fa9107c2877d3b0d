"""Experiment trackers write each epoch's metrics, offline: TensorBoard event files, a W&B offline
run, an MLflow local (SQLite) store; for a single run (`rlp-tune train --log ...`) and a sweep.

    PYTHONPATH=. python -m pytest tests/test_trackers.py -q        # -m ray for the sweep test

Each test skips, naming the package, when its tracker is not installed (the `track` extra).
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rlp_tune.cli import main


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = {}
    for f in sorted(logdir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def wandb_history(run_file: Path) -> list[dict]:
    """History rows of a W&B offline run file (.wandb): W&B's header (":W&B", magic 0xBEE1, version 0),
    then LevelDB-log records (crc32 4, length 2, type 1; 32 KiB blocks) holding `Record` protobufs."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb
    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, rows = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:          # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            continue
        buf += chunk
        if kind in (1, 4):                     # FULL or LAST: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                rows.append({(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def _train(tmp_path, trackers: str, extra=()):
    out = tmp_path / "run"
    args = ["train", "run.epochs=3", "model.width=16", "run.device=cpu", "rlp.lam=1", "--out", str(out),
            "--no-progress", "--log", trackers, *extra]
    assert main(args) == 0
    from rlp_tune.reader import read_metrics
    df = read_metrics(out)
    ref = {e: df[(df.epoch == e) & (df.split == "test") & (df.metric == "acc")].value.item() for e in (1, 2, 3)}
    return out, ref


def test_tensorboard_event_files_hold_every_epoch(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'rlp_tune[track]')")
    out, ref = _train(tmp_path, "tensorboard")
    sc = tensorboard_scalars(out / "tracking" / "tensorboard")
    assert sorted(sc["test.acc"]) == [1, 2, 3]
    for e, v in ref.items():
        assert sc["test.acc"][e] == pytest.approx(v, rel=1e-6)      # stored as float32
    assert "train.rand_acc.penultimate" in sc and "train.loss_class" in sc


def test_wandb_offline_run_holds_every_epoch(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'rlp_tune[track]')")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out, ref = _train(tmp_path, "wandb", ["logging.wandb_mode=offline", "logging.project=rlp_test"])
    files = list((out / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rows = wandb_history(files[0])
    by_step = {r["_step"]: r for r in rows}
    assert sorted(by_step) == [1, 2, 3]
    for e, v in ref.items():
        assert by_step[e]["test.acc"] == pytest.approx(v, abs=1e-12)


def test_mlflow_local_store_holds_every_epoch(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'rlp_tune[track]')")
    from mlflow import MlflowClient
    out, ref = _train(tmp_path, "mlflow", ["logging.project=rlp_test"])
    client = MlflowClient(tracking_uri=f"sqlite:///{(out / 'tracking' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("rlp_test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    assert runs[0].data.params["rlp.lam"] == "1.0"
    hist = {m.step: m.value for m in client.get_metric_history(run_id, "test.acc")}
    assert hist == pytest.approx(ref, abs=1e-12)
    assert client.get_run(run_id).data.tags["rlp_tune.out"] == str(out)


def test_mlflow_interrupted_run_resumes_into_the_same_run(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install 'rlp_tune[track]')")
    from mlflow import MlflowClient

    from rlp_tune.config import load_config
    from rlp_tune.run.trackers import mlflow_uri, open_trackers
    from rlp_tune.run.train import Trainer
    cfg = load_config(None, ["run.epochs=4", "model.width=8", "run.device=cpu", "logging.trackers=mlflow"])
    out = tmp_path / "run"
    for stop_after in (2, None):                # interrupted after epoch 2, then resumed to the end
        tr = Trainer(cfg, out_dir=out)
        sinks = open_trackers(cfg, out, tr.trial_id)
        for rec in tr.fit():
            sinks.log(rec.epoch, rec.flat())
            if rec.epoch == stop_after:
                break
        sinks.close("KILLED" if stop_after else "FINISHED")
    client = MlflowClient(tracking_uri=mlflow_uri(cfg.logging, out))
    runs = client.search_runs([client.get_experiment_by_name("rlp_tune").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "train.acc")) == [1, 2, 3, 4]


@pytest.mark.ray
def test_sweep_trackers_trial_folders_and_best_checkpoint(tmp_path, monkeypatch):
    """A 2-trial sweep with all three trackers: Tune trial folders named by id and searched values,
    TensorBoard events per trial, one MLflow run and one W&B offline run per trial with every epoch;
    Tune's best result loads as a model (rlp_tune.load_run); provenance from the driver in every row."""
    for pkg in ("tensorboard", "tensorboardX", "wandb", "mlflow"):
        pytest.importorskip(pkg, reason=f"{pkg} not installed (pip install 'rlp_tune[track]')")
    monkeypatch.setenv("WANDB_SILENT", "true")
    import ray
    from mlflow import MlflowClient
    from ray import tune

    import rlp_tune
    from rlp_tune.provenance import origin
    from rlp_tune.reader import read_trials
    from rlp_tune.tune.space import load_space
    from rlp_tune.tune.sweep import run_sweep
    from rlp_tune.tune.trainable import train_trial
    from test_sweep import write_space
    space = load_space(write_space(tmp_path, "trk", epochs=2, samples=2, sched="fifo"),
                       ["logging.trackers=tensorboard,mlflow,wandb", "logging.wandb_mode=offline",
                        "logging.project=rlp_sweep"])
    try:
        out = run_sweep(space, storage=str(tmp_path / "res"))
        root = tmp_path / "res" / "trk"
        result = tune.Tuner.restore(str(root), trainable=train_trial).get_results() \
            .get_best_result(metric=space.metric, mode=space.mode)
    finally:
        ray.shutdown()
    assert out["exit_code"] == 0
    trials = read_trials(root)
    assert len(trials) == 2 and set(trials.status) == {"TERMINATED"}
    # Tune's trial folders: <trial id>_lam=..._n=..._heads=...
    folders = {t: [d for d in root.iterdir() if d.is_dir() and d.name.startswith(t + "_")] for t in trials.trial_id}
    for t, ds in folders.items():
        assert len(ds) == 1 and "_lam=" in ds[0].name and "_n=" in ds[0].name and "_heads=" in ds[0].name, ds
        sc = tensorboard_scalars(ds[0])
        assert sorted(sc["ray/tune/val.acc"]) == [1, 2]           # step = training iteration = epoch
    # MLflow: a run per trial with both epochs
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'tracking' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rlp_sweep").experiment_id])
    assert len(runs) == 2
    for r in runs:
        assert len(client.get_metric_history(r.info.run_id, "val.acc")) == 2
    # W&B: an offline run per trial, each with both epochs
    wb = list((root / "tracking").rglob("offline-run-*/run-*.wandb"))
    assert len(wb) == 2
    for f in wb:
        assert len([r["val.acc"] for r in wandb_history(f) if "val.acc" in r]) == 2
    # the best result's checkpoint → the trial's weights
    run = rlp_tune.load_run(result)
    tid = result.metrics["trial_id"]
    assert run.path == root / "trials" / tid / "checkpoints" / "model.pt" and run.epoch == 2
    assert run.config.rlp.lam == pytest.approx(result.config["rlp.lam"])
    # provenance: the driver's command line and git state in every row
    o = origin()
    assert set(trials["prov.command"]) == {o["prov.command"]}
    assert set(trials["prov.git_commit"].astype(str)) == {str(o["prov.git_commit"])}
    assert trials["prov.host"].notna().all() and trials["version.ray"].notna().all()


def test_wandb_without_login_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'rlp_tune[track]')")
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))            # no ~/.netrc, no W&B settings
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    out = tmp_path / "run"
    assert main(["train", "run.epochs=1", "model.width=8", "run.device=cpu", "--out", str(out), "--no-progress",
                 "--log", "wandb", "logging.wandb_mode=online"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rlp-tune: error: logging.trackers: wandb could not start") and "offline" in err[-1]
    assert not (out / "checkpoints").exists()            # refused before the first epoch
