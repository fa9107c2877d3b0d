"""Sweep designs (the DESIGNS registry, checked for every registered design and one registered
here): validation of each design; the contract — each point × seed once, a resume (after a stop or
a kill at any moment) neither repeating nor skipping — driven through the searcher and the ledger
without a Ray cluster; extending a finished sweep; the adaptive design's placement; one small Ray
end-to-end test: a grid sweep killed and resumed on an object store runs every cell x seed once.

    python -m pytest tests/test_designs.py -q            # -m "not ray" skips the end-to-end test
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from rlp_tune.reader import read_trials
from rlp_tune.results import ResultWriter
from rlp_tune.tune.designs import DESIGNS, Design, design_names, make_design
from rlp_tune.tune.space import REPLICATE, TRIAL, SpaceError, load_space

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


# ---- every registered design: the contract ----------------------------------------------------------
SPACES = {   # a small space per design; a design registered later runs with the LAM_RANGE one
    "grid": (GRID, 'seeds = [0, 1]'),
    "adaptive": (LAM_RANGE, 'num_samples = 10\nseeds = [0, 1]\ntarget_ci_decades = 0.01'),
    # past TPE's 10 random start-up trials: the replay must restore the model's draws too
    "tpe": (LAM_RANGE + '\n"rlp.heads" = { dist = "int", low = 1, high = 2 }', 'num_samples = 13\nseeds = [0]'),
}


def _space(tmp_path, design, name="c"):
    search, sweep = SPACES.get(design, (LAM_RANGE + '\n"rlp.heads" = { dist = "int", low = 1, high = 2 }',
                                        'num_samples = 5\nseeds = [0, 1]'))
    return load_space(space_file(tmp_path, search, f'design = "{design}"\n{sweep}', sched='type = "fifo"', name=name))


def _mem(lam, x50=1.2, noise=0.0, rng=None):
    y = 0.02 + 0.5 / (1 + np.exp(4.0 * (np.log10(lam) - x50)))
    return y + (rng.normal(0, noise) if rng is not None else 0.0)


def _rows(space, root, cfg):
    """What a trial of `cfg` writes, as a sweep trial writes it: its metric rows per epoch (a
    deterministic function of its config and seed), then its TERMINATED row."""
    tid, rep = cfg[TRIAL], cfg[REPLICATE]
    lam = float(cfg["rlp.lam"])
    w = ResultWriter(root, root.name, tid)
    epochs = space.base.run.epochs
    for e in range(1, epochs + 1):
        w.write_epoch(e, [dict(split="val", metric="acc", value=0.9 - 0.01 * abs(np.log10(lam)) + 0.001 * (e + rep)),
                          dict(split="train", metric="rand_acc", layer="penultimate", value=_mem(lam) + 0.002 * rep)])
    flat = space.trial_config({k: v for k, v in cfg.items() if k not in (REPLICATE, TRIAL)}, rep).to_flat()
    w.write_trial(flat, "TERMINATED", epochs)


def _session(space, root, stop=None, concurrency=1):
    """One driver session, Tune played by this loop: suggest, the trial writes its rows, complete.
    `stop`: (n, how) ends the session at the n-th suggestion: "record" (killed once the trial is in
    the ledger, before it ran), "rows" (killed after its last rows, before the driver saw it end),
    "clean" (stopped before it). Returns the number of suggestions."""
    from ray.tune.search import Searcher

    from rlp_tune.tune.ledger import Ledger
    from rlp_tune.tune.searcher import SweepSearcher, settle
    ledger = Ledger(str(root))
    ledger.read()
    settle(space, ledger, make_design(space, str(root)).evidence_keys())
    search = SweepSearcher(space, ledger, concurrency)
    session = uuid.uuid4().hex[:6]
    for i in range(500):
        if stop and i == stop[0] - 1 and stop[1] == "clean":
            return i
        cfg = search.suggest(f"{session}_{i}")
        if cfg is Searcher.FINISHED:
            return i
        assert cfg is not None          # one at a time: a design always has a point or has finished
        if stop and i == stop[0] - 1 and stop[1] == "record":
            return i + 1
        _rows(space, root, cfg)
        if stop and i == stop[0] - 1 and stop[1] == "rows":
            return i + 1
        search.on_trial_complete(f"{session}_{i}", {"epoch": space.base.run.epochs})
    raise AssertionError("the design did not finish")


def _ran(root):
    """The ledger's trials in order: (searched values, replicate, point), and whether each ended."""
    from rlp_tune.tune.ledger import Ledger
    st = Ledger(str(root)).read()
    return [(tuple(sorted(r.config.items())), r.replicate, r.point) for r in st.trials.values()], \
        all(r.status == "TERMINATED" for r in st.trials.values())


class _Corners(Design):
    """A toy design registered by the fixture below: λ at the range's low end, then its high end."""
    def next(self, state, live):
        lam = next(d for d in self.space.search if d.key == "rlp.lam")
        taken = {float(r.config["rlp.lam"]) for r in state.trials.values()}
        return next(({"rlp.lam": v} for v in (lam.low, lam.high) if v not in taken), "FINISHED")


@pytest.fixture(params=sorted(design_names()) + ["corners"])
def design(request):
    """Every registered design, and one registered here (the registry picks it up: one file + one
    registration is a new design)."""
    if request.param == "corners":
        DESIGNS.register("corners")(_Corners)
        SPACES["corners"] = (LAM_RANGE, 'num_samples = 2\nseeds = [0, 1]')
        yield "corners"
        DESIGNS.remove("corners")
        SPACES.pop("corners")
    else:
        yield request.param


@pytest.mark.parametrize("stop", [(3, "record"), (3, "rows"), (4, "clean"), (11, "record")])
def test_every_design_runs_each_point_and_seed_once_and_resumes_to_the_same_sweep(tmp_path, design, stop):
    """The contract of a design: run uninterrupted, it ends with every point under every seed once;
    stopped or killed at one of three moments and resumed (a new ledger reader, a new searcher),
    it ends with the same trials in the same order, nothing repeated, nothing skipped."""
    space = _space(tmp_path, design)
    ref = tmp_path / "ref" / "c"
    _session(space, ref)
    want, ended = _ran(ref)
    # each point once under each seed (a design may place the same values again: a new point)
    assert ended and len({(p, r) for _, r, p in want}) == len(want) == len({p for *_, p in want}) * len(space.seeds)
    if design == "grid":
        assert len(want) == 12
    cut = tmp_path / "cut" / "c"
    _session(space, cut, stop=stop)
    _session(space, cut)
    assert _ran(cut) == (want, True)
    assert _session(space, cut) == 0          # a finished sweep's resume suggests nothing


def test_the_searcher_limits_concurrency_and_runs_an_unended_trial_again(tmp_path):
    from rlp_tune.tune.ledger import Ledger
    from rlp_tune.tune.searcher import SweepSearcher
    space = _space(tmp_path, "grid")
    ledger = Ledger(str(tmp_path / "r" / "g"))
    search = SweepSearcher(space, ledger, 2)
    a, b = search.suggest("a"), search.suggest("b")
    assert search.suggest("c") is None                       # two running: wait
    assert (a["rlp.lam"], a["rlp.heads"], a[REPLICATE]) == (0.1, 1, 0) and (b[REPLICATE], b["rlp.lam"]) == (1, 0.1)
    search.on_trial_complete("a")                            # cut by an interrupt: no rows, not ended
    assert ledger.state.trials[a[TRIAL]].status is None
    c = search.suggest("c")
    assert c[REPLICATE] == 0 and c["rlp.lam"] == 0.1 and c["rlp.heads"] == 2
    nxt = Ledger(str(tmp_path / "r" / "g"))                 # the next driver session
    nxt.read()
    again = SweepSearcher(space, nxt, 4)
    assert [again.suggest(f"n{i}")[TRIAL] for i in range(3)] == [a[TRIAL], b[TRIAL], c[TRIAL]]


def test_the_searcher_follows_what_ray_can_place_as_nodes_join(tmp_path, monkeypatch):
    """SLURM worker jobs join a running sweep: the searcher asks Ray's placement again (every
    REFRESH_S) and runs more trials at once; a failed check keeps the last count."""
    from rlp_tune.tune import searcher as S
    from rlp_tune.tune.ledger import Ledger
    space = _space(tmp_path, "grid")
    slots = [1]

    def placeable():
        if slots[0] is None:
            raise RuntimeError("a node left mid-check")
        return slots[0]
    search = S.SweepSearcher(space, Ledger(str(tmp_path / "r" / "g")), 1, placeable=placeable)
    monkeypatch.setattr(S, "REFRESH_S", -1.0)
    assert search.suggest("a") is not None and search.suggest("b") is None
    slots[0] = 3                                             # two more nodes joined
    assert search.suggest("b") is not None and search.suggest("c") is not None and search.suggest("d") is None
    slots[0] = None
    assert search.suggest("d") is None and search.max_concurrent == 3


def test_extending_a_finished_grid_runs_only_the_new_cells_and_seeds(tmp_path):
    from rlp_tune.tune.extend import extended
    space = _space(tmp_path, "grid")
    root = tmp_path / "r" / "c"
    _session(space, root)
    before, _ = _ran(root)
    more = load_space(space_file(tmp_path, GRID.replace("10.0]", "10.0, 100.0]"), 'design = "grid"\nseeds = [0, 1, 2]',
                                 sched='type = "fifo"', name="more"))
    new = extended(space, more)
    assert new.name == "c" and 'name = "c"' in new.text and 'name = "more"' not in new.text
    _session(new, root)
    after, ended = _ran(root)
    assert ended and after[:len(before)] == before and len(after) == 4 * 2 * 3
    assert len({(c, r) for c, r, _ in after}) == len(after)


@pytest.mark.parametrize("search, sweep, key", [
    (GRID.replace("[0.1, 1.0, 10.0]", "[1.0, 10.0]"), 'seeds = [0, 1]', "rlp.lam"),          # a value dropped
    (GRID, 'seeds = [1, 0]', "sweep.seeds"),                                                    # seeds reordered
    (GRID, 'seeds = [0, 1]\nmetric = "val.loss"\nmode = "min"', "sweep.metric"),
])
def test_an_extension_that_would_change_what_ran_is_refused_naming_the_key(tmp_path, search, sweep, key):
    from rlp_tune.tune.extend import extended
    space = _space(tmp_path, "grid")
    other = load_space(space_file(tmp_path, search, f'design = "grid"\n{sweep}', sched='type = "fifo"', name="o"))
    with pytest.raises(SpaceError, match=f"^{key}:"):
        extended(space, other)
    epochs = space_file(tmp_path, GRID, 'design = "grid"\nseeds = [0, 1]', sched='type = "fifo"', name="e")
    epochs.write_text(epochs.read_text().replace('"run.epochs" = 2', '"run.epochs" = 3'))
    with pytest.raises(SpaceError, match="^run.epochs:"):
        extended(space, load_space(epochs))


@pytest.mark.parametrize("design, sampler", [("tpe", "TPESampler"), ("random", "RandomSampler"),
                                             ("qmc", "QMCSampler")])
def test_optuna_designs_use_their_seeded_sampler_and_export_the_study(tmp_path, design, sampler):
    import optuna
    space = _space(tmp_path, design)
    root = tmp_path / "r" / "c"
    _session(space, root)
    d = make_design(space, str(root))
    assert type(d.sampler()).__name__ == sampler
    study = optuna.load_study(study_name="c", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "optuna.journal"))))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * space.num_samples
    want, _ = _ran(root)
    assert [tuple(sorted(t.params.items())) for t in study.trials] == [c for c, r, _ in want if r == 0]


# ---- the adaptive design ------------------------------------------------------------------------------
def _adaptive(tmp_path, num_samples=40, target=0.3, seeds="[0]", cells="", extra=""):
    s = load_space(space_file(tmp_path, '"rlp.lam" = { dist = "loguniform", low = 1e-2, high = 1e3 }' + cells,
                              f'design = "adaptive"\nnum_samples = {num_samples}\ntarget_ci_decades = {target}\n'
                              f'seeds = {seeds}\n{extra}', name="a"))
    return s, tmp_path / "res" / "a"


def _drive(space, root, mem, peak=None, limit=200):
    """Run the adaptive design one trial at a time on synthetic evidence until it finishes; returns
    the design (its fits) and the λ of every trial in order."""
    from ray.tune.search import Searcher

    from rlp_tune.tune.ledger import Ledger
    from rlp_tune.tune.searcher import SweepSearcher
    search = SweepSearcher(space, Ledger(str(root)), 1)
    lams = []
    for i in range(limit):
        cfg = search.suggest(f"t{i}")
        if cfg is Searcher.FINISHED:
            return search.design, lams
        lam = cfg["rlp.lam"]
        lams.append(lam)
        w = ResultWriter(root, "a", cfg[TRIAL])
        rows = [dict(split="train", metric="rand_acc", layer="penultimate", value=mem(lam))]
        rows += [dict(split="val", metric="acc", value=peak(lam))] if peak else []
        w.write_epoch(space.base.run.epochs, rows)
        w.write_trial({"rlp.lam": lam}, "TERMINATED", space.base.run.epochs)
        search.on_trial_complete(f"t{i}")
    raise AssertionError("did not finish")


def test_adaptive_places_points_at_the_transition_and_stops_at_the_target(tmp_path):
    s, root = _adaptive(tmp_path)
    rng = np.random.default_rng(0)
    a, lams = _drive(s, root, lambda lam: _mem(lam, noise=0.01, rng=rng))
    x = np.log10(lams)
    init, later = x[:5], x[5:]
    assert np.allclose(init, np.linspace(-2, 3, 5))
    assert len(later) >= 1 and len(lams) < 40                  # stopped by the target, not the budget
    # the new points sit near the transition (log10 λ50 = 1.2), where the fit learns most, not at the ends
    assert np.median(np.abs(later - 1.2)) < 1.0
    ci = a.fits[0]["ci"]["log10_lambda50"]
    assert ci[1] - ci[0] <= 0.3 and ci[0] - 0.1 <= 1.2 <= ci[1] + 0.1


def _acc(lam, rng, noise=0.003):
    """A validation accuracy with a peak at log10 λ* = 0.5."""
    return 0.95 - 0.02 * (np.log10(lam) - 0.5) ** 2 + rng.normal(0, noise)


def test_adaptive_with_a_peak_metric_narrows_lambda_star_too(tmp_path):
    s, root = _adaptive(tmp_path, num_samples=80, target=0.6, extra='peak_metric = "val.acc"')
    rng = np.random.default_rng(3)
    a, lams = _drive(s, root, _mem, peak=lambda lam: _acc(lam, rng))
    assert 8 <= len(lams) < 80, len(lams)                         # stopped by the targets
    assert a.ci_width(0, "peak") <= 0.6 and a.ci_width(0) <= 0.6
    ci = a.peak_fits[0]["ci"]["log10_lambda_star"]
    assert ci[0] - 0.2 <= 0.5 <= ci[1] + 0.2
    # without the peak target the same data stop earlier: λ* needed points of its own
    (tmp_path / "nopeak").mkdir()
    s2, root2 = _adaptive(tmp_path / "nopeak", num_samples=80, target=0.6)
    _, n_mem = _drive(s2, root2, _mem)
    assert len(n_mem) < len(lams), (len(n_mem), len(lams))


def test_adaptive_stops_at_the_budget_and_replicates_each_point(tmp_path):
    s, root = _adaptive(tmp_path, num_samples=6, target=0.001, seeds="[0, 1]")
    rng = np.random.default_rng(1)
    _, lams = _drive(s, root, lambda lam: _mem(lam, noise=0.02, rng=rng))
    assert len(lams) == 12                                     # 6 λ points x 2 seeds, then FINISHED
    assert all(lams[i] == lams[i + 1] for i in range(0, 12, 2))


def test_adaptive_expected_variance_prefers_the_transition():
    """The candidate score: one more point at the steep part lowers var(x50) most; at a flat end
    it adds almost nothing."""
    from rlp_tune.tune.designs.adaptive import expected_x50_variance
    have = np.linspace(-2, 3, 5)
    cand = np.linspace(-2, 3, 51)
    v = expected_x50_variance(have, cand, (0.5, 0.02, 1.2, 4.0), [1.2])
    best = cand[np.argmin(v)]
    assert abs(best - 1.2) < 0.8 and v[0] > v.min() * 1.5 and v[-1] > v.min() * 1.5


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
