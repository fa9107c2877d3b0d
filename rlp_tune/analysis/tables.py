"""Load a results folder once into the frames the fits and figures read, and one row per trial.

    t = load_tables("runs/sweep1")            # Tables: trials, final, layers, epochs, primary layer
    d = per_trial(t)                          # lam, rand_acc, train/test/val acc, gap, complete, ...

"rand_acc" of a trial is the final memorization accuracy of split "train" at the primary layer
("penultimate" when heads sit there, else the deepest tap with heads), heads collapsed (head −1,
the mean over heads, else the mean of the heads). The memorization metric is `rand_acc_eval` (the
heads in eval mode on unaugmented training inputs) where the results have it, else the online
`rand_acc`; `Tables.memorization_metric` says which. The online value stays as `rand_acc_online`,
the fresh-head audit as `rand_acc_audit`.

A trial is `complete` when it reached its configured `run.epochs` (or, with at_epoch=E, epoch E):
curve fits use complete trials only.

Every frame lists trials in content order (`content_order`: config and seeds, then metric values,
trial_id last): the bootstrap resamples trials by position, so the same trials give the same CIs
whatever ids Tune drew for them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import LAM_KEY, N_KEY
from ..errors import UserError

SECTION_PREFIXES = ("data.", "model.", "rlp.", "optim.", "probe.", "run.")
# config keys that identify a trial or the machine, never a studied factor
IDENTITY_KEYS = {"run.seed", "data.seed", "run.name", "run.device", "run.threads", "data.root",
                 "data.workers", "run.keep_checkpoints", "run.eval_batch_size"}
SEED_KEYS = ("run.seed", "data.seed")
# metrics that differ between identical trials (wall-clock), never part of a trial's content key
TIMING_METRICS = ("epoch_s", "samples_per_s")
MEMORIZATION_METRICS = ("rand_acc_eval", "rand_acc")      # preferred first
EPOCH_COLUMNS = ("train.acc", "val.acc", "test.acc", "train.rand_acc", "train.rand_acc_eval",
                 "train.rand_acc_audit", "offline.rand_acc")


@dataclass
class Tables:
    """What the fits and plots read, loaded once from ROOT (pandas DataFrames).

    trials:  one row per trial (status, config columns "rlp.lam", ...)
    final:   the `final` view: trials ⟗ final "<split>.<metric>" at layer ''/'penultimate'
    layers:  trial_id, split, layer, metric, epoch, value — the last value per trial of every
             per-layer metric (layer != ''), heads collapsed
    epochs:  one row per (trial_id, epoch) with the columns EPOCH_COLUMNS (accuracies at layer '';
             the rand_acc metrics at the primary layer, heads collapsed); NaN where not recorded
    primary_layer: the layer whose memorization the trial-level fits use (None: none recorded)
    memorization_metric: "rand_acc_eval" where recorded at the primary layer, else "rand_acc"
    at_epoch: None = every trial's last epoch; E = rows up to epoch E only, and per_trial keeps the
             trials that reached E (compares trials at one training length, e.g. across ASHA rungs)
    """
    trials: Any
    final: Any
    layers: Any
    epochs: Any
    primary_layer: str | None
    root: str = ""
    at_epoch: int | None = None
    memorization_metric: str = "rand_acc"


class AtEpochError(UserError, ValueError):
    """--at-epoch E names an epoch no trial has metrics at (or is not an epoch number)."""


def _check_at_epoch(con, at_epoch: int) -> None:
    """AtEpochError unless some trial's last epoch up to at_epoch is at_epoch (`last` is registered)."""
    from ..reader import fetch
    if fetch(con, f"SELECT count(*) FROM last WHERE epoch = {int(at_epoch)}", "rows")[0][0]:
        return
    lo, hi = fetch(con, "SELECT min(epoch), max(epoch) FROM metrics", "rows")[0]
    if hi is None:
        raise AtEpochError(f"--at-epoch {at_epoch}: no trial has recorded an epoch yet")
    if at_epoch > hi:
        raise AtEpochError(f"--at-epoch {at_epoch}: no trial reached epoch {at_epoch} (the longest reached {hi})")
    raise AtEpochError(f"--at-epoch {at_epoch}: no trial has metrics at epoch {at_epoch} "
                       f"(recorded epochs run from {lo} to {hi})")


def layer_order(names) -> list[str]:
    """Tap names in depth order: 'input', then names by their trailing number (block2 < block10),
    then 'encoder', then 'penultimate'."""
    def key(n: str):
        if n == "input":
            return (0, "", 0)
        if n == "penultimate":
            return (3, "", 0)
        if n == "encoder":
            return (2, "", 0)
        m = re.match(r"^(.*?)(\d+)$", n)
        return (1, m.group(1), int(m.group(2))) if m else (1, n, -1)
    return sorted(set(names), key=key)


def load_tables(root: str | Path, at_epoch: int | None = None) -> Tables:
    """Read ROOT's Parquet results once (DuckDB) into the frames of `Tables`: two scans of the metrics
    (last values; per-epoch curves) and one read of the trials. at_epoch: see `Tables`; no trial
    with metrics at that epoch: AtEpochError (a UserError naming the longest run)."""
    from ..reader import connect, fetch, sql_literal
    from .query import final_sql, headmean_expr

    if at_epoch is not None and (isinstance(at_epoch, bool) or not isinstance(at_epoch, int) or at_epoch < 0):
        raise AtEpochError(f"at_epoch must be an epoch number ≥ 0, got {at_epoch!r}")
    src = "metrics" if at_epoch is None else f"(SELECT * FROM metrics WHERE epoch <= {int(at_epoch)})"
    con = connect(root, live=False)     # one-shot: no re-listing before each query, the retry alone
    try:
        # fetched results are registered back as relations (zero-copy Arrow): DuckDB temp tables of
        # wide rows are slow to build, and every relation below is small
        tr = fetch(con, "SELECT * FROM trials", "arrow")                 # many small files: read once
        con.register("tr", tr)
        # scan 1: the last value of every (trial, split, layer, metric, head), then heads collapsed
        # (the head -1 row where present, else the mean of the heads)
        last = fetch(con, f"SELECT sweep, trial_id, split, layer, metric, max(epoch) AS epoch, {headmean_expr()} "
                          "AS value FROM (SELECT sweep, trial_id, split, layer, metric, head, max(epoch) AS epoch, "
                          f"arg_max(value, epoch) AS value FROM {src} GROUP BY ALL) "
                          "GROUP BY sweep, trial_id, split, layer, metric", "arrow")
        con.register("last", last)
        if at_epoch is not None:
            _check_at_epoch(con, at_epoch)
        names = [tuple(r) for r in fetch(con, "SELECT DISTINCT split, metric FROM last WHERE layer IN "
                                              "('', 'penultimate') ORDER BY ALL", "rows")]
        final = fetch(con, f"SELECT * FROM ({final_sql(names, trials='tr', last='last')}) "
                           "ORDER BY sweep, trial_id", "df")
        final = final.iloc[content_order(final)].reset_index(drop=True)
        trials = tr.to_pandas()
        # ordered: the bootstrap resamples rows by position, so the same results give the same CIs
        layers = fetch(con, "SELECT trial_id, split, layer, metric, epoch, value FROM last WHERE layer <> '' "
                            "ORDER BY trial_id, split, layer, metric", "df")
        tr_rows = layers[layers.split == "train"]
        primary, metric = None, "rand_acc"
        rand_layers = set(tr_rows.loc[tr_rows.metric.isin(MEMORIZATION_METRICS), "layer"])
        if rand_layers:
            primary = "penultimate" if "penultimate" in rand_layers else layer_order(rand_layers)[-1]
            at = set(tr_rows.loc[tr_rows.layer == primary, "metric"])
            metric = next(m for m in MEMORIZATION_METRICS if m in at)
        # scan 2: per-epoch curves, one row per (trial, epoch) — accuracies at layer '' and the
        # rand_acc metrics at the primary layer (head -1, else the mean of the heads)
        lay = sql_literal(primary or "")
        cols = []
        for k in EPOCH_COLUMNS:
            split, m = k.split(".")
            layer = lay if m.startswith("rand_acc") else "''"
            cond = f"split = {sql_literal(split)} AND metric = {sql_literal(m)} AND layer = {layer}"
            cols.append(f"{headmean_expr(cond)} AS \"{k}\"")
        # the IN filters are pushed into the Parquet scan; the OR picks the exact pairs
        where = (f"metric IN ('acc', 'rand_acc', 'rand_acc_eval', 'rand_acc_audit') AND layer IN ('', {lay}) AND "
                 f"((layer = '' AND metric = 'acc') OR (metric LIKE 'rand_acc%' AND layer = {lay}))")
        epochs = fetch(con, f"SELECT trial_id, epoch, {', '.join(cols)} FROM {src} WHERE {where} "
                            f"GROUP BY trial_id, epoch ORDER BY trial_id, epoch", "df")
    finally:
        con.close()
    # layers and epochs in the trials' content order too (stable: their SQL order within a trial)
    rank = {tid: i for i, tid in enumerate(final["trial_id"].astype(str))}
    layers, epochs = (f.iloc[np.argsort(f["trial_id"].astype(str).map(rank).fillna(len(rank)).to_numpy(),
                                        kind="stable")].reset_index(drop=True) for f in (layers, epochs))
    return Tables(trials=trials, final=final, layers=layers, epochs=epochs, primary_layer=primary,
                  root=str(root), at_epoch=at_epoch, memorization_metric=metric)


def _sort_key(v) -> tuple:
    """A total order over cell values: numbers, then text, then missing."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return (2, 0.0, "")
    if isinstance(v, (bool, int, float, np.integer, np.floating, np.bool_)):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def content_order(final) -> list[int]:
    """Row positions of the `final` frame in content order: config values (seeds included; keys that
    name the trial or the machine left out) by key name, then metric values (timings left out),
    then sweep and trial_id. Trials that are the same run get the same place whatever their ids."""
    cols = list(final.columns)
    config = sorted(c for c in cols if c.startswith(SECTION_PREFIXES) and (c not in IDENTITY_KEYS or c in SEED_KEYS))
    metrics = sorted(c for c in cols if "." in c and not c.startswith(SECTION_PREFIXES + ("version.",))
                     and c.split(".", 1)[1].split("[")[0] not in TIMING_METRICS)
    keys = config + metrics + ["final_epoch"] + [c for c in ("sweep", "trial_id") if c in cols]
    rows = final[[c for c in keys if c in cols]].to_numpy(dtype=object)
    return sorted(range(len(rows)), key=lambda i: [_sort_key(v) for v in rows[i]])


def numeric_column(df, name):
    """df[name] as floats (NaN where missing or not a number; all NaN when the column is absent)."""
    import pandas as pd
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


def varying_columns(trials) -> list[str]:
    """Config columns (dotted keys) with more than one distinct value, identity keys excluded."""
    out = []
    for c in trials.columns:
        if not c.startswith(SECTION_PREFIXES) or c in IDENTITY_KEYS:
            continue
        v = trials[c].dropna()
        try:
            n = v.nunique()
        except TypeError:          # unhashable cells (list-valued keys such as rlp.layers)
            n = v.astype(str).nunique()
        if n > 1:
            out.append(c)
    return out


def per_trial(t: Tables):
    """One row per trial: trial_id, sweep, status, lam, chance, rand_acc (the memorization metric at
    the primary layer), rand_acc_online, rand_acc_audit, train_acc, test_acc, val_acc, gap (train −
    test), offline_rand_acc, final_epoch, target_epochs, complete + the swept config columns."""
    import pandas as pd

    f = t.final
    out = pd.DataFrame({"trial_id": f["trial_id"].astype(str), "sweep": f.get("sweep")})
    out["status"] = f["status"] if "status" in f.columns else None
    out["lam"] = numeric_column(f, LAM_KEY)
    out["chance"] = 1.0 / numeric_column(f, N_KEY)
    out["train_acc"] = numeric_column(f, "train.acc")
    out["test_acc"] = numeric_column(f, "test.acc")
    out["val_acc"] = numeric_column(f, "val.acc")
    out["offline_rand_acc"] = numeric_column(f, "offline.rand_acc")
    out["final_epoch"] = numeric_column(f, "final_epoch")
    lay = t.layers
    for col, metric in (("rand_acc", t.memorization_metric), ("rand_acc_online", "rand_acc"),
                        ("rand_acc_audit", "rand_acc_audit")):
        if t.primary_layer is not None and len(lay):
            sel = lay[(lay.metric == metric) & (lay.split == "train") & (lay.layer == t.primary_layer)]
            out[col] = out["trial_id"].map(dict(zip(sel.trial_id.astype(str), sel.value))).astype(float)
        else:
            out[col] = np.nan
    out["gap"] = out["train_acc"] - out["test_acc"]
    for c in varying_columns(t.trials if len(t.trials) else f):
        if c in f.columns and c not in out.columns:
            out[c] = f[c].values
    # the curve's training length: each trial's configured run.epochs (else the longest trial's)
    target = numeric_column(f, "run.epochs")
    if t.at_epoch is not None:
        target = pd.Series(float(t.at_epoch), index=f.index)
    elif target.isna().all() and out.final_epoch.notna().any():
        target = pd.Series(float(out.final_epoch.max()), index=f.index)
    out["target_epochs"] = target.values
    out["complete"] = (out.final_epoch >= out.target_epochs).fillna(False).astype(bool)
    if t.at_epoch is not None:   # rows were read up to at_epoch: keep the trials that got there
        out = out[out.final_epoch == t.at_epoch]
    return out.reset_index(drop=True)
