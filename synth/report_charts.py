"""Charts for the report: matplotlib figures rendered to inline SVG strings, in memory.

No pyplot (no GUI backend, no global figure state): each chart is a ``Figure`` saved by the
SVG backend. Output is deterministic for the same data: a fixed ``svg.hashsalt``, no date in
the metadata, text kept as text (``svg.fonttype = none``: no embedded or fetched fonts; the
browser draws it with a local sans-serif), and every id prefixed with the chart's key so
that several SVGs share one HTML page without clashing ids. Text is never parsed as
mathtext (a '$' in a repository name stays a '$').
"""

from __future__ import annotations

import io
import re
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

RC = {
    "svg.hashsalt": "synth-report",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "text.parse_math": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]
STATUS_COLORS = {"approved": "#59a14f", "rejected": "#e15759", "pending": "#4e79a7",
                 "other": "#bab0ac", "kept": "#59a14f", "dropped": "#bab0ac"}
WIDTH = 6.4  # inches


def _label(text: object, width: int = 40) -> str:
    s = "(none)" if text is None or text == "" else str(text)
    return s if len(s) <= width else s[: width - 1] + "…"


def _color(name: str, i: int) -> str:
    return STATUS_COLORS.get(name, PALETTE[i % len(PALETTE)])


def render(fig: Figure, key: str, label: str) -> str:
    """The figure as an inline <svg> element: role img, labelled by ``label``'s element id."""
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{key}-\1"', svg)
    return svg.replace("<svg ", f'<svg role="img" aria-labelledby="{label}" ', 1)


def _figure(height: float) -> Figure:
    with matplotlib.rc_context(RC):
        return Figure(figsize=(WIDTH, height), layout="constrained")


def hbar(labels: Sequence, values: Sequence[float], *, key: str, label: str,
         xlabel: str = "", colors: Sequence[str] | None = None) -> str:
    """Horizontal bars, first label on top, each bar with its value at its end."""
    with matplotlib.rc_context(RC):
        fig = _figure(0.6 + 0.24 * max(len(labels), 2))
        ax = fig.subplots()
        ys = list(range(len(labels)))[::-1]
        bars = ax.barh(ys, values, color=colors or PALETTE[0], height=0.7)
        ax.set_yticks(ys, [_label(x) for x in labels])
        ax.bar_label(bars, labels=[_num(v) for v in values], padding=2, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.margins(x=0.12)
        _integers(ax.xaxis, values)
        return render(fig, key, label)


def vbar(labels: Sequence, values: Sequence[float], *, key: str, label: str,
         xlabel: str = "", ylabel: str = "") -> str:
    """Vertical bars (a histogram of pre-counted buckets)."""
    with matplotlib.rc_context(RC):
        fig = _figure(2.4)
        ax = fig.subplots()
        xs = range(len(labels))
        bars = ax.bar(xs, values, color=PALETTE[0], width=0.8)
        ax.set_xticks(list(xs), [_label(x, 12) for x in labels])
        ax.bar_label(bars, labels=[_num(v) for v in values], padding=2, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
        _integers(ax.yaxis, values)
        return render(fig, key, label)


def stacked(labels: Sequence, series: Sequence[tuple[str, Sequence[float]]], *, key: str,
            label: str, horizontal: bool = False, xlabel: str = "", ylabel: str = "") -> str:
    """Bars stacked by series (name, values per label), with a legend."""
    with matplotlib.rc_context(RC):
        n = len(labels)
        fig = _figure(0.9 + 0.26 * max(n, 3) if horizontal else 2.8)
        ax = fig.subplots()
        pos = list(range(n))[::-1] if horizontal else list(range(n))
        base = [0.0] * n
        series = [(name, values) for name, values in series if any(values)]
        for i, (name, values) in enumerate(series):
            if horizontal:
                ax.barh(pos, values, left=base, label=_label(name, 24), color=_color(name, i),
                        height=0.7)
            else:
                ax.bar(pos, values, bottom=base, label=_label(name, 24), color=_color(name, i),
                       width=0.7)
            base = [b + v for b, v in zip(base, values)]
        short = [_label(x, 40 if horizontal else 14) for x in labels]
        if horizontal:
            ax.set_yticks(pos, short)
        else:
            ax.set_xticks(pos, short, rotation=30 if n > 6 else 0,
                          ha="right" if n > 6 else "center")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _integers(ax.xaxis if horizontal else ax.yaxis, [v for _, vs in series for v in vs])
        return render(fig, key, label)


def panels(labels: Sequence, rows: Sequence[tuple[str, Sequence[tuple[str, Sequence[float]]]]],
           *, key: str, label: str, xlabel: str = "") -> str:
    """One panel per (y label, series) over the same x labels (runs, oldest first): lines
    with markers, so a single run is still a visible point."""
    with matplotlib.rc_context(RC):
        fig = _figure(0.5 + 1.5 * len(rows))
        axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
        xs = list(range(len(labels)))
        for ax, (ylabel, series) in zip(axes, rows):
            for i, (name, values) in enumerate(series):
                ax.plot(xs, values, marker="o", markersize=3, label=_label(name, 24),
                        color=PALETTE[i % len(PALETTE)])
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            if len(series) > 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        n = len(labels)
        axes[-1].set_xticks(xs, [_label(x, 16) for x in labels], rotation=30 if n > 4 else 0,
                            ha="right" if n > 4 else "center")
        axes[-1].set_xlabel(xlabel)
        return render(fig, key, label)


def _integers(axis, values: Sequence) -> None:
    """Whole-number ticks on a count axis."""
    if all(isinstance(v, int) for v in values):
        axis.set_major_locator(MaxNLocator(integer=True))


def _num(v: float) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return f"{int(v):,}"
