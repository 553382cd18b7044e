"""Gradient consistency: each gradient strategy against a reference and finite differences."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

import odenet
from odenet import ButcherTableau, GradientStrategy, IMEXTableau
from odenet.analysis._common import (
    check_bool,
    check_int,
    check_loss_value,
    check_methods,
    check_path,
    check_positive,
    check_seed,
    check_steps,
    check_str,
    check_tensor,
    collect_params,
    fingerprint,
    unwrap_func,
)
from odenet.analysis._results import Result, new_figure, steps_axis
from odenet.analysis._sweep import CaseStore, run_cases
from odenet.analysis._torchdiffeq import Torchdiffeq, torchdiffeq_method
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "GradientConsistencyResult",
    "combine",
    "gradient_consistency",
    "parse_strategy",
    "solve_with",
    "strategy_list",
    "strategy_names",
    "torchdiffeq_method",
]

def strategy_names() -> tuple[str, ...]:
    """The strategy names the diagnostics understand, ``"backprop"`` (the reference) first.

    Every name of :data:`odenet.gradients.STRATEGIES` — odenet's strategies, torchdiffeq's
    baselines (:mod:`odenet.analysis._torchdiffeq`) and any user subclass registered so far —
    read live; ``"revolve:k"`` sets the number of checkpoints besides.

    Examples
    --------
    >>> from odenet.analysis._gradients import strategy_names
    >>> strategy_names()[:2], "torchdiffeq-adjoint" in strategy_names()
    (('backprop', 'adjoint'), True)
    """
    return ("backprop", *(n for n in odenet.gradients.STRATEGIES if n != "backprop"))



def parse_strategy(spec: object, name: str = "strategies") -> tuple[str, object]:
    """``(display name, strategy)`` from a name of :func:`strategy_names`, ``"revolve:k"`` or an
    instance.

    The strategy is an :class:`odenet.GradientStrategy` instance: odenet's, a torchdiffeq
    baseline (:mod:`odenet.analysis._torchdiffeq`) or a user's. Errors name the argument
    ``name``.

    Examples
    --------
    >>> from odenet.analysis._gradients import parse_strategy
    >>> parse_strategy("revolve:3")
    ('revolve:3', Revolve(checkpoints=3))
    >>> parse_strategy("torchdiffeq-adjoint")
    ('torchdiffeq-adjoint', TorchdiffeqAdjoint())
    """
    if isinstance(spec, GradientStrategy):
        return repr(spec), spec
    if not isinstance(spec, str):
        raise ArgumentTypeError(
            f"{name}: expected names or GradientStrategy instances, got {type(spec).__name__}"
        )
    key = spec.strip().lower()
    if key.startswith("revolve:"):
        try:
            k = int(key.split(":", 1)[1])
        except ValueError:
            raise ArgumentError(
                f"{name}: {spec!r}: expected 'revolve:k' with an integer k"
            ) from None
        if k < 1:
            raise ArgumentError(
                f"{name}: {spec!r}: expected 'revolve:k' with k >= 1 checkpoints"
            )
        return key, odenet.Revolve(checkpoints=k)
    if key in odenet.gradients.STRATEGIES:
        return key, odenet.gradients.STRATEGIES[key]()
    raise ArgumentError(
        f"{name}: unknown strategy {spec!r}; valid strategies are "
        + ", ".join(repr(s) for s in strategy_names())
        + ", 'revolve:k' (or a GradientStrategy instance)"
    )


def solve_with(
    strategy: object,
    func: Callable,
    y0: Tensor,
    t: Tensor,
    tab: ButcherTableau | IMEXTableau,
    h: float,
    implicit,
    params: Sequence[Tensor],
) -> Tensor:
    """One solve with a parsed strategy (odenet's, or a torchdiffeq baseline)."""
    return odenet.odeint(func, y0, t, method=tab, step_size=h, gradient=strategy,
                         implicit=implicit, params=list(params))


def _default_loss(y: Tensor) -> Tensor:
    return 0.5 * y[-1].square().sum()


def _flat(ts: Sequence[Tensor | None], like: Sequence[Tensor], device) -> Tensor:
    parts = [
        (torch.zeros_like(ref) if g is None else g).reshape(-1).double().to(device)
        for g, ref in zip(ts, like)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=device)


def _rel(a: Tensor, ref: Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    d = float((a - ref).norm())
    r = float(ref.norm())
    return d / r if r > 0 else d


class GradientConsistencyResult(Result):
    r"""Relative gradient errors of each strategy against the reference and finite differences.

    Returned by :func:`gradient_consistency`. Per row (method, ``Nt``,
    strategy): ``grad_error`` :math:`= \|g_\theta - g_\theta^{ref}\| / \|g_\theta^{ref}\|`,
    ``y0_error`` the same for :math:`\partial L/\partial y_0`, ``fd_error`` the
    largest deviation of the directional derivatives from central finite
    differences relative to the largest of them, ``time_s`` the forward+backward
    time of that single run.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> lin = torch.nn.Linear(3, 3).double()
    >>> res = analysis.gradient_consistency(lambda t, y: torch.tanh(lin(y)),
    ...     torch.randn(2, 3, dtype=torch.float64), 1.0, "rk4", [4], ["anode"],
    ...     params=list(lin.parameters()))
    >>> res.rows[1]["strategy"], res.rows[1]["grad_error"] < 1e-12
    ('anode', True)
    """

    kind = "gradient_consistency"
    columns = ("label", "method", "steps", "strategy", "grad_error", "y0_error", "fd_error",
               "time_s")

    def title(self) -> str:
        return f"gradient consistency against {self.reference!r} (relative errors)"

    def notes(self) -> list[str]:
        out = []
        for s in self.summary.get("skipped", []):
            out.append(f"skipped: {s}")
        for s in self.summary.get("failed", []):
            out.append(f"failed: {s}")
        return out

    def error(self, method: str, steps: int, strategy: str, label: str | None = None) -> float:
        """The ``grad_error`` of one case.

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
        >>> res = analysis.gradient_consistency(lambda t, y: w * y, torch.ones(2,
        ...     dtype=torch.float64), 1.0, "euler", [8], ["adjoint"], params=[w])
        >>> 0 < res.error("euler", 8, "adjoint") < 0.5  # O(h) for euler
        True
        """
        for r in self.rows:
            if (r["method"], r["steps"], r["strategy"]) == (method, steps, strategy) and (
                label is None or r["label"] == label
            ):
                return r["grad_error"]
        raise KeyError((method, steps, strategy, label))

    def plot(self, ax=None):
        """Errors against ``Nt`` (log-log): one column per method, rows θ- and y0-gradients.

        Colours are strategies, line styles labels (e.g. activations). Exact
        agreement (error 0) is drawn on the bottom edge.

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
        >>> res = analysis.gradient_consistency(lambda t, y: w * y, torch.ones(2,
        ...     dtype=torch.float64), 1.0, "euler", [2, 4], ["adjoint"], params=[w])
        >>> len(res.plot().axes)
        2
        """
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        strategies = [s for s in dict.fromkeys(r["strategy"] for r in self.rows)
                      if s != self.reference]
        labels = list(dict.fromkeys(r["label"] for r in self.rows))
        fig, axes = new_figure(2, len(methods), width=4.6, height=3.6)
        styles = ["-", "--", ":", "-."]
        markers = ["o", "s", "^", "v", "D", "x", "P"]
        vals = [r[k] for r in self.rows for k in ("grad_error", "y0_error")
                if r["strategy"] != self.reference and r[k] is not None and r[k] > 0
                and math.isfinite(r[k])]
        floor = min(vals) / 10 if vals else 1e-17
        floor = max(min(floor, 1e-16), 1e-20)
        for j, m in enumerate(methods):
            for i, key in enumerate(("grad_error", "y0_error")):
                ax = axes[i * len(methods) + j]
                for si, s in enumerate(strategies):
                    for li, lab in enumerate(labels):
                        rows = [r for r in self.rows if r["method"] == m and r["strategy"] == s
                                and r["label"] == lab and r[key] is not None]
                        if not rows:
                            continue
                        n = np.array([r["steps"] for r in rows])
                        e = np.array([r[key] for r in rows], dtype=float)
                        name = s if len(labels) == 1 else f"{s} ({lab})"
                        ax.loglog(n, np.maximum(e, floor), styles[li % 4],
                                  marker=markers[si % len(markers)], color=f"C{si}",
                                  ms=max(7 - 1.2 * si, 3), mfc="none", label=name)
                ax.axhline(floor, color="0.5", lw=0.7, ls=":")
                ax.set_ylim(bottom=floor / 3)
                steps_axis(ax, [r["steps"] for r in self.rows])
                ax.set_xlabel("steps Nt")
                what = "∂L/∂θ" if key == "grad_error" else "∂L/∂y0"
                ax.set_ylabel(f"relative error of {what}")
                ax.set_title(f"{m}: {what} vs {self.reference}")
                ax.grid(True, which="major", alpha=0.3)
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 4),
                   fontsize=8)
        fig.suptitle("relative gradient error against " + self.reference
                     + " (dotted line: exact agreement, error 0)", fontsize=10)
        return fig


def gradient_consistency(
    model_or_func: Callable,
    y0: Tensor,
    t: Tensor | float = 1.0,
    methods: str | ButcherTableau | Sequence = ("euler", "midpoint", "rk4_38"),
    steps: Sequence[int] = (2, 4, 8, 16, 32),
    strategies: Sequence[str | GradientStrategy] = (
        "anode", "revolve", "adjoint", "torchdiffeq-adjoint",
    ),
    loss: Callable[[Tensor], Tensor] | None = None,
    reference: str | GradientStrategy = "backprop",
    *,
    params: Sequence[Tensor] | None = None,
    implicit=None,
    fd_directions: int = 3,
    fd_eps: float | None = None,
    seed: int = 0,
    label: str = "",
    store=None,
    progress: bool | None = False,
) -> GradientConsistencyResult:
    r"""Do the gradient strategies give the gradient of the discrete network?

    For every method and step count ``Nt`` (``h = (t[-1] - t[0]) / Nt``) and every
    strategy, the loss of the solve is differentiated with respect to the
    parameters :math:`\theta` and to :math:`y_0`; the result is the relative
    error against the ``reference`` strategy (backprop: the exact gradient of the
    discrete solve) and, as an independent check, against central finite
    differences :math:`(L(x + \varepsilon v) - L(x - \varepsilon v)) / 2\varepsilon`
    along ``fd_directions`` random unit directions :math:`v` in
    :math:`(y_0, \theta)` (meaningful in float64). Discretize-then-optimize
    strategies (ANODE, Revolve) must agree with backprop to round-off; the
    optimize-then-discretize adjoint (odenet's ``"adjoint"``, torchdiffeq's
    ``odeint_adjoint``) differs by :math:`O(h^p)`, more for non-smooth activations.

    Parameters
    ----------
    model_or_func : callable or ODE block
        ``func(t, y)``, or an object with an ``rhs`` (its right-hand side and
        ``implicit`` are used).
    y0 : Tensor
        Initial state (float64 recommended).
    t : Tensor or float
        Output times, or ``T`` for ``[0, T]``.
    methods : str, tableau, or sequence of them
    steps : sequence of int
        Step counts ``Nt`` over ``[t[0], t[-1]]``.
    strategies : sequence
        Names of :func:`strategy_names` (``"revolve:k"`` for ``k`` checkpoints) or
        :class:`odenet.GradientStrategy` instances. ``"torchdiffeq"`` (its
        ``odeint``, discretize-then-optimize) and ``"torchdiffeq-adjoint"``
        (``odeint_adjoint`` with ``adjoint_params``) run only for methods with a
        torchdiffeq equivalent (``euler``, ``midpoint``, ``rk4_38`` = its ``"rk4"``).
    loss : callable, optional
        ``loss(y) -> scalar`` of the stacked solution: a real floating tensor with one
        element, finite (anything else raises :class:`~odenet.errors.FunctionOutputError`
        naming ``loss``); default :math:`\tfrac12 \|y(t_{end})\|^2`.
    reference : str or GradientStrategy, default "backprop"
    params : sequence of Tensor, optional
        Default: the parameters of ``func`` (and ``implicit``) that require grad.
    implicit : linear operator, optional
        ``L`` for IMEX methods.
    fd_directions : int
        Number of random directions of the finite-difference check (0 to skip).
    fd_eps : float, optional
        Finite-difference step (default :math:`\varepsilon_{mach}^{1/3}`).
    seed : int
        Seed of the directions.
    label : str
        Tag stored in every row (e.g. the activation).
    store : path, optional
        JSON-lines file recording each finished (method, ``Nt``) case; rerunning resumes.
    progress : bool, optional
        Progress bar (``None``: on a terminal).

    Returns
    -------
    GradientConsistencyResult

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument (empty or unknown methods and strategies, non-positive steps, a
        parameter that does not require grad or lives on another device than ``y0``, ...),
        named in the message.
    odenet.errors.FunctionOutputError
        ``loss`` returns something other than a finite scalar.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> lin = torch.nn.Linear(4, 4).double()
    >>> f = lambda t, y: torch.tanh(lin(y))
    >>> res = analysis.gradient_consistency(
    ...     f, torch.randn(3, 4, dtype=torch.float64), 1.0, "rk4_38", [4, 32],
    ...     ["anode", "adjoint", "torchdiffeq-adjoint"], params=list(lin.parameters()))
    >>> res.error("rk4_38", 4, "anode") < 1e-12
    True
    >>> res.error("rk4_38", 32, "adjoint") < res.error("rk4_38", 4, "adjoint")
    True
    """
    f, block = unwrap_func(model_or_func, "model_or_func")
    if implicit is None and block:
        implicit = block.get("implicit")
    y0 = check_tensor(y0, "y0").detach()
    tt = _check_times(t, y0)
    tabs = check_methods(methods)
    steps = check_steps(steps)
    parsed, (ref_name, ref_strategy) = _check_strategies(strategies, reference)
    names = [n for n, _ in parsed]
    if loss is None:
        loss = _default_loss
    elif not callable(loss):
        raise ArgumentTypeError(f"loss: expected a callable loss(y), got {type(loss).__name__}")
    params = _check_params(f, implicit, params, y0)
    fd_directions = check_int(fd_directions, "fd_directions", 0)
    eps = (torch.finfo(y0.dtype).eps ** (1 / 3)) if fd_eps is None else check_positive(
        fd_eps, "fd_eps")
    seed = check_seed(seed)
    label = check_str(label, "label")
    store = check_path(store, "store")
    progress = check_bool(progress, "progress", allow_none=True)
    skipped = [
        f"{n} for {tab.name} (torchdiffeq has no such fixed-grid method)"
        for tab in tabs for n, s in parsed
        if isinstance(s, Torchdiffeq) and torchdiffeq_method(tab) is None
    ]
    cases = _Cases(f, y0, tt, implicit, params, loss, label, {tab.name: tab for tab in tabs},
                   parsed, ref_name, ref_strategy, eps,
                   _directions(y0, params, fd_directions, seed))
    cs = CaseStore(store, fingerprint("gradient_consistency", f, y0, tt, tabs, names, ref_name,
                                      params, loss, fd_directions, eps, seed, label, implicit))
    keys = [(tab.name, n) for tab in tabs for n in steps]
    records = run_cases(keys, cases.compute, cs, progress=progress, desc="gradients")
    rows = [r for rec in records for r in rec]
    failed = sorted({f"{r['strategy']} on {r['method']}: {r['error']}" for r in rows
                     if r.get("error")})
    return GradientConsistencyResult(
        rows, reference=ref_name, methods=[t.name for t in tabs], steps=steps,
        strategies=names, label=label, skipped=skipped, failed=failed,
        dtype=str(y0.dtype).replace("torch.", ""), n_params=sum(p.numel() for p in params),
        fd_eps=eps,
    )


def _check_times(t: object, y0: Tensor) -> Tensor:
    """The output times as a tensor of ``y0``'s dtype and device (``T``: ``[0, T]``)."""
    if isinstance(t, (list, tuple)):
        raise ArgumentTypeError(
            f"t: expected a positive number T or a 1-D tensor of times, got {type(t).__name__}"
        )
    if isinstance(t, Tensor) and t.ndim >= 1:
        tt = check_tensor(t, "t").detach().to(dtype=y0.dtype, device=y0.device)
        if tt.ndim != 1 or tt.numel() < 2:
            raise ArgumentError(
                f"t: expected a 1-D tensor of at least 2 times, got shape {tuple(tt.shape)}"
            )
        if float(tt[-1]) == float(tt[0]):
            raise ArgumentError("t: expected distinct first and last times (an empty interval)")
        return tt
    T = check_positive(t, "t")
    return torch.tensor([0.0, T], dtype=y0.dtype, device=y0.device)


def strategy_list(strategies: object, what: str) -> list:
    """``strategies`` as a non-empty list: one name or instance becomes a list of one; a
    wrong type or an empty sequence is an error naming ``strategies`` (``what``: what the
    strategies are compared with, for the message)."""
    if isinstance(strategies, (str, GradientStrategy)):
        return [strategies]
    if not isinstance(strategies, (list, tuple)):
        raise ArgumentTypeError(
            "strategies: expected a sequence of strategy names or GradientStrategy instances, "
            f"got {type(strategies).__name__}"
        )
    if not strategies:
        raise ArgumentError(f"strategies: expected at least one strategy to compare with {what}")
    return list(strategies)


def _check_strategies(strategies: object, reference: object
                      ) -> tuple[list[tuple[str, object]], tuple[str, object]]:
    """The parsed strategies and the parsed reference (distinct, the reference an odenet one)."""
    strategies = strategy_list(strategies, "the reference")
    parsed = [parse_strategy(s) for s in strategies]
    ref_name, ref_strategy = parse_strategy(reference, "reference")
    if isinstance(ref_strategy, Torchdiffeq):
        raise ArgumentError("reference: expected an odenet strategy (e.g. 'backprop')")
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names) or ref_name in names:
        raise ArgumentError(
            f"strategies: expected distinct strategies other than the reference, got {names}"
        )
    return parsed, (ref_name, ref_strategy)


def _check_params(f: Callable, implicit, params, y0: Tensor) -> list[Tensor]:
    params = collect_params(f, implicit, params)
    for i, p in enumerate(params):
        if p.device != y0.device:
            raise ArgumentError(
                f"params[{i}]: on device {p.device}, but y0 is on {y0.device}; move the model "
                "and the state to one device"
            )
    return params


def _directions(y0: Tensor, params: Sequence[Tensor], count: int, seed: int) -> list[Tensor]:
    """Fixed random directions over ``(y0, params)``, of unit norm."""
    gen = torch.Generator().manual_seed(seed)
    size = y0.numel() + sum(p.numel() for p in params)
    directions = []
    for _ in range(count):
        v = torch.randn(size, generator=gen, dtype=torch.float64)
        directions.append((v / v.norm()).to(y0.device))
    return directions


class _Cases:
    """One case of :func:`gradient_consistency`: every strategy at one (method, ``Nt``)."""

    def __init__(self, f, y0, tt, implicit, params, loss, label, by_name, parsed, ref_name,
                 ref_strategy, eps, directions):
        self.f, self.y0, self.tt, self.implicit = f, y0, tt, implicit
        self.params, self.loss, self.label, self.by_name = params, loss, label, by_name
        self.parsed, self.ref_name, self.ref_strategy = parsed, ref_name, ref_strategy
        self.eps, self.directions = eps, directions
        self.span = abs(float(tt[-1] - tt[0]))
        self.sizes = [y0.numel()] + [p.numel() for p in params]

    def grads(self, strategy, tab, h):
        y0, params = self.y0, self.params
        x = y0.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = solve_with(strategy, self.f, x, self.tt, tab, h, self.implicit, params)
        L = check_loss_value(self.loss(out))
        g = torch.autograd.grad(L, [x, *params], allow_unused=True)
        dt = time.perf_counter() - t0
        return _flat(g[:1], [x], y0.device), _flat(g[1:], params, y0.device), dt

    def loss_at(self, tab, h, v: Tensor, s: float) -> float:
        chunks = torch.split(v, self.sizes)
        params, y0 = self.params, self.y0
        with torch.no_grad():
            originals = [p.detach().clone() for p in params]
            try:
                for p, d in zip(params, chunks[1:]):
                    p.add_(d.reshape(p.shape).to(p), alpha=s)
                x = y0 + s * chunks[0].reshape(y0.shape).to(y0)
                out = odenet.odeint(self.f, x, self.tt, method=tab, step_size=h,
                                    implicit=self.implicit)
                return float(check_loss_value(self.loss(out)))
            finally:
                for p, o in zip(params, originals):
                    p.copy_(o)

    def compute(self, key):
        name, n = key
        tab = self.by_name[name]
        h = self.span / n
        eps, directions = self.eps, self.directions
        fd = [(self.loss_at(tab, h, v, eps) - self.loss_at(tab, h, v, -eps)) / (2 * eps)
              for v in directions]
        fd_scale = max((abs(x) for x in fd), default=0.0)

        def fd_error(gy: Tensor, gp: Tensor) -> float | None:
            if not directions:
                return None
            g = torch.cat([gy, gp])
            dev = max(abs(float(g @ v) - d) for v, d in zip(directions, fd))
            return dev / fd_scale if fd_scale > 0 else dev

        case = {"label": self.label, "method": name, "steps": n, "h": h}
        ry, rp, rt = self.grads(self.ref_strategy, tab, h)
        rows = [{**case, "strategy": self.ref_name, "grad_error": 0.0, "y0_error": 0.0,
                 "fd_error": fd_error(ry, rp), "time_s": rt, "error": None}]
        for sname, strategy in self.parsed:
            if isinstance(strategy, Torchdiffeq) and torchdiffeq_method(tab) is None:
                continue
            try:
                gy, gp, dt = self.grads(strategy, tab, h)
            except (RuntimeError, NotImplementedError, ValueError, TypeError) as err:
                rows.append({**case, "strategy": sname, "grad_error": None, "y0_error": None,
                             "fd_error": None, "time_s": None,
                             "error": f"{type(err).__name__}: {err}".splitlines()[0]})
                continue
            rows.append({**case, "strategy": sname, "grad_error": _rel(gp, rp),
                         "y0_error": _rel(gy, ry), "fd_error": fd_error(gy, gp), "time_s": dt,
                         "error": None})
        return rows


def combine(results: Sequence[GradientConsistencyResult]) -> GradientConsistencyResult:
    """One result with the rows of several runs (e.g. one per activation).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> from odenet.analysis._gradients import combine
    >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    >>> y0 = torch.ones(2, dtype=torch.float64)
    >>> a, b = (analysis.gradient_consistency(lambda t, y: w * y, y0, 1.0, "euler", [2],
    ...         ["adjoint"], params=[w], label=lab) for lab in ("a", "b"))
    >>> sorted({r["label"] for r in combine([a, b]).rows})
    ['a', 'b']
    """
    first = results[0]
    summary = dict(first.summary)
    summary["label"] = ",".join(r.label for r in results)
    summary["skipped"] = sorted({s for r in results for s in r.skipped})
    summary["failed"] = sorted({s for r in results for s in r.failed})
    return GradientConsistencyResult([row for r in results for row in r.rows], **summary)
