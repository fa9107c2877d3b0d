"""The fit contract, checked for every registered fit (rlp_tune.analysis.fits.FITS, `list_fits()`).

    .venv/bin/python -m pytest tests/test_fit_registry.py -q

Every file rlp_tune/analysis/fit_*.py is imported (each registers its kinds), then for every kind, on a
toy case in CASES (a kind registered without one fails, naming itself):
- identified data give the kind's result type, `fitted`, a `to_dict()` that json.dumps takes with
  allow_nan=False, and text lines naming the fit;
- the same inputs and seed give the same document, CIs included; another seed other CIs;
- data that do not identify it give no number: every part that says `fitted: false` carries only a
  reason and what is known without a fit (counts, chance, the λ = 0 baseline), and its text says so.
A fit registered inside a test (the `toy_fit` fixture) is picked up by `fit_lines` and this contract.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rlp_tune.analysis as analysis_pkg
from rlp_tune.analysis.fits import FITS, fit_lines, list_fits, register_fit
from rlp_tune.analysis.identify import NotIdentified

for _p in sorted(Path(analysis_pkg.__file__).parent.glob("fit_*.py")):
    importlib.import_module(f"rlp_tune.analysis.{_p.stem}")

# what a part that is not identified may say: no fitted number (identify.NotIdentified.to_dict)
NOT_FITTED_KEYS = {"fitted", "reason", "n_points", "chance", "factor", "note", "y", "baseline",
                   "restricted_to_lambda_range"}


def lam_grid(reps=3, lo=-2.0, hi=3.0, k=8):
    return np.repeat(10 ** np.linspace(lo, hi, k), reps)


def noise(n, seed=0, sd=0.02):
    return np.random.default_rng(seed).normal(0, sd, n)


def logistic_case(identified):
    lam = lam_grid() if identified else np.repeat([0.1, 1.0, 10.0], 3)
    y = 0.1 + 0.8 / (1 + 10 ** (2 * (np.log10(lam) - 0.5))) + noise(len(lam))
    return (lam, y), {}


def peak_case(identified):
    lam = lam_grid()
    y = (0.7 - 0.05 * (np.log10(lam) - 0.5) ** 2 if identified else np.full(len(lam), 0.6)) + noise(len(lam), sd=0.01)
    return (np.concatenate([[0, 0, 0], lam]), np.concatenate([[0.55, 0.56, 0.54], y])), {}


def memgen_case(identified):
    rand = np.linspace(0.1, 0.9, 24)
    test = 0.8 - 0.3 * rand + noise(24) if identified else np.full(24, 0.5)
    return (rand, test, 0.9 - test), {}


def factor_case(identified):
    x = np.repeat([8, 16, 32, 64, 128] if identified else [8, 16], 3).astype(float)
    return (x, 0.2 + 0.1 * np.log2(x / 8) + noise(len(x))), {"factor": "model.width", "log": True, "find": "max"}


def layer_case(identified):
    rows = [dict(trial_id=f"t{i}", layer=ln, metric="rand_acc", split="train", value=v + 0.01 * i)
            for i in range(6) for ln, v in (("layer1", 0.3), ("penultimate", 0.6))]
    lam = {f"t{i}": [0.0, 0.1, 1.0][i % 3] for i in range(6)}
    frame = pd.DataFrame(rows)
    return (frame if identified else frame[frame.metric == "nothing"], lam), {}


def onset_case(identified):
    on = pd.DataFrame({"trial_id": [f"t{i}" for i in range(8)], "onset": [3, 4, 5, 3, 6, 4, 5, 2],
                       "divergence": [5, 5, 6, 4, 6, 7, 5, 4]})
    ids = [f"t{i}" for i in range(8)] if identified else []
    return (on, ids[:4], ids), {}


# kind → toy case: identified (bool) → (args, kwargs) for its fit
CASES = {"logistic": logistic_case, "peak": peak_case, "memgen": memgen_case, "factor_curve": factor_case,
         "layer_profile": layer_case, "onset": onset_case}


def not_fitted_parts(doc) -> list[dict]:
    """Every dict inside `doc` that says fitted: false."""
    if isinstance(doc, dict):
        own = [doc] if doc.get("fitted") is False else []
        return own + [p for v in doc.values() for p in not_fitted_parts(v)]
    if isinstance(doc, list):
        return [p for v in doc for p in not_fitted_parts(v)]
    return []


def has_ci(doc) -> bool:
    return "ci" in json.dumps(doc)


def check_fit(name: str) -> None:
    kind = FITS.get(name)
    assert name in CASES, f"fit {name!r} has no toy case in tests/test_fit_registry.py CASES"
    args, kw = CASES[name](True)
    r = kind.fit(*args, n_boot=60, seed=0, **kw)
    assert isinstance(r, kind.result) and r.fitted, (name, r)
    doc = r.to_dict()
    json.dumps(doc, allow_nan=False)                                   # JSON-safe as it is
    assert not not_fitted_parts(doc), (name, doc)
    lines = fit_lines(r, name)
    assert lines and all(isinstance(s, str) for s in lines) and lines[0].startswith(name)
    assert kind.fit(*args, n_boot=60, seed=0, **kw).to_dict() == doc   # same seed, same CI
    if has_ci(doc) and name != "layer_profile":
        other = kind.fit(*args, n_boot=60, seed=1, **kw).to_dict()
        assert json.dumps(other.get("ci", other)) != json.dumps(doc.get("ci", doc)), name
    args, kw = CASES[name](False)
    u = kind.fit(*args, n_boot=60, seed=0, **kw)
    udoc = u.to_dict()
    json.dumps(udoc, allow_nan=False)
    parts = not_fitted_parts(udoc)
    assert parts, (name, udoc)
    for p in parts:
        assert set(p) <= NOT_FITTED_KEYS and p["reason"], (name, p)
    assert any("not fitted" in s for s in fit_lines(u, name))


@pytest.mark.parametrize("name", list_fits())
def test_fit_contract(name):
    check_fit(name)


def test_every_fit_file_registers_a_fit():
    files = {p.stem for p in Path(analysis_pkg.__file__).parent.glob("fit_*.py")}
    assert files == {FITS.get(n).fit.__module__.rsplit(".", 1)[1] for n in list_fits()}


def test_not_identified_text_and_unregistered_result():
    assert fit_lines(NotIdentified("too few points"), "x") == ["x: not fitted: too few points"]
    with pytest.raises(TypeError, match="no registered fit returns a dict"):
        fit_lines({}, "x")


# ---- a fit registered in a test is picked up ------------------------------------------------------
@dataclass
class MeanFit:
    mean: float
    ci: list[float]
    n_points: int
    fitted = True

    def to_dict(self) -> dict:
        return {"fitted": True, "params": {"mean": self.mean}, "ci": {"mean": self.ci}, "n_points": self.n_points}


def fit_mean(x, y, *, n_boot=200, seed=0):
    """Mean of y with a seeded bootstrap CI; not identified below 3 points."""
    y = np.asarray(y, float)
    if len(y) < 3:
        return NotIdentified(f"too few points: {len(y)}", n_points=len(y))
    idx = np.random.default_rng(seed).integers(0, len(y), (n_boot, len(y)))
    means = y[idx].mean(1)
    return MeanFit(float(y.mean()), [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))], len(y))


@pytest.fixture
def toy_fit():
    register_fit("toy_mean", fit=fit_mean, result=MeanFit,
                 lines=lambda f, name: [f"{name}: mean {f.mean:.3f} [{f.ci[0]:.3f}, {f.ci[1]:.3f}]"])
    CASES["toy_mean"] = lambda ok: ((None, np.arange(10.0) if ok else [1.0]), {})
    yield "toy_mean"
    FITS.remove("toy_mean")
    del CASES["toy_mean"]


def test_a_fit_registered_in_a_test_is_picked_up(toy_fit):
    assert toy_fit in list_fits()
    check_fit(toy_fit)
    assert fit_lines(fit_mean(None, [1.0, 2.0, 3.0], n_boot=20), "m")[0].startswith("m: mean 2.000 [")
