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
from repro_table import (NOT_IN_REGIME, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Claim, Measurement, Row, Rule,  # noqa: E402
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
    assert len(md) == 4 and all(line.count(" | ") == 6 for line in md[2:])
    assert "λ \\| suppresses" in md[2]                              # a pipe in a cell is escaped
    assert "Δ rand_acc = +14.7 pts [+14.5, +14.8]; 19% → 4%" in md[2]
    assert "| 0, 1, 2 (27) |" in md[2] and "**reproduced**" in md[2]
    assert "**not testable here** (sweep not run)" in md[3] and "| – |" in md[3]
    assert summary_counts(rows) == {REPRODUCED: 1, NOT_REPRODUCED: 0, NOT_IN_REGIME: 0, NOT_TESTABLE: 1}


def test_fmt_measure_units():
    assert fmt_measure(Measurement(value=0.5, ci=(0.2, 0.8), unit="rho")) == "+0.50 [+0.20, +0.80]"
    assert fmt_measure(Measurement(value=-0.031, ci=None)) == "-3.1 pts (no CI)"


# ---- measurements ----------------------------------------------------------------------------------------
def _lambda_frame(seeds=(0, 1, 2)):
    """Synthetic rlp_lambda trials: memorization falls 0.30 → chance (n = 8) over λ ∈ {0} ∪ [0.1, 100] (a
    transition at λ ≈ 1), test acc 0.60 peaking +2 points at λ = 1, train acc 0.95 falling to 0.65 at λ = 100."""
    rows = []
    for lam, mem, test, train in [(0.0, 0.30, 0.60, 0.95), (0.1, 0.29, 0.60, 0.95), (0.3, 0.27, 0.61, 0.94),
                                  (1.0, 0.20, 0.62, 0.90), (3.0, 0.17, 0.61, 0.85), (10.0, 0.14, 0.60, 0.80),
                                  (30.0, 0.13, 0.58, 0.72), (100.0, 0.125, 0.55, 0.65)]:
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
    assert m.value == pytest.approx(0.02) and m.seeds == [0, 1, 2] and m.n_trials == 24
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
    by_key = {c[0].key: c for c in rc.CLAIMS}
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
    row = rc.evaluate([c for c in rc.CLAIMS if c[0].key == "001-A.6-capacity"], ctx)[0]
    assert row.measurement.value == pytest.approx(0.25) and row.verdict.label == REPRODUCED
    assert np.isclose(row.measurement.ci[0], 0.24) and row.measurement.n_trials == 4


# ---- the command ------------------------------------------------------------------------------------------
def test_space_info_counts_grid_trials():
    spaces = ANALYSIS.parent / "search_spaces" / "cpu"
    assert reproduce.space_info(spaces / "rlp_lambda.toml") == ("cpu_rlp_lambda", 45)
    assert reproduce.space_info(spaces / "regularizers.toml") == ("cpu_regularizers", 40)
    assert reproduce.space_info(spaces / "label_noise.toml") == ("cpu_label_noise", 40)
    with pytest.raises(reproduce.ReproduceError, match="not found"):
        reproduce.space_info(spaces / "nope.toml")
    assert set(rc.SWEEPS) <= {p.stem for p in spaces.glob("*.toml")}   # every claim's space ships


def test_main_rejects_bad_arguments_before_running(capsys, tmp_path):
    assert reproduce.main(["--storage", str(tmp_path), "--only", "rlp_lambda,bogus"]) == 2
    assert "bogus: unknown space" in capsys.readouterr().err
    assert reproduce.main(["--storage", str(tmp_path), "--boot", "5"]) == 2
    assert not any(tmp_path.iterdir())


# ---- regime checks: each verdict kind on synthetic frames ----------------------------------------------
def _noise_frame(train0=1.0, shape="peak", mem0=0.45, seeds=range(5)):
    """Synthetic label_noise trials (digits, 40% noise, n = 8): test accuracy over λ ∈ {0, 1, …, 300} with a
    peak at λ = 30 ('peak'), rising to the largest λ ('edge') or flat then falling ('flat')."""
    curves = {"peak": [0.74, 0.75, 0.78, 0.82, 0.85, 0.80, 0.50], "edge": [0.74, 0.75, 0.76, 0.78, 0.80, 0.82, 0.85],
              "flat": [0.74, 0.74, 0.74, 0.74, 0.74, 0.74, 0.50]}[shape]
    rows = []
    for lam, test, mem in zip([0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0], curves,
                              [mem0, 0.40, 0.30, 0.20, 0.14, 0.13, 0.125]):
        for s in seeds:
            e = 0.002 * (s - 2)
            rows.append({"trial_id": f"t{lam}_{s}", "seed": s, "rlp.lam": lam, "rlp.n": 8, "data.name": "digits",
                         "data.label_noise": 0.4, "model.name": "mlp", "model.width": 512, "model.depth": 2,
                         "run.epochs": 150, rc.MEM: mem + e, rc.TEST: test + e,
                         "train.acc": train0 + e / 2 if lam == 0 else 1.0})
    return pd.DataFrame(rows)


def _noise_row(frame):
    ctx = FakeResults({"label_noise": frame} if frame is not None else {})
    return rc.evaluate([c for c in rc.CLAIMS if c[0].key == "001-7C-noise"], ctx)[0]


def test_noise_claim_in_regime_reproduced():
    row = _noise_row(_noise_frame())
    assert row.verdict.label == REPRODUCED and row.measurement.value == pytest.approx(0.11)
    assert [c.name for c in row.checks] == ["fits", "memorizes", "class_head", "edge"]
    assert all(c.passed for c in row.checks)
    assert "✓ λ = 0 train acc 100.0% on its 40%-noisy training labels" in table_markdown([row])


def test_noise_claim_not_in_regime_names_the_failed_check():
    row = _noise_row(_noise_frame(train0=0.643))
    assert row.verdict.label == NOT_IN_REGIME
    assert "train acc 64.3% on its 40%-noisy training labels (< 95.0%)" in row.verdict.why
    assert "memorizes" not in row.verdict.why                     # only the failed check is named
    edge = _noise_row(_noise_frame(shape="edge"))
    assert edge.verdict.label == NOT_IN_REGIME and "at the largest sampled λ [1, 300]" in edge.verdict.why
    mem = _noise_row(_noise_frame(mem0=0.13))                     # 0.5 points above chance 1/8
    assert mem.verdict.label == NOT_IN_REGIME and "rand_acc_eval 13.0% vs chance 12.5%" in mem.verdict.why


def test_noise_claim_in_regime_not_reproduced_and_not_testable():
    flat = _noise_row(_noise_frame(shape="flat"))
    assert all(c.passed for c in flat.checks) and flat.verdict.label == NOT_REPRODUCED
    missing = _noise_row(None)
    assert missing.verdict.label == NOT_TESTABLE and missing.checks == []


def test_verdict_regime_before_rule_and_counts():
    from rlp_tune.analysis.regime import Check
    m = Measurement(value=0.05, ci=(0.02, 0.08))
    bad = Check("fits", False, 0.6, None, "λ = 0 train acc 60.0%")
    ok = Check("memorizes", True, 0.1, (0.08, 0.12), "λ = 0 rand_acc …")
    assert verdict(m, Rule("above", 0.0), [ok]).label == REPRODUCED
    v = verdict(m, Rule("above", 0.0), [ok, bad])
    assert v.label == NOT_IN_REGIME and v.why == "failed: λ = 0 train acc 60.0%"
    assert verdict(Measurement(untestable="sweep not run"), Rule("above", 0.0), [bad]).label == NOT_TESTABLE
    claim = Claim("a", "001", "x", "q", Rule("above", 0.0))
    assert summary_counts([Row(claim, "", m, v, [ok, bad])])[NOT_IN_REGIME] == 1


def test_every_claim_states_known_regime_checks():
    from rlp_tune.analysis import regime
    names = {regime.FITS, regime.MEMORIZES, regime.CLASS_HEAD, regime.EDGE, regime.TRANSITION}
    for claim, _, mem in rc.CLAIMS:
        assert claim.regime and set(claim.regime) <= names, claim.key
        assert mem.startswith("train.rand_acc")


def test_document_counts_regime_and_relative_folders(tmp_path):
    frame = _noise_frame().assign(started=1000.0, updated=1000.0 + 60 * np.arange(35))
    ctx = FakeResults({"label_noise": frame})
    ctx.roots["label_noise"] = tmp_path / "store" / "cpu_label_noise"
    rows = rc.evaluate([c for c in rc.CLAIMS if c[0].key in ("001-7C-noise", "001-5.3-suppress")], ctx)
    md = reproduce.document(rows, ctx, "python analysis/reproduce.py --storage X", "now", tmp_path / "store", 12.0)
    assert "**1 reproduced, 0 not reproduced at this scale, 0 not in regime, 1 not testable here** (of 2 claims); " \
           "1 of the 2 rows rest on ≥ 5 seeds." in md
    assert "| `label_noise` | `cpu_label_noise` | 35 | 0, 1, 2, 3, 4 | 34.0 min |" in md
    assert str(tmp_path) not in md and "the sweeps took 34.0 min in all" in md
