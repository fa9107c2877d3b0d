"""The figures of a tuning search, as FigureInfo (numbers only; render.draw draws them).

    s = read_search(tables, d, design)          # search.SearchSummary
    history_info(s); importance_info(s); slice_info(s); curves_info(s)   # FigureInfo (or None)
    render.draw(history_info(s))                # a matplotlib Figure

  search_history      the metric of each trial by trial number (ran to the end / stopped by the
                      scheduler, at its stop) and the best so far among the trials that ran to the end
                      (what optuna.visualization.plot_optimization_history shows)
  search_importance   parameter importances (optuna.importance), titled with how far to trust them
  search_slices       the metric against each searched parameter (plot_slice), one panel each
  search_curves       every trial's metric per epoch, the scheduler's stops marked (plot_intermediate_values
                      plus the stops)

Optuna's own matplotlib plots are not drawn here: they draw through pyplot's global state, their
numbers come from private helpers (nothing to test against), and they need the study, which results
copied without optuna.journal lack. The numbers are the study's (importances: optuna.importance) or
the trials' Parquet rows; render.py draws them like every other figure of the report.
"""
from __future__ import annotations

from .figures import FigureInfo, Panel, RefLine, Series
from .search import ROUGH_BELOW, SearchSummary, SearchTrial

MAX_LABELLED = 8          # learning curves with their own legend entry (the rest share a colour)
FIRST_SCREEN_HEIGHT = 3.2  # inches: history and importances side by side fit the report's first screen


def _scale(metric: str) -> float:
    """Accuracies in %, anything else (losses) as recorded."""
    return 100.0 if metric.rsplit(".", 1)[-1].startswith("acc") else 1.0


def _ylabel(s: SearchSummary) -> str:
    return f"{s.metric} (%)" if _scale(s.metric) == 100.0 else s.metric


def _y(s: SearchSummary, v) -> float | None:
    return None if v is None else v * _scale(s.metric)


def best_so_far(s: SearchSummary) -> tuple[list[int], list[float | None]]:
    """(trial numbers, best metric among the trials that ran to the end up to each; None before the first)."""
    xs, ys, best = [], [], None
    for t in s.trials:
        if t.state == "complete" and t.value is not None:
            better = best is None or (t.value > best if s.mode == "max" else t.value < best)
            best = t.value if better else best
        xs.append(t.number)
        ys.append(best)
    return xs, ys


def history_info(s: SearchSummary) -> FigureInfo | None:
    """The optimization history: each trial's metric by number, the best so far (None: no values)."""
    if not any(t.value is not None for t in s.trials):
        return None
    p = Panel(title="", xlabel="trial number (the order the search drew them in)", ylabel=_ylabel(s))
    done = [t for t in s.trials if t.state == "complete" and t.value is not None]
    stop = [t for t in s.trials if t.state == "stopped" and t.value is not None]
    if done:
        p.series.append(Series("ran to the end", [t.number for t in done], [_y(s, t.value) for t in done],
                               kind="points", color="tab:blue"))
    if stop:
        p.series.append(Series("stopped by the scheduler (value at its stop)", [t.number for t in stop],
                               [_y(s, t.value) for t in stop], kind="points", style="x", color="grey"))
    xs, ys = best_so_far(s)
    if any(v is not None for v in ys):
        p.series.append(Series("best so far", xs, [_y(s, v) for v in ys], kind="step", color="tab:red"))
    return FigureInfo("search_history", f"Optimization history: {s.metric} by trial ({s.design})", [p],
                      height=FIRST_SCREEN_HEIGHT)


def importance_info(s: SearchSummary) -> FigureInfo | None:
    """Bars of the parameter importances; None when they were not estimated."""
    imp = s.importances
    if not imp.values:
        return None
    names = list(imp.values)
    p = Panel(title="", xlabel="searched parameter", ylabel="importance (sums to 1)",
              xticks=list(range(len(names))), xticklabels=names)
    p.series.append(Series("_importance", list(range(len(names))), [imp.values[k] for k in names], kind="bar",
                           color="tab:blue"))
    rough = imp.trust.startswith("rough")
    return FigureInfo("search_importance", f"Parameter importance for {s.metric} ({imp.evaluator}, "
                      f"{imp.n_complete} complete trials)", [p],
                      note=f"rough: fewer than {ROUGH_BELOW} complete trials" if rough else "",
                      height=FIRST_SCREEN_HEIGHT)


def _numeric(vals) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals if v is not None)


def slice_info(s: SearchSummary) -> FigureInfo | None:
    """The metric against each searched parameter (one panel each); None without values."""
    if not s.params or not any(t.value is not None for t in s.trials):
        return None
    panels = []
    for k in s.params:
        vals = [t.params.get(k) for t in s.trials]
        cats = None if _numeric(vals) else sorted({str(v) for v in vals if v is not None})
        p = Panel(title=f"{s.metric} vs {k}", xlabel=k + (" (log scale)" if k in s.log_params else ""),
                  ylabel=_ylabel(s), xscale="log" if k in s.log_params else "linear")
        if cats is not None:
            p.xticks, p.xticklabels = list(range(len(cats))), cats

        def pos(t: SearchTrial):
            v = t.params.get(k)
            return cats.index(str(v)) if cats is not None else v
        for state, label, style, color in (("complete", "ran to the end", "-", "tab:blue"),
                                           ("stopped", "stopped (value at its stop)", "x", "grey")):
            ts = [t for t in s.trials if t.state == state and t.value is not None and t.params.get(k) is not None]
            if ts:
                p.series.append(Series(label, [pos(t) for t in ts], [_y(s, t.value) for t in ts], kind="points",
                                       style=style, color=color))
        panels.append(p)
    return FigureInfo("search_slices", f"{s.metric} against each searched parameter", panels,
                      ncols=min(len(panels), 2), height=FIRST_SCREEN_HEIGHT)


def curves_info(s: SearchSummary) -> FigureInfo | None:
    """Every trial's metric per epoch; the epoch each stopped trial was stopped at marked."""
    ids = [t for t in s.trials if t.trial_id in s.curves]
    if not ids:
        return None
    p = Panel(title=f"{s.metric} per epoch, every trial", xlabel="epoch", ylabel=_ylabel(s))
    labelled = 0
    for t in ids:
        ep, v = s.curves[t.trial_id]
        if t.state == "complete":
            lab = f"{t.trial_id} (ran to the end)" if labelled < MAX_LABELLED else f"_{t.trial_id}"
            labelled += 1
            p.series.append(Series(lab, ep, [_y(s, x) for x in v], color=f"C{labelled % 10}"))
        else:
            first = not any(x.label == "other trials" for x in p.series)
            p.series.append(Series("other trials" if first else f"_{t.trial_id}", ep, [_y(s, x) for x in v],
                                   color="grey", alpha=0.45))
    stops = [(s.curves[t.trial_id][0][-1], s.curves[t.trial_id][1][-1]) for t in ids
             if t.state == "stopped" and s.curves[t.trial_id][0]]
    if stops:
        p.series.append(Series(f"stopped by the scheduler ({len(stops)})", [e for e, _ in stops],
                               [_y(s, v) for _, v in stops], kind="points", style="x", color="tab:red"))
    target = max((t.target for t in s.trials), default=0)
    if target:
        p.vlines.append(RefLine(target, f"run.epochs = {target}"))
    note = (f"{s.epochs_run} of {s.epochs_full} epochs ran; the scheduler's stops saved {s.epochs_saved}"
            if s.epochs_saved else f"{s.epochs_run} epochs ran; no trial was stopped early")
    return FigureInfo("search_curves", "Learning curves", [p], note=note)


def search_figure_infos(s: SearchSummary | None) -> list[FigureInfo]:
    """The search's figures in the report's order (history and importances first: the first screen)."""
    if s is None:
        return []
    return [i for i in (history_info(s), importance_info(s), slice_info(s), curves_info(s)) if i is not None]
