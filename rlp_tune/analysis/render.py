"""Draw a FigureInfo with matplotlib: into a notebook's axes, a new Figure, files, or inline HTML.

    fig = draw(info)                          # a new matplotlib Figure (shown inline in Jupyter)
    fig, axes = plt.subplots(1, 3); draw(info, ax=axes)   # into your axes (one per panel)
    save(info, "figs/lambda")                 # figs/lambda.png + figs/lambda.svg
    html_img(info)                            # <img src="data:image/png;base64,..."> for the report

No backend is switched: a new figure is a plain `matplotlib.figure.Figure` (not pyplot), which
draws with any backend and is displayed by Jupyter's inline formatter; given axes are drawn into.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np

from .figures import FigureInfo, Panel


def _arr(v) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in v], float)


def _minor_log_labels(ax):
    """Minor tick labels of a log x axis: none over ≥ 2 decades (the decades suffice); 2 and 5 of
    each decade over a shorter range (matplotlib's default labels every minor tick, which overlap)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    lo, hi = ax.get_xlim()
    if lo <= 0 or hi / lo >= 100:
        return NullFormatter()

    def label(v, _):
        m = v / 10 ** np.floor(np.log10(v) + 1e-9)
        return f"{v:.3g}" if round(m) in (2, 5) and abs(m - round(m)) < 1e-6 else ""
    return FuncFormatter(label)


def draw_panel(ax, p: Panel) -> None:
    """Draw one Panel into a matplotlib Axes."""
    for s in p.series:
        xs, ys = np.asarray(s.x, float), _arr(s.y)
        if s.kind == "points":       # style: a marker ("x"); a line style means the default dot
            marker = s.style if s.style not in ("-", "--", ":", "-.", "") else "o"
            ax.scatter(xs, ys, s=28 if marker == "x" else 12, alpha=s.alpha, label=s.label, color=s.color,
                       marker=marker, zorder=4)
        elif s.kind == "step":       # a running value (best so far): constant until the next x
            ax.step(xs, ys, where="post", label=s.label, alpha=s.alpha, color=s.color, lw=2, zorder=3)
        elif s.kind == "bar":
            ax.bar(xs, ys, label=s.label, alpha=s.alpha, color=s.color)
        elif s.kind == "band":
            ax.fill_between(xs, _arr(s.ylo), _arr(s.yhi), alpha=s.alpha, color=s.color, label=s.label, lw=0)
        elif s.kind == "errorbar":
            lo, hi = _arr(s.ylo or s.y), _arr(s.yhi or s.y)
            ax.errorbar(xs, ys, yerr=np.vstack([np.maximum(ys - lo, 0), np.maximum(hi - ys, 0)]),
                        fmt=s.style if s.style != "-" else "-o", ms=4, capsize=3, label=s.label, color=s.color)
        else:
            ax.plot(xs, ys, s.style, label=s.label, alpha=s.alpha, color=s.color, lw=2, zorder=3)
    for h in p.hlines:
        ax.axhline(h.value, ls=h.style, color=h.color, lw=1, label=h.label)
    for v in p.vlines:
        ax.axvline(v.value, ls=v.style, color=v.color, lw=1, label=v.label)
    ax.set_xscale(p.xscale)
    ax.set_yscale(p.yscale)
    if p.xscale == "log":
        ax.xaxis.set_minor_formatter(_minor_log_labels(ax))
    if p.xticks is not None:
        ax.set_xticks(p.xticks)
        ax.set_xticklabels(p.xticklabels, rotation=45, ha="right", fontsize=8)
    ax.set_title(p.title, fontsize=10)
    ax.set_xlabel(p.xlabel, fontsize=9)
    ax.set_ylabel(p.ylabel, fontsize=9)
    ax.grid(alpha=0.3)
    labels = [x.label for x in p.series + p.hlines + p.vlines]
    if any(lab and not lab.startswith("_") for lab in labels):   # "_name": no legend entry (matplotlib's rule)
        ax.legend(fontsize=7, loc="best")


def draw(info: FigureInfo, ax=None):
    """Draw `info`; returns the matplotlib Figure. ax: None (a new Figure), an Axes (one-panel
    figures) or a sequence of Axes, one per panel."""
    if ax is None:
        from matplotlib.figure import Figure

        n = len(info.panels)
        cols = info.ncols or n
        rows = math.ceil(n / cols)
        # constrained layout keeps the suptitle clear of the panel titles
        fig = Figure(figsize=(5.2 * cols, (info.height or 4.3) * rows + 0.5), layout="constrained")
        grid = fig.subplots(rows, cols, squeeze=False).ravel()
        for extra in grid[n:]:
            extra.set_visible(False)
        axes = list(grid[:n])
        fig.suptitle(info.title + (f"\n{info.note}" if info.note else ""), fontsize=11 if n > 1 else 9)
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) != len(info.panels):
            raise ValueError(f"{info.name}: {len(info.panels)} panel(s) need as many axes, got {len(axes)}")
        fig = axes[0].figure
    for a, p in zip(axes, info.panels):
        draw_panel(a, p)
    return fig


def save(info: FigureInfo, path_stem) -> list[Path]:
    """Write <path_stem>.png and <path_stem>.svg; returns both paths."""
    fig = draw(info)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(out[0], dpi=110)
    fig.savefig(out[1])
    return out


def html_img(info: FigureInfo, dpi: int = 90) -> str:
    """The figure as an <img> with its PNG inlined as a data URI (no file beside the page)."""
    buf = io.BytesIO()
    draw(info).savefig(buf, format="png", dpi=dpi)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img src=\"data:image/png;base64,{data}\" alt=\"{info.name}\">"
