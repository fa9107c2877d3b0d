"""Untrusted folders, files and names, tried as an attacker would (docs/reliability.md "Threat
model"): names from results files never run as SQL, names from configs, checkpoints and space
files never leave their folder as paths, `--fresh` deletes only the sweep folder it owns, and
DuckDB reads no file outside the results folder. Each attack aims at a marker file or a folder
beside the run, so a test fails if the attack works.

    pytest tests/test_untrusted.py -q
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from rlp_tune.cli import main
from rlp_tune.results import ResultWriter
from test_faults import straight  # noqa: F401 - the fixture: one finished run for the module


def one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("rlp-tune: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def results(root: Path, metrics: list[str]) -> Path:
    """A finished one-trial results folder with one test-split row per metric name."""
    w = ResultWriter(root, "", "t1")
    w.write_trial({"run.seed": 0, "rlp.lam": 1.0}, "TERMINATED", 1)
    w.write_epoch(1, [{"split": "test", "metric": m, "value": 0.5 + i / 10} for i, m in enumerate(metrics)])
    w.compact()
    return root


# ---- SQL: names from files are data --------------------------------------------------------
def test_metric_name_that_closes_the_quote_runs_no_sql(tmp_path, capsys):
    marker = tmp_path / "r" / "pwned.csv"   # inside the results folder: the sandbox allows writing it
    # closes the `final` view's quoted alias, ends the statement, COPYs, then reopens a statement
    # that parses with the rest of the view's SQL (what ran on the unquoted code)
    evil = (f"acc\" FROM one GROUP BY sweep, trial_id) p ON true; COPY (SELECT 42) TO '{marker}'; "
            "WITH one AS (SELECT '' AS sweep, 't1' AS trial_id) SELECT * FROM trials t JOIN "
            "(SELECT sweep, trial_id, 1 AS \"x")
    root = results(tmp_path / "r", ["acc", evil])
    assert main(["query", str(root), "SELECT count(*) FROM final"]) == 0
    assert not marker.exists()
    from rlp_tune.analysis.query import query_df
    df = query_df(root, "SELECT * FROM final")
    assert df[f"test.{evil}"].tolist() == [0.6]     # the name is a column like any other


def test_metric_name_with_a_quote_works_in_query_and_analyze(tmp_path, capsys):
    root = results(tmp_path / "r", ["acc", 'a"b'])
    assert main(["query", str(root), 'SELECT "test.a""b" AS v FROM final', "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["v", "0.6"]
    assert main(["analyze", str(root)]) == 0


def test_sql_identifier_doubles_quotes():
    from rlp_tune.reader import sql_identifier
    assert sql_identifier('a"b') == '"a""b"'
    assert sql_identifier("x") == '"x"'


def test_query_cannot_read_duckdb_default_temp_folder(tmp_path, monkeypatch, capsys):
    root = results(tmp_path / "r", ["acc"])
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "secret.csv").write_text("secret,1\n")
    monkeypatch.chdir(cwd)
    for path in (cwd / ".tmp" / "secret.csv", ".tmp/secret.csv"):
        rc = main(["query", str(root), f"SELECT * FROM read_csv('{path}')"])
        one_line_error(capsys, rc, "Cannot access file")


# ---- names that become paths ---------------------------------------------------------------
@pytest.fixture(scope="module")
def run(straight) -> Path:
    """A finished run (tests/test_faults.py's), its config beside it as tiny.toml."""
    return straight / "straight"


@pytest.mark.parametrize("name", ["../../../victim", "../victim", "..", "a/b", ".hidden", "x\x00y"])
def test_run_name_cannot_leave_the_run_folder(run, tmp_path, capsys, name):
    out = tmp_path / "a" / "b" / "o"
    rc = main(["train", str(run.parent / "tiny.toml"), "--out", str(out), "--set", f"run.name={name}", "--no-progress"])
    one_line_error(capsys, rc, "run.name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == []   # nothing beside it, not even --out


def test_checkpoint_trial_id_cannot_leave_the_run_folder(run, tmp_path, capsys):
    out = tmp_path / "box" / "run"
    shutil.copytree(run, out)
    ck = out / "checkpoints" / "last.pt"
    from rlp_tune.checkpoint import CHECKPOINT_GLOBALS
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        state = torch.load(ck, weights_only=True)
    state["trial_id"] = "../../../victim"      # → tmp_path/box/victim.parquet, tmp_path/box/victim/
    torch.save(state, ck)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for cmd in (["probe", str(out)], ["offline-rlp", str(out), "--head-epochs", "1"],
                ["train", str(run.parent / "tiny.toml"), "--out", str(out)]):
        rc = main(cmd)
        one_line_error(capsys, rc, "trial_id", "'../../../victim'")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_sweep_name_cannot_leave_storage(run, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(f'base = "{run.parent / "tiny.toml"}"\n[search]\n"rlp.lam" = {{ dist = "loguniform", '
                     'low = 1e-2, high = 1e2 }\n[sweep]\nname = "../victim"\nmetric = "test.acc"\nnum_samples = 1\n')
    rc = main(["sweep", str(space), "--storage", str(tmp_path / "st")])
    one_line_error(capsys, rc, "sweep.name", "'../victim'")
    assert not (tmp_path / "victim").exists() and not (tmp_path / "st").exists()


def test_fresh_deletes_nothing_outside_storage(run, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(f'base = "{run.parent / "tiny.toml"}"\n[search]\n"rlp.lam" = {{ dist = "loguniform", '
                     'low = 1e-2, high = 1e2 }\n[sweep]\nname = "s"\nmetric = "test.acc"\nnum_samples = 1\n')
    victim = tmp_path / "victim" / "important"
    victim.mkdir(parents=True)
    (victim / "space.toml").write_text("# looks like a sweep folder\n")
    (victim / "data.txt").write_text("keep me")
    (tmp_path / "st").mkdir()
    rc = main(["sweep", str(space), "--storage", str(tmp_path / "st"), "--name", "../victim/important", "--fresh"])
    one_line_error(capsys, rc, "--name", "'../victim/important'")
    assert (victim / "data.txt").read_text() == "keep me"
    # a sweep folder that is a link to a folder elsewhere is not followed
    os.symlink(victim, tmp_path / "st" / "s")
    rc = main(["sweep", str(space), "--storage", str(tmp_path / "st"), "--fresh"])
    one_line_error(capsys, rc, "--fresh", "link")
    assert (victim / "data.txt").read_text() == "keep me"


def test_fresh_deletes_only_what_a_sweep_wrote(tmp_path, capsys):
    """A sweep folder that also holds a user's notes: --fresh deletes the sweep's files and Tune's
    record, names what it keeps, and keeps it."""
    from rlp_tune.tune.cli import fresh_sweep_dir
    from rlp_tune.tune.ledger import Ledger, TrialRecord
    root = tmp_path / "st" / "s"
    (root / "parquet" / "trials").mkdir(parents=True)
    (root / "space.toml").write_text("# stored\n")
    Ledger(str(root)).add_trial(TrialRecord("ab12cd34", {"rlp.lam": 1.0}))
    (root / "ab12cd34_lam=1").mkdir()
    (root / "ab12cd34_lam=1" / "error.txt").write_text("x")
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (root / "notes.md").write_text("mine")
    (root / "my_plots").mkdir()
    fresh_sweep_dir(str(tmp_path / "st"), "s")
    assert sorted(p.name for p in root.iterdir()) == ["my_plots", "notes.md"]
    assert "keeping what rlp_tune did not write: my_plots, notes.md" in capsys.readouterr().err
    (root / "notes.md").unlink()
    (root / "my_plots").rmdir()
    (root / "space.toml").write_text("# stored\n")
    fresh_sweep_dir(str(tmp_path / "st"), "s")
    assert not root.exists()


def test_names_check():
    from rlp_tune.names import UnsafeNameError, check_name, name_problem
    for ok in ("run", "lam=1e-3,heads=2", "a b", "x[1]", "trial_0001", "é", "12:30"):
        assert name_problem(ok) is None, ok
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", "-rf", "x\ny", "x" * 201, None):
        assert name_problem(bad), bad
    with pytest.raises(UnsafeNameError, match="^where: '../x' contains '/'"):
        check_name("where", "../x")
