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
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, StrMethodFormatter
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

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
    fig.savefig(buf, format="svg", metadata={"Date": None})  # inside the caller's rc_context
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{key}-\1"', svg)
    return svg.replace("<svg ", f'<svg role="img" aria-labelledby="{label}" ', 1)


# Margins are set from the labels' lengths, not measured: a layout engine or a tight bounding
# box draws every figure twice, and the report draws about twenty (see bench_report.py).
CHAR = 0.075  # inches per character at 9 pt, a little over DejaVu Sans' average


def _frame(height: float, rows: int = 1, *, left: int, right: int = 0, rotated: int = 0,
           ylabel: bool = False, **kw):
    """A figure of ``rows`` axes with room for y tick labels of ``left`` characters, a
    legend of ``right`` characters (0: none), x tick labels of ``rotated`` characters
    turned 30 degrees, and a y label."""
    height += CHAR * rotated * 0.5
    fig = Figure(figsize=(WIDTH, height))  # inside the caller's rc_context
    axes = fig.subplots(rows, 1, squeeze=False, **kw)[:, 0]
    l_in = 0.2 + CHAR * left + (0.3 if ylabel else 0)
    r_in = 0.25 + (0.45 + 0.068 * right if right else 0)
    b_in = 0.5 + CHAR * rotated * 0.5
    fig.subplots_adjust(left=l_in / WIDTH, right=1 - r_in / WIDTH, bottom=b_in / height,
                        top=1 - 0.12 / height, hspace=0.25)
    return fig, axes


def _width(labels: Sequence[str]) -> int:
    return max((len(x) for x in labels), default=0)


# Category names are plain text beside the bars, not tick labels: matplotlib builds a tick
# from five artists, and ticks were half the time of drawing the report.

def _ynames(ax, ys: Sequence[float], names: Sequence[str]) -> None:
    ax.set_yticks([])
    at = blended_transform_factory(ax.transAxes, ax.transData) + ScaledTranslation(
        -4 / 72, 0, ax.figure.dpi_scale_trans)
    for y, name in zip(ys, names):
        ax.text(0, y, name, transform=at, ha="right", va="center")


def _xnames(ax, xs: Sequence[float], names: Sequence[str], turn: bool, xlabel: str) -> None:
    """Names under the x positions (turned 30 degrees when ``turn``), the x label below."""
    ax.set_xticks([])
    at = blended_transform_factory(ax.transData, ax.transAxes) + ScaledTranslation(
        0, -4 / 72, ax.figure.dpi_scale_trans)
    for x, name in zip(xs, names):
        if name:
            ax.text(x, 0, name, transform=at, ha="right" if turn else "center", va="top",
                    rotation=30 if turn else 0, rotation_mode="anchor")
    depth = 0.12 + (CHAR * _width(names) * 0.5 + 0.05 if turn else 0.16)  # inches
    ax.xaxis.set_label_coords(0.5, -depth / (ax.figure.get_figheight() * ax.get_position().height))
    ax.set_xlabel(xlabel, va="top")


def hbar(labels: Sequence, values: Sequence[float], *, key: str, label: str,
         xlabel: str = "", colors: Sequence[str] | None = None) -> str:
    """Horizontal bars, first label on top, each bar with its value at its end."""
    names = [_label(x) for x in labels]
    with matplotlib.rc_context(RC):
        fig, (ax,) = _frame(0.7 + 0.24 * max(len(labels), 2), left=_width(names))
        ys = list(range(len(labels)))[::-1]
        bars = ax.barh(ys, values, color=colors or PALETTE[0], height=0.7)
        _ynames(ax, ys, names)
        ax.bar_label(bars, labels=[_num(v) for v in values], padding=2, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.margins(x=0.12)
        _integers(ax.xaxis, values)
        return render(fig, key, label)


def vbar(labels: Sequence, values: Sequence[float], *, key: str, label: str,
         xlabel: str = "", ylabel: str = "") -> str:
    """Vertical bars (a histogram of pre-counted buckets)."""
    names = [_label(x, 12) for x in labels]
    with matplotlib.rc_context(RC):
        fig, (ax,) = _frame(2.4, left=len(_num(max(values, default=0))) + 1, ylabel=True)
        xs = range(len(labels))
        bars = ax.bar(xs, values, color=PALETTE[0], width=0.8)
        ax.bar_label(bars, labels=[_num(v) for v in values], padding=2, fontsize=8)
        _xnames(ax, list(xs), names, False, xlabel)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.15)
        _integers(ax.yaxis, values)
        return render(fig, key, label)


def stacked(labels: Sequence, series: Sequence[tuple[str, Sequence[float]]], *, key: str,
            label: str, horizontal: bool = False, xlabel: str = "", ylabel: str = "") -> str:
    """Bars stacked by series (name, values per label), with a legend."""
    n = len(labels)
    series = [(_label(name, 24), values) for name, values in series if any(values)]
    short = [_label(x, 40 if horizontal else 14) for x in labels]
    if not horizontal:
        short = _thin(short)
    turn = not horizontal and n > 6
    top = max((sum(v) for v in zip(*(vals for _, vals in series))), default=0)
    with matplotlib.rc_context(RC):
        fig, (ax,) = _frame(0.9 + 0.26 * max(n, 3) if horizontal else 2.8,
                            left=_width(short) if horizontal else len(_num(top)) + 1,
                            right=_width([name for name, _ in series]),
                            rotated=_width(short) if turn else 0, ylabel=bool(ylabel))
        pos = list(range(n))[::-1] if horizontal else list(range(n))
        base = [0.0] * n
        for i, (name, values) in enumerate(series):  # one artist per series, not per bar
            boxes = [((b, p - 0.35), (b + v, p - 0.35), (b + v, p + 0.35), (b, p + 0.35))
                     for p, b, v in zip(pos, base, values)]
            if not horizontal:
                boxes = [[(y, x) for x, y in box] for box in boxes]
            ax.add_collection(PolyCollection(boxes, facecolors=_color(name, i),
                                             edgecolors="none", label=name))
            base = [b + v for b, v in zip(base, values)]
        ax.autoscale_view()
        if horizontal:
            ax.set_xlim(left=0)
        else:
            ax.set_ylim(bottom=0)
        if horizontal:
            _ynames(ax, pos, short)
            ax.set_xlabel(xlabel)
        else:
            _xnames(ax, pos, short, turn, xlabel)
        ax.set_ylabel(ylabel)
        if series:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _integers(ax.xaxis if horizontal else ax.yaxis, [v for _, vs in series for v in vs])
        return render(fig, key, label)


def panels(labels: Sequence, rows: Sequence[tuple[str, Sequence[tuple[str, Sequence[float]]]]],
           *, key: str, label: str, xlabel: str = "") -> str:
    """One panel per (y label, series) over the same x labels (runs, oldest first): lines
    with markers, so a single run is still a visible point."""
    n = len(labels)
    short = _thin([_label(x, 16) for x in labels])
    turn = n > 4
    peak = max((v for _, series in rows for _, vs in series for v in vs if v == v), default=0)
    legend = _width([name for _, series in rows if len(series) > 1 for name, _ in series])
    with matplotlib.rc_context(RC):
        fig, axes = _frame(0.3 + 1.4 * len(rows), len(rows), left=len(_num(peak)) + 2,
                           right=legend, rotated=_width(short) if turn else 0, ylabel=True,
                           sharex=True)
        xs = list(range(n))
        for ax, (ylabel, series) in zip(axes, rows):
            for i, (name, values) in enumerate(series):
                ax.plot(xs, values, marker="o", markersize=3, label=_label(name, 24),
                        color=PALETTE[i % len(PALETTE)])
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0)
            _integers(ax.yaxis, [v for _, vs in series for v in vs])
            if len(series) > 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_xlim(-0.5, n - 0.5)
        _xnames(axes[-1], xs, short, turn, xlabel)
        return render(fig, key, label)


def _integers(axis, values: Sequence) -> None:
    """Whole-number ticks on a count axis, written out (1,000,000, not 1e6)."""
    if all(isinstance(v, int) for v in values):
        axis.set_major_locator(MaxNLocator(integer=True))
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _thin(labels: list[str], most: int = 12) -> list[str]:
    """Every k-th label (the rest blank) so that at most ``most`` are written."""
    k = -(-len(labels) // most)
    return [x if i % k == 0 else "" for i, x in enumerate(labels)]


def _num(v: float) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return f"{int(v):,}"
