"""torchdiffeq's API on odenet's solvers: ``odeint``, ``odeint_adjoint``, ``odeint_event``.

Migrating is one line::

    from odenet.compat import torchdiffeq as tde   # instead of: import torchdiffeq as tde

The functions take torchdiffeq's arguments with torchdiffeq's defaults and
method names (its ``"rk4"`` is Kutta's 3/8 rule, odenet's ``"rk4_38"``). What
differs, by design:

* the adaptive methods ``dopri5`` (the default), ``bosh3``, ``adaptive_heun``,
  ``fehlberg2``, ``dopri8`` (and odenet's ``tsit5``) run torchdiffeq's algorithm
  with its arithmetic: the same accepted steps, and outputs from its dense-output
  interpolation, so the numbers are torchdiffeq's; their gradient holds the step
  sizes the controller chose constant (torchdiffeq's backprop keeps a graph through
  its starting-step heuristic but not through its step-size proposals; odenet's
  ``options["differentiate_steps"]`` differentiates both, with :func:`odenet.odeint`);
  events are located by bisecting the last accepted step with real steps of the
  pair, not on the interpolant; ``grid_constructor`` is not available with them;
  ``scipy_solver``, the Adams and the implicit methods are a clear error;
* with ``event_fn``, ``odeint`` and ``odeint_adjoint`` return an event time that
  carries its exact gradient (implicit function theorem; torchdiffeq does not
  propagate through it), while the state's gradient holds the event time fixed, as in
  torchdiffeq; ``odeint_event`` gives the total derivative of both;
* fixed steps (``euler``, ``midpoint``, ``heun2``, ``heun3``, ``rk4``) land exactly on
  every output time (the last step of an interval is shortened) instead of
  interpolating, and events are located by re-stepping, so ``options["interp"]``
  has no effect (a warning says so), as have ``rtol``/``atol`` for fixed steps (a
  warning when they are not the defaults);
* ``odeint_adjoint`` integrates the adjoint on the forward grid traversed
  backward with the same method, so ``adjoint_method`` and ``adjoint_options``
  must match the forward ones, and a ``grid_constructor`` is called once;
* errors are odenet's typed errors (subclasses of ``ValueError``/``TypeError``/
  ``RuntimeError``), and ``t`` must be on ``y0``'s device.

Examples
--------
>>> import torch
>>> from odenet.compat import torchdiffeq as tde
>>> y = tde.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64),
...                torch.linspace(0, 1, 3, dtype=torch.float64), method="rk4",
...                options={"step_size": 0.1})
>>> round(y[-1].item(), 6)
0.367879
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from odenet._events import reroute_event_gradient
from odenet._integrate import odeint as _odeint
from odenet.errors import ArgumentError, ArgumentTypeError, UnknownMethodError
from odenet.solvers._adaptive import odeint_adaptive
from odenet.solvers._adaptive_methods import ADAPTIVE_METHODS
from odenet.solvers._methods import METHODS
from odenet.solvers._tableau import ButcherTableau

__all__ = ["ADAPTIVE_METHODS", "FIXED_METHODS", "odeint", "odeint_adjoint", "odeint_event"]

# Heun's third-order method (torchdiffeq's "heun3").
HEUN3 = ButcherTableau(
    a=[[0, 0, 0], [1 / 3, 0, 0], [0, 2 / 3, 0]],
    b=[1 / 4, 0, 3 / 4],
    c=[0, 1 / 3, 2 / 3],
    order=3,
    name="heun3",
)

#: torchdiffeq's fixed-step explicit Runge–Kutta names and the schemes they run here.
FIXED_METHODS: Mapping[str, ButcherTableau] = {
    "euler": METHODS["euler"],
    "midpoint": METHODS["midpoint"],
    "heun2": METHODS["heun"],
    "heun3": HEUN3,
    "rk4": METHODS["rk4_38"],
}
_NOT_YET = {"scipy_solver"}
_NOT_HERE = {
    "explicit_adams", "implicit_adams", "fixed_adams", "implicit_euler", "implicit_midpoint",
    "trapezoid", "radauIIA3", "gl4", "radauIIA5", "gl6", "sdirk2", "trbdf2",
}
_RTOL, _ATOL = 1e-7, 1e-9


def _method(method: object):
    if method is None:
        method = "dopri5"
    if isinstance(method, ButcherTableau):
        return method
    if isinstance(method, str):
        if method in FIXED_METHODS:
            return FIXED_METHODS[method]
        if method in ADAPTIVE_METHODS:
            return ADAPTIVE_METHODS[method]
        valid = ", ".join(repr(m) for m in (*FIXED_METHODS, *ADAPTIVE_METHODS))
        if method in _NOT_YET:
            raise UnknownMethodError(
                f"method: {method!r} (scipy's solvers) is not available in odenet; its own "
                f"methods are {valid}"
            )
        if method in _NOT_HERE:
            raise UnknownMethodError(
                f"method: torchdiffeq's {method!r} (Adams or implicit) is not available in "
                f"odenet; the explicit methods are {valid}"
            )
        if method in METHODS:
            return METHODS[method]
    raise UnknownMethodError(
        f"method: unknown method {method!r}; torchdiffeq's fixed-step names are "
        + ", ".join(repr(m) for m in FIXED_METHODS)
        + ", its adaptive ones "
        + ", ".join(repr(m) for m in ADAPTIVE_METHODS)
        + " (odenet's names, e.g. 'rk4_38', 'ssprk3', are accepted too)"
    )


def _options(options: Mapping | None, rtol, atol, names: tuple[str, str]) -> dict[str, Any]:
    opts = {} if options is None else dict(options)
    if not isinstance(options, (Mapping, type(None))):
        raise ArgumentTypeError(f"options: expected a dict, got {type(options).__name__}")
    interp = opts.pop("interp", None)
    if interp is not None:
        if interp not in ("linear", "cubic"):
            raise ArgumentError(f"options['interp']: expected 'linear' or 'cubic', got {interp!r}")
        warnings.warn(
            "options['interp'] has no effect in odenet: fixed steps land exactly on every output "
            "time and events are located by re-stepping, so nothing is interpolated",
            stacklevel=3,
        )
    if "norm" in opts:
        raise ArgumentError("options['norm']: only adaptive methods use a norm; remove it")
    for name, value, default in ((names[0], rtol, _RTOL), (names[1], atol, _ATOL)):
        if isinstance(value, Tensor) or value != default:
            warnings.warn(
                f"{name} has no effect on fixed-step methods (they take no error control); "
                "events are located to the resolution of the time dtype",
                stacklevel=3,
            )
    return opts


def odeint(
    func: Callable,
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    *,
    rtol: float = _RTOL,
    atol: float = _ATOL,
    method: str | None = None,
    options: Mapping | None = None,
    event_fn: Callable | None = None,
):
    """torchdiffeq's ``odeint`` on odenet's fixed-step solvers (plain backprop gradients).

    Parameters
    ----------
    func : callable
        ``func(t, y)``; ``t`` arrives as a 0-d tensor of ``y``'s dtype.
    y0 : Tensor or tuple of Tensor
        Initial state.
    t : Tensor
        1-D output times, increasing or decreasing; may require grad.
    rtol, atol : float, Tensor or tuple
        The error control of the adaptive methods (per component for tuple states); no
        effect on fixed steps (a warning when changed).
    method : str, optional
        Adaptive: ``"dopri5"`` (the default, ``None``), ``"bosh3"``, ``"adaptive_heun"``,
        ``"fehlberg2"``, ``"dopri8"``, ``"tsit5"``; fixed-step: ``"euler"``,
        ``"midpoint"``, ``"heun2"``, ``"heun3"``, ``"rk4"`` (the 3/8 rule).
    options : dict, optional
        Adaptive methods: torchdiffeq's ``first_step``, ``min_step``, ``max_step``,
        ``max_num_steps``, ``safety``, ``ifactor``, ``dfactor``, ``norm``, ``step_t``,
        ``jump_t`` (and odenet's, see :func:`odenet.odeint`). Fixed steps:
        ``step_size`` (without it, one step per output interval), ``perturb``,
        ``grid_constructor``, ``interp`` (no effect, warned), and odenet's
        ``check_finite``, ``max_num_steps``.
    event_fn : callable, optional
        ``event_fn(t, y)``; the solve stops where it changes sign and returns
        ``(event_t, solution)`` with ``solution`` of length 2.

    Returns
    -------
    Tensor or tuple of Tensor, or (Tensor, solution) with ``event_fn``

    Examples
    --------
    >>> import torch
    >>> from odenet.compat import torchdiffeq as tde
    >>> tde.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 0.5, 1.0]),
    ...            method="euler").shape
    torch.Size([3, 2])
    """
    tableau = _method(method)
    if tableau.is_adaptive:
        out = odeint_adaptive(func, y0, t, tableau, options, rtol=rtol, atol=atol,
                              event_fn=event_fn, interpolate=True)
    else:
        opts = _options(options, rtol, atol, ("rtol", "atol"))
        out = _odeint(func, y0, t, method=tableau, options=opts, event_fn=event_fn)
    return _event_time(func, event_fn, out, t)


def _event_time(func: Callable, event_fn: Callable | None, out, t: Tensor):
    """With ``event_fn``: the event time with its exact gradient (implicit function theorem;
    torchdiffeq's own ``odeint`` does not propagate through it), the solution as solved (its
    gradient holds the event time fixed, torchdiffeq's convention)."""
    if event_fn is None:
        return out
    event_t, solution = out
    tau, _ = reroute_event_gradient(func, event_fn, event_t, solution, t[0])
    return tau, solution


def odeint_adjoint(
    func: Callable,
    y0: Tensor | tuple[Tensor, ...],
    t: Tensor,
    *,
    rtol: float = _RTOL,
    atol: float = _ATOL,
    method: str | None = None,
    options: Mapping | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: Mapping | None = None,
    adjoint_params: Iterable[Tensor] | None = None,
):
    """torchdiffeq's ``odeint_adjoint``: the continuous adjoint (``gradient="adjoint"``).

    Fixed steps: the adjoint runs on the forward grid traversed backward with the same
    method, so ``adjoint_method`` and ``adjoint_options`` may only repeat the forward ones.
    Adaptive methods: the augmented system is solved backward from each output time to
    the previous one with the forward method under its own error control
    (``adjoint_rtol``, ``adjoint_atol``, default ``rtol``, ``atol``; torchdiffeq's norm of
    the augmented state, ``adjoint_options={"norm": "seminorm"}`` leaving the parameters
    out), as torchdiffeq does.
    ``adjoint_params`` defaults to ``func.parameters()`` (``func`` must then be an
    ``nn.Module``, as in torchdiffeq); tensors that require grad but are not among
    them are an error rather than a silently zero gradient. ``func.callback_step_adjoint``
    is called before every step of the reverse solve.

    Parameters
    ----------
    func, y0, t, rtol, atol, method, options, event_fn
        As in :func:`odeint`.
    adjoint_rtol, adjoint_atol : float, optional
        The reverse solve's tolerances (adaptive methods; no effect on fixed steps).
    adjoint_method : str, optional
        Must be ``None`` or the forward method.
    adjoint_options : dict, optional
        ``None``, equal to the forward ``options``, or (adaptive methods) ``{"norm": ...}``.
    adjoint_params : iterable of Tensor, optional
        The tensors to differentiate besides ``y0``.

    Returns
    -------
    Tensor or tuple of Tensor, or (Tensor, solution) with ``event_fn``

    Examples
    --------
    >>> import torch
    >>> from odenet.compat import torchdiffeq as tde
    >>> f = torch.nn.Linear(2, 2)
    >>> y = tde.odeint_adjoint(lambda t, y: f(y), torch.ones(2), torch.tensor([0.0, 1.0]),
    ...                        method="rk4", options={"step_size": 0.25},
    ...                        adjoint_params=tuple(f.parameters()))
    >>> y[-1].sum().backward()
    >>> f.weight.grad.shape
    torch.Size([2, 2])
    """
    tableau = _method(method)
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise ArgumentTypeError(
                "func: must be an nn.Module to take the adjoint parameters from it; "
                "alternatively pass them with adjoint_params=(...) (as in torchdiffeq)"
            )
        params = tuple(func.parameters())
    else:
        params = tuple(adjoint_params)
    if tableau.is_adaptive:
        if adjoint_method is not None and _method(adjoint_method) is not tableau:
            raise ArgumentError(
                f"adjoint_method: odenet's adjoint solves backward with the forward method "
                f"({tableau.name!r}); got {adjoint_method!r}"
            )
        opts = dict(options or {})
        if adjoint_options is not None:
            extra = {k: v for k, v in dict(adjoint_options).items() if k != "norm"}
            if extra and extra != {k: v for k, v in opts.items() if k != "norm"}:
                raise ArgumentError(
                    "adjoint_options: odenet's adaptive adjoint takes the forward options and "
                    "adjoint_options={'norm': 'seminorm' or a callable}; got "
                    f"{sorted(extra)}"
                )
            if "norm" in adjoint_options:
                opts["adjoint_norm"] = adjoint_options["norm"]
        if adjoint_rtol is not None:
            opts["adjoint_rtol"] = adjoint_rtol
        if adjoint_atol is not None:
            opts["adjoint_atol"] = adjoint_atol
        out = _event_time(func, event_fn, odeint_adaptive(
            func, y0, t, tableau, opts, rtol=rtol, atol=atol, gradient="adjoint", params=params,
            event_fn=event_fn, interpolate=True), t)
        if event_fn is None and isinstance(out, tuple):
            # torchdiffeq solves a tuple state as one flat tensor and returns each component
            # as a slice of it, viewed in the component's shape; the same graph layout (two
            # free view nodes above the adjoint's node, which holds adjoint_options) lets code
            # that walks grad_fn to that node, as torchdiffeq's own tests do, find it
            out = tuple(c[...].view(c.shape) for c in out)
        return out
    opts = _options(options, rtol, atol, ("rtol", "atol"))
    if adjoint_method is not None and _method(adjoint_method) is not tableau:
        raise ArgumentError(
            f"adjoint_method: odenet's adjoint uses the forward method ({method!r}); got "
            f"{adjoint_method!r}"
        )
    if adjoint_options is not None and dict(adjoint_options) != dict(options or {}):
        raise ArgumentError(
            "adjoint_options: odenet's adjoint runs on the forward grid traversed backward, so "
            "adjoint_options must be None or equal to options"
        )
    _options(None, _RTOL if adjoint_rtol is None else adjoint_rtol,
             _ATOL if adjoint_atol is None else adjoint_atol, ("adjoint_rtol", "adjoint_atol"))
    return _event_time(func, event_fn, _odeint(
        func, y0, t, method=tableau, options=opts, gradient="adjoint", params=params,
        event_fn=event_fn,
    ), t)


def odeint_event(
    func: Callable,
    y0: Tensor | tuple[Tensor, ...],
    t0: Tensor,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs,
):
    """torchdiffeq's ``odeint_event``: solve until the event, with a differentiable event time.

    The event time's gradient comes from the implicit function theorem applied
    to ``event_fn(tau, y(tau)) = 0``, with ``y(tau)`` moving at ``func(tau, y(tau))``.

    Parameters
    ----------
    func, y0
        As in :func:`odeint`.
    t0 : Tensor
        The initial time (0-d or one element).
    event_fn : callable
        ``event_fn(t, y)``.
    reverse_time : bool, default False
        Integrate backward in time.
    odeint_interface : callable, default :func:`odeint`
        :func:`odeint` or :func:`odeint_adjoint`.
    **kwargs
        Passed to ``odeint_interface`` (``method``, ``options`` with ``step_size``, ...).

    Returns
    -------
    event_t : Tensor
    solution : Tensor or tuple of Tensor
        The initial state and the state at ``event_t``.

    Examples
    --------
    >>> import torch
    >>> from odenet.compat import torchdiffeq as tde
    >>> y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    >>> t_ev, sol = tde.odeint_event(lambda t, y: -y, y0, torch.tensor(0.0, dtype=torch.float64),
    ...                              event_fn=lambda t, y: y.sum() - 0.5, method="rk4",
    ...                              options={"step_size": 0.01})
    >>> round(t_ev.item(), 6)  # log 2
    0.693147
    >>> t_ev.backward(); round(y0.grad.item(), 4)  # d/dy0 log(2 y0) = 1 / y0
    1.0
    """
    if not isinstance(t0, Tensor):
        raise ArgumentTypeError(f"t0: expected a Tensor, got {type(t0).__name__}")
    if t0.numel() != 1:
        raise ArgumentError(f"t0: expected a single time, got shape {tuple(t0.shape)}")
    start = t0.reshape(-1)
    t = torch.cat([start, start.detach() + (-1.0 if reverse_time else 1.0)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    return reroute_event_gradient(func, event_fn, event_t, solution, t[0])
