"""`rlp-tune status DIR`: a sweep's trials, state, epochs done and best so far, read from the
Parquet results (works while the sweep runs, and after)."""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..results import atomic_write_table, read_metrics, read_trials


def trial_table(root: str, metric: str, mode: str = "max") -> list[dict]:
    """One dict per trial: trial_id, status, epochs_done, metric (last epoch), best (over epochs),
    config columns; sorted best first."""
    trials = read_trials(root)
    if trials.empty:
        return []
    m = read_metrics(root)
    split, _, name = metric.partition(".")
    name, _, layer = name.partition(".")
    sel = m[(m.split == split) & (m.metric == name) & (m.layer == layer) & (m["head"] == -1)]
    last = sel.sort_values("epoch").groupby("trial_id").value.last()
    best = sel.groupby("trial_id").value.max() if mode == "max" else sel.groupby("trial_id").value.min()
    done = m.groupby("trial_id").epoch.max()
    rows = []
    for r in trials.to_dict("records"):
        t = r["trial_id"]
        r.update(metric=float(last.get(t, math.nan)), best=float(best.get(t, math.nan)),
                 epochs_done=int(done.get(t, 0)))
        rows.append(r)
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda r: (math.isnan(r["metric"]), sign * (0 if math.isnan(r["metric"]) else r["metric"])))
    return rows


def mark_status(root: str, trial_id: str, status: str) -> None:
    """Set a trial's status in its Parquet row (the driver knows when ASHA stopped a trial)."""
    if "://" in root:
        return
    path = Path(root) / "parquet" / "trials" / f"{trial_id}.parquet"
    if not path.exists():
        return
    t = pq.read_table(path)
    if t.column("status")[0].as_py() == "TERMINATED" and status == "STOPPED":
        return
    t = t.set_column(t.schema.get_field_index("status"), "status", pa.array([status] * t.num_rows))
    atomic_write_table(t, str(path))


def format_status(root: str, metric: str, mode: str, keys: list[str]) -> str:
    rows = trial_table(root, metric, mode)
    if not rows:
        return f"{root}: no trial has written results yet"
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines = [f"sweep {Path(root).name}: {len(rows)} trials (" + ", ".join(f"{v} {k.lower()}" for k, v in
                                                                         sorted(counts.items())) + ")",
             f"{'trial':<14}{'status':<11}{'epochs':>7}{metric:>12}{'best':>9}" + "".join(f"{k:>14}" for k in keys)]
    from .sweep import _fmt
    for r in rows:
        lines.append(f"{r['trial_id']:<14}{r['status']:<11}{r['epochs_done']:>7}{_fmt(r['metric']):>12}"
                     f"{_fmt(r['best']):>9}" + "".join(f"{_fmt(r.get(k)):>14}" for k in keys))
    return "\n".join(lines)
