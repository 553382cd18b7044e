"""Argument checks and small helpers shared by the analysis functions.

Every check raises :class:`~odenet.errors.ArgumentError` (a bad value) or
:class:`~odenet.errors.ArgumentTypeError` (a bad type) whose message starts with the
argument's name and says what was expected; outputs of the caller's callables (``func``,
``loss``, ``exact``) that do not fit raise :class:`~odenet.errors.FunctionOutputError`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from odenet import ButcherTableau, IMEXTableau
from odenet.errors import ArgumentError, ArgumentTypeError, FunctionOutputError

__all__ = [
    "block_settings",
    "check_bool",
    "check_int",
    "check_loss_value",
    "check_methods",
    "check_numbers",
    "check_path",
    "check_positive",
    "check_real",
    "check_seed",
    "check_steps",
    "check_str",
    "check_tensor",
    "collect_params",
    "fingerprint",
    "method_name",
    "unwrap_func",
]


def method_name(method: str | ButcherTableau | IMEXTableau) -> str:
    """The display name of a method.

    Examples
    --------
    >>> from odenet.analysis._common import method_name
    >>> method_name("rk4")
    'rk4'
    """
    return method if isinstance(method, str) else method.name


def check_methods(methods: object, name: str = "methods") -> list[ButcherTableau | IMEXTableau]:
    """Resolve one method or a sequence of methods into tableaux (checked, distinct, in order).

    Examples
    --------
    >>> from odenet.analysis._common import check_methods
    >>> [m.name for m in check_methods(["euler", "rk4"])]
    ['euler', 'rk4']
    >>> check_methods(["rk4", "rk4"])
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: methods: expected distinct methods, got 'rk4' twice
    """
    from odenet.analysis._region import resolve_method

    if isinstance(methods, (str, ButcherTableau, IMEXTableau)):
        methods = [methods]
    if not isinstance(methods, Iterable):
        raise ArgumentTypeError(
            f"{name}: expected a method name, a tableau, or a sequence of them, got "
            f"{type(methods).__name__}"
        )
    out = [resolve_method(m, f"{name}[{i}]") for i, m in enumerate(methods)]
    if not out:
        raise ArgumentError(f"{name}: expected at least one method")
    seen: set[str] = set()
    for tab in out:
        if tab.name in seen:
            raise ArgumentError(f"{name}: expected distinct methods, got {tab.name!r} twice")
        seen.add(tab.name)
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def check_int(value: object, name: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer (not a bool) in ``[minimum, maximum]``.

    Examples
    --------
    >>> from odenet.analysis._common import check_int
    >>> check_int(3, "k", 1)
    3
    >>> check_int(0, "k", 1)
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: k: expected a positive integer, got 0
    """
    if not _is_int(value):
        raise ArgumentTypeError(f"{name}: expected an integer, got {type(value).__name__}")
    v = int(value)
    if minimum is not None and v < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ArgumentError(f"{name}: expected {what}, got {v}")
    if maximum is not None and v > maximum:
        raise ArgumentError(f"{name}: expected an integer <= {maximum}, got {v}")
    return v


def check_seed(value: object, name: str = "seed") -> int:
    """A seed usable by both torch and numpy: an integer in ``[0, 2**63 - 1]``.

    Examples
    --------
    >>> from odenet.analysis._common import check_seed
    >>> check_seed(7)
    7
    """
    return check_int(value, name, 0, 2**63 - 1)


def check_bool(value: object, name: str, *, allow_none: bool = False) -> bool | None:
    """``True`` or ``False`` (or ``None`` when allowed).

    Examples
    --------
    >>> from odenet.analysis._common import check_bool
    >>> check_bool(None, "progress", allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        expected = "True, False or None" if allow_none else "True or False"
        raise ArgumentTypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    return bool(value)


def check_str(value: object, name: str) -> str:
    """A string.

    Examples
    --------
    >>> from odenet.analysis._common import check_str
    >>> check_str("tanh", "label")
    'tanh'
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def check_path(value: object, name: str = "store") -> str | None:
    """A file path (``str`` or path-like) or ``None``.

    Examples
    --------
    >>> from odenet.analysis._common import check_path
    >>> check_path(None) is None
    True
    """
    if value is None:
        return None
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"{name}: expected a file path or None, got {type(value).__name__}"
        )
    return os.fspath(value)


def check_steps(steps: object, name: str = "steps", *, minimum_count: int = 1) -> list[int]:
    """A strictly increasing list of at least ``minimum_count`` distinct positive step counts.

    Examples
    --------
    >>> from odenet.analysis._common import check_steps
    >>> check_steps([16, 4, 8])
    [4, 8, 16]
    >>> check_steps([8], minimum_count=2)
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: steps: expected at least 2 distinct step counts, got [8]
    """
    if _is_int(steps):
        steps = [steps]
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise ArgumentTypeError(
            f"{name}: expected a sequence of positive integers, got {type(steps).__name__}"
        )
    out = []
    for s in steps:
        if isinstance(s, Tensor) and s.numel() == 1 and not s.is_floating_point():
            s = s.item()
        if not _is_int(s) and not (
            isinstance(s, numbers.Real) and not isinstance(s, bool) and float(s).is_integer()
        ):
            raise ArgumentTypeError(f"{name}: expected positive integers, got {s!r}")
        if int(s) <= 0:
            raise ArgumentError(f"{name}: expected positive step counts, got {int(s)}")
        out.append(int(s))
    out = sorted(set(out))
    if len(out) < minimum_count:
        if minimum_count == 1:
            raise ArgumentError(f"{name}: expected at least one step count")
        raise ArgumentError(
            f"{name}: expected at least {minimum_count} distinct step counts, got {out}"
        )
    return out


def check_real(value: object, name: str) -> float:
    """A finite real number (a one-element real tensor counts).

    Examples
    --------
    >>> from odenet.analysis._common import check_real
    >>> check_real(-0.5, "t")
    -0.5
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ArgumentError(f"{name}: expected a finite number, got {v}")
    return v


def check_positive(value: object, name: str, *, allow_none: bool = False,
                   allow_zero: bool = False) -> float | None:
    """A finite positive float (or non-negative with ``allow_zero``).

    Examples
    --------
    >>> from odenet.analysis._common import check_positive
    >>> check_positive(2, "T")
    2.0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        what = "non-negative" if allow_zero else "positive"
        raise ArgumentError(f"{name}: expected a finite {what} number, got {v}")
    return v


def check_numbers(
    values: object,
    name: str,
    *,
    real: bool = False,
    nonnegative: bool = False,
    allow_empty: bool = False,
) -> np.ndarray:
    """An array (any shape) of finite numbers: complex, or real (``real``), optionally >= 0.

    Accepts numbers, sequences, numpy arrays and tensors; refuses strings, ``None``,
    ragged nesting, booleans, NaN and infinities with a message naming ``name``.

    Examples
    --------
    >>> from odenet.analysis._common import check_numbers
    >>> check_numbers([-1, 2j], "eigenvalues").tolist()
    [(-1+0j), 2j]
    >>> check_numbers([float("nan")], "eigenvalues")
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: eigenvalues: expected finite numbers, got nan at index 0
    """
    kind = "real numbers" if real else "numbers"
    if isinstance(values, Tensor):
        values = values.detach().cpu().resolve_conj().numpy()
    if values is None or isinstance(values, (str, bytes, dict)):
        raise ArgumentTypeError(f"{name}: expected {kind}, got {type(values).__name__}")
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as err:
        raise ArgumentTypeError(f"{name}: expected {kind}, not a ragged nesting ({err})") from None
    if arr.dtype.kind not in "iufc":
        bad = next((v for v in arr.ravel().tolist() if not isinstance(v, numbers.Number)
                    or isinstance(v, bool)), arr.ravel()[0] if arr.size else None)
        raise ArgumentTypeError(
            f"{name}: expected {kind}, got "
            + (f"{type(bad).__name__} {bad!r}" if arr.size else f"dtype {arr.dtype}")
        )
    if real and arr.dtype.kind == "c":
        if np.any(arr.imag != 0):
            raise ArgumentError(f"{name}: expected real numbers, got complex values")
        arr = arr.real
    arr = arr.astype(float if real else complex)
    if arr.size == 0 and not allow_empty:
        raise ArgumentError(f"{name}: expected at least one value")
    bad_idx = np.flatnonzero(~np.isfinite(arr.ravel()))
    if bad_idx.size:
        i = int(bad_idx[0])
        v = arr.ravel()[i]
        shown = v.real if np.iscomplexobj(v) and v.imag == 0 else v
        raise ArgumentError(f"{name}: expected finite numbers, got {shown} at index {i}")
    if nonnegative and np.any(arr < 0):
        raise ArgumentError(
            f"{name}: expected non-negative values, got {float(arr[arr < 0].ravel()[0])}"
        )
    return arr


def check_tensor(value: object, name: str, *, allow_empty: bool = False) -> Tensor:
    """A finite, real floating-point tensor with data (not on the ``meta`` device).

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._common import check_tensor
    >>> check_tensor(torch.ones(2), "y0").shape
    torch.Size([2])
    """
    if not isinstance(value, Tensor):
        raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ArgumentTypeError(
            f"{name}: expected a real floating point tensor, got dtype {value.dtype}"
        )
    if value.device.type == "meta":
        raise ArgumentError(f"{name}: on device meta, which holds no data")
    if value.numel() == 0 and not allow_empty:
        raise ArgumentError(f"{name}: expected a non-empty tensor, got shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ArgumentError(f"{name}: contains non-finite values")
    return value


def check_loss_value(value: object, name: str = "loss") -> Tensor:
    """The value of a caller's loss: a real floating scalar tensor (one element), finite.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._common import check_loss_value
    >>> check_loss_value(torch.tensor(1.5)).item()
    1.5
    >>> check_loss_value(torch.ones(3))
    Traceback (most recent call last):
    ...
    odenet.errors.FunctionOutputError: loss: expected a scalar (a tensor with one element), ...
    """
    if not isinstance(value, Tensor):
        raise FunctionOutputError(
            f"{name}: expected a scalar Tensor, got {type(value).__name__}"
        )
    if value.numel() != 1:
        raise FunctionOutputError(
            f"{name}: expected a scalar (a tensor with one element), got shape "
            f"{tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise FunctionOutputError(
            f"{name}: expected a real floating point scalar, got dtype {value.dtype}"
        )
    if not bool(torch.isfinite(value.detach()).all()):
        raise FunctionOutputError(
            f"{name}: returned a non-finite value ({value.detach().item()})"
        )
    return value.reshape(())


def block_settings(obj: object) -> dict[str, Any]:
    """Settings of an ODE block (``rhs``, ``T``, ``steps``, ``method``, ``implicit``), if any.

    An object counts as an ODE block when it has an ``rhs`` attribute that is
    callable; the remaining attributes are read when present.

    Examples
    --------
    >>> from odenet.analysis._common import block_settings
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
    >>> from odenet.analysis._common import unwrap_func
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
    >>> from odenet.analysis._common import collect_params
    >>> len(collect_params(torch.nn.Linear(2, 2)))
    2
    """
    if params is not None:
        if isinstance(params, Tensor):
            params = [params]
        if not isinstance(params, Iterable):
            raise ArgumentTypeError(
                f"params: expected a sequence of tensors, got {type(params).__name__}"
            )
        out = list(params)
        for i, p in enumerate(out):
            if not isinstance(p, Tensor):
                raise ArgumentTypeError(f"params[{i}]: expected a Tensor, got {type(p).__name__}")
            if not p.is_floating_point():
                raise ArgumentTypeError(
                    f"params[{i}]: expected a floating point tensor, got dtype {p.dtype}"
                )
            if not p.requires_grad:
                raise ArgumentError(
                    f"params[{i}]: does not require grad (call .requires_grad_() or leave it "
                    "out); its gradient cannot be compared"
                )
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
    >>> from odenet.analysis._common import fingerprint
    >>> fingerprint(torch.ones(2), "rk4") == fingerprint(torch.ones(2), "rk4")
    True
    >>> fingerprint(torch.ones(2)) == fingerprint(torch.zeros(2))
    False
    >>> W1, W2 = torch.ones(2), torch.zeros(2)
    >>> fingerprint(lambda t, y: W1 * y) == fingerprint(lambda t, y: W2 * y)  # closed-over weights
    False
    >>> from odenet.nn import make_activation
    >>> fingerprint(make_activation(lambda x: x)) == fingerprint(make_activation(lambda x: -x))
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
            for m in x.modules():  # plain functions a module holds (an activation callable)
                for v in vars(m).values():
                    if callable(v) and not isinstance(v, (nn.Module, Tensor, type)):
                        feed(v)
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

