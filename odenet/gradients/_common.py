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
* :func:`sweep`: the forward loop without graph that keeps the states asked for.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Collection, Iterator, Sequence

import torch
from torch import Tensor, nn

from odenet.errors import GradientError
from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State

__all__ = [
    "Call",
    "CallStrategy",
    "Replay",
    "accumulate",
    "as_state",
    "closure_error",
    "comps",
    "grad_guard",
    "refuse_double_backward",
    "scatter",
    "sweep",
    "vjp",
]


def comps(y: State) -> tuple[Tensor, ...]:
    """The components of a state as a tuple (one element for a plain Tensor)."""
    return (y,) if isinstance(y, Tensor) else tuple(y)


def as_state(c: Sequence[Tensor], tuple_state: bool) -> State:
    """Inverse of :func:`comps`."""
    return tuple(c) if tuple_state else c[0]


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


def refuse_double_backward(name: str) -> None:
    """Raise :class:`GradientError` when a backward pass is asked to build a graph."""
    if torch.is_grad_enabled():
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


def accumulate(total: list[Tensor | None], grads: Sequence[Tensor | None]) -> None:
    """``total[i] += grads[i]`` where ``grads[i]`` is not ``None`` (in place on the list)."""
    for i, g in enumerate(grads):
        if g is not None:
            total[i] = g if total[i] is None else total[i] + g


def scatter(n: int, index: Sequence[int], values: Sequence[Tensor | None]) -> list:
    """A list of ``n`` Nones with ``values`` placed at ``index`` (gradients of the inputs)."""
    out: list[Tensor | None] = [None] * n
    for i, v in zip(index, values):
        out[i] = v
    return out


class Call:
    """One call of a strategy: the problem, the modules' buffers, the first step.

    Parameters
    ----------
    problem : Problem
        The solve.
    y0 : State
        The initial state.
    name : str
        The strategy's name, for messages.
    """

    def __init__(self, problem: Problem, y0: State, name: str):
        self.problem = problem
        self.name = name
        self.y0 = y0
        self.m = len(comps(y0))
        self.device = comps(y0)[0].device
        self.buffers = _buffers_of(_modules_of(problem.func, problem.implicit))
        self.start = self.replay()
        self.y1 = self._first_step()
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

    def check_closure(self, outputs: Sequence[Tensor], allowed: Sequence[Tensor], when: str):
        """Raise when ``outputs``' graph reaches tensors requiring grad outside ``allowed``."""
        outs = [o for o in outputs if o.requires_grad]
        if not outs:
            return
        p = self.problem
        bad = _closure_leaves(outs, (*allowed, *p.params, p.t))
        if bad:
            raise closure_error(self.name, bad, when)

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
    call: Call,
    marks: Collection[int] = (),
    on_mark: Callable[[int, State], None] | None = None,
) -> list[State]:
    """Run the whole grid without graph from the call's first step; return the outputs.

    ``on_mark(n, y)`` is called with the state at every position ``n`` in ``marks``
    (``1 <= n < Nt``) before step ``n`` runs. Outputs are checked for finiteness
    when the problem asks for it.
    """
    first, call.y1 = call.y1, None  # consumed: a stored call keeps no extra state
    with torch.no_grad():
        return call.problem.solve(call.y0, first=first, marks=marks, on_mark=on_mark)


def stacked_comps(problem: Problem, outs: Sequence[State]) -> tuple[Tensor, ...]:
    """The stacked outputs as a tuple of tensors (one per component)."""
    return comps(problem.stack(outs))


def zeros_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


class CallStrategy(GradientStrategy):
    """A strategy whose gradient comes from a custom autograd Function over one :class:`Call`.

    Under :func:`torch.no_grad` (or when nothing requires grad) the problem is simply solved:
    nothing is stored and nothing recomputed. Otherwise the first step is checked by
    :class:`Call` and :meth:`apply` runs the strategy's Function; subclasses implement
    :meth:`apply` only.
    """

    def solve(self, problem: Problem, y0: State) -> State:
        if not torch.is_grad_enabled():
            return problem.stack(problem.solve(y0))
        call = Call(problem, y0, self.name)
        if not call.needs_grad:
            return problem.stack(sweep(call))
        return as_state(self.apply(call), problem.tuple_state)

    def apply(self, call: Call) -> tuple[Tensor, ...]:
        """Run the strategy's autograd Function; return the stacked output components."""
        raise NotImplementedError
