"""Ready-made ODE-networks and their cost accounting.

:class:`ODEResNet` (stages of ODE blocks with lean / sparse / deformable / dense
operators) and :func:`count_cost` (parameters and multiply-adds per layer against
a dense network of the same shape).
"""

from odenet.models._cost import CostReport, LayerCost, count_cost
from odenet.models._resnet import OPERATORS, ODEResNet, make_operator, register_operator

__all__ = [
    "OPERATORS",
    "CostReport",
    "LayerCost",
    "ODEResNet",
    "count_cost",
    "make_operator",
    "register_operator",
]
