"""design = "adaptive": λ placed, inside each cell of the grid factors, where it narrows the CI of λ50.

    [search]
    "rlp.lam"   = { dist = "loguniform", low = 1e-2, high = 1e3 }    # placed by the searcher
    "rlp.heads" = { dist = "grid", values = [1, 4] }                  # cells (optional)
    [sweep]
    design = "adaptive"; num_samples = 24; seeds = [0, 1]; target_ci_decades = 0.5; initial_points = 5
    peak_metric = "val.acc"                                           # optional: λ* too

A λ point is (cell, λ) run under every seed (paired replicates, as in the other designs);
`num_samples` is the budget of λ points over all cells. Each cell first gets `initial_points`
log-spaced λ over the range. After that, each new point goes to the cell whose 95% CI of log10 λ50
is widest, at the λ where one more observation most lowers the expected variance of log10 λ50:
the linearized (Gauss-Newton) variance [(JᵀJ + j(x) j(x)ᵀ)⁻¹] of the 4-parameter logistic, with J
over the cell's observed and pending λ, averaged over λ50 values within one standard error of the
estimate (so an uncertain transition spreads the points). A cell whose fit is not identified yet
gets the midpoint of its widest gap in log λ. A cell stops once it has MIN_POINTS_TO_STOP results
and the CI — the analysis' own bootstrap fit, `fit_logistic` — is at most `target_ci_decades` wide;
the sweep ends when every cell has stopped or the budget is spent.

With `peak_metric = "val.acc"` (or "test.acc") a cell also needs the CI of log10 λ*, that
accuracy's peak over λ (the analysis' spline fit, `fit_peak`), within the target; while λ*'s CI is
the wider one, the cell's next λ is the middle of the widest gap between its λ inside that CI.

Evidence is each finished trial's final-epoch memorization at the primary tap (penultimate, else
the last tap with heads) — the analysis' metric: rand_acc_eval where reported, else rand_acc — and
the peak metric, as the ledger keeps them with each trial's end (tune/ledger.py): a resume rebuilds
the points and the evidence from the ledger alone.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .grid import cell_key
from .base import DESIGNS, FINISHED, Design
from ..ledger import LedgerState, TrialRecord
from ..space import ADAPTIVE_KEY

N_CANDIDATES = 61      # log-spaced candidate λ per cell
N_SPREAD = 5           # λ50 values across the CI the expected variance is averaged over
# a bootstrap of fewer points than twice the 4 parameters resamples too few distinct λ: its CI can be
# narrow by chance (seen in bench/design.py), so a cell needs this many results before it may stop
MIN_POINTS_TO_STOP = 8


def _analysis():
    """The analysis modules the searcher uses — its λ fits and the name of the memorization metric —
    the one import of rlp_tune.analysis in the tune package: repoint it here when they move."""
    from ...analysis import fit_lambda, tables
    return fit_lambda, tables


def fit_memorization(lam, y, seed: int = 0) -> dict:
    """The analysis' 4-parameter logistic of rand_acc vs log10 λ with its bootstrap CI, as its JSON dict
    ({"fitted": False, "reason": ...} when not identified)."""
    return _analysis()[0].fit_logistic(lam, y, n_boot=200, seed=seed, name="adaptive").to_dict()


def fit_accuracy_peak(lam, y, seed: int = 0) -> dict:
    """The analysis' spline fit of an accuracy's peak over λ with its bootstrap CI, as its JSON dict."""
    return _analysis()[0].fit_peak(lam, y, n_boot=200, seed=seed, name="adaptive_peak").to_dict()


def logistic_jacobian(x, high, low, x50, slope) -> np.ndarray:
    """(N, 4) derivatives of low + (high − low)/(1 + exp(slope (x − x50))) by (high, low, x50, slope)."""
    x = np.asarray(x, float)
    e = 1.0 / (1.0 + np.exp(np.clip(slope * (x - x50), -500, 500)))
    q = (high - low) * e * (1 - e)
    return np.stack([e, 1 - e, slope * q, -q * (x - x50)], axis=1)


def expected_x50_variance(x_have, cand, params, x50s) -> np.ndarray:
    """(C,) mean over x50s of the linearized variance of x50 (unit noise) after adding one
    observation at each candidate x."""
    high, low, _, slope = params
    out = np.zeros(len(cand))
    for x50 in x50s:
        J = logistic_jacobian(x_have, high, low, x50, max(slope, 1e-3))
        A = J.T @ J + 1e-9 * np.eye(4)
        jc = logistic_jacobian(cand, high, low, x50, max(slope, 1e-3))          # (C, 4)
        M = A[None] + jc[:, :, None] * jc[:, None, :]                            # (C, 4, 4)
        out += np.linalg.inv(M)[:, 2, 2]
    return out / len(x50s)


def widest_gap(x_have, lo: float, hi: float) -> float:
    xs = np.unique(np.concatenate([[lo, hi], np.asarray(x_have, float)]))
    i = int(np.argmax(np.diff(xs)))
    return float(0.5 * (xs[i] + xs[i + 1]))


@DESIGNS.register("adaptive")
class AdaptiveDesign(Design):
    def __init__(self, space, root: str):
        super().__init__(space, root)
        self.grid_keys = [d.key for d in space.grid_dists()]
        self.cells = [cell_key(dict(zip(self.grid_keys, c)), self.grid_keys)
                      for c in itertools.product(*(d.values for d in space.grid_dists()))]
        self.cell_values = list(itertools.product(*(d.values for d in space.grid_dists())))
        lam = next(d for d in space.search if d.key == ADAPTIVE_KEY)
        self.lo, self.hi = math.log10(lam.low), math.log10(lam.high)
        layers = list(space.base.rlp.layers)
        self.tap = "penultimate" if "penultimate" in layers or not layers else layers[-1]
        # the evidence, in order of preference: memorization is the analysis' metric (rand_acc_eval
        # where the trainer reports it, else the online rand_acc)
        self.sources = {"mem": [f"train.{m}.{self.tap}" for m in _analysis()[1].MEMORIZATION_METRICS]}
        if space.peak_metric:
            self.sources["peak"] = [space.peak_metric]
        self.epochs = space.base.run.epochs
        self.initial = [float(v) for v in np.logspace(self.lo, self.hi, space.initial_points)]
        self.state, self.live = LedgerState(), set()
        self.done_cells: set[int] = set()
        self.fits: dict[int, dict] = {}          # cell -> the latest λ50 fit (for reports / tests)
        self.peak_fits: dict[int, dict] = {}     # cell -> the latest λ* fit

    def evidence_keys(self) -> list[str]:
        return [k for keys in self.sources.values() for k in keys]

    def replay(self, state: LedgerState) -> None:
        self.state, self.done_cells = state, set()
        for c in range(len(self.cells)):
            self._update_cell(c)

    def ended(self, state: LedgerState, rec: TrialRecord) -> None:
        self.state = state
        self._update_cell(self.cell_of(rec.config))

    def evidence(self, rec: TrialRecord, kind: str) -> float | None:
        """The trial's final-epoch value of `kind` ("mem" or "peak"), if it ran to the end."""
        if not rec.done or rec.epoch != self.epochs:
            return None
        return next((rec.values[k] for k in self.sources.get(kind, []) if k in rec.values), None)

    def cell_of(self, cfg: dict) -> int:
        return self.cells.index(cell_key(cfg, self.grid_keys))

    def cell_data(self, c: int, kind: str = "mem") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log10 λ with evidence, their values, log10 λ still running) of cell c; kind "mem"
        (rand_acc) or "peak" (the peak metric)."""
        xs, ys, xp = [], [], []
        for tid, rec in self.state.trials.items():
            if self.cell_of(rec.config) != c:
                continue
            x = math.log10(float(rec.config[ADAPTIVE_KEY]))
            y = self.evidence(rec, kind)
            if y is not None:
                xs.append(x)
                ys.append(y)
            elif tid in self.live:
                xp.append(x)
        return np.array(xs), np.array(ys), np.array(xp)

    def ci_width(self, c: int, kind: str = "mem") -> float:
        """Width in decades of the 95% CI of log10 λ50 (kind "mem") or log10 λ* ("peak"); inf when
        not identified."""
        fit = (self.fits if kind == "mem" else self.peak_fits).get(c) or {}
        key = "log10_lambda50" if kind == "mem" else "log10_lambda_star"
        ci = (fit.get("ci") or {}).get(key) if fit.get("fitted") else None
        return float(ci[1] - ci[0]) if ci else math.inf

    def widest(self, c: int) -> tuple[float, str]:
        """The widest CI of cell c over the quantities it targets, and which one."""
        return max((self.ci_width(c, kind), kind) for kind in self.sources)

    def _update_cell(self, c: int) -> None:
        xs, ys, _ = self.cell_data(c)
        if len(np.unique(np.round(xs, 9))) < 5:
            return
        self.fits[c] = fit_memorization(10 ** xs, ys)
        if "peak" in self.sources:
            xq, yq, _ = self.cell_data(c, "peak")
            self.peak_fits[c] = fit_accuracy_peak(10 ** xq, yq)
        if len(xs) >= MIN_POINTS_TO_STOP and self.widest(c)[0] <= self.space.target_ci_decades:
            self.done_cells.add(c)

    # -- placing points --
    def _config(self, c: int, lam: float) -> dict:
        return dict(zip(self.grid_keys, self.cell_values[c])) | {ADAPTIVE_KEY: lam}

    def next(self, state: LedgerState, live: set[str]):
        self.state, self.live = state, live
        placed = {(self.cell_of(r.config), round(math.log10(float(r.config[ADAPTIVE_KEY])), 9))
                  for r in state.trials.values()}
        for c in range(len(self.cells)):              # the initial set first, cell by cell
            for lam in self.initial:
                if (c, round(math.log10(lam), 9)) not in placed:
                    return self._config(c, lam)
        if len({r.point for r in state.trials.values()}) >= self.space.num_samples \
                or len(self.done_cells) == len(self.cells):
            return FINISHED
        # cells whose initial set has finished and that have not reached the target, widest CI first
        ready = [c for c in range(len(self.cells)) if c not in self.done_cells and not self._initial_running(c)]
        if not ready:
            return None                            # wait for evidence
        c = max(ready, key=lambda c: (self.widest(c)[0], -len(self.cell_data(c)[0])))
        return self._config(c, float(10 ** self.propose(c)))

    def _initial_running(self, c: int) -> bool:
        init = {round(math.log10(v), 9) for v in self.initial}
        return any(tid in self.live and self.cell_of(r.config) == c
                   and round(math.log10(float(r.config[ADAPTIVE_KEY])), 9) in init
                   for tid, r in self.state.trials.items())

    def propose(self, c: int) -> float:
        """log10 λ of the next point of cell c: for λ50 by the expected variance; for λ* (when its
        CI is the wider one) the middle of the widest gap between the cell's λ inside that CI."""
        xs, ys, xp = self.cell_data(c)
        fit = self.fits.get(c)
        taken = np.concatenate([xs, xp])
        if self.widest(c)[1] == "peak":
            peak = self.peak_fits.get(c) or {}
            ci = (peak.get("ci") or {}).get("log10_lambda_star") if peak.get("fitted") else None
            if not ci:
                return widest_gap(taken, self.lo, self.hi)
            return widest_gap(taken[(taken > ci[0]) & (taken < ci[1])], ci[0], ci[1])
        if not fit or not fit.get("fitted"):
            return widest_gap(taken, self.lo, self.hi)
        p = fit["params"]
        ci = fit["ci"]["log10_lambda50"] or [p["log10_lambda50"]] * 2
        # plausible transitions: the estimate ± one standard error (the 95% CI is ±1.96 of them)
        x50s = p["log10_lambda50"] + (ci[1] - ci[0]) / 3.92 * np.linspace(-1, 1, N_SPREAD)
        cand = np.linspace(self.lo, self.hi, N_CANDIDATES)
        score = expected_x50_variance(taken, cand, (p["rand_acc_high"], p["rand_acc_low"], p["log10_lambda50"],
                                                    p["slope"]), x50s)
        return float(cand[int(np.argmin(score))])
