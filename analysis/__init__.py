"""Diagnostics for ODE-networks built on :mod:`odenet`."""

from analysis._convergence import ConvergenceResult, convergence_order
from analysis._cost import CostResult, cost
from analysis._gradients import GradientConsistencyResult, gradient_consistency
from analysis._problems import ODEProblem
from analysis._region import StabilityRegion, max_stable_steps, stability_region
from analysis._report import report
from analysis._reversibility import ReversibilityResult, reversibility
from analysis._stability import StabilityResult, stability

__all__ = [
    "ConvergenceResult",
    "CostResult",
    "GradientConsistencyResult",
    "ODEProblem",
    "ReversibilityResult",
    "StabilityRegion",
    "StabilityResult",
    "convergence_order",
    "cost",
    "gradient_consistency",
    "max_stable_steps",
    "report",
    "reversibility",
    "stability",
    "stability_region",
]
