"""Measuring one claim's quantity on a sweep's trials: per-trial frames from SQL, a stratified bootstrap.

    df = trial_frame(root)                                  # one row per finished trial (the `final` view)
    m = boot_measure(df, lambda d: mean(d, "rlp.lam == 0") - mean(d, "rlp.lam == 100"),
                     strata=["rlp.lam"], name="suppress", n_boot=1000, seed=0)

Used by analysis/reproduce.py through analysis/repro_claims.py. The CI is a 95% percentile bootstrap
over trials (rlp_tune.analysis.bootstrap: seeded per quantity name, None with < 20 finite values),
resampling trials with replacement *within* each design cell (`strata`) so that every compared cell
keeps its trials; a statistic that selects (the best λ, the best layer) selects again in every
resample, so its CI carries the selection.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from rlp_tune.analysis.bootstrap import ci, rng_for
from rlp_tune.analysis.query import query_df

from repro_table import Measurement


def trial_frame(root: str | Path):
    """The `final` view's rows of the trials that finished (status TERMINATED), one per trial."""
    return query_df(root, "SELECT * FROM final WHERE status = 'TERMINATED' ORDER BY trial_id")


def layer_frame(root: str | Path, split: str, metric: str, protocol_like: str | None = None, epoch: str = "last"):
    """One row per (trial_id, layer): the metric's value at head −1 (or the heads' mean) at the trial's
    last epoch with that metric (epoch='last') or its first (epoch='init': epoch 0 for the probes);
    protocol_like: a SQL LIKE pattern on the rows' protocol (e.g. 'labels=clean%')."""
    prot = "" if protocol_like is None else f" AND protocol LIKE '{protocol_like}'"
    pick = "max(epoch)" if epoch == "last" else "min(epoch)"
    sql = f"""
        WITH m AS (SELECT trial_id, epoch, layer, avg(value) AS value FROM metrics
                   WHERE split = '{split}' AND metric = '{metric}'{prot} AND (head = -1 OR head >= 0)
                   GROUP BY trial_id, epoch, layer),
             e AS (SELECT trial_id, {pick} AS epoch FROM m GROUP BY trial_id)
        SELECT m.trial_id, m.layer, m.epoch, m.value FROM m JOIN e USING (trial_id, epoch)
        ORDER BY m.trial_id, m.layer"""
    return query_df(root, sql)


def at_last_probe(root: str | Path, probe_metric: str, protocol_like: str, split: str = "test",
                  metric: str = "acc"):
    """One row per trial_id: `metric` of the model (layer '', head −1) at the trial's last epoch with a
    `probe_metric` row, as `<split>.<metric>@probe`, and that epoch as `probe_epoch`."""
    sql = f"""
        WITH p AS (SELECT trial_id, max(epoch) AS probe_epoch FROM metrics
                   WHERE metric = '{probe_metric}' AND protocol LIKE '{protocol_like}' GROUP BY trial_id)
        SELECT p.trial_id, p.probe_epoch, avg(m.value) AS "{split}.{metric}@probe" FROM p JOIN metrics m
          ON m.trial_id = p.trial_id AND m.epoch = p.probe_epoch
        WHERE m.split = '{split}' AND m.metric = '{metric}' AND m.layer = '' GROUP BY ALL"""
    return query_df(root, sql)


def with_layers(df, lf, prefix: str):
    """df (one row per trial) with one column `<prefix><layer>` per layer of the layer_frame lf."""
    wide = lf.pivot(index="trial_id", columns="layer", values="value")
    wide.columns = [f"{prefix}{c}" for c in wide.columns]
    return df.merge(wide, left_on="trial_id", right_index=True, how="inner")


def mean(df, query: str, col: str) -> float:
    sel = df.query(query, engine="python")[col] if query else df[col]
    sel = sel.astype(float)
    return float(sel.mean()) if len(sel) else float("nan")


def level_means(df, by: str, col: str) -> dict[float, float]:
    return {k: float(v) for k, v in df.groupby(by)[col].mean().items()}


def best_gain(df, by: str, col: str, base=0.0, minimize: bool = False) -> float:
    """max (or min) over levels of `by` other than `base` of mean(col) minus mean(col) at `base`."""
    means = level_means(df, by, col)
    if base not in means:
        return float("nan")
    others = [v for k, v in means.items() if k != base and math.isfinite(v)]
    if not others:
        return float("nan")
    return (min(others) if minimize else max(others)) - means[base]


def boot_measure(df, stat: Callable, *, strata: list[str], name: str, n_boot: int, seed: int,
                 unit: str = "points", detail: str = "") -> Measurement:
    """stat(df) with a 95% CI from resampling trials within the strata; seeds and trial count filled."""
    if df is None or len(df) == 0:
        return Measurement(untestable="no finished trials in this slice", unit=unit)
    value = float(stat(df))
    rng = rng_for(f"reproduce:{name}", seed)
    groups = [np.asarray(ix) for ix in df.groupby(strata, dropna=False).indices.values()] if strata \
        else [np.arange(len(df))]
    boots = []
    for _ in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        boots.append(float(stat(df.iloc[idx])))
    c = ci(boots) if len(df) >= 2 else None       # one trial: no spread to resample
    seeds = sorted(int(s) for s in df["seed"].unique()) if "seed" in df else []
    return Measurement(value=value, ci=tuple(c) if c else None, unit=unit, seeds=seeds, n_trials=len(df),
                       detail=detail)
