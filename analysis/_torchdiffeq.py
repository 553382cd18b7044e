"""torchdiffeq's fixed-grid solvers as gradient strategies: the baselines of the diagnostics.

``gradient="torchdiffeq"`` hands the solve to ``torchdiffeq.odeint`` (autograd through its
steps), ``gradient="torchdiffeq-adjoint"`` to ``torchdiffeq.odeint_adjoint`` (its continuous
adjoint), on the same grid and with torchdiffeq's name of the same scheme. They are
:class:`odenet.GradientStrategy` subclasses like odenet's own, so that
:func:`odenet.analysis.gradient_consistency`, :func:`odenet.analysis.cost` and every ODE block
use them by name, with no patching of the blocks. Importing :mod:`odenet.analysis` registers
them in :data:`odenet.gradients.STRATEGIES`.
"""

from __future__ import annotations

from typing import ClassVar

from odenet.errors import ArgumentError
from odenet.gradients import GradientStrategy
from odenet.solvers import METHODS, ButcherTableau, IMEXTableau, Problem, State

__all__ = ["TORCHDIFFEQ_NAMES", "Torchdiffeq", "TorchdiffeqAdjoint", "torchdiffeq_method"]

#: odenet's method -> torchdiffeq's name of the same fixed-grid scheme (its "rk4" is the 3/8 rule).
TORCHDIFFEQ_NAMES = {"euler": "euler", "midpoint": "midpoint", "rk4_38": "rk4"}


def torchdiffeq_method(tab: ButcherTableau | IMEXTableau) -> str | None:
    """torchdiffeq's name of the same fixed-grid scheme, or ``None``.

    Examples
    --------
    >>> import odenet
    >>> from odenet.analysis._torchdiffeq import torchdiffeq_method
    >>> torchdiffeq_method(odenet.METHODS["rk4_38"]), torchdiffeq_method(odenet.METHODS["rk4"])
    ('rk4', None)
    """
    if not isinstance(tab, ButcherTableau):
        return None
    for ours, theirs in TORCHDIFFEQ_NAMES.items():
        if tab == METHODS[ours]:
            return theirs
    return None


class Torchdiffeq(GradientStrategy):
    """The solve by ``torchdiffeq.odeint`` on odenet's grid: the reference implementation.

    Refuses (an :class:`~odenet.errors.ArgumentError` naming ``gradient``) what torchdiffeq's
    fixed-grid solvers do not have: a method without a torchdiffeq equivalent (see
    :data:`TORCHDIFFEQ_NAMES`), an implicit operator, ``perturb`` and ``grid_constructor``.

    Examples
    --------
    >>> import torch, odenet
    >>> import odenet.analysis  # registers the baselines
    >>> t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y0 = torch.ones(2, dtype=torch.float64)
    >>> a = odenet.odeint(lambda t, y: -y, y0, t, method="rk4_38", step_size=0.25,
    ...                   gradient="torchdiffeq")
    >>> b = odenet.odeint(lambda t, y: -y, y0, t, method="rk4_38", step_size=0.25)
    >>> float((a - b).abs().max()) < 1e-15
    True
    """

    name: ClassVar[str] = "torchdiffeq"
    adjoint: ClassVar[bool] = False

    def solve(self, problem: Problem, y0: State) -> State:
        import torchdiffeq

        method = torchdiffeq_method(problem.tableau)
        label = problem.tableau.name or type(problem.tableau).__name__
        if method is None or problem.implicit is not None:
            raise ArgumentError(
                f"gradient: {self.name!r} has no fixed-grid equivalent of the method {label!r} "
                f"(torchdiffeq's fixed-grid schemes are odenet's "
                + ", ".join(repr(m) for m in TORCHDIFFEQ_NAMES)
                + ", without an implicit operator)"
            )
        if problem.perturb or problem.grid._points is not None:
            raise ArgumentError(
                f"gradient: {self.name!r} runs torchdiffeq on a plain step_size grid; it takes "
                "neither perturb nor grid_constructor"
            )
        options = {} if problem.step_size is None else {"step_size": problem.step_size}
        if not self.adjoint:
            return torchdiffeq.odeint(problem.func, y0, problem.t, method=method,
                                      options=options)
        return torchdiffeq.odeint_adjoint(problem.func, y0, problem.t, method=method,
                                          options=options, adjoint_params=problem.params)


class TorchdiffeqAdjoint(Torchdiffeq):
    """The solve by ``torchdiffeq.odeint_adjoint``: torchdiffeq's continuous adjoint, with
    ``adjoint_params`` the parameters odenet collected for the solve.

    Examples
    --------
    >>> import torch, odenet
    >>> import odenet.analysis  # registers the baselines
    >>> lin = torch.nn.Linear(2, 2).double()
    >>> y = odenet.odeint(lambda t, y: torch.tanh(lin(y)), torch.ones(2, dtype=torch.float64),
    ...                   torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4_38",
    ...                   step_size=0.25, gradient="torchdiffeq-adjoint",
    ...                   params=list(lin.parameters()))
    >>> y[-1].sum().backward()
    >>> lin.weight.grad is not None
    True
    """

    name: ClassVar[str] = "torchdiffeq-adjoint"
    adjoint: ClassVar[bool] = True
