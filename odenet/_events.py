"""Terminal events: step until ``event_fn`` changes sign, then land exactly on the event.

The search runs without graph: fixed steps of ``step_size`` until the combined
event function changes sign, then bisection on the length of the last step. The
state at a trial time is a real Runge–Kutta step of that length from the last
grid point, never an interpolant, so the event state is the discrete solution at
the event time. The solve is then run once more, with the chosen gradient
strategy, on the grid ``t0, t0 + h, ..., t_n, t_event``, with the random-number
generators and module buffers put back as they were, so that it repeats the
search's numbers exactly and its gradient is that of the discrete solve with the
event time held fixed (torchdiffeq's ``odeint`` convention).
With an adaptive method (:func:`solve_to_event_adaptive`) the controller chooses the
steps of the search; the last accepted step is bisected in the same way (a real step of
the pair's solution formula), and the gradient solve runs those accepted steps and the
shortened last one as a fixed grid of the pair's solution formula.
:func:`reroute_event_gradient` adds the dependence of the event time on the
inputs through the implicit function theorem (torchdiffeq's ``odeint_event``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError, EventError, GradientError
from odenet.gradients._base import GradientStrategy
from odenet.gradients._common import (
    Replay,
    _buffers_of,
    _modules_of,
    as_state,
    comps,
    func_transform_active,
)
from odenet.solvers._grid import time_resolution
from odenet.solvers._problem import Problem, State, detach_state, is_compiling
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "combine_event_fn",
    "reroute_event_gradient",
    "solve_to_event",
    "solve_to_event_adaptive",
]

# torchdiffeq's bound on the number of steps of a fixed-step event search.
EVENT_MAX_STEPS = 20000


def combine_event_fn(event_fn: Callable, t0: Tensor, y0: State) -> Callable:
    """One scalar function, positive at ``(t0, y0)``, that crosses zero at the first event.

    ``event_fn(t, y)`` may return several values; each is multiplied by its sign at
    the start and the minimum taken (torchdiffeq's convention), so the event is the
    first time any of them changes sign.
    """
    with torch.no_grad():
        v0 = event_fn(t0, y0)
    if not isinstance(v0, Tensor) or not (v0.is_floating_point() or v0.is_complex()):
        raise ArgumentTypeError(
            "event_fn: expected event_fn(t, y) to return a real floating point tensor, got "
            + (f"dtype {v0.dtype}" if isinstance(v0, Tensor) else type(v0).__name__)
        )
    v0 = v0.real
    if v0.numel() == 0 or not bool(torch.isfinite(v0).all()):
        raise ArgumentError("event_fn: returned an empty or non-finite value at the initial time")
    if bool((v0 == 0).any()):
        raise ArgumentError(
            "event_fn: is exactly zero at the initial time t[0]; an event is a sign change "
            "after the start"
        )
    signs = torch.sign(v0)

    def combined(t: Tensor, y: State) -> Tensor:
        return torch.min(event_fn(t, y).real * signs)

    return combined


def solve_to_event(
    func: Callable,
    y0: State,
    t: Tensor,
    tableau: ButcherTableau | IMEXTableau,
    strategy: GradientStrategy,
    event_fn: Callable,
    *,
    tuple_state: bool,
    implicit,
    params: tuple[Tensor, ...],
    opts: Mapping[str, Any],
    time_dtype: torch.dtype,
    callback_step: Callable | None,
) -> tuple[Tensor, State]:
    """Solve from ``t[0]`` in the direction of ``t[1]`` until the event; see the module text.

    Returns ``(event_t, solution)`` with ``solution`` of shape ``(2, *y0.shape)``
    (tuple-wise): the initial state and the state at the event time.
    """
    _refuse_transforms()
    scout = Problem(
        func, tableau, t.detach(), opts["step_size"], tuple_state=tuple_state, implicit=implicit,
        time_dtype=time_dtype, perturb=opts["perturb"],
    )
    h = scout.direction * opts["step_size"]
    max_steps = opts["max_num_steps"] if opts["max_num_steps_given"] else EVENT_MAX_STEPS
    kw, t0, eps, start, y, g = _search_start(func, implicit, event_fn, t, y0, time_dtype)
    with torch.no_grad():
        tn, n = t0, 0
        while True:
            if n >= max_steps:
                raise EventError(
                    f"event_fn: no event within max_num_steps = {max_steps} steps of size "
                    f"{opts['step_size']:g} from t = {t0:.6g} (up to t = {tn:.6g}); raise "
                    "options['max_num_steps'] or check event_fn"
                )
            y1 = scout.step_fn(h)(func, scout.stage_times_at(tn, h), y)
            if not all(bool(torch.isfinite(c).all()) for c in comps(y1)):
                raise EventError(
                    f"event_fn: the state became non-finite at t = {tn + h:.6g} before any event"
                )
            if float(g(torch.tensor(tn + h, **kw), y1)) <= 0:
                break
            y, tn, n = y1, tn + h, n + 1
        hi = _bisect(lambda s: scout.step_fn(s)(func, scout.stage_times_at(tn, s), y), g, tn, h,
                     eps, kw)
    tau = tn + hi
    start.restore()
    points = [t0 + j * h for j in range(n + 1)] + [tau]
    t_out = torch.stack([t[0], torch.tensor(tau, dtype=t.dtype, device=t.device)])
    problem = Problem(
        func, tableau, t_out, None, tuple_state=tuple_state, implicit=implicit,
        check_finite=opts["check_finite"], params=params, time_dtype=time_dtype,
        perturb=opts["perturb"], grid_points=points, callback_step=callback_step,
    )
    solution = strategy.solve(problem, y0)
    return t_out[1].detach(), solution


def _search_start(func: Callable, implicit, event_fn: Callable, t: Tensor, y0: State,
                  time_dtype: torch.dtype) -> tuple:
    """What both event searches start from: the time tensors' ``kw``, ``t0``, the time
    resolution ``eps``, the random-number and buffer state to put back (:class:`Replay`),
    the detached initial state and the combined event function."""
    kw = {"dtype": time_dtype, "device": t.device}
    t0 = float(t[0].detach())
    eps = max(time_resolution(t.dtype), time_resolution(time_dtype))
    start = Replay(comps(y0)[0].device, _buffers_of(_modules_of(func, implicit)))
    with torch.no_grad():
        y = detach_state(y0)
        g = combine_event_fn(event_fn, torch.tensor(t0, **kw), y)
    return kw, t0, eps, start, y, g


def _bisect(step: Callable[[float], State], g: Callable, tn: float, h: float, eps: float,
            kw: dict) -> float:
    """The signed length ``s`` in ``(0, h]`` of the step from ``tn`` that lands on the event:
    the smallest found (to the time resolution ``eps``) at whose end ``g <= 0``."""
    lo, hi = 0.0, h  # signed lengths from tn: no event at lo, event at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi) or abs(hi - lo) <= eps * max(abs(tn), abs(tn + hi)):
            break
        if float(g(torch.tensor(tn + mid, **kw), step(mid))) <= 0:
            hi = mid
        else:
            lo = mid
    return hi


def _refuse_transforms() -> None:
    if is_compiling() or func_transform_active():
        raise ArgumentError(
            "event_fn: event handling is not supported under torch.compile or the transforms "
            "of torch.func (vmap, grad, jacrev, ...): the search for the event decides on the "
            "host, step by step, where every sample would stop at its own time; solve each "
            "sample eagerly"
        )


def solve_to_event_adaptive(
    func: Callable,
    y0: State,
    t: Tensor,
    tableau: ButcherTableau,
    strategy: GradientStrategy,
    event_fn: Callable,
    *,
    tuple_state: bool,
    params: tuple[Tensor, ...],
    opts: Any,
    time_dtype: torch.dtype,
    callbacks: Mapping[str, Callable],
) -> tuple[Tensor, State]:
    """:func:`solve_to_event` for an embedded pair: the controller chooses the steps.

    ``opts`` are the parsed adaptive options (:class:`~odenet.solvers._controller.
    AdaptiveOptions`); ``max_num_steps`` bounds the search's step attempts.
    """
    import dataclasses

    from odenet.errors import StepSizeError
    from odenet.solvers._adaptive import AdaptiveSolve

    _refuse_transforms()
    if opts.jump_t:
        raise ArgumentError(
            "options['jump_t']: not supported together with event_fn (the event solve replays "
            "the accepted steps as a fixed grid); use step_t"
        )
    from odenet.solvers._grid import MAX_NUM_STEPS

    opts = dataclasses.replace(opts, interpolate=False, differentiate_steps=False)
    if opts.max_num_steps == MAX_NUM_STEPS:  # not given: torchdiffeq's bound on the search
        opts = dataclasses.replace(opts, max_num_steps=EVENT_MAX_STEPS)
    scout = AdaptiveSolve(func, tableau, t.detach(), opts, tuple_state=tuple_state,
                          time_dtype=time_dtype, callbacks=callbacks)
    kw, t0, eps, start, y, g = _search_start(func, None, event_fn, t, y0, time_dtype)
    with torch.no_grad():

        def crossed(t1: float, y1: tuple[Tensor, ...]) -> bool:
            return float(g(torch.tensor(t1, **kw), as_state(y1, tuple_state))) <= 0

        try:
            scout.run(comps(y), until=crossed)
        except StepSizeError as err:
            raise EventError(f"event_fn: no event found: {err}") from err
        n = scout.num_steps - 1
        tn, h, first = scout.starts[n], scout.sizes[n], scout.first_times[n]
        yn = scout.before_last
        F = scout.wrap(func)
        f0 = F(torch.tensor(first, **kw), yn)

        def step(s: float) -> State:
            ts = scout.stage_times(tn, s, tn + s, first)
            return as_state(scout.step(F, ts, yn, f0, s)[0], tuple_state)

        tau = tn + _bisect(step, g, tn, h, eps, kw)
    start.restore()
    from odenet.gradients._adaptive import LAST

    LAST.clear()  # the search's counts (the gradient solve replays its accepted steps)
    LAST.update(forward_steps=scout.accepted, forward_rejected=scout.rejected,
                forward_nfe=scout.nfe)
    points = [t0, *scout.ends[:n], tau]
    t_out = torch.stack([t[0], torch.tensor(tau, dtype=t.dtype, device=t.device)])
    problem = Problem(
        func, tableau.fixed_step(), t_out, None, tuple_state=tuple_state,
        check_finite=opts.check_finite, params=params, time_dtype=time_dtype,
        grid_points=points,
    )
    solution = strategy.solve(problem, y0)
    return t_out[1].detach(), solution


class _EventGradient(torch.autograd.Function):
    """Identity on the state at the event, rerouting the event time's gradient into it."""

    @staticmethod
    def forward(ctx, func, g, event_t, tuple_state, *state):
        ctx.func, ctx.g, ctx.tuple_state = func, g, tuple_state
        ctx.save_for_backward(event_t, *state)
        return (event_t.detach().clone(), *(c.detach().clone() for c in state))

    @staticmethod
    def backward(ctx, g_t, *g_state):
        event_t, *state = ctx.saved_tensors
        with torch.enable_grad():
            tt = event_t.detach().to(state[0].real.dtype).requires_grad_()
            ys = [c.detach().requires_grad_() for c in state]
            y = as_state(ys, ctx.tuple_state)
            c = ctx.g(tt, y)
            dc = torch.autograd.grad(c, [tt, *ys], allow_unused=True)
        with torch.no_grad():
            f = comps(ctx.func(tt.detach(), as_state([c.detach() for c in ys], ctx.tuple_state)))
        dct = torch.zeros_like(tt) if dc[0] is None else dc[0]
        dcy = [torch.zeros_like(s) if d is None else d for d, s in zip(dc[1:], ys)]
        total = dct + sum((d * fi).sum() for d, fi in zip(dcy, f))  # dc/dt along the solution
        if float(total) == 0.0:
            raise GradientError(
                "event_fn: the event is tangential (d event_fn / dt along the solution is 0 at "
                "the event), so the event time is not differentiable there"
            )
        g_t = torch.zeros_like(tt) if g_t is None else g_t.to(tt.dtype)
        g_state = [torch.zeros_like(s) if gs is None else gs for gs, s in zip(g_state, ys)]
        # the event state moves with the event time at rate f: d tau = -(dc/dy . dY) / total
        coef = (g_t + sum((gs * fi).sum() for gs, fi in zip(g_state, f))) / total
        return (None, None, None, None, *(gs - coef * d for gs, d in zip(g_state, dcy)))


def reroute_event_gradient(
    func: Callable, event_fn: Callable, event_t: Tensor, solution: State, t0: Tensor
) -> tuple[Tensor, State]:
    """Make the event time differentiable (implicit function theorem), as ``odeint_event``.

    ``event_t`` and ``solution[-1]`` come from an event solve; the returned event
    time carries the gradient of the event condition ``event_fn(tau, y(tau)) = 0``
    with respect to everything the solution depends on, and the returned state at
    the event moves with it at the rate ``func(tau, y(tau))``.
    """
    tuple_state = not isinstance(solution, Tensor)
    last = tuple(s[-1] for s in solution) if tuple_state else (solution[-1],)
    first = tuple(s[0] for s in solution) if tuple_state else (solution[0],)
    g = combine_event_fn(event_fn, t0.detach().to(last[0].real.dtype), as_state(first, tuple_state))
    out = _EventGradient.apply(func, g, event_t, tuple_state, *last)
    tau, new_last = out[0].to(event_t.dtype), out[1:]
    if tuple_state:
        sol = tuple(torch.cat([s[:-1], e[None]]) for s, e in zip(solution, new_last))
    else:
        sol = torch.cat([solution[:-1], new_last[0][None]])
    return tau, sol
