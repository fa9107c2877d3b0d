"""Curves over levels: memorization vs a swept factor (n, width, heads, noise, fraction), per-layer
profiles, and the λ levels both are drawn at.

    f = factor_curve(n_values, rand_acc, factor="rlp.n", find="min", log=True)   # FactorCurve
    p = layer_profile(tables.layers, lam_by_trial)                               # LayerProfile
    lev = lambda_levels(lam)          # λ grouped: distinct values, or ≤ 8 quantile bins of log10 λ

Factor curves: the mean per level with a bootstrap CI, Spearman ρ (CI), and for find='min'/'max' the
level of the optimum with the bootstrap distribution of that level (A.3: the n of minimum rand_acc).
Layer profiles (2C / 8A): final value per layer (depth order) for each λ level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import N_KEY, NOISE_KEY
from .bootstrap import boot_mean_ci, ci, finite, rng_for
from .fits import register_fit
from .numtext import num, pct, with_ci
from .identify import NotIdentified
from .numerics import spearman, spearman_rows

# swept config key → short name of its factor curve (fits.rand_acc_vs_<short>)
FACTOR_FITS = {N_KEY: "n", "model.widen": "widen", "model.width": "width", "data.fraction": "fraction",
               NOISE_KEY: "label_noise", "rlp.hidden": "hidden", "rlp.heads": "heads"}
LOG_FACTORS = {N_KEY, "model.widen", "model.width", "rlp.hidden", "rlp.heads"}


def quantile_bins(t, k: int) -> np.ndarray:
    """Bin 0..k-1 of each value of t among t's k quantile bins (ties stay in one bin)."""
    edges = np.quantile(t, np.linspace(0, 1, k + 1))
    return np.clip(np.searchsorted(edges, t, side="right") - 1, 0, k - 1)


def _levels(x, max_levels: int = 20, log: bool = False):
    """Level of each point: distinct values, or quantile bins (median as the level) beyond max_levels."""
    xu = np.unique(x)
    if len(xu) <= max_levels:
        return x.copy()
    b = quantile_bins(np.log10(np.maximum(x, 1e-300)) if log else x, 10)
    lev = np.empty_like(x)
    for k in np.unique(b):
        lev[b == k] = np.median(x[b == k])
    return lev


def lambda_levels(lam, max_levels: int = 8) -> np.ndarray:
    """λ grouped for per-λ summaries: distinct values, or (beyond max_levels) quantile bins of
    log10 λ labelled by their geometric mean; λ = 0 stays its own level."""
    lam = np.asarray(lam, float)
    out = lam.copy()
    pos = lam > 0
    if len(np.unique(lam[pos])) > max_levels:
        x = np.log10(lam[pos])
        b = quantile_bins(x, max_levels - (1 if np.any(lam == 0) else 0))
        lab = np.empty_like(x)
        for j in np.unique(b):
            lab[b == j] = float(f"{10 ** x[b == j].mean():.3g}")
        out[pos] = lab
    return out


def few_levels(lam, k: int) -> np.ndarray:
    """k of the sampled λ values, evenly spaced in rank from the smallest to the largest (all when ≤ k)."""
    lam = np.asarray(lam, float)
    u = np.unique(lam[np.isfinite(lam)])
    return u if len(u) <= k else u[np.unique(np.round(np.linspace(0, len(u) - 1, k)).astype(int))]


def factor_lambda_levels(lam, k: int = 5) -> np.ndarray:
    """The λ level of each trial for per-λ factor curves (NaN = not drawn): on a grid (every λ
    repeated) k of the grid values themselves; λ drawn continuously: k quantile bins."""
    lam = np.asarray(lam, float)
    vals, counts = np.unique(lam[np.isfinite(lam)], return_counts=True)
    if len(vals) and counts.min() >= 2:
        return np.where(np.isin(lam, few_levels(lam, k)), lam, np.nan)
    return lambda_levels(lam, max_levels=k)


def least_regularized(lam) -> tuple[np.ndarray, tuple[float, float] | None]:
    """(mask, (λ lo, λ hi)) of the least-regularized trials: those at the smallest λ when there are
    ≥ 3 of them (a grid with seeds), else the lowest of 4 λ quantile levels (λ drawn continuously,
    e.g. by TPE, puts one trial at each value)."""
    lam = np.asarray(lam, float)
    ok = np.isfinite(lam)
    if not ok.any():
        return np.zeros(len(lam), bool), None
    m = lam == lam[ok].min()
    if m.sum() < 3:
        lev = lambda_levels(lam[ok], max_levels=4)
        m = np.zeros(len(lam), bool)
        m[np.flatnonzero(ok)[lev == lev.min()]] = True
    return m, (float(lam[m].min()), float(lam[m].max()))


def lam_text(r) -> str:
    """'λ = 0.01' or 'λ in [0.01, 0.1]' for a (lo, hi) λ range."""
    return f"λ = {r[0]:.3g}" if r[0] == r[1] else f"λ in [{r[0]:.3g}, {r[1]:.3g}]"


@dataclass
class FactorCurve:
    factor: str
    levels: list[float]
    mean: list[float]
    mean_ci: list[list[float] | None]
    count: list[int]
    n_points: int
    n_boot: int
    rho: float
    rho_ci: list[float] | None
    chance: list[float] | None = None
    find: str | None = None              # "min" | "max": the optimum's level was located
    at_level: float | None = None
    at_value: float | None = None
    at_ci: list[float] | None = None
    interior: bool | None = None
    lam_range: tuple[float, float] | None = None   # the λ (range) of the trials it was made on
    y: str = "rand_acc"

    fitted = True

    @property
    def short(self) -> str:
        return FACTOR_FITS.get(self.factor, self.factor)

    def to_dict(self) -> dict:
        out = {"fitted": True, "factor": self.factor, "levels": self.levels, "rand_acc_mean": self.mean,
               "rand_acc_ci": self.mean_ci, "count": self.count, "n_points": self.n_points,
               "params": {"spearman_rho": self.rho}, "ci": {"spearman_rho": self.rho_ci}, "n_boot": self.n_boot,
               "y": self.y}
        if self.chance is not None:
            out["chance"] = self.chance
        if self.find:
            key = f"{self.short}_at_{self.find}"
            out["params"][key] = self.at_level
            out["params"][f"rand_acc_at_{self.find}"] = self.at_value
            out["ci"][key] = self.at_ci
            out["interior"] = self.interior
        if self.lam_range is not None:
            out["restricted_to_lambda_range"] = list(self.lam_range)
        return out


def factor_curve(x, y, *, factor: str, n_boot: int = 200, seed: int = 0, chance=None,
                 find: str | None = None, log: bool = False, y_name: str = "rand_acc",
                 name: str | None = None) -> FactorCurve | NotIdentified:
    """Mean y per level of a swept factor with bootstrap CIs, Spearman ρ (CI), and the level of the
    minimum (find='min') or maximum ('max') with the bootstrap distribution of that level.
    chance: a function of the levels giving chance (drawn beside rand_acc)."""
    x, y = finite(x, y)
    rng = rng_for(name or f"factor:{factor}", seed)
    if len(x) < 3:
        return NotIdentified(f"too few points: {len(x)} trials with {factor} and {y_name}", factor=factor)
    lev = _levels(x, log=log)
    levels = np.unique(lev)
    if len(levels) < 3:
        return NotIdentified(f"too few levels: {factor} takes {len(levels)} value(s) (need ≥ 3)", factor=factor)
    means = np.array([y[lev == v].mean() for v in levels])
    rho = spearman(lev, y) if np.ptp(y) > 0 else float("nan")
    idx_all = rng.integers(0, len(x), size=(n_boot, len(x)))
    out = FactorCurve(factor=factor, levels=levels.tolist(), mean=means.tolist(),
                      mean_ci=[boot_mean_ci(y[lev == v], rng, n_boot) for v in levels],
                      count=[int((lev == v).sum()) for v in levels], n_points=int(len(x)), n_boot=n_boot,
                      rho=rho, rho_ci=ci(spearman_rows(lev[idx_all], y[idx_all]) if n_boot else []), y=y_name,
                      chance=[float(c) for c in chance(levels)] if chance is not None else None)
    if find:
        # level means per resample: (R, L) from per-level sums; a level absent from a resample is skipped
        onehot = (lev[idx_all][:, :, None] == levels[None, None, :])          # (R, N, L)
        cnt = onehot.sum(1)
        sums = (onehot * y[idx_all][:, :, None]).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.inf if find == "min" else -np.inf)
        boots = levels[np.argmin(mb, 1) if find == "min" else np.argmax(mb, 1)].tolist()
        i = int(np.argmin(means) if find == "min" else np.argmax(means))
        out.find, out.at_level, out.at_value = find, float(levels[i]), float(means[i])
        out.at_ci, out.interior = ci(boots), bool(0 < i < len(levels) - 1)
    return out


@dataclass
class LayerRow:
    lam: float
    mean: list[float | None]
    ci: list[list[float] | None]
    count: list[int]
    argmax_layer: str | None

    def to_dict(self) -> dict:
        return {"lam": self.lam, "mean": self.mean, "ci": self.ci, "count": self.count,
                "argmax_layer": self.argmax_layer}


@dataclass
class LayerProfile:
    metric: str                  # "<split>.<metric>"
    layers: list[str]
    by_lambda: list[LayerRow]

    fitted = True

    def to_dict(self) -> dict:
        return {"fitted": True, "metric": self.metric, "layers": self.layers,
                "by_lambda": [r.to_dict() for r in self.by_lambda]}


def layer_profile(layers, lam_by_trial: dict, *, metric: str = "rand_acc", split: str = "train",
                  n_boot: int = 200, seed: int = 0, order=sorted) -> LayerProfile | NotIdentified:
    """Final `metric` per layer (in `order`, e.g. tables.layer_order) for each λ level: means, CIs,
    counts, argmax layer. `layers` is Tables.layers."""
    sel = layers[(layers.metric == metric) & (layers.split == split)]
    if sel.empty:
        return NotIdentified(f"no per-layer {split} {metric} recorded")
    names = order(sel.layer.unique())
    lam = sel.trial_id.astype(str).map(lam_by_trial).astype(float).to_numpy()
    ok = np.isfinite(lam)
    sel, lam = sel[ok], lam[ok]
    if sel.empty:
        return NotIdentified("no trial with per-layer values has rlp.lam")
    lev = lambda_levels(lam)
    rng = rng_for(f"layers:{split}.{metric}", seed)
    rows = []
    for lv in np.unique(lev):
        s = sel[lev == lv]
        means, cis, counts = [], [], []
        for ln in names:
            v = s.value[s.layer == ln].to_numpy(float)
            v = v[np.isfinite(v)]
            means.append(float(v.mean()) if len(v) else None)
            cis.append(boot_mean_ci(v, rng, n_boot))
            counts.append(int(len(v)))
        finite_ = [(m, ln) for m, ln in zip(means, names) if m is not None]
        rows.append(LayerRow(float(lv), means, cis, counts, max(finite_)[1] if finite_ else None))
    return LayerProfile(metric=f"{split}.{metric}", layers=list(names), by_lambda=rows)


# ---- text and registration ------------------------------------------------------------------
def factor_curve_lines(fit: FactorCurve, name: str) -> list[str]:
    lv = ", ".join(f"{num(a)}: {pct(b)}" for a, b in zip(fit.levels, fit.mean))
    extra = ""
    if fit.find:
        extra = (f"; {fit.find} at {fit.short} = {with_ci(fit.at_level, fit.at_ci)}"
                 f"{'' if fit.interior else ' (at the edge)'}, {fit.y} there {pct(fit.at_value)}")
    tail = f"; least-regularized trials: {lam_text(fit.lam_range)}" if fit.lam_range else ""
    return [f"{name} ({fit.factor}): ρ = {with_ci(fit.rho, fit.rho_ci)}{extra}{tail}", f"  {lv}"]


def layer_profile_lines(fit: LayerProfile, name: str) -> list[str]:
    lines = [f"{name} ({fit.metric}), layers {', '.join(fit.layers)}:"]
    for r in fit.by_lambda:
        lines.append(f"  λ = {num(r.lam)}: " + " ".join(pct(m) for m in r.mean) + f"  (max at {r.argmax_layer})")
    return lines


register_fit("factor_curve", fit=factor_curve, result=FactorCurve, lines=factor_curve_lines)
register_fit("layer_profile", fit=layer_profile, result=LayerProfile, lines=layer_profile_lines)
