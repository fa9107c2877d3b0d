"""The CLI's error contract, one case per bad input: exit code 2, ONE line `rlp-tune: error: ...` on
stderr naming the cause, no traceback, nothing left behind (no folder, no file, no rewritten
file), no Ray started, no training.

    pytest tests/test_cli_errors.py -q

Cases run `rlp_tune.cli.main` in this process (each fails before torch work, except the
`sweep.metric` case, which runs one stand-in step of the trainer: that is how the metric is checked).
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from rlp_tune.cli import main

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0   # root ignores file permissions

TINY = """
[data]
name = "digits"
[model]
name = "mlp"
width = 16
[rlp]
n = 8
[run]
epochs = 2
batch_size = 256
device = "cpu"
"""

SPACE = """
base = "tiny.toml"
[fixed]
"data.val_fraction" = 0.15
[search]
"rlp.lam" = {{ dist = "loguniform", low = 1e-2, high = 1e2 }}
[sweep]
name = "s"
metric = "{metric}"
num_samples = 2
[scheduler]
type = "asha"
grace_period = {grace}
reduction_factor = {rf}
[resources]
cpus_per_worker = {cpus}
gpus_per_worker = {gpus}
"""


class Marker:
    """Unpickling this creates `path`: what a crafted file would do if it were loaded unrestricted."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: a tiny config, a finished 2-epoch run, an empty folder, a plain file, spaces."""
    d = tmp_path_factory.mktemp("ws")
    (d / "tiny.toml").write_text(TINY)
    assert main(["train", str(d / "tiny.toml"), "--out", str(d / "run"), "--no-progress"]) == 0
    (d / "empty").mkdir()
    (d / "afile").write_text("x")
    (d / "bad_utf8.toml").write_bytes(b"\xff\xfe[run]\n")
    (d / "unreadable.toml").write_text("[run]\n")
    (d / "unreadable.toml").chmod(0)
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    ok = dict(metric="val.acc", grace=1, rf=2, cpus=1, gpus=0)
    spaces = {"ok": {}, "metric": {"metric": "val.accuracy"}, "grace0": {"grace": 0}, "rf1": {"rf": 1},
              "cpus": {"cpus": (os.cpu_count() or 1) + 1}, "gpus": {"gpus": torch.cuda.device_count() + 1}}
    for name, change in spaces.items():
        (d / f"space_{name}.toml").write_text(SPACE.format(**{**ok, **change}))
    # a metrics file without its `value` column
    import shutil

    import pyarrow.parquet as pq
    shutil.copytree(d / "run", d / "nocol")
    f = next((d / "nocol" / "parquet" / "metrics").glob("*/final.parquet"))
    pq.write_table(pq.read_table(f).drop_columns(["value"]), f)
    # a run whose checkpoint has no config (what a hand-made or foreign checkpoint may lack)
    from rlp_tune.checkpoint import CHECKPOINT_GLOBALS
    shutil.copytree(d / "run", d / "noconfig")
    ck = d / "noconfig" / "checkpoints" / "last.pt"
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        state = torch.load(ck, weights_only=True)
    del state["config"]
    torch.save(state, ck)
    # files past the parser's bounds, a `base` link loop, a sweep name that is a path
    (d / "dotted.toml").write_text("a" + ".a" * 199_999 + " = 1\n")      # 200,000 parts (was quadratic)
    (d / "sections.toml").write_text("[a]\n" * 1_000_000)                 # 10^6 tables, 4 MB
    (d / "tables.toml").write_text("".join(f"[t{i}]\n" for i in range(2000)))
    (d / "nested.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")   # RecursionError in tomllib
    os.symlink("loop.toml", d / "loop.toml")
    (d / "space_loop.toml").write_text(SPACE.format(**ok).replace('base = "tiny.toml"', 'base = "loop.toml"'))
    (d / "space_name.toml").write_text(SPACE.format(**ok).replace('name = "s"', 'name = "../victim"'))
    # a folder that already holds a sweep
    (d / "st" / "s").mkdir(parents=True)
    (d / "st" / "s" / "space.toml").write_text("# a sweep's stored space\n")
    yield d
    (d / "ro").chmod(0o755)


def snapshot(root: Path) -> dict:
    """Every path under root with its size and mtime; a run folder's `.lock` only by its presence
    (a process that takes the lock writes its pid there, even one that then refuses to train); a link
    by itself (lstat: the workspace holds a link loop)."""
    return {str(p.relative_to(root)): (p.is_dir(), p.lstat().st_size, p.lstat().st_mtime_ns)
            if p.name != ".lock" else "lock" for p in root.rglob("*")}


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:   # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def assert_one_line_error(rc, err, *needles):
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("rlp-tune: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


W = "{ws}"   # placeholder for the workspace folder in the argv lists below
CASES = {
    # config files and values
    "config_not_utf8": (["train", f"{W}/bad_utf8.toml", "--out", f"{W}/o"], ["not UTF-8"]),
    "config_is_folder": (["train", f"{W}/empty", "--out", f"{W}/o"], ["is a folder, not a config file"]),
    "config_missing": (["train", f"{W}/nope.toml", "--out", f"{W}/o"], ["config file not found"]),
    "betas_length": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "optim.name=adamw",
                      "--set", "optim.betas=[0.95]"], ["optim.betas", "two numbers"]),
    "betas_range": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "optim.betas=1.5,0.9"],
                    ["optim.betas", "[0, 1)"]),
    # values checked against the data and the memory
    "val_split_rounds_to_0": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "data.val_fraction=0.0001"],
                              ["data.val_fraction", "0 validation samples"]),
    "probe_k_over_train_set": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "probe.every=1",
                                "--set", "probe.k=100000"], ["probe.k", "1437"]),
    "probe_layer_in_config": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "probe.every=1",
                               "--set", "probe.layers=bogus"], ["probe.layers", "bogus"]),
    "probe_name_in_config": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "probe.every=1",
                              "--set", "probe.probes=knnn"], ["probe.probes", "knnn"]),
    "rlp_n_too_large": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "rlp.n=100000000000"],
                        ["rlp.n", "GiB"]),
    "width_too_large": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "model.width=1000000"],
                        ["model.width", "GiB"]),
    "width_overflows": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "model.width=10000000000"],
                        ["model.width", "cannot be built"]),
    # output folders
    "out_is_file": (["train", f"{W}/tiny.toml", "--out", f"{W}/afile"], ["--out", "not a folder"]),
    "out_under_file": (["train", f"{W}/tiny.toml", "--out", f"{W}/afile/sub"], ["afile is a file"]),
    "finished_run_longer": (["train", f"{W}/tiny.toml", "--out", f"{W}/run", "--set", "run.epochs=4"],
                            ["run.epochs (checkpoint 2, config 4)", "cannot be extended"]),
    "report_out_is_file": (["report", f"{W}/run", "--out", f"{W}/afile"], ["--out", "not a folder"]),
    # results folders and SQL
    "report_empty": (["report", f"{W}/empty", "--out", f"{W}/R"], ["no results in"]),
    "analyze_empty": (["analyze", f"{W}/empty"], ["no results in"]),
    "query_syntax": (["query", f"{W}/run", "SELEC * FROM final"], ["Parser Error"]),
    "query_column": (["query", f"{W}/run", "SELECT nope FROM final"], ["nope"]),
    "query_table": (["query", f"{W}/run", "SELECT * FROM nope"], ["nope"]),
    "query_copy": (["query", f"{W}/run", f"COPY (SELECT 1) TO '{W}/run/parquet/trials/run.parquet'"],
                   ["only SELECT", "COPY"]),
    "query_attach": (["query", f"{W}/run", f"ATTACH '{W}/run/x.db'"], ["only SELECT", "ATTACH"]),
    "query_two_statements": (["query", f"{W}/run", "SELECT 1; SELECT 2"], ["one SELECT statement"]),
    "query_read_csv_outside": (["query", f"{W}/run", "SELECT * FROM read_csv('/etc/passwd')"],
                               ["only the views of the results", "/etc/passwd"]),
    "query_glob_outside": (["query", f"{W}/run", "SELECT * FROM glob('/root/*')"], ["only the views of the results"]),
    "query_set": (["query", f"{W}/run", "SET enable_external_access = true"], ["only SELECT"]),
    # probes
    "probe_unknown": (["probe", f"{W}/run", "--probes", "knnn"], ["--probes", "knnn"]),
    "probe_epochs_not_numbers": (["probe", f"{W}/run", "--epochs", "1,x"], ["--epochs", "'1,x'"]),
    "offline_epochs_negative": (["offline-rlp", f"{W}/run", "--epochs", "-2"], ["--epochs", "≥ 0"]),
    "offline_head_epochs": (["offline-rlp", f"{W}/run", "--head-epochs", "-1"], ["--head-epochs", "≥ 1"]),
    # sweeps: all before Ray starts
    "resume_not_a_sweep": (["resume", f"{W}/empty"], ["not a sweep folder"]),
    "status_not_a_sweep": (["status", f"{W}/empty"], ["not a sweep folder"]),
    "status_unknown_uri_scheme": (["status", "foo://bucket/sweep"], ["foo://bucket/sweep: cannot open it", "Unrecognized filesystem"]),
    "resume_unknown_uri_scheme": (["resume", "foo://bucket/sweep"], ["foo://bucket/sweep: cannot open it"]),
    "sweep_metric_not_reported": (["sweep", f"{W}/space_metric.toml", "--storage", f"{W}/st2"],
                                  ["sweep.metric", "val.accuracy", "did you mean val.acc"]),
    "sweep_set_searched_key": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/st2", "--set", "rlp.lam=1"],
                               ["rlp.lam", "searched"]),
    "sweep_val_split_rounds_to_0": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/st2", "--set",
                                     "data.val_fraction=0.0001"], ["data.val_fraction", "0 validation samples"]),
    "sweep_probe_k": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/st2", "--set", "probe.every=1",
                       "--set", "probe.k=100000"], ["probe.k"]),
    "sweep_storage_is_file": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/afile"], ["--storage", "not a folder"]),
    "sweep_exists": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/st"], ["already holds a sweep"]),
    "asha_grace_0": (["sweep", f"{W}/space_grace0.toml", "--storage", f"{W}/st2"], ["scheduler.grace_period"]),
    "asha_rf_1": (["sweep", f"{W}/space_rf1.toml", "--storage", f"{W}/st2"], ["scheduler.reduction_factor"]),
    "too_many_cpus": (["sweep", f"{W}/space_cpus.toml", "--storage", f"{W}/st2"],
                      ["resources.cpus_per_worker", "CPUs"]),
    "too_many_gpus": (["sweep", f"{W}/space_gpus.toml", "--storage", f"{W}/st2"],
                      ["resources.gpus_per_worker", "GPUs"]),
    "argparse_bad_flag": (["analyze", f"{W}/run", "--boot", "-3"], ["--boot"]),
    # untrusted files and names (tests/test_untrusted.py has the attacks themselves)
    "checkpoint_without_config": (["probe", f"{W}/noconfig"], ["last.pt", "not an rlp_tune checkpoint", "config"]),
    "train_checkpoint_without_config": (["train", f"{W}/tiny.toml", "--out", f"{W}/noconfig"],
                                        ["last.pt", "not an rlp_tune checkpoint"]),
    "config_dotted_key_200k_parts": (["train", f"{W}/dotted.toml", "--out", f"{W}/o"], ["more than 16 parts"]),
    "config_10e6_sections": (["train", f"{W}/sections.toml", "--out", f"{W}/o"], ["at most 1048576 bytes"]),
    "config_2000_tables": (["train", f"{W}/tables.toml", "--out", f"{W}/o"], ["2000 table headers", "at most 1000"]),
    "config_nested_deeply": (["train", f"{W}/nested.toml", "--out", f"{W}/o"], ["nested too deeply"]),
    "config_link_loop": (["train", f"{W}/loop.toml", "--out", f"{W}/o"], ["loop.toml", "symbolic links"]),
    "space_base_link_loop": (["sweep", f"{W}/space_loop.toml", "--storage", f"{W}/st2"], ["loop.toml", "symbolic links"]),
    "space_dotted_key": (["sweep", f"{W}/dotted.toml", "--storage", f"{W}/st2"], ["more than 16 parts"]),
    "run_name_traversal": (["train", f"{W}/tiny.toml", "--out", f"{W}/o", "--set", "run.name=../../../victim"],
                           ["run.name", "'../../../victim'", "contains '/'"]),
    "sweep_name_traversal": (["sweep", f"{W}/space_name.toml", "--storage", f"{W}/st2"], ["sweep.name", "'../victim'"]),
    "sweep_name_flag_traversal": (["sweep", f"{W}/space_ok.toml", "--storage", f"{W}/st2", "--name", "../victim",
                                   "--fresh"], ["--name", "'../victim'"]),
    "dashboard_port_out_of_range": (["dashboard", f"{W}/run", "--port", "99999"], ["--port", "65535"]),
}
if not ROOT_USER:
    CASES["config_unreadable"] = (["train", f"{W}/unreadable.toml", "--out", f"{W}/o"], ["cannot read"])
    CASES["out_read_only"] = (["train", f"{W}/tiny.toml", "--out", f"{W}/ro/o"], ["not writable"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_nothing_left(case, ws, capsys):
    argv, needles = CASES[case]
    argv = [a.replace(W, str(ws)) for a in argv]
    before = snapshot(ws)
    rc, err = run_cli(argv, capsys)
    assert_one_line_error(rc, err, *needles)
    assert snapshot(ws) == before                       # nothing made, nothing rewritten
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.parametrize("cmd", [["query", "SELECT count(*) AS n FROM trials"], ["analyze"]])
def test_a_results_file_left_out_is_named_and_exits_4(cmd, ws, capsys):
    """A metrics file without its `value` column (ws/nocol's only trial): named in one line, left
    out, the command still answers from the rest (the trial's row), exit 4 (LEFT_OUT_EXIT);
    nothing is touched."""
    before = snapshot(ws)
    rc, err = run_cli([cmd[0], str(ws / "nocol")] + cmd[1:], capsys)
    lines = err.strip().splitlines()
    assert rc == 4, err
    assert "final.parquet" in lines[0] and "no column value" in lines[0] and "left out" in lines[0]
    assert lines[-1].startswith("rlp-tune: 1 results file(s) left out") and "Traceback" not in err
    assert snapshot(ws) == before


def test_documented_comma_list_of_numbers_works():
    from rlp_tune.config import load_config
    cfg = load_config(None, ["optim.name=adamw", "optim.betas=0.95,0.999"])
    assert cfg.optim.betas == (0.95, 0.999)


def test_finished_run_rerun_does_not_rewrite_config(ws, capsys):
    before = snapshot(ws / "run")
    assert main(["train", str(ws / "tiny.toml"), "--out", str(ws / "run"), "--no-progress"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    after = snapshot(ws / "run")
    assert after["config.toml"] == before["config.toml"]
    assert after == before


def test_crafted_checkpoint_runs_no_code(ws, tmp_path, capsys):
    from rlp_tune.checkpoint import CheckpointError, read_checkpoint
    from rlp_tune.tune.trainable import _epoch_of
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    ck = out / "checkpoints" / "last.pt"
    torch.save({"version": 1, "epoch": 1, "net": Marker(marker)}, ck)
    torch.load(ck, weights_only=False)           # the file does run code when loaded unrestricted ...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError) as e:      # ... and not through the project's loaders
        read_checkpoint(ck)
    assert "\n" not in str(e.value)
    assert _epoch_of(ck) == -1
    rc, err = run_cli(["train", str(ws / "tiny.toml"), "--out", str(out)], capsys)
    assert_one_line_error(rc, err, "cannot read checkpoint")
    rc, err = run_cli(["probe", str(out)], capsys)
    assert_one_line_error(rc, err, "cannot read checkpoint")
    assert not marker.exists()


def test_crafted_cifar_batch_runs_no_code(tmp_path, capsys):
    import numpy as np

    from rlp_tune.data.datasets import DatasetError
    from rlp_tune.data.cifar import _unpickle
    marker = tmp_path / "pwned"
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"batch_label": b"x", b"filenames": [b"a"]}
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"):
        with open(d / name, "wb") as f:
            pickle.dump(good, f, protocol=2)
    assert np.array_equal(_unpickle(d / "test_batch")[b"data"], good[b"data"])   # what the format holds is read
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Marker(marker), b"labels": [0]}, f)
    with open(d / "data_batch_1", "rb") as f:
        pickle.load(f)                            # unrestricted, the file runs code
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DatasetError, match="which a CIFAR batch does not hold"):
        _unpickle(d / "data_batch_1")
    rc, err = run_cli(["train", "--set", "data.name=cifar10", "--set", f"data.root={tmp_path}",
                       "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(rc, err, "cannot read CIFAR pickle")
    assert not marker.exists() and not (tmp_path / "o").exists()
