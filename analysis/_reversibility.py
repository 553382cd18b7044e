"""Reverse-time reconstruction: solve forward, then backward from y(T), compare with y0."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

import odenet
from odenet import ButcherTableau, IMEXTableau
from odenet.analysis._common import (
    check_bool,
    check_methods,
    check_path,
    check_positive,
    check_real,
    check_steps,
    check_str,
    check_tensor,
    fingerprint,
    unwrap_func,
)
from odenet.analysis._results import Result, new_figure, steps_axis
from odenet.analysis._sweep import CaseStore, run_cases
from odenet.errors import ArgumentError, NonFiniteStateError

__all__ = ["ReversibilityResult", "combine", "reversibility"]


class ReversibilityResult(Result):
    r"""Relative reconstruction error :math:`\|\hat y_0 - y_0\| / \|y_0\|` per method and ``Nt``.

    Returned by :func:`reversibility`. ``error`` is ``inf`` when a solve blew up
    (non-finite state; ``forward_norm`` is ``inf`` too when it was the forward one).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> res = analysis.reversibility(lambda t, y: -y, torch.ones(3, dtype=torch.float64),
    ...                              1.0, ["euler", "rk4"], [4, 8])
    >>> res.rows[0]["method"], res.rows[0]["steps"]
    ('euler', 4)
    """

    kind = "reversibility"
    columns = ("label", "method", "steps", "h", "error", "forward_norm")

    def title(self) -> str:
        return f"reverse-time reconstruction of y0 over [0, {self.T:g}]"

    def plot(self, ax=None):
        """Reconstruction error against ``Nt``, log-log, one line per method (and label).

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> res = analysis.reversibility(lambda t, y: -y, torch.ones(3, dtype=torch.float64),
        ...                              1.0, ["euler"], [2, 4])
        >>> res.plot().axes[0].get_yscale()
        'log'
        """
        if ax is None:
            fig, (ax,) = new_figure(width=6.4, height=4.6)
        else:
            fig = ax.figure
        groups = list(dict.fromkeys((r["label"], r["method"]) for r in self.rows))
        styles = ["-", "--", ":", "-."]
        labels = list(dict.fromkeys(r["label"] for r in self.rows))
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        floor = 1e-17
        for label, m in groups:
            rows = [r for r in self.rows if r["label"] == label and r["method"] == m]
            n = np.array([r["steps"] for r in rows])
            e = np.array([r["error"] for r in rows], dtype=float)
            finite = np.isfinite(e)
            e_plot = np.where(finite, np.maximum(e, floor), np.nan)
            name = m if len(labels) == 1 else f"{m}, {label}"
            color = f"C{methods.index(m)}"
            ls = styles[labels.index(label) % len(styles)]
            ax.loglog(n, e_plot, "o" + ls, color=color, ms=4, label=name)
            if (~finite).any():
                ax.plot(n[~finite], np.full((~finite).sum(), ax.get_ylim()[1]), "x",
                        color=color, ms=8)
        steps_axis(ax, [r["steps"] for r in self.rows])
        ax.set_xlabel("steps Nt")
        ax.set_ylabel("relative reconstruction error of y0")
        ax.set_title("solve forward, then backward from y(T)")
        ax.legend(fontsize=8)
        return fig


def reversibility(
    func: Callable,
    y0: Tensor,
    T: float = 1.0,
    methods: str | ButcherTableau | Sequence[str | ButcherTableau] = ("euler", "midpoint", "rk4"),
    steps: Sequence[int] = (2, 4, 8, 16, 32, 64),
    *,
    t0: float = 0.0,
    label: str = "",
    store=None,
    progress: bool | None = False,
) -> ReversibilityResult:
    r"""How well a backward solve from :math:`y(T)` reconstructs :math:`y_0`.

    The continuous adjoint of Chen et al. recomputes the state by integrating
    the ODE backward from :math:`y(T)`; this is only as good as that backward
    solve. For each method and ``Nt``, the ODE is solved forward over
    ``[t0, t0 + T]`` with ``Nt`` steps, then backward from the computed
    :math:`y(T)` with the same method and steps; the result is the relative
    error :math:`\|\hat y_0 - y_0\|_2 / \|y_0\|_2` (``inf`` if a solve
    blows up).

    Parameters
    ----------
    func : callable or ODE block
        ``func(t, y)``, or an object with an ``rhs`` (its right-hand side is used).
    y0 : Tensor
        Initial state.
    T : float
        Length of the time interval.
    methods : str, tableau, or sequence of them
        Explicit methods (IMEX steps cannot run backward in time).
    steps : sequence of int
        Step counts ``Nt``.
    t0 : float
        Initial time.
    label : str
        Tag stored in every row (e.g. the activation), to combine several runs in one plot.
    store : path, optional
        JSON-lines file recording each finished case; rerunning resumes.
    progress : bool, optional
        Progress bar (``None``: on a terminal).

    Returns
    -------
    ReversibilityResult

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument (an IMEX or unknown method, empty or non-positive steps, a
        non-finite ``y0``, ``T`` or ``t0``, ...), named in the message.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> W = torch.randn(4, 4, dtype=torch.float64)
    >>> f = lambda t, y: torch.relu(y @ W.T)
    >>> res = analysis.reversibility(f, torch.randn(3, 4, dtype=torch.float64), 1.0, "rk4",
    ...                              [4, 64])
    >>> res.rows[1]["error"] < res.rows[0]["error"]
    True
    """
    f, _ = unwrap_func(func)
    y0 = check_tensor(y0, "y0").detach()
    T = check_positive(T, "T")
    t0 = check_real(t0, "t0")
    label = check_str(label, "label")
    store = check_path(store, "store")
    progress = check_bool(progress, "progress", allow_none=True)
    tabs = check_methods(methods)
    for tab in tabs:
        if isinstance(tab, IMEXTableau):
            raise ArgumentError(
                f"methods: {tab.name!r} is an IMEX method; its implicit solves cannot run "
                "backward in time (I - h L would amplify), so it has no reverse-time solve"
            )
    steps = check_steps(steps)
    names = [t.name for t in tabs]
    by_name = dict(zip(names, tabs))
    y_norm = float(y0.norm()) or 1.0
    fwd = torch.tensor([t0, t0 + T], dtype=y0.dtype, device=y0.device)
    bwd = fwd.flip(0)
    cs = CaseStore(store, fingerprint("reversibility", f, y0, T, t0, tabs, label,
                                      getattr(func, "rhs", func)))

    def compute(key):
        name, n = key
        tab = by_name[name]
        h = T / n
        err = fnorm = float("inf")
        with torch.no_grad():
            try:
                yT = odenet.odeint(f, y0, fwd, method=tab, step_size=h)[-1]
                fnorm = float(yT.norm())
                y_back = odenet.odeint(f, yT, bwd, method=tab, step_size=h)[-1]
                err = float((y_back - y0).norm()) / y_norm
            except NonFiniteStateError:
                pass  # the forward or the backward solve blew up
        return {"label": label, "method": name, "steps": n, "h": h, "error": err,
                "forward_norm": fnorm}

    keys = [(m, n) for m in names for n in steps]
    rows = run_cases(keys, compute, cs, progress=progress, desc="reversibility")
    return ReversibilityResult(rows, T=T, methods=names, steps=steps, label=label)


def combine(results: Sequence[ReversibilityResult]) -> ReversibilityResult:
    """One result with the rows of several (e.g. one per activation).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> from odenet.analysis._reversibility import combine
    >>> y0 = torch.ones(2, dtype=torch.float64)
    >>> a = analysis.reversibility(lambda t, y: -y, y0, 1.0, "euler", [2], label="a")
    >>> b = analysis.reversibility(lambda t, y: y, y0, 1.0, "euler", [2], label="b")
    >>> [r["label"] for r in combine([a, b]).rows]
    ['a', 'b']
    """
    rows = [r for res in results for r in res.rows]
    first = results[0]
    return ReversibilityResult(rows, T=first.T, methods=first.methods, steps=first.steps,
                               label=",".join(r.label for r in results))
