"""Argument checks and small helpers shared by the analysis functions."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from analysis._region import resolve_method
from odenet import ButcherTableau, IMEXTableau
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "block_settings",
    "check_methods",
    "check_positive",
    "check_steps",
    "check_tensor",
    "fingerprint",
    "method_name",
    "unwrap_func",
]


def method_name(method: str | ButcherTableau | IMEXTableau) -> str:
    """The display name of a method.

    Examples
    --------
    >>> from analysis._common import method_name
    >>> method_name("rk4")
    'rk4'
    """
    return method if isinstance(method, str) else method.name


def check_methods(methods: object, name: str = "methods") -> list[ButcherTableau | IMEXTableau]:
    """Resolve one method or a sequence of methods into tableaux (checked, in order).

    Examples
    --------
    >>> from analysis._common import check_methods
    >>> [m.name for m in check_methods(["euler", "rk4"])]
    ['euler', 'rk4']
    """
    if isinstance(methods, (str, ButcherTableau, IMEXTableau)):
        methods = [methods]
    if not isinstance(methods, Iterable):
        raise ArgumentTypeError(
            f"{name}: expected a method name, a tableau, or a sequence of them, got "
            f"{type(methods).__name__}"
        )
    out = [resolve_method(m, name) for m in methods]
    if not out:
        raise ArgumentError(f"{name}: expected at least one method")
    return out


def check_steps(steps: object, name: str = "steps") -> list[int]:
    """A non-empty, strictly increasing list of positive step counts.

    Examples
    --------
    >>> from analysis._common import check_steps
    >>> check_steps([16, 4, 8])
    [4, 8, 16]
    """
    if isinstance(steps, (int,)) and not isinstance(steps, bool):
        steps = [steps]
    if not isinstance(steps, Iterable):
        raise ArgumentTypeError(
            f"{name}: expected a sequence of positive integers, got {type(steps).__name__}"
        )
    out = []
    for s in steps:
        if isinstance(s, bool) or (not isinstance(s, int) and not (
            isinstance(s, float) and s.is_integer()
        )):
            raise ArgumentTypeError(f"{name}: expected positive integers, got {s!r}")
        if int(s) <= 0:
            raise ArgumentError(f"{name}: expected positive step counts, got {int(s)}")
        out.append(int(s))
    if not out:
        raise ArgumentError(f"{name}: expected at least one step count")
    return sorted(set(out))


def check_positive(value: object, name: str, *, allow_none: bool = False) -> float | None:
    """A finite positive float.

    Examples
    --------
    >>> from analysis._common import check_positive
    >>> check_positive(2, "T")
    2.0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ArgumentError(f"{name}: expected a finite positive number, got {v}")
    return v


def check_tensor(value: object, name: str) -> Tensor:
    """A finite floating-point tensor.

    Examples
    --------
    >>> import torch
    >>> from analysis._common import check_tensor
    >>> check_tensor(torch.ones(2), "y0").shape
    torch.Size([2])
    """
    if not isinstance(value, Tensor):
        raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ArgumentTypeError(
            f"{name}: expected a floating point tensor, got dtype {value.dtype}"
        )
    if not bool(torch.isfinite(value).all()):
        raise ArgumentError(f"{name}: contains non-finite values")
    return value


def block_settings(obj: object) -> dict[str, Any]:
    """Settings of an ODE block (``rhs``, ``T``, ``steps``, ``method``, ``implicit``), if any.

    An object counts as an ODE block when it has an ``rhs`` attribute that is
    callable; the remaining attributes are read when present.

    Examples
    --------
    >>> from analysis._common import block_settings
    >>> block_settings(lambda t, y: -y)
    {}
    """
    rhs = getattr(obj, "rhs", None)
    if rhs is None or not callable(rhs):
        return {}
    out: dict[str, Any] = {"rhs": rhs}
    for key in ("T", "steps", "method", "implicit", "gradient"):
        if hasattr(obj, key):
            out[key] = getattr(obj, key)
    return out


def unwrap_func(obj: object, name: str = "func") -> tuple[Callable, dict[str, Any]]:
    """``(func(t, y), block settings)`` from a right-hand side or an ODE block.

    Examples
    --------
    >>> from analysis._common import unwrap_func
    >>> f, settings = unwrap_func(lambda t, y: -y)
    >>> settings
    {}
    """
    settings = block_settings(obj)
    if settings:
        return settings["rhs"], settings
    if not callable(obj):
        raise ArgumentTypeError(
            f"{name}: expected a callable func(t, y) or an ODE block, got {type(obj).__name__}"
        )
    return obj, {}


def collect_params(func: object, implicit: object = None, params: object = None) -> list[Tensor]:
    """Parameters to differentiate: ``params`` or those of ``func``/``implicit`` needing grad.

    Examples
    --------
    >>> import torch
    >>> from analysis._common import collect_params
    >>> len(collect_params(torch.nn.Linear(2, 2)))
    2
    """
    if params is not None:
        if isinstance(params, Tensor):
            params = [params]
        out = list(params)
        for i, p in enumerate(out):
            if not isinstance(p, Tensor):
                raise ArgumentTypeError(f"params[{i}]: expected a Tensor, got {type(p).__name__}")
        return out
    out = []
    seen: set[int] = set()
    for owner in (func, getattr(func, "__self__", None), implicit):
        if isinstance(owner, nn.Module):
            for p in owner.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def fingerprint(*parts: object) -> str:
    """A short hash of tensors, numbers and strings (identifies a sweep's inputs).

    Examples
    --------
    >>> import torch
    >>> from analysis._common import fingerprint
    >>> fingerprint(torch.ones(2), "rk4") == fingerprint(torch.ones(2), "rk4")
    True
    >>> fingerprint(torch.ones(2)) == fingerprint(torch.zeros(2))
    False
    >>> W1, W2 = torch.ones(2), torch.zeros(2)
    >>> fingerprint(lambda t, y: W1 * y) == fingerprint(lambda t, y: W2 * y)  # closed-over weights
    False
    """
    h = hashlib.sha256()
    depth = [0]

    def feed(x: object) -> None:
        if isinstance(x, Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif isinstance(x, dict):
            for k in sorted(x):
                feed(str(k))
                feed(x[k])
        elif isinstance(x, nn.Module):
            feed(type(x).__qualname__)
            feed(repr(x))  # structure and settings (e.g. the activation)
            feed([p for p in x.state_dict().values()])
        elif isinstance(x, (ButcherTableau, IMEXTableau)):
            feed(repr(x))
            if isinstance(x, ButcherTableau):
                feed([x.a.tobytes(), x.b.tobytes()])
            else:
                feed([x.explicit, x.implicit])
        elif isinstance(x, bytes):
            h.update(x)
        elif callable(x):
            feed(getattr(x, "__module__", "") + "." + getattr(x, "__qualname__", repr(type(x))))
            if depth[0] < 4:  # what a closure or bound method captures (weights, settings)
                depth[0] += 1
                code = getattr(x, "__code__", None)
                if code is not None:
                    h.update(code.co_code)
                    glb = getattr(x, "__globals__", {})
                    for name in code.co_names:
                        val = glb.get(name)
                        if isinstance(val, (Tensor, nn.Module)):
                            feed(val)
                for cell in getattr(x, "__closure__", None) or ():
                    try:
                        content = cell.cell_contents
                    except ValueError:
                        continue
                    if isinstance(content, (Tensor, nn.Module, int, float, str, tuple, list)):
                        feed(content)
                    elif callable(content):
                        feed(content)
                owner = getattr(x, "__self__", None)
                if isinstance(owner, nn.Module):
                    feed(owner)
                depth[0] -= 1
        else:
            h.update(repr(x).encode())
        h.update(b";")

    for p in parts:
        feed(p)
    return h.hexdigest()[:16]


def as_sequence(value: object) -> Sequence:
    """A list from a scalar or an iterable (strings are scalars)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return [value]
    return list(value)
