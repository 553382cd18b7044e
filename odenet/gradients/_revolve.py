"""Binomial checkpointing (Griewank–Walther revolve) over the steps of one call."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients._common import Backward, Call, CallStrategy, Replay, segment_vjp
from odenet.solvers._problem import State, as_state, comps

__all__ = ["Revolve", "binomial_advances", "binomial_schedule"]

# Actions of a schedule. The "current" state sits at some step index.
ADVANCE = "advance"  # ("advance", i, j): run steps i..j-1 without graph, current i -> j
STORE = "store"  # ("store", n): keep the current state (at n) as a snapshot
RESTORE = "restore"  # ("restore", n): the current state becomes snapshot n
FREE = "free"  # ("free", n): drop snapshot n
REVERSE = "reverse"  # ("reverse", n): run step n with graph from the current state, backpropagate


def _beta(s: int, t: int) -> int:
    """Griewank's β(s, t) = C(s + t, s): steps reversible with s snapshots and t repetitions."""
    return math.comb(s + t, s) if t >= 0 else 0


def binomial_advances(num_steps: int, snapshots: int) -> int:
    r"""Minimal number of untaped forward steps to reverse ``num_steps`` steps with ``snapshots``.

    Griewank & Walther (2000): with :math:`\beta(s, t) = \binom{s+t}{s}` and
    :math:`t` the least integer with :math:`\beta(s, t) \ge l`, reversing
    :math:`l` steps with :math:`s` snapshots (the one holding the initial state
    included) needs :math:`t\,l - \beta(s + 1, t - 1)` forward steps besides the
    :math:`l` steps run with graph. This count includes the initial forward sweep
    up to step :math:`l - 1`.

    Parameters
    ----------
    num_steps : int
        Number of steps :math:`l \ge 1`.
    snapshots : int
        Number of snapshots :math:`s \ge 1`.

    Returns
    -------
    int

    Examples
    --------
    >>> from odenet.gradients import binomial_advances
    >>> binomial_advances(10, 1), binomial_advances(10, 2), binomial_advances(10, 10)
    (45, 20, 9)
    """
    l, s = int(num_steps), int(snapshots)
    if l < 1 or s < 1:
        raise ArgumentError(f"num_steps, snapshots: expected >= 1, got {l}, {s}")
    if l == 1:
        return 0
    t = 0
    while _beta(s, t) < l:
        t += 1
    return t * l - _beta(s + 1, t - 1)


def _split(l: int, s: int) -> int:
    """The optimal first advance for ``l >= 2`` steps and ``s >= 2`` snapshots.

    The cost m + C(l - m, s - 1) + C(m, s) is convex in m (C is piecewise linear
    with non-decreasing slopes), so the smallest minimiser is found by bisection.
    """

    def cost(m: int) -> int:
        return m + binomial_advances(l - m, s - 1) + binomial_advances(m, s)

    lo, hi = 1, l - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(mid + 1) >= cost(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _actions(start: int, end: int, s: int) -> Iterator[tuple]:
    """Reverse steps start..end-1; on entry the current state is at ``start``, held in a
    snapshot, and ``s`` snapshots (that one included) are available."""
    l = end - start
    if l == 1:
        yield (REVERSE, start)
        return
    if s == 1:
        for i, n in enumerate(range(end - 1, start - 1, -1)):
            if i:
                yield (RESTORE, start)
            if n > start:
                yield (ADVANCE, start, n)
            yield (REVERSE, n)
        return
    mid = start + _split(l, s)
    yield (ADVANCE, start, mid)
    yield (STORE, mid)
    yield from _actions(mid, end, s - 1)
    yield (FREE, mid)
    yield (RESTORE, start)
    yield from _actions(start, mid, s)


def binomial_schedule(num_steps: int, snapshots: int) -> Iterator[tuple]:
    """The binomial (revolve) schedule reversing ``num_steps`` steps with ``snapshots`` snapshots.

    Yields actions ``("store", n)``, ``("advance", i, j)`` (run steps ``i .. j-1``
    without graph), ``("reverse", n)`` (run step ``n`` with graph from the current
    state and backpropagate through it), ``("restore", n)`` and ``("free", n)``.
    The initial state is stored first (it counts as one snapshot); at most
    ``snapshots`` states are stored at any time; the steps are reversed in order
    ``num_steps - 1, ..., 0``; the number of advanced steps is
    :func:`binomial_advances` ``(num_steps, snapshots)``, the optimum.

    Examples
    --------
    >>> from odenet.gradients import binomial_schedule
    >>> list(binomial_schedule(3, 2))
    [('store', 0), ('advance', 0, 1), ('store', 1), ('advance', 1, 2), ('reverse', 2),
     ('restore', 1), ('reverse', 1), ('free', 1), ('restore', 0), ('reverse', 0)]
    """
    l, s = int(num_steps), int(snapshots)
    if l < 1 or s < 1:
        raise ArgumentError(f"num_steps, snapshots: expected >= 1, got {l}, {s}")
    yield (STORE, 0)
    yield from _actions(0, l, s)


class Revolve(CallStrategy):
    r"""Binomial checkpointing: exact gradients with ``checkpoints`` stored states per call.

    The Griewank–Walther revolve schedule (ACM TOMS 26, 2000) over the ``Nt``
    steps of one call: at most ``checkpoints`` states are kept (the input
    included), and each step is recomputed the least possible number of times,
    :math:`O(\log N_t)` for ``checkpoints`` :math:`\approx \log_2 N_t`. The
    forward pass runs without graph and stores the schedule's first snapshots and
    the state before the last step; the backward pass follows the schedule,
    running one step at a time with graph and backpropagating through it, adding
    the gradients that arrive at the output times. The operations are those of
    the forward pass, so gradients equal :class:`Backprop`'s to round-off.

    Memory: ``checkpoints`` states, one working state and the graph of one step.
    Recomputation: :meth:`recomputations` extra steps (without graph) besides the
    ``Nt`` steps run with graph; :func:`~odenet.gradients.binomial_schedule` gives
    the whole schedule.

    As for :class:`ANODE`, dropout masks are replayed, module buffers are updated
    once, closure tensors are refused, and nothing is stored under
    :func:`torch.no_grad`. Double backward is refused with a
    :class:`~odenet.errors.GradientError`.

    Parameters
    ----------
    checkpoints : int, optional
        Number of stored states per call (the input included), at least 1.
        ``None`` picks :math:`\max(1, \lceil \log_2 N_t \rceil)` for each call.

    Examples
    --------
    >>> import torch, odenet
    >>> strategy = odenet.Revolve(checkpoints=2)
    >>> strategy, strategy.recomputations(10)
    (Revolve(checkpoints=2), 11)
    >>> w = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    >>> y = odenet.odeint(lambda t, y: w * y, torch.ones(1, dtype=torch.float64),
    ...                   torch.tensor([0.0, 1.0], dtype=torch.float64), method="euler",
    ...                   step_size=0.1, gradient=strategy, params=[w])
    >>> y[-1].sum().backward()
    >>> round(w.grad.item(), 10) == round(10 * 0.1 * 0.9 ** 9, 10)  # d/dw (1 + 0.1 w)^10
    True
    """

    name = "revolve"

    def __init__(self, checkpoints: int | None = None):
        if checkpoints is not None:
            if isinstance(checkpoints, bool) or not isinstance(checkpoints, int):
                raise ArgumentTypeError(
                    f"checkpoints: expected an integer or None, got {type(checkpoints).__name__}"
                )
            if checkpoints < 1:
                raise ArgumentError(
                    f"checkpoints: expected at least 1 (the stored input counts as one), got "
                    f"{checkpoints}"
                )
        self.checkpoints = checkpoints

    def __repr__(self) -> str:
        return f"Revolve(checkpoints={self.checkpoints!r})"

    def snapshots(self, num_steps: int) -> int:
        """The number of snapshots used for a call of ``num_steps`` steps.

        Examples
        --------
        >>> import odenet
        >>> odenet.Revolve().snapshots(100), odenet.Revolve(checkpoints=3).snapshots(100)
        (7, 3)
        """
        if self.checkpoints is not None:
            return self.checkpoints
        return max(1, math.ceil(math.log2(num_steps))) if num_steps > 1 else 1

    def recomputations(self, num_steps: int) -> int:
        """Steps recomputed without graph in the backward pass of a call of ``num_steps`` steps.

        The schedule's advances minus those done by the forward sweep (``Nt - 1``).

        Examples
        --------
        >>> import odenet
        >>> odenet.Revolve(checkpoints=1).recomputations(4)  # 0+1+2 advances from the input
        3
        """
        return binomial_advances(num_steps, self.snapshots(num_steps)) - (num_steps - 1)



def _prefix(actions: list[tuple]) -> tuple[list[int], int]:
    """Snapshot positions stored before the first reversal, and that reversal's index."""
    stores = []
    for i, act in enumerate(actions):
        if act[0] == REVERSE:
            return stores, i
        if act[0] == STORE:
            stores.append(act[1])
    raise AssertionError("a schedule always reverses")  # pragma: no cover


class _RevolveFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: Call, t: Tensor, *inputs: Tensor):
        p = call.problem
        nt = p.num_steps
        actions = list(binomial_schedule(nt, call.strategy.snapshots(nt)))
        stores, first = _prefix(actions)
        assert actions[first][1] == nt - 1
        snaps: dict[int, tuple[State, Replay]] = {0: (None, call.start)}  # y0 is saved
        marks = set(stores) | {nt - 1}

        def mark(n: int, y: State) -> None:
            snaps[n] = (y, call.replay())

        stacked = comps(p.stack(call.sweep(marks, mark, y0=inputs[: call.m])))
        work = snaps[nt - 1]
        if nt - 1 not in stores:
            del snaps[nt - 1]
        call.saved = (snaps, work, actions[first:])
        return stacked

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, _, *ins = inputs
        Backward.save(ctx, call, ins)
        ctx.snaps, ctx.work, ctx.actions = call.saved

    @staticmethod
    def backward(ctx, *grads: Tensor):
        b = Backward(ctx)
        p = b.problem
        t_leaf = b.time_leaf()
        delta = p.time_delta(t_leaf) if b.need_t else None
        out_at = {n: k for k, n in enumerate(p.out_index)}
        snaps = dict(ctx.snaps)
        state0 = as_state(b.y0, p.tuple_state)
        snaps[0] = (state0, snaps[0][1])
        cur, replay = ctx.work
        if cur is None:  # Nt == 1: the working state is the input
            cur = state0
        pos = p.num_steps - 1
        a = [g[-1] for g in grads]
        with b.guard():
            replay.restore()
            for act in ctx.actions:
                kind = act[0]
                if kind == ADVANCE:
                    assert act[1] == pos
                    with torch.no_grad():
                        cur = p.advance(cur, act[1], act[2])
                    pos = act[2]
                elif kind == STORE:
                    snaps[act[1]] = (cur, b.call.replay())
                elif kind == RESTORE:
                    cur, rep = snaps[act[1]]
                    rep.restore()
                    pos = act[1]
                elif kind == FREE:
                    del snaps[act[1]]
                else:  # REVERSE
                    n = act[1]
                    assert pos == n
                    need_y = n > 0 or b.need_y0
                    r = segment_vjp(
                        b.call,
                        lambda y, n=n: p.step(n, y, delta=delta),
                        comps(cur),
                        a,
                        b.params.tensors,
                        when=f"at step {n} (t = {p.grid[n]:.6g})",
                        need_y=need_y,
                        t_leaf=t_leaf,
                    )
                    cur = None
                    if need_y:
                        a = r.y
                        k = out_at.get(n)
                        if k is not None:
                            a = [ac + g[k] for ac, g in zip(a, grads)]
                    b.add(r)
        return b.result(a if b.need_y0 else None)


Revolve.function = _RevolveFunction
