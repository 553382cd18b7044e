"""Diagnostics for ODE-networks built on :mod:`odenet`.

Each function returns a result object that prints as a table, converts to
JSON-safe data with ``.to_dict()`` and draws itself with ``.plot()`` (a
matplotlib Figure):

- :func:`gradient_consistency`: every gradient strategy against backprop (the
  exact gradient of the discrete network) and central finite differences,
  torchdiffeq's ``odeint_adjoint`` beside;
- :func:`adaptive_consistency`: the same for adaptive (embedded-pair) solves over a range
  of tolerances, with finite differences of the full solve, step counts, time and memory;
- :func:`reversibility`: how well a reverse-time solve reconstructs ``y0``;
- :func:`reconstruction`: up to which ``Nt`` and dtype the reversible methods' inverse
  steps rebuild the states (``gradient="reversible"``); :func:`reversible_growth`;
- :func:`stability`: the Jacobian's extreme eigenvalues (matrix-free ARPACK) against
  the method's exact stability region, the largest stable step, and the
  amplification of perturbations by the whole solve;
- :func:`stability_region`: the region ``|R(z)| <= 1`` from the tableau;
- :func:`convergence_order`: the observed order against a reference solution;
- :func:`cost`: peak memory and time of each strategy, in fresh processes;
- :func:`report`: all of them on one network, as HTML, PNG and JSON (the
  ``odenet-analysis`` command).

Examples
--------
>>> import torch
>>> from odenet import analysis
>>> analysis.stability_region("rk4").real_axis_limit  # doctest: +ELLIPSIS
-2.785...
>>> lin = torch.nn.Linear(3, 3).double()
>>> res = analysis.gradient_consistency(lambda t, y: torch.tanh(lin(y)),
...     torch.randn(2, 3, dtype=torch.float64), 1.0, "rk4_38", [4], ["anode", "adjoint"],
...     params=list(lin.parameters()))
>>> res.error("rk4_38", 4, "anode") < 1e-12 < res.error("rk4_38", 4, "adjoint")
True
"""

from odenet.analysis import _requirements  # noqa: F401  (first: names a missing extra)
from odenet.analysis._adaptive import AdaptiveConsistencyResult, adaptive_consistency
from odenet.analysis._convergence import ConvergenceResult, convergence_order
from odenet.analysis._cost import CostResult, cost
from odenet.analysis._gradients import GradientConsistencyResult, gradient_consistency
from odenet.analysis._monitor import Monitor, MonitorWarning
from odenet.analysis._plan import Plan, plan_gradients
from odenet.analysis._problems import ODEProblem
from odenet.analysis._reconstruction import (
    ReconstructionResult,
    reconstruction,
    reversible_growth,
)
from odenet.analysis._region import StabilityRegion, max_stable_steps, stability_region
from odenet.analysis._report import report
from odenet.analysis._reversibility import ReversibilityResult, reversibility
from odenet.analysis._stability import StabilityResult, stability
from odenet.analysis._user_model import find_blocks

__all__ = [
    "AdaptiveConsistencyResult",
    "ConvergenceResult",
    "CostResult",
    "GradientConsistencyResult",
    "Monitor",
    "MonitorWarning",
    "ODEProblem",
    "Plan",
    "ReconstructionResult",
    "ReversibilityResult",
    "StabilityRegion",
    "StabilityResult",
    "adaptive_consistency",
    "convergence_order",
    "cost",
    "find_blocks",
    "gradient_consistency",
    "max_stable_steps",
    "plan_gradients",
    "reconstruction",
    "report",
    "reversibility",
    "reversible_growth",
    "stability",
    "stability_region",
]
