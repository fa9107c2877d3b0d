"""Analysis of Parquet results: DuckDB views (dedup, corrupt files, files changing underneath),
curve fits recovering known parameters, "not fitted" paths, figure infos, and the HTML report.

Synthetic sweeps are written with rlp_tune.results.ResultWriter from known curves:
  rand_acc(λ)  = 0.1 + 0.7 / (1 + exp(2 (log10 λ − 1.5)))         (λ50 = 10^1.5, chance 1/n = 0.1)
  test_acc(λ)  = 0.60 + 0.05 exp(−½ ((log10 λ − 1) / 0.7)²)        (peak at λ = 10)
  train_acc    = 0.98                                              (so the gap is smallest at λ = 10)
on the grid λ ∈ {0} ∪ 10^{−2, −1.5, …, 4} × 3 seeds, 6 epochs; rand_acc sits at chance until epoch 3
(memorization onset 3) and train/test split apart from epoch 2 (divergence 2).
"""
import json
import re

import numpy as np
import pandas as pd
import pytest

from rlp_tune import reader
from rlp_tune.analysis.document import analyze
from rlp_tune.analysis.query import run_query
from rlp_tune.analysis.report import write_report
from rlp_tune.analysis.text import format_analysis
from rlp_tune.analysis import document, figures, fit_factors, fit_lambda, fit_memgen, numerics, query, render, tables
from rlp_tune.analysis.text import format_fit
from rlp_tune.config import Config
from rlp_tune.errors import ResultsWarning
from rlp_tune.results import METRIC_KEY, ResultsError, ResultWriter, conform_metrics, dedup_table

X_GRID = np.arange(-2.0, 4.01, 0.5)          # log10 λ, step 0.5 decade
LAMS = [0.0] + [float(10 ** x) for x in X_GRID]
SEEDS = 3
EPOCHS = 6
LOG10_L50 = 1.5


def true_rand(x):
    return 0.1 + 0.7 / (1 + np.exp(2.0 * (x - LOG10_L50)))


def true_test(x):
    return 0.60 + 0.05 * np.exp(-0.5 * ((x - 1.0) / 0.7) ** 2)


def _cfg(**kw):
    flat = Config().to_flat()
    flat.update({"rlp.n": 10, "rlp.heads": 2, "rlp.layers": ["layer1", "penultimate"], "run.epochs": EPOCHS})
    flat.update(kw)
    return flat


def _write_trial(root, tid, lam, seed, rng, *, rand_final=None, test_final=None, n=10, compact=True, cfg=None):
    x = np.log10(lam) if lam > 0 else -np.inf
    r = true_rand(x) + rng.normal(0, 0.01) if rand_final is None else rand_final
    te = true_test(x) + rng.normal(0, 0.003) if test_final is None else test_final
    chance = 1.0 / n
    w = ResultWriter(root, "syn", tid)
    for e in range(1, EPOCHS + 1):
        re_ = chance if e < 3 else r                      # onset at epoch 3
        train, test = (0.47, 0.45) if e == 1 else (0.98, te)  # divergence at epoch 2
        rows = [{"split": "train", "metric": "acc", "value": train},
                {"split": "test", "metric": "acc", "value": test},
                {"split": "test", "metric": "loss_class", "value": 1.0 - test}]
        # penultimate: two heads (±0.01 around the mean) and the head -1 mean row
        for h, off in ((0, -0.01), (1, 0.01)):
            rows.append({"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": h, "value": re_ + off})
        rows.append({"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": -1, "value": re_})
        # layer1: two heads and no -1 row, so readers must average the heads themselves
        l1 = chance + 0.2 * (re_ - chance) / 0.7
        for h, off in ((0, -0.02), (1, 0.02)):
            rows.append({"split": "train", "metric": "rand_acc", "layer": "layer1", "head": h, "value": l1 + off})
        w.write_epoch(e, rows)
    w.write_trial(cfg or _cfg(**{"rlp.lam": lam, "run.seed": seed, "rlp.n": n}), status="TERMINATED",
                  epochs_done=EPOCHS)
    if compact:
        w.compact()
    return w, r, te


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The λ sweep; half the trials compacted, one with a crash leftover (final.parquet + epoch files)."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    truth = {}
    for i, lam in enumerate(LAMS):
        for s in range(SEEDS):
            tid = f"t{i:02d}s{s}"
            w, r, te = _write_trial(root, tid, lam, s, rng, compact=(i + s) % 2 == 0)
            truth[tid] = (lam, r, te)
    # crash between compaction and the removal of the per-epoch files: same rows twice on disk
    w = ResultWriter(root, "syn", "t00s0")
    final = root / "parquet/metrics/t00s0/final.parquet"
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    t = pq.read_table(final)
    for e in (5, 6):
        pq.write_table(t.filter(pc.equal(t["epoch"], e)), root / f"parquet/metrics/t00s0/epoch_{e:05d}.parquet")
    assert final.exists() and w.trial_id == "t00s0"
    return root, truth


@pytest.fixture(scope="module")
def analysis(sweep):
    return analyze(sweep[0], n_boot=100)


@pytest.fixture(scope="module")
def doc(analysis):
    return analysis.to_dict()


def pyarrow_dedup(root):
    """ROOT's metric rows by the writer's rule (results.dedup_table over every file in Path order:
    later files win), the reference the DuckDB views are checked against."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    files = sorted((root / "parquet" / "metrics").glob("*/*.parquet"))
    return dedup_table(pa.concat_tables([conform_metrics(pq.read_table(f)) for f in files]))


# ---- query -------------------------------------------------------------------------------------
ROWS_PER_EPOCH = 3 + 3 + 2    # acc ×2, loss_class, penultimate heads 0/1/-1, layer1 heads 0/1


def test_metrics_view_dedups_final_and_epoch_files(sweep):
    root, _ = sweep
    n = json.loads(run_query(root, "SELECT trial_id, count(*) AS n FROM metrics GROUP BY trial_id", "json"))
    counts = {r["trial_id"]: r["n"] for r in n}
    assert len(counts) == len(LAMS) * SEEDS
    assert set(counts.values()) == {EPOCHS * ROWS_PER_EPOCH}     # t00s0 has epochs 5, 6 twice on disk
    key = ", ".join(METRIC_KEY)
    dup = run_query(root, f"SELECT count(*) AS d FROM (SELECT {key}, count(*) c FROM metrics GROUP BY ALL) WHERE c > 1",
                    "csv")
    assert dup.split() == ["d", "0"]


def test_metrics_view_equals_the_writers_dedup(sweep):
    root, _ = sweep
    key = list(METRIC_KEY)
    duck = query.query_df(root, "SELECT * FROM metrics").sort_values(key).reset_index(drop=True)
    ref = pyarrow_dedup(root).to_pandas().sort_values(key).reset_index(drop=True)
    assert len(duck) == len(ref) == len(LAMS) * SEEDS * EPOCHS * ROWS_PER_EPOCH
    pd.testing.assert_frame_equal(duck[key + ["value"]], ref[key + ["value"]], check_dtype=False)


def test_final_view_pivots_last_epoch_head_mean(sweep):
    root, truth = sweep
    df = query.query_df(root, 'SELECT trial_id, "rlp.lam", "rlp.n", "train.acc", "test.acc", "train.rand_acc", '
                              '"test.loss_class", final_epoch FROM final')
    assert len(df) == len(truth)
    for r in df.itertuples():
        lam, rand, te = truth[r.trial_id]
        assert r._2 == lam and r._3 == 10 and r.final_epoch == EPOCHS
        assert r._6 == pytest.approx(rand, abs=1e-12)          # the head -1 row, not a head
        assert r._5 == pytest.approx(te, abs=1e-12) and r._4 == pytest.approx(0.98)
        assert r._7 == pytest.approx(1 - te, abs=1e-12)


def test_run_query_formats_and_bad_sql(sweep):
    root, _ = sweep
    sql = 'SELECT trial_id, "rlp.lam" AS lam FROM trials ORDER BY trial_id LIMIT 2'
    table = run_query(root, sql)
    assert table.splitlines()[0].split() == ["trial_id", "lam"] and "t00s0" in table
    csv = run_query(root, sql, "csv").splitlines()
    assert csv[0] == "trial_id,lam" and csv[1] == "t00s0,0.0"
    assert json.loads(run_query(root, sql, "json"))[1] == {"trial_id": "t00s1", "lam": 0.0}
    with pytest.raises(query.QueryError, match="query failed"):
        run_query(root, "SELEC nonsense")
    with pytest.raises(query.QueryError, match="format"):
        run_query(root, sql, "xml")
    with pytest.raises(ResultsError, match="not found"):
        run_query(root / "nope", sql)


def _small_sweep(root, n_trials=3):
    rng = np.random.default_rng(1)
    for i in range(n_trials):
        _write_trial(root, f"s{i}", 10.0 ** i, 0, rng, compact=i % 2 == 0)


@pytest.mark.parametrize("which", ["metrics", "trials"])
def test_corrupt_parquet_is_named_and_the_rest_analyzed(tmp_path, which):
    _small_sweep(tmp_path)
    bad = (tmp_path / "parquet/metrics/s1/epoch_00003.parquet" if which == "metrics"
           else tmp_path / "parquet/trials/s2.parquet")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])                      # truncated mid-file
    with pytest.warns(ResultsWarning, match=re.escape(str(bad))):
        out = run_query(tmp_path, "SELECT count(*) AS n FROM metrics JOIN trials USING (trial_id)", "csv")
    lost = ROWS_PER_EPOCH if which == "metrics" else EPOCHS * ROWS_PER_EPOCH
    assert out.split() == ["n", str(3 * EPOCHS * ROWS_PER_EPOCH - lost)]
    with pytest.warns(ResultsWarning, match=re.escape(str(bad))):
        d = analyze(tmp_path, n_boot=10).to_dict()
    assert d["n_trials"] == 3            # a trial without its row still shows its metrics (the full join)


def test_views_follow_files_changing_while_a_sweep_runs(tmp_path, monkeypatch):
    _small_sweep(tmp_path)                                       # s1 still has per-epoch files
    con = reader.connect(tmp_path)
    count = "SELECT count(*) FROM metrics"
    assert reader.fetch(con, count, "rows")[0][0] == 3 * EPOCHS * ROWS_PER_EPOCH
    ResultWriter(tmp_path, "syn", "s1").compact()                # epoch files vanish, final.parquet appears
    assert reader.fetch(con, count, "rows")[0][0] == 3 * EPOCHS * ROWS_PER_EPOCH
    # a file listed when the views were made vanishes before the read: one retry with fresh views
    _write_trial(tmp_path, "s3", 1e3, 0, np.random.default_rng(2), compact=False)
    reader.fetch(con, count, "rows")                             # views now list s3's epoch files
    state = reader._STATE[con]
    frozen = state.layout
    real_layout, layouts = reader._layout, [frozen]            # hide the next change from the refresh
    monkeypatch.setattr(reader, "_layout", lambda st: layouts.pop() if layouts else real_layout(st))
    ResultWriter(tmp_path, "syn", "s3").compact()
    calls = []
    real_make = reader._make_views
    monkeypatch.setattr(reader, "_make_views", lambda c, st, lay: (calls.append(1), real_make(c, st, lay)))
    assert reader.fetch(con, count, "rows")[0][0] == 4 * EPOCHS * ROWS_PER_EPOCH
    assert calls == [1]                                          # the retry remade the views once


def test_empty_results_folder(tmp_path):
    (tmp_path / "parquet").mkdir()
    assert run_query(tmp_path, "SELECT count(*) AS n FROM metrics", "csv").split() == ["n", "0"]
    d = analyze(tmp_path, n_boot=10).to_dict()
    assert d["n_trials"] == 0
    assert d["fits"]["memorization_vs_lambda"]["fitted"] is False


# ---- fits ----------------------------------------------------------------------------------------
def test_memorization_logistic_recovers_lambda50(doc):
    f = doc["fits"]["memorization_vs_lambda"]
    assert f["fitted"], f
    p = f["params"]
    assert abs(p["log10_lambda50"] - LOG10_L50) < 0.05 * LOG10_L50   # within 5% in log10 space
    lo, hi = f["ci"]["log10_lambda50"]
    assert lo < LOG10_L50 < hi and hi - lo < 0.5
    assert p["rand_acc_high"] == pytest.approx(0.8, abs=0.02)
    assert p["rand_acc_low"] == pytest.approx(0.1, abs=0.02)
    assert p["slope"] == pytest.approx(2.0, rel=0.25) and f["direction"] == "decreasing"
    assert p["chance"] == pytest.approx(0.1) and doc["chance"] == pytest.approx(0.1)
    assert f["baseline"]["n"] == SEEDS and f["baseline"]["mean"] == pytest.approx(0.8, abs=0.02)
    assert f["n_points"] == (len(LAMS) - 1) * SEEDS                  # λ = 0 not in the log-x fit


def test_generalization_peak_within_one_grid_step(doc):
    g = doc["fits"]["generalization_vs_lambda"]
    assert g["fitted"], g
    step = X_GRID[1] - X_GRID[0]
    assert abs(g["params"]["log10_lambda_star"] - 1.0) <= step
    assert g["params"]["test_acc_star"] == pytest.approx(0.65, abs=0.01)
    assert g["baseline_kind"] == "lambda=0"
    assert g["params"]["test_acc_gain"] == pytest.approx(0.05, abs=0.01)
    assert g["ci"]["test_acc_gain"][0] > 0
    gap = doc["fits"]["gap_vs_lambda"]
    assert abs(gap["params"]["log10_gap_lambda_star"] - 1.0) <= step
    assert gap["params"]["gap_change"] == pytest.approx(-0.05, abs=0.01)
    assert gap["params"]["gap_at_test_lambda_star"] == pytest.approx(gap["params"]["gap_star"], abs=0.005)


def test_per_layer_fits_profiles_and_onset(doc):
    assert doc["primary_layer"] == "penultimate"
    assert list(doc["per_layer"]) == ["layer1", "penultimate"]
    l1 = doc["per_layer"]["layer1"]["memorization_vs_lambda"]
    assert l1["fitted"] and abs(l1["params"]["log10_lambda50"] - LOG10_L50) < 0.15
    assert l1["params"]["rand_acc_high"] == pytest.approx(0.3, abs=0.02)   # heads averaged (no -1 row)
    prof = doc["fits"]["layer_profile"]
    assert prof["layers"] == ["layer1", "penultimate"]
    first = prof["by_lambda"][0]
    assert first["lam"] == 0 and first["argmax_layer"] == "penultimate"
    assert first["mean"][1] == pytest.approx(0.8, abs=0.02) and first["count"] == [SEEDS, SEEDS]
    ob = doc["fits"]["onset"]["baseline"]
    assert ob["n_trials"] == SEEDS
    assert ob["params"]["onset_median"] == 3 and ob["params"]["divergence_median"] == 2
    assert ob["params"]["lag_median"] == 1 and ob["params"]["frac_onset_before_divergence"] == 0.0
    # heavily regularized trials never leave chance: no onset
    on = pd.DataFrame(doc["onset_per_trial"])
    assert on.loc[on.trial_id == f"t{len(LAMS) - 1:02d}s0", "onset"].isna().all()


def test_doc_is_json_and_prints(doc, analysis):
    text = json.dumps(doc)
    assert "NaN" not in text
    out = format_analysis(analysis)
    assert "λ50 = 3" in out and "memorization_vs_generalization" in out and "per layer" in out


def test_analysis_is_reproducible(sweep, doc, monkeypatch):
    """Same results and seed → the same document, CIs included, whatever order DuckDB's threads
    return rows in (the bootstrap resamples by position, so load_tables orders its frames)."""
    import duckdb
    real = duckdb.connect

    def one_thread(*a, **k):       # a different scan schedule than the fixture's run
        con = real(*a, **k)
        con.execute("SET threads = 1")
        return con
    monkeypatch.setattr(duckdb, "connect", one_thread)
    assert json.dumps(analyze(sweep[0], n_boot=100).to_dict(), sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_mem_gen_sign_and_verdicts():
    rng = np.random.default_rng(3)
    rand = rng.uniform(0.1, 0.9, 60)
    test_down = 0.7 - 0.2 * rand + rng.normal(0, 0.01, 60)       # less memorization → better test
    f = fit_memgen.fit_mem_gen(rand, test_down, 0.98 - test_down, n_boot=200).to_dict()
    assert f["params"]["spearman_rho"] < -0.8 and f["ci"]["spearman_rho"][1] < 0
    assert f["verdict"] == "helped" and f["gap_verdict"] == "narrowed"
    assert f["params"]["delta_test_acc"] == pytest.approx(0.2 * (f["params"]["rand_acc_high_q90"]
                                                                 - f["params"]["rand_acc_low_q10"]), rel=0.1)
    test_up = 0.5 + 0.2 * rand + rng.normal(0, 0.01, 60)
    f = fit_memgen.fit_mem_gen(rand, test_up, 0.98 - test_up, n_boot=200).to_dict()
    assert f["params"]["spearman_rho"] > 0.8 and f["verdict"] == "hurt"
    noise = 0.6 + rng.normal(0, 0.01, 60)
    f = fit_memgen.fit_mem_gen(rand, noise, 0.98 - noise, n_boot=200).to_dict()
    assert f["verdict"] == "inconclusive" and f["ci"]["spearman_rho"][0] < 0 < f["ci"]["spearman_rho"][1]


def test_not_fitted_reasons():
    two_fit = fit_lambda.fit_logistic([1.0, 10.0], [0.8, 0.2], n_boot=10)
    two = two_fit.to_dict()
    assert two["fitted"] is False and "too few points" in two["reason"]
    flat = fit_lambda.fit_logistic(np.logspace(-2, 4, 13), np.full(13, 0.1), n_boot=10).to_dict()
    assert flat["fitted"] is False and "flat" in flat["reason"]
    assert "too few" in fit_lambda.fit_peak([1.0, 10.0], [0.6, 0.7], n_boot=10).reason
    assert "flat" in fit_lambda.fit_peak(np.logspace(-2, 4, 13), np.full(13, 0.6), n_boot=10).reason
    assert "flat" in fit_memgen.fit_mem_gen(np.full(9, 0.1), np.linspace(0.5, 0.6, 9), np.zeros(9)).reason
    assert "too few" in fit_memgen.fit_mem_gen([0.1, 0.2], [0.5, 0.6], [0, 0]).reason
    # transition outside the sampled range: no λ50 to report
    x = np.linspace(-2, 0.5, 11)                                  # λ50 = 10^1.5 lies beyond the grid
    out = fit_lambda.fit_logistic(10 ** x, true_rand(x), n_boot=10).to_dict()
    assert out["fitted"] is False and "outside" in out["reason"]
    text = format_fit("memorization_vs_lambda", two_fit)
    assert text == [f"memorization_vs_lambda: not fitted: {two['reason']}"]


@pytest.fixture(scope="module")
def n_sweep(tmp_path_factory):
    """λ = 0 everywhere, rlp.n swept (A.3): rand_acc has its minimum at n = 100."""
    root = tmp_path_factory.mktemp("nsweep")
    rng = np.random.default_rng(4)
    for n in (10, 30, 100, 300, 1000, 3000):
        for s in range(SEEDS):
            r = 0.3 + 0.1 * (np.log10(n) - 2) ** 2 + rng.normal(0, 0.005)
            _write_trial(root, f"n{n}s{s}", 0.0, s, rng, rand_final=r, test_final=0.6, n=n)
    return root


def test_factor_curve_minimum_over_n_and_not_fitted_printing(n_sweep):
    a = analyze(n_sweep, n_boot=100)
    d = a.to_dict()
    f = d["fits"]["rand_acc_vs_n"]
    assert f["fitted"] and f["levels"] == [10, 30, 100, 300, 1000, 3000]
    assert f["params"]["n_at_min"] == 100 and f["interior"]
    assert f["chance"] == pytest.approx([0.1, 1 / 30, 0.01, 1 / 300, 0.001, 1 / 3000])
    assert d["fits"]["memorization_vs_lambda"]["fitted"] is False     # λ not swept
    assert "memorization_vs_lambda: not fitted: too few points" in format_analysis(a)
    info = figures.factor_curves_info(document.FactorCurves("rlp.n", [(None, a.fits["rand_acc_vs_n"])]))
    p = info.panels[0]
    assert info.name == "factor_n" and p.xscale == "log" and "(%)" in p.ylabel
    assert p.series[0].x == [10, 30, 100, 300, 1000, 3000]
    assert p.series[0].y == pytest.approx([100 * v for v in f["rand_acc_mean"]])


# ---- figures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loaded(sweep):
    return tables.load_tables(sweep[0])


def test_lambda_figure_info(loaded, analysis):
    d = tables.per_trial(loaded)
    info = figures.lambda_info(d, analysis.fits)
    assert [p.xscale for p in info.panels] == ["log", "log", "log"]
    rand = info.panel("Random-label")
    assert any(h.value == pytest.approx(10.0) and "chance" in h.label for h in rand.hlines)
    assert any(h.label.startswith("λ = 0") and h.value == pytest.approx(80, abs=2) for h in rand.hlines)
    means = next(s for s in rand.series if s.kind == "errorbar")
    assert means.x == pytest.approx(LAMS[1:])                       # λ = 0 is a reference line, not a log-x point
    expect = [100 * d.rand_acc[d.lam == lam].mean() for lam in LAMS[1:]]
    assert means.y == pytest.approx(expect)
    fit = next(s for s in rand.series if s.label == "logistic fit")
    assert fit.y[0] > 75 and fit.y[-1] < 15
    test = info.panel("Test")
    assert any(s.label == "spline fit" for s in test.series) and "(%)" in test.ylabel
    paths = render.save(info, loaded.root + "/figs/lambda")
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths) and {p.suffix for p in paths} == {".png", ".svg"}


def test_layers_epochs_and_memgen_infos(loaded, analysis):
    d = tables.per_trial(loaded)
    li = figures.layers_info(analysis.fits, analysis.chance)
    p = li.panels[0]
    assert p.xticklabels == ["layer1", "penultimate"] and p.hlines[0].value == pytest.approx(10.0)
    lam0 = next(s for s in p.series if s.label == "λ = 0")
    assert lam0.y[1] == pytest.approx(80, abs=2) and lam0.y[0] == pytest.approx(30, abs=2)
    ei = figures.epochs_info(loaded.epochs, d, analysis.fits["onset"])
    a = ei.panels[0]
    train = next(s for s in a.series if s.label == "train")
    assert train.x == list(range(1, EPOCHS + 1)) and train.y[0] == pytest.approx(47) and train.y[-1] == pytest.approx(98)
    assert sorted(v.value for v in a.vlines) == [2, 3]               # divergence, onset
    mg = figures.memgen_info(d, analysis.fits["memorization_vs_generalization"])
    pts = mg.panels[0].series[0]
    assert len(pts.x) == len(d) and mg.panels[0].xlabel == "random-label accuracy (%)"


def test_report_is_one_self_contained_file(sweep, tmp_path):
    root, _ = sweep
    (root / "space.toml").write_text('[search]\n"rlp.lam" = { dist = "loguniform", low = 1e-2, high = 1e4 }\n')
    try:
        index = write_report(root, tmp_path / "rep", n_boot=50)
    finally:
        (root / "space.toml").unlink()
    html = index.read_text()
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len(imgs) >= 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    # nothing outside the page: no src/href to a file, no CSS url(), no script, no link element
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
    assert all(r.startswith("data:") or r.startswith("#") for r in refs), refs
    assert "url(" not in html and "<script" not in html and "<link" not in html
    assert sorted(p.name for p in index.parent.iterdir()) == ["analysis.json", "index.html"]
    # the first screen: findings in words with CIs, before any figure
    first = html[: html.index("<figure>")]
    assert "RLP regularization suppresses memorization: λ50 = 10<sup>1.5" in first
    assert "Test accuracy peaks at λ* = 10<sup>" in first and "points [+" in first
    verdict = json.loads((index.parent / "analysis.json").read_text())["fits"]["memorization_vs_generalization"]["verdict"]
    assert "Memorization vs generalization: ρ = " in first and f"suppressing memorization {verdict}" in first
    assert "<details>" in html and html.index("<details>") > html.index("<figure>")
    assert "lambda50" not in first and "loguniform" in html and "t00s0" in html
    assert json.loads((index.parent / "analysis.json").read_text())["n_trials"] == len(LAMS) * SEEDS


def test_analyze_and_report_on_an_object_store_equal_the_folder(sweep, analysis, tmp_path, s3_endpoint):
    """The same sweep folder in a bucket (a real S3 endpoint, moto on 127.0.0.1): `analyze` gives the
    same document, `report` the same findings; the page names the bucket, never a credential."""
    from s3server import upload
    root, _ = sweep
    uri = s3_endpoint() + "/sweeps/lam"
    upload(root, uri)
    remote = analyze(uri, n_boot=100).to_dict()
    local = analysis.to_dict()
    assert remote.pop("root") == uri and local.pop("root") == str(root)
    assert remote == local
    user = uri.replace("s3://", "s3://AKIA:s3cr3t@")
    index = write_report(user, tmp_path / "rep", n_boot=20)
    html, doc = index.read_text(), (index.parent / "analysis.json").read_text()
    assert "s3cr3t" not in html + doc and uri in html and "<h1>rlp_tune report: lam</h1>" in html


def test_layer_order():
    assert tables.layer_order(["penultimate", "block10", "block2", "input", "encoder", "block1"]) == \
        ["input", "block1", "block2", "block10", "encoder", "penultimate"]


def _scipy_fit4(x, y, p0, bounds):
    """The independent reference: scipy's bounded least squares on the plain residuals."""
    from scipy.optimize import least_squares
    return least_squares(lambda p: numerics.logistic4(x, *p) - y, p0, bounds=bounds, method="trf",
                         x_scale="jac", max_nfev=2000, xtol=1e-12, ftol=1e-12, gtol=1e-12)


def test_batched_bootstrap_fits_equal_scipy_on_resampled_data():
    """The bootstrap's batched Levenberg–Marquardt (counts as weights) reaches the same optimum as
    scipy's least_squares on the explicitly resampled (duplicated) points."""
    rng = np.random.default_rng(5)
    x = np.repeat(X_GRID, 3)
    y = numerics.logistic4(x, 0.8, 0.1, 1.5, 2.0) + rng.normal(0, 0.02, len(x))
    bounds = (np.array([-1.0, -1.0, -3.0, 0.0]), np.array([2.0, 2.0, 5.0, 30.0]))
    full = _scipy_fit4(x, y, np.array([0.8, 0.1, 1.0, 2.0]), bounds)
    W = numerics.boot_counts(rng, len(x), 4)
    batched, cost = numerics.fit4_weighted(x, y, W, full.x, bounds)
    for w, b, c in zip(W, batched, cost):
        idx = np.repeat(np.arange(len(x)), w.astype(int))
        ref = _scipy_fit4(x[idx], y[idx], full.x, bounds)
        assert b == pytest.approx(ref.x, abs=1e-4)
        assert c == pytest.approx(2 * ref.cost, rel=1e-6)      # scipy's cost is ½ Σ r²


def test_multistart_fit_finds_the_global_optimum_from_bad_starts():
    """_fit4 runs every start through the batched LM and polishes the best: a start far off (wrong
    side, flat slope) must not win over one that reaches the optimum."""
    rng = np.random.default_rng(1)
    x = np.repeat(X_GRID, 2)
    y = numerics.logistic4(x, 0.7, 0.05, 2.0, 4.0) + rng.normal(0, 0.01, len(x))
    bounds = (np.array([-1.0, -1.0, -3.0, 0.0]), np.array([2.0, 2.0, 5.0, 30.0]))
    starts = [np.array([0.05, 0.7, -2.5, 0.01]), np.array([0.7, 0.05, 1.0, 3.0])]
    got = numerics.fit4(x, y, starts, bounds)
    ref = min((_scipy_fit4(x, y, p, bounds) for p in starts), key=lambda r: r.cost)
    assert got.cost == pytest.approx(ref.cost, rel=1e-6)
    assert got.x == pytest.approx(ref.x, abs=1e-4)


def test_boot_counts_are_resamples_with_replacement():
    rng = np.random.default_rng(0)
    W = numerics.boot_counts(rng, 50, 4000)
    assert W.shape == (4000, 50) and np.all(W.sum(1) == 50) and np.all(W == np.round(W))
    # each item's count is Binomial(50, 1/50): mean 1, variance 0.98
    assert W.mean() == pytest.approx(1.0, abs=0.01) and W.var() == pytest.approx(0.98, abs=0.03)
    assert numerics.boot_counts(rng, 5, 0).shape == (0, 5)


def test_bspline_design_matches_scipy():
    from scipy.interpolate import BSpline
    sp = numerics.PSpline(-2.0, 4.0, n_seg=7)
    x = np.r_[np.linspace(-2, 4, 57), np.random.default_rng(0).uniform(-2, 4, 40), 4.0, -2.0]
    ref = BSpline.design_matrix(x, sp.t, 3).toarray()
    got = sp.basis(x)
    assert got.shape == ref.shape == (len(x), sp.K)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)            # partition of unity


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    from scipy.stats import rankdata, spearmanr
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 40))
    Y = X + rng.normal(size=(6, 40))
    if ties:
        X, Y = np.round(X), np.round(Y * 2)
    np.testing.assert_allclose(numerics.rank_rows(X), rankdata(X, axis=1))
    np.testing.assert_allclose(numerics.spearman_rows(X, Y), [spearmanr(a, b).statistic for a, b in zip(X, Y)])
    assert np.isnan(numerics.spearman(np.ones(5), np.arange(5)))


def test_cli_analyze_boot_and_seed(sweep, capsys):
    from rlp_tune.cli import main
    assert main(["analyze", str(sweep[0]), "--json", "--boot", "0"]) == 0
    d = json.loads(capsys.readouterr().out)
    fit = d["fits"]["memorization_vs_lambda"]
    assert d["settings"]["n_boot"] == 0 and fit["fitted"] and fit["ci"]["lambda50"] is None
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(sweep[0]), "--boot", "-3"])
    assert e.value.code == 2 and "--boot: must be ≥ 0" in capsys.readouterr().err


def test_swept_n_gets_a_chance_normalized_memorization_fit():
    """rlp.n swept → chance differs per trial: the raw fit carries a note and the normalized fit
    (rand_acc − 1/n)/(1 − 1/n) recovers λ50 of the normalized curve."""
    import pandas as pd
    rng = np.random.default_rng(2)
    x = np.repeat(X_GRID, 6)
    n = np.resize([8, 32, 128], len(x))
    chance = 1.0 / n
    norm = numerics.logistic4(x, 0.9, 0.05, 1.5, 3.0) + rng.normal(0, 0.01, len(x))
    d = pd.DataFrame({"lam": 10 ** x, "chance": chance, "rand_acc": chance + norm * (1 - chance),
                      "test_acc": 0.9 - 0.01 * x, "gap": 0.05 + 0.01 * x})
    fits = document.lam_fits(d, n_boot=50, seed=0)
    assert "chance varies" in fits["memorization_vs_lambda"].note
    f_fit = fits["memorization_vs_lambda_normalized"]
    f = f_fit.to_dict()
    assert f["fitted"] and f["params"]["log10_lambda50"] == pytest.approx(1.5, abs=0.05)
    assert f["params"]["rand_acc_high"] == pytest.approx(0.9, abs=0.02)
    text = "\n".join(format_fit("memorization_vs_lambda_normalized", f_fit))
    assert "(rand_acc − 1/n) / (1 − 1/n)" in text
    # one n: no note, no extra fit
    d1 = d.assign(chance=0.1)
    assert "memorization_vs_lambda_normalized" not in document.lam_fits(d1, n_boot=0, seed=0)


def test_at_epoch_compares_trials_at_one_training_length(tmp_path):
    """ASHA-style sweep: half the trials stopped at epoch 2. By default the fits use each trial's
    last epoch and say that lengths differ; at_epoch=E keeps the trials that reached E, at E."""
    rng = np.random.default_rng(4)
    for i, lam in enumerate(LAMS):
        for s in range(2):
            w, _, _ = _write_trial(tmp_path, f"t{i:02d}s{s}", lam, s, rng)
            if s == 1:                                    # stopped early: rows beyond epoch 2 gone
                w.truncate_after(2)
                w.write_trial(_cfg(**{"rlp.lam": lam, "run.seed": s}), status="STOPPED", epochs_done=2)
    n = len(LAMS)
    d_all = analyze(tmp_path, n_boot=0).to_dict()
    assert d_all["n_trials"] == 2 * n and d_all["final_epoch"] == {"min": 2, "max": EPOCHS}
    assert any(f"{n} of {2 * n} stopped before epoch {EPOCHS}" in s and f"2: {2 * n}, {EPOCHS}: {n}" in s
               for s in d_all["notes"])
    d_full = analyze(tmp_path, n_boot=0, at_epoch=EPOCHS).to_dict()
    assert d_full["n_trials"] == n and d_full["status"] == {"TERMINATED": n}
    assert d_full["notes"] == [f"metrics at epoch {EPOCHS}: the {n} trials that reached it ({n} of {2 * n} "
                               "ended earlier and are left out)"]
    assert d_full["fits"]["memorization_vs_lambda"]["params"]["log10_lambda50"] == pytest.approx(1.5, abs=0.1)
    # at epoch 2 every trial is there, and rand_acc is still at chance (onset at epoch 3)
    t2 = tables.load_tables(tmp_path, at_epoch=2)
    d2 = tables.per_trial(t2)
    assert len(d2) == 2 * n and (d2.final_epoch == 2).all()
    assert d2.rand_acc.to_numpy() == pytest.approx(0.1, abs=1e-9)
    assert t2.epochs.epoch.max() == 2
    with pytest.raises(ValueError, match="at_epoch"):
        tables.load_tables(tmp_path, at_epoch=-1)


def test_peak_value_and_ci_stay_within_what_trials_reached():
    """16 trials, a sharp drop at the largest λ (the demo sweep's test accuracies): the spline and
    its bootstrap resamples must not report an optimum above the best trial (it once said 110%)."""
    x = np.array([-1.651, -1.444, -1.009, -0.942, -0.562, 0.195, 0.281, 0.471, 0.56, 0.584, 0.651,
                  0.683, 1.167, 1.649, 1.866, 1.914])
    y = np.array([0.969, 0.925, 0.969, 0.969, 0.969, 0.969, 0.975, 0.975, 0.975, 0.969, 0.969, 0.975,
                  0.95, 0.972, 0.936, 0.869])
    f = fit_lambda.fit_peak(10 ** x, y, n_boot=200).to_dict()
    assert f["fitted"] and f["params"]["test_acc_star"] <= y.max()
    lo, hi = f["ci"]["test_acc_star"]
    assert y.min() <= lo <= hi <= y.max()
    assert 10 ** x.min() <= f["ci"]["lambda_star"][0] <= f["ci"]["lambda_star"][1] <= 10 ** x.max()


def test_least_regularized_trials_grid_vs_continuous_lambda():
    grid = np.repeat([0.01, 0.1, 1.0, 10.0, 100.0], 3)              # a grid with 3 seeds
    m, r = fit_factors.least_regularized(grid)
    assert m.tolist() == [True] * 3 + [False] * 12 and r == (0.01, 0.01)
    cont = 10 ** np.linspace(-2, 2, 16)                             # TPE-like: one trial per λ
    m, r = fit_factors.least_regularized(np.r_[cont, np.nan])
    assert m.sum() == 4 and m[:4].all() and not m[-1] and r == pytest.approx((cont[0], cont[3]))
    assert fit_factors.lam_text(r).startswith("λ in [0.01, ")
    assert fit_factors.least_regularized(np.full(3, np.nan))[1] is None


def _strip_ids(o):
    """The document without what names trials or the folder (trial_id, trial_ids, root)."""
    if isinstance(o, dict):
        return {k: _strip_ids(v) for k, v in o.items() if k not in ("trial_id", "trial_ids", "root")}
    if isinstance(o, list):
        return [_strip_ids(v) for v in o]
    return o


def test_analysis_does_not_depend_on_trial_ids(tmp_path, capsys):
    """The same trials (configs, seeds, metric values) under two sets of Tune's random trial ids give
    the same `analyze --json` document, CIs included: the bootstrap resamples trials by position, so
    the rows are ordered by content, not by id (two demo sweeps once got λ50 CIs [0.70, 4.04] and
    [0.73, 3.97] from identical trials)."""
    from rlp_tune.cli import main
    cells = [(i, lam, s) for i, lam in enumerate(LAMS) for s in range(2)]
    ids = {"a": [f"t{k:03d}" for k in range(len(cells))],
           # random-looking ids whose sort order is a shuffle of the content order
           "b": [f"{h:08x}" for h in np.random.default_rng(9).permutation(len(cells)) * 7919 + 12345]}
    docs = {}
    for name, tids in ids.items():
        root = tmp_path / name
        for tid, (i, lam, s) in zip(tids, cells):
            _write_trial(root, tid, lam, s, np.random.default_rng([i, s]), compact=s == 0)
        assert main(["analyze", str(root), "--json", "--boot", "100"]) == 0
        docs[name] = json.loads(capsys.readouterr().out)
    assert sorted(ids["a"]) != [ids["a"][k] for k in np.argsort(ids["b"])]    # the id orders differ
    assert docs["a"]["fits"]["memorization_vs_lambda"]["ci"]["log10_lambda50"] is not None
    assert _strip_ids(docs["a"]) == _strip_ids(docs["b"])


@pytest.mark.parametrize("cmd", ["analyze", "report"])
def test_at_epoch_no_trial_reached_is_one_line_exit_2(tmp_path, capsys, cmd):
    """--at-epoch E that no trial has metrics at: one line naming the cause, exit 2, no report
    folder left behind; an epoch some trial has is accepted."""
    from rlp_tune.cli import main
    rng = np.random.default_rng(5)
    for i, lam in enumerate(LAMS[:4]):
        _write_trial(tmp_path / "res", f"t{i}", lam, 0, rng)
    out = ["--out", str(tmp_path / "rep")] if cmd == "report" else []
    want = {"999": f"--at-epoch 999: no trial reached epoch 999 (the longest reached {EPOCHS})",
            "0": f"--at-epoch 0: no trial has metrics at epoch 0 (recorded epochs run from 1 to {EPOCHS})",
            "-1": "--at-epoch: must be ≥ 0, got -1"}
    for e, msg in want.items():
        code = None
        try:
            code = main([cmd, str(tmp_path / "res"), "--at-epoch", e, "--boot", "0", *out])
        except SystemExit as x:
            code = x.code
        err = capsys.readouterr().err
        assert code == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err, (e, err)
        assert not (tmp_path / "rep").exists()
    assert main([cmd, str(tmp_path / "res"), "--at-epoch", str(EPOCHS), "--boot", "0", *out]) == 0
