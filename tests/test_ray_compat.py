"""Each use of Ray's internals (rlp_tune/tune/_ray_compat.py) checked against the installed Ray.

    .venv/bin/python -m pytest tests/test_ray_compat.py -q            # one small local Ray run (-m ray)

If one of these fails after a Ray upgrade, fix that function in _ray_compat.py (and its pin in
pyproject.toml), not its callers.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rlp_tune.tune import _ray_compat as compat

ROOT = Path(__file__).resolve().parents[1]


def test_installed_ray_is_the_one_the_compat_file_was_written_for():
    import ray
    major_minor = compat.RAY_WRITTEN_FOR.rsplit(".", 1)[0]
    assert ray.__version__.startswith(major_minor + "."), (ray.__version__, compat.RAY_WRITTEN_FOR)
    pin = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if '"ray[' in line)
    assert f">={major_minor}" in pin and "<" in pin, pin       # pyproject pins the range checked here


def test_loopback_only_makes_ray_pick_the_loopback_address(monkeypatch):
    import ray
    from ray._private import ray_constants
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)     # as on a Linux host
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    compat.loopback_only()
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    if not ray.is_initialized():       # without a running node Ray derives "this node's address" from it
        assert ray.util.get_node_ip_address() == "127.0.0.1"


def test_cluster_config_check_fills_defaults_and_rejects_a_misspelt_key():
    import copy

    import jsonschema
    import yaml
    raw = yaml.safe_load((ROOT / "cluster" / "cloud" / "aws.yaml").read_text())
    cfg = compat.check_cluster_config(raw)
    assert "max_workers" not in raw or raw["max_workers"] == cfg["max_workers"]
    assert set(raw) < set(cfg)                                  # Ray's defaults were merged in
    broken = copy.deepcopy(raw)
    broken["provider"]["typ"] = broken["provider"].pop("type")
    with pytest.raises((jsonschema.ValidationError, ValueError, KeyError)):
        compat.check_cluster_config(broken)


def test_state_reader_says_unknown_for_other_layouts(tmp_path):
    assert compat.newest_experiment_state(tmp_path) is None
    assert compat.read_newest_experiment_state(str(tmp_path)) is None
    for i, text in enumerate(['{"trial_data": [["t1", "{}"]]}', "not json", '{"trial_data": [[]]}', "[]"]):
        f = tmp_path / f"experiment_state-2026-01-0{i + 1}_00-00-00.json"
        f.write_text(text)
        assert compat.trial_ids_in_state(f) is None, text
        assert compat.newest_experiment_state(tmp_path) == f    # the timestamp orders them
    assert compat.trial_ids_in_state(tmp_path / "absent.json") is None
    good = json.dumps({"trial_data": [[json.dumps({"trial_id": "a", "config": {"x": 1}, "status": "PENDING"}), "{}"]]})
    assert compat.trials_in_state(good) == {"a": ({"x": 1}, "PENDING")}


@pytest.mark.ray
def test_tune_internals_against_a_real_run(tmp_path):
    """One small local Ray run: the node binds 127.0.0.1, the saved experiment state lists the trials
    Tune ran, and a callback added to a restored tuner sees the resumed trials' results."""
    import ray
    from ray import tune
    from ray.tune import Callback

    def flaky(config):      # nested: pickled by value, so Ray's workers need not import this file
        """Reports a checkpoint, then fails until the file config["ok"] exists, then reports once."""
        import tempfile
        if not os.path.exists(config["ok"]):
            d = tempfile.mkdtemp()
            open(os.path.join(d, "w"), "w").close()
            tune.report({"score": 0}, checkpoint=tune.Checkpoint.from_directory(d))
            raise RuntimeError("not yet")
        tune.report({"score": config["x"]})

    compat.loopback_only()
    ray.init(num_cpus=2, **compat.node_ip_kwargs("127.0.0.1"), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}

        ok = tmp_path / "ok"
        space = {"x": tune.grid_search([1, 2]), "ok": str(ok)}
        first = tune.Tuner(flaky, param_space=space,
                           run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
        ran = {Path(r.path).name for r in first}                # trial folders: <trainable>_<trial id>_…
        assert len(first.errors) == 2
        root = tmp_path / "exp"
        state = compat.newest_experiment_state(root)
        assert state is not None and state.name.startswith("experiment_state-")
        ids = compat.trial_ids_in_state(state)
        assert ids is not None and len(ids) == 2
        assert all(any(i in r for r in ran) for i in ids)      # the ids are those of the trials Tune ran
        trials = compat.trials_in_state(state.read_text())     # their configs and statuses too
        assert set(trials) == ids and sorted(c["x"] for c, _ in trials.values()) == [1, 2]
        assert {st for _, st in trials.values()} == {"ERROR"}
        sessions = compat.state_sessions(root)      # the state files of the one driver session, loadable
        assert len(sessions) == 1 and state.name == f"experiment_state-{sessions[0]}.json"
        assert compat.session_problem(root, sessions[0]) is None
        for where in (str(root), f"file://{root}"):             # local path or URI: the same file, its text
            path, text = compat.read_newest_experiment_state(where)
            assert path.endswith(state.name) and compat.trials_in_state(text) == trials
        assert {p.name.split("-20")[0] for p in compat.session_files(root, sessions[0])} == {
            "experiment_state", "basic-variant-state"}

        # the checkpoint folders the state names (read from its pickled checkpoint managers without
        # unpickling): one per trial, there; one deleted (as Tune deletes old ones after a save) gets a
        # stand-in, and the restore below then does not fail on it
        from rlp_tune.tune.restore import GONE, mend_missing_checkpoints
        ckpts = compat.checkpoint_paths_in_state(state.read_text())
        assert len(ckpts) == 2 and all(Path(c).is_dir() and Path(c).name == "checkpoint_000000" for c in ckpts)
        shutil.rmtree(ckpts[0])
        assert mend_missing_checkpoints(str(root)) == [ckpts[0]] and (Path(ckpts[0]) / GONE).exists()
        assert mend_missing_checkpoints(str(root)) == []

        class Seen(Callback):
            def __init__(self):
                self.results = []

            def on_trial_result(self, iteration, trials, trial, result, **info):
                self.results.append((trial.trial_id, result["score"]))

        seen = Seen()
        ok.write_text("")
        tuner = tune.Tuner.restore(str(root), trainable=flaky, resume_errored=True)
        compat.add_callbacks_on_restore(tuner, [seen])
        second = tuner.fit()
        assert not second.errors
        assert sorted(s for _, s in seen.results) == [1, 2] and {t for t, _ in seen.results} == ids
    finally:
        ray.shutdown()
