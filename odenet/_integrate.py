"""``odenet.odeint``: input checks, the time grid, the gradient strategy, the outputs."""

from __future__ import annotations

import inspect
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError, ArgumentTypeError, UnknownOptionError
from odenet.gradients._base import GradientStrategy, resolve_gradient
from odenet.solvers._adaptive import adaptive_tableau, odeint_adaptive
from odenet.solvers._grid import MAX_NUM_STEPS, time_resolution
from odenet.solvers._methods import check_implicit
from odenet.solvers._problem import Problem, State, concrete
from odenet.solvers._reversible import ReversibleMethod
from odenet.solvers._stepper import traceable_method
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = ["check_signature", "odeint"]

_OPTIONS = ("step_size", "check_finite", "perturb", "grid_constructor", "max_num_steps")
_REFUSED_OPTIONS = {
    "interp": "odenet never interpolates: fixed steps land exactly on every output time "
    "(the torchdiffeq compat module accepts it, with a warning)",
}
# torchdiffeq's callbacks, looked up as attributes of func.
_UNSUPPORTED_CALLBACKS = ("callback_accept_step", "callback_reject_step")


def _bool_option(opts: Mapping, key: str, default: bool) -> bool:
    v = opts.get(key, default)
    if not isinstance(v, bool):
        raise ArgumentTypeError(f"options[{key!r}]: expected True or False, got {type(v).__name__}")
    return v


def _resolve_options(options: Mapping | None, step_size: object) -> dict[str, Any]:
    """Validate ``options`` and ``step_size``; return the normalised settings."""
    opts = {} if options is None else options
    if not isinstance(opts, Mapping):
        raise ArgumentTypeError(f"options: expected a dict, got {type(opts).__name__}")
    for key in opts:
        if key in _REFUSED_OPTIONS:
            raise UnknownOptionError(f"options: {key!r} is not supported: {_REFUSED_OPTIONS[key]}")
        if key not in _OPTIONS:
            raise UnknownOptionError(
                f"options: unknown option {key!r}; valid options are "
                + ", ".join(repr(k) for k in _OPTIONS)
            )
    if "step_size" in opts and step_size is not None:
        raise ArgumentError(
            "step_size: given both as step_size= and in options; pass it in one place"
        )
    h = opts.get("step_size", step_size)
    grid_constructor = opts.get("grid_constructor")
    if grid_constructor is not None:
        if h is not None:
            raise ArgumentError(
                "options['grid_constructor']: step_size and grid_constructor are mutually "
                "exclusive; pass one of them"
            )
        if not callable(grid_constructor):
            raise ArgumentTypeError(
                "options['grid_constructor']: expected a callable grid_constructor(func, y0, t) "
                f"returning a 1-D tensor of times, got {type(grid_constructor).__name__}"
            )
    if h is not None:
        if isinstance(h, Tensor):
            if h.numel() != 1:
                raise ArgumentError(
                    f"step_size: expected a scalar, got a tensor of shape {tuple(h.shape)}"
                )
            if h.requires_grad:
                raise ArgumentError(
                    "step_size: a tensor that requires grad; gradients with respect to the step "
                    "size are not supported (the number of steps and the landing of the last "
                    "step depend on it); pass step_size.detach() or a float, or differentiate "
                    "with respect to the output times t"
                )
            v = concrete(h)
            if v is None:
                raise ArgumentTypeError(
                    "step_size: a tensor under torch.compile, whose value cannot be read "
                    "while tracing; pass a float, or step_size=None with the grid as t"
                )
            h = v.item()
        if isinstance(h, bool) or not isinstance(h, (int, float)):
            raise ArgumentTypeError(f"step_size: expected a real number, got {type(h).__name__}")
        h = float(h)
        if not math.isfinite(h):
            raise ArgumentError(f"step_size: expected a finite number, got {h}")
        if h <= 0:
            raise ArgumentError(f"step_size: expected a positive number, got {h}")
    max_steps = opts.get("max_num_steps", MAX_NUM_STEPS)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int):
        raise ArgumentTypeError(
            f"options['max_num_steps']: expected a positive int, got {type(max_steps).__name__}"
        )
    if max_steps < 1:
        raise ArgumentError(f"options['max_num_steps']: expected a positive int, got {max_steps}")
    return {
        "step_size": h,
        "check_finite": _bool_option(opts, "check_finite", True),
        "perturb": _bool_option(opts, "perturb", False),
        "grid_constructor": grid_constructor,
        "max_num_steps": max_steps,
        "max_num_steps_given": "max_num_steps" in opts,
    }


def check_signature(name: str, func: object) -> None:
    """Raise unless ``func`` can be called as ``func(t, y)`` (two positional arguments).

    Callables whose signature Python cannot inspect (some builtins) pass.

    Examples
    --------
    >>> from odenet._integrate import check_signature
    >>> check_signature("func", lambda t, y: -y)
    >>> check_signature("func", lambda y: -y)
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentTypeError: func: expected a callable func(t, y) taking the time ...
    """
    if not callable(func):
        raise ArgumentTypeError(
            f"{name}: expected a callable {name}(t, y), got {type(func).__name__}"
        )
    target = func.forward if isinstance(func, nn.Module) else func
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(None, None)
    except TypeError:
        what = f"{type(func).__name__}.forward" if isinstance(func, nn.Module) else "its signature"
        raise ArgumentTypeError(
            f"{name}: expected a callable {name}(t, y) taking the time and the state, but "
            f"{what} is {sig}"
            + (
                "; wrap an operator y -> K(y) as a right-hand side, e.g. "
                "odenet.nn.ResidualRHS(op), or lambda t, y: op(y)"
                if isinstance(func, nn.Module)
                else ""
            )
        ) from None


def _check_y0(y0: object) -> tuple[State, bool]:
    if isinstance(y0, Tensor):
        comps, tuple_state = (y0,), False
    elif isinstance(y0, (tuple, list)) and len(y0) > 0:
        comps, tuple_state = tuple(y0), True
    else:
        raise ArgumentTypeError(
            f"y0: expected a Tensor or a non-empty tuple of Tensors, got {type(y0).__name__}"
        )
    for m, c in enumerate(comps):
        name = "y0" if not tuple_state else f"y0[{m}]"
        if not isinstance(c, Tensor):
            raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(c).__name__}")
        if not (c.is_floating_point() or c.is_complex()):
            raise ArgumentTypeError(
                f"{name}: expected a floating point tensor, got dtype {c.dtype} "
                f"(convert with .double() or .float())"
            )
        if c.device != comps[0].device:
            raise ArgumentError(
                f"{name}: on device {c.device}, but y0[0] is on {comps[0].device}; "
                "all components must share one device"
            )
        v = concrete(c)  # the values behind torch.func wrappers; None under torch.compile
        if v is not None and not bool(torch.isfinite(v).all()):
            raise ArgumentError(f"{name}: contains non-finite values (nan or inf)")
    return (comps if tuple_state else comps[0]), tuple_state


def _check_t(t: object, device: torch.device) -> Tensor:
    if not isinstance(t, Tensor):
        raise ArgumentTypeError(f"t: expected a 1-D Tensor of times, got {type(t).__name__}")
    if t.ndim != 1:
        raise ArgumentError(f"t: expected a 1-D tensor, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ArgumentTypeError(
            f"t: expected a floating point tensor, got dtype {t.dtype} (use e.g. "
            "torch.linspace or t.double())"
        )
    if t.device != device:
        raise ArgumentError(f"t: on device {t.device}, but y0 is on {device}; move t with .to()")
    if t.numel() < 1:
        raise ArgumentError("t: expected at least one time (the initial time), got an empty tensor")
    v = concrete(t)  # None under torch.compile: nothing is read on the host there
    if v is None:
        return t
    if not bool(torch.isfinite(v).all()):
        raise ArgumentError("t: contains non-finite values (nan or inf)")
    d = v[..., 1:] - v[..., :-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ArgumentError("t: expected strictly increasing or strictly decreasing times")
    return t


def _grid_points(constructor: Callable, func: Callable, y0: State, t: Tensor) -> list[float]:
    """Call torchdiffeq's ``grid_constructor(func, y0, t)`` and validate the grid it returns."""
    with torch.no_grad():
        g = constructor(func, y0, t.detach())
    where = "options['grid_constructor']"
    if not isinstance(g, Tensor) or g.ndim != 1 or g.numel() < 2:
        raise ArgumentTypeError(
            f"{where}: expected it to return a 1-D tensor of at least 2 times, got "
            + (f"shape {tuple(g.shape)}" if isinstance(g, Tensor) else type(g).__name__)
        )
    pts = g.double().tolist()
    if not all(math.isfinite(x) for x in pts):
        raise ArgumentError(f"{where}: the grid contains non-finite values")
    t0, t1 = float(t[0]), float(t[-1])
    eps = 8 * time_resolution(t.dtype)
    if abs(pts[0] - t0) > eps * max(abs(pts[0]), abs(t0)) or abs(pts[-1] - t1) > eps * max(
        abs(pts[-1]), abs(t1)
    ):
        raise ArgumentError(
            f"{where}: the grid must start at t[0] = {t0:.6g} and end at t[-1] = {t1:.6g}, "
            f"got {pts[0]:.6g} ... {pts[-1]:.6g}"
        )
    pts[0], pts[-1] = t0, t1
    sign = 1.0 if t1 > t0 else -1.0
    if any((b - a) * sign <= 0 for a, b in itertools.pairwise(pts)):
        raise ArgumentError(
            f"{where}: the grid must be strictly {'increasing' if sign > 0 else 'decreasing'} "
            "like t"
        )
    return pts


def _callbacks(func: object, strategy: GradientStrategy) -> Callable | None:
    """torchdiffeq's callbacks on ``func``: the step callback, warnings for the others."""
    found = [n for n in _UNSUPPORTED_CALLBACKS if callable(getattr(func, n, None))]
    if found:
        warnings.warn(
            f"func: fixed-step methods do not support the callbacks {', '.join(found)} "
            "(there are no accepted or rejected steps); they are never called",
            stacklevel=3,
        )
    if callable(getattr(func, "callback_step_adjoint", None)) and strategy.name != "adjoint":
        warnings.warn(
            "func.callback_step_adjoint is called only by gradient='adjoint' (the reverse-time "
            f"solve); with gradient={strategy.name or type(strategy).__name__!r} it is never "
            "called",
            stacklevel=3,
        )
    cb = getattr(func, "callback_step", None)
    return cb if callable(cb) else None


def _collect_params(func: object, implicit: object, params: Iterable | None) -> tuple[Tensor, ...]:
    if params is not None:
        if isinstance(params, Tensor):
            params = (params,)
        out = []
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise ArgumentTypeError(f"params[{i}]: expected a Tensor, got {type(p).__name__}")
            out.append(p)
    else:
        out = []
        for owner in (func, getattr(func, "__self__", None), implicit):
            if isinstance(owner, nn.Module):
                out.extend(owner.parameters())
    seen: set[int] = set()
    unique = []
    for p in out:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return tuple(unique)


def odeint(
    func: Callable,
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    method: str | ButcherTableau | IMEXTableau = "rk4",
    options: Mapping | None = None,
    *,
    step_size: float | None = None,
    gradient: str | GradientStrategy = "backprop",
    implicit=None,
    params: Iterable[Tensor] | None = None,
    event_fn: Callable | None = None,
) -> Tensor | tuple[Tensor, ...] | tuple[Tensor, Tensor | tuple[Tensor, ...]]:
    r"""Solve :math:`y' = f(t, y)` (or :math:`y' = f(t, y) - L y`) with fixed-step Runge–Kutta.

    A drop-in for ``torchdiffeq.odeint`` with fixed steps (see
    :mod:`odenet.compat.torchdiffeq` for torchdiffeq's names and defaults): the same
    call signature and output layout, but exact numerics: every output interval is
    cut into steps of ``step_size`` whose last one is shortened so that a step
    lands exactly on each requested time (nothing is interpolated; whether an
    interval is a whole number of steps is decided to the resolution of ``t``'s
    dtype), and the gradient is that of the discrete solve
    (discretize-then-optimize) unless ``gradient="adjoint"``.

    Parameters
    ----------
    func : callable
        ``func(t, y)`` returning a tensor like ``y`` (a tuple like ``y`` for
        tuple states). ``t`` is a 0-d tensor of ``y``'s (real) dtype. torchdiffeq's
        ``func.callback_step(t0, y0, dt)`` is called before every forward step and
        ``func.callback_step_adjoint`` before every step of the adjoint's reverse
        solve; the adaptive callbacks warn.
    y0 : Tensor or tuple of Tensor
        Initial state, floating point.
    t : Tensor
        1-D, strictly increasing or decreasing output times, floating point, on
        ``y0``'s device; ``t[0]`` is the initial time. A single time returns
        ``y0[None]``. ``t`` may require grad (not with IMEX methods or a
        ``grid_constructor``): every strategy then delivers the gradient with
        respect to the output times.
    method : str, ButcherTableau or IMEXTableau, default "rk4"
        A name of :data:`odenet.METHODS` (``euler``, ``midpoint``, ``heun``,
        ``ssprk3``, ``rk4`` (classic), ``rk4_38`` (Kutta's 3/8 rule, torchdiffeq's
        "rk4"), ``imex_euler``, ``ars222``, ``ars443``) or a tableau. The reversible
        methods of :data:`odenet.solvers.REVERSIBLE_METHODS` (``reversible_heun``, ``alf``,
        ``leapfrog``) pair with ``gradient="reversible"`` (or ``"backprop"``).
    options : dict, optional
        ``step_size``; ``check_finite`` (default True: checks the state at every
        output time and, when it is NaN or infinite, names the first non-finite
        step and its time); ``perturb`` (torchdiffeq's: stages at the ends of a
        step see the next representable time inside it); ``grid_constructor``
        (``g(func, y0, t)`` returns the grid; output times are inserted into it);
        ``max_num_steps`` (default :math:`2^{31}-1`; the search limit of an event
        solve defaults to 20000 steps). Unknown keys are an error.
    step_size : float, optional
        The step size (same as ``options["step_size"]``; give it once). Without
        it, one step per output interval (torchdiffeq's fixed-grid default).
    gradient : str or GradientStrategy, default "backprop"
        A name of :data:`odenet.gradients.STRATEGIES` (``"backprop"``, ``"anode"``,
        ``"revolve"``, ``"adjoint"``, ``"reversible"`` (reversible methods only) and every
        registered subclass) or a strategy instance (:class:`Backprop`, :class:`ANODE`,
        :class:`Revolve`, :class:`Adjoint`, :class:`Reversible`, …).
    implicit : linear operator, optional
        ``L`` of ``y' = func(t, y) - L y`` (e.g. :class:`odenet.linear.ConvFFT`);
        required by the IMEX methods and refused by the explicit ones.
    params : iterable of Tensor, optional
        Tensors to differentiate with respect to besides ``y0``. Default: the
        parameters of ``func`` (and of ``implicit``) when they are ``nn.Module``\ s.
        Strategies other than backprop need it for tensors ``func`` reaches only
        through a closure; such tensors are refused with a
        :class:`~odenet.errors.GradientError` — on the first step, or in the
        backward pass for a tensor that ``func`` starts using only later.
    event_fn : callable, optional
        ``event_fn(t, y)`` (a scalar or several values): with ``len(t) == 2`` and a
        ``step_size``, integrate from ``t[0]`` in the direction of ``t[1]`` until
        a value changes sign, landing on the event time by bisection on the
        length of the last step (no interpolation). Returns ``(event_t,
        solution)``, ``solution`` holding ``y0`` and the state at ``event_t``; the
        gradient is taken with the event time held fixed (torchdiffeq's
        convention; ``odenet.compat.torchdiffeq.odeint_event`` adds its dependence).

    Returns
    -------
    Tensor or tuple of Tensor
        Shape ``(len(t), *y0.shape)`` with ``result[0] == y0``; a tuple for tuple
        ``y0``; ``(event_t, solution)`` with ``event_fn``.

    Raises
    ------
    odenet.errors.UnknownMethodError, odenet.errors.UnknownOptionError
        Unknown method or option.
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        Invalid ``y0``, ``t``, ``step_size``, ``implicit``, ``gradient`` or ``params``.
    odenet.errors.FunctionOutputError
        ``func`` returned a wrong type, shape, dtype or device.
    odenet.errors.NonFiniteStateError
        The state became NaN/inf (with the step index and time).

    Examples
    --------
    >>> import torch, odenet
    >>> t = torch.linspace(0, 1, 3, dtype=torch.float64)
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(2, dtype=torch.float64), t,
    ...                   method="rk4", step_size=0.1)
    >>> y.shape
    torch.Size([3, 2])
    >>> abs(y[-1, 0].item() - torch.e ** -1) < 1e-6
    True
    """
    adaptive = adaptive_tableau(method)  # an embedded pair: error-controlled steps
    if adaptive is not None:
        return odeint_adaptive(
            func, y0, t, adaptive, options, step_size=step_size, gradient=gradient,
            implicit=implicit, params=params, event_fn=event_fn,
        )
    tableau = traceable_method(method)  # resolve_method, its checks kept off a compiled graph
    opts = _resolve_options(options, step_size)
    y0, tuple_state = _check_y0(y0)
    first = y0 if not tuple_state else y0[0]
    t = _check_t(t, first.device)
    check_signature("func", func)
    check_implicit(tableau, implicit)
    if isinstance(tableau, IMEXTableau):
        if tuple_state:
            raise ArgumentError("y0: IMEX methods need a single Tensor state, not a tuple")
        channels = getattr(implicit, "channels", None)
        if isinstance(channels, int) and (y0.ndim < 3 or y0.shape[-3] != channels):
            raise ArgumentError(
                f"y0: the implicit operator acts on {channels} channels (dimension -3 of a "
                f"(B, C, H, W) state), but y0 has shape {tuple(y0.shape)}"
            )
        v = concrete(t)
        if len(t) > 1 and v is not None and bool((v[..., 1] < v[..., 0]).any()):
            raise ArgumentError(
                "t: IMEX methods integrate forward in time only (decreasing t would need "
                "(I - |h| gamma L)^-1, which amplifies and may be singular)"
            )
        if t.requires_grad:
            raise ArgumentError(
                "t: gradients with respect to the output times are not supported by the IMEX "
                "methods (the implicit solve depends on the step size); pass t.detach()"
            )
    strategy = resolve_gradient(gradient)
    params = _collect_params(func, implicit, params)
    time_dtype = first.real.dtype
    callback_step = _callbacks(func, strategy)
    if isinstance(tableau, ReversibleMethod):  # leapfrog, alf, reversible_heun: their own loop
        from odenet.gradients._reversible import solve_reversible

        return solve_reversible(
            func, y0, t, tableau, strategy, tuple_state=tuple_state, params=params, opts=opts,
            time_dtype=time_dtype, callback_step=callback_step, event_fn=event_fn,
        )
    if event_fn is not None:
        from odenet._events import solve_to_event

        if opts["grid_constructor"] is not None or opts["step_size"] is None:
            raise ArgumentError(
                "step_size: event handling (event_fn) steps with a fixed step_size until the "
                "event; pass step_size=h (grid_constructor is not supported with event_fn)"
            )
        if len(t) != 2:
            raise ArgumentError(
                f"t: with event_fn, t holds the initial time and a second time giving the "
                f"direction of integration (len(t) == 2, as in torchdiffeq), got len(t) = {len(t)}"
            )
        return solve_to_event(
            func, y0, t, tableau, strategy, event_fn,
            tuple_state=tuple_state, implicit=implicit, params=params, opts=opts,
            time_dtype=time_dtype, callback_step=callback_step,
        )
    if len(t) == 1:  # no integration: torchdiffeq returns y0 as the only output
        return tuple(torch.stack([c]) for c in y0) if tuple_state else torch.stack([y0])
    grid_points = None
    if opts["grid_constructor"] is not None:
        if t.requires_grad:
            raise ArgumentError(
                "t: gradients with respect to the output times are not supported with "
                "options['grid_constructor'] (the grid's dependence on t is unknown); pass "
                "t.detach() or use step_size"
            )
        grid_points = _grid_points(opts["grid_constructor"], func, y0, t)
    problem = Problem(
        func,
        tableau,
        t,
        opts["step_size"],
        tuple_state=tuple_state,
        implicit=implicit,
        check_finite=opts["check_finite"],
        params=params,
        time_dtype=time_dtype,
        perturb=opts["perturb"],
        grid_points=grid_points,
        max_num_steps=opts["max_num_steps"],
        callback_step=callback_step,
    )
    return strategy.solve(problem, y0)
