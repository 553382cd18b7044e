"""Shared machinery of the result objects: JSON-safe conversion, text tables, figures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "LEGEND_MIN_SIZE",
    "Result",
    "finish_figure",
    "format_table",
    "jsonable",
    "new_figure",
    "overlapping_lines",
    "plain_log_axis",
    "steps_axis",
]


def jsonable(value: Any, *, strict: bool = True) -> Any:
    """Convert ``value`` into plain JSON types.

    Numpy and torch scalars become Python numbers, arrays become lists, complex
    numbers become ``[real, imag]`` pairs, and non-finite floats become the
    strings ``"inf"``, ``"-inf"`` and ``"nan"`` (``float(s)`` reads them back),
    so that ``json.dumps(..., allow_nan=False)`` always succeeds. With
    ``strict=False`` non-finite floats stay floats (for Python's own JSON
    round trip, which writes ``Infinity`` and ``NaN``).

    Examples
    --------
    >>> import numpy as np
    >>> from odenet.analysis._results import jsonable
    >>> jsonable({"a": np.float64(1.5), "b": [1 + 2j, float("inf")], "c": np.arange(2)})
    {'a': 1.5, 'b': [[1.0, 2.0], 'inf'], 'c': [0, 1]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isfinite(v) or not strict:
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(value, (complex, np.complexfloating)):
        return [jsonable(float(value.real), strict=strict),
                jsonable(float(value.imag), strict=strict)]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, strict=strict) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v, strict=strict) for v in value.tolist()]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # torch tensors
        return jsonable(np.asarray(value.detach().cpu()), strict=strict)
    if isinstance(value, Iterable):
        return [jsonable(v, strict=strict) for v in value]
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.2e}"
    if isinstance(value, (complex, np.complexfloating)):
        sign = "+" if value.imag >= 0 else "-"
        return f"{_cell(float(value.real))}{sign}{_cell(abs(float(value.imag)))}j"
    return str(value)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> str:
    """Format rows as a plain-text table with aligned columns.

    Examples
    --------
    >>> from odenet.analysis._results import format_table
    >>> print(format_table(["method", "error"], [["euler", 0.5], ["rk4", 1.25e-9]]))
    method  error
    ------  --------
    euler   0.5
    rk4     1.25e-09
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for j, c in enumerate(row):
            widths[j] = max(widths[j], len(c))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [] if title is None else [title]
    out.append(line(list(headers)))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.4, height: float = 4.4):
    """A matplotlib Figure with a grid of axes, independent of pyplot's global state.

    Examples
    --------
    >>> from odenet.analysis._results import new_figure
    >>> fig, axes = new_figure(1, 2)
    >>> len(axes)
    2
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def steps_axis(ax, steps) -> None:
    """A log2 x-axis labelled with the step counts themselves.

    Examples
    --------
    >>> from odenet.analysis._results import new_figure, steps_axis
    >>> fig, (ax,) = new_figure()
    >>> steps_axis(ax, [2, 4, 8])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['2', '4', '8']
    """
    from matplotlib.ticker import NullLocator

    steps = sorted({int(s) for s in steps})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    if len(steps) > 8:  # keep every other label readable
        steps = steps[:: math.ceil(len(steps) / 8)]
    ax.set_xticks(steps, [str(s) for s in steps])


def plain_log_axis(ax, which: str = "x") -> None:
    """Log axis with labels on the decades only (no crowded minor labels)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10))
    axis.set_minor_formatter(NullFormatter())


class Result:
    """Base class of the analysis results.

    A result holds its rows (one dict per case) and summary fields; it prints
    as a table, converts to JSON-safe data with :meth:`to_dict` and draws
    itself with :meth:`plot`.

    Examples
    --------
    >>> from odenet.analysis._results import Result
    >>> class Demo(Result):
    ...     kind = "demo"
    ...     columns = ("x", "y")
    >>> Demo(rows=[{"x": 1, "y": 2.0}])
    demo
    x  y
    -  -
    1  2
    """

    kind: str = "result"
    #: Columns shown by ``repr`` (keys of the rows).
    columns: tuple[str, ...] = ()

    def __init__(self, rows: Sequence[Mapping[str, Any]] = (), **summary: Any):
        self.rows = [dict(r) for r in rows]
        self.summary = dict(summary)

    def table(self) -> str:
        """The rows as a text table (the ``repr``)."""
        cols = self.columns or (tuple(self.rows[0]) if self.rows else ())
        # leave out columns without content (e.g. an unused label)
        cols = tuple(c for c in cols if any(r.get(c) not in (None, "") for r in self.rows)) or cols
        title = self.title()
        body = format_table(cols, [[r.get(c) for c in cols] for r in self.rows], title)
        notes = self.notes()
        return body + ("\n" + "\n".join(notes) if notes else "")

    def title(self) -> str:
        """First line of the table."""
        return self.kind

    def notes(self) -> list[str]:
        """Summary lines printed under the table."""
        return []

    def to_dict(self) -> dict:
        """JSON-safe content: ``{"kind", "rows", **summary}``."""
        return jsonable({"kind": self.kind, **self.summary, "rows": self.rows})

    def __repr__(self) -> str:
        return self.table()

    def __getattr__(self, name: str) -> Any:
        summary = self.__dict__.get("summary")
        if summary is not None and name in summary:
            return summary[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def plot(self, ax=None):  # pragma: no cover - overridden
        """Draw the result; returns the matplotlib Figure."""
        raise NotImplementedError


#: Smallest font size of legend text in the written figures (points).
LEGEND_MIN_SIZE = 9.0

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")


def _data_lines(ax) -> list:
    """Labelled lines of ``ax`` drawn in data coordinates with at least two points."""
    out = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() != ax.transData:
            continue
        if str(line.get_label()).startswith("_"):  # unlabelled helpers (fits, guides)
            continue
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        if x.size >= 2 and x.shape == y.shape:
            out.append(line)
    return out


def _pixels(ax, line) -> np.ndarray:
    x = np.asarray(line.get_xdata(), dtype=float)
    y = np.asarray(line.get_ydata(), dtype=float)
    with np.errstate(all="ignore"):
        return ax.transData.transform(np.column_stack([x, y]))


def overlapping_lines(ax, tol: float = 3.0) -> list[list]:
    """Groups of lines of ``ax`` that lie on top of each other (within ``tol`` pixels).

    Two labelled lines overlap when they have the same number of points and
    every point of one is within ``tol`` display pixels of the other's; groups
    are in drawing order. Unlabelled lines (fits, guides) are left out.

    Examples
    --------
    >>> from odenet.analysis._results import new_figure, overlapping_lines
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.plot([1, 2, 3], [1, 4, 9], label="a")
    >>> _ = ax.plot([1, 2, 3], [1, 4, 9], label="b")
    >>> _ = ax.plot([1, 2, 3], [9, 4, 1], label="c")
    >>> [[line.get_label() for line in g] for g in overlapping_lines(ax)]
    [['a', 'b']]
    """
    lines = _data_lines(ax)
    pix = [_pixels(ax, line) for line in lines]
    groups: list[list[int]] = []
    seen: set[int] = set()
    for i in range(len(lines)):
        if i in seen:
            continue
        group = [i]
        for j in range(i + 1, len(lines)):
            if j in seen or pix[j].shape != pix[i].shape:
                continue
            d = np.hypot(*(pix[i] - pix[j]).T)
            ok = np.isfinite(d)
            if ok.sum() >= 2 and float(d[ok].max()) <= tol:
                group.append(j)
        if len(group) > 1:
            seen.update(group)
            groups.append(group)
    return [[lines[k] for k in g] for g in groups]


def _legends(fig) -> list:
    out = list(fig.legends)
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None:
            out.append(leg)
    return out


def _legend_handles(leg) -> list:
    handles = getattr(leg, "legend_handles", None)
    return list(handles if handles is not None else getattr(leg, "legendHandles", []))


def finish_figure(fig, *, legend_size: float = LEGEND_MIN_SIZE) -> list[list[str]]:
    """Make a finished figure legible: legend text of at least ``legend_size`` points, and
    curves that lie on top of each other told apart.

    Lines of one axes that coincide (:func:`overlapping_lines`) keep their
    colours and line styles; the ones drawn first become wider, translucent,
    with larger hollow markers of distinct shapes, so every curve of the group
    shows (a pale band under a thin line, nested markers). The legends follow.

    Returns
    -------
    list of list of str
        The labels of each group of coinciding curves (for a note beside the figure).

    Examples
    --------
    >>> from odenet.analysis._results import new_figure, finish_figure
    >>> fig, (ax,) = new_figure()
    >>> _ = ax.plot([1, 2, 3], [1, 4, 9], label="odenet")
    >>> _ = ax.plot([1, 2, 3], [1, 4, 9], label="torchdiffeq")
    >>> _ = ax.legend(fontsize=6)
    >>> finish_figure(fig)
    [['odenet', 'torchdiffeq']]
    >>> ax.get_legend().get_texts()[0].get_fontsize()
    9.0
    """
    try:
        fig.draw_without_rendering()  # settle limits and layout before reading pixels
    except Exception:  # pragma: no cover - a backend without a renderer
        pass
    styled: dict[str, dict[str, Any]] = {}
    groups_out: list[list[str]] = []
    for ax in fig.axes:
        for group in overlapping_lines(ax):
            n = len(group)
            used = [line.get_marker() for line in group]
            base_lw = max(float(group[-1].get_linewidth()), 1.0)
            base_ms = max(float(group[-1].get_markersize()), 4.0)
            for k, line in enumerate(group):
                marker = line.get_marker()
                if marker in (None, "None", "", " ") or used.count(marker) > 1:
                    marker = next(m for m in _MARKERS if m not in used)
                    used[k] = marker
                extra = min(n - 1 - k, 2)  # drawn first: wider, larger marker, translucent
                props = {"linewidth": base_lw + 1.6 * extra, "marker": marker,
                         "markersize": base_ms + 2.5 * extra, "markerfacecolor": "none",
                         "markeredgewidth": 1.2, "alpha": 0.55 if extra else 1.0}
                line.set(**props)
                styled[line.get_label()] = props
            groups_out.append([str(line.get_label()) for line in group])
    for leg in _legends(fig):
        for text in leg.get_texts():
            if text.get_fontsize() < legend_size:
                text.set_fontsize(legend_size)
        title = leg.get_title()
        if title.get_text() and title.get_fontsize() < legend_size:
            title.set_fontsize(legend_size)
        for handle, text in zip(_legend_handles(leg), leg.get_texts()):
            props = styled.get(text.get_text())
            if props is not None and hasattr(handle, "set_marker"):
                handle.set(**{**props, "markersize": min(props["markersize"], 9.0)})
    return groups_out
