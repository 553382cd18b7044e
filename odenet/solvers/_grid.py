"""The step sequence of a fixed-step solve, generated lazily.

A :class:`Grid` knows where every step starts and how long it is without
storing the steps: memory is proportional to the number of output times, not
to the number of steps, so a tiny ``step_size`` costs time, never memory.

Landing rule. Every output interval ``[a, b]`` is cut into steps of the
requested size ``h``, the last one shortened so that a step ends exactly on
``b``. Whether ``b`` *is* a whole number ``m`` of steps away from ``a`` is
decided relative to the resolution of the dtype the times came in: when
``|(b - a) - m h|`` is within a few units of round-off of that dtype, the
interval takes exactly ``m`` steps. So ``torch.linspace(0, 1, 11)`` in float32
with ``h = 0.1`` takes 10 steps, not 10 plus vanishing ones, while an interval
genuinely a little longer than ``m h`` still gets its short last step.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

import torch

from odenet.errors import ArgumentError

__all__ = ["Grid", "build_grid", "time_resolution"]

# Round-off allowance, in units of the dtype's machine epsilon times the magnitude of the
# interval's end points: t values made by linspace or arithmetic carry a few ulps.
_ULPS = 4.0
# Default bound on the total number of steps of one solve (torchdiffeq's max_num_steps default).
MAX_NUM_STEPS = 2**31 - 1


def time_resolution(dtype: torch.dtype) -> float:
    """Machine epsilon of the floating-point ``dtype`` the output times are given in.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers import time_resolution
    >>> time_resolution(torch.float32) == torch.finfo(torch.float32).eps
    True
    """
    return float(torch.finfo(dtype).eps)


def _count(a: float, b: float, h: float, eps: float) -> int:
    """Steps for the interval ``[a, b]`` with step ``h > 0`` at relative resolution ``eps``."""
    length = abs(b - a)
    r = length / h
    m = round(r)
    if m >= 1:
        tol = _ULPS * eps * max(abs(a), abs(b)) + _ULPS * 2.0**-52 * max(length, m * h)
        if abs(length - m * h) <= tol:
            return m
    return max(1, math.ceil(r))


class Grid:
    """The step end points of a solve: output intervals cut into steps, generated lazily.

    Parameters
    ----------
    times : sequence of float
        Strictly monotone output times (as Python floats).
    step_size : float or None
        Positive step size; ``None`` takes one step per output interval (the
        grid is ``times`` itself).
    eps : float, default 2**-52
        Relative resolution of the dtype ``times`` came in (see :func:`time_resolution`).
    points : sequence of float, optional
        An explicit grid instead of ``step_size`` (torchdiffeq's ``grid_constructor``):
        monotone in the direction of ``times``, from ``times[0]`` to ``times[-1]``.
        Output times are inserted where no point lies within round-off of them
        and points within round-off are moved onto them, so every output is a
        step end point.
    max_num_steps : int, default 2**31 - 1
        Refuse grids with more steps than this (before anything is allocated).

    Examples
    --------
    >>> from odenet.solvers import Grid
    >>> g = Grid([0.0, 0.25, 1.0], 0.3)
    >>> len(g), list(g), g.out_index
    (5, [0.0, 0.25, 0.55, 0.85, 1.0], [0, 1, 4])
    >>> [round(g.size(n), 12) for n in range(g.num_steps)]
    [0.25, 0.3, 0.3, 0.15]
    """

    def __init__(
        self,
        times: Sequence[float],
        step_size: float | None,
        *,
        eps: float = 2.0**-52,
        points: Sequence[float] | None = None,
        max_num_steps: int = MAX_NUM_STEPS,
    ) -> None:
        times = [float(x) for x in times]
        self.times = times
        self._points: list[float] | None = None
        if points is not None:
            self._init_points(times, [float(x) for x in points], eps)
        else:
            counts = []
            for a, b in itertools.pairwise(times):
                counts.append(1 if step_size is None else _count(a, b, float(step_size), eps))
            self._counts = counts
            self._h = None if step_size is None else float(step_size)
            out = [0]
            for c in counts:
                out.append(out[-1] + c)
            self.out_index = out
        if self.num_steps > max_num_steps:
            raise ArgumentError(
                f"step_size: {step_size!r} over the output times from {times[0]:.6g} to "
                f"{times[-1]:.6g} means {self.num_steps:.4g} steps, more than max_num_steps="
                f"{max_num_steps}; use a larger step_size or raise options['max_num_steps']"
            )

    def _init_points(self, times: list[float], pts: list[float], eps: float) -> None:
        direction = 1.0 if times[-1] > times[0] else -1.0

        def close(x: float, y: float) -> bool:
            return abs(x - y) <= _ULPS * eps * max(abs(x), abs(y))

        merged: list[float] = []
        out: list[int] = []
        k = 0
        for x in pts:
            # output times that x has passed: insert them, so that a step ends on each
            while k < len(times) and (x - times[k]) * direction > 0 and not close(x, times[k]):
                merged.append(times[k])
                out.append(len(merged) - 1)
                k += 1
            if k < len(times) and close(x, times[k]):  # x is an output time up to round-off
                merged.append(times[k])
                out.append(len(merged) - 1)
                k += 1
            elif merged and ((x - merged[-1]) * direction <= 0 or close(x, merged[-1])):
                continue  # within round-off of the previous point
            else:
                merged.append(x)
        self._points = merged
        self.out_index = out

    # -- structure ------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Total number of steps ``Nt``."""
        return self.out_index[-1]

    def __len__(self) -> int:
        return self.num_steps + 1

    def interval(self, n: int) -> tuple[int, int, bool]:
        """``(k, j, last)``: step ``n`` is step ``j`` of output interval ``k`` (from output ``k``
        to ``k + 1``), and ``last`` says whether it ends on output ``k + 1``.

        Examples
        --------
        >>> from odenet.solvers import Grid
        >>> Grid([0.0, 1.0, 2.0], 0.5).interval(2)
        (1, 0, False)
        """
        k = bisect.bisect_right(self.out_index, n) - 1
        j = n - self.out_index[k]
        return k, j, n + 1 == self.out_index[k + 1]

    def __getitem__(self, n: int) -> float:
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(f"grid index {n} out of range for {len(self)} points")
        if self._points is not None:
            return self._points[n]
        k = bisect.bisect_right(self.out_index, n) - 1
        j = n - self.out_index[k]
        if j == 0 or self._h is None:
            return self.times[k]
        a, b = self.times[k], self.times[k + 1]
        return a + j * math.copysign(self._h, b - a)

    def __iter__(self):
        return (self[n] for n in range(len(self)))

    def size(self, n: int) -> float:
        """The signed length of step ``n``: the step size itself, except for the shortened
        last step of an interval (``grid[n + 1] - grid[n]``) and explicit grids."""
        if self._points is not None:
            return self._points[n + 1] - self._points[n]
        k, _, last = self.interval(n)
        a, b = self.times[k], self.times[k + 1]
        if self._h is None:
            return b - a
        if not last:
            return math.copysign(self._h, b - a)
        return b - self[n]

    @property
    def sizes(self) -> _Sizes:
        """A read-only sequence view of the signed step sizes."""
        return _Sizes(self)


class _Sizes(Sequence):
    """``grid.sizes[n] == grid.size(n)``, without storing them."""

    __slots__ = ("_grid",)

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def __len__(self) -> int:
        return self._grid.num_steps

    def __getitem__(self, n):  # type: ignore[override]
        if isinstance(n, slice):
            return [self._grid.size(i) for i in range(*n.indices(len(self)))]
        if n < 0:
            n += len(self)
        if not 0 <= n < len(self):
            raise IndexError(f"step index {n} out of range for {len(self)} steps")
        return self._grid.size(n)


def build_grid(
    times: Sequence[float], step_size: float, *, eps: float = 2.0**-52
) -> tuple[list[float], list[int]]:
    """Cut every output interval into steps of ``step_size``, the last one shortened.

    The materialised form of :class:`Grid` (which generates the same points lazily).

    Parameters
    ----------
    times : sequence of float
        Strictly monotone output times.
    step_size : float
        Positive step size; its sign is taken from the direction of ``times``.
    eps : float, default 2**-52
        Relative resolution of the dtype the times came in: an interval within
        round-off of a whole number of steps takes exactly that many.

    Returns
    -------
    grid : list of float
        All step end points, ``grid[0] == times[0]`` and every output time is in it exactly.
    out_index : list of int
        ``grid[out_index[k]] == times[k]``.

    Examples
    --------
    >>> from odenet.solvers import build_grid
    >>> build_grid([0.0, 0.25, 1.0], 0.3)
    ([0.0, 0.25, 0.55, 0.85, 1.0], [0, 1, 4])
    """
    g = Grid(times, step_size, eps=eps)
    return list(g), list(g.out_index)
