"""Machinery shared by the strategies that differentiate a solve themselves.

ANODE, Revolve and the adjoint run the forward pass without a graph and do
their own backward pass. They share

* the first step, taken with grad enabled: it validates ``func``'s output and its
  autograd graph is walked once to find tensors that require grad but reach
  ``func`` only through a closure (their gradient would silently be zero);
* :class:`Replay`: the random-number-generator state and the module buffers at a
  point of the forward pass, so that a recomputation draws the same dropout masks
  and sees the same buffers, while the buffers after the backward pass are those
  the forward pass left (BatchNorm running statistics are updated exactly once);
* :meth:`Call.sweep`: :meth:`Problem.solve` without graph from the checked first step;
* :func:`segment_vjp`: recompute a piece of the solve with graph from a detached
  state and take its vector–Jacobian product (closure check included);
* :class:`Backward`: the backward pass's inputs (what needs a gradient, the saved
  tensors) and its result, with :class:`ParamGrads` accumulating the parameters'
  gradients.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from odenet._functorch import forward_mode_active, func_transform_active, grad_levels
from odenet.errors import GradientError
from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State, as_state, comps

__all__ = [
    "VJP",
    "Backward",
    "Call",
    "CallStrategy",
    "ParamGrads",
    "Replay",
    "as_state",
    "builds_graph",
    "closure_error",
    "comps",
    "forward_mode_active",
    "func_transform_active",
    "grad_guard",
    "refuse_double_backward",
    "segment_vjp",
    "vjp",
    "zeros_if_none",
]


# -- modules and buffers ----------------------------------------------------------------------
def _modules_of(func: object, implicit: object) -> list[nn.Module]:
    """Modules reachable from ``func`` / ``implicit``: themselves, a bound method's instance,
    a ``functools.partial``'s function and arguments, and closure variables (one level)."""
    found: list[nn.Module] = []
    todo: list[object] = [func, implicit]
    seen: set[int] = set()
    depth = {id(func): 0, id(implicit): 0}
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        d = depth.get(id(obj), 0)
        if isinstance(obj, nn.Module):
            found.append(obj)
            continue
        if d >= 2:
            continue
        children: list[object] = []
        if isinstance(obj, functools.partial):
            children += [obj.func, *obj.args, *obj.keywords.values()]
        owner = getattr(obj, "__self__", None)
        if owner is not None:
            children.append(owner)
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                children.append(cell.cell_contents)
            except ValueError:  # empty cell
                pass
        for c in children:
            depth.setdefault(id(c), d + 1)
            todo.append(c)
    return found


def _buffers_of(modules: Sequence[nn.Module]) -> list[Tensor]:
    out: list[Tensor] = []
    seen: set[int] = set()
    for m in modules:
        for b in m.buffers():
            if id(b) not in seen:
                seen.add(id(b))
                out.append(b)
    return out


def _assign(buffers: Sequence[Tensor], values: Sequence[Tensor]) -> None:
    """Write ``values`` into ``buffers``, skipping unchanged ones (no needless version bumps)."""
    with torch.no_grad():
        for b, v in zip(buffers, values):
            if b is not v and not torch.equal(b, v):
                b.copy_(v)


# -- random numbers and buffers ---------------------------------------------------------------
def _device_module(device: torch.device):
    if device.type == "cpu":
        return None
    mod = torch.get_device_module(device.type)
    return mod if hasattr(mod, "get_rng_state") else None


class Replay:
    """RNG state (CPU and the state's accelerator) and module buffers at a point of the forward.

    :meth:`restore` puts them back so that recomputing from that point performs
    the same random draws and sees the same buffers as the forward pass did.
    """

    __slots__ = ("_buffers", "_cpu", "_dev", "_device", "_values")

    def __init__(self, device: torch.device, buffers: Sequence[Tensor]):
        self._device = device
        self._cpu = torch.get_rng_state()
        mod = _device_module(device)
        self._dev = None if mod is None else mod.get_rng_state(device)
        self._buffers = buffers
        self._values = [b.detach().clone() for b in buffers]

    def restore(self) -> None:
        torch.set_rng_state(self._cpu)
        if self._dev is not None:
            _device_module(self._device).set_rng_state(self._dev, self._device)
        _assign(self._buffers, self._values)


@contextlib.contextmanager
def grad_guard(device: torch.device, buffers: Sequence[Tensor]) -> Iterator[None]:
    """Around a backward pass: leave the RNG and the module buffers as they were on entry.

    Recomputation replays the forward's random draws and buffer updates; the
    caller's random stream and the buffers (e.g. BatchNorm running statistics,
    updated once by the forward pass) must not notice.
    """
    cpu = torch.get_rng_state()
    mod = _device_module(device)
    dev = None if mod is None else mod.get_rng_state(device)
    values = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if dev is not None:
            mod.set_rng_state(dev, device)
        _assign(buffers, values)


def builds_graph(ctx) -> bool:
    """Whether a Function's backward pass must itself be differentiable.

    In plain autograd: when grad mode is on in the backward pass (``create_graph=True``).
    Under :mod:`torch.func`, whose transforms always run backward passes with grad mode on,
    when the forward pass ran under more than one reverse-mode transform (``jacrev`` of
    ``jacrev``, ``grad`` of ``grad``): the outer ones differentiate the inner one's backward.
    """
    levels = getattr(ctx, "grad_levels", 0)
    return levels > 1 if levels else torch.is_grad_enabled()


def refuse_double_backward(name: str, ctx=None) -> None:
    """Raise :class:`GradientError` when a backward pass is asked to build a graph."""
    if builds_graph(ctx) if ctx is not None else torch.is_grad_enabled():
        raise GradientError(
            f"gradient={name!r} cannot differentiate its own backward pass (create_graph=True, "
            "double backward, Hessian-vector products); use gradient='backprop' or "
            "gradient='anode', which support it"
        )


# -- the first step and the closure check -----------------------------------------------------
def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}"


def _closure_leaves(outputs: Sequence[Tensor], allowed: Sequence[Tensor]) -> list[Tensor]:
    """Tensors requiring grad reached from ``outputs``' graph other than through ``allowed``."""
    ok = {id(t) for t in allowed}
    stop = {t.grad_fn for t in allowed if t.grad_fn is not None}
    todo = [o.grad_fn for o in outputs if o.grad_fn is not None]
    seen = set()
    bad: list[Tensor] = []
    while todo:
        node = todo.pop()
        if node in seen or node in stop:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if var is not None:  # AccumulateGrad: a leaf
            if id(var) not in ok and all(var is not b for b in bad):
                bad.append(var)
            continue
        todo.extend(n for n, _ in node.next_functions if n is not None)
    return bad


def closure_error(name: str, bad: Sequence[Tensor], when: str) -> GradientError:
    """The error for tensors that require grad but reach ``func`` only through a closure."""
    shown = ", ".join(_describe(b) for b in bad[:3]) + (" ..." if len(bad) > 3 else "")
    return GradientError(
        f"gradient={name!r}: func (or implicit) uses {len(bad)} tensor(s) that require grad but "
        f"are not among the parameters ({shown}), found {when}; their gradient would silently "
        "be zero. Pass them with params=[...] (e.g. params=list(module.parameters()) for a "
        "module used inside a lambda), make func an nn.Module that owns them, or use "
        "gradient='backprop'"
    )


def vjp(
    outputs: Sequence[Tensor],
    cotangents: Sequence[Tensor],
    inputs: Sequence[Tensor],
    *,
    create_graph: bool = False,
) -> tuple[Tensor | None, ...]:
    """``Σ cotᵀ ∂out/∂input`` for every input (``None`` where unused), skipping outputs
    without graph."""
    pairs = [(o, g) for o, g in zip(outputs, cotangents) if o.requires_grad]
    if not pairs or not inputs:
        return (None,) * len(inputs)
    return torch.autograd.grad(
        [o for o, _ in pairs],
        list(inputs),
        [g for _, g in pairs],
        allow_unused=True,
        retain_graph=True,
        create_graph=create_graph,
    )


class ParamGrads:
    """The parameters a backward pass differentiates, and their gradients accumulated.

    Parameters
    ----------
    params : sequence of Tensor
        Every parameter of the solve (the Function's parameter inputs).
    need : sequence of bool
        Whether each needs a gradient (``ctx.needs_input_grad`` for them).

    Attributes
    ----------
    tensors : tuple of Tensor
        The parameters that need a gradient, in order: the inputs of the VJPs.
    total : list of Tensor or None
        Their gradients so far (``None``: nothing arrived yet).
    """

    __slots__ = ("_index", "_n", "tensors", "total")

    def __init__(self, params: Sequence[Tensor], need: Sequence[bool]):
        self._n = len(params)
        self._index = [i for i in range(len(params)) if need[i]]
        self.tensors = tuple(params[i] for i in self._index)
        self.total: list[Tensor | None] = [None] * len(self.tensors)

    def add(self, grads: Sequence[Tensor | None]) -> None:
        """``total[i] += grads[i]`` where ``grads[i]`` is not ``None``."""
        for i, g in enumerate(grads):
            if g is not None:
                self.total[i] = g if self.total[i] is None else self.total[i] + g

    def result(self) -> list[Tensor | None]:
        """One gradient per parameter of the solve (``None`` where none was needed)."""
        out: list[Tensor | None] = [None] * self._n
        for i, v in zip(self._index, self.total):
            out[i] = v
        return out


class VJP(NamedTuple):
    """What :func:`segment_vjp` returns: the outputs and the products per kind of input."""

    out: tuple[Tensor, ...]
    """The recomputed outputs, detached."""
    y: list[Tensor] | None
    """``cotᵀ ∂out/∂y`` per state component (zeros where unused); ``None`` unless ``need_y``."""
    params: tuple[Tensor | None, ...]
    """``cotᵀ ∂out/∂θ`` per parameter (``None`` where unused)."""
    t: Tensor | None
    """``cotᵀ ∂out/∂t_leaf`` (``None`` when unused or without ``t_leaf``)."""


def segment_vjp(
    call: Call,
    run: Callable[[State], State],
    y: Sequence[Tensor],
    cotangents: Sequence[Tensor],
    params: Sequence[Tensor],
    *,
    when: str | Callable[[], str],
    need_y: bool = True,
    t_leaf: Tensor | None = None,
) -> VJP:
    """Recompute ``run`` from ``y`` with a graph and take its vector–Jacobian product.

    ``run(state)`` is a piece of the solve (steps of the grid, or one evaluation of
    ``func``) from a detached copy of ``y``; the product is taken with respect to that
    start state (when ``need_y``), ``params`` and ``t_leaf`` (a stand-in leaf for the
    times ``run`` depends on, when given). Tensors requiring grad that the graph reaches
    other than through these are refused as closure tensors (``when``, or ``when()`` made
    only for the message, says where).
    """
    p = call.problem
    y_in = tuple(c.detach().requires_grad_(need_y) for c in y)
    tin = () if t_leaf is None else (t_leaf,)
    with torch.enable_grad():
        out = comps(run(as_state(y_in, p.tuple_state)))
    call.check_closure(out, (*y_in, *tin), when)
    g = vjp(out, cotangents, (*(y_in if need_y else ()), *params, *tin))
    gy = [zeros_if_none(gc, yc) for gc, yc in zip(g, y_in)] if need_y else None
    g = g[len(y_in) :] if need_y else g
    return VJP(
        tuple(o.detach() for o in out), gy, g[: len(params)], g[len(params)] if tin else None
    )


class Call:
    """One call of a strategy: the problem, the modules' buffers, the first step.

    Parameters
    ----------
    problem : Problem
        The solve.
    y0 : State
        The initial state.
    strategy : GradientStrategy
        The strategy (its ``name`` appears in messages).
    """

    def __init__(self, problem: Problem, y0: State, strategy: GradientStrategy):
        self.problem = problem
        self.strategy = strategy
        self.name = strategy.name
        self.y0 = y0
        self.m = len(comps(y0))
        self.device = comps(y0)[0].device
        self.buffers = _buffers_of(_modules_of(problem.func, problem.implicit))
        #: The :func:`torch.autocast` regions the call ran in, ``(device_type, dtype)``:
        #: recomputations in the backward pass run in them too (the forward's numerics).
        self.autocast = tuple(
            (d, torch.get_autocast_dtype(d))
            for d in dict.fromkeys(("cpu", self.device.type))
            if torch.is_autocast_enabled(d)
        )
        self.start = self.replay()
        self.y1 = self._first_step()
        #: What the Function's ``forward`` leaves for its ``setup_context`` (``forward`` has
        #: no ``ctx`` in the style :mod:`torch.func` needs).
        self.saved: object = None
        self.needs_grad = (
            any(c.requires_grad for c in comps(y0))
            or any(p.requires_grad for p in problem.params)
            or problem.t_requires_grad
        )

    def replay(self) -> Replay:
        """Capture the RNG state and the buffers now."""
        return Replay(self.device, self.buffers)

    def drew_random_numbers(self) -> bool:
        """Whether the random-number generators moved since the call began (e.g. dropout)."""
        if not torch.equal(torch.get_rng_state(), self.start._cpu):
            return True
        mod = _device_module(self.device)
        return mod is not None and not torch.equal(mod.get_rng_state(self.device), self.start._dev)

    def check_closure(
        self, outputs: Sequence[Tensor], allowed: Sequence[Tensor], when: str | Callable[[], str]
    ):
        """Raise when ``outputs``' graph reaches tensors requiring grad outside ``allowed``.

        ``when`` (or ``when()``, made only for the message) says where that happened.
        """
        outs = [o for o in outputs if o.requires_grad]
        if not outs:
            return
        p = self.problem
        bad = _closure_leaves(outs, (*allowed, *p.params, p.t))
        if bad:
            raise closure_error(self.name, bad, when() if callable(when) else when)

    def _first_step(self) -> State:
        p = self.problem
        y0 = self.y0
        if p.callback_step is not None:
            p.call_back(p.callback_step, 0, y0)
        with torch.enable_grad():
            y1 = p.step(0, y0, func=p._checked_func(y0))
        out = comps(y1)
        self.check_closure(out, comps(y0), "on the first step")
        return tuple(c.detach() for c in out) if p.tuple_state else out[0].detach()

    def sweep(
        self,
        marks: Collection[int] = (),
        on_mark: Callable[[int, State], None] | None = None,
        y0: Sequence[Tensor] | None = None,
    ) -> list[State]:
        """:meth:`Problem.solve` without graph from the first step; the outputs.

        ``on_mark(n, y)`` sees the state at every position ``n`` in ``marks``
        (``1 <= n < Nt``) before step ``n`` runs. The first step is consumed: a stored
        call keeps no extra state.

        ``y0`` (components) is the initial state as a Function's ``forward`` received it.
        Under :mod:`torch.func` transforms that is not the tensor the call began with (a
        transform unwraps it) and the first step cannot be reused: the solve then starts
        from ``y0`` with the random state and buffers of the call's start replayed, and
        ``on_mark`` may see position 0.
        """
        first, self.y1 = self.y1, None
        start = self.y0
        if y0 is not None and any(a is not b for a, b in zip(y0, comps(self.y0))):
            first, start = None, as_state(tuple(y0), self.problem.tuple_state)
            self.start.restore()
        with torch.no_grad():
            return self.problem.solve(start, first=first, marks=marks, on_mark=on_mark)


def zeros_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    """``g``, or zeros shaped like ``like`` where autograd reported no dependence."""
    return torch.zeros_like(like) if g is None else g


class Backward:
    """A :class:`CallStrategy` Function's backward pass: its inputs and its result.

    The Functions are applied as ``F.apply(call, t, *y0, *params)``; their forward
    stores what its backward needs with :meth:`save`, and their backward reads it back
    by constructing this object from ``ctx``, which refuses a backward pass that builds
    a graph unless ``double_backward``.

    Attributes
    ----------
    call, problem, m
        The call, its problem and the number of state components.
    need_t, need_y, need_y0
        Whether ``t``, each component of ``y0``, any component of ``y0`` need a gradient.
    t, y0, stacked
        The saved times, initial state components and stacked outputs (``None`` / ``()``
        where not saved).
    params : ParamGrads
        The parameters that need a gradient, and their gradients.
    gt : Tensor or None
        The gradient with respect to ``t`` accumulated by :meth:`add`.
    """

    def __init__(self, ctx, *, double_backward: bool = False):
        call: Call = ctx.call
        if not double_backward:
            refuse_double_backward(call.name, ctx)
        self.call, self.problem, self.m = call, call.problem, call.m
        has_t, has_y0, n_stacked = ctx.layout
        saved = list(ctx.saved_tensors)
        self.t = saved.pop(0) if has_t else None
        self.y0 = tuple(saved[: self.m]) if has_y0 else ()
        params = saved[self.m if has_y0 else 0 : len(saved) - n_stacked]
        self.stacked = tuple(saved[len(saved) - n_stacked :]) if n_stacked else ()
        need = ctx.needs_input_grad
        self.need_t = need[1]
        self.need_y = need[2 : 2 + self.m]
        self.need_y0 = any(self.need_y)
        self.params = ParamGrads(params, need[2 + self.m :])
        self.gt: Tensor | None = None

    @staticmethod
    def save(
        ctx,
        call: Call,
        inputs: Sequence[Tensor],
        stacked: Sequence[Tensor] = (),
        *,
        t: Tensor | None = None,
        y0: bool = True,
    ) -> None:
        """Store the call, ``t`` (when given), ``inputs`` (``y0`` only when ``y0``) and
        the stacked outputs for the backward pass."""
        ctx.call = call
        ctx.grad_levels = grad_levels()
        ctx.layout = (t is not None, y0, len(stacked))
        kept = inputs if y0 else inputs[call.m :]
        ctx.save_for_backward(*(() if t is None else (t,)), *kept, *stacked)

    def guard(self) -> contextlib.AbstractContextManager[None]:
        """:func:`grad_guard` for this call: RNG and buffers come out as they went in; the
        :func:`torch.autocast` regions of the forward pass are re-entered."""
        stack = contextlib.ExitStack()
        stack.enter_context(grad_guard(self.call.device, self.call.buffers))
        for device_type, dtype in getattr(self.call, "autocast", ()):
            # no cast cache: a weight cast while advancing without graph must not be reused
            # by a recomputation with graph (its gradient would be lost)
            stack.enter_context(torch.autocast(device_type, dtype=dtype, cache_enabled=False))
        return stack

    def time_leaf(self) -> Tensor | None:
        """A leaf standing in for ``t`` when its gradient is needed (``None`` otherwise)."""
        return self.problem.t.detach().requires_grad_() if self.need_t else None

    def add(self, r: VJP) -> None:
        """Accumulate the parameters' and ``t``'s parts of a :func:`segment_vjp`."""
        self.params.add(r.params)
        if r.t is not None:
            self.gt = r.t if self.gt is None else self.gt + r.t

    def result(self, gy: Sequence[Tensor | None] | None, gt: Tensor | None = None) -> tuple:
        """The gradients ``backward`` returns: ``(None, gt, *gy, *params)``, ``None`` for
        every input that does not need one. ``gt`` defaults to what :meth:`add` accumulated
        (zeros when ``t`` needs a gradient but none arrived)."""
        gy = [None] * self.m if gy is None else [g if n else None for g, n in zip(gy, self.need_y)]
        gt = self.gt if gt is None else gt
        gt = zeros_if_none(gt, self.problem.t) if self.need_t else None
        return (None, gt, *gy, *self.params.result())


class CallStrategy(GradientStrategy):
    """A strategy whose gradient comes from a custom autograd Function over one :class:`Call`.

    Under :func:`torch.no_grad` (or when nothing requires grad) the problem is simply solved:
    nothing is stored and nothing recomputed. Otherwise the first step is checked by
    :class:`Call` and :attr:`function` is applied as ``function.apply(call, t, *y0, *params)``;
    subclasses set :attr:`function` only (a Function built on :class:`Backward`, in the
    ``forward`` + ``setup_context`` style that :mod:`torch.func` transforms need).

    :mod:`torch.func` transforms (``vmap``, ``grad``, ``vjp``, ``jacrev``, ``jvp``,
    ``jacfwd``, ``hessian``) and :mod:`torch.autograd.forward_ad`: a transform's backward
    pass may neither start from fresh leaves (``requires_grad_``) nor see the tensors
    ``func`` closes over at the transform's level, so under them a strategy whose
    derivatives are those of the discrete solve (:attr:`discrete` true) differentiates the
    steps themselves, as :class:`~odenet.Backprop` does: the same derivatives (to
    round-off), with backprop's memory. One that is not (the continuous adjoint) solves
    without gradients (``vmap`` of a forward pass) and refuses gradients under the
    transforms with a :class:`~odenet.errors.GradientError` naming it.
    """

    function: ClassVar[type[torch.autograd.Function]]
    #: Whether the strategy's gradients are those of the discrete solve (then the
    #: :mod:`torch.func` transforms and forward mode differentiate the steps themselves).
    discrete: ClassVar[bool] = True

    def solve(self, problem: Problem, y0: State) -> State:
        if not torch.is_grad_enabled():
            return problem.stack(problem.solve(y0))
        if problem.traced:
            return self.compiled_solve(problem, y0)
        if func_transform_active() or forward_mode_active(
            (*comps(y0), problem.t, *problem.params)
        ):
            return self._through_steps(problem, y0)
        call = Call(problem, y0, self)
        if not call.needs_grad:
            return problem.stack(call.sweep())
        out = self.function.apply(call, problem.t, *comps(y0), *problem.params)
        return as_state(out, problem.tuple_state)

    def compiled_solve(self, problem: Problem, y0: State) -> State:
        """The solve under :func:`torch.compile` (``problem.traced``), where the custom
        Function cannot run (its backward pass reads the host); refused unless overridden."""
        raise GradientError(
            f"gradient={self.name or type(self).__name__!r} cannot be compiled with "
            "torch.compile (its backward pass recomputes on the host); use gradient='anode' "
            "(activation checkpointing of the call) or 'backprop', or run this strategy eagerly"
        )

    def _through_steps(self, problem: Problem, y0: State) -> State:
        """Under torch.func / forward mode: differentiate the steps (discrete strategies)."""
        needs = (
            any(c.requires_grad for c in comps(y0))
            or any(p.requires_grad for p in problem.params)
            or problem.t_requires_grad
            or grad_levels() > 0
            or forward_mode_active((*comps(y0), problem.t, *problem.params))
        )
        if needs and not self.discrete:
            raise GradientError(
                f"gradient={self.name or type(self).__name__!r} does not support gradients "
                "under the transforms of torch.func (grad, vjp, jacrev, jvp, jacfwd, hessian; "
                "vmap followed by backward) or forward-mode AD: its gradient comes from a "
                "reverse-time solve, not from the steps; use a discretize-then-optimize "
                "strategy (gradient='anode', 'revolve' or 'backprop'), or torch.autograd.grad "
                "/ .backward() without transforms for the adjoint's gradient"
            )
        return problem.stack(problem.solve(y0))
