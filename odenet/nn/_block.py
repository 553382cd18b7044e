"""``ODEBlock``: a network layer that integrates a right-hand side over ``[0, T]``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from odenet._integrate import check_signature, odeint
from odenet._layout import like_layout
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients._base import GradientStrategy, resolve_gradient
from odenet.nn._checks import check_positive_int
from odenet.solvers._methods import check_implicit, resolve_method
from odenet.solvers._problem import is_compiling
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = ["ODEBlock"]


def _check_compile(compile: object, block: ODEBlock) -> int:
    """``compile`` as a chunk length (0: eager); the block's method and strategy checked."""
    if isinstance(compile, bool):
        chunk = 10 if compile else 0
    elif isinstance(compile, int) and compile > 0:
        chunk = compile
    else:
        raise ArgumentTypeError(
            f"compile: expected True, False or a positive number of steps per compiled chunk, "
            f"got {compile!r}"
        )
    if chunk:
        from odenet.gradients._anode import ANODE
        from odenet.gradients._backprop import Backprop

        tab = block.tableau
        if not isinstance(tab, ButcherTableau) or tab.is_adaptive or not tab.is_explicit:
            raise ArgumentError(
                f"compile: a compiled block needs an explicit fixed-step method, not "
                f"{tab.name!r} (adaptive, IMEX and reversible methods decide on the host)"
            )
        if type(block.gradient) not in (Backprop, ANODE):
            raise ArgumentError(
                f"compile: a compiled block needs gradient='backprop' or 'anode', not "
                f"{block.gradient.name!r}"
            )
    return chunk


class ODEBlock(nn.Module):
    r"""Integrate ``y' = rhs(t, y)`` (``− L y`` with ``implicit=L``) from 0 to ``T``.

    ``forward(y)`` returns the state at ``T`` after ``steps`` fixed steps of size
    ``T / steps`` of ``method``, computed by :func:`odenet.odeint` with the given
    gradient strategy. Its parameters are those of ``rhs`` (and of ``implicit``).
    With an adaptive method (an embedded pair such as ``"dopri5"``) the controller
    chooses the steps from ``options`` (``rtol``, ``atol``, ...) and ``steps`` stays unset.

    A channels-last input (:data:`torch.channels_last`) gives a channels-last output; under
    :func:`torch.autocast` the right-hand side runs in the autocast dtype while the state
    keeps the input's dtype; a tuple state gives a tuple.

    Parameters
    ----------
    rhs : callable
        ``rhs(t, y)``, typically a :class:`ResidualRHS` or :class:`ParabolicRHS`. For a
        tuple state ``y`` (as :func:`odenet.odeint` accepts), ``rhs`` returns a tuple.
    T : float, default 1.0
        Length of the time interval (positive).
    steps : int, optional
        Number of fixed steps (positive; default 4). Not for adaptive methods.
    method : str or tableau, default "rk4"
        Any method of :data:`odenet.METHODS` (IMEX ones need ``implicit``), a reversible
        method, or an adaptive one of :data:`odenet.solvers.ADAPTIVE_METHODS`.
    gradient : str or GradientStrategy, default "anode"
        ``"anode"`` (store only the block input, recompute in backward: exact
        discrete gradients at ``O(L) + O(N_t)`` memory over ``L`` blocks), or any other
        name of :data:`odenet.gradients.STRATEGIES`, or a strategy instance.
    implicit : linear operator, optional
        ``L`` of ``y' = rhs(t, y) − L y`` (e.g. :class:`odenet.linear.ConvFFT`).
    options : dict, optional
        Options of an adaptive method, as :func:`odenet.odeint` takes them (``rtol``,
        ``atol``, ``first_step``, ``max_num_steps``, ...). Only for adaptive methods.
    compile : bool or int, default False
        Run the solve through :func:`torch.compile` (``fullgraph=True``) in chunks of
        ``compile`` steps (``True``: 10): one compiled graph of a chunk's unrolled steps is
        called ``steps / compile`` times, so compiling costs what a short solve costs and the
        graph is reused for every chunk (a remainder chunk compiles once more). Explicit
        methods with ``gradient="backprop"`` or ``"anode"`` (ANODE then checkpoints each
        chunk); the steps are the eager block's to round-off. The first call compiles.

    Attributes
    ----------
    method : str or tableau
        ``method`` as given (a name stays a name).
    tableau : ButcherTableau or IMEXTableau
        The resolved method (:func:`odenet.solvers.resolve_method`), what the block steps with.

    Examples
    --------
    >>> import torch, odenet
    >>> block = odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(4, 4)),
    ...                            steps=2, gradient="backprop")
    >>> block(torch.randn(2, 4, 6, 6)).shape
    torch.Size([2, 4, 6, 6])
    >>> adaptive = odenet.nn.ODEBlock(lambda t, y: -y, method="dopri5",
    ...                               options={"rtol": 1e-8, "atol": 1e-10})
    >>> round(adaptive(torch.ones(1, dtype=torch.float64)).item(), 8)  # exp(-1)
    0.36787944
    """

    def __init__(
        self,
        rhs: Callable,
        T: float = 1.0,
        steps: int | None = None,
        method: str | ButcherTableau | IMEXTableau = "rk4",
        gradient: str | GradientStrategy = "anode",
        implicit=None,
        options: Mapping[str, Any] | None = None,
        compile: bool | int = False,
    ) -> None:
        super().__init__()
        check_signature("rhs", rhs)
        if isinstance(T, bool) or not isinstance(T, (int, float)):
            raise ArgumentTypeError(f"T: expected a real number, got {type(T).__name__}")
        if not math.isfinite(T) or T <= 0:
            raise ArgumentError(f"T: expected a finite positive number, got {T}")
        tableau = resolve_method(method)
        adaptive = isinstance(tableau, ButcherTableau) and tableau.is_adaptive
        if adaptive:
            if steps is not None:
                raise ArgumentError(
                    f"steps: the adaptive method {tableau.name!r} chooses its own steps; leave "
                    "steps out and set its tolerances with options={'rtol': ..., 'atol': ...}"
                )
            if options is not None and not isinstance(options, Mapping):
                raise ArgumentTypeError(
                    f"options: expected a dict of adaptive options, got {type(options).__name__}"
                )
        else:
            if options is not None:
                raise ArgumentError(
                    f"options: only adaptive methods take options; method {tableau.name!r} "
                    "takes fixed steps (steps=...); drop options or use an adaptive method "
                    "such as 'dopri5'"
                )
            steps = 4 if steps is None else steps
            check_positive_int("steps", steps)
        check_implicit(tableau, implicit)
        self.rhs = rhs
        self.implicit = implicit
        self.T, self.steps, self.method, self.tableau = float(T), steps, method, tableau
        self.options = dict(options) if options is not None else None
        self.adaptive = adaptive
        self.gradient = resolve_gradient(gradient)
        self.compile = _check_compile(compile, self)
        self._compiled: Callable | None = None

    def forward(self, y: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
        """The state at ``T`` starting from ``y`` at 0 (a tuple for a tuple state).

        Examples
        --------
        >>> import torch, odenet
        >>> class Oscillator(torch.nn.Module):  # a tuple state (q, p)
        ...     def forward(self, t, y):
        ...         q, p = y
        ...         return p, -q
        >>> block = odenet.nn.ODEBlock(Oscillator(), T=1.0, steps=10, gradient="backprop")
        >>> q, p = block((torch.ones(2), torch.zeros(2)))
        >>> round(q[0].item(), 4), round(p[0].item(), 4)  # cos 1, -sin 1
        (0.5403, -0.8415)
        """
        tuple_state = isinstance(y, (tuple, list))
        comps = tuple(y) if tuple_state else (y,)
        if tuple_state and not comps:
            raise ArgumentTypeError("y: expected a Tensor or a non-empty tuple of Tensors, got ()")
        for m, c in enumerate(comps):
            name = f"y[{m}]" if tuple_state else "y"
            if not isinstance(c, Tensor):
                raise ArgumentTypeError(
                    f"y: expected a Tensor, got {type(c).__name__}"
                    if not tuple_state
                    else f"y: expected a Tensor, got {type(y).__name__} holding a "
                    f"{type(c).__name__} as {name} (a tuple state is a tuple of Tensors)"
                )
            if not (c.is_floating_point() or c.is_complex()):
                raise ArgumentTypeError(
                    f"{name}: expected a floating point tensor, got dtype {c.dtype} (convert "
                    "with .float())"
                )
        first = comps[0]
        dtype = first.real.dtype
        if self.adaptive:
            t = torch.tensor([0.0, self.T], dtype=dtype, device=first.device)
            out = odeint(self.rhs, tuple(comps) if tuple_state else first, t,
                         method=self.tableau, options=self.options, gradient=self.gradient)
            if tuple_state:
                return tuple(like_layout(o[-1], c) for o, c in zip(out, comps))
            return like_layout(out[-1], first)
        if self.compile and not is_compiling():
            return self._chunked(tuple_state, comps)
        if is_compiling():  # torch.compile: the grid as t, nothing read on the host
            t = torch.linspace(0.0, self.T, self.steps + 1, dtype=dtype, device=first.device)
            h = None
        else:
            t = torch.tensor([0.0, self.T], dtype=dtype, device=first.device)
            h = self.T / self.steps
        out = odeint(
            self.rhs,
            tuple(comps) if tuple_state else first,
            t,
            method=self.tableau,
            step_size=h,
            gradient=self.gradient,
            implicit=self.implicit,
        )
        if tuple_state:
            return tuple(like_layout(o[-1], c) for o, c in zip(out, comps))
        return like_layout(out[-1], first)

    def _chunked(self, tuple_state: bool, comps: tuple[Tensor, ...]):
        """The solve as ``steps / compile`` calls of one compiled chunk of ``compile`` steps."""
        if self._compiled is None:
            def chunk(state, t):
                out = odeint(self.rhs, state, t, method=self.tableau, gradient=self.gradient,
                             implicit=self.implicit)
                return tuple(o[-1] for o in out) if isinstance(state, tuple) else out[-1]

            self._compiled = torch.compile(chunk, fullgraph=True)
        first = comps[0]
        kw = {"dtype": first.real.dtype, "device": first.device}
        state = tuple(comps) if tuple_state else first
        done = 0
        while done < self.steps:
            k = min(self.compile, self.steps - done)
            t = torch.linspace(self.T * done / self.steps, self.T * (done + k) / self.steps,
                               k + 1, **kw)
            state = self._compiled(state, t)
            done += k
        if tuple_state:
            return tuple(like_layout(o, c) for o, c in zip(state, comps))
        return like_layout(state, first)

    def extra_repr(self) -> str:
        name = self.tableau.name
        if self.adaptive:
            return (f"T={self.T}, method={name!r}, options={self.options!r}, "
                    f"gradient={self.gradient!r}")
        more = f", compile={self.compile}" if self.compile else ""
        return (f"T={self.T}, steps={self.steps}, method={name!r}, gradient={self.gradient!r}"
                f"{more}")
