"""The command line explains itself: help over the whole argparse tree, --version, the overview,
Hydra-style overrides, --fresh, the default --out, `keys`.

    PYTHONPATH=. python -m pytest tests/test_cli.py -q
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from rlp_tune import __version__
from rlp_tune.cli import build_parser, default_out, main, parse_args
from rlp_tune.config import SECTIONS, ConfigError, allowed, describe, parse_value


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_subcommand_describes_every_argument():
    p = build_parser()
    subs = _subparsers(p)
    assert set(subs) >= {"train", "keys", "sweep", "resume", "status", "query", "analyze", "report", "probe",
                         "offline-rlp"}
    for name, sp in [("", p), *subs.items()]:
        assert sp.description and len(sp.description) > 20, f"{name or 'rlp-tune'}: no description"
        text = sp.format_help()
        for a in sp._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = f"{name or 'rlp-tune'} {a.option_strings or a.metavar or a.dest}"
            assert a.help and a.help != argparse.SUPPRESS and len(a.help) > 10, f"{label}: no help text"
            shown = a.option_strings[0] if a.option_strings else (a.metavar or a.dest)
            assert shown in text, f"{label}: not in --help"
            assert a.help.split()[0] in text, f"{label}: help text not printed"
    # resume and status no longer share one help line
    assert subs["resume"].description != subs["status"].description


def test_overview_version_and_exit_codes(capsys):
    assert main([]) == 0                        # `rlp-tune` alone: the overview on stdout, exit 0
    out = capsys.readouterr().out
    assert "COMMAND" in out and "train" in out and "offline-rlp" in out and "exit codes" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert f"rlp-tune {__version__}" in capsys.readouterr().out


def test_hydra_style_overrides_join_set(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[rlp]\nlam = 1.0\n")
    a = parse_args(["train", str(cfg), "rlp.lam=10", "--out", "x", "rlp.heads=3", "--set", "run.epochs=2"])
    assert a.config == str(cfg) and a.out == "x"
    assert a.overrides == ["rlp.lam=10", "rlp.heads=3", "run.epochs=2"]
    a = parse_args(["train", "rlp.lam=10"])      # no config file: overrides of the defaults
    assert a.config is None and a.overrides == ["rlp.lam=10"]
    a = parse_args(["sweep", "space.toml", "run.epochs=3", "--log", "tensorboard,mlflow"])
    assert a.target == "space.toml" and a.overrides == ["run.epochs=3", "logging.trackers=tensorboard,mlflow"]
    with pytest.raises(SystemExit) as e:
        parse_args(["train", str(cfg), "--bogus"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["train", "--log", "neptune"])


def test_default_out_differs_by_overrides_but_not_by_environment_keys():
    base = default_out("configs/digits_mlp.toml", [])
    assert base == Path("runs/digits_mlp")
    a = default_out("configs/digits_mlp.toml", ["rlp.lam=10"])
    b = default_out("configs/digits_mlp.toml", ["rlp.lam=100"])
    assert a != b and a.name.startswith("digits_mlp-") and len(a.name) == len("digits_mlp-") + 8
    assert default_out("configs/digits_mlp.toml", ["rlp.lam=10.0", "rlp.heads=2"]) == \
        default_out("configs/digits_mlp.toml", ["rlp.heads=2", "rlp.lam=1e1"])     # order and spelling
    assert default_out("configs/digits_mlp.toml", ["rlp.lam=10", "run.epochs=50"]) != a
    # where / how to run and what to log keep the folder
    assert default_out("configs/digits_mlp.toml", ["rlp.lam=10", "run.device=cpu", "logging.trackers=tensorboard"]) == a


def test_fresh_deletes_only_the_run_and_says_what(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "run.epochs=1", "model.width=8", "run.device=cpu", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(args) == 0                                    # resumes: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert main(args + ["--fresh"]) == 0
    err = capsys.readouterr().err
    assert "--fresh: deleting" in err and "checkpoints" in err and "parquet" in err and "config.toml" in err
    assert (out / "notes.txt").read_text() == "mine"          # not ours: kept
    assert (out / "checkpoints" / "model.pt").exists()        # trained again


def test_keys_describe_every_key_with_allowed_values():
    lines = describe().split("\n")[1:]
    n_keys = sum(len(dataclasses.fields(c)) for c in SECTIONS.values())
    assert len(lines) == n_keys
    for sec, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("doc"), f"{sec}.{f.name}: no description"
            assert allowed(f), f"{sec}.{f.name}: no allowed values"
    text = describe()
    for key, words in [("rlp.labels", "fixed | reshuffle | unique"), ("rlp.reg", "log1m | uniform"),
                       ("data.augment", "crop_flip"), ("run.precision", "fp32 | bf16"), ("optim.lr", "> 0"),
                       ("data.name", "cifar100"), ("model.name", "wrn"), ("logging.trackers", "tensorboard")]:
        line = next(ln for ln in text.split("\n") if ln.startswith(key + " "))
        assert words in line, (key, line)


def test_integer_message_grammar():
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_value("rlp.heads", "two")


def test_missing_tracker_package_exits_2_before_training(tmp_path, monkeypatch, capsys):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = tmp_path / "r"
    assert main(["train", "run.epochs=1", "--log", "wandb", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "logging.trackers: wandb needs the Python package 'wandb'" in err[0]
    assert not out.exists()


def test_console_script_help_runs():
    r = subprocess.run([sys.executable, "-m", "rlp_tune.cli", "query", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "final" in r.stdout and "--format" in r.stdout


def test_sweep_checks_trackers_and_fresh_before_ray(tmp_path, monkeypatch, capsys):
    import importlib.util
    import sys as _sys

    from rlp_tune.errors import UserError
    from rlp_tune.tune.cli import fresh_sweep_dir
    from test_sweep import write_space
    space = write_space(tmp_path, "s")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    ray_loaded = "ray" in _sys.modules
    assert main(["sweep", str(space), "--log", "mlflow", "--storage", str(tmp_path / "res")]) == 2
    assert "logging.trackers: mlflow needs the Python package 'mlflow'" in capsys.readouterr().err
    assert ("ray" in _sys.modules) == ray_loaded           # refused before Ray was imported
    # --fresh deletes a sweep folder, never a folder that holds no sweep
    (tmp_path / "res" / "other").mkdir(parents=True)
    (tmp_path / "res" / "other" / "data.bin").write_text("x")
    with pytest.raises(UserError, match="does not hold a sweep"):
        fresh_sweep_dir(str(tmp_path / "res"), "other")
    sweep = tmp_path / "res" / "s"
    (sweep / "parquet" / "trials").mkdir(parents=True)
    (sweep / "space.toml").write_text("")
    (sweep / "parquet" / "trials" / "t1.parquet").write_text("")
    fresh_sweep_dir(str(tmp_path / "res"), "s")
    assert not sweep.exists() and (tmp_path / "res" / "other" / "data.bin").exists()
    assert "--fresh: deleting sweep " in capsys.readouterr().err
