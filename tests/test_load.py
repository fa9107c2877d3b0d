"""Loading a trained model (rlp_tune.load_run, checkpoints/model.pt) and provenance in the results.

    PYTHONPATH=. python -m pytest tests/test_load.py -q
"""
from __future__ import annotations

import json
import shutil
import types
import tomllib

import pytest
import torch

import rlp_tune
from rlp_tune.config import load_config
from rlp_tune.run.load import LoadError
from rlp_tune.reader import read_trials
from rlp_tune.run.train import Trainer

OV = ["run.epochs=2", "model.width=32", "run.device=cpu", "rlp.lam=1", "rlp.heads=2", "probe.class_heads=true",
      "run.batch_size=64"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    tr = Trainer(load_config(None, OV), out_dir=out)
    recs = list(tr.fit())
    return tr, out, recs


def _trainer_logits(tr):
    tr.net.eval()
    with torch.no_grad():
        return tr.net.model(tr.data.prepare(tr.data.x["test"]))[0]


def test_load_run_predicts_exactly_as_the_trainer(trained):
    tr, out, recs = trained
    run = rlp_tune.load_run(out)
    assert run.path == out / "checkpoints" / "model.pt" and run.epoch == 2
    assert run.config == tr.cfg
    x, y = tr.data.x["test"], tr.data.y["test"]
    logits = run.predict(x)
    assert torch.equal(logits, _trainer_logits(tr))
    # the recorded test accuracy is the loaded model's
    assert (logits.argmax(1) == y).sum().item() / len(y) == pytest.approx(recs[-1].get("test", "acc"), abs=1e-12)
    # heads come back too: RLP heads per tap and the detached class heads
    assert set(run.net.heads) == set(tr.net.heads) and set(run.net.class_heads) == set(tr.net.class_heads)
    for k, v in tr.net.state_dict().items():
        assert torch.equal(run.net.state_dict()[k], v), k


def test_model_pt_loads_with_plain_torch_weights_only(trained):
    tr, out, _ = trained
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    assert state["format"] == "rlp_tune.model" and state["epoch"] == 2
    assert state["config"]["rlp.lam"] == 1.0 and state["config"]["rlp.layers"] == ["penultimate"]
    assert state["in_shape"] == [1, 8, 8] and state["num_classes"] == 10 and state["n"] == 10
    assert set(state["state_dict"]) == set(tr.net.state_dict())
    with pytest.raises(Exception):   # the resumable checkpoint holds RNG state: not weights-only
        torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def test_load_from_last_pt_a_tune_trial_folder_and_a_bucket(trained, tmp_path, s3_endpoint):
    tr, out, _ = trained
    ref = _trainer_logits(tr)
    assert torch.equal(rlp_tune.load_run(out / "checkpoints" / "last.pt").predict(tr.data.x["test"]), ref)
    # a sweep: ROOT/trials/<id>/ holds the trial's checkpoints; Tune's trial folder names the id
    root = tmp_path / "sweep"
    shutil.copytree(out, root / "trials" / "t1")
    tune_folder = root / "t1_lam=1"
    tune_folder.mkdir()
    (tune_folder / "result.json").write_text(json.dumps({"trial_id": "t1", "epoch": 2}) + "\n")
    run = rlp_tune.load_run(tune_folder)
    assert run.path == root / "trials" / "t1" / "checkpoints" / "model.pt"       # training ended: the weights
    # a Tune Result of that sweep (its config names the sweep's trial id)
    result = types.SimpleNamespace(config={"_trial": "t1"}, metrics={}, path=str(tune_folder), filesystem=None)
    assert rlp_tune.load_run(result).path == run.path
    # the same trial folder in a bucket
    bucket = s3_endpoint()
    from rlp_tune import storage
    for f in ("model.pt", "last.pt"):
        storage.write_bytes(f"{bucket}/sweep/trials/t1", f"checkpoints/{f}", (out / "checkpoints" / f).read_bytes())
    remote = rlp_tune.load_run(f"{bucket}/sweep/trials/t1")
    assert remote.epoch == 2 and torch.equal(remote.predict(tr.data.x["test"]), ref)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no model.pt"):
        rlp_tune.load_run(tmp_path / "empty")
    with pytest.raises(LoadError, match="no model.pt"):
        rlp_tune.load_run(f"{bucket}/sweep/trials/none")


def test_provenance_columns_in_trials_row_and_config_toml(trained, tmp_path):
    _, out, _ = trained
    row = read_trials(out).iloc[0]
    for col in ("prov.git_commit", "prov.git_dirty", "prov.command", "prov.cwd", "prov.host", "prov.device_name",
                "version.rlp_tune", "version.torch", "version.ray", "version.python"):
        assert col in row.index, col
    assert row["prov.host"] and row["prov.device_name"] and row["version.torch"] == torch.__version__
    assert row["prov.git_commit"] is None or len(row["prov.git_commit"]) == 40   # tests may run outside git

    from rlp_tune.cli import main
    run = tmp_path / "cli"
    assert main(["train", "run.epochs=1", "model.width=8", "run.device=cpu", "--out", str(run), "--no-progress"]) == 0
    doc = tomllib.loads((run / "config.toml").read_text())
    prov = doc["provenance"]
    assert prov["prov.command"].startswith("python -m rlp_tune.cli") or "rlp-tune" in prov["prov.command"] \
        or "pytest" in prov["prov.command"]
    assert prov["prov.host"] == read_trials(run).iloc[0]["prov.host"] and "version.torch" in prov
    assert load_config(run / "config.toml").run.epochs == 1      # the table is ignored when read back


def test_git_state_of_a_work_tree(tmp_path):
    import subprocess

    from rlp_tune.provenance import git_state, origin
    assert git_state(str(tmp_path)) == (None, None)
    g = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(g + ["init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run(g + ["-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run(g + ["-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    git_state.cache_clear()
    assert git_state(str(tmp_path)) == (head, False)
    (tmp_path / "a.txt").write_text("2")
    git_state.cache_clear()
    o = origin(cwd=str(tmp_path), argv=["rlp-tune", "train", "rlp.lam=1"])
    assert o["prov.git_commit"] == head and o["prov.git_dirty"] is True
    assert o["prov.command"] == "rlp-tune train rlp.lam=1"


def test_weights_files_without_net_meta_are_refused_in_one_line(trained, tmp_path):
    """model.pt and last.pt written before net_meta held the training-set size m: load_run names the
    file and its version in one line (a CheckpointError: exit 2) instead of rebuilding from the data."""
    from rlp_tune.checkpoint import CheckpointError
    _, out, _ = trained
    state = torch.load(out / "checkpoints" / "model.pt", weights_only=True)
    del state["m"]
    old = tmp_path / "model.pt"
    torch.save(state, old)
    with pytest.raises(CheckpointError) as e:
        rlp_tune.load_run(old)
    assert str(e.value) == (f"{old}: checkpoint version 1 of an older rlp_tune (no net_meta m: written before "
                            "2026-12); load_run needs them: train it again")
    full = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    del full["net_meta"]
    torch.save(full, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="no net_meta in_shape, num_classes, m"):
        rlp_tune.load_run(tmp_path / "last.pt")
