"""Regime checks (rlp_tune.analysis.regime) and the findings `analyze` / the report flag from them.

Synthetic sweeps are written with rlp_tune.results.ResultWriter: λ ∈ {0, 0.1, 0.3, 1, 3, 10, 30} × 3 seeds,
n = 10 (chance 10%), memorization falling from MEM0 at λ = 0 to chance over λ = 1..10, test accuracy
peaking at λ = 1 (or, for the edge case, rising to the largest λ), 40% label noise.
"""
import numpy as np
import pytest

from rlp_tune.analysis.document import analyze
from rlp_tune.analysis.report import write_report
from rlp_tune.analysis.text import format_analysis
from rlp_tune.analysis import regime
from rlp_tune.analysis.fit_lambda import fit_peak
from rlp_tune.analysis.findings import cell_findings
from rlp_tune.config import Config
from rlp_tune.results import ResultWriter

LAMS = [0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
EPOCHS = 3
FLAGS = {"fits": "λ = 0 did not fit its training labels", "memorizes": "λ = 0 did not memorize",
         "edge": "Optimum at the edge of the sampled λ range"}


def _rand(lam, mem0):
    x = np.log10(lam) if lam > 0 else -3.0
    return 0.1 + (mem0 - 0.1) / (1 + np.exp(3.0 * (x - 0.5)))


def _test(lam, edge):
    x = np.log10(lam) if lam > 0 else -3.0
    if edge:                                           # rises all the way to the largest λ
        return 0.70 + 0.04 * (x + 3.0) / 4.5
    return 0.70 + 0.08 * np.exp(-0.5 * (x / 0.6) ** 2)  # peak at λ = 1


def write_sweep(root, *, mem0=0.6, train0=1.0, edge=False, noise=0.4):
    rng = np.random.default_rng(0)
    for i, lam in enumerate(LAMS):
        for s in range(3):
            w = ResultWriter(root, "syn", f"t{i}s{s}")
            train = train0 if lam == 0 else 1.0
            for e in range(1, EPOCHS + 1):
                w.write_epoch(e, [
                    {"split": "train", "metric": "acc", "value": train},
                    {"split": "test", "metric": "acc", "value": _test(lam, edge) + rng.normal(0, 0.002)},
                    {"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": -1,
                     "value": _rand(lam, mem0) + rng.normal(0, 0.003)}])
            flat = Config().to_flat()
            flat.update({"rlp.lam": lam, "run.seed": s, "rlp.n": 10, "run.epochs": EPOCHS, "data.label_noise": noise})
            w.write_trial(flat, status="TERMINATED", epochs_done=EPOCHS)
            w.compact()
    return root


def flags_of(a) -> dict[str, str]:
    """{flag title: finding text} of the analysis' cells."""
    out = {}
    for cell in a.cells:
        for f in cell_findings(cell):
            for name, title in FLAGS.items():
                if f.text.startswith(title):
                    out[name] = f.text
    return out


# ---- the checks on numbers -------------------------------------------------------------------------
def test_fits_labels_threshold():
    assert regime.fits_labels([0.96, 0.95]).passed
    c = regime.fits_labels([0.64, 0.645], noise=0.4)
    assert not c.passed and c.value == pytest.approx(0.6425) and "64.2%" in c.text and "40%-noisy" in c.text
    assert regime.fits_labels([np.nan]) is None


def test_memorizes_needs_ci_clear_of_the_margin():
    # 3 points above chance, tight: passes; 3 points on average but one trial at chance: the CI reaches below +2
    assert regime.memorizes([0.130, 0.131, 0.129, 0.130], [0.1] * 4, n_boot=500).passed
    wide = regime.memorizes([0.16, 0.10, 0.13, 0.11], [0.1] * 4, n_boot=500)
    assert not wide.passed and wide.value == pytest.approx(0.025) and wide.ci[0] < regime.MEM_MARGIN
    one = regime.memorizes([0.125], [0.1])                     # one trial: its value against the margin
    assert one.passed and one.ci is None and "no CI" in one.text
    assert not regime.memorizes([0.11], [0.1]).passed


def test_class_head_trains():
    assert regime.class_head_trains([0.9, 0.91], classes=10).passed
    c = regime.class_head_trains([0.15, 0.16, 0.14], classes=10)
    assert not c.passed and c.value == pytest.approx(0.05)


def test_edge_optimum_by_fit_and_by_means():
    lam = np.repeat(LAMS, 3)
    inside = regime.edge_optimum(lam, [_test(x, False) for x in lam])
    assert inside.passed and inside.value == pytest.approx(1.0, rel=0.3) and "spline optimum" in inside.text
    rising = [_test(x, True) for x in lam]
    at_edge = regime.edge_optimum(lam, rising)
    assert not at_edge.passed and "largest sampled λ" in at_edge.text
    # the analysis passes its own fit: the same answer
    assert not regime.edge_optimum(lam, rising, fit_peak(lam, rising, n_boot=50)).passed
    # three λ > 0 levels: no spline (too few λ), the best mean decides
    few = np.repeat([0.0, 1.0, 10.0, 30.0], 3)
    by_means = regime.edge_optimum(few, [0.7 if x < 30 else 0.8 for x in few])
    assert not by_means.passed and by_means.value == 30.0 and "best mean" in by_means.text
    # an edge that is no better than λ = 0 (a flat curve) is not an optimum at the edge
    flat = regime.edge_optimum(few, [0.7 + (0.002 if x == 30 else 0) for x in few])
    assert flat.passed and "at the largest sampled λ but < 0.5 pts above the baseline" in flat.text


def test_transition_inside():
    lam = np.repeat(LAMS, 3)
    assert regime.transition_inside(lam, [_rand(x, 0.6) for x in lam], chance=0.1).passed
    flat = regime.transition_inside(lam, [0.6] * len(lam))
    assert not flat.passed and "flat" in flat.text


# ---- analyze and the report flag them on a sweep -------------------------------------------------------
@pytest.mark.parametrize("kw, expected", [
    ({}, set()),
    ({"train0": 0.64}, {"fits"}),
    ({"mem0": 0.105}, {"memorizes"}),
    ({"edge": True}, {"edge"}),
])
def test_analyze_flags_regime(tmp_path, kw, expected):
    a = analyze(write_sweep(tmp_path, **kw), n_boot=60)
    flags = flags_of(a)
    assert set(flags) == expected
    if "fits" in expected:
        assert "train acc 64.0% on its 40%-noisy training labels (< 95.0%)" in flags["fits"]
    if "memorizes" in expected:
        assert "vs chance 10.0%" in flags["memorizes"]
    if "edge" in expected:
        assert "largest sampled λ [0.1, 30]" in flags["edge"]
    text = format_analysis(a)
    findings = text.split("findings:")[1]
    assert all(FLAGS[k] in findings for k in expected)
    assert not any(FLAGS[k] in text for k in set(FLAGS) - expected)
    checks = {c["name"]: c["passed"] for c in a.to_dict()["cells"][0]["regime"]}
    assert {k for k, ok in checks.items() if not ok} == expected and {"fits", "memorizes", "edge"} <= set(checks)


def test_no_noise_no_fits_check(tmp_path):
    a = analyze(write_sweep(tmp_path, train0=0.64, noise=0.0), n_boot=60)
    assert "fits" not in flags_of(a)
    assert "fits" not in {c.name for c in a.cells[0].regime}


def test_report_lists_the_flag_among_the_findings(tmp_path):
    index = write_report(write_sweep(tmp_path / "sweep", train0=0.64), tmp_path / "rep", n_boot=40)
    page = index.read_text()
    findings = page.split("<h2>Findings</h2>")[1].split("<h2>")[0]
    assert FLAGS["fits"] in findings and FLAGS["memorizes"] not in page
