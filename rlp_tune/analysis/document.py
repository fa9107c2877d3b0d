"""The analysis document: every fit of a results folder, per design cell, as one typed object.

    a = analyze("runs/sweep1")          # Analysis
    a.cells[0].fits["memorization_vs_lambda"].lambda50
    json.dumps(a.to_dict())             # `rlp-tune analyze ROOT --json` (docs/analysis.md)

What is fitted (accuracies are fractions, x = log10 λ; the fits: fit_lambda.py, fit_memgen.py,
fit_factors.py, fit_onset.py; identification rules: identify.py):
- pooled over the complete trials (`fits`): memorization_vs_lambda (logistic), generalization_vs_lambda
  and gap_vs_lambda (spline optima), memorization_vs_generalization, rand_acc_vs_<factor> on the
  least-regularized trials, layer_profile, onset; with rlp.n varying also
  memorization_vs_lambda_normalized, the fit of (rand_acc − 1/n)/(1 − 1/n), which is then primary;
- per design cell (`cells`, design.py): the same λ fits and memorization_vs_generalization for each
  combination of the other swept factors;
- `factor_curves`: memorization vs every swept factor (n, width, heads, noise, fraction, ...) at
  each λ level; `per_layer`: the logistic at every tap; `groups`: the λ fits per level of each
  cell factor; `evasion` (evasion.py);
- for a tuning search (tpe / random / qmc), `search` (search.py: best trials, history, importances)
  and `shown_cells`, the cells with enough λ to fit a curve (all cells of other designs).
Trials that did not reach their run.epochs (or --at-epoch E) are left out of every curve fit;
`curve_trials` and `notes` say how many and why. The same quantity on the same trials is fitted
once and reused (one CI per quantity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import storage
from ..config import LAM_KEY, N_KEY
from .design import Design, read_design
from .evasion import Evasion, check_evasion
from .fit_factors import (FACTOR_FITS, LOG_FACTORS, factor_curve, factor_lambda_levels, lam_text,
                          layer_profile, least_regularized)
from .findings import cell_findings
from .fit_lambda import fit_logistic, fit_peak
from .fit_memgen import fit_mem_gen
from .regime import Check, cell_checks, with_noise
from .fit_onset import DELTA_GAP, DELTA_RAND, fit_onset, onset_epochs
from .identify import MIN_DISTINCT_LAMBDA
from .search import SEARCH_DESIGNS, SearchSummary, read_search
from .tables import Tables, layer_order, load_tables, per_trial, varying_columns

SCHEMA = "rlp_tune.analysis/2"
LAMBDA_FITS = ("memorization_vs_lambda", "memorization_vs_lambda_normalized", "generalization_vs_lambda",
               "gap_vs_lambda")


def lam_fits(d, n_boot: int, seed: int, tag: str = "", metric: str | None = None) -> dict[str, Any]:
    """The λ fits of one set of trials (d: per_trial rows): memorization (and, when chance varies, its
    chance-normalized form), test accuracy and gap optima."""
    chance = d.chance.dropna().unique()
    ch = float(chance[0]) if len(chance) == 1 else None
    fits = {"memorization_vs_lambda": fit_logistic(d.lam, d.rand_acc, n_boot=n_boot, seed=seed, chance=ch,
                                                   name=f"mem{tag}"),
            "generalization_vs_lambda": fit_peak(d.lam, d.test_acc, n_boot=n_boot, seed=seed, name=f"gen{tag}"),
            "gap_vs_lambda": fit_peak(d.lam, d.gap, mode="min", n_boot=n_boot, seed=seed, name=f"gap{tag}",
                                      prefix="gap", lam_key="gap_lambda_star")}
    if fits["memorization_vs_lambda"].fitted:
        fits["memorization_vs_lambda"].metric = metric
    if len(chance) > 1:
        # rlp.n varies: raw rand_acc mixes chance levels (1/8 vs 1/256 is not the same memorization);
        # fit it also as the fraction of the way from chance to perfect recall — the primary quantity
        lo, hi = float(chance.min()), float(chance.max())
        fits["memorization_vs_lambda"].note = (
            f"chance varies across trials ({100 * lo:.1f}% to {100 * hi:.1f}%, rlp.n swept): raw rand_acc mixes "
            "chance levels; memorization_vs_lambda_normalized fits (rand_acc − chance) / (1 − chance)")
        norm = (d.rand_acc - d.chance) / (1.0 - d.chance)
        f = fit_logistic(d.lam, norm, n_boot=n_boot, seed=seed, chance=0.0, name=f"memnorm{tag}",
                         y_name="normalized rand_acc")
        f.y = "(rand_acc − 1/n) / (1 − 1/n)"
        fits["memorization_vs_lambda_normalized"] = f
    g, gen = fits["gap_vs_lambda"], fits["generalization_vs_lambda"]
    if g.fitted and gen.fitted:
        at = g.evaluate(gen.log10_lam_star)
        g.extra.update(gap_at_test_lambda_star=at, gap_change_at_test_lambda_star=at - g.baseline_value)
    return fits


@dataclass
class Cell:
    """One design cell: a combination of the swept factors other than λ, and its fits."""
    key: str                                 # "data.label_noise=0.2, model.width=64"; "all trials"
    factors: dict[str, str]
    trial_ids: list[str]
    fits: dict[str, Any]
    n_lambda: int = 0                        # distinct λ > 0 among its trials (a λ fit needs MIN_DISTINCT_LAMBDA)
    regime: list[Check] = field(default_factory=list)     # regime.cell_checks: preconditions measured

    def to_dict(self) -> dict:
        return {"key": self.key, "factors": self.factors, "n_trials": len(self.trial_ids), "n_lambda": self.n_lambda,
                "findings": [{"topic": f.topic, "text": f.text, "identified": f.identified}
                             for f in cell_findings(self)],
                "regime": [c.to_dict() for c in self.regime],
                "fits": {k: v.to_dict() for k, v in self.fits.items()}}


@dataclass
class FactorCurves:
    """Memorization vs one factor at each λ level (None: λ not swept)."""
    factor: str
    by_lambda: list[tuple[float | None, Any]]

    def to_dict(self) -> dict:
        return {"factor": self.factor, "by_lambda": [{"lam": lv, "fit": f.to_dict()} for lv, f in self.by_lambda]}


@dataclass
class Analysis:
    root: str
    sweeps: list[str]
    n_trials: int
    n_trials_with_metrics: int
    status: dict[str, int]
    primary_layer: str | None
    memorization_metric: str
    design: Design
    varying: dict[str, dict]
    chance: float | None
    notes: list[str]
    curve_trials: dict[str, Any]
    fits: dict[str, Any]
    cells: list[Cell]
    groups: dict[str, dict]
    per_layer: dict[str, Any]
    factor_curves: list[FactorCurves]
    evasion: Evasion
    best_trials: dict[str, Any]
    onset_per_trial: dict[str, list]
    settings: dict[str, Any]
    final_epoch: dict[str, int] | None = None
    search: SearchSummary | None = None      # designs tpe / random / qmc: the search (search.py)
    trials: Any = field(default=None, repr=False)   # the per_trial frame (not in the JSON)

    @property
    def shown_cells(self) -> list[Cell]:
        """The cells whose findings lead: all of them, except in a search (tpe / random / qmc), where
        only cells with enough distinct λ to fit a curve are (`no_fits_line` says why when none is)."""
        if self.design.kind not in SEARCH_DESIGNS:
            return self.cells
        return [c for c in self.cells if self.design.lam_swept and c.n_lambda >= MIN_DISTINCT_LAMBDA]

    def no_fits_line(self) -> str:
        """One line on why a search shows no curve fits for (some of) its cells ("" when it shows all, or is
        no search)."""
        shown = self.shown_cells
        if self.design.kind not in SEARCH_DESIGNS or len(shown) == len(self.cells):
            return ""
        if shown:
            return (f"{len(self.cells) - len(shown)} of {len(self.cells)} design cells hold fewer than "
                    f"{MIN_DISTINCT_LAMBDA} distinct λ > 0 among their trials that ran to the end: no curve fits "
                    "for them here (the fits, not identified, are in the appendix).")
        if not self.design.lam_swept:
            return "No curve fits against λ: this search does not search rlp.lam (every fit is in the appendix)."
        most = max(c.n_lambda for c in self.cells)
        where = (f"the {len(self.cells[0].trial_ids)} trials that ran to the end hold {most} distinct λ > 0"
                 if len(self.cells) == 1 else
                 f"none of the {len(self.cells)} design cells ({', '.join(self.design.cell_factors)}) holds more "
                 f"than {most} distinct λ > 0 among its trials that ran to the end")
        return (f"No per-cell curve fits: {where}, and a λ fit needs ≥ {MIN_DISTINCT_LAMBDA} in a cell; a search "
                "samples configs, it does not trace curves (the fits, not identified, are in the appendix).")

    def to_dict(self) -> dict:
        doc = {"schema": SCHEMA, "root": self.root, "sweeps": self.sweeps, "n_trials": self.n_trials,
               "n_trials_with_metrics": self.n_trials_with_metrics, "status": self.status,
               "search": self.search.to_dict() if self.search is not None else None,
               "curve_fits": {"shown_cells": [c.key for c in self.shown_cells], "why_none": self.no_fits_line()},
               "primary_layer": self.primary_layer, "memorization_metric": f"train.{self.memorization_metric}",
               "design": self.design.to_dict(), "varying": self.varying, "chance": self.chance,
               "notes": self.notes, "curve_trials": self.curve_trials,
               "fits": {k: v.to_dict() for k, v in self.fits.items()},
               "cells": [c.to_dict() for c in self.cells],
               "groups": {k: {kk: (vv.to_dict() if hasattr(vv, "to_dict") else vv) for kk, vv in g.items()}
                          for k, g in self.groups.items()},
               "per_layer": {k: {"memorization_vs_lambda": v.to_dict()} for k, v in self.per_layer.items()},
               "factor_curves": [f.to_dict() for f in self.factor_curves], "evasion": self.evasion.to_dict(),
               "best_trials": self.best_trials, "onset_per_trial": self.onset_per_trial, "settings": self.settings}
        if self.final_epoch is not None:
            doc["final_epoch"] = self.final_epoch
        return jsonable(doc)


def _epoch_notes(t: Tables, d, dc) -> list[str]:
    """What a reader must know about the training lengths behind the fits."""
    if t.at_epoch is not None:
        n_all = int(t.final["trial_id"].nunique()) if len(t.final) else 0
        return [f"metrics at epoch {t.at_epoch}: the {len(d)} trials that reached it "
                f"({n_all - len(d)} of {n_all} ended earlier and are left out)"]
    out = []
    fe = d.final_epoch.dropna().astype(int)
    if fe.nunique() > 1:
        top = int(fe.max())
        reached = ", ".join(f"{e}: {int((fe >= e).sum())}" for e in sorted(fe.unique()))
        out.append(f"trials end at different epochs ({int((fe < top).sum())} of {len(fe)} stopped before epoch "
                   f"{top}, e.g. by ASHA). Trials reaching each epoch: {reached}. `--at-epoch E` compares the "
                   "trials that reached E at E.")
    left = len(d) - len(dc)
    if left:
        out.append(f"curve fits use the {len(dc)} trials that reached their run.epochs; {left} left out "
                   "(stopped early, failed or still running)")
    return out


def _curve_trials(d, dc) -> dict:
    no_metrics = int(d.final_epoch.isna().sum())
    short = int(len(d) - len(dc) - no_metrics)
    reasons = {}
    if short:
        reasons["stopped before run.epochs (early stopping, error or still running)"] = short
    if no_metrics:
        reasons["no metrics recorded"] = no_metrics
    return {"used": int(len(dc)), "left_out": int(len(d) - len(dc)), "reasons": reasons}


def n_lambda(sub) -> int:
    """Distinct λ > 0 among the trials of `sub` (per_trial rows)."""
    return int(sub.lam[sub.lam > 0].nunique())


def _cells(dc, design: Design, pooled: dict, n_boot: int, seed: int, metric: str) -> list[Cell]:
    if not len(dc):
        return []
    if design.kind == "single run":          # nothing to fit across trials: findings.run_finding
        return [Cell("this run", {}, dc.trial_id.tolist(), {})]
    if not design.cell_factors or not design.lam_swept:
        # without λ swept, the other factors are the x axes of the factor curves, not cells
        return [Cell("all trials", {}, dc.trial_id.tolist(),
                     pooled if design.lam_swept else {"memorization_vs_generalization":
                                                      pooled["memorization_vs_generalization"]}, n_lambda(dc))]
    out = []
    keys = design.cell_factors
    # cells in the order of their values (numbers numerically), named by their values as text
    cols = [dc[k] if dc[k].map(lambda v: isinstance(v, (int, float))).all() else dc[k].astype(str) for k in keys]
    for vals, sub in dc.groupby(cols, sort=True):
        vals = tuple(str(v) for v in (vals if isinstance(vals, tuple) else (vals,)))
        key = ", ".join(f"{k}={v}" for k, v in zip(keys, vals))
        fits = lam_fits(sub, n_boot, seed, tag=key, metric=metric) if design.lam_swept else {}
        fits["memorization_vs_generalization"] = fit_mem_gen(sub.rand_acc, sub.test_acc, sub.gap, n_boot=n_boot,
                                                             seed=seed, name=f"memgen{key}")
        out.append(Cell(key, dict(zip(keys, vals)), sub.trial_id.tolist(), fits, n_lambda(sub)))
    return out


def _factor_curves(dc, design: Design, varying: list[str], n_boot: int, seed: int) -> list[FactorCurves]:
    out = []
    n_varies = dc.chance.dropna().nunique() > 1
    y = (dc.rand_acc - dc.chance) / (1.0 - dc.chance) if n_varies else dc.rand_acc
    y_name = "(rand_acc − 1/n) / (1 − 1/n)" if n_varies else "rand_acc"
    lev = factor_lambda_levels(dc.lam.to_numpy(float)) if design.lam_swept else np.full(len(dc), np.nan)
    for c in FACTOR_FITS:
        # a factor with 2 levels is a pair of cells (the λ figure shows it), not a curve
        if c not in varying or c not in dc.columns or dc[c].astype(str).nunique() < 3:
            continue
        rows = []
        for lv in (np.unique(lev[np.isfinite(lev)]) if design.lam_swept else [None]):
            m = (lev == lv) if lv is not None else np.ones(len(dc), bool)
            rows.append((None if lv is None else float(lv), factor_curve(
                dc[c][m].astype(float), y[m], factor=c, n_boot=n_boot, seed=seed, log=c in LOG_FACTORS,
                find="min" if c == N_KEY else None, y_name=y_name, name=f"fc:{c}@{lv}")))
        out.append(FactorCurves(c, rows))
    return out


def analyze_tables(t: Tables, *, n_boot: int = 200, seed: int = 0, delta_rand: float = DELTA_RAND,
                   delta_gap: float = DELTA_GAP) -> Analysis:
    """The analysis of loaded tables (see the module docstring)."""
    d = per_trial(t)
    trials = t.trials if len(t.trials) else t.final
    varying = varying_columns(trials)
    design = read_design(t.root, d, varying)
    dc = d[d.complete].reset_index(drop=True)      # the trials every curve fit uses
    metric = f"train.{t.memorization_metric}"
    var_info = {}
    for c in varying:
        vals = trials[c].dropna()
        info = {"n_values": int(vals.astype(str).nunique())}
        try:
            f = vals.astype(float)
            info.update(min=float(f.min()), max=float(f.max()))
        except (TypeError, ValueError):
            pass
        if info["n_values"] <= 12:
            info["values"] = sorted({str(v) for v in vals.to_numpy(dtype=object)})
        var_info[c] = info
    notes = _epoch_notes(t, d, dc)
    if t.memorization_metric != "rand_acc":
        notes.append(f"memorization is {metric} (heads in eval mode on unaugmented training inputs)")
    if design.pooled_factors:
        notes.append(f"factors drawn continuously are pooled in every fit: {', '.join(design.pooled_factors)}")
    chance = d.chance.dropna().unique()

    fits: dict[str, Any] = lam_fits(dc, n_boot, seed, metric=metric)
    fits["memorization_vs_generalization"] = fit_mem_gen(dc.rand_acc, dc.test_acc, dc.gap, n_boot=n_boot, seed=seed)
    # the least-regularized trials when λ is swept: the legacy factor fits and 2A use them
    base_mask, lam_range = least_regularized(dc.lam.to_numpy(float)) if LAM_KEY in varying else \
        (np.ones(len(dc), bool), None)
    for c, short in FACTOR_FITS.items():
        if c == "model.widen" and "model.width" not in varying:
            short = "width"          # the model's width factor, whichever key the model uses
        if c in varying and c in dc.columns:
            b = dc[base_mask]
            f = factor_curve(b[c].astype(float), b.rand_acc, factor=c, n_boot=n_boot, seed=seed,
                             find="min" if c == N_KEY else None, log=c in LOG_FACTORS,
                             chance=(lambda lv: 1.0 / np.asarray(lv, float)) if c == N_KEY else None)
            if lam_range is not None:
                f.lam_range = lam_range
                if not f.fitted:
                    f.reason += (f" (while λ is swept only the least-regularized trials count: "
                                 f"{int(base_mask.sum())} at {lam_text(lam_range)})")
            fits[f"rand_acc_vs_{short}"] = f
    lam_map = dict(zip(dc.trial_id, dc.lam))
    lay = t.layers[t.layers.trial_id.astype(str).isin(set(dc.trial_id))] if len(t.layers) else t.layers
    fits["layer_profile"] = layer_profile(lay, lam_map, metric=t.memorization_metric, n_boot=n_boot, seed=seed,
                                          order=layer_order)
    for split in ("train", "test"):
        if len(lay) and ((lay.metric == "class_acc") & (lay.split == split)).any():
            fits[f"class_acc_layer_profile_{split}"] = layer_profile(
                lay, lam_map, metric="class_acc", split=split, n_boot=n_boot, seed=seed, order=layer_order)
    rand_col = f"train.{t.memorization_metric}"
    on = onset_epochs(t.epochs, dict(zip(d.trial_id, d.chance)), delta_rand=delta_rand, delta_gap=delta_gap,
                      rand_col=rand_col)
    all_base, _ = least_regularized(d.lam.to_numpy(float)) if LAM_KEY in varying else (np.ones(len(d), bool), None)
    fits["onset"] = fit_onset(on, d.trial_id[all_base], d.trial_id, n_boot=n_boot, seed=seed,
                              definition=f"onset: first epoch {rand_col} > chance + {delta_rand}; divergence: first "
                              f"epoch train acc − test acc > {delta_gap}; lag = onset − divergence")

    per_layer: dict[str, Any] = {}
    if len(lay):
        ra = lay[(lay.metric == t.memorization_metric) & (lay.split == "train")]
        for ln in layer_order(ra.layer.unique()):
            if ln == t.primary_layer:        # the same trials and metric: the same fit, one CI
                per_layer[ln] = fits["memorization_vs_lambda"]
                continue
            s = ra[ra.layer == ln]
            per_layer[ln] = fit_logistic(s.trial_id.astype(str).map(lam_map).astype(float), s.value, n_boot=n_boot,
                                         seed=seed, chance=float(chance[0]) if len(chance) == 1 else None,
                                         name=f"mem@{ln}")

    cells = _cells(dc, design, fits, n_boot, seed, metric)
    dn = with_noise(dc, t.final)
    for cell in cells:          # is each cell in the regime its fits need? (regime.py; findings flag it)
        cell.regime = cell_checks(dn[dn.trial_id.isin(cell.trial_ids)], cell.fits, n_boot=n_boot, seed=seed)
    groups: dict[str, dict] = {}
    if design.lam_swept:
        single = len(design.cell_factors) == 1
        for c in design.cell_factors:
            for v, sub in dc.groupby(dc[c].astype(str)):
                key = f"{c}={v}"
                same = next((cl for cl in cells if cl.key == key), None) if single else None
                gf = same.fits if same else lam_fits(sub, n_boot, seed, tag=key, metric=metric)
                groups[key] = {"factor": c, "value": v, "n_trials": int(len(sub)),
                               **{k: gf[k] for k in LAMBDA_FITS if k in gf}}

    by = "val_acc" if d.val_acc.notna().any() else "test_acc"
    top = d[d[by].notna()].sort_values(by, ascending=False).head(10)
    cols = ["trial_id", "lam", "rand_acc", "train_acc", "val_acc", "test_acc", "gap", "status"] + \
        [c for c in varying if c in d.columns and c != LAM_KEY]
    cell_of = {tid: c.key for c in cells for tid in c.trial_ids} if design.cell_factors else {}
    return Analysis(
        root=storage.display(t.root), sweeps=sorted(map(str, d.sweep.dropna().unique())) if "sweep" in d else [],
        n_trials=int(len(d)), n_trials_with_metrics=int(d.final_epoch.notna().sum()),
        status={str(k): int(v) for k, v in d.status.value_counts().items()} if d.status.notna().any() else {},
        primary_layer=t.primary_layer, memorization_metric=t.memorization_metric, design=design, varying=var_info,
        chance=float(chance[0]) if len(chance) == 1 else None, notes=notes, curve_trials=_curve_trials(d, dc),
        fits=fits, cells=cells, groups=groups, per_layer=per_layer,
        factor_curves=_factor_curves(dc, design, varying, n_boot, seed),
        evasion=check_evasion(t.layers, d, cell_of, n_boot=n_boot, seed=seed),
        best_trials={"by": by, "rows": top[[c for c in cols if c in top.columns]].to_dict(orient="records")},
        onset_per_trial=on.to_dict(orient="list"),
        settings={"n_boot": n_boot, "seed": seed, "delta_rand": delta_rand, "delta_gap": delta_gap,
                  "ci": "percentile bootstrap 2.5/97.5 over trials"},
        final_epoch={"min": int(d.final_epoch.min()), "max": int(d.final_epoch.max())}
        if d.final_epoch.notna().any() else None,
        search=read_search(t, d, design), trials=d)


def analyze(root: str | Path, *, n_boot: int = 200, seed: int = 0, at_epoch: int | None = None, **kw) -> Analysis:
    """Load ROOT's Parquet results and fit everything (`Analysis`; `.to_dict()` is the JSON document)."""
    return analyze_tables(load_tables(root, at_epoch=at_epoch), n_boot=n_boot, seed=seed, **kw)


def jsonable(o):
    """JSON-safe: numpy → Python, NaN/inf → None."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return [jsonable(v) for v in o.tolist()]
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.bool_):
        return bool(o)
    if o is None or isinstance(o, (str, int, bool)):
        return o
    try:
        import pandas as pd
        if pd.isna(o):
            return None
    except (TypeError, ValueError):
        pass
    return str(o)

