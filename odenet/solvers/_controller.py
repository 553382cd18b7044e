"""Step-size control for the embedded Runge–Kutta pairs: options, error norm, controller.

The semantics and option names are torchdiffeq's (Hairer, Nørsett & Wanner, *Solving
ODEs I*, §II.4): the local error estimate ``e = h Σ (b_i - b̂_i) k_i`` of a step from
``y0`` to ``y1`` is scaled component-wise by ``atol + rtol · max(|y0|, |y1|)``; the step
is accepted when the norm of the scaled error (root mean square by default, the
maximum of the components' RMS norms for tuple states) is at most 1; the next step is
``h · min(ifactor, max(safety · err^(-1/p), dfactor))`` with ``p`` the order of the
pair (``dfactor`` applies only after a rejection). The PI controller of Gustafsson
(1991) / Söderlind (2002) multiplies in ``(err_prev / err)^(pcoeff / p)`` and uses
``err^(-(pcoeff + icoeff) / p)`` in place of ``err^(-1/p)``; ``pcoeff = 0``,
``icoeff = 1`` is the plain (integral) controller above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from odenet._functorch import batched
from odenet.errors import ArgumentError, ArgumentTypeError, UnknownOptionError
from odenet.solvers._grid import MAX_NUM_STEPS

__all__ = [
    "ADAPTIVE_OPTIONS",
    "AdaptiveOptions",
    "Controller",
    "initial_step",
    "mixed_rms_norm",
    "parse_adaptive_options",
    "rms_norm",
]

#: The options an adaptive method takes (torchdiffeq's names, then odenet's).
ADAPTIVE_OPTIONS = (
    "rtol", "atol", "first_step", "min_step", "max_step", "max_num_steps", "safety", "ifactor",
    "dfactor", "norm", "step_t", "jump_t", "pcoeff", "icoeff", "check_finite",
    "differentiate_steps", "adjoint_rtol", "adjoint_atol", "adjoint_norm",
)
_DEFAULT_RTOL, _DEFAULT_ATOL = 1e-7, 1e-9


def rms_norm(x: Tensor) -> Tensor:
    """Root mean square of a tensor (torchdiffeq's default norm).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import rms_norm
    >>> rms_norm(torch.tensor([3.0, 4.0])).item() ** 2
    12.5
    """
    return x.abs().pow(2).mean().sqrt()


def mixed_rms_norm(xs: Sequence[Tensor]) -> Tensor | float:
    """The largest RMS norm of the components of a tuple state (torchdiffeq's mixed norm).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import mixed_rms_norm
    >>> mixed_rms_norm((torch.ones(2), torch.full((3,), 2.0))).item()
    2.0
    """
    if len(xs) == 0:
        return 0.0
    return max(rms_norm(x) for x in xs)


def _number(v: object, name: str, *, positive: bool = True, allow_inf: bool = False) -> float:
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise ArgumentError(
                f"{name}: expected a scalar, got a tensor of shape {tuple(v.shape)}"
            )
        if v.requires_grad:
            raise ArgumentError(f"{name}: must not require grad")
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentTypeError(f"{name}: expected a real number, got {type(v).__name__}")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ArgumentError(f"{name}: expected a finite number, got {v}")
    if positive and v <= 0:
        raise ArgumentError(f"{name}: expected a positive number, got {v}")
    if not positive and v < 0:
        raise ArgumentError(f"{name}: expected a non-negative number, got {v}")
    return v


def _tolerance(v: object, name: str, shapes: Sequence[torch.Size], tuple_state: bool):
    """A tolerance per state component: a float, or a tensor broadcastable to the component."""

    def one(x: object, where: str, shape: torch.Size):
        if isinstance(x, Tensor) and x.numel() != 1:
            if x.requires_grad:
                raise ArgumentError(f"{where}: must not require grad")
            try:
                torch.broadcast_shapes(x.shape, shape)
            except RuntimeError:
                raise ArgumentError(
                    f"{where}: a tensor of shape {tuple(x.shape)} does not broadcast to the "
                    f"state's shape {tuple(shape)}"
                ) from None
            if not bool(torch.isfinite(x).all()) or bool((x < 0).any()):
                raise ArgumentError(f"{where}: expected finite non-negative values")
            return x.detach()
        return _number(x, where, positive=False)

    if isinstance(v, (tuple, list)):
        if not tuple_state:
            raise ArgumentTypeError(
                f"{name}: a tuple of tolerances needs a tuple state y0; got {len(v)} values for a "
                "single tensor (pass a tensor of per-element tolerances instead)"
            )
        if len(v) != len(shapes):
            raise ArgumentError(
                f"{name}: expected one tolerance per component of y0 ({len(shapes)}), got {len(v)}"
            )
        return tuple(one(x, f"{name}[{m}]", s) for m, (x, s) in enumerate(zip(v, shapes)))
    if isinstance(v, Tensor) and v.numel() != 1 and tuple_state:
        raise ArgumentTypeError(
            f"{name}: with a tuple state give a tuple of tolerances (one per component), not "
            "one tensor"
        )
    return tuple(one(v, name, s) for s in shapes)


def _times(v: object, name: str) -> list[float]:
    if isinstance(v, Tensor):
        v = v.detach().reshape(-1).tolist()
    if not isinstance(v, (list, tuple)) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
    ):
        raise ArgumentTypeError(f"{name}: expected a 1-D tensor or a sequence of times")
    return [float(x) for x in v]


@dataclass(frozen=True)
class AdaptiveOptions:
    """The validated options of an adaptive solve (see :func:`parse_adaptive_options`)."""

    rtol: tuple
    atol: tuple
    first_step: float | None = None
    min_step: float = 0.0
    max_step: float = math.inf
    max_num_steps: int = MAX_NUM_STEPS
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    norm: Callable | None = None
    step_t: tuple[float, ...] = ()
    jump_t: tuple[float, ...] = ()
    pcoeff: float = 0.0
    icoeff: float = 1.0
    check_finite: bool = True
    # backprop through the controller's step sizes too (see AdaptiveSolve.run)
    differentiate_steps: bool = False
    adjoint_rtol: tuple | None = None
    adjoint_atol: tuple | None = None
    adjoint_norm: Any = None
    # torchdiffeq's dense output (the compat module's): step past the output times and
    # interpolate, and take the last stage as the next first one even without FSAL.
    interpolate: bool = False
    extra: dict = field(default_factory=dict)


def parse_adaptive_options(
    options: Mapping | None,
    shapes: Sequence[torch.Size],
    tuple_state: bool,
    *,
    rtol: object = None,
    atol: object = None,
    interpolate: bool = False,
) -> AdaptiveOptions:
    """Validate the options of an adaptive method (unknown keys are an error).

    ``rtol`` / ``atol`` (keyword arguments, as torchdiffeq's) may also be given in
    ``options``, not both. Tolerances are a number, a tensor broadcastable to the state
    (per element), or for tuple states a tuple with one of those per component.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import parse_adaptive_options
    >>> o = parse_adaptive_options({"rtol": 1e-5, "safety": 0.8}, [torch.Size([2])], False)
    >>> o.rtol, o.atol, o.safety
    ((1e-05,), (1e-09,), 0.8)
    """
    opts = {} if options is None else options
    if not isinstance(opts, Mapping):
        raise ArgumentTypeError(f"options: expected a dict, got {type(opts).__name__}")
    for key in opts:
        if key == "step_size":
            raise ArgumentError(
                "step_size: adaptive methods choose their own step sizes under error control; "
                "give options['first_step'] for the first one (or options['max_step']), or use a "
                "fixed-step method (the pair's own weights: tableau.fixed_step())"
            )
        if key not in ADAPTIVE_OPTIONS:
            raise UnknownOptionError(
                f"options: unknown option {key!r} for an adaptive method; valid options are "
                + ", ".join(repr(k) for k in ADAPTIVE_OPTIONS)
            )
    for name, kw in (("rtol", rtol), ("atol", atol)):
        if kw is not None and name in opts:
            raise ArgumentError(f"{name}: given both as {name}= and in options; pass it once")
    rt = opts.get("rtol", _DEFAULT_RTOL if rtol is None else rtol)
    at = opts.get("atol", _DEFAULT_ATOL if atol is None else atol)
    kw: dict[str, Any] = {
        "rtol": _tolerance(rt, "rtol", shapes, tuple_state),
        "atol": _tolerance(at, "atol", shapes, tuple_state),
    }
    if all(isinstance(x, float) and x == 0 for x in (*kw["rtol"], *kw["atol"])):
        raise ArgumentError("rtol, atol: both are zero; the error test could never pass")
    for name in ("adjoint_rtol", "adjoint_atol"):
        if opts.get(name) is not None:
            kw[name] = _tolerance(opts[name], f"options[{name!r}]", shapes, tuple_state)
    if opts.get("first_step") is not None:
        kw["first_step"] = _number(opts["first_step"], "options['first_step']")
    if "min_step" in opts:
        kw["min_step"] = _number(opts["min_step"], "options['min_step']", positive=False)
    if "max_step" in opts:
        kw["max_step"] = _number(opts["max_step"], "options['max_step']", allow_inf=True)
    if kw.get("min_step", 0.0) > kw.get("max_step", math.inf):
        raise ArgumentError("options['min_step']: larger than options['max_step']")
    if "max_num_steps" in opts:
        m = opts["max_num_steps"]
        if isinstance(m, bool) or not isinstance(m, int):
            raise ArgumentTypeError(
                f"options['max_num_steps']: expected a positive int, got {type(m).__name__}"
            )
        if m < 1:
            raise ArgumentError(f"options['max_num_steps']: expected a positive int, got {m}")
        kw["max_num_steps"] = m
    for name in ("safety", "ifactor", "dfactor", "pcoeff", "icoeff"):
        if name in opts:
            kw[name] = _number(opts[name], f"options[{name!r}]", positive=name != "pcoeff")
    if kw.get("ifactor", 10.0) < 1:
        raise ArgumentError("options['ifactor']: expected a growth limit >= 1")
    if kw.get("dfactor", 0.2) > 1:
        raise ArgumentError("options['dfactor']: expected a shrink limit <= 1")
    if kw.get("safety", 0.9) > 1:
        raise ArgumentError("options['safety']: expected a safety factor in (0, 1]")
    if opts.get("norm") is not None:
        if not callable(opts["norm"]):
            raise ArgumentTypeError(
                "options['norm']: expected a callable norm(x) of the scaled error (a tuple of "
                f"tensors for tuple states), got {type(opts['norm']).__name__}"
            )
        kw["norm"] = opts["norm"]
    if opts.get("adjoint_norm") is not None:
        an = opts["adjoint_norm"]
        if an != "seminorm" and not callable(an):
            raise ArgumentError(
                "options['adjoint_norm']: expected 'seminorm' or a callable of the augmented "
                f"state's tuple, got {an!r}"
            )
        kw["adjoint_norm"] = an
    for name in ("step_t", "jump_t"):
        if opts.get(name) is not None:
            vals = _times(opts[name], f"options[{name!r}]")
            if not all(math.isfinite(x) for x in vals):
                raise ArgumentError(f"options[{name!r}]: expected finite times")
            kw[name] = tuple(sorted(set(vals)))
    if set(kw.get("step_t", ())) & set(kw.get("jump_t", ())):
        raise ArgumentError(
            "options['step_t'], options['jump_t']: must not share times (a jump already stops "
            "a step there)"
        )
    for name in ("check_finite", "differentiate_steps"):
        if name in opts:
            if not isinstance(opts[name], bool):
                raise ArgumentTypeError(
                    f"options[{name!r}]: expected True or False, got {type(opts[name]).__name__}"
                )
            kw[name] = opts[name]
    return AdaptiveOptions(**kw, interpolate=interpolate)


def host_scalar(t: Tensor) -> float:
    """The value of a 0-d tensor the controller decides on (a norm, a ratio).

    An adaptive solve takes one decision per step for the whole state; a value batched by
    :func:`torch.func.vmap` has one per sample, and is refused with an error that says so.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import host_scalar
    >>> host_scalar(torch.tensor(0.5))
    0.5
    """
    if batched(t):
        raise ArgumentError(
            "adaptive step-size control accepts or rejects each step for the whole state, "
            "which torch.func.vmap cannot batch (each sample would need its own steps): solve "
            "the batch as one state (one step-size sequence for all samples), or use a "
            "fixed-step method under vmap"
        )
    return float(t.detach())


def error_ratio_tensor(
    err: Sequence[Tensor],
    y0: Sequence[Tensor],
    y1: Sequence[Tensor],
    rtol: Sequence,
    atol: Sequence,
    norm: Callable | None,
    tuple_state: bool,
) -> Tensor:
    """``norm(err / (atol + rtol · max(|y0|, |y1|)))``, the step's error ratio, as a tensor
    (its absolute value is what the controller decides on, through :func:`host_scalar`); it
    keeps its graph where grad is enabled, to differentiate through the step sizes
    (``options['differentiate_steps']``).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import error_ratio_tensor
    >>> e = torch.tensor([1e-3], requires_grad=True)
    >>> r = error_ratio_tensor([e], [torch.ones(1)], [torch.ones(1)], (1e-3,), (0.0,), None, False)
    >>> r.backward(); round(r.item(), 6), round(e.grad.item(), 3)
    (1.0, 1000.0)
    """
    scaled = []
    for e, a, b, rt, at in zip(err, y0, y1, rtol, atol):
        tol = torch.maximum(a.abs(), b.abs()).mul(rt).add(at)
        scaled.append(e / tol)
    if norm is not None:
        v = norm(tuple(scaled) if tuple_state else scaled[0])
    else:
        v = mixed_rms_norm(scaled) if tuple_state else rms_norm(scaled[0])
    return torch.as_tensor(v).abs()


def initial_step(
    f: Callable,
    t0: float,
    y0: Sequence[Tensor],
    f0: Sequence[Tensor],
    order: int,
    rtol: Sequence,
    atol: Sequence,
    norm: Callable | None,
    tuple_state: bool,
    time_at: Callable[[float, Tensor | None], Tensor],
    direction: float = 1.0,
) -> tuple[float, Tensor | None]:
    """The starting step of Hairer, Nørsett & Wanner (§II.4), as torchdiffeq computes it, and,
    under grad mode, its derivative part.

    ``order`` is the pair's order minus one (torchdiffeq's choice); ``f`` takes and
    returns component tuples; ``time_at(h, dh)`` is the time ``h`` (plus the derivative part
    ``dh``, a tensor or ``None``) after ``t0`` in the direction of integration, ``direction``
    (``1`` or ``-1``) its sign: the trial state moves along ``direction · f0``. Costs one
    evaluation of ``f``. The second value is a tensor of value zero carrying the graph of the
    step as a function of ``y0``, ``f0`` and ``f``'s parameters (``None`` where the step is a
    constant: a branch of the heuristic that does not depend on them, or no grad mode).
    """
    grad = torch.is_grad_enabled()

    def nrm(xs) -> Tensor:
        v = norm(tuple(xs) if tuple_state else xs[0]) if norm is not None else (
            mixed_rms_norm(xs) if tuple_state else rms_norm(xs[0]))
        return torch.as_tensor(v).abs()

    def part(x: Tensor) -> Tensor | None:
        return x - x.detach() if grad and x.requires_grad else None

    scale = [torch.abs(y).mul(rt).add(at) for y, rt, at in zip(y0, rtol, atol)]
    d0_t = nrm([y / s for y, s in zip(y0, scale)])
    d1_t = nrm([g / s for g, s in zip(f0, scale)])
    d0, d1 = host_scalar(d0_t), host_scalar(d1_t)
    if d0 < 1e-5 or d1 < 1e-5:
        h0, h0_t = 1e-6, None
    else:
        h0 = 0.01 * d0 / d1
        h0_t = 0.01 * d0_t / d1_t
    h0 = _cast(h0, y0[0])
    dh0 = None if h0_t is None else part(h0_t)
    hh0 = h0 if dh0 is None else h0 + dh0
    y1 = [y + (direction * hh0) * g for y, g in zip(y0, f0)]
    f1 = f(time_at(h0, dh0), y1)
    n2_t = nrm([(a - b) / s for a, b, s in zip(f1, f0, scale)])
    d2_t, d2 = n2_t / hh0, host_scalar(n2_t) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1, h1_t = max(1e-6, h0 * 1e-3), None
        if h1 != 1e-6 and dh0 is not None:
            h1_t = hh0 * 1e-3
    else:
        big = d1_t if d1 >= d2 else d2_t
        h1 = (0.01 / max(d1, d2)) ** (1.0 / float(order + 1))
        h1_t = (0.01 / big) ** (1.0 / float(order + 1))
    if 100 * h0 <= h1:
        out, out_t = 100 * h0, None if dh0 is None else 100 * hh0
    else:
        out, out_t = h1, h1_t
    return out, None if out_t is None or not grad else part(out_t)


def _cast(x: float, like: Tensor) -> float:
    """``x`` rounded to the state's real dtype (torchdiffeq computes h0 in it)."""
    return float(torch.tensor(x, dtype=like.real.dtype if like.is_complex() else like.dtype))


class Controller:
    """The step-size controller: accept or reject a step, propose the next size.

    Parameters
    ----------
    opts : AdaptiveOptions
        ``safety``, ``ifactor``, ``dfactor``, ``pcoeff``, ``icoeff``, ``min_step``,
        ``max_step``.
    order : int
        The order ``p`` of the pair (torchdiffeq's exponent ``1/p``).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._controller import Controller, parse_adaptive_options
    >>> c = Controller(parse_adaptive_options(None, [torch.Size([1])], False), order=5)
    >>> c.accept(0.5, 0.1), round(c.propose(0.1, 0.5), 6)  # 0.9 * 0.5**(-1/5) * 0.1
    (True, 0.103383)
    >>> c.accept(2.0, 0.1), round(c.propose(0.1, 1e6), 6)  # shrinking is limited by dfactor
    (False, 0.02)
    """

    def __init__(self, opts: AdaptiveOptions, order: int):
        self.o = opts
        self.order = int(order)
        self.prev: float | None = None  # the last accepted error ratio (PI control)
        self.prev_t: Tensor | None = None  # the same with its graph (differentiate_steps)

    def accept(self, ratio: float, h: float) -> bool:
        """Whether a step of size ``|h|`` with scaled error ``ratio`` is accepted."""
        ok = ratio <= 1.0
        if abs(h) > self.o.max_step:
            ok = False
        if abs(h) <= self.o.min_step:
            ok = True
        return ok

    def propose(self, h: float, ratio: float, accepted: bool | None = None) -> float:
        """The next step size after a step of size ``h`` (> 0) with scaled error ``ratio``."""
        return self.propose_graph(h, ratio, accepted)[0]

    def propose_graph(
        self, h: float, ratio: float, accepted: bool | None = None, *,
        h_t: Tensor | None = None, ratio_t: Tensor | None = None,
    ) -> tuple[float, Tensor | None]:
        """:meth:`propose`, and the derivative part of the proposal when ``h_t`` or
        ``ratio_t`` (tensors equal to ``h`` and ``ratio`` that carry a graph) are given.

        The derivative part is a tensor of value zero whose graph is that of the proposal
        ``h_t · factor(ratio_t)``; ``None`` where the proposal does not depend on them (a
        clamp by ``ifactor``, ``dfactor``, ``min_step`` or ``max_step`` is active).
        """
        o = self.o
        if accepted is None:
            accepted = ratio <= 1.0
        graph = h_t is not None or ratio_t is not None
        if not math.isfinite(ratio):
            new = max(h * o.dfactor, o.min_step)
            if not graph or h_t is None or new == o.min_step:
                return new, None
            g = h_t * o.dfactor
            return new, g - g.detach()
        factor_t = None
        if ratio == 0:
            factor = o.ifactor
        else:
            k = float(self.order)
            dfactor = 1.0 if ratio < 1 else o.dfactor
            if o.pcoeff == 0.0 and o.icoeff == 1.0:
                raw = o.safety / ratio ** (1.0 / k)
                if ratio_t is not None:
                    factor_t = o.safety / ratio_t ** (1.0 / k)
            else:
                raw = o.safety * ratio ** (-(o.pcoeff + o.icoeff) / k)
                base = raw
                if ratio_t is not None:
                    factor_t = o.safety * ratio_t ** (-(o.pcoeff + o.icoeff) / k)
                if accepted and self.prev is not None and self.prev > 0:
                    raw *= self.prev ** (o.pcoeff / k)
                    if factor_t is not None or self.prev_t is not None:
                        prev = self.prev_t if self.prev_t is not None else self.prev
                        factor_t = (base if factor_t is None else factor_t) * prev ** (o.pcoeff / k)
            factor = min(o.ifactor, max(raw, dfactor))
            if factor != raw:  # clamped: the factor is a constant
                factor_t = None
        if accepted and ratio > 0:
            self.prev = ratio
            self.prev_t = ratio_t
        new = min(max(h * factor, o.min_step), o.max_step)
        if not graph or new != h * factor or (h_t is None and factor_t is None):
            return new, None
        g = (h if h_t is None else h_t) * (factor if factor_t is None else factor_t)
        return new, g - g.detach()
