"""A researcher's own network: its ODE blocks, their real inputs, and loading it by name.

An ``nn.Module`` counts as an **ODE block** for the diagnostics when it is an
:class:`odenet.nn.ODEBlock` (:class:`odenet.nn.IMEXBlock` included), or when it
follows the block protocol (:data:`BLOCK_PROTOCOL`):

- it has an ``odenet_block`` attribute: a mapping, or a method returning one,
  with the keys ``rhs`` (the right-hand side ``rhs(t, y)``), ``T`` (the length of
  the time interval), ``steps`` (the number of fixed steps) and ``method`` (a
  name of :data:`odenet.METHODS` or a tableau), and optionally ``implicit`` (the
  operator ``L`` of ``y' = rhs(t, y) - L y``) and ``gradient`` (its gradient
  strategy); or
- it has the attributes ``rhs`` (callable), ``T``, ``steps`` and ``method`` itself
  (and optionally ``implicit`` and ``gradient``), as ``ODEBlock`` does.

In both cases ``forward(y)`` must return the state at ``T`` of the declared ODE
started from ``y`` at 0 (the report checks this on the real batch and says so
when it does not hold). A block whose strategy can be changed has a writable
``gradient`` attribute (the training monitor and the gradient plan set it).
Blocks are looked up in ``model.named_modules()``; the modules inside a block
(its right-hand side) are not searched further.

Loading a network by name (the command's ``--model module:factory``):
:func:`load_factory` imports ``pkg.module`` (or runs ``path/to/file.py``) and
calls ``factory()``; :func:`load_inputs` reads a batch saved with
``torch.save`` (``weights_only=True``) and :func:`load_factory` with a loader
gives one from the user's code.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import math
import os
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import odenet
from odenet import ButcherTableau, GradientStrategy, IMEXTableau
from odenet.errors import ArgumentError, ArgumentTypeError, ShapeError

__all__ = [
    "BLOCK_PROTOCOL",
    "BlockCapture",
    "block_view",
    "capture_blocks",
    "find_blocks",
    "load_factory",
    "load_inputs",
    "network_loss",
    "set_strategies",
    "strategy_label",
]

#: The keys of a block's ``odenet_block`` mapping: required, then optional.
BLOCK_PROTOCOL: dict[str, tuple[str, ...]] = {
    "required": ("rhs", "T", "steps", "method"),
    "optional": ("implicit", "gradient"),
}


def block_view(module: object) -> dict[str, Any] | None:
    """``rhs``, ``T``, ``steps``, ``tableau``, ``implicit`` and ``gradient`` of an ODE block, or
    ``None`` when ``module`` is not one (see the module docstring for the protocol).

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        ``odenet_block`` exists but does not describe a block (a missing key, a
        non-callable ``rhs``, a bad ``T``, ``steps`` or ``method``), named in the message.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._user_model import block_view
    >>> class Mine(torch.nn.Module):          # a user's block type
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(3, 3)
    ...     def f(self, t, y):
    ...         return torch.tanh(self.lin(y))
    ...     def odenet_block(self):
    ...         return {"rhs": self.f, "T": 1.0, "steps": 4, "method": "midpoint"}
    ...     def forward(self, y):
    ...         return odenet.odeint(self.f, y, torch.tensor([0.0, 1.0]), method="midpoint",
    ...                              step_size=0.25)[-1]
    >>> v = block_view(Mine())
    >>> v["steps"], v["tableau"].name, v["gradient"] is None
    (4, 'midpoint', True)
    >>> block_view(torch.nn.Linear(2, 2)) is None
    True
    """
    hook = getattr(module, "odenet_block", None)
    where = type(module).__name__
    if hook is not None:
        desc = hook() if callable(hook) else hook
        if not isinstance(desc, Mapping):
            raise ArgumentTypeError(
                f"{where}.odenet_block: expected a mapping with the keys "
                f"{', '.join(BLOCK_PROTOCOL['required'])} (or a method returning one), got "
                f"{type(desc).__name__}"
            )
        missing = [k for k in BLOCK_PROTOCOL["required"] if k not in desc]
        if missing:
            raise ArgumentError(
                f"{where}.odenet_block: missing key(s) {', '.join(map(repr, missing))}; the "
                f"block protocol needs {', '.join(BLOCK_PROTOCOL['required'])}"
            )
        unknown = [k for k in desc if k not in (*BLOCK_PROTOCOL["required"],
                                                 *BLOCK_PROTOCOL["optional"])]
        if unknown:
            raise ArgumentError(
                f"{where}.odenet_block: unknown key(s) {', '.join(map(repr, unknown))}; valid "
                f"keys are {', '.join(BLOCK_PROTOCOL['required'] + BLOCK_PROTOCOL['optional'])}"
            )
        raw = dict(desc)
        raw.setdefault("gradient", getattr(module, "gradient", None))
    elif isinstance(module, odenet.nn.ODEBlock) or (
        callable(getattr(module, "rhs", None))
        and all(hasattr(module, a) for a in ("T", "steps", "method"))
    ):
        raw = {k: getattr(module, k, None) for k in ("rhs", "T", "steps", "method", "implicit",
                                                     "gradient")}
        where = f"{where} (an ODE block)"
    else:
        return None
    return _checked_view(raw, where)


def _checked_view(raw: dict[str, Any], where: str) -> dict[str, Any]:
    from odenet.analysis._region import resolve_method
    from odenet.solvers._adaptive import adaptive_tableau

    if not callable(raw["rhs"]):
        raise ArgumentTypeError(f"{where}: rhs must be callable as rhs(t, y), got "
                                f"{type(raw['rhs']).__name__}")
    T = raw["T"]
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not math.isfinite(T) or T <= 0:
        raise ArgumentError(f"{where}: T must be a finite positive number, got {T!r}")
    steps = raw["steps"]
    if adaptive_tableau(raw["method"]) is not None:
        raise ArgumentError(
            f"{where}: the block uses the adaptive method {raw['method']!r}, whose steps the "
            "controller chooses at run time; the per-block analyses need fixed steps (give "
            "the block a fixed-step method and steps=... to analyse it)"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"{where}: steps must be a positive integer, got {steps!r}")
    tab = resolve_method(raw["method"])
    grad = raw.get("gradient")
    if grad is not None and not isinstance(grad, GradientStrategy):
        grad = odenet.gradients.resolve_gradient(grad)
    return {"rhs": raw["rhs"], "T": float(T), "steps": steps, "tableau": tab,
            "implicit": raw.get("implicit"), "gradient": grad}


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ODE blocks of ``model`` as ``(qualified name, module)``, in ``named_modules`` order.

    The model itself counts when it is a block (its name is then ``"(model)"``); the
    modules inside a block are not searched.

    Examples
    --------
    >>> import odenet
    >>> from odenet.analysis._user_model import find_blocks
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=2, steps=2)
    >>> [name for name, _ in find_blocks(net)]
    ['stages.0.0', 'stages.0.1']
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    found: list[tuple[str, nn.Module]] = []
    inside: list[str] = []
    for name, mod in model.named_modules():
        if any(name == p or name.startswith(p + ".") for p in inside):
            continue
        if block_view(mod) is not None:
            found.append((name or "(model)", mod))
            inside.append(name)
            if not name:
                break
    return found


def strategy_label(strategy: GradientStrategy | None) -> str:
    """A short name of a strategy instance: its registry name when it has default settings,
    ``"revolve:k"`` for Revolve with ``k`` checkpoints, its ``repr`` otherwise.

    Examples
    --------
    >>> import odenet
    >>> from odenet.analysis._user_model import strategy_label
    >>> strategy_label(odenet.ANODE()), strategy_label(odenet.Revolve(checkpoints=3))
    ('anode', 'revolve:3')
    """
    if strategy is None:
        return "(none)"
    name = type(strategy).__dict__.get("name", "") or getattr(type(strategy), "name", "")
    if name and name in odenet.gradients.STRATEGIES:
        with contextlib.suppress(Exception):
            if repr(odenet.gradients.STRATEGIES[name]()) == repr(strategy):
                return name
    k = getattr(strategy, "checkpoints", None)
    if isinstance(strategy, odenet.Revolve) and k is not None:
        return f"revolve:{k}"
    return repr(strategy)


def set_strategies(blocks: Sequence[nn.Module], strategies: Sequence[object] | object
                   ) -> Callable[[], None]:
    """Set the gradient strategy of each block (one for all, or one per block); return the undo.

    Raises
    ------
    odenet.errors.ArgumentError
        A block has no ``gradient`` attribute to set, or the number of strategies does not
        match the number of blocks.

    Examples
    --------
    >>> import odenet
    >>> from odenet.analysis._user_model import find_blocks, set_strategies
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=2, steps=2)
    >>> blocks = [m for _, m in find_blocks(net)]
    >>> undo = set_strategies(blocks, "adjoint")
    >>> blocks[0].gradient
    Adjoint()
    >>> undo(); blocks[0].gradient
    ANODE()
    """
    from odenet.gradients import resolve_gradient

    if isinstance(strategies, (str, GradientStrategy)):
        strategies = [strategies] * len(blocks)
    strategies = list(strategies)  # type: ignore[arg-type]
    if len(strategies) != len(blocks):
        raise ArgumentError(f"strategies: expected one per block ({len(blocks)}), got "
                            f"{len(strategies)}")
    resolved = []
    for b, s in zip(blocks, strategies):
        if not hasattr(b, "gradient"):
            raise ArgumentError(
                f"strategies: the block {type(b).__name__} has no 'gradient' attribute to set "
                "(the block protocol: a writable gradient attribute)"
            )
        if isinstance(s, str) and s.strip().lower().startswith("revolve:"):
            from odenet.analysis._gradients import parse_strategy

            s = parse_strategy(s)[1]
        resolved.append(resolve_gradient(s))  # all checked before any is set
    old = [b.gradient for b in blocks]
    for b, s in zip(blocks, resolved):
        b.gradient = s

    def undo() -> None:
        for b, o in zip(blocks, old):
            b.gradient = o

    return undo


# -- the loss of the network -----------------------------------------------------------------------
def network_loss(loss: Callable | None, targets: Tensor | None
                 ) -> Callable[[Tensor], Tensor]:
    """``loss_of(output) -> scalar``: the user's ``loss(output, targets)`` (or ``loss(output)``
    without targets), else cross-entropy for integer class targets, else mean squared error
    against ``targets``, else :math:`\\tfrac12\\|\\text{output}\\|^2`.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._user_model import network_loss
    >>> f = network_loss(None, torch.tensor([0, 1]))
    >>> round(float(f(torch.zeros(2, 2))), 4)  # log 2
    0.6931
    """
    if loss is not None and not callable(loss):
        raise ArgumentTypeError(f"loss: expected a callable loss(output, targets), got "
                                f"{type(loss).__name__}")
    if targets is not None and not isinstance(targets, Tensor):
        raise ArgumentTypeError(f"targets: expected a Tensor, got {type(targets).__name__}")
    if loss is not None:
        return (lambda out: loss(out, targets)) if targets is not None else loss
    if targets is None:
        return lambda out: 0.5 * _main(out).square().sum()
    if not targets.is_floating_point():
        return lambda out: nn.functional.cross_entropy(_main(out), targets.to(_main(out).device))
    return lambda out: nn.functional.mse_loss(_main(out), targets.to(_main(out)))


def _main(out: object) -> Tensor:
    """The first tensor of a model output (a tensor, or a tuple/list/dict of them)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ArgumentTypeError(f"model: expected the model to return a Tensor (or a tuple of "
                            f"them) for the default loss, got {type(out).__name__}; pass loss=")


# -- capturing each block's input ------------------------------------------------------------------
@dataclass
class BlockCapture:
    """One ODE block of a network with its real input from a batch.

    Attributes
    ----------
    name : str
        The block's qualified name in the network (``named_modules``).
    module : nn.Module
    rhs, T, steps, tableau, implicit, gradient :
        The block's ODE (see :func:`block_view`).
    input, output : Tensor
        The block's input and output on the batch (detached).
    output_grad : Tensor or None
        :math:`\\partial L / \\partial y(T)` of the network's loss at the block output: the
        per-block analyses differentiate :math:`\\langle \\partial L/\\partial y(T), y(T)\\rangle`,
        the network's loss linearised at this block.
    calls : int
        How often the network called the block on the batch (the first call is kept).
    """

    name: str
    module: nn.Module
    rhs: Callable
    T: float
    steps: int
    tableau: ButcherTableau | IMEXTableau
    implicit: Any
    gradient: GradientStrategy | None
    input: Tensor
    output: Tensor
    output_grad: Tensor | None = None
    calls: int = 1
    params: list[Tensor] = field(default_factory=list)

    @property
    def step_size(self) -> float:
        """``T / steps``."""
        return self.T / self.steps

    @property
    def strategy(self) -> str:
        """:func:`strategy_label` of the block's strategy."""
        return strategy_label(self.gradient)

    def loss(self) -> Callable[[Tensor], Tensor]:
        """The network's loss linearised at the block output, as a loss of the stacked solve
        (``None``-safe: :math:`\\tfrac12\\|y(T)\\|^2` without an output gradient)."""
        g = self.output_grad
        if g is None:
            return lambda y: 0.5 * y[-1].square().sum()
        return lambda y: (y[-1] * g.to(y)[: y.shape[1]]).sum()


def _run_model(model: nn.Module, inputs: Tensor | Sequence[Tensor]) -> Any:
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    try:
        return model(*args)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, Tensor) else type(a).__name__
                           for a in args)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ShapeError(
            f"inputs: the model cannot run on inputs of shape {shapes} ({type(err).__name__}: "
            f"{first})"
        ) from None


def check_inputs(inputs: object, name: str = "inputs") -> Tensor | tuple[Tensor, ...]:
    """A batch: a floating tensor, or a tuple/list of tensors (the model's arguments).

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._user_model import check_inputs
    >>> check_inputs(torch.ones(2, 3)).shape
    torch.Size([2, 3])
    """
    if isinstance(inputs, Tensor):
        if inputs.numel() == 0:
            raise ArgumentError(f"{name}: expected a non-empty batch, got shape "
                                f"{tuple(inputs.shape)}")
        if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
            raise ArgumentError(f"{name}: contains non-finite values (NaN or inf)")
        return inputs
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, Tensor)
                                                           for t in inputs):
        return tuple(inputs)
    raise ArgumentTypeError(f"{name}: expected a Tensor (or a tuple of tensors: the model's "
                            f"arguments), got {type(inputs).__name__}")


def capture_blocks(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    *,
    targets: Tensor | None = None,
    loss: Callable | None = None,
    with_grad: bool = True,
) -> tuple[list[BlockCapture], float]:
    """Run ``model`` on a batch with forward hooks on its ODE blocks; return each block's input,
    output and loss gradient at the output, and the network's loss.

    The model runs in evaluation mode (restored afterwards), so that normalisation
    statistics are not updated; parameters' ``.grad`` are not touched.

    Raises
    ------
    odenet.errors.ArgumentError
        The model has no ODE block, or a block is never called on the batch.
    odenet.errors.ShapeError
        The model cannot run on ``inputs`` (the message gives their shape and the model's
        error).

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._user_model import capture_blocks
    >>> net = odenet.models.ODEResNet(1, 3, widths=(4,), blocks=2, steps=2)
    >>> y = torch.tensor([0, 1, 2, 0, 1])
    >>> caps, L = capture_blocks(net, torch.randn(5, 1, 8, 8), targets=y)
    >>> [(c.name, tuple(c.input.shape), c.output_grad is not None) for c in caps]
    [('stages.0.0', (5, 4, 8, 8), True), ('stages.0.1', (5, 4, 8, 8), True)]
    """
    blocks = find_blocks(model)
    if not blocks:
        raise ArgumentError(
            f"model: {type(model).__name__} contains no ODE block (an odenet.nn.ODEBlock, an "
            "IMEXBlock, or a module with an odenet_block description or rhs, T, steps and "
            "method attributes)"
        )
    inputs = check_inputs(inputs)
    loss_of = network_loss(loss, targets)
    seen: dict[str, dict[str, Any]] = {}
    handles = []

    def hook_for(name: str):
        def hook(mod, args, out):
            rec = seen.setdefault(name, {"calls": 0})
            rec["calls"] += 1
            if rec["calls"] == 1:
                if not (args and isinstance(args[0], Tensor) and isinstance(out, Tensor)):
                    raise ArgumentTypeError(
                        f"model: the ODE block {name!r} must be called with a Tensor and "
                        "return one (the block protocol)"
                    )
                rec["input"] = args[0].detach().clone()
                rec["out"] = out
        return hook

    for name, mod in blocks:
        handles.append(mod.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(with_grad):
            out = _run_model(model, inputs)
            value = loss_of(out) if with_grad else None
        missing = [n for n, _ in blocks if n not in seen]
        if missing:
            raise ArgumentError(
                f"model: the ODE block(s) {', '.join(map(repr, missing))} were not called on "
                "the batch; the diagnostics need every block's real input"
            )
        grads: list[Tensor | None] = [None] * len(blocks)
        if with_grad and isinstance(value, Tensor) and value.requires_grad:
            outs = [seen[n]["out"] for n, _ in blocks]
            live = [i for i, o in enumerate(outs) if o.requires_grad]
            if live:
                got = torch.autograd.grad(value, [outs[i] for i in live], allow_unused=True)
                for i, g in zip(live, got):
                    grads[i] = None if g is None else g.detach()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    caps = []
    for (name, mod), g in zip(blocks, grads):
        view = block_view(mod)
        assert view is not None
        rec = seen[name]
        caps.append(BlockCapture(
            name, mod, view["rhs"], view["T"], view["steps"], view["tableau"], view["implicit"],
            view["gradient"], rec["input"], rec["out"].detach(), g, rec["calls"],
            [p for p in mod.parameters() if p.requires_grad],
        ))
    return caps, (float(value.detach()) if isinstance(value, Tensor) else float("nan"))


# -- loading a network and a batch by name ---------------------------------------------------------
def _split_target(text: str, what: str) -> tuple[str, str]:
    if not isinstance(text, str) or ":" not in text.strip(":") :
        raise ArgumentError(
            f"{what}: expected 'pkg.module:name' or 'path/to/file.py:name', got {text!r}"
        )
    mod, _, attr = text.rpartition(":")
    if not mod or not attr.isidentifier():
        raise ArgumentError(
            f"{what}: expected 'pkg.module:name' or 'path/to/file.py:name' (name a Python "
            f"identifier), got {text!r}"
        )
    return mod, attr


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(os.getcwd())


def _import(mod: str, what: str):
    if mod.endswith(".py") or os.sep in mod or (os.altsep and os.altsep in mod):
        path = os.path.abspath(mod)
        if not os.path.isfile(path):
            raise ArgumentError(f"{what}: no such file {mod!r}")
        name = "odenet_user_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ArgumentError(f"{what}: cannot import {mod!r} as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickling / dataclasses of the file work
        folder = os.path.dirname(path)
        sys.path.insert(0, folder)  # the file's own imports of its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            sys.modules.pop(name, None)
            raise ArgumentError(f"{what}: importing {mod!r} failed ({type(err).__name__}: "
                                f"{_first(err)})") from None
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
        return module
    with _cwd_on_path():
        try:
            return importlib.import_module(mod)
        except ModuleNotFoundError as err:
            raise ArgumentError(f"{what}: cannot import {mod!r} ({_first(err)})") from None
        except Exception as err:
            raise ArgumentError(f"{what}: importing {mod!r} failed ({type(err).__name__}: "
                                f"{_first(err)})") from None


def _first(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_factory(target: str, what: str = "model") -> Any:
    """Import ``pkg.module:name`` or ``path/to/file.py:name`` and call ``name()``.

    The current folder is searched for modules (as ``python -m`` does).

    Raises
    ------
    odenet.errors.ArgumentError
        A malformed target, a module that cannot be imported (or fails while
        importing), a missing attribute, or a factory that fails; the message names
        ``what`` and the target.

    Examples
    --------
    >>> from odenet.analysis._user_model import load_factory
    >>> load_factory("collections:OrderedDict", "data")
    OrderedDict()
    >>> try:
    ...     load_factory("no_such_module_xyz:make")
    ... except ValueError as err:
    ...     print(err)
    model: cannot import 'no_such_module_xyz' (No module named 'no_such_module_xyz')
    """
    mod, attr = _split_target(target, what)
    module = _import(mod, what)
    if not hasattr(module, attr):
        names = [n for n in vars(module) if callable(getattr(module, n)) and not n.startswith("_")]
        raise ArgumentError(f"{what}: {mod!r} has no attribute {attr!r} (callables there: "
                            f"{', '.join(names[:8]) or 'none'})")
    factory = getattr(module, attr)
    if not callable(factory):
        raise ArgumentTypeError(f"{what}: {target!r} is a {type(factory).__name__}, not a "
                                "callable factory")
    try:
        return factory()
    except Exception as err:
        raise ArgumentError(f"{what}: {target}() failed ({type(err).__name__}: {_first(err)})"
                            ) from None


def load_inputs(path: object) -> tuple[Tensor | tuple[Tensor, ...], Tensor | None]:
    """``(inputs, targets)`` from a file written by ``torch.save``: a tensor, a tuple
    ``(inputs, targets)``, or a dict with the keys ``"inputs"`` (and ``"targets"``); read with
    ``weights_only=True``.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from odenet.analysis._user_model import load_inputs
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "batch.pt"
    ...     torch.save({"inputs": torch.ones(2, 3), "targets": torch.tensor([0, 1])}, p)
    ...     x, y = load_inputs(p)
    >>> tuple(x.shape), y.tolist()
    ((2, 3), [0, 1])
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"input: expected a file path, got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ArgumentError(f"input: no such file {p!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        why = ("it holds objects that torch.load(weights_only=True) does not unpickle"
               if zipfile.is_zipfile(p) else "torch.load cannot read it")
        raise ArgumentError(f"input: {p!r} is not a saved batch ({why}); save a tensor, a "
                            "tuple (inputs, targets) or {'inputs': ..., 'targets': ...}"
                            ) from None
    except Exception:
        raise ArgumentError(f"input: {p!r} is not a file written by torch.save") from None
    return split_batch(data, f"input: {p!r}")


def split_batch(data: object, what: str = "data") -> tuple[Tensor | tuple[Tensor, ...],
                                                           Tensor | None]:
    """``(inputs, targets)`` from a tensor, an ``(inputs, targets)`` pair or a dict.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._user_model import split_batch
    >>> split_batch(torch.ones(2))[1] is None
    True
    """
    if isinstance(data, Tensor):
        return data, None
    if isinstance(data, Mapping):
        if "inputs" not in data:
            raise ArgumentError(f"{what}: a dict batch needs the key 'inputs' (and optionally "
                                f"'targets'), got keys {sorted(map(str, data))}")
        x, y = data["inputs"], data.get("targets")
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ArgumentTypeError(f"{what}: expected a tensor, a pair (inputs, targets) or a dict "
                                f"{{'inputs', 'targets'}}, got {type(data).__name__}")
    if not isinstance(x, Tensor) and not (isinstance(x, (tuple, list)) and x
                                          and all(isinstance(t, Tensor) for t in x)):
        raise ArgumentTypeError(f"{what}: the inputs must be a tensor, got {type(x).__name__}")
    if y is not None and not isinstance(y, Tensor):
        raise ArgumentTypeError(f"{what}: the targets must be a tensor, got {type(y).__name__}")
    return (tuple(x) if isinstance(x, list) else x), y


def as_dtype(model: nn.Module, inputs, targets, dtype: torch.dtype | None):
    """A copy of the model and batch in ``dtype`` (the originals when ``None`` or the same)."""
    params = list(model.parameters())
    if dtype is None or (params and all(p.dtype == dtype for p in params if p.is_floating_point())
                         and _floating_dtype(inputs) in (dtype, None)):
        return model, inputs, targets
    m = copy.deepcopy(model).to(dtype)

    def conv(t):
        return t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t

    x = tuple(conv(t) for t in inputs) if isinstance(inputs, tuple) else conv(inputs)
    return m, x, conv(targets)


def _floating_dtype(inputs) -> torch.dtype | None:
    ts = inputs if isinstance(inputs, tuple) else (inputs,)
    for t in ts:
        if isinstance(t, Tensor) and t.is_floating_point():
            return t.dtype
    return None
