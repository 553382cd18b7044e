"""A validated fixed-step solve: right-hand side, scheme, time grid and the loop.

:class:`Problem` is what :func:`odenet.odeint` hands to a gradient strategy. It
knows the global step sequence (every output interval is cut into steps of the
requested size, the last one shortened so that a step lands exactly on each
output time) and runs any range of it. Strategies decide what to store and how
to differentiate; they never rebuild the grid or the step functions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet.errors import FunctionOutputError, NonFiniteStateError
from odenet.solvers._stepper import StepFn, make_step
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = ["Problem", "State", "build_grid"]

State = Tensor | tuple[Tensor, ...]

# An interval of length r steps is cut into ceil(r - _GRID_EPS * max(r, 1)) steps, so that
# round-off in t / h never creates an extra, vanishingly short final step.
_GRID_EPS = 1e-9


def build_grid(times: Sequence[float], step_size: float) -> tuple[list[float], list[int]]:
    """Cut every output interval into steps of ``step_size``, the last one shortened.

    Parameters
    ----------
    times : sequence of float
        Strictly monotone output times.
    step_size : float
        Positive step size; its sign is taken from the direction of ``times``.

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
    grid = [float(times[0])]
    out_index = [0]
    for a, b in itertools.pairwise(times):
        a, b = float(a), float(b)
        r = abs(b - a) / step_size
        n = max(1, math.ceil(r - _GRID_EPS * max(r, 1.0)))
        h = math.copysign(step_size, b - a)
        grid.extend(a + j * h for j in range(1, n))
        grid.append(b)
        out_index.append(len(grid) - 1)
    return grid, out_index


def _describe(x: Tensor) -> str:
    return f"shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"


def _check_output(out: object, y: State, tuple_state: bool) -> None:
    """Raise :class:`FunctionOutputError` unless ``out`` matches the state ``y``."""
    if tuple_state:
        if not isinstance(out, (tuple, list)) or len(out) != len(y):
            raise FunctionOutputError(
                f"func: expected a tuple of {len(y)} tensors (one per component of y0), "
                f"got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
            )
        pairs = list(enumerate(zip(out, y)))
    else:
        pairs = [(None, (out, y))]
    for m, (o, ref) in pairs:
        where = "func" if m is None else f"func (component {m})"
        if not isinstance(o, Tensor):
            raise FunctionOutputError(f"{where}: expected a Tensor, got {type(o).__name__}")
        for attr in ("shape", "dtype", "device"):
            if getattr(o, attr) != getattr(ref, attr):
                raise FunctionOutputError(
                    f"{where}: returned a tensor with wrong {attr}: got {_describe(o)}, "
                    f"expected {_describe(ref)} (the state's)"
                )


def _all_finite(y: State) -> bool:
    if isinstance(y, Tensor):
        return bool(torch.isfinite(y).all())
    return all(bool(torch.isfinite(c).all()) for c in y)


def detach_state(y: State) -> State:
    """Detach every tensor of a state."""
    if isinstance(y, Tensor):
        return y.detach()
    return tuple(c.detach() for c in y)


class Problem:
    """A fixed-step initial value problem ready to run, the object gradient strategies drive.

    Contract: ``func(t, y)`` takes and returns the internal state (a Tensor, or a
    tuple of Tensors when :attr:`tuple_state`); :attr:`grid` holds the ``Nt + 1``
    step end points; step ``n`` goes from ``grid[n]`` to ``grid[n + 1]``; output
    ``k`` is the state after :attr:`out_index` ``[k]`` steps.

    Parameters
    ----------
    func : callable
        Right-hand side ``func(t, y)``.
    tableau : ButcherTableau or IMEXTableau
        The scheme.
    t : Tensor
        Output times (1-D, strictly monotone, validated by :func:`odenet.odeint`).
    step_size : float
        Positive step size.
    tuple_state : bool
        Whether the state is a tuple of tensors.
    implicit : linear operator, optional
        ``L`` for IMEX schemes (``y' = func(t, y) - L y``).
    check_finite : bool
        Check the state at every output time and raise :class:`NonFiniteStateError`
        naming the first non-finite step.
    params : tuple of Tensor
        The parameters gradients are taken for (besides ``y0``).

    Examples
    --------
    >>> import torch
    >>> from odenet import METHODS
    >>> from odenet.solvers import Problem
    >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.25)
    >>> p.num_steps, p.solve(torch.ones(1))[-1]
    (4, tensor([0.3164]))
    """

    def __init__(
        self,
        func: Callable,
        tableau: ButcherTableau | IMEXTableau,
        t: Tensor,
        step_size: float,
        *,
        tuple_state: bool = False,
        implicit=None,
        check_finite: bool = True,
        params: tuple[Tensor, ...] = (),
    ):
        self.func = func
        self.tableau = tableau
        self.t = t
        self.step_size = float(step_size)
        self.tuple_state = tuple_state
        self.implicit = implicit
        self.check_finite = check_finite
        self.params = tuple(params)
        self.grid, self.out_index = build_grid(t.tolist(), self.step_size)
        hs = [b - a for a, b in zip(self.grid[:-1], self.grid[1:])]
        self.step_sizes = hs
        cache: dict[float, StepFn] = {}
        for h in hs:
            if h not in cache:
                cache[h] = make_step(tableau, h, tuple_state=tuple_state, implicit=implicit)
        self._steps = [cache[h] for h in hs]
        # Stage times t_n + c_i h_n, computed in float64, cast once to t's dtype/device.
        c = torch.tensor(tableau.c.tolist(), dtype=torch.float64)
        t0 = torch.tensor(self.grid[:-1], dtype=torch.float64)
        ht = torch.tensor(hs, dtype=torch.float64)
        st = (t0[:, None] + ht[:, None] * c[None, :]).to(dtype=t.dtype, device=t.device)
        self._stage_times = [tuple(row.unbind()) for row in st.unbind()] if hs else []

    # -- structure ------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Total number of steps ``Nt`` over all output intervals."""
        return len(self._steps)

    @property
    def num_outputs(self) -> int:
        """Number of output times."""
        return len(self.out_index)

    def with_func(self, func: Callable, *, tuple_state: bool | None = None) -> Problem:
        """A copy of this problem (same grid and scheme) with another right-hand side.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> q = p.with_func(lambda t, y: y)
        >>> q.solve(torch.ones(1))[-1]
        tensor([2.2500])
        """
        new = object.__new__(Problem)
        new.__dict__.update(self.__dict__)
        new.func = func
        if tuple_state is not None and tuple_state != self.tuple_state:
            new.tuple_state = tuple_state
            cache: dict[float, StepFn] = {}
            for h in self.step_sizes:
                if h not in cache:
                    cache[h] = make_step(
                        self.tableau, h, tuple_state=tuple_state, implicit=self.implicit
                    )
            new._steps = [cache[h] for h in self.step_sizes]
        return new

    # -- running --------------------------------------------------------------------------------
    def step(self, n: int, y: State, func: Callable | None = None) -> State:
        """Advance ``y`` by step ``n`` (from ``grid[n]`` to ``grid[n + 1]``).

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.step(0, torch.ones(1))
        tensor([0.5000])
        """
        return self._steps[n](func or self.func, self._stage_times[n], y)

    def advance(self, y: State, start: int, stop: int) -> State:
        """Run steps ``start, ..., stop - 1`` from ``y`` and return the final state.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.advance(torch.ones(1), 0, 2)
        tensor([0.2500])
        """
        f = self.func
        steps, times = self._steps, self._stage_times
        for n in range(start, stop):
            y = steps[n](f, times[n], y)
        return y

    def solve(self, y0: State, *, validate: bool = True) -> list[State]:
        """Run the whole grid from ``y0``; return the states at every output time.

        The first step's evaluations check ``func``'s output (type, shape, dtype,
        device) when ``validate``; with :attr:`check_finite` every output state is
        checked and the first non-finite step located.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["heun"], torch.tensor([0.0, 0.5, 1.0]), 0.5)
        >>> [round(s.item(), 4) for s in p.solve(torch.ones(()))]
        [1.0, 0.625, 0.3906]
        """
        outs = [y0]
        y = y0
        n = 0
        f = self.func
        steps, times = self._steps, self._stage_times
        for k in range(1, len(self.out_index)):
            end = self.out_index[k]
            if n == 0 and validate:
                y = steps[0](self._checked_func(y0), times[0], y)
                n = 1
            while n < end:
                y = steps[n](f, times[n], y)
                n += 1
            if self.check_finite and not _all_finite(y):
                self.raise_nonfinite(k, outs[k - 1])
            outs.append(y)
        return outs

    def stack(self, outs: Sequence[State]) -> State:
        """Stack per-time states into the result layout ``(len(t), *y0.shape)`` (tuple-wise).

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.stack(p.solve(torch.ones(3))).shape
        torch.Size([2, 3])
        """
        if self.tuple_state:
            return tuple(torch.stack([o[m] for o in outs]) for m in range(len(outs[0])))
        return torch.stack(list(outs))

    # -- checks ---------------------------------------------------------------------------------
    def _checked_func(self, y0: State) -> Callable:
        f = self.func
        tuple_state = self.tuple_state

        def checked(t, y):
            out = f(t, y)
            _check_output(out, y0, tuple_state)
            return out

        return checked

    def raise_nonfinite(self, k: int, y_start: State) -> None:
        """Locate the first non-finite step between outputs ``k - 1`` and ``k`` and raise.

        The interval is re-run without graph from the (finite) output ``k - 1``,
        checking every step; the error names the step index and the time it reached.

        Raises
        ------
        NonFiniteStateError
            Always.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: y * y, METHODS["euler"], torch.tensor([0.0, 9.0]), 1.0)
        >>> p.raise_nonfinite(1, torch.tensor([3.0]))
        Traceback (most recent call last):
        ...
        odenet.errors.NonFiniteStateError: the state became non-finite (nan or inf) at step 6 ...
        """
        n0, n1 = self.out_index[k - 1], self.out_index[k]
        y = detach_state(y_start)
        with torch.no_grad():
            for n in range(n0, n1):
                y = self.step(n, y)
                if not _all_finite(y):
                    raise NonFiniteStateError(
                        f"the state became non-finite (nan or inf) at step {n} "
                        f"(t = {self.grid[n + 1]:.6g}, step size {self.step_sizes[n]:.6g}); "
                        "reduce step_size, check func, or pass options={'check_finite': False} "
                        "to skip this check",
                        step=n,
                        time=self.grid[n + 1],
                    )
        raise NonFiniteStateError(
            f"the state became non-finite (nan or inf) between t = {self.grid[n0]:.6g} and "
            f"t = {self.grid[n1]:.6g} (steps {n0} to {n1 - 1}); a re-run of that interval "
            "stayed finite, so func is not deterministic",
            step=None,
            time=self.grid[n1],
        )
