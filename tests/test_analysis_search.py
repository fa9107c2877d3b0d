"""A tuning search's analysis (analysis/search.py, search_figures.py) and how the report leads with it.

Synthetic sweep folders, no Ray: an Optuna study in ROOT/optuna.journal (JournalStorage, as
tune/study.py writes it: trial_id user attribute, epochs as intermediate values, COMPLETE / PRUNED)
and each trial's Parquet rows through rlp_tune.results.ResultWriter. The configs are the study's
(RandomSampler, seed 0); val accuracy at the last epoch is a bump in log10 λ only:
  val(λ) = 0.95 − 0.05 (log10 λ − 0.5)²       (heads, hidden do not matter)
and rises linearly over the epochs to it. Every third trial is stopped by "the scheduler" at epoch 2
(status STOPPED, PRUNED in the study), at val 0.99: above every finished trial, so a best-so-far or a
best-trial pick that counted stopped trials would show.
"""
import json
import math
import shutil

import numpy as np
import pytest

from rlp_tune.analysis.document import analyze
from rlp_tune.analysis.report import write_report
from rlp_tune.analysis.text import format_analysis
from rlp_tune.analysis import render
from rlp_tune.analysis.search import JOURNAL, ROUGH_BELOW, open_study
from rlp_tune.analysis.search_figures import best_so_far, curves_info, history_info, importance_info, slice_info
from rlp_tune.config import Config
from rlp_tune.results import ResultWriter

optuna = pytest.importorskip("optuna")

EPOCHS = 6
STOP_AT = 2
SPACE = """[fixed]
"run.epochs" = 6
[search]
"rlp.lam"    = {{ dist = "loguniform", low = 1e-2, high = 1e3 }}
"rlp.heads"  = {{ dist = "int", low = 1, high = 3 }}
"rlp.hidden" = {{ dist = "choice", values = [0, 64] }}
[sweep]
design = "tpe"
name = "{name}"
metric = "val.acc"
mode = "max"
"""


def val_of(lam):
    return 0.95 - 0.05 * (math.log10(lam) - 0.5) ** 2


def write_search(root, n_trials, name="syn"):
    """A search of n_trials; returns {trial_id: (number, params, state, final val, epochs ran)}."""
    import optuna.distributions as od
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    root.mkdir(parents=True, exist_ok=True)
    (root / "space.toml").write_text(SPACE.format(name=name))
    dists = {"rlp.lam": od.FloatDistribution(1e-2, 1e3, log=True), "rlp.heads": od.IntDistribution(1, 3),
             "rlp.hidden": od.CategoricalDistribution([0, 64])}
    study = optuna.create_study(study_name=name, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                storage=JournalStorage(JournalFileBackend(str(root / JOURNAL))))
    truth = {}
    for i in range(n_trials):
        tid = f"tr{i:03d}"
        t = study.ask(dists)
        t.set_user_attr("trial_id", tid)
        stopped = i % 3 == 1
        done = STOP_AT if stopped else EPOCHS
        final = val_of(t.params["rlp.lam"])
        w = ResultWriter(root, name, tid)
        curve = []
        for e in range(1, done + 1):
            # stopped trials look better than any finished one at their stop: the best so far must ignore them
            v = 0.99 if stopped else 0.5 + (final - 0.5) * e / EPOCHS
            curve.append(v)
            t.report(v, e)
            w.write_epoch(e, [{"split": "val", "metric": "acc", "value": v},
                              {"split": "test", "metric": "acc", "value": v - 0.02},
                              {"split": "train", "metric": "acc", "value": 0.99},
                              {"split": "train", "metric": "rand_acc", "layer": "penultimate", "head": -1,
                               "value": 0.1 + 0.6 / (1 + 10 ** (math.log10(t.params["rlp.lam"]) - 1))}])
        flat = Config().to_flat()
        flat.update({"rlp.n": 10, "run.epochs": EPOCHS, "data.val_fraction": 0.15, **t.params})
        w.write_trial(flat, status="RUNNING", epochs_done=done)
        if stopped:
            w.mark_status("STOPPED")
            study.tell(t, state=TrialState.PRUNED)
        else:
            w.write_trial(flat, status="TERMINATED", epochs_done=done)
            study.tell(t, curve[-1])
        w.compact()
        truth[tid] = (i, dict(t.params), "stopped" if stopped else "complete", curve[-1], done)
    return truth


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """9 trials: 6 ran to the end, 3 stopped (importances 'rough'; too few λ for any curve fit)."""
    root = tmp_path_factory.mktemp("search") / "small"
    return root, write_search(root, 9)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """36 trials: 24 ran to the end, spread over both rlp.hidden cells (each with ≥ 5 λ)."""
    root = tmp_path_factory.mktemp("search") / "big"
    return root, write_search(root, 36, name="big")


@pytest.fixture(scope="module")
def small_an(small):
    return analyze(small[0], n_boot=20)


def test_trials_numbers_states_and_values_come_from_the_study_and_the_rows(small, small_an):
    root, truth = small
    s = small_an.search
    assert s.source == JOURNAL and s.source_note == ""
    assert [t.trial_id for t in s.trials] == sorted(truth)              # by Optuna's trial number
    for t in s.trials:
        number, params, state, val, done = truth[t.trial_id]
        assert (t.number, t.state, t.epochs, t.target) == (number, state, done, EPOCHS)
        assert t.value == pytest.approx(val) and t.test_acc == pytest.approx(val - 0.02)
        assert t.params["rlp.lam"] == pytest.approx(params["rlp.lam"])
        assert (t.params["rlp.heads"], t.params["rlp.hidden"]) == (params["rlp.heads"], params["rlp.hidden"])
    complete = sorted((v for v in truth.values() if v[2] == "complete"), key=lambda v: -v[3])
    assert [t.number for t in s.best(3)] == [v[0] for v in complete[:3]]
    # every trial to the end vs what ran: the stopped ones saved EPOCHS - STOP_AT each
    assert (s.epochs_full, s.epochs_run, s.epochs_saved) == (9 * EPOCHS, 6 * EPOCHS + 3 * STOP_AT, 3 * (EPOCHS - STOP_AT))


def test_the_study_is_only_read(small):
    root, _ = small
    before = (root / JOURNAL).read_bytes()
    files = sorted(p.name for p in root.iterdir())
    assert analyze(root, n_boot=5).search.source == JOURNAL
    assert (root / JOURNAL).read_bytes() == before and sorted(p.name for p in root.iterdir()) == files


def test_history_is_the_best_so_far_among_trials_that_ran_to_the_end(small, small_an):
    _, truth = small
    info = history_info(small_an.search)
    p = info.panels[0]
    series = {x.label.split(" (")[0]: x for x in p.series}
    want, best = [], None
    for tid in sorted(truth):
        number, _, state, val, _ = truth[tid]
        if state == "complete":
            best = val if best is None else max(best, val)
        want.append(100 * best if best is not None else None)
    assert series["best so far"].kind == "step"
    assert series["best so far"].y == pytest.approx(want)
    stopped = series["stopped by the scheduler"]
    assert stopped.x == [truth[t][0] for t in sorted(truth) if truth[t][2] == "stopped"]
    # a stopped trial's value (at its stop epoch) never enters the best so far, even when higher
    assert best_so_far(small_an.search)[1][-1] == pytest.approx(max(v[3] for v in truth.values() if v[2] == "complete"))


def test_learning_curves_mark_the_scheduler_stops(small, small_an):
    _, truth = small
    info = curves_info(small_an.search)
    p = info.panels[0]
    stops = next(x for x in p.series if x.label.startswith("stopped by the scheduler"))
    assert stops.x == [STOP_AT] * 3
    lines = [x for x in p.series if x.kind == "line"]
    assert len(lines) == 9 and sorted(len(x.x) for x in lines) == [STOP_AT] * 3 + [EPOCHS] * 6
    assert p.vlines[0].value == EPOCHS
    assert f"saved {3 * (EPOCHS - STOP_AT)}" in info.note


def test_importances_rank_the_parameter_that_matters_and_say_how_far_to_trust_them(big):
    root, truth = big
    s = analyze(root, n_boot=20).search
    imp = s.importances
    assert imp.n_complete == 24 >= ROUGH_BELOW and not imp.trust.startswith("rough")
    assert list(imp.values)[0] == "rlp.lam" and imp.values["rlp.lam"] > 0.5
    assert sum(imp.values.values()) == pytest.approx(1.0)
    bars = importance_info(s).panels[0]
    assert bars.xticklabels == list(imp.values) and bars.series[0].y == pytest.approx(list(imp.values.values()))


def test_few_complete_trials_give_rough_importances(small_an):
    imp = small_an.search.importances
    assert imp.n_complete == 6 and imp.trust.startswith("rough") and imp.values
    assert "rough" in importance_info(small_an.search).note


def test_slices_one_panel_per_searched_key_log_where_searched_on_a_log_scale(small, small_an):
    _, truth = small
    info = slice_info(small_an.search)
    assert [p.title for p in info.panels] == [f"val.acc vs {k}" for k in ("rlp.lam", "rlp.heads", "rlp.hidden")]
    lam = info.panel("rlp.lam")
    assert lam.xscale == "log" and info.panel("rlp.heads").xscale == "linear"
    done = next(x for x in lam.series if x.label == "ran to the end")
    want = sorted((truth[t][1]["rlp.lam"], 100 * truth[t][3]) for t in truth if truth[t][2] == "complete")
    got = sorted(zip(done.x, done.y))
    assert np.allclose(np.array(got), np.array(want))


def test_without_the_journal_history_and_slices_stay_and_one_line_says_why(small, tmp_path):
    root, truth = small
    copy = tmp_path / "copied"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(JOURNAL))
    s = analyze(copy, n_boot=20).search
    assert not (copy / JOURNAL).exists(), "reading must not create the journal"
    assert s.source == "parquet" and "optuna.journal is missing" in s.source_note
    assert s.importances.values == {} and "optuna.journal is missing" in s.importances.reason
    assert importance_info(s) is None
    with_study = analyze(root, n_boot=20).search
    assert [t.trial_id for t in s.trials] == [t.trial_id for t in with_study.trials]   # creation order
    assert history_info(s).panels[0].series[-1].y == history_info(with_study).panels[0].series[-1].y
    assert open_study(copy) == (None, s.source_note)


def test_text_and_json_lead_with_the_search_and_one_line_replaces_empty_fits(small, small_an):
    text = format_analysis(small_an)
    assert text.index("search:") < text.index("findings:")
    b = small_an.search.best(1)[0]
    assert (f"Best trial by val.acc (tpe search, 9 trials): {b.trial_id} (λ = {b.params['rlp.lam']:.3g}, rlp.heads = "
            f"{b.params['rlp.heads']}, rlp.hidden = {b.params['rlp.hidden']}): val.acc {100 * b.value:.1f}%, test "
            f"{100 * b.test_acc:.1f}%, 6 epochs.") in text
    assert f"The scheduler stopped 3 of 9 trials early: 42 of 54 epochs ran, 12 (22%) saved" in text
    assert "Parameter importances for val.acc: rlp.lam " in text and "(rough: from 6 complete trials" in text
    assert text.count("No per-cell curve fits") == 1 and "needs ≥ 5" in text
    doc = json.loads(json.dumps(small_an.to_dict()))
    assert doc["search"]["counts"] == {"complete": 6, "stopped": 3, "failed": 0, "running": 0}
    assert doc["search"]["epochs"]["saved_by_scheduler"] == 3 * (EPOCHS - STOP_AT)
    assert doc["curve_fits"]["shown_cells"] == [] and doc["curve_fits"]["why_none"].startswith("No per-cell")
    assert list(doc["search"]["importances"]["values"])[0] in small_an.search.params


def test_report_first_screen_holds_best_configs_history_and_importances(small, tmp_path):
    index = write_report(small[0], tmp_path / "rep", n_boot=20)
    page = index.read_text()
    first = page[:page.index("<h2>Figures</h2>")]
    assert first.index("<h2>Search</h2>") < first.index("Best 5 trials") < first.index('alt="search_history"') \
        < first.index('alt="search_importance"') < first.index("<h2>Curve fits</h2>")
    assert first.count("not identified") <= 1 and "Factors" not in first
    assert 'alt="lambda"' not in page and 'alt="search_curves"' in page and 'alt="search_slices"' in page


def test_cells_with_enough_lambda_show_their_fits_beside_the_search(big):
    """A search whose choice factor has ≥ 3 trials per value and ≥ 5 λ per cell: cells and search both."""
    a = analyze(big[0], n_boot=20)
    assert a.design.cell_factors == ["rlp.heads", "rlp.hidden"]
    want = [c.key for c in a.cells if len(set(a.trials.set_index("trial_id").lam[c.trial_ids])) >= 5]
    assert want and [c.key for c in a.shown_cells] == want and len(want) < len(a.cells)
    assert a.no_fits_line().startswith(f"{len(a.cells) - len(want)} of {len(a.cells)} design cells hold fewer than 5")
    text = format_analysis(a)
    assert text.index("search:") < text.index(f"[{want[0]}]") and text.count("design cells hold fewer") == 1
    assert "memorization_vs_lambda" in a.shown_cells[0].fits
    from rlp_tune.analysis import figures
    from rlp_tune.analysis.tables import load_tables
    lam = next(i for i in figures.figure_infos(load_tables(big[0]), a) if i.name == "lambda")
    assert len(lam.panels) == 3 * len(want) and all(p.title.endswith(f"\n{k}") for k, p in zip(
        [k for k in want for _ in range(3)], lam.panels))                  # one row per shown cell, its trials
    n_points = sum(len(x.x) for x in lam.panels[0].series if x.kind == "points")
    assert n_points == len(a.shown_cells[0].trial_ids)


def test_draw_returns_a_figure_without_switching_the_backend(small_an):
    import matplotlib
    backend = matplotlib.get_backend()
    for info in (history_info(small_an.search), importance_info(small_an.search), slice_info(small_an.search),
                 curves_info(small_an.search)):
        fig = render.draw(info)
        assert len([ax for ax in fig.axes if ax.get_visible()]) == len(info.panels)
    assert matplotlib.get_backend() == backend
    assert np.isfinite([v for v in history_info(small_an.search).panels[0].series[-1].y if v is not None]).all()


def test_grid_designs_have_no_search(tmp_path):
    root = tmp_path / "grid"
    write_search(root, 3)
    (root / "space.toml").write_text((root / "space.toml").read_text().replace('design = "tpe"', 'design = "grid"'))
    a = analyze(root, n_boot=20)
    assert a.search is None and a.to_dict()["search"] is None and a.shown_cells == a.cells


def test_a_search_in_a_bucket_reads_as_the_folder(small, small_an, s3_endpoint):
    """Results on an object store: the journal is read through a temporary copy (none left behind)."""
    import tempfile
    from pathlib import Path

    from s3server import upload
    uri = s3_endpoint() + "/sweeps/small"
    upload(small[0], uri)
    before = set(Path(tempfile.gettempdir()).glob("rlp_tune_study_*"))
    s = analyze(uri, n_boot=5).search
    assert s.source == JOURNAL and s.to_dict() == small_an.search.to_dict()
    assert set(Path(tempfile.gettempdir()).glob("rlp_tune_study_*")) == before
