"""`rlp-tune status DIR`: how far a sweep is (trials done of expected, running, stopped by the
scheduler, interrupted) and its trials with epochs done and best so far, read from the sweep
folder (works while the sweep runs, and after).

    sweep demo: 6 of 16 trials done (4 finished, 2 stopped by the scheduler), 1 interrupted
    interrupted: rlp-tune resume /abs/results/demo
"""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..results import atomic_write_table, metric_rows, read_metrics, read_trials


def trial_table(root: str, metric: str, mode: str = "max") -> list[dict]:
    """One dict per trial: trial_id, status, epochs_done, metric (last epoch), best (over epochs),
    config columns; sorted best first."""
    trials = read_trials(root)
    if trials.empty:
        return []
    m = read_metrics(root)
    sel = metric_rows(m, metric)
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


def fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def summary_lines(root: str, expected: int) -> list[str]:
    """The first lines of `rlp-tune status`: counts, and what to do when the sweep was interrupted."""
    from .state import sweep_state
    s = sweep_state(root, expected)
    parts = [f"{len(s.finished)} finished", f"{len(s.stopped)} stopped by the scheduler"]
    head = f"sweep {Path(root).name}: {s.done} of {s.expected} trials done ({', '.join(parts)})"
    extra = [f"{len(x)} {what}" for x, what in [(s.running, "running"), (s.interrupted, "interrupted"),
                                                (s.failed, "failed")] if x]
    if s.driver is None and s.unfinished:
        extra.append(f"{len(s.unfinished)} running or interrupted ({s.driver_note})")
    lines = [head + (", " + ", ".join(extra) if extra else "")]
    if s.complete:
        lines.append("complete")
    elif s.driver:
        lines.append(f"running ({s.driver_note})")
    elif s.driver is False:
        lines.append(f"interrupted: rlp-tune resume {Path(root).resolve()}")
    return lines


def format_status(root: str, metric: str, mode: str, keys: list[str], expected: int | None = None) -> str:
    rows = trial_table(root, metric, mode)
    head = summary_lines(root, expected) if expected is not None else []
    if not rows:
        return "\n".join(head + [f"{root}: no trial has written results yet"])
    from .asha import read_stops
    from .state import driver_alive
    stops, alive = read_stops(root), driver_alive(root)[0]
    lines = head + [f"{'trial':<14}{'status':<13}{'epochs':>7}{metric:>12}{'best':>9}" + "".join(f"{k:>14}" for k in keys)]
    for r in rows:
        status = r["status"]
        if r["trial_id"] in stops and status != "TERMINATED":
            status = "STOPPED"
        elif status == "RUNNING" and alive is False:
            status = "INTERRUPTED"
        lines.append(f"{r['trial_id']:<14}{status:<13}{r['epochs_done']:>7}{fmt_value(r['metric']):>12}"
                     f"{fmt_value(r['best']):>9}" + "".join(f"{fmt_value(r.get(k)):>14}" for k in keys))
    return "\n".join(lines)
