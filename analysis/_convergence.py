"""Observed order of convergence against a reference solution."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

import odenet
from odenet import ButcherTableau, IMEXTableau
from odenet.analysis._common import check_bool, check_methods, check_path, check_steps, fingerprint
from odenet.analysis._problems import ODEProblem, builtin_problem
from odenet.analysis._results import Result, new_figure, plain_log_axis
from odenet.analysis._sweep import CaseStore, run_cases
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["ConvergenceResult", "convergence_order", "fit_order"]


def fit_order(h: Sequence[float], err: Sequence[float], floor: float = 0.0) -> float:
    """Least-squares slope of ``log(err)`` against ``log(h)`` over the errors above ``floor``.

    Returns ``nan`` with fewer than two usable points.

    Examples
    --------
    >>> from odenet.analysis._convergence import fit_order
    >>> fit_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4])
    2.0
    """
    h = np.asarray(h, dtype=float)
    e = np.asarray(err, dtype=float)
    ok = np.isfinite(e) & (e > floor)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(np.log(h[ok]), np.log(e[ok]), 1)[0]
    return float(round(slope, 12))


class ConvergenceResult(Result):
    """Errors against the reference for each method and step count, and the fitted orders.

    Returned by :func:`convergence_order`. ``observed[method]`` is the log-log
    slope over the errors above the round-off floor; ``declared[method]`` the
    tableau's order.

    Examples
    --------
    >>> from odenet import analysis
    >>> res = analysis.convergence_order("heun", steps=[8, 16, 32])
    >>> round(res.observed["heun"], 1)
    2.0
    """

    kind = "convergence_order"
    columns = ("method", "steps", "h", "error", "local_order")

    def title(self) -> str:
        return f"convergence order on {self.problem!r} (T = {self.T:g})"

    def notes(self) -> list[str]:
        return [
            f"{m}: observed order {self.observed[m]:.3f} (declared {self.declared[m]})"
            for m in self.observed
        ]

    def plot(self, ax=None):
        """Error against step size, log-log, one line per method, with reference slopes.

        Examples
        --------
        >>> from odenet import analysis
        >>> fig = analysis.convergence_order(["euler", "rk4"], steps=[4, 8]).plot()
        >>> fig.axes[0].get_xscale()
        'log'
        """
        if ax is None:
            fig, (ax,) = new_figure(width=6.4, height=4.8)
        else:
            fig = ax.figure
        for i, m in enumerate(self.observed):
            rows = [r for r in self.rows if r["method"] == m]
            h = np.array([r["h"] for r in rows])
            e = np.array([max(r["error"], 1e-300) for r in rows])
            ax.loglog(h, e, "o-", color=f"C{i}", ms=4,
                      label=f"{m}: slope {self.observed[m]:.2f} (order {self.declared[m]})")
            p = self.declared[m]
            ok = e > self.summary["floor"]
            if ok.any():  # reference slope through the finest usable point
                j = np.flatnonzero(ok)[-1]
                ax.loglog(h, e[j] * (h / h[j]) ** p, ":", color=f"C{i}", lw=0.9)
        ax.axhline(self.summary["floor"], color="0.6", lw=0.8, ls="--", label="round-off floor")
        plain_log_axis(ax, "x")
        ax.set_xlabel("step size h")
        ax.set_ylabel("relative error at T")
        ax.set_title(f"convergence on {self.problem} (dotted: declared order)")
        ax.legend(fontsize=8)
        return fig


def convergence_order(
    method: str | ButcherTableau | IMEXTableau | Sequence[str | ButcherTableau | IMEXTableau],
    problem: str | ODEProblem | None = None,
    steps: Sequence[int] = (8, 16, 32, 64, 128),
    *,
    store=None,
    progress: bool | None = False,
) -> ConvergenceResult:
    r"""Observed order of accuracy by a log-log fit of the error at ``T`` against ``h``.

    Each method integrates the problem with ``Nt`` steps for every ``Nt`` in
    ``steps`` (``h = T / Nt``); the relative error
    :math:`\|y_{N_t} - y(T)\|_2 / \|y(T)\|_2` against the reference (exact, or
    scipy's DOP853 at tolerance 1e-13) is fitted by least squares over the
    errors above the round-off floor (:math:`10^3 \varepsilon`).

    Parameters
    ----------
    method : str, tableau, or a sequence of them
    problem : str or ODEProblem, optional
        A built-in problem (``"linear"`` (default, exact solution), ``"vanderpol"``,
        ``"lotka_volterra"``, ``"convnet"``) or an :class:`ODEProblem`. IMEX
        methods need a problem with an implicit part (``linear`` and ``convnet``
        have one); explicit methods integrate ``func - L`` as one right-hand side.
    steps : sequence of int
        Step counts, at least two distinct ones (a slope needs two points).
    store : path, optional
        JSON-lines file recording each finished case; rerunning resumes.
    progress : bool, optional
        Progress bar (``None``: on a terminal).

    Returns
    -------
    ConvergenceResult

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument (unknown or repeated methods, fewer than two step counts, an IMEX
        method on a problem without an implicit part, ...), named in the message.
    odenet.errors.FunctionOutputError
        The problem's ``exact`` returns a tensor of the wrong shape (or not finite).

    Examples
    --------
    >>> from odenet import analysis
    >>> res = analysis.convergence_order(["euler", "rk4"], "vanderpol", steps=[16, 32, 64])
    >>> {m: round(p) for m, p in res.observed.items()}
    {'euler': 1, 'rk4': 4}
    """
    tabs = check_methods(method, "method")
    steps = check_steps(steps, minimum_count=2)
    store = check_path(store, "store")
    progress = check_bool(progress, "progress", allow_none=True)
    if problem is None:
        problem = "linear"
    if isinstance(problem, str):
        prob = builtin_problem(problem)
    elif isinstance(problem, ODEProblem):
        prob = problem
    else:
        raise ArgumentTypeError(
            f"problem: expected a problem name or an analysis.ODEProblem, got "
            f"{type(problem).__name__}"
        )
    for tab in tabs:
        if isinstance(tab, IMEXTableau) and prob.implicit is None:
            raise ArgumentError(
                f"problem: {prob.name!r} has no implicit part, which the IMEX method "
                f"{tab.name!r} needs; use 'linear' or 'convnet', or give ODEProblem(implicit=L)"
            )
    names = [t.name for t in tabs]
    ref = prob.reference()
    ref_norm = float(ref.norm())
    scale = ref_norm if ref_norm > 0 else 1.0
    floor = 1e3 * torch.finfo(prob.y0.dtype).eps
    t = torch.tensor([0.0, prob.T], dtype=prob.y0.dtype, device=prob.y0.device)
    by_name = dict(zip(names, tabs))
    cs = CaseStore(store, fingerprint("convergence_order", prob.name, prob.y0, prob.T, tabs))

    def compute(key):
        name, n = key
        tab = by_name[name]
        h = prob.T / n
        with torch.no_grad():
            if isinstance(tab, IMEXTableau):
                y = odenet.odeint(prob.func, prob.y0, t, method=tab, step_size=h,
                                  implicit=prob.implicit)
            else:
                y = odenet.odeint(prob.full_func(), prob.y0, t, method=tab, step_size=h)
        err = float((y[-1] - ref).norm()) / scale
        return {"method": name, "steps": n, "h": h, "error": err}

    keys = [(m, n) for m in names for n in steps]
    rows = run_cases(keys, compute, cs, progress=progress, desc="order")
    observed, declared = {}, {}
    for name in names:
        mr = [r for r in rows if r["method"] == name]
        prev = None
        for r in mr:
            r["local_order"] = None
            if prev is not None and prev["error"] > floor and r["error"] > floor:
                r["local_order"] = math.log(prev["error"] / r["error"]) / math.log(
                    prev["h"] / r["h"]
                )
            prev = r
        observed[name] = fit_order([r["h"] for r in mr], [r["error"] for r in mr], floor)
        declared[name] = by_name[name].order
    return ConvergenceResult(
        rows, problem=prob.name, T=prob.T, observed=observed, declared=declared, floor=floor
    )
