"""Gradients of adaptive solves: each strategy against backprop and finite differences, per rtol.

The discrete network of an adaptive solve is its sequence of accepted steps. The
discretize-then-optimize strategies (``"backprop"``, ``"anode"``, ``"revolve"``) give the
exact gradient of that network with the controller's step sizes held constant; the
optimize-then-discretize ``"adjoint"`` solves the continuous adjoint backward with its
own adaptive grid. :func:`adaptive_consistency` measures, for a range of tolerances,
how far each strategy is from backprop of the same solve, how far that steps-held-fixed
gradient is from a finite difference of the loss of the *full* adaptive solve (the
controller re-run at the perturbed input), the step counts of both directions, and the
time and peak memory of each strategy. :func:`run_section` is the report's
``adaptive`` section.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import odenet
from odenet.analysis import _html as H
from odenet.analysis._common import (
    check_int,
    check_loss_value,
    check_positive,
    check_seed,
    check_tensor,
    collect_params,
    unwrap_func,
)
from odenet.analysis._cost import _timed
from odenet.analysis._gradients import (
    _check_times,
    _default_loss,
    _directions,
    _flat,
    _rel,
    parse_strategy,
    strategy_list,
)
from odenet.analysis._results import Result, new_figure, plain_log_axis
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients import ANODE, Adjoint, Backprop, Revolve
from odenet.gradients import _adaptive as _ga
from odenet.solvers._adaptive import adaptive_tableau

__all__ = [
    "AdaptiveConsistencyResult",
    "adaptive_consistency",
    "adaptive_keys",
    "adaptive_section",
    "default_problem",
    "run_section",
]

_DTO = (ANODE, Revolve, Backprop)
_COUNTS = ("forward_steps", "forward_rejected", "forward_nfe", "backward_steps",
           "backward_rejected", "backward_nfe", "backward_recomputed", "snapshots")


class AdaptiveConsistencyResult(Result):
    r"""Gradient errors, step counts and cost of each strategy of an adaptive solve, per rtol.

    Returned by :func:`adaptive_consistency`. One row per (``rtol``, strategy):
    ``grad_error`` :math:`= \|g_\theta - g_\theta^{bp}\| / \|g_\theta^{bp}\|` against backprop
    of the same adaptive solve, ``y0_error`` the same for :math:`\partial L/\partial y_0`,
    ``fd_error`` the largest deviation of the directional derivatives :math:`g \cdot v` from
    central finite differences of the loss of the full adaptive solve (controller re-run),
    relative to the largest of them; the forward ``steps`` (accepted), ``rejected`` and
    ``nfe``; ``bwd_steps`` (the adjoint's reverse solve: its accepted steps, ``bwd_rejected``;
    ANODE and Revolve: the accepted steps replayed), ``recomputed`` and ``snapshots``
    (Revolve); ``time_s`` (forward + backward) and ``peak_mb`` (peak memory above the
    baseline, in MiB) of one gradient.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    >>> res = analysis.adaptive_consistency(lambda t, y: w * torch.tanh(y),
    ...     torch.ones(2, dtype=torch.float64), rtols=[1e-4], strategies=["anode"], params=[w],
    ...     measure=False)
    >>> res.error(1e-4, "anode") < 1e-12
    True
    """

    kind = "adaptive_consistency"
    columns = ("rtol", "strategy", "grad_error", "y0_error", "fd_error", "steps", "rejected",
               "nfe", "bwd_steps", "bwd_rejected", "recomputed", "snapshots", "time_s",
               "peak_mb")

    def title(self) -> str:
        return (f"adaptive solves ({self.method}, atol = {self.atol_factor:g}·rtol, "
                f"{self.dtype}): gradients vs backprop of the same solve and vs central FD of "
                f"the full solve (step {self.fd_eps:.1e})")

    def notes(self) -> list[str]:
        out = [f"failed: {s}" for s in self.summary.get("failed", [])]
        if self.summary.get("memory_probe"):
            out.append(f"peak memory: {self.memory_probe} above the baseline, in this process "
                       f"(a small problem's peak is at the probe's resolution)")
        return out

    def strategies_run(self) -> list[str]:
        """The strategies of the rows, backprop first."""
        return list(dict.fromkeys(r["strategy"] for r in self.rows))

    def row(self, rtol: float, strategy: str) -> dict[str, Any]:
        """The row of one (``rtol``, strategy)."""
        for r in self.rows:
            if r["strategy"] == strategy and math.isclose(r["rtol"], rtol, rel_tol=1e-9):
                return r
        raise KeyError((rtol, strategy))

    def error(self, rtol: float, strategy: str, which: str = "grad") -> float | None:
        """``grad_error`` (``which="grad"``), ``y0_error`` (``"y0"``) or ``fd_error``
        (``"fd"``) of one (``rtol``, strategy).

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> y0 = torch.ones(3, dtype=torch.float64)
        >>> res = analysis.adaptive_consistency(lambda t, y: -y * y, y0, rtols=[1e-3, 1e-6],
        ...     strategies=["adjoint"], measure=False)
        >>> res.error(1e-6, "adjoint", "y0") < res.error(1e-3, "adjoint", "y0")
        True
        """
        key = {"grad": "grad_error", "y0": "y0_error", "fd": "fd_error"}.get(which)
        if key is None:
            raise ArgumentError(f"which: expected 'grad', 'y0' or 'fd', got {which!r}")
        return self.row(rtol, strategy)[key]

    def plot(self, ax=None):
        """Four panels against rtol (log-log): the relative gradient errors (against backprop,
        and of each gradient against FD of the full solve), the step counts, the time and the
        peak memory of each strategy.

        Exact agreement (error 0) is drawn on the dotted bottom line.

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> y0 = torch.ones(2, dtype=torch.float64)
        >>> res = analysis.adaptive_consistency(lambda t, y: -y, y0, rtols=[1e-3, 1e-5],
        ...     strategies=["adjoint"], measure=False)
        >>> len(res.plot().axes)
        4
        """
        fig, axes = new_figure(2, 2, width=5.0, height=3.7)
        strategies = self.strategies_run()
        rtols = sorted({r["rtol"] for r in self.rows})
        markers = ["o", "s", "^", "v", "D", "x", "P"]
        color = {s: f"C{i}" for i, s in enumerate(strategies)}
        vals = [r[k] for r in self.rows for k in ("grad_error", "y0_error", "fd_error")
                if r.get(k) is not None and r[k] > 0 and math.isfinite(r[k])]
        floor = max(min(min(vals) / 10 if vals else 1e-17, 1e-16), 1e-20)

        def series(s: str, key: str) -> tuple[np.ndarray, np.ndarray]:
            rows = [r for r in self.rows if r["strategy"] == s and r.get(key) is not None]
            rows.sort(key=lambda r: r["rtol"])
            return (np.array([r["rtol"] for r in rows], dtype=float),
                    np.array([r[key] for r in rows], dtype=float))

        ax = axes[0]
        _, bp_fd = series("backprop", "fd_error")
        same_fd = []  # DTO strategies whose FD deviation is backprop's: one line for all
        for i, s in enumerate(strategies):
            if s != "backprop":
                x, e = series(s, "grad_error")
                ax.loglog(x, np.maximum(e, floor), "-", marker=markers[i % 7], color=color[s],
                          mfc="none", label=f"{s} vs backprop")
            x, e = series(s, "fd_error")
            if not len(x):
                continue
            if s != "backprop" and len(e) == len(bp_fd) and np.allclose(e, bp_fd, rtol=1e-2):
                same_fd.append(s)
                continue
            ax.loglog(x, np.maximum(e, floor), "--", marker=markers[i % 7], color=color[s],
                      mfc="none", ms=4, label=f"{s} vs FD of the full solve")
        if same_fd:
            line = next((ln for ln in ax.get_lines()
                         if ln.get_label() == "backprop vs FD of the full solve"), None)
            if line is not None:
                line.set_label(f"{', '.join(['backprop', *same_fd])} vs FD of the full solve")
        ax.loglog(rtols, rtols, ":", color="0.4", label="rtol")
        ax.axhline(floor, color="0.5", lw=0.7, ls=":")
        ax.set_ylim(bottom=floor / 3)
        ax.set_xlabel("rtol")
        ax.set_ylabel("relative error of ∂L/∂θ (FD: along v)")
        ax.set_title("gradient errors")
        ax.legend(fontsize=7)

        ax = axes[1]
        first = strategies[0]
        x, n = series(first, "steps")
        ax.loglog(x, n, "-o", color="k", mfc="none", label="forward accepted")
        x, n = series(first, "rejected")
        if len(n) and np.any(n > 0):  # no point where none was rejected (a log axis)
            ax.loglog(x, np.where(n > 0, n, np.nan), ":o", color="0.5", mfc="none",
                      label="forward rejected (where > 0)")
        for i, s in enumerate(strategies):
            if s == "adjoint":
                x, n = series(s, "bwd_steps")
                ax.loglog(x, n, "-", marker=markers[i % 7], color=color[s], mfc="none",
                          label="adjoint backward accepted")
            if s.startswith("revolve"):
                x, n = series(s, "recomputed")
                if len(n) and np.any(n > 0):
                    ax.loglog(x, np.where(n > 0, n, np.nan), "--", marker=markers[i % 7],
                              color=color[s], mfc="none", label=f"{s} recomputed steps")
        ax.set_xlabel("rtol")
        ax.set_ylabel("steps")
        ax.set_title(f"step counts ({self.method})")
        ax.legend(fontsize=7)

        for ax, key, label in ((axes[2], "time_s", "time of one gradient (s)"),
                               (axes[3], "peak_mb", "peak memory (MiB)")):
            drawn = False
            for i, s in enumerate(strategies):
                x, v = series(s, key)
                if len(x):
                    ax.semilogx(x, v, "-", marker=markers[i % 7], color=color[s], mfc="none",
                                label=s)
                    drawn = True
            ax.set_xlabel("rtol")
            ax.set_ylabel(label)
            ax.set_title(label.split(" (")[0] + " per strategy")
            if drawn:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "not measured (measure=False)", ha="center",
                        transform=ax.transAxes)
        for ax in axes:
            plain_log_axis(ax, "x")
            ax.invert_xaxis()  # tighter tolerances to the right
            ax.grid(True, which="major", alpha=0.3)
        fig.suptitle(f"adaptive {self.method}: step sizes held fixed (DTO) vs continuous "
                     "adjoint (OTD) vs FD of the full solve", fontsize=10)
        return fig


# -- checks ----------------------------------------------------------------------------------------
def _check_method(method: object) -> Any:
    tab = adaptive_tableau(method)
    if tab is None:
        names = ", ".join(repr(n) for n in odenet.solvers.ADAPTIVE_METHODS)
        shown = getattr(method, "name", method)
        raise ArgumentError(
            f"method: {shown!r} is not an adaptive method (an embedded pair); valid methods "
            f"are {names}"
        )
    return tab


def _check_rtols(rtols: object) -> list[float]:
    if isinstance(rtols, (int, float)) and not isinstance(rtols, bool):
        rtols = [rtols]
    if not isinstance(rtols, (list, tuple)):
        raise ArgumentTypeError(
            f"rtols: expected a sequence of relative tolerances, got {type(rtols).__name__}"
        )
    if not rtols:
        raise ArgumentError("rtols: expected at least one relative tolerance, got none")
    out = []
    for i, r in enumerate(rtols):
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise ArgumentTypeError(f"rtols[{i}]: expected a number, got {type(r).__name__}")
        r = float(r)
        if not (0 < r < 1) or not math.isfinite(r):
            raise ArgumentError(f"rtols[{i}]: expected 0 < rtol < 1, got {r!r}")
        out.append(r)
    if len(set(out)) != len(out):
        raise ArgumentError(f"rtols: expected distinct tolerances, got {out}")
    return sorted(out, reverse=True)  # loosest first


def _check_strategies(strategies: object) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("backprop", Backprop())]
    for s in strategy_list(strategies, "backprop"):
        name, strat = parse_strategy(s)
        if not isinstance(strat, (*_DTO, Adjoint)):
            raise ArgumentError(
                f"strategies: {name!r} does not support adaptive methods; valid strategies are "
                "'backprop', 'anode', 'revolve', 'revolve:k' and 'adjoint'"
            )
        if isinstance(strat, Backprop):
            continue  # the reference: always run, first
        if name in [n for n, _ in out]:
            raise ArgumentError(f"strategies: {name!r} given twice")
        out.append((name, strat))
    return out


def _check_dtype(dtype: object) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise ArgumentError(f"dtype: expected a real floating dtype or None, got {dtype!r}")
    return dtype


def _cast(f: Callable, y0: Tensor, params: object, dtype: torch.dtype | None
          ) -> tuple[Callable, Tensor, list[Tensor]]:
    """``func``, ``y0`` and the parameters in ``dtype``: an ``nn.Module`` (or a bound method of
    one) is deep-copied and cast, the caller's model is not changed."""
    if dtype is not None and params is None:
        owner = f if isinstance(f, nn.Module) else getattr(f, "__self__", None)
        if isinstance(owner, nn.Module):
            dup = copy.deepcopy(owner).to(dtype)
            f = dup if f is owner else getattr(dup, f.__name__)
        y0 = y0.to(dtype)
    elif dtype is not None:
        y0 = y0.to(dtype)
    ps = collect_params(f, None, params)
    for i, p in enumerate(ps):
        if p.dtype != y0.dtype:
            raise ArgumentError(
                f"params[{i}]: dtype {str(p.dtype).replace('torch.', '')}, but the solve runs "
                f"in {str(y0.dtype).replace('torch.', '')}; cast the model's parameters or pass "
                "dtype=None"
            )
        if p.device != y0.device:
            raise ArgumentError(f"params[{i}]: on device {p.device}, but y0 is on {y0.device}")
    return f, y0, ps


# -- the diagnostic --------------------------------------------------------------------------------
def adaptive_consistency(
    model_or_func: Callable,
    y0: Tensor,
    t: Tensor | float = 1.0,
    method: str = "dopri5",
    rtols: Sequence[float] = (1e-3, 1e-5, 1e-7),
    strategies: Sequence[str | odenet.GradientStrategy] = ("anode", "revolve", "adjoint"),
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    atol_factor: float = 1e-2,
    params: Sequence[Tensor] | None = None,
    dtype: torch.dtype | str | None = torch.float64,
    fd_directions: int = 2,
    fd_eps: float | None = None,
    seed: int = 0,
    measure: bool = True,
    repeats: int = 1,
) -> AdaptiveConsistencyResult:
    r"""Which gradient does each strategy give for an adaptive (embedded-pair) solve?

    For every relative tolerance ``rtol`` (``atol = atol_factor · rtol``; the adjoint's
    reverse solve gets the same ``adjoint_rtol`` and ``adjoint_atol``) the loss of the
    adaptive solve over ``t`` is differentiated with respect to the parameters
    :math:`\theta` and to :math:`y_0` by backprop and by each strategy, and compared:

    - against **backprop of the same adaptive solve**: ``"anode"`` and ``"revolve"``
      (discretize-then-optimize, the controller's step sizes held constant) agree with it to
      round-off (about 1e-13 in float64); the optimize-then-discretize ``"adjoint"`` solves
      the continuous adjoint on a grid of its own and differs by an amount that shrinks with
      ``rtol``;
    - against **central finite differences of the full adaptive solve**,
      :math:`(L(x + \varepsilon v) - L(x - \varepsilon v)) / 2\varepsilon` along
      ``fd_directions`` random unit directions :math:`v` in :math:`(y_0, \theta)`: each
      perturbed solve re-runs the controller, so its step sizes move with :math:`x`. The
      steps-held-fixed gradient leaves out the step sizes' dependence on :math:`x`, and the
      finite difference sees it (and a jump wherever an accept/reject decision flips); the
      deviation is of the order of the tolerance, and it is reported, not hidden. The step
      :math:`\varepsilon` defaults to :math:`\varepsilon_{mach}^{1/3}` (6.1e-6 in float64:
      truncation and round-off of the difference both about 4e-11 relative, far below the
      tolerances compared).

    Besides the errors: the forward accepted and rejected steps and function evaluations
    (:data:`odenet.gradients._adaptive.LAST`), the adjoint's backward accepted and rejected
    steps, the steps ANODE replays, Revolve's recomputed steps and snapshots, and the time
    and peak memory of one gradient of each strategy, measured in this process as
    :func:`odenet.analysis._cost.measure` does (one warm-up, then the median time and the
    peak above the baseline over ``repeats`` runs: ``cuda.max_memory_allocated`` on CUDA,
    the resident set's high-water mark on CPU — coarse for a small problem; use
    :func:`odenet.analysis.cost` for measurements in fresh processes).

    Parameters
    ----------
    model_or_func : callable or ODE block
        ``func(t, y)``, or an object with an ``rhs``.
    y0 : Tensor
        Initial state.
    t : Tensor or float
        Output times, or ``T`` for ``[0, T]``.
    method : str or ButcherTableau
        An embedded pair (:data:`odenet.solvers.ADAPTIVE_METHODS`).
    rtols : sequence of float
        Relative tolerances, each in ``(0, 1)``; run loosest first.
    strategies : sequence
        ``"anode"``, ``"revolve"``, ``"revolve:k"``, ``"adjoint"`` (or instances);
        ``"backprop"``, the reference, always runs.
    loss : callable, optional
        ``loss(y) -> scalar`` of the stacked solution; default
        :math:`\tfrac12 \|y(t_{end})\|^2`.
    atol_factor : float
        ``atol = atol_factor · rtol`` (default 1e-2: torchdiffeq's defaults 1e-7 / 1e-9).
    params : sequence of Tensor, optional
        Default: the parameters of ``func`` that require grad.
    dtype : torch.dtype or None
        The dtype of the analysis (default float64): ``y0`` is cast, an ``nn.Module``
        right-hand side is copied and cast (the caller's is not changed). ``None`` keeps
        ``y0``'s dtype. Explicit ``params`` must already have it.
    fd_directions : int
        Random directions of the finite-difference check (0 to skip).
    fd_eps : float, optional
        Finite-difference step along the unit directions.
    seed : int
        Seed of the directions.
    measure : bool
        Measure time and peak memory (one warm-up and ``repeats`` further runs per
        strategy and rtol); ``False``: the time of the one gradient run, no memory.
    repeats : int
        Timed runs per strategy and rtol when ``measure``.

    Returns
    -------
    AdaptiveConsistencyResult

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument, named in the message: a method that is not an embedded pair, empty,
        repeated or non-positive ``rtols``, an unknown strategy or one without adaptive
        support (e.g. ``"reversible"``), ...

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> lin = torch.nn.Linear(4, 4).double()
    >>> res = analysis.adaptive_consistency(lambda t, y: torch.tanh(lin(y)), torch.randn(3, 4),
    ...     rtols=[1e-3, 1e-6], strategies=["anode", "adjoint"],
    ...     params=list(lin.parameters()), measure=False)
    >>> res.error(1e-3, "anode") < 1e-12          # DTO: the gradient of the accepted steps
    True
    >>> res.error(1e-6, "adjoint") < res.error(1e-3, "adjoint")   # OTD: shrinks with rtol
    True
    >>> res.row(1e-6, "backprop")["steps"] > res.row(1e-3, "backprop")["steps"]
    True
    """
    f, _block = unwrap_func(model_or_func, "model_or_func")
    y0 = check_tensor(y0, "y0").detach()
    dtype = _check_dtype(dtype)
    tab = _check_method(method)
    rtols = _check_rtols(rtols)
    parsed = _check_strategies(strategies)
    atol_factor = check_positive(atol_factor, "atol_factor")
    if loss is None:
        loss = _default_loss
    elif not callable(loss):
        raise ArgumentTypeError(f"loss: expected a callable loss(y), got {type(loss).__name__}")
    fd_directions = check_int(fd_directions, "fd_directions", 0)
    seed = check_seed(seed)
    if not isinstance(measure, bool):
        raise ArgumentTypeError(f"measure: expected a bool, got {type(measure).__name__}")
    repeats = check_int(repeats, "repeats", 1)
    f, y0, ps = _cast(f, y0, params, dtype)
    tt = _check_times(t, y0)
    eps = (torch.finfo(y0.dtype).eps ** (1 / 3)) if fd_eps is None else check_positive(
        fd_eps, "fd_eps")
    directions = _directions(y0, ps, fd_directions, seed)
    sizes = [y0.numel()] + [p.numel() for p in ps]
    probe: str | None = None
    rows: list[dict[str, Any]] = []
    failed: list[str] = []

    for rtol in rtols:
        opts = {"rtol": rtol, "atol": atol_factor * rtol, "adjoint_rtol": rtol,
                "adjoint_atol": atol_factor * rtol}

        def solve(x: Tensor, strategy: Any, opts: dict = opts) -> Tensor:
            return odenet.odeint(f, x, tt, method=tab, options=opts, gradient=strategy,
                                 params=ps)

        fd = []
        for v in directions:
            vals = []
            for s in (eps, -eps):
                vals.append(_perturbed_loss(solve, loss, y0, ps, sizes, v, s))
            fd.append((vals[0] - vals[1]) / (2 * eps))
        fd_scale = max((abs(x) for x in fd), default=0.0)
        ref: tuple[Tensor, Tensor] | None = None
        for name, strat in parsed:
            got: dict[str, Any] = {}

            def run(strat: Any = strat, got: dict = got) -> None:
                x = y0.clone().requires_grad_(True)
                out = solve(x, strat)
                L = check_loss_value(loss(out))
                g = torch.autograd.grad(L, [x, *ps], allow_unused=True)
                got["stats"] = dict(_ga.LAST)
                got["gy"] = _flat(g[:1], [x], y0.device)
                got["gp"] = _flat(g[1:], ps, y0.device)

            try:
                if measure:
                    m = _timed(run, y0.device, repeats)
                    dt, peak, probe = m["time_s"], m["peak_bytes"] / 2**20, m["probe"]
                else:
                    t0 = time.perf_counter()
                    run()
                    dt, peak = time.perf_counter() - t0, None
            except (RuntimeError, NotImplementedError, ValueError, TypeError) as err:
                if name == "backprop":
                    raise
                msg = f"{type(err).__name__}: {err}".splitlines()[0]
                failed.append(f"{name} at rtol {rtol:g}: {msg}")
                rows.append({"rtol": rtol, "strategy": name, "error": msg})
                continue
            gy, gp, st = got["gy"], got["gp"], got["stats"]
            if ref is None:
                ref = (gy, gp)
            fd_err = None
            if directions:
                g = torch.cat([gy, gp])
                dev = max(abs(float(g @ v) - d) for v, d in zip(directions, fd))
                fd_err = dev / fd_scale if fd_scale > 0 else dev
            bwd = st.get("backward_steps")
            rows.append({
                "rtol": rtol, "atol": atol_factor * rtol, "strategy": name,
                "grad_error": _rel(gp, ref[1]) if ps else None,
                "y0_error": _rel(gy, ref[0]),
                "fd_error": fd_err,
                "steps": st.get("forward_steps"), "rejected": st.get("forward_rejected"),
                "nfe": st.get("forward_nfe"),
                "bwd_steps": bwd if name != "backprop" else None,
                "bwd_rejected": st.get("backward_rejected"),
                "bwd_nfe": st.get("backward_nfe"),
                "recomputed": st.get("backward_recomputed") if isinstance(strat, Revolve)
                else None,
                "snapshots": st.get("snapshots"),
                "time_s": dt, "peak_mb": peak, "error": None,
            })
    return AdaptiveConsistencyResult(
        rows, method=tab.name, rtols=rtols, atol_factor=atol_factor,
        strategies=[n for n, _ in parsed], dtype=str(y0.dtype).replace("torch.", ""),
        n_params=sum(p.numel() for p in ps), fd_eps=eps, fd_directions=fd_directions,
        seed=seed, measured=measure, memory_probe=probe, failed=failed,
        T=float(tt[-1] - tt[0]),
    )


def _perturbed_loss(solve: Callable, loss: Callable, y0: Tensor, ps: Sequence[Tensor],
                    sizes: Sequence[int], v: Tensor, s: float) -> float:
    """The loss of the full adaptive solve (controller included) at ``(y0, θ) + s v``."""
    chunks = torch.split(v, list(sizes))
    with torch.no_grad():
        originals = [p.detach().clone() for p in ps]
        try:
            for p, d in zip(ps, chunks[1:]):
                p.add_(d.reshape(p.shape).to(p), alpha=s)
            x = y0 + s * chunks[0].reshape(y0.shape).to(y0)
            return float(check_loss_value(loss(solve(x, "backprop"))))
        finally:
            for p, o in zip(ps, originals):
                p.copy_(o)


# -- the report's section --------------------------------------------------------------------------
class _MLP(nn.Module):
    """``f(y) = W2 tanh(W1 y + b1)``: the report's small adaptive problem."""

    def __init__(self, dim: int = 4, hidden: int = 16, scale: float = 2.5):
        super().__init__()
        self.l1 = nn.Linear(dim, hidden)
        self.l2 = nn.Linear(hidden, dim, bias=False)
        with torch.no_grad():
            self.l2.weight.mul_(scale)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.l2(torch.tanh(self.l1(y)))


def default_problem(seed: int = 0) -> tuple[nn.Module, Tensor, float]:
    """``(func, y0, T)``: the report's small problem, a tanh MLP right-hand side
    (4 → 16 → 4, float64) on a batch of 3 over ``[0, 2]``.

    Examples
    --------
    >>> from odenet.analysis._adaptive import default_problem
    >>> f, y0, T = default_problem()
    >>> tuple(f(0.0, y0).shape), y0.dtype, T
    ((3, 4), torch.float64, 2.0)
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        f = _MLP().double()
    y0 = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    return f, y0, 2.0


#: The report section's settings: method, tolerances, strategies.
SECTION_METHOD = "dopri5"
SECTION_RTOLS = (1e-3, 1e-5, 1e-7)
SECTION_STRATEGIES = ("anode", "revolve", "adjoint")


def run_section(context: Any) -> dict[str, Any]:
    """The report's runner (:data:`odenet.analysis._report.REPORT_SECTIONS`): the small
    embedded problem (:func:`default_problem`, seeded by the specification's seed) with
    dopri5 at ``rtol`` 1e-3, 1e-5, 1e-7."""
    spec = getattr(context, "spec", None) or {}
    f, y0, T = default_problem(int(spec.get("seed", 0)) if isinstance(spec, Mapping) else 0)
    return {"adaptive": adaptive_consistency(f, y0, T, SECTION_METHOD, SECTION_RTOLS,
                                             SECTION_STRATEGIES)}


def adaptive_section(results: Mapping[str, Any], figures: Sequence[str],
                     overlaps: Sequence[Sequence[str]]) -> str | None:
    """The HTML of the report's adaptive section."""
    res = results.get("adaptive")
    if res is None:
        return None
    return H.section(
        "Gradients of adaptive solves",
        f"A small problem of its own (a tanh MLP right-hand side, 4 → 16 → 4, float64, on "
        f"[0, {res.T:g}]) solved by {H.fmt(res.method)} with rtol "
        + ", ".join(f"{r:g}" for r in res.rtols)
        + f" and atol = {res.atol_factor:g}·rtol. ANODE and Revolve differentiate the "
        "accepted steps with the step sizes held fixed, as backprop does, and agree with it "
        "to round-off; the continuous adjoint (OTD) solves backward on a grid of its own and "
        "differs by an amount that shrinks with rtol. Dashed: each gradient against a central "
        "finite difference of the full adaptive solve, which re-runs the controller (step "
        f"{res.fd_eps:.1e}): the step sizes' own dependence on the input is of the order of "
        "the tolerance.",
        figures, [H.table(res.rows, res.columns)], adaptive_keys(results))


def adaptive_keys(results: Mapping[str, Any]) -> list[str]:
    """The section's headline sentences: DTO agreement, the adjoint's error and the FD gap."""
    res = results.get("adaptive")
    if not isinstance(res, AdaptiveConsistencyResult):
        return []
    rows = [r for r in res.rows if r.get("error") is None]
    dto = [r["grad_error"] for r in rows if r["strategy"] in ("anode", "revolve")
           or r["strategy"].startswith("revolve:")]
    out = []
    if dto:
        out.append(f"adaptive {res.method}: ANODE / Revolve vs backprop, largest relative "
                   f"∂L/∂θ error {max(dto):.1e}")
    adj = [r for r in rows if r["strategy"] == "adjoint"]
    if adj:
        out.append(f"adaptive {res.method}: adjoint vs backprop, relative ∂L/∂θ error "
                   + ", ".join(f"{r['grad_error']:.1e} at rtol {r['rtol']:g}" for r in adj))
    bp = [r for r in rows if r["strategy"] == "backprop" and r["fd_error"] is not None]
    if bp:
        out.append(f"adaptive {res.method}: backprop (steps held fixed) vs FD of the full "
                   "solve, " + ", ".join(f"{r['fd_error']:.1e} at rtol {r['rtol']:g} "
                                         f"({r['steps']} steps)" for r in bp))
    return out
