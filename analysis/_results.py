"""Shared machinery of the result objects: JSON-safe conversion, text tables, figures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Result",
    "format_table",
    "jsonable",
    "new_figure",
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
    >>> from analysis._results import jsonable
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
    >>> from analysis._results import format_table
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
    >>> from analysis._results import new_figure
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
    >>> from analysis._results import new_figure, steps_axis
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
    >>> from analysis._results import Result
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
