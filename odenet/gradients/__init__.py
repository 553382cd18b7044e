"""Gradient strategies: how :func:`odenet.odeint` differentiates a solve."""

from odenet.gradients._adjoint import Adjoint
from odenet.gradients._anode import ANODE
from odenet.gradients._backprop import Backprop
from odenet.gradients._base import (
    STRATEGIES,
    GradientStrategy,
    resolve_gradient,
    strategy_names,
)
from odenet.gradients._reversible import ReconstructionWarning, Reversible
from odenet.gradients._revolve import Revolve, binomial_advances, binomial_schedule

__all__ = [
    "ANODE",
    "STRATEGIES",
    "Adjoint",
    "Backprop",
    "GradientStrategy",
    "ReconstructionWarning",
    "Reversible",
    "Revolve",
    "binomial_advances",
    "binomial_schedule",
    "resolve_gradient",
    "strategy_names",
]
