"""Drawing helpers for the chapters' schematics: boxes, arrows and labels on a matplotlib Axes.

Every schematic is a :class:`Schematic`, a bare :class:`matplotlib.figure.Figure` (no pyplot, no
global state) that a notebook shows as a PNG, so drawing works under any backend, Agg included,
and writes nothing unless :func:`save_png` is called. Coordinates are data units of an Axes
without visible axes; a box is given by its centre. Every label is at least ``FONT_SIZE`` points,
readable in a printed book.

:func:`figure_texts` reads the labels back: the tests use it to check that a figure says what
the library computed, and a reader can use it to list a figure's labels.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from tinyllm import runs

FONT_SIZE = 10  # points: every label of a schematic (at least 9 for a printed book)
PALETTE = {  # one colour per kind of part, the same in every schematic
    "embedding": "#cfe2f3",
    "attention": "#f4cccc",
    "feedforward": "#d9ead3",
    "norm": "#fff2cc",
    "head": "#d9d2e9",
    "data": "#eeeeee",
}


class Schematic(Figure):
    """A Figure that shows itself in a notebook. IPython displays any object with a
    ``_repr_png_`` method; a Figure made without pyplot has none, and would print as
    ``<Figure size 500x440 with 1 Axes>`` unless ``%matplotlib inline`` had registered one."""

    def _repr_png_(self) -> bytes:
        png = io.BytesIO()
        self.savefig(png, format="png", dpi=100)
        return png.getvalue()


def new_figure(width: float, height: float, columns: int = 1):
    """A :class:`Schematic` of ``width`` x ``height`` inches with ``columns`` Axes side by side,
    axes hidden. Returns ``(figure, [axes, ...])``."""
    figure = Schematic(figsize=(width, height), layout="constrained")
    axes = [figure.add_subplot(1, columns, i + 1) for i in range(columns)]
    for ax in axes:
        ax.set_axis_off()
    return figure, axes


def box(ax, x: float, y: float, width: float, height: float, text: str, color: str = "#ffffff",
        gid: str | None = None, size: float = FONT_SIZE):
    """A rounded box centred at (x, y) with ``text`` in its middle; returns the Text."""
    from matplotlib.patches import FancyBboxPatch

    pad = 0.06 * min(width, height)
    patch = FancyBboxPatch((x - width / 2 + pad, y - height / 2 + pad), width - 2 * pad,
                           height - 2 * pad, boxstyle=f"round,pad={pad}", facecolor=color,
                           edgecolor="black", linewidth=1.0)
    patch.set_gid(gid)
    ax.add_patch(patch)
    return label(ax, x, y, text, gid=gid, size=size)


def cell(ax, x: float, y: float, width: float, height: float, color: str,
         gid: str | None = None):
    """A plain rectangle centred at (x, y): one slot of an array (a token, a cache position)."""
    from matplotlib.patches import Rectangle

    patch = Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color,
                      edgecolor="black", linewidth=0.8)
    patch.set_gid(gid)
    ax.add_patch(patch)
    return patch


def circle(ax, x: float, y: float, radius: float, text: str = "+", gid: str | None = None):
    """A small circle with ``text`` inside: the sum node of a residual connection."""
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor="black", linewidth=1.0))
    return label(ax, x, y, text, gid=gid)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str | None = None,
          style: str = "-|>") -> None:
    """An arrow from ``start`` to ``end``, with an optional label beside its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": style, "color": "black", "linewidth": 1.0,
                            "shrinkA": 0, "shrinkB": 0})
    if text:
        label(ax, (start[0] + end[0]) / 2, (start[1] + end[1]) / 2, text, ha="left")


def line(ax, points: list[tuple[float, float]]) -> None:
    """A polyline through ``points``: the bend of a residual path."""
    xs, ys = zip(*points)
    ax.plot(xs, ys, color="black", linewidth=1.0)


def label(ax, x: float, y: float, text: str, ha: str = "center", gid: str | None = None,
          size: float = FONT_SIZE, **options):
    """Text at (x, y) in data coordinates, at least ``FONT_SIZE`` points by default."""
    artist = ax.text(x, y, text, ha=ha, va="center", fontsize=size, **options)
    artist.set_gid(gid)
    return artist


def shown(token: str) -> str:
    """A token as a figure prints it: a space as ␣, a newline as ⏎, so that each is visible."""
    return token.replace(" ", "␣").replace("\n", "⏎")


def figure_texts(figure) -> list[str]:
    """Every string a figure shows: the figure's title, each Axes' title and its texts."""
    found = [figure._suptitle.get_text()] if figure._suptitle is not None else []
    for ax in figure.axes:
        found += [ax.get_title()] + [t.get_text() for t in ax.texts]
    return [t for t in found if t]


def save_png(figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``figure`` as a PNG, atomically (tinyllm.runs.write_bytes); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_png writes PNG files: give a path ending in .png, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=dpi)
    runs.write_bytes(path, png.getvalue())
    return path
