"""The reversible strategy: rebuild the states by inverse steps, O(1) memory in the step count."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from odenet.errors import ArgumentError, GradientError
from odenet.gradients._anode import ANODE
from odenet.gradients._backprop import Backprop
from odenet.gradients._base import GradientStrategy
from odenet.gradients._common import (
    ParamGrads,
    Replay,
    _buffers_of,
    _closure_leaves,
    _device_module,
    _modules_of,
    closure_error,
    forward_mode_active,
    func_transform_active,
    grad_guard,
    refuse_double_backward,
    vjp,
    zeros_if_none,
)
from odenet.solvers._methods import method_names
from odenet.solvers._problem import Problem, State, as_state, comps
from odenet.solvers._reversible import ReversibleMethod, ReversibleProblem

__all__ = ["ReconstructionWarning", "Reversible", "solve_reversible"]


class ReconstructionWarning(RuntimeWarning):
    """The states rebuilt by :class:`Reversible` in the backward pass drifted from the forward's.

    Issued when the relative difference between a rebuilt state and the state the forward
    pass computed at an output time (``y0`` included) exceeds the strategy's ``tolerance``:
    the gradient is then that of a perturbed trajectory. See
    :func:`odenet.analysis.reconstruction` for the step counts and dtypes where this happens.

    Examples
    --------
    >>> import warnings, odenet
    >>> issubclass(odenet.gradients.ReconstructionWarning, RuntimeWarning)
    True
    """


class Reversible(GradientStrategy):
    r"""Exact gradients of a reversible solve at memory independent of the number of steps.

    For the reversible methods (``reversible_heun``, ``alf``,
    ``leapfrog``; :data:`odenet.solvers.REVERSIBLE_METHODS`). The forward pass runs without
    an autograd graph and keeps only the outputs at the requested times and the final
    augmented state (the state and what the method carries, e.g. ``ŷ`` and ``f(ŷ)`` of
    reversible Heun). The backward pass walks the steps from last to first: it rebuilds the
    state before each step with the method's explicit inverse step, re-runs that one step
    with a graph and takes its vector–Jacobian product. The result is the gradient of the
    discrete forward map (that of :class:`Backprop` on the same method) up to the round-off
    of the rebuilt states; the peak memory is one step's graph, whatever ``Nt``.

    The rebuilt state at every output time (``y0`` included) is compared with the one the
    forward pass computed; when their relative difference exceeds ``tolerance`` a
    :class:`ReconstructionWarning` says so (the inverse maps amplify round-off: see
    :func:`odenet.analysis.reconstruction`). The largest difference of the last backward
    pass is kept in :attr:`last_reconstruction_error`.

    Cost: the forward solve, then per step one inverse step, one step with graph and its
    backward (for reversible Heun and ALF: two evaluations of ``func`` and one
    vector–Jacobian product).

    Under :mod:`torch.func` transforms (``vmap``, ``grad``, ``jacrev``, ``jvp``, ...) and
    forward-mode AD the steps are differentiated directly, as :class:`Backprop` does (the
    same derivatives, backprop's memory).

    Requirements: ``func`` must be deterministic (no dropout in training mode: random draws
    are detected and refused), gradients with respect to ``t`` are not available, and
    tensors that ``func`` reaches only through a closure must be passed with ``params=``.
    Double backward is not supported (use ``gradient="backprop"``).

    Parameters
    ----------
    tolerance : float, optional
        Relative reconstruction error above which to warn. Default: the square root of the
        state dtype's machine epsilon (3.5e-4 in float32, 1.5e-8 in float64).

    Attributes
    ----------
    last_reconstruction_error : float or None
        Largest relative difference between rebuilt and forward states at the output times,
        measured by the last backward pass.

    Examples
    --------
    >>> import torch, odenet
    >>> lin = torch.nn.Linear(3, 3).double()
    >>> y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    >>> t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> def run(gradient):
    ...     y = odenet.odeint(lambda t, y: torch.tanh(lin(y)), y0, t, method="reversible_heun",
    ...                       step_size=0.01, gradient=gradient, params=list(lin.parameters()))
    ...     return torch.autograd.grad(y[-1].square().sum(), (y0, lin.weight))
    >>> g_rev, g_bp = run("reversible"), run("backprop")
    >>> all(torch.allclose(a, b, rtol=1e-10, atol=0) for a, b in zip(g_rev, g_bp))
    True
    """

    name = "reversible"

    def __init__(self, tolerance: float | None = None) -> None:
        if tolerance is not None:
            if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
                raise ArgumentError(
                    f"tolerance: expected a positive number or None, got {type(tolerance).__name__}"
                )
            if not (tolerance > 0 and math.isfinite(tolerance)):
                raise ArgumentError(f"tolerance: expected a positive number, got {tolerance}")
        self.tolerance = None if tolerance is None else float(tolerance)
        self.last_reconstruction_error: float | None = None

    def solve(self, problem: Problem, y0: State) -> State:
        method = problem.tableau
        label = getattr(method, "name", "") or type(method).__name__
        raise ArgumentError(
            f"gradient: 'reversible' rebuilds states by inverse steps and needs a reversible "
            f"method ({method_names('reversible')}), but method {label!r} is not one; use "
            "gradient='anode' or 'revolve' for exact gradients at low memory with it"
        )

    def __repr__(self) -> str:
        tol = "" if self.tolerance is None else f"tolerance={self.tolerance}"
        return f"Reversible({tol})"


# -- the forward / backward pass ------------------------------------------------------------------
class _Call:
    """One call: the problem, the user state, the checked start state, the buffers, and the
    random-number state and buffers at its start (what a recomputation replays)."""

    def __init__(self, rp: ReversibleProblem, y0: tuple[Tensor, ...], strategy: GradientStrategy):
        self.problem = rp
        self.strategy = strategy
        self.name = strategy.name or type(strategy).__name__
        self.m = len(y0)
        self.device = y0[0].device
        self.buffers = _buffers_of(_modules_of(rp.func, None))
        self.start = Replay(self.device, self.buffers)
        x = tuple(y0)
        with torch.enable_grad():
            s0 = rp.init(x, f=rp.checked_f(x))
        self.check_closure(s0, x, "on the first evaluation")
        self.s0 = tuple(c.detach() for c in s0)

    def check_closure(self, outputs: Sequence[Tensor], allowed: Sequence[Tensor], when: str):
        outs = [o for o in outputs if o.requires_grad]
        if not outs:
            return
        p = self.problem
        bad = _closure_leaves(outs, (*allowed, *p.params, p.t))
        if bad:
            raise closure_error(self.name, bad, when)


def _rng_states(device: torch.device) -> tuple[Tensor, Tensor | None]:
    mod = _device_module(device)
    return torch.get_rng_state(), None if mod is None else mod.get_rng_state(device)


def _rel_error(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    num = max(float((x - y).abs().max()) if x.numel() else 0.0 for x, y in zip(a, b))
    den = max(float(y.abs().max()) if y.numel() else 0.0 for y in b)
    return num / max(den, torch.finfo(b[0].real.dtype).tiny)


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: _Call, *inputs: Tensor):
        rp = call.problem
        y0 = tuple(inputs[: call.m])
        with torch.no_grad():
            outs, final = rp.solve(y0, start=call.s0)
            stacked = rp.stack(outs)
        call.s0 = None  # the start state is rebuilt in backward, not kept
        return (*stacked, *final)

    @staticmethod
    def setup_context(ctx, inputs, output):
        call: _Call = inputs[0]
        m = call.m
        final = output[m:]
        ctx.mark_non_differentiable(*final)
        ctx.call = call
        ctx.width = len(final)
        ctx.save_for_backward(*inputs[1 : 1 + m], *final, *output[:m])

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        refuse_double_backward("reversible")
        call: _Call = ctx.call
        rp = call.problem
        m, w = call.m, ctx.width
        saved = ctx.saved_tensors
        y0, final, stacked = saved[:m], saved[m : m + w], saved[m + w :]
        need = ctx.needs_input_grad
        need_y = need[1 : 1 + m]
        pg = ParamGrads(rp.params, need[1 + m :])
        ps = pg.tensors
        gs = [zeros_if_none(g, s) for g, s in zip(grads[:m], stacked)]
        a = [gs[c][-1].clone() for c in range(m)] + [torch.zeros_like(c) for c in final[m:]]
        s = final
        worst = 0.0
        with grad_guard(call.device, call.buffers):
            for k in range(rp.num_outputs - 1, 0, -1):
                for n in range(rp.out_index[k] - 1, rp.out_index[k - 1] - 1, -1):
                    with torch.no_grad():
                        prev = rp.inverse(n, s)
                    x = tuple(c.detach().requires_grad_() for c in prev)
                    with torch.enable_grad():
                        out = rp.step(n, x)
                    call.check_closure(out, x, f"rebuilding step {n} (t = {rp.grid[n]:.6g})")
                    g = vjp(out, a, (*x, *ps))
                    a = [zeros_if_none(gi, xi) for gi, xi in zip(g[:w], x)]
                    pg.add(g[w:])
                    s = prev
                ref = y0 if k == 1 else tuple(st[k - 1] for st in stacked)
                e = _rel_error(rp.user(s), ref)
                if not (e <= worst or math.isnan(worst)):  # the largest; a NaN sticks
                    worst = e
                if k > 1:
                    for c in range(m):
                        a[c] = a[c] + gs[c][k - 1]
            # the start state s0 = init(y0): differentiate through it at the true y0
            x0 = tuple(c.detach().requires_grad_(bool(nd)) for c, nd in zip(y0, need_y))
            with torch.enable_grad():
                s0 = rp.init(x0)
            yin = [c for c in x0 if c.requires_grad]
            g = vjp(s0, a, (*yin, *ps))
            pg.add(g[len(yin) :])
        it = iter(g[: len(yin)])
        gy: list[Tensor | None] = []
        for c, nd in enumerate(need_y):
            gy.append(zeros_if_none(next(it), y0[c]) + gs[c][0] if nd else None)
        _report(call, worst, y0[0].real.dtype)
        return (None, *gy, *pg.result())


def _report(call: _Call, worst: float, dtype: torch.dtype) -> None:
    strategy = call.strategy
    strategy.last_reconstruction_error = worst
    tol = strategy.tolerance
    if tol is None:
        tol = math.sqrt(torch.finfo(dtype).eps) if dtype.is_floating_point else 1.5e-8
    if not worst <= tol:
        rp = call.problem
        by = f"by {worst:.3g} (relative)" if math.isfinite(worst) else "by inf or nan"
        warnings.warn(
            f"gradient='reversible': the states rebuilt by inverse steps of method "
            f"{rp.method.name!r} differ from the forward pass's {by} at "
            f"an output time, more than the tolerance {tol:.3g}; the gradient belongs to a "
            f"perturbed trajectory ({rp.num_steps} steps in {dtype}). Use fewer steps, float64, "
            "another reversible method, or gradient='anode'; odenet.analysis.reconstruction "
            "shows where the reconstruction fails",
            ReconstructionWarning,
            stacklevel=2,
        )


class _RecomputeFunction(torch.autograd.Function):
    """ANODE on a reversible method: keep the call's input, recompute the solve with graph in
    the backward pass (random draws and buffers replayed from the call's start)."""

    @staticmethod
    def forward(call: _Call, *inputs: Tensor):
        rp = call.problem
        with torch.no_grad():
            outs, _ = rp.solve(tuple(inputs[: call.m]), start=call.s0)
        call.s0 = None
        return rp.stack(outs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        call: _Call = inputs[0]
        ctx.call = call
        ctx.save_for_backward(*inputs[1 : 1 + call.m])

    @staticmethod
    def backward(ctx, *grads: Tensor | None):
        call: _Call = ctx.call
        refuse_double_backward(call.name)
        rp = call.problem
        m = call.m
        y0 = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_y = need[1 : 1 + m]
        pg = ParamGrads(rp.params, need[1 + m :])
        with grad_guard(call.device, call.buffers):
            call.start.restore()
            x = tuple(c.detach().requires_grad_(bool(nd)) for c, nd in zip(y0, need_y))
            with torch.enable_grad():
                outs, _ = rp.solve(x, start=rp.init(x))
            gs = [g if g is not None else torch.zeros((len(outs), *c.shape), dtype=c.dtype,
                                                      device=c.device)
                  for g, c in zip(grads, y0)]
            flat = [o[c] for o in outs[1:] for c in range(m)]
            cots = [gs[c][k] for k in range(1, len(outs)) for c in range(m)]
            call.check_closure(flat, x, "recomputing the solve")
            yin = [c for c in x if c.requires_grad]
            g = vjp(flat, cots, (*yin, *pg.tensors))
            pg.add(g[len(yin) :])
        it = iter(g[: len(yin)])
        gy: list[Tensor | None] = []
        for c, nd in enumerate(need_y):
            gy.append(zeros_if_none(next(it), y0[c]) + gs[c][0] if nd else None)
        return (None, *gy, *pg.result())


# -- the dispatch from odeint ---------------------------------------------------------------------
def solve_reversible(
    func: Callable,
    y0: State,
    t: Tensor,
    method: ReversibleMethod,
    strategy: GradientStrategy,
    *,
    tuple_state: bool,
    params: tuple[Tensor, ...],
    opts: Mapping[str, Any],
    time_dtype: torch.dtype,
    callback_step: Callable | None = None,
    event_fn: Callable | None = None,
) -> State:
    """Solve with a reversible method (the branch :func:`odenet.odeint` takes for them).

    ``gradient="reversible"`` differentiates by inverse steps (:class:`Reversible`);
    ``"backprop"`` (and its subclasses) backpropagates through every step, the reference
    the reversible gradient is checked against; ``"anode"`` keeps the call's input and
    recomputes the whole solve with graph in the backward pass (random draws replayed).
    Other strategies are refused.

    Examples
    --------
    >>> import torch, odenet
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]),
    ...                   method="alf", step_size=0.1, gradient="reversible")
    >>> y.shape
    torch.Size([2, 2])
    """
    name = method.name or type(method).__name__
    if event_fn is not None:
        raise ArgumentError(
            f"event_fn: event handling is not available with the reversible method {name!r}; "
            "use an explicit method"
        )
    if opts.get("perturb"):
        raise ArgumentError(
            f"options['perturb']: not supported by the reversible method {name!r} (its inverse "
            "steps evaluate func at the same times as its steps)"
        )
    if t.requires_grad:
        raise ArgumentError(
            f"t: gradients with respect to the output times are not available with the "
            f"reversible method {name!r}; pass t.detach()"
        )
    if not isinstance(strategy, (Reversible, Backprop, ANODE)):
        raise ArgumentError(
            f"gradient: {strategy.name or type(strategy).__name__!r} cannot differentiate the "
            f"reversible method {name!r}; use gradient='reversible' (rebuilds the states, memory "
            "independent of the step count), 'anode' (recomputes the solve) or 'backprop' "
            "(autograd through every step)"
        )
    y_comps = comps(y0)
    if len(t) == 1:
        return as_state(tuple(torch.stack([c]) for c in y_comps), tuple_state)
    grid_points = None
    if opts.get("grid_constructor") is not None:
        from odenet._integrate import _grid_points

        grid_points = _grid_points(opts["grid_constructor"], func, y0, t)
    rp = ReversibleProblem(
        func,
        method,
        t,
        opts.get("step_size"),
        tuple_state=tuple_state,
        m=len(y_comps),
        check_finite=opts.get("check_finite", True),
        params=params,
        time_dtype=time_dtype,
        grid_points=grid_points,
        max_num_steps=opts.get("max_num_steps", 2**31 - 1),
        callback_step=callback_step,
    )
    transformed = func_transform_active() or forward_mode_active((*y_comps, *params))
    if not transformed:  # a first-step check that needs fresh leaves
        rp.check_separable(y_comps)
    needs_grad = torch.is_grad_enabled() and (
        any(c.requires_grad for c in y_comps) or any(p.requires_grad for p in params)
    )
    if not needs_grad:
        with torch.no_grad():
            s0 = rp.init(y_comps, f=rp.checked_f(y_comps))
            outs, _ = rp.solve(y_comps, start=s0)
        return as_state(rp.stack(outs), tuple_state)
    if isinstance(strategy, ANODE) and not transformed:
        call = _Call(rp, y_comps, strategy)
        out = _RecomputeFunction.apply(call, *y_comps, *params)
        return as_state(tuple(out), tuple_state)
    if isinstance(strategy, Reversible) and not transformed:
        call = _Call(rp, y_comps, strategy)
        rng = _rng_states(call.device)
        out = _ReversibleFunction.apply(call, *y_comps, *params)
        after = _rng_states(call.device)
        if not torch.equal(rng[0], after[0]) or (
            rng[1] is not None and not torch.equal(rng[1], after[1])
        ):
            raise GradientError(
                "gradient='reversible': func drew random numbers during the solve (e.g. dropout "
                "in training mode); rebuilding states by inverse steps needs a deterministic "
                "func. Call model.eval(), or use gradient='backprop'"
            )
        return as_state(tuple(out[: len(y_comps)]), tuple_state)
    # backprop, or a torch.func transform / forward mode (whose backward passes cannot start
    # from fresh leaves): differentiate the steps themselves, the same derivatives
    s0 = rp.init(y_comps, f=rp.checked_f(y_comps))
    outs, _ = rp.solve(y_comps, start=s0)
    return as_state(rp.stack(outs), tuple_state)
