"""The reproduction table's verdict rules, measurements and writer on synthetic results (no sweeps; fast).

    pytest tests/test_reproduce.py -q
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
sys.path.insert(0, str(ANALYSIS))

import repro_claims as rc  # noqa: E402
import reproduce  # noqa: E402
from repro_measure import best_gain, boot_measure  # noqa: E402
from repro_table import (NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Claim, Measurement, Row, Rule,  # noqa: E402
                         fmt_measure, summary_counts, table_markdown, verdict)


# ---- rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, ci, label", [
    (Rule("above", 0.0), (0.01, 0.05), REPRODUCED),
    (Rule("above", 0.0), (-0.01, 0.05), NOT_REPRODUCED),      # straddles 0
    (Rule("above", 0.02), (0.01, 0.05), NOT_REPRODUCED),
    (Rule("below", 0.0), (-0.05, -0.001), REPRODUCED),
    (Rule("below", 0.0), (-0.05, 0.0), NOT_REPRODUCED),       # the end touching t is not < t
    (Rule("within", -0.02, 0.02), (-0.01, 0.015), REPRODUCED),
    (Rule("within", -0.02, 0.02), (-0.03, 0.01), NOT_REPRODUCED),
])
def test_verdict_rules(rule, ci, label):
    m = Measurement(value=(ci[0] + ci[1]) / 2, ci=ci)
    assert verdict(m, rule).label == label


def test_verdict_not_testable():
    assert verdict(Measurement(untestable="sweep not run"), Rule("above", 0)) .label == NOT_TESTABLE
    assert verdict(Measurement(untestable="sweep not run"), Rule("above", 0)).why == "sweep not run"
    assert verdict(Measurement(value=0.1, ci=None), Rule("above", 0)).label == NOT_TESTABLE
    assert verdict(Measurement(value=float("nan"), ci=(0.1, 0.2)), Rule("above", 0)).label == NOT_TESTABLE


def test_rule_rejects_bad_kind_and_bounds():
    with pytest.raises(ValueError, match="rule kind"):
        Rule("greater", 0.0)
    with pytest.raises(ValueError, match="'within'"):
        Rule("within", 0.0)
    with pytest.raises(ValueError, match="'within'"):
        Rule("above", 0.0, 1.0)


# ---- table writer -------------------------------------------------------------------------------------
def test_table_markdown_rows_and_escaping():
    claims = [Claim("a", "001 §5.3", "λ | suppresses", "Δ rand_acc", Rule("above", 0.0)),
              Claim("b", "003", "benign", "Δ knn", Rule("below", 0.0))]
    ms = [Measurement(value=0.147, ci=(0.145, 0.148), seeds=[2, 0, 1, 0], n_trials=27, detail="19% → 4%"),
          Measurement(untestable="sweep not run")]
    rows = [Row(c, "`rlp_lambda`: mnist1d", m, verdict(m, c.rule)) for c, m in zip(claims, ms)]
    md = table_markdown(rows).splitlines()
    assert md[0].startswith("| claim | paper | setting")
    assert len(md) == 4 and all(line.count(" | ") == 5 for line in md[2:])
    assert "λ \\| suppresses" in md[2]                              # a pipe in a cell is escaped
    assert "Δ rand_acc = +14.7 pts [+14.5, +14.8]; 19% → 4%" in md[2]
    assert "| 0, 1, 2 (27) |" in md[2] and "**reproduced**" in md[2]
    assert "**not testable here** (sweep not run)" in md[3] and "| – |" in md[3]
    assert summary_counts(rows) == {REPRODUCED: 1, NOT_REPRODUCED: 0, NOT_TESTABLE: 1}


def test_fmt_measure_units():
    assert fmt_measure(Measurement(value=0.5, ci=(0.2, 0.8), unit="rho")) == "+0.50 [+0.20, +0.80]"
    assert fmt_measure(Measurement(value=-0.031, ci=None)) == "-3.1 pts (no CI)"


# ---- measurements ----------------------------------------------------------------------------------------
def _lambda_frame(seeds=(0, 1, 2)):
    """Synthetic rlp_lambda trials: memorization falls 0.30 → chance (n = 8) over λ, test acc flat at 0.60
    except +2 points at λ = 1, train acc 0.95 falling to 0.65 at λ = 100."""
    rows = []
    for lam, mem, test, train in [(0.0, 0.30, 0.60, 0.95), (1.0, 0.20, 0.62, 0.90), (10.0, 0.14, 0.60, 0.80),
                                  (100.0, 0.125, 0.55, 0.65)]:
        for s in seeds:
            e = 0.002 * (s - 1)
            rows.append({"trial_id": f"t{lam}_{s}", "seed": s, "rlp.lam": lam, "rlp.n": 8, "data.name": "digits",
                         "model.name": "mlp", "model.width": 512, "model.depth": 2, "run.epochs": 20,
                         rc.MEM: mem + e, rc.TEST: test + e, "train.acc": train})
    return pd.DataFrame(rows)


class FakeResults(rc.Results):
    def __init__(self, frames, doc=None):
        super().__init__({k: Path("/nonexistent") for k in frames}, n_boot=200, seed=0)
        self.frames, self.the_doc = frames, doc or {}

    def final(self, sweep):
        return self.frames.get(sweep)

    def doc(self, sweep):
        return self.the_doc


def test_best_gain_and_gap_at_best_test():
    df = _lambda_frame()
    assert best_gain(df, "rlp.lam", rc.TEST) == pytest.approx(0.02)
    assert best_gain(df, "rlp.lam", rc.MEM, minimize=True) == pytest.approx(-0.175)
    assert rc.gap_at_best_test(df) == pytest.approx((0.90 - 0.62) - (0.95 - 0.60))   # λ* = 1


def test_boot_measure_ci_and_strata():
    df = _lambda_frame()
    m = boot_measure(df, lambda d: best_gain(d, "rlp.lam", rc.TEST), strata=["rlp.lam"], name="x",
                     n_boot=300, seed=0)
    assert m.value == pytest.approx(0.02) and m.seeds == [0, 1, 2] and m.n_trials == 12
    assert m.ci[0] <= m.value <= m.ci[1] and m.ci[1] - m.ci[0] < 0.01
    # the same seed gives the same CI; every resample keeps the λ = 0 cell (no NaN from a lost level)
    assert boot_measure(df, lambda d: best_gain(d, "rlp.lam", rc.TEST), strata=["rlp.lam"], name="x",
                        n_boot=300, seed=0).ci == m.ci
    assert boot_measure(df.iloc[:0], len, strata=[], name="y", n_boot=10, seed=0).untestable
    one = boot_measure(df.iloc[:1], lambda d: float(d[rc.MEM].mean()), strata=[], name="z", n_boot=50, seed=0)
    assert one.value == pytest.approx(0.298) and one.ci is None     # a single trial has no CI


def test_claims_on_synthetic_results():
    doc = {"fits": {"memorization_vs_lambda": {"fitted": True, "params": {"log10_lambda50": 0.5},
                                               "ci": {"log10_lambda50": [0.3, 0.7]}}},
           "evasion": {"rows": []}}
    ctx = FakeResults({"rlp_lambda": _lambda_frame()}, doc)
    by_key = {c.key: (c, f) for c, f in rc.CLAIMS}
    rows = rc.evaluate([by_key[k] for k in ("001-5.3-suppress", "001-5.3-chance", "001-5.3-test-gain",
                                            "001-5.2-dropout")], ctx)
    sup, chance, gain, drop = rows
    assert sup.measurement.value == pytest.approx(0.175) and sup.verdict.label == REPRODUCED
    assert "10^0.50 [10^0.30, 10^0.70]" in sup.measurement.detail
    assert chance.measurement.value == pytest.approx(0.0, abs=1e-9) and chance.verdict.label == REPRODUCED
    assert gain.measurement.value == pytest.approx(0.02) and gain.verdict.label == REPRODUCED
    assert drop.verdict.label == NOT_TESTABLE and "λ = 0 vs 100" in sup.setting


def test_contrast_claim_direction():
    rows = []
    for dh, mem in [(0, 0.15), (256, 0.40)]:
        for s in (0, 1):
            rows.append({"trial_id": f"{dh}{s}", "seed": s, "rlp.lam": 0.0, "rlp.hidden": dh, "rlp.n": 10,
                         "data.name": "digits", "model.name": "mlp", "model.width": 512, "model.depth": 2,
                         "run.epochs": 20, rc.MEM: mem + 0.01 * s, rc.TEST: 0.9})
    ctx = FakeResults({"head_width": pd.DataFrame(rows)})
    claim, f = next((c, f) for c, f in rc.CLAIMS if c.key == "001-A.6-capacity")
    row = rc.evaluate([(claim, f)], ctx)[0]
    assert row.measurement.value == pytest.approx(0.25) and row.verdict.label == REPRODUCED
    assert np.isclose(row.measurement.ci[0], 0.24) and row.measurement.n_trials == 4


# ---- the command ------------------------------------------------------------------------------------------
def test_space_info_counts_grid_trials():
    spaces = ANALYSIS.parent / "search_spaces" / "cpu"
    assert reproduce.space_info(spaces / "rlp_lambda.toml") == ("cpu_rlp_lambda", 27)
    assert reproduce.space_info(spaces / "regularizers.toml") == ("cpu_regularizers", 16)
    with pytest.raises(reproduce.ReproduceError, match="not found"):
        reproduce.space_info(spaces / "nope.toml")
    assert set(rc.SWEEPS) <= {p.stem for p in spaces.glob("*.toml")}   # every claim's space ships


def test_main_rejects_bad_arguments_before_running(capsys, tmp_path):
    assert reproduce.main(["--storage", str(tmp_path), "--only", "rlp_lambda,bogus"]) == 2
    assert "bogus: unknown space" in capsys.readouterr().err
    assert reproduce.main(["--storage", str(tmp_path), "--boot", "5"]) == 2
    assert not any(tmp_path.iterdir())
