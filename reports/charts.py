"""Charts of a report as inline SVG, drawn with matplotlib's SVG backend.

The SVG is inlined into the HTML, so rendering fetches no image. matplotlib is imported only when
a chart is drawn (the CLI and API start without it); no pyplot, so no global figure state and no
GUI backend. Text is drawn as paths (no font file is referenced), element ids come from a fixed
hash salt and the metadata carries no date, so the same chart always gives the same bytes.
"""

from __future__ import annotations

import io
import re
from typing import Any, cast

from reports.document import Chart

_PALETTE = ("#2b5d8a", "#c77c1e", "#5b8c5a", "#7a6a9a", "#a11a1a", "#4f7f9f", "#8c6d3f")
_PROLOGUE = re.compile(r"\A\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
_RC = {
    "svg.hashsalt": "annex-report",
    "svg.fonttype": "path",
    "text.parse_math": False,  # a "$" in a label is a dollar sign, not TeX
    "text.usetex": False,
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def chart_svg(chart: Chart) -> str:
    """The chart as an `<svg>` element (no XML prologue), ready to inline into HTML.

    The title is left to the HTML caption, where it stays text a reader can search.
    """
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    with matplotlib.rc_context(cast(Any, _RC)):
        figure = Figure(figsize=(6.3, 2.8))
        FigureCanvasSVG(figure)
        axes = figure.add_subplot()
        _draw(axes, chart)
        if chart.y_label:
            axes.set_ylabel(chart.y_label)
        if len(chart.series) > 1:
            axes.legend(  # above the plot, where it can hide no bar
                frameon=False,
                fontsize=7,
                loc="lower center",
                bbox_to_anchor=(0.5, 1.0),
                ncol=min(len(chart.series), 4),
            )
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(
            buffer,
            format="svg",
            bbox_inches="tight",
            metadata={"Date": None, "Creator": None},
        )
    return _PROLOGUE.sub("", buffer.getvalue())


def _draw(axes: Any, chart: Chart) -> None:
    positions = list(range(len(chart.categories)))
    count = max(len(chart.series), 1)
    bottoms = [0.0] * len(positions)
    for n, series in enumerate(chart.series):
        colour = _PALETTE[n % len(_PALETTE)]
        if chart.kind == "line":
            axes.plot(positions, series.values, marker="o", color=colour, label=series.name)
        elif chart.kind == "stacked-bar":
            axes.bar(positions, series.values, 0.6, bottom=bottoms, color=colour, label=series.name)
            bottoms = [b + v for b, v in zip(bottoms, series.values, strict=True)]
        else:
            width = 0.8 / count
            shifted = [p - 0.4 + width * (n + 0.5) for p in positions]
            axes.bar(shifted, series.values, width, color=colour, label=series.name)
    axes.set_xticks(positions)
    axes.set_xticklabels(chart.categories, rotation=30 if len(chart.categories) > 6 else 0)
