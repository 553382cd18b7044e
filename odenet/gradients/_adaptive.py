"""Gradients of adaptive solves: backprop, ANODE, binomial checkpointing, the OTD adjoint.

The discrete network of an adaptive solve is the sequence of accepted steps. Its
exact (discretize-then-optimize) gradient treats the step sizes the controller chose
as constants — they are decisions of the forward pass, like the branch taken by an
``if`` — the choice diffrax makes. Rejected steps do not enter the result and have no
gradient. Every strategy below delivers that gradient, except :class:`~odenet.Adjoint`,
the optimize-then-discretize adjoint, which solves the continuous adjoint equation
backward in time on a grid of its own (its own error control: ``adjoint_rtol``,
``adjoint_atol``), as torchdiffeq's ``odeint_adjoint`` does.

* ``"backprop"``: autograd through the accepted steps of the loop (the controller sees
  detached values); memory grows with the number of accepted steps.
* ``"anode"``: the forward loop runs without graph and records the accepted steps; the
  backward pass replays one output interval at a time with graph.
* ``"revolve"`` (``Revolve(checkpoints=k)``): the number of steps is known only when
  the forward loop ends, so the loop stores no intermediate state; the backward pass
  runs the optimal binomial schedule for the recorded steps with at most ``k`` stored
  states (the initial one included), its first advances re-running the forward
  without graph. Memory: ``k`` states and one step's graph, whatever the number of
  steps; recomputation: ``binomial_advances(N, k)`` steps.
* ``"adjoint"``: the augmented system solved backward with the same pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet._functorch import func_transform_active, grad_levels
from odenet.errors import ArgumentError, GradientError, NonFiniteStateError
from odenet.gradients._adjoint import Adjoint
from odenet.gradients._anode import ANODE
from odenet.gradients._backprop import Backprop
from odenet.gradients._base import GradientStrategy
from odenet.gradients._common import (
    Backward,
    Call,
    _buffers_of,
    _modules_of,
    forward_mode_active,
    segment_vjp,
    zeros_if_none,
)
from odenet.gradients._revolve import (
    ADVANCE,
    FREE,
    RESTORE,
    STORE,
    Revolve,
    binomial_schedule,
)
from odenet.solvers._adaptive import AdaptiveSolve
from odenet.solvers._controller import mixed_rms_norm, rms_norm
from odenet.solvers._problem import State, as_state, comps

__all__ = ["AdaptiveStats", "solve_adaptive"]


class AdaptiveStats(dict):
    """Step counts of the last adaptive solve of a strategy (for :mod:`odenet.analysis`)."""


#: The counts of the most recent adaptive solve and backward pass (diagnostics only).
LAST = AdaptiveStats()


class _AdaptiveCall(Call):
    """A :class:`~odenet.gradients._common.Call` over an :class:`AdaptiveSolve`."""

    def __init__(self, solve: AdaptiveSolve, y0: State, strategy: GradientStrategy):
        self.problem = solve
        self.strategy = strategy
        self.name = strategy.name
        self.y0 = y0
        self.m = len(comps(y0))
        self.device = comps(y0)[0].device
        self.buffers = _buffers_of(_modules_of(solve.func, None))
        self.start = self.replay()
        self.y1 = None
        self.saved = None
        self.needs_grad = (
            any(c.requires_grad for c in comps(y0))
            or any(p.requires_grad for p in solve.params)
            or solve.t.requires_grad
        )


def _record_forward(solve: AdaptiveSolve) -> None:
    LAST.clear()
    LAST.update(forward_steps=solve.accepted, forward_rejected=solve.rejected,
                forward_nfe=solve.nfe)


def _forward(call: _AdaptiveCall, what: str) -> list[tuple[Tensor, ...]]:
    solve: AdaptiveSolve = call.problem
    with torch.no_grad():
        outs = solve.run(tuple(c.detach() for c in comps(call.y0)))
    _record_forward(solve)
    if call.drew_random_numbers():
        raise GradientError(
            f"gradient={call.name!r}: func draws random numbers (e.g. dropout in training mode); "
            f"{what} with an adaptive method would not see the same draws. Put the random "
            "modules in eval mode, or use gradient='backprop'"
        )
    return outs


class _ANODEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: _AdaptiveCall, t: Tensor, *inputs: Tensor):
        stacked = call.problem.stack(_forward(call, "recomputing the accepted steps"))
        Backward.save(ctx, call, inputs, stacked)
        return stacked

    @staticmethod
    def backward(ctx, *grads: Tensor):
        b = Backward(ctx)
        s: AdaptiveSolve = b.problem
        ps = b.params.tensors
        a = [g[-1] for g in grads]
        steps = 0
        with b.guard():
            for k in range(s.num_outputs - 1, 0, -1):
                n0, n1 = s.out_index[k - 1], s.out_index[k]
                need_y = k > 1 or b.need_y0
                if not need_y and not ps:
                    break
                r = segment_vjp(
                    b.call,
                    lambda y, n0=n0, n1=n1: as_state(s.advance(comps(y), n0, n1), s.tuple_state),
                    [st[k - 1] for st in b.stacked],
                    a,
                    ps,
                    when=f"recomputing the accepted steps from t = {s.times[k - 1]:.6g}",
                    need_y=need_y,
                )
                steps += n1 - n0
                if need_y:
                    a = [gc + g[k - 1] for gc, g in zip(r.y, grads)]
                b.add(r)
        LAST.update(backward_steps=steps, backward_recomputed=0)
        return b.result(a if b.need_y0 else None)


class _RevolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: _AdaptiveCall, t: Tensor, *inputs: Tensor):
        stacked = call.problem.stack(_forward(call, "the checkpointed recomputation"))
        Backward.save(ctx, call, inputs)
        return stacked

    @staticmethod
    def backward(ctx, *grads: Tensor):
        b = Backward(ctx)
        s: AdaptiveSolve = b.problem
        nt = s.num_steps
        out_at = {n: k for k, n in enumerate(s.out_index)}
        snaps: dict[int, tuple[Tensor, ...]] = {}
        cur: tuple[Tensor, ...] = tuple(b.y0)
        pos = 0
        a = [g[-1] for g in grads]
        advanced = 0
        stored = 0
        with b.guard():
            for act in binomial_schedule(nt, b.call.strategy.snapshots(nt)):
                kind = act[0]
                if kind == ADVANCE:
                    with torch.no_grad():
                        cur = s.advance(cur, act[1], act[2])
                    advanced += act[2] - act[1]
                    pos = act[2]
                elif kind == STORE:
                    snaps[act[1]] = cur
                    stored = max(stored, len(snaps))
                elif kind == RESTORE:
                    cur, pos = snaps[act[1]], act[1]
                elif kind == FREE:
                    del snaps[act[1]]
                else:  # REVERSE
                    n = act[1]
                    assert pos == n
                    need_y = n > 0 or b.need_y0
                    r = segment_vjp(
                        b.call,
                        lambda y, n=n: as_state(s.replay(n, comps(y)), s.tuple_state),
                        cur,
                        a,
                        b.params.tensors,
                        when=lambda n=n: f"at accepted step {n} (t = {s.starts[n]:.6g})",
                        need_y=need_y,
                    )
                    if need_y:
                        a = r.y
                        k = out_at.get(n)
                        if k is not None:
                            a = [ac + g[k] for ac, g in zip(a, grads)]
                    b.add(r)
        LAST.update(backward_steps=nt, backward_recomputed=advanced, snapshots=stored)
        return b.result(a if b.need_y0 else None)


def _adjoint_norm(solve: AdaptiveSolve, shapes: Sequence[torch.Size]) -> Callable:
    """The error norm of the reverse solve, on torchdiffeq's augmented tuple
    ``(t_adjoint, y, y_adjoint, *parameter_adjoints)``, where a tuple state's components
    are flattened into one vector each (torchdiffeq's flat state).

    By default torchdiffeq's: the largest of ``|t_adjoint|``, the state's norm, the
    adjoint's norm (both with the forward norm, per component) and the parameters' mixed
    RMS norm; ``adjoint_norm="seminorm"`` leaves the parameters out (Kidger et al. 2021).
    A callable ``adjoint_norm`` receives, as in torchdiffeq, one entry per component:
    ``(t_adjoint, *y, *y_adjoint, *parameter_adjoints)``."""
    o = solve.opts

    def split(v: Tensor) -> tuple[Tensor, ...]:
        if not solve.tuple_state:
            return (v,)
        parts = torch.split(v, [s.numel() for s in shapes])
        return tuple(p.reshape(s) for p, s in zip(parts, shapes))

    if callable(o.adjoint_norm):
        given = o.adjoint_norm

        def per_component(z: tuple[Tensor, ...]):
            return given((z[0], *split(z[1]), *split(z[2]), *z[3:]))

        return per_component
    semi = o.adjoint_norm == "seminorm"
    user = o.norm

    def state_norm(xs: Sequence[Tensor]) -> Tensor:
        if user is not None:
            return torch.as_tensor(user(tuple(xs) if solve.tuple_state else xs[0])).abs()
        return torch.as_tensor(mixed_rms_norm(xs) if solve.tuple_state else rms_norm(xs[0]))

    def norm(z: tuple[Tensor, ...]) -> Tensor:
        vals = [z[0].abs(), state_norm(split(z[1])), state_norm(split(z[2]))]
        if not semi and len(z) > 3:
            vals.append(torch.as_tensor(mixed_rms_norm(z[3:])))
        return max(vals)

    return norm


def _in_our_order(norm: Callable, m: int, n_params: int, need_t: bool,
                  tuple_state: bool) -> Callable:
    """``norm`` (on torchdiffeq's augmented tuple, see :func:`_adjoint_norm`) as a norm of
    odenet's augmented state ``(*y, *y_adjoint, *parameter_adjoints[, t_adjoint])``."""

    def flat(xs: Sequence[Tensor]) -> Tensor:
        return torch.cat([x.reshape(-1) for x in xs]) if tuple_state else xs[0]

    def called(z: tuple[Tensor, ...]) -> float:
        tt = z[-1] if need_t else z[0].new_zeros(())
        return abs(float(norm((tt, flat(z[:m]), flat(z[m : 2 * m]),
                               *z[2 * m : 2 * m + n_params]))))

    return called


def _scalar_tol(tols: Sequence) -> float:
    return min(float(x) if not isinstance(x, Tensor) else float(x.min()) for x in tols)


class _AdjointFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: _AdaptiveCall, t: Tensor, *inputs: Tensor):
        stacked = call.problem.stack(_forward(call, "the continuous adjoint"))
        Backward.save(ctx, call, inputs, stacked, t=t, y0=False)
        # as torchdiffeq's node: the reverse solve's norm, open to inspection before backward
        ctx.adjoint_options = {
            "norm": _adjoint_norm(call.problem, [c.shape for c in comps(call.y0)])
        }
        return stacked

    @staticmethod
    def backward(ctx, *grads: Tensor):
        import dataclasses

        b = Backward(ctx)
        s: AdaptiveSolve = b.problem
        call, m = b.call, b.m
        ps = b.params.tensors
        o = s.opts
        rt = o.adjoint_rtol if o.adjoint_rtol is not None else o.rtol
        at = o.adjoint_atol if o.adjoint_atol is not None else o.atol
        need_t = b.need_t
        nt = 1 if need_t else 0
        rt_all = (*rt, *rt, *([_scalar_tol(rt)] * (len(ps) + nt)))
        at_all = (*at, *at, *([_scalar_tol(at)] * (len(ps) + nt)))
        aopts = dataclasses.replace(
            o, rtol=rt_all, atol=at_all,
            norm=_in_our_order(ctx.adjoint_options["norm"], m, len(ps), need_t, s.tuple_state),
        )
        cbs = {
            n: getattr(s.func, n + "_adjoint")
            for n in ("callback_step", "callback_accept_step", "callback_reject_step")
            if callable(getattr(s.func, n + "_adjoint", None))
        }

        def aug(t: Tensor, z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            td = t.detach().requires_grad_(need_t)
            r = segment_vjp(
                call,
                lambda y: s.func(td, y),
                z[:m],
                [-c for c in z[m : 2 * m]],
                ps,
                when=lambda: f"in the reverse solve (t = {float(t):.6g})",
                t_leaf=td if need_t else None,
            )
            gp = [zeros_if_none(g, q) for g, q in zip(r.params, ps)]
            gt = [zeros_if_none(r.t, td)] if need_t else []
            return (*r.out, *r.y, *gp, *gt)

        a = [g[-1] for g in grads]
        ath = [torch.zeros_like(q) for q in ps]
        at_ = [torch.zeros((), dtype=s.time_dtype, device=call.device)] if need_t else []
        gt = torch.zeros(s.num_outputs, dtype=s.t.dtype, device=call.device) if need_t else None
        steps = rejected = nfe = 0
        with b.guard(), torch.no_grad():
            for k in range(s.num_outputs - 1, 0, -1):
                if need_t:  # moving output time t_k moves y(t_k) at the speed f(t_k, y_k)
                    yk = as_state(tuple(st[k] for st in b.stacked), s.tuple_state)
                    fk = comps(s.func(s.time(s.times[k]), yk))
                    dl = sum((f * g[k]).sum() for f, g in zip(fk, grads))
                    gt[k] = dl
                    at_ = [at_[0] - dl]
                tk = s.t[k - 1 : k + 1].flip(0).detach()
                rev = AdaptiveSolve(aug, s.tableau, tk, aopts, tuple_state=True,
                                    time_dtype=s.time_dtype, callbacks=cbs)
                z0 = (*(st[k] for st in b.stacked), *a, *ath, *at_)
                z = rev.run(z0, record=False)[-1]
                steps += rev.accepted
                rejected += rev.rejected
                nfe += rev.nfe
                if o.check_finite and not all(bool(torch.isfinite(c).all()) for c in z):
                    raise NonFiniteStateError(
                        f"gradient='adjoint': the reverse-time solve from t = {s.times[k]:.6g} "
                        f"back to t = {s.times[k - 1]:.6g} became non-finite (nan or inf); use "
                        "a discretize-then-optimize strategy ('anode', 'revolve', 'backprop')",
                        time=s.times[k - 1],
                    )
                a = [z[m + c] + grads[c][k - 1] for c in range(m)]
                ath = list(z[2 * m : 2 * m + len(ps)])
                at_ = list(z[2 * m + len(ps) :])
        LAST.update(backward_steps=steps, backward_rejected=rejected, backward_nfe=nfe)
        b.params.add(ath)
        if need_t:
            gt[0] = at_[0]
        return b.result(a, gt)


_FUNCTIONS: dict[type, type[torch.autograd.Function]] = {
    ANODE: _ANODEFunction,
    Revolve: _RevolveFunction,
    Adjoint: _AdjointFunction,
}


def solve_adaptive(strategy: GradientStrategy, solve: AdaptiveSolve, y0: State) -> State:
    """Run ``solve`` from ``y0`` with the gradient ``strategy``; the stacked outputs.

    Examples
    --------
    >>> import torch, odenet
    >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    >>> t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y0 = torch.ones(1, dtype=torch.float64)
    >>> grads = []
    >>> for g in ("backprop", "anode", "revolve"):
    ...     y = odenet.odeint(lambda t, y: w * y, y0, t, method="dopri5", gradient=g,
    ...                       params=[w], options={"rtol": 1e-6})
    ...     grads.append(torch.autograd.grad(y[-1].sum(), w)[0])
    >>> abs(grads[1] - grads[0]).item() < 1e-15, abs(grads[2] - grads[0]).item() < 1e-15
    (True, True)
    """
    ts = solve.tuple_state
    kind = next((k for k in _FUNCTIONS if isinstance(strategy, k)), None)
    if solve.opts.differentiate_steps:
        if solve.opts.interpolate:
            raise ArgumentError(
                "options['differentiate_steps']: needs the outputs landed on (odenet.odeint), "
                "not torchdiffeq's interpolated dense output"
            )
        if not isinstance(strategy, Backprop):
            raise ArgumentError(
                "options['differentiate_steps']: differentiating through the controller's step "
                f"sizes needs gradient='backprop', not {strategy.name!r} (the recomputing "
                "strategies and the adjoint hold the accepted steps fixed)"
            )
    if kind is None and not isinstance(strategy, Backprop) and torch.is_grad_enabled():
        raise ArgumentError(
            f"gradient: {strategy!r} does not support adaptive methods; use 'backprop', "
            "'anode', 'revolve' or 'adjoint'"
        )
    leaves = (*comps(y0), solve.t, *solve.params)
    transformed = torch.is_grad_enabled() and (
        func_transform_active() or forward_mode_active(leaves)
    )
    wants_grad = (
        any(x.requires_grad for x in leaves) or grad_levels() > 0 or forward_mode_active(leaves)
    )
    if transformed and wants_grad and kind is Adjoint:
        raise GradientError(
            f"gradient={strategy.name!r} does not support gradients under the transforms of "
            "torch.func (grad, vjp, jacrev, jvp, jacfwd, hessian) or forward-mode AD: its "
            "gradient comes from a reverse-time solve, not from the accepted steps; use "
            "gradient='backprop', 'anode' or 'revolve', or torch.autograd.grad / .backward() "
            "without transforms for the adjoint's gradient"
        )
    if isinstance(strategy, Backprop) or not torch.is_grad_enabled() or transformed:
        # under a transform the recomputing strategies differentiate the accepted steps
        # themselves: the same gradient (step sizes held fixed), with backprop's memory
        outs = solve.run(comps(y0))
        _record_forward(solve)
        return as_state(solve.stack(outs), ts)
    if solve.opts.interpolate and kind is not Adjoint:
        raise ArgumentError(
            f"gradient: {strategy.name!r} recomputes the accepted steps, which interpolated "
            "outputs (torchdiffeq's dense output) do not end on; use 'backprop' or 'adjoint'"
        )
    if solve.t.requires_grad and kind is not Adjoint:
        raise ArgumentError(
            f"t: gradients with respect to the output times of an adaptive solve are given by "
            f"gradient='backprop' and 'adjoint', not by {strategy.name!r}; pass t.detach()"
        )
    call = _AdaptiveCall(solve, y0, strategy)
    if not call.needs_grad:
        with torch.no_grad():
            outs = solve.run(comps(y0))
        _record_forward(solve)
        return as_state(solve.stack(outs), ts)
    out = _FUNCTIONS[kind].apply(call, solve.t, *comps(y0), *solve.params)
    return as_state(out, ts)
