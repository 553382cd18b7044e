"""ANODE: store the call's input and outputs, recompute the trajectory in the backward pass."""

from __future__ import annotations

import torch
from torch import Tensor

from odenet.gradients._common import (
    Backward,
    Call,
    CallStrategy,
    Replay,
    builds_graph,
    segment_vjp,
    vjp,
)
from odenet.solvers._problem import State, as_state, comps

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
    * under :func:`torch.no_grad` nothing is stored and nothing recomputed;
    * :func:`torch.compile` traces it into one graph as activation checkpointing of the
      call (:meth:`compiled_solve`);
    * :mod:`torch.func` transforms work through it: ``vmap`` runs the forward pass
      batched; the differentiating transforms (``grad``, ``vjp``, ``jacrev``, ``jvp``,
      ``jacfwd``, ``hessian``) differentiate the steps directly (the same derivatives,
      backprop's memory; see :class:`~odenet.gradients._common.CallStrategy`).

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

    def compiled_solve(self, problem, y0: State) -> State:
        """Under :func:`torch.compile`: the call under activation checkpointing.

        :func:`torch.utils.checkpoint.checkpoint` (non-reentrant, random state preserved)
        stores the call's input and recomputes the whole call in the backward pass: ANODE's
        memory (the input per call, one call's graph at a time) in a form the compiler
        traces into one graph.
        """
        from torch.utils.checkpoint import checkpoint

        def run(*c: Tensor) -> tuple[Tensor, ...]:
            return comps(problem.stack(problem.solve(as_state(c, problem.tuple_state))))

        out = checkpoint(run, *comps(y0), use_reentrant=False)
        return as_state(out, problem.tuple_state)


class _ANODEFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: Call, t: Tensor, *inputs: Tensor):
        p = call.problem
        starts = set(p.out_index[1:-1])  # interval starts after the first
        replays: dict[int, Replay] = {0: call.start}

        def mark(n: int, y: State) -> None:
            replays[n] = call.replay()

        stacked = comps(p.stack(call.sweep(starts, mark, y0=inputs[: call.m])))
        call.saved = replays
        return stacked

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, t, *ins = inputs
        Backward.save(ctx, call, ins, output, t=t)
        ctx.replays = call.saved

    @staticmethod
    def backward(ctx, *grads: Tensor):
        b = Backward(ctx, double_backward=True)
        with b.guard():
            if builds_graph(ctx):
                gy = _backward_create_graph(b, ctx.replays, grads)
            else:
                gy = _backward_intervals(b, ctx.replays, grads)
        return b.result(gy)


ANODE.function = _ANODEFunction


def _backward_intervals(b: Backward, replays: dict[int, Replay], grads):
    """First-order backward: recompute one output interval at a time, last to first (the
    gradients of the parameters and of ``t`` accumulate in ``b``)."""
    p = b.problem
    ps = b.params.tensors
    t_leaf = b.time_leaf()
    delta = p.time_delta(t_leaf) if b.need_t else None
    a = [g[-1] for g in grads]
    for k in range(p.num_outputs - 1, 0, -1):
        n0, n1 = p.out_index[k - 1], p.out_index[k]
        need_y = k > 1 or b.need_y0
        if not need_y and not ps and not b.need_t:
            break
        replays[n0].restore()
        r = segment_vjp(
            b.call,
            lambda y, n0=n0, n1=n1: p.advance(y, n0, n1, delta=delta),
            [s[k - 1] for s in b.stacked],
            a,
            ps,
            when=f"recomputing the steps from t = {p.grid[n0]:.6g}",
            need_y=need_y,
            t_leaf=t_leaf,
        )
        if need_y:
            a = [gc + g[k - 1] for gc, g in zip(r.y, grads)]
        b.add(r)
    return a if b.need_y0 else None


def _backward_create_graph(b: Backward, replays: dict[int, Replay], grads):
    """Backward with ``create_graph``: recompute the whole call from ``y0`` with graph (the
    gradients of the parameters and of ``t`` go to ``b``)."""
    p = b.problem
    t, y0, ps = b.t, b.y0, b.params.tensors
    delta = p.time_delta(t) if b.need_t else None
    replays[0].restore()
    outs = [y0]
    y = as_state(y0, p.tuple_state)
    for k in range(1, p.num_outputs):
        y = p.advance(y, p.out_index[k - 1], p.out_index[k], delta=delta)
        outs.append(comps(y))
    flat = [o[c] for o in outs[1:] for c in range(b.m)]
    cots = [grads[c][k] for k in range(1, p.num_outputs) for c in range(b.m)]
    yin = [c for c in y0 if c.requires_grad] if b.need_y0 else []
    g = vjp(flat, cots, (*yin, *ps, *([t] if b.need_t else [])), create_graph=True)
    gy = None
    if b.need_y0:  # the gradient arriving at output 0, plus what flows back to y0
        it = iter(g[: len(yin)])
        gy = []
        for i, c in enumerate(y0):
            gc = next(it) if c.requires_grad else None
            gy.append((torch.zeros_like(c) if gc is None else gc) + grads[i][0])
    b.params.add(g[len(yin) : len(yin) + len(ps)])
    if b.need_t:
        b.gt = g[-1]
    return gy
