"""Analysis that fits the design: per-cell fits recovering known parameters from synthetic Parquet,
training-length exclusion, the memorization metric choice (rand_acc_eval), evasion flags, fits that
are not identified (no number, a reason), figure infos per design, notebook renderers.

Synthetic trials are written with rlp_tune.results.ResultWriter: 4 epochs, final-epoch values from
known curves (memorization a logistic in log10 λ, test accuracy a bump), a constant first epochs.
"""
import json
import re

import numpy as np
import pytest

from rlp_tune.analysis.document import analyze
from rlp_tune.analysis.tables import load_tables
from rlp_tune.analysis.text import format_analysis
from rlp_tune.analysis import document, figures, fit_lambda, numerics, render
from rlp_tune.analysis.findings import cell_findings
from rlp_tune.config import Config
from rlp_tune.results import ResultWriter

EPOCHS = 4
X = np.arange(-1.0, 3.01, 0.5)                     # log10 λ grid, 9 values


def logistic(x, high, low, x50, slope=2.5):
    return low + (high - low) / (1 + np.exp(slope * (x - x50)))


def write_trial(root, tid, cfg: dict, final: dict, *, epochs_done=EPOCHS, layers=("penultimate",),
                status="TERMINATED"):
    """final: {metric: value} at the primary layer for rand_acc*, at layer '' for accuracies."""
    flat = Config().to_flat()
    flat.update({"rlp.n": 10, "rlp.heads": 1, "run.epochs": EPOCHS, **cfg})
    w = ResultWriter(root, "syn", tid)
    for e in range(1, epochs_done + 1):
        rows = [{"split": "train", "metric": "acc", "value": final.get("train_acc", 0.98)},
                {"split": "test", "metric": "acc", "value": final["test_acc"]}]
        for m in ("rand_acc", "rand_acc_eval", "rand_acc_audit"):
            if m in final:
                for k, ln in enumerate(layers):     # deeper taps memorize more
                    rows.append({"split": "train", "metric": m, "layer": ln, "head": -1,
                                 "value": final[m] * (k + 1) / len(layers)})
        w.write_epoch(e, rows)
    w.write_trial(flat, status=status, epochs_done=epochs_done)
    w.compact()


def space(root, text):
    (root / "space.toml").write_text(text)


GRID_SPACE = """[search]
"rlp.lam" = { dist = "grid", values = [0.1, 1.0] }
"data.label_noise" = { dist = "grid", values = [0.0, 0.4] }
[sweep]
design = "grid"
"""
L50 = {0.0: 1.0, 0.4: 2.0}                          # true log10 λ50 per noise cell


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """λ grid × label noise {0, 0.4} × 3 seeds, design = grid; 2 extra trials stopped at epoch 2."""
    root = tmp_path_factory.mktemp("grid")
    space(root, GRID_SPACE)
    rng = np.random.default_rng(0)
    for noise, x50 in L50.items():
        for i, x in enumerate(X):
            for s in range(3):
                r = logistic(x, 0.7, 0.1, x50) + rng.normal(0, 0.01)
                te = 0.8 - 0.1 * noise + 0.04 * np.exp(-0.5 * ((x - 1.0) / 0.6) ** 2) + rng.normal(0, 0.003)
                write_trial(root, f"n{noise}x{i}s{s}", {"rlp.lam": float(10 ** x), "data.label_noise": noise,
                                                        "run.seed": s}, {"rand_acc": r, "test_acc": te})
    for s in range(2):          # early-stopped: would pull the λ = 10^3 fit if they counted
        write_trial(root, f"short{s}", {"rlp.lam": 1e3, "data.label_noise": 0.0, "run.seed": 10 + s},
                    {"rand_acc": 0.9, "test_acc": 0.2}, epochs_done=2, status="STOPPED")
    return root


@pytest.fixture(scope="module")
def grid_an(grid):
    return analyze(grid, n_boot=100)


def test_per_cell_fits_recover_known_lambda50(grid_an):
    a = grid_an
    assert a.design.kind == "grid" and a.design.cell_factors == ["data.label_noise"]
    assert [c.key for c in a.cells] == ["data.label_noise=0.0", "data.label_noise=0.4"]
    for cell in a.cells:
        noise = float(cell.factors["data.label_noise"])
        f = cell.fits["memorization_vs_lambda"]
        assert f.fitted and len(cell.trial_ids) == len(X) * 3
        assert f.log10_lambda50 == pytest.approx(L50[noise], abs=0.08)
        lo, hi = f.ci["log10_lambda50"]
        assert lo < L50[noise] < hi and hi - lo < 0.4
        assert f.high == pytest.approx(0.7, abs=0.03) and f.low == pytest.approx(0.1, abs=0.03)
        g = cell.fits["generalization_vs_lambda"]
        assert g.fitted and abs(g.log10_lam_star - 1.0) <= 0.5
        assert g.change == pytest.approx(0.04, abs=0.015)
    # one CI per quantity: the group of the single cell factor is the cell's fit, not a refit
    doc = a.to_dict()
    for c in doc["cells"]:
        assert doc["groups"][c["key"]]["memorization_vs_lambda"]["ci"] == c["fits"]["memorization_vs_lambda"]["ci"]
    # the pooled keys stay where they were
    assert doc["fits"]["memorization_vs_lambda"]["direction"] == "decreasing"
    assert doc["fits"]["memorization_vs_lambda"]["params"]["lambda50"] > 0
    json.dumps(doc)


def test_incomplete_trials_left_out_and_said(grid_an):
    a = grid_an
    assert a.n_trials == 2 * len(X) * 3 + 2
    assert a.curve_trials["used"] == 2 * len(X) * 3 and a.curve_trials["left_out"] == 2
    assert list(a.curve_trials["reasons"].values()) == [2] and "stopped before run.epochs" in \
        next(iter(a.curve_trials["reasons"]))
    assert any("2 left out" in n for n in a.notes)
    assert not {"short0", "short1"} & {t for c in a.cells for t in c.trial_ids}


def test_findings_in_words_with_cis(grid_an):
    text = format_analysis(grid_an)
    for cell in grid_an.cells:
        f = cell_findings(cell)
        assert [x.topic for x in f] == ["memorization", "generalization", "memgen"]
        assert f[0].identified and f[0].text.startswith("RLP regularization suppresses memorization: λ50 = 10^")
        assert re.search(r"λ50 = 10\^[\d.]+ \[10\^[\d.]+, 10\^[\d.]+\]", f[0].text)
        assert re.search(r"[+-]\d+\.\d points \[[+-]\d+\.\d, [+-]\d+\.\d\]", f[1].text)
        assert f"[{cell.key}]" in text and f[0].text in text
    doc = grid_an.to_dict()
    assert [x["text"] for x in doc["cells"][1]["findings"]] == [x.text for x in cell_findings(grid_an.cells[1])]


def test_two_level_factor_is_cells_not_a_curve(grid_an):
    assert [f.factor for f in grid_an.factor_curves] == []          # noise has 2 levels: cells only


@pytest.fixture(scope="module")
def n_grid(tmp_path_factory):
    """λ grid × n ∈ {4, 16, 64, 256} × 2 seeds: the chance-normalized memorization is a logistic."""
    root = tmp_path_factory.mktemp("ngrid")
    space(root, '[search]\n"rlp.lam" = { dist = "grid", values = [1] }\n"rlp.n" = { dist = "grid", values = [4] }\n'
                '[sweep]\ndesign = "grid"\n')
    rng = np.random.default_rng(1)
    for n in (4, 16, 64, 256):
        for i, x in enumerate(X):
            for s in range(2):
                norm = logistic(x, 0.8, 0.0, 1.5) + rng.normal(0, 0.01)
                write_trial(root, f"n{n}x{i}s{s}", {"rlp.lam": float(10 ** x), "rlp.n": n, "run.seed": s},
                            {"rand_acc": 1 / n + norm * (1 - 1 / n), "test_acc": 0.8})
    return root


def test_swept_n_cells_and_normalized_factor_curves(n_grid):
    a = analyze(n_grid, n_boot=50)
    assert [c.key for c in a.cells] == [f"rlp.n={n}" for n in (4, 16, 64, 256)]     # in numeric order
    pooled = fit_lambda.memorization_fit(a.fits)
    assert pooled.y == "(rand_acc − 1/n) / (1 − 1/n)" and pooled.log10_lambda50 == pytest.approx(1.5, abs=0.1)
    fc = next(f for f in a.factor_curves if f.factor == "rlp.n")
    assert fc.by_lambda[0][1].y == "(rand_acc − 1/n) / (1 − 1/n)"
    assert [lv for lv, _ in fc.by_lambda] == pytest.approx([10 ** x for x in X[::2]])   # 5 of the grid's λ
    lv, f0 = fc.by_lambda[0]                               # the smallest λ level: ≈ 0.8 normalized at every n
    assert f0.levels == [4, 16, 64, 256] and f0.mean == pytest.approx([0.8] * 4, abs=0.03)
    info = figures.factor_curves_info(fc)
    assert info.name == "factor_n" and info.panels[0].xscale == "log"
    assert len(info.panels[0].series) == len(fc.by_lambda)
    assert info.panels[0].title.startswith("Chance-normalized memorization")


def _lam_sweep(root, y_of_x, *, eval_of_x=None, audit=None, seeds=3, n=10):
    rng = np.random.default_rng(2)
    for i, x in enumerate(X):
        for s in range(seeds):
            final = {"rand_acc": float(y_of_x(x, rng)), "test_acc": 0.8}
            if eval_of_x is not None:
                final["rand_acc_eval"] = float(eval_of_x(x))
            if audit is not None:
                final["rand_acc_audit"] = audit
            write_trial(root, f"x{i}s{s}", {"rlp.lam": float(10 ** x), "run.seed": s, "rlp.n": n}, final)


def test_eval_metric_is_used_where_present_and_named(tmp_path):
    _lam_sweep(tmp_path, lambda x, r: 0.05, eval_of_x=lambda x: logistic(x, 0.6, 0.1, 0.5))
    a = analyze(tmp_path, n_boot=50)
    assert a.memorization_metric == "rand_acc_eval"
    f = a.fits["memorization_vs_lambda"]
    assert f.metric == "train.rand_acc_eval" and f.log10_lambda50 == pytest.approx(0.5, abs=0.05)
    doc = a.to_dict()
    assert doc["memorization_metric"] == "train.rand_acc_eval"
    assert doc["fits"]["memorization_vs_lambda"]["metric"] == "train.rand_acc_eval"
    assert any("rand_acc_eval" in n for n in a.notes)


def test_evasion_flags_below_chance_and_audit(tmp_path):
    # online rand_acc 0.004 at λ ≥ 10 (chance 0.1), audit 0.2: both signs
    _lam_sweep(tmp_path, lambda x, r: 0.004 if x >= 1 else 0.5 + r.normal(0, 0.01), audit=0.2)
    a = analyze(tmp_path, n_boot=100)
    ev = a.evasion
    assert ev.flagged and ev.audited
    assert "below chance at penultimate, λ = 10: online 0.4%, chance 10.0%" in format_analysis(a)
    below = [r for r in ev.rows if r.why == "below chance"]
    assert sorted(r.lam for r in below) == pytest.approx([10 ** x for x in X if x >= 1])
    assert all(len(r.trial_ids) == 3 and r.chance == pytest.approx(0.1) for r in below)
    above = [r for r in ev.rows if r.why == "audit above online"]
    assert len(above) == 3 * int((X >= 1).sum()) and all(r.audit == pytest.approx(0.2) for r in above)


def test_no_evasion_flag_on_honest_heads(tmp_path):
    _lam_sweep(tmp_path, lambda x, r: logistic(x, 0.6, 0.1, 1.0) + r.normal(0, 0.005), audit=None)
    ev = analyze(tmp_path, n_boot=100).evasion
    assert not ev.flagged and not ev.audited


NO_NUMBER_KEYS = {"params", "ci", "curve", "r2", "direction"}


@pytest.mark.parametrize("case, reason", [
    ("step", "slope at its bound"),
    ("noise", "R² below"),
    ("wide", "as wide as the sampled λ range"),
    ("outside", "outside the sampled λ range"),
    ("few", "too few points"),
])
def test_not_identified_fits_carry_no_number(case, reason):
    x = np.repeat(X, 3)
    gen = {"step": lambda r: np.where(x < 1.2, 0.7, 0.1) + r.normal(0, 0.002, len(x)),
           # a fall buried in noise (sd 0.15 around a 0.4-point drop)
           "noise": lambda r: logistic(x, 0.6, 0.2, 1.0, slope=1.5) + r.normal(0, 0.15, len(x)),
           # a noisy straight decline without plateaus: fitted, but λ50 is anywhere in the range
           "wide": lambda r: 0.5 - 0.05 * x + r.normal(0, 0.06, len(x)),
           "outside": lambda r: logistic(x, 0.7, 0.1, 3.6) + r.normal(0, 0.005, len(x)),
           "few": lambda r: logistic(x, 0.7, 0.1, 1.0)}
    y = gen[case](np.random.default_rng(2))
    if case == "few":
        x, y = x[:9], y[:9]                   # 3 distinct λ
    f = fit_lambda.fit_logistic(10 ** x, y, n_boot=200, chance=0.1)
    assert not f.fitted and reason in f.reason, f.reason
    d = f.to_dict()
    assert d["fitted"] is False and not NO_NUMBER_KEYS & set(d)
    cell = document.Cell("all trials", {}, [], {"memorization_vs_lambda": f,
                                                "generalization_vs_lambda": fit_lambda.fit_peak(10 ** x, y)})
    words = cell_findings(cell)[0]
    assert not words.identified and words.text.startswith("Memorization vs λ: not identified: ")
    assert "λ50 =" not in words.text and "R² 0" not in words.text


def test_single_run_shows_epochs_not_lambda(tmp_path):
    write_trial(tmp_path, "only", {"rlp.lam": 1.0}, {"rand_acc": 0.3, "test_acc": 0.8},
                layers=("layer1", "penultimate"))
    t = load_tables(tmp_path)
    a = document.analyze_tables(t, n_boot=20)
    infos = figures.figure_infos(t, a)
    names = [i.name for i in infos]
    assert "lambda" not in names and "memgen" not in names and names[0] == "epochs"
    assert infos[0].panels[0].title.startswith("Trial only")
    assert a.cells[0].key == "this run" and cell_findings(a.cells[0]) == []
    assert "Single run (λ = 1) after 4 epochs: train accuracy 98.0%, test 80.0%; random-label accuracy 30.0% " \
        "at penultimate, chance 10.0%." in format_analysis(a)
    train = next(s for s in infos[0].panels[0].series if s.label == "train")
    assert train.x == list(range(1, EPOCHS + 1))


def test_layers_figure_only_with_more_than_one_tap(grid, tmp_path):
    t = load_tables(grid)
    a = document.analyze_tables(t, n_boot=20)
    assert figures.layers_info(a.fits, a.chance) is None             # heads at penultimate only
    info = figures.lambda_info(a.trials[a.trials.complete], a.fits, a.cells)
    assert len(info.panels) == 3 * len(a.cells) and info.ncols == 3  # one row per cell
    assert "data.label_noise=0.4" in info.panels[3].title
    band = next(s for s in info.panels[0].series if s.kind == "band")
    assert all(lo <= hi for lo, hi in zip(band.ylo, band.yhi))
    _lam_sweep(tmp_path, lambda x, r: logistic(x, 0.6, 0.1, 1.0))
    write_trial(tmp_path, "deep", {"rlp.lam": 1.0}, {"rand_acc": 0.3, "test_acc": 0.8},
                layers=("layer1", "penultimate"))
    a2 = analyze(tmp_path, n_boot=20)
    li = figures.layers_info(a2.fits, a2.chance)
    assert li is not None and li.panels[0].xticklabels == ["layer1", "penultimate"]


def test_notebook_renderers_return_a_figure_and_accept_ax(grid_an):
    import matplotlib
    from matplotlib.figure import Figure

    before = matplotlib.get_backend()
    info = figures.lambda_info(grid_an.trials[grid_an.trials.complete], grid_an.fits)
    fig = render.draw(info)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 3
    mine = Figure()
    axes = mine.subplots(1, 3)
    assert render.draw(info, ax=axes) is mine
    assert axes[0].get_xscale() == "log" and axes[0].get_title().startswith("Random-label")
    assert len(axes[0].lines) >= 1 and len(axes[0].collections) >= 1       # fit line; band / error bars
    one = Figure().subplots()
    memgen = figures.memgen_info(grid_an.trials, grid_an.fits["memorization_vs_generalization"])
    assert render.draw(memgen, ax=[one, Figure().subplots()]) is one.figure
    with pytest.raises(ValueError, match="3 panel"):
        render.draw(info, ax=one)
    assert matplotlib.get_backend() == before


def test_column_percentiles_match_nanpercentile():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 41))
    A[rng.random(A.shape) < 0.3] = np.nan
    A[:, 0] = np.nan                                   # an uncovered column
    A[1:, 1] = np.nan                                  # one value only
    got = numerics.column_percentiles(A, (2.5, 50, 97.5))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = np.nanpercentile(A, [2.5, 50, 97.5], axis=0)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g[2:], r[2:])
        assert np.isnan(g[0]) and np.isnan(g[1])


def test_factor_design_without_lambda_states_the_factor_curve(tmp_path):
    """λ fixed, rlp.n swept (A.3): one cell, no λ findings; the factor curve is the finding."""
    space(tmp_path, '[search]\n"rlp.n" = { dist = "grid", values = [10] }\n[sweep]\ndesign = "grid"\n')
    rng = np.random.default_rng(4)
    for n in (10, 30, 100, 300, 1000, 3000):
        for s in range(3):
            r = 0.3 + 0.1 * (np.log10(n) - 2) ** 2 + rng.normal(0, 0.005)
            write_trial(tmp_path, f"n{n}s{s}", {"rlp.lam": 0.0, "rlp.n": n, "run.seed": s},
                        {"rand_acc": r, "test_acc": 0.6})
    a = analyze(tmp_path, n_boot=100)
    assert [c.key for c in a.cells] == ["all trials"] and list(a.cells[0].fits) == ["memorization_vs_generalization"]
    text = format_analysis(a)
    assert re.search(r"Memorization \w[\w ]+ rlp.n: Spearman ρ = .*; minimum at n = 100 \[\d", text), text
    assert "Memorization vs generalization: not identified: flat data: test accuracy" in text
    fc = a.factor_curves[0]
    assert fc.factor == "rlp.n" and fc.by_lambda[0][0] is None and fc.by_lambda[0][1].at_level == 100


def test_empty_folder_has_no_findings_and_a_report(tmp_path):
    (tmp_path / "parquet").mkdir()
    a = analyze(tmp_path, n_boot=10)
    assert a.design.kind == "empty" and a.cells == []
    assert "findings: none (no complete trial with metrics)" in format_analysis(a)
    from rlp_tune.analysis.report import write_report
    html = write_report(tmp_path, tmp_path / "rep", n_boot=10).read_text()
    assert "none: no complete trial with metrics" in html and "<img" not in html


def test_continuous_lambda_design_figures(tmp_path):
    """tpe / random / qmc / adaptive draw λ continuously: points (no level means), the fit with its
    band, dynamics at a few of the sampled λ; no cells without a factor of few levels."""
    space(tmp_path, '[search]\n"rlp.lam" = { dist = "loguniform", low = 0.1, high = 1000 }\n'
                    '[sweep]\ndesign = "random"\n')
    rng = np.random.default_rng(6)
    for i, x in enumerate(rng.uniform(-1, 3, 30)):
        write_trial(tmp_path, f"t{i}", {"rlp.lam": float(10 ** x), "run.seed": 0},
                    {"rand_acc": logistic(x, 0.7, 0.1, 1.0) + rng.normal(0, 0.01), "test_acc": 0.8 - 0.02 * x})
    t = load_tables(tmp_path)
    a = document.analyze_tables(t, n_boot=100)
    assert a.design.kind == "random" and [c.key for c in a.cells] == ["all trials"]
    assert a.cells[0].fits["memorization_vs_lambda"] is a.fits["memorization_vs_lambda"]    # one fit, one CI
    infos = {i.name: i for i in figures.figure_infos(t, a)}
    assert list(infos) == ["lambda", "epochs", "memgen"]
    rand = infos["lambda"].panel("Random-label")
    assert [s.kind for s in rand.series] == ["points", "band", "line"] and len(rand.series[0].x) == 30
    assert infos["lambda"].ncols == 3 and len(infos["lambda"].panels) == 3
    dyn = infos["epochs"].panels[1]
    assert len([s for s in dyn.series if s.label.startswith("λ = ")]) == 5


@pytest.mark.parametrize("gain_ci, lead", [([-0.002, 0.004], "Test accuracy: no detectable gain from RLP regularization"),
                                           ([0.01, 0.03], "Test accuracy peaks at λ* = ")])
def test_generalization_finding_leads_with_what_the_ci_supports(gain_ci, lead):
    """A peak whose gain CI holds 0 is not reported as a peak; one whose CI excludes 0 is."""
    from rlp_tune.analysis.findings import generalization_finding
    from rlp_tune.analysis.fit_lambda import Curve, PeakFit
    f = PeakFit(mode="max", prefix="test_acc", lam_key="lambda_star", lam_star=0.7, log10_lam_star=-0.15, star=0.972,
                baseline_value=0.972 - sum(gain_ci) / 2, baseline_kind="lambda=0", at_boundary=False, n_points=24,
                n_baseline=3, n_boot=200, n_boot_ok=200, ci={"log10_lambda_star": [-2.0, 0.21], f"test_acc_gain": gain_ci},
                curve=Curve(lam=[0.01, 1.0], y=[0.97, 0.972]))
    assert f.change_key == "test_acc_gain"
    text = generalization_finding(f).text
    assert text.startswith(lead), text
    assert "[-0.2, +0.4]" in text if gain_ci[0] < 0 else "[+1.0, +3.0]" in text
