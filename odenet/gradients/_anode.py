"""ANODE: store the call's input and outputs, recompute the trajectory in the backward pass."""

from __future__ import annotations

import torch
from torch import Tensor

from odenet.gradients._common import (
    Call,
    CallStrategy,
    Replay,
    accumulate,
    as_state,
    comps,
    grad_guard,
    scatter,
    stacked_comps,
    sweep,
    vjp,
    zeros_if_none,
)
from odenet.solvers._problem import State

__all__ = ["ANODE"]


class ANODE(CallStrategy):
    r"""Checkpoint each call's input, recompute in backward: exact gradients at O(L) + O(Nt) memory.

    The strategy of Gholami, Keutzer & Biros (ANODE, IJCAI 2019). The forward
    pass runs without an autograd graph and keeps only the input ``y0`` and the
    outputs at the requested times (which are returned anyway). The backward pass
    goes through the output intervals from last to first; for each it recomputes
    the interval's steps with graph from the stored output at its start and
    backpropagates through them, adding the gradients that arrive at the output
    times. The floating-point operations are those of the forward pass, so the
    gradients are those of :class:`Backprop` (discretize-then-optimize, equal to
    round-off), while the peak memory is one interval's graph instead of the
    graph of every call of a network: O(L) stored states for L blocks plus O(Nt)
    for the block being differentiated.

    Details a researcher relies on:

    * recomputation replays the random-number generators (CPU and the state's
      accelerator) from their state at the start of the interval, so dropout in
      ``func`` draws the same masks; the caller's random stream is left as the
      forward pass left it;
    * module buffers (BatchNorm running statistics) are restored after the
      recomputation: they are updated once, by the forward pass, as with
      :class:`Backprop`;
    * double backward (``create_graph=True``, Hessian-vector products) is
      supported: the backward pass then recomputes the whole call from ``y0``
      with graph and differentiates it with ``create_graph``;
    * tensors that require grad but reach ``func`` only through a closure are
      detected on the first step and refused with a
      :class:`~odenet.errors.GradientError` (pass them with ``params=``);
    * under :func:`torch.no_grad` nothing is stored and nothing recomputed.

    Cost: one extra forward evaluation of every step in the backward pass.

    Examples
    --------
    >>> import torch, odenet
    >>> f = torch.nn.Linear(3, 3).double()
    >>> y0 = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    >>> t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> y = odenet.odeint(lambda t, y: torch.tanh(f(y)), y0, t, method="rk4", step_size=0.1,
    ...                   gradient=odenet.ANODE(), params=list(f.parameters()))
    >>> y.square().sum().backward()
    >>> g = y0.grad.clone(); y0.grad = None
    >>> y = odenet.odeint(lambda t, y: torch.tanh(f(y)), y0, t, method="rk4", step_size=0.1)
    >>> y.square().sum().backward()
    >>> torch.allclose(g, y0.grad, rtol=1e-12, atol=0)
    True
    """

    name = "anode"

    def apply(self, call: Call) -> tuple[Tensor, ...]:
        p = call.problem
        return _ANODEFunction.apply(call, p.t, *comps(call.y0), *p.params)


class _ANODEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: Call, t: Tensor, *inputs: Tensor):
        p = call.problem
        starts = set(p.out_index[1:-1])  # interval starts after the first
        replays: dict[int, Replay] = {0: call.start}

        def mark(n: int, y: State) -> None:
            replays[n] = call.replay()

        outs = sweep(call, starts, mark)
        stacked = stacked_comps(p, outs)
        ctx.call = call
        ctx.replays = replays
        ctx.save_for_backward(t, *inputs, *stacked)
        return stacked

    @staticmethod
    def backward(ctx, *grads: Tensor):
        call: Call = ctx.call
        m = call.m
        saved = ctx.saved_tensors
        t, y0 = saved[0], saved[1 : 1 + m]
        params = saved[1 + m : len(saved) - m]
        stacked = saved[len(saved) - m :]
        need = ctx.needs_input_grad[2:]
        need_t = ctx.needs_input_grad[1]
        need_y0 = any(need[:m])
        pidx = [i for i in range(len(params)) if need[m + i]]
        ps = [params[i] for i in pidx]
        with grad_guard(call.device, call.buffers):
            if torch.is_grad_enabled():
                gy, gp, gt = _backward_create_graph(ctx, call, t, y0, ps, grads, need_y0, need_t)
            else:
                gy, gp, gt = _backward_intervals(ctx, call, ps, stacked, grads, need_y0, need_t)
        gy_out = [None] * m if gy is None else [g if need[c] else None for c, g in enumerate(gy)]
        return (None, gt, *gy_out, *scatter(len(params), pidx, gp))


def _backward_intervals(ctx, call, ps, stacked, grads, need_y0, need_t):
    """First-order backward: recompute one output interval at a time, last to first."""
    p = call.problem
    m = call.m
    t_leaf = p.t.detach().requires_grad_() if need_t else None
    delta = p.time_delta(t_leaf) if need_t else None
    a = [grads[c][-1] for c in range(m)]
    gp: list[Tensor | None] = [None] * len(ps)
    gt: list[Tensor | None] = [None]
    for k in range(p.num_outputs - 1, 0, -1):
        n0, n1 = p.out_index[k - 1], p.out_index[k]
        need_y = k > 1 or need_y0
        if not need_y and not ps and not need_t:
            break
        y_in = tuple(s[k - 1].detach().requires_grad_(need_y) for s in stacked)
        ctx.replays[n0].restore()
        with torch.enable_grad():
            y_end = comps(p.advance(as_state(y_in, p.tuple_state), n0, n1, delta=delta))
        call.check_closure(y_end, (*y_in, *([t_leaf] if need_t else [])),
                           f"recomputing the steps from t = {p.grid[n0]:.6g}")
        inputs = (*(y_in if need_y else ()), *ps, *([t_leaf] if need_t else []))
        g = vjp(y_end, a, inputs)
        del y_end
        if need_y:
            a = [zeros_if_none(gc, yc) + grads[c][k - 1] for c, (gc, yc) in enumerate(zip(g, y_in))]
            g = g[m:]
        accumulate(gp, g[: len(ps)])
        if need_t:
            accumulate(gt, g[len(ps) :])
    gy = a if need_y0 else None
    return gy, gp, (zeros_if_none(gt[0], t_leaf) if need_t else None)


def _backward_create_graph(ctx, call, t, y0, ps, grads, need_y0, need_t):
    """Backward with ``create_graph``: recompute the whole call from ``y0`` with graph."""
    p = call.problem
    m = call.m
    delta = p.time_delta(t) if need_t else None
    ctx.replays[0].restore()
    outs = [y0]
    y = as_state(y0, p.tuple_state)
    for k in range(1, p.num_outputs):
        y = p.advance(y, p.out_index[k - 1], p.out_index[k], delta=delta)
        outs.append(comps(y))
    flat = [outs[k][c] for k in range(1, p.num_outputs) for c in range(m)]
    cots = [grads[c][k] for k in range(1, p.num_outputs) for c in range(m)]
    yin = [c for c in y0 if c.requires_grad] if need_y0 else []
    inputs = (*yin, *ps, *([t] if need_t else []))
    g = vjp(flat, cots, inputs, create_graph=True)
    gy = None
    if need_y0:
        it = iter(g[: len(yin)])
        gy = []
        for c in range(m):
            gc = next(it) if y0[c].requires_grad else None
            gy.append(zeros_if_none(gc, y0[c]) + grads[c][0])
    gp = list(g[len(yin) : len(yin) + len(ps)])
    gt = zeros_if_none(g[-1], t) if need_t else None
    return gy, gp, gt
