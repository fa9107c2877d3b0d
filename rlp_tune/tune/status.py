"""`rlp-tune status DIR`: how far a sweep is (trials done of expected, running, stopped by the
scheduler, interrupted) and its trials with epochs done and best so far, read from the sweep
folder (works while the sweep runs, and after).

    sweep demo: 6 of 16 trials done (4 finished, 2 stopped by the scheduler), 1 interrupted
    interrupted: rlp-tune resume /abs/results/demo
"""
from __future__ import annotations

import math

from .. import storage
from ..reader import read_trials, require_results
from ..results import metric_parts
from .fmt import fmt_value


def trial_table(root: str, metric: str, mode: str = "max") -> list[dict]:
    """One dict per trial: trial_id, status, epochs_done, metric (last epoch), best (over epochs),
    config columns; sorted best first. Reads the trial rows and, of the metric rows, only the three
    per-trial numbers shown (one DuckDB aggregate over the `metrics` view, not every row). ROOT: a
    folder or a URI."""
    trials = read_trials(root)
    if trials.empty:
        return []
    last, best, done = _metric_summary(root, metric, mode)
    rows = []
    for r in trials.to_dict("records"):
        t = r["trial_id"]
        r.update(metric=float(last.get(t, math.nan)), best=float(best.get(t, math.nan)),
                 epochs_done=int(done.get(t, 0)))
        rows.append(r)
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda r: (math.isnan(r["metric"]), sign * (0 if math.isnan(r["metric"]) else r["metric"])))
    return rows


def _metric_summary(root: str, metric: str, mode: str) -> tuple[dict, dict, dict]:
    """Per trial: the metric's value at its last epoch, its best over epochs (NaN values skipped)
    and the last epoch of any row: ({trial: last}, {trial: best}, {trial: epoch}). Only the rows of
    `metric` (one per trial and epoch) come out of DuckDB; last / best are taken in pandas, since
    DuckDB folds isnan() to false from Parquet statistics that leave NaN out (duckdb 2.0)."""
    from ..reader import connect, fetch, sql_literal
    split, name, layer = metric_parts(metric)
    con = connect(root, live=False, views=("metrics",))
    try:
        done = dict(fetch(con, "SELECT trial_id, max(epoch) FROM metrics GROUP BY trial_id", "rows"))
        sel = fetch(con, f"SELECT trial_id, epoch, value FROM metrics WHERE split = {sql_literal(split)} "
                         f"AND metric = {sql_literal(name)} AND layer = {sql_literal(layer)} AND head = -1 "
                         f"AND protocol = '' ORDER BY trial_id, epoch", "df")
    finally:
        con.close()
    by = sel.groupby("trial_id").value
    return by.last().to_dict(), (by.max() if mode == "max" else by.min()).to_dict(), done


def summary_lines(root: str, s) -> list[str]:
    """The first lines of `rlp-tune status` from the sweep's state.SweepState: counts, and what to do
    when the sweep was interrupted."""
    parts = [f"{len(s.finished)} finished", f"{len(s.stopped)} stopped by the scheduler"]
    head = f"sweep {storage.name(root)}: {s.done} of {s.expected} trials done ({', '.join(parts)})"
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
        lines.append(f"interrupted: rlp-tune resume {storage.display(storage.resolve(root))}")
    return lines


def format_status(root: str, metric: str, mode: str, keys: list[str], expected: int | None = None) -> str:
    from .state import sweep_state
    rows = trial_table(root, metric, mode)
    # the ledger, the trial rows and the driver marker, each read once
    s = sweep_state(root, expected or 0, rows={r["trial_id"]: r["status"] for r in rows})
    head = summary_lines(root, s) if expected is not None else []
    if not rows:
        return "\n".join(head + [f"{root}: no trial has written results yet"])
    stops, alive = set(s.stopped), s.driver
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
