"""Sweep designs: validation of each design, the grid and adaptive searchers driven directly (no Ray
cluster), and one small Ray end-to-end test: a grid sweep interrupted and resumed runs every cell x
seed exactly once.

    python -m pytest tests/test_designs.py -q            # -m "not ray" skips the end-to-end test
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from rlp_tune.reader import read_trials
from rlp_tune.results import ResultWriter
from rlp_tune.tune.space import SpaceError, load_space
from rlp_tune.tune.space import REPLICATE

ROOT = Path(__file__).resolve().parents[1]
BASE = f'base = "{ROOT}/configs/digits_mlp.toml"\n[fixed]\n"data.val_fraction" = 0.15\n'


def space_file(tmp_path, search: str, sweep: str = "", sched: str = "", name: str = "s") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(BASE + f'"run.epochs" = 2\n"model.width" = 32\n[search]\n{search}\n[sweep]\nname = "{name}"\n{sweep}\n'
                 + (f"[scheduler]\n{sched}\n" if sched else ""))
    return p


GRID = '"rlp.lam" = { dist = "grid", values = [0.1, 1.0, 10.0] }\n"rlp.heads" = { dist = "grid", values = [1, 2] }'
LAM_RANGE = '"rlp.lam" = { dist = "loguniform", low = 1e-2, high = 1e2 }'


# ---- validation, before Ray starts -------------------------------------------------------------------
@pytest.mark.parametrize("search, sweep, sched, key, words", [
    (GRID, 'design = "gridd"', "", "sweep.design", "unknown design"),
    (LAM_RANGE, 'design = "grid"', "", "rlp.lam", "full factorial"),                       # grid with a range
    ('"rlp.lam" = { dist = "choice", values = [1, 2] }', 'design = "grid"', "", "rlp.lam", "full factorial"),
    (GRID, 'design = "grid"\nnum_samples = 4', "", "sweep.num_samples", "every cell"),
    (GRID, 'design = "grid"', 'type = "asha"', "scheduler.type", "full-length"),            # ASHA + curve design
    (LAM_RANGE, 'design = "qmc"', 'type = "asha"', "scheduler.type", "full-length"),
    ('"rlp.lam" = { dist = "grid", values = [1, 1.0] }', 'design = "grid"', "", "rlp.lam", "repeat"),
    ('"rlp.lam" = { dist = "grid", values = [] }', 'design = "grid"', "", "rlp.lam", "non-empty"),
    ('"rlp.lam" = { dist = "grid", values = [1], low = 1 }', 'design = "grid"', "", "rlp.lam", "values"),
    (GRID, 'design = "tpe"', "", "rlp.lam", "needs design 'grid' or 'adaptive'"),           # grid values in tpe
    (GRID, "", "", "rlp.lam", "needs design 'grid' or 'adaptive'"),                          # default = tpe
    (LAM_RANGE + '\n"rlp.hidden" = { dist = "choice", values = [0, 64] }', 'design = "qmc"', "", "rlp.hidden",
     "qmc"),                                                                                  # qmc with choice
    ('"rlp.heads" = { dist = "grid", values = [1, 2] }', 'design = "adaptive"\nnum_samples = 10', "", "rlp.lam",
     "log range"),                                                                            # adaptive without λ
    ('"rlp.lam" = { dist = "uniform", low = 0.1, high = 10 }', 'design = "adaptive"\nnum_samples = 10', "",
     "rlp.lam", "log range"),                                                                 # λ not a log range
    (LAM_RANGE + '\n"rlp.heads" = { dist = "int", low = 1, high = 2 }', 'design = "adaptive"\nnum_samples = 10',
     "", "rlp.heads", "grid"),                                                                # other factor a range
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\ntarget_ci_decades = 0', "", "sweep.target_ci_decades",
     "positive"),
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\ntarget_ci_decades = -1', "", "sweep.target_ci_decades",
     "positive"),
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\ntarget_ci_decades = "x"', "", "sweep.target_ci_decades",
     "number"),
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\ninitial_points = 3', "", "sweep.initial_points", ">= 5"),
    (LAM_RANGE + '\n"rlp.heads" = { dist = "grid", values = [1, 2] }', 'design = "adaptive"\nnum_samples = 8', "",
     "sweep.num_samples", "initial set"),                                                     # budget < 2 x 5
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10', 'type = "asha"', "scheduler.type", "full-length"),
    (LAM_RANGE, 'design = "tpe"\ntarget_ci_decades = 0.5', "", "sweep.target_ci_decades", "only for design"),
    (GRID, 'design = "grid"\nseeds = [0, 0]', "", "sweep.seeds", "repeat"),
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\npeak_metric = "train.acc"', "", "sweep.peak_metric",
     "val.acc"),
    (LAM_RANGE, 'design = "adaptive"\nnum_samples = 10\npeak_metric = "val"', "", "sweep.peak_metric", "val.acc"),
    (LAM_RANGE, 'design = "grid"\npeak_metric = "val.acc"', "", "sweep.peak_metric", "only for design"),
])
def test_invalid_designs_name_the_key(tmp_path, search, sweep, sched, key, words):
    with pytest.raises(SpaceError) as e:
        load_space(space_file(tmp_path, search, sweep, sched))
    msg = str(e.value)
    assert msg.startswith(key + ":") and words in msg and "\n" not in msg, msg


def test_designs_defaults(tmp_path):
    grid = load_space(space_file(tmp_path, GRID, 'design = "grid"\nseeds = [0, 1]', name="g"))
    assert grid.scheduler["type"] == "fifo" and grid.num_samples == 6 and grid.total_trials() == 12
    tpe = load_space(space_file(tmp_path, LAM_RANGE, "num_samples = 3", name="t"))
    assert tpe.design == "tpe" and tpe.scheduler["type"] == "asha" and tpe.total_trials() == 3
    ad = load_space(space_file(tmp_path, LAM_RANGE + '\n"rlp.heads" = { dist = "grid", values = [1, 2] }',
                               'design = "adaptive"\nnum_samples = 12\ntarget_ci_decades = 0.3', name="a"))
    assert (ad.design, ad.n_cells(), ad.target_ci_decades, ad.initial_points) == ("adaptive", 2, 0.3, 5)


@pytest.mark.parametrize("design, sampler", [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                             ("qmc", "QMCSampler")])
def test_optuna_designs_use_their_seeded_sampler(tmp_path, design, sampler):
    from rlp_tune.tune.designs import optuna_sampler
    s = load_space(space_file(tmp_path, LAM_RANGE, f'design = "{design}"\nnum_samples = 4', sched='type = "fifo"'))
    a, b = optuna_sampler(s), optuna_sampler(s)
    assert type(a).__name__ == sampler
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    draws = []
    for smp in (a, b):   # seeded: the same points from two samplers
        st = optuna.create_study(sampler=smp)
        draws.append([st.ask({"x": optuna.distributions.FloatDistribution(0, 1)}).params["x"] for _ in range(4)])
    assert draws[0] == draws[1] and len(set(draws[0])) == 4


@pytest.mark.parametrize("design, inner", [("grid", "GridSearcher"), ("adaptive", "AdaptiveSearcher"),
                                           ("tpe", "StudySearcher"), ("random", "StudySearcher"),
                                           ("qmc", "StudySearcher")])
def test_build_searcher_per_design(tmp_path, design, inner):
    from ray.tune.search import ConcurrencyLimiter, Repeater

    from rlp_tune.tune.designs import build_searcher
    search = {"grid": GRID, "adaptive": LAM_RANGE}.get(design, LAM_RANGE)
    sweep = {"grid": "", "adaptive": "num_samples = 6"}.get(design, "num_samples = 4")
    s = load_space(space_file(tmp_path, search, f'design = "{design}"\n{sweep}\nseeds = [0, 1]',
                              sched='type = "fifo"'))
    alg = build_searcher(s, str(tmp_path / "root"), max_concurrent=3)
    if design in ("grid", "adaptive"):          # finished when the searcher says so, not by Tune's counter
        from rlp_tune.tune.designs import DesignGenerator
        assert isinstance(alg, DesignGenerator)
        alg._counter, alg._total_samples = 99, 1
        assert not alg.is_finished()
        alg._finished = True
        alg.set_state(alg.get_state())         # a restored "finished" is asked again
        assert not alg.is_finished()
        alg = alg.searcher
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 3
    inner_alg = alg.searcher
    if design in ("tpe", "random", "qmc"):      # replicate seeds through Tune's Repeater
        assert isinstance(inner_alg, Repeater) and inner_alg.repeat == 2
        inner_alg = inner_alg.searcher
    else:                                        # the grid / adaptive searcher limits concurrency itself
        assert inner_alg.max_concurrent == 3 and not alg._limit_concurrency
    assert type(inner_alg).__name__ == inner
    if inner == "StudySearcher":                 # the Optuna study of the sweep folder, the design's sampler
        import optuna
        kind = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
                "qmc": optuna.samplers.QMCSampler}[design]
        assert isinstance(inner_alg.study().sampler, kind) and (tmp_path / "root" / "optuna.journal").exists()


# ---- the grid searcher ----------------------------------------------------------------------------
def _grid(tmp_path, seeds="[0, 1]"):
    from rlp_tune.tune.cells import GridSearcher
    s = load_space(space_file(tmp_path, GRID, f'design = "grid"\nseeds = {seeds}', name="g"))
    root = tmp_path / "res" / "g"
    root.mkdir(parents=True, exist_ok=True)
    return s, root, (lambda: GridSearcher(s, str(root), max_concurrent=100))


def _point(cfg):
    return (float(cfg["rlp.lam"]), int(cfg["rlp.heads"]), cfg[REPLICATE])


def test_grid_suggests_every_cell_and_seed_once(tmp_path):
    from ray.tune.search import Searcher
    _, _, make = _grid(tmp_path)
    g = make()
    got = [g.suggest(f"t{i}") for i in range(12)]
    assert len({_point(c) for c in got}) == 12
    assert {_point(c) for c in got} == {(lam, h, r) for lam in (0.1, 1.0, 10.0) for h in (1, 2) for r in (0, 1)}
    assert got[0] == {"rlp.lam": 0.1, "rlp.heads": 1, REPLICATE: 0} and got[1][REPLICATE] == 1   # seeds adjacent
    assert g.suggest("t12") is Searcher.FINISHED


def test_grid_limits_concurrency_itself(tmp_path):
    from rlp_tune.tune.cells import GridSearcher
    s, root, _ = _grid(tmp_path)
    g = GridSearcher(s, str(root), max_concurrent=2)
    a, b = g.suggest("a"), g.suggest("b")
    assert a and b and g.suggest("c") is None          # two running: wait
    g.on_trial_complete("a", {"val.acc": 0.9})
    c = g.suggest("c")
    assert c is not None and len({_point(x) for x in (a, b, c)}) == 3


def _save_state(root, trials):
    """Tune's experiment state as Tune writes it: trial_data = [[json state, json metadata], ...]."""
    data = [[json.dumps({"trial_id": tid, "config": cfg, "status": st}), "{}"] for tid, cfg, st in trials]
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": data}))


def test_grid_rebuilt_from_the_folder_neither_repeats_nor_skips(tmp_path):
    """A driver killed mid-sweep: Tune saved 5 trials (one of them never started, so it has no
    Parquet row), one more trial started after the save (an orphan: it must run again). A searcher
    rebuilt from the pickle of an older save must end up assigning exactly the 7 missing points."""
    import pickle
    s, root, make = _grid(tmp_path)
    g = make()
    cfgs = {f"t{i}": g.suggest(f"t{i}") for i in range(6)}
    old_state = pickle.dumps(g.get_state())       # Tune's searcher pickle from an earlier save: 2 trials
    old = make()
    old.set_state(pickle.loads(old_state))
    old.assigned = {k: v for k, v in old.assigned.items() if k in ("t0", "t1")}
    for tid in ("t0", "t1", "t2", "t3", "t5"):    # t5: the orphan wrote rows, Tune never saved it
        w = ResultWriter(root, "g", tid)
        flat = s.trial_config({k: v for k, v in cfgs[tid].items() if k != REPLICATE}, cfgs[tid][REPLICATE]).to_flat()
        w.write_trial(flat, "TERMINATED" if tid in ("t0", "t1") else "RUNNING", 1)
    saved = [(tid, dict(cfgs[tid]), "TERMINATED" if tid in ("t0", "t1") else "PENDING")
             for tid in ("t0", "t1", "t2", "t3", "t4")]
    _save_state(root, saved)
    import shutil
    shutil.move(str(root / "parquet" / "trials" / "t5.parquet"), tmp_path / "t5.parquet")   # sweep's quarantine
    assert old.remaining() == 7
    assert old.live == {"t2", "t3", "t4"}          # unfinished saved trials hold their slots
    later = [old.suggest(f"n{i}") for i in range(7)]
    before = {_point(cfgs[t]) for t in ("t0", "t1", "t2", "t3", "t4")}
    assert before.isdisjoint({_point(c) for c in later}) and len({_point(c) for c in later}) == 7
    assert _point(cfgs["t5"]) in {_point(c) for c in later}   # the orphan's cell runs again
    assert old.suggest("n7") is not None and old.remaining() == 0


def test_grid_rebuilt_from_parquet_rows_when_state_lacks_a_config(tmp_path):
    """A saved trial whose config Tune's state does not carry is known from its Parquet row."""
    s, root, make = _grid(tmp_path, seeds="[3, 7]")
    first = make().suggest("a")                    # (0.1, 1, seed index 0 = seed 3)
    flat = s.base.replace(**{"rlp.lam": 0.1, "rlp.heads": 1, "run.seed": 3}).to_flat()
    ResultWriter(root, "g", "a").write_trial(flat, "TERMINATED", 2)
    _save_state(root, [("a", {}, "TERMINATED")])
    g = make()
    nxt = g.suggest("b")
    assert _point(first) != _point(nxt) and g.remaining() == 10 and g.live == {"b"}


def test_grid_keeps_its_own_state_when_tunes_state_is_unreadable(tmp_path, capsys):
    _, root, make = _grid(tmp_path)
    g = make()
    first = [g.suggest(f"t{i}") for i in range(3)]
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text("{not json")
    h = make()
    h.set_state(g.get_state())                   # as Tune restores its pickle
    nxt = h.suggest("t3")
    assert _point(nxt) not in {_point(c) for c in first} and h.remaining() == 8
    assert "cannot read Tune's experiment state" in capsys.readouterr().err


# ---- the adaptive searcher ------------------------------------------------------------------------------
def _adaptive(tmp_path, num_samples=40, target=0.3, seeds="[0]", cells="", extra=""):
    from rlp_tune.tune.adaptive import AdaptiveSearcher
    s = load_space(space_file(tmp_path, '"rlp.lam" = { dist = "loguniform", low = 1e-2, high = 1e3 }' + cells,
                              f'design = "adaptive"\nnum_samples = {num_samples}\ntarget_ci_decades = {target}\n'
                              f'seeds = {seeds}\n{extra}', name="a"))
    root = tmp_path / "res" / "a"
    root.mkdir(parents=True, exist_ok=True)
    return s, root, (lambda: AdaptiveSearcher(s, str(root), max_concurrent=1))


def _mem(lam, x50=1.2, noise=0.0, rng=None):
    y = 0.02 + 0.5 / (1 + np.exp(4.0 * (np.log10(lam) - x50)))
    return y + (rng.normal(0, noise) if rng is not None else 0.0)


def _drive(searcher, epochs, rng, noise, limit=200):
    """Run suggest → synthetic result → complete until FINISHED; returns the suggested configs."""
    from ray.tune.search import Searcher
    out = []
    for i in range(limit):
        cfg = searcher.suggest(f"t{i}")
        if cfg is Searcher.FINISHED:
            return out
        assert cfg is not None                        # one at a time: there is always evidence to act on
        out.append(cfg)
        searcher.on_trial_complete(f"t{i}", {"epoch": epochs, "train.rand_acc.penultimate":
                                             _mem(cfg["rlp.lam"], noise=noise, rng=rng)})
    raise AssertionError("did not finish")


def test_adaptive_places_points_at_the_transition_and_stops_at_the_target(tmp_path):
    s, _, make = _adaptive(tmp_path)
    a = make()
    cfgs = _drive(a, s.base.run.epochs, np.random.default_rng(0), noise=0.01)
    x = np.log10([c["rlp.lam"] for c in cfgs])
    init, later = x[:5], x[5:]
    assert np.allclose(init, np.linspace(-2, 3, 5))
    assert len(later) >= 1 and len(cfgs) < 40                  # stopped by the target, not the budget
    # the new points sit near the transition (log10 λ50 = 1.2), where the fit learns most, not at the ends
    assert np.median(np.abs(later - 1.2)) < 1.0
    ci = a.fits[0]["ci"]["log10_lambda50"]
    assert ci[1] - ci[0] <= 0.3 and ci[0] - 0.1 <= 1.2 <= ci[1] + 0.1


def _acc(lam, rng, noise=0.003):
    """A validation accuracy with a peak at log10 λ* = 0.5."""
    return 0.95 - 0.02 * (np.log10(lam) - 0.5) ** 2 + rng.normal(0, noise)


def test_adaptive_with_a_peak_metric_narrows_lambda_star_too(tmp_path):
    from ray.tune.search import Searcher
    s, _, make = _adaptive(tmp_path, num_samples=80, target=0.6, extra='peak_metric = "val.acc"')
    a = make()
    rng = np.random.default_rng(3)
    xs = []
    for i in range(200):
        cfg = a.suggest(f"t{i}")
        if cfg is Searcher.FINISHED:
            break
        lam = cfg["rlp.lam"]
        xs.append(np.log10(lam))
        a.on_trial_complete(f"t{i}", {"epoch": s.base.run.epochs, "train.rand_acc.penultimate": _mem(lam),
                                      "val.acc": _acc(lam, rng)})
    assert 8 <= len(xs) < 80, len(xs)                             # stopped by the targets
    assert a.ci_width(0, "peak") <= 0.6 and a.ci_width(0) <= 0.6
    ci = a.peak_fits[0]["ci"]["log10_lambda_star"]
    assert ci[0] - 0.2 <= 0.5 <= ci[1] + 0.2
    # without the peak target the same data stop earlier: λ* needed points of its own
    (tmp_path / "nopeak").mkdir()
    s2, _, make2 = _adaptive(tmp_path / "nopeak", num_samples=80, target=0.6)
    b = make2()
    n_mem = len(_drive(b, s2.base.run.epochs, np.random.default_rng(3), noise=0.0))
    assert n_mem < len(xs), (n_mem, len(xs))


def test_adaptive_expected_variance_prefers_the_transition():
    """The candidate score: one more point at the steep part lowers var(x50) most; at a flat end
    it adds almost nothing."""
    from rlp_tune.tune.adaptive import expected_x50_variance
    have = np.linspace(-2, 3, 5)
    cand = np.linspace(-2, 3, 51)
    v = expected_x50_variance(have, cand, (0.5, 0.02, 1.2, 4.0), [1.2])
    best = cand[np.argmin(v)]
    assert abs(best - 1.2) < 0.8 and v[0] > v.min() * 1.5 and v[-1] > v.min() * 1.5


def test_adaptive_stops_at_the_budget_and_replicates_each_point(tmp_path):
    from ray.tune.search import Searcher
    s, _, make = _adaptive(tmp_path, num_samples=6, target=0.001, seeds="[0, 1]")
    a = make()
    cfgs = _drive(a, s.base.run.epochs, np.random.default_rng(1), noise=0.02)
    assert len(cfgs) == 12                                     # 6 λ points x 2 seeds, then FINISHED
    lam = [c["rlp.lam"] for c in cfgs]
    assert all(lam[i] == lam[i + 1] and cfgs[i][REPLICATE] == 0 and cfgs[i + 1][REPLICATE] == 1
               for i in range(0, 12, 2))
    assert a.suggest("x") is Searcher.FINISHED


def test_adaptive_rebuilt_from_the_folder(tmp_path):
    """On a resume the evidence comes from the Parquet metrics of the trials Tune saved: a rebuilt
    searcher proposes what the uninterrupted one proposes."""
    s, root, make = _adaptive(tmp_path, cells='\n"rlp.heads" = { dist = "grid", values = [1, 2] }')
    a = make()
    rng = np.random.default_rng(2)
    cfgs = {}
    for i in range(10):                                           # the two cells' initial sets
        tid = f"t{i}"
        cfgs[tid] = a.suggest(tid)
        y = _mem(cfgs[tid]["rlp.lam"], x50=0.5 if cfgs[tid]["rlp.heads"] == 1 else 2.0, noise=0.01, rng=rng)
        a.on_trial_complete(tid, {"epoch": 2, "train.rand_acc.penultimate": y})
        ResultWriter(root, "a", tid).write_epoch(2, [dict(split="train", metric="rand_acc", layer="penultimate",
                                                          value=y)])
    _save_state(root, [(t, c, "TERMINATED") for t, c in cfgs.items()])
    b = make()
    nb = b.suggest("n0")
    assert nb == a.suggest("n0")
    assert set(b.evidence) == set(cfgs) and b.evidence == pytest.approx(a.evidence)


# ---- one Ray end-to-end test ---------------------------------------------------------------------------
@pytest.mark.ray
def test_grid_sweep_killed_and_resumed_runs_each_cell_once(tmp_path, s3_endpoint):
    """A 3 x 2 grid x 2 seeds of 3-epoch trials on digits, its storage an object store (a real S3
    endpoint on 127.0.0.1): the driver is SIGKILLed once two to eight trials have finished;
    `rlp-tune resume`, run from another working folder with a fresh TMPDIR (nothing of the first
    driver's disk), ends with every cell x seed exactly once. (Folders and URIs are one code path,
    storage.py; tests/test_resume.py kills and resumes sweeps on a folder.)"""
    from test_sweep import _kill_marked, start_sweep_driver   # the same driver start and cleanup
    space = space_file(tmp_path, '"rlp.lam" = { dist = "grid", values = [0.1, 1.0, 10.0] }\n'
                                 '"rlp.heads" = { dist = "grid", values = [1, 2] }',
                       'design = "grid"\nseeds = [0, 1]\nmax_concurrent = 2', name="gk")
    space.write_text(space.read_text().replace('"run.epochs" = 2', '"run.epochs" = 3\n"run.batch_size" = 32'))
    storage = s3_endpoint() + "/res"
    root = f"{storage}/gk"
    driver, marker, env, cmd = start_sweep_driver(space, storage)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                tr = read_trials(root)
            except Exception:   # noqa: BLE001 - a file between writes: read again
                tr = None
            done = 0 if tr is None or tr.empty else int((tr.status == "TERMINATED").sum())
            if 2 <= done <= 8:             # mid-sweep: some cells done, others running or not started
                break
            if done > 8:
                pytest.fail("the sweep ran past its middle before the poll saw it")
            time.sleep(0.2)
        else:
            pytest.fail("sweep did not finish two trials in time")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(2)
        _kill_marked(marker)
        elsewhere, fresh = tmp_path / "elsewhere", tempfile.mkdtemp(prefix="rt", dir="/tmp")
        elsewhere.mkdir()
        try:
            r = subprocess.run(cmd + ["resume", root], env={**env, "TMPDIR": fresh}, cwd=elsewhere,
                               capture_output=True, text=True, timeout=400)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        assert r.returncode == 0, "\n".join(r.stderr.splitlines()[-40:])
        trials = read_trials(root)
        cells = sorted(zip(trials["rlp.lam"].astype(float), trials["rlp.heads"].astype(int), trials["seed"].astype(int)))
        assert cells == sorted((lam, h, sd) for lam in (0.1, 1.0, 10.0) for h in (1, 2) for sd in (0, 1))
        assert (trials.status == "TERMINATED").all() and (trials.epochs_done == 3).all()
    finally:
        if driver.poll() is None:
            driver.kill()
        _kill_marked(marker)


# ---- shipped spaces --------------------------------------------------------------------------------------
SHIPPED = sorted((ROOT / "search_spaces").rglob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "search_spaces")))
def test_shipped_spaces_load_as_designed_experiments(path):
    s = load_space(path)
    if path.name == "tune_demo.toml":          # the tuning demo: TPE + ASHA
        assert (s.design, s.scheduler["type"]) == ("tpe", "asha")
        return
    assert s.design == "grid" and s.scheduler["type"] == "fifo" and s.metric.startswith("val.")
    # a designed experiment compares at least two cells (003's benign check: augmentation on vs off)
    assert s.total_trials() == s.n_cells() * len(s.seeds) and s.n_cells() >= 2


def test_shipped_paper_designs_hold_the_papers_values():
    spaces = {p.stem: load_space(p) for p in (ROOT / "search_spaces").glob("*.toml")}
    grid = {name: {d.key: d.values for d in s.search} for name, s in spaces.items()}
    assert spaces["rlp_lambda"].seeds == (0, 1, 2) and 0.0 in grid["rlp_lambda"]["rlp.lam"]
    assert spaces["rlp_lambda"].base.rlp.n == 10000                          # A.1: WRN-16-4, n = 10,000
    assert 10000 in grid["n_labels"]["rlp.n"] and spaces["n_labels"].base.rlp.lam == 0.0
    assert spaces["head_width"].base.rlp.n == 100                            # A.6: n = 100
    assert 10 in grid["multihead"]["rlp.heads"] and 1e4 in grid["multihead"]["rlp.lam"]   # A.8: 10 heads, λ 1e4
    assert spaces["multihead"].base.rlp.n == 100000
    assert spaces["label_noise"].n_cells() == 16                             # 7C: noise × λ, full factorial
    assert set(grid["label_noise"]) == {"data.label_noise", "rlp.lam"}
    assert set(grid["dataset_fraction"]) == {"data.fraction", "rlp.lam"}
    assert grid["label_corruption"]["data.label_noise"] == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    demo = spaces["demo"]                                                   # make demo: λ grid, replicates
    assert demo.base.data.name == "digits" and len(demo.seeds) >= 3 and len(grid["demo"]["rlp.lam"]) >= 8
