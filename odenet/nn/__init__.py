"""Neural-network building blocks: convolution operators, right-hand sides, ODE blocks.

Operators (each a :class:`ConvOperator` with ``.adjoint``): :class:`LeanConv2d`
(1×1 + depthwise stencil), :class:`SparseConv2d` (pre-defined sparse kernels,
pSConv), :class:`DeformConv2d` (DCN v1/v2), :class:`DenseConv2d` (the baseline).
Right-hand sides: :class:`ResidualRHS`, :class:`ParabolicRHS`, :class:`HamiltonianRHS`. Layers:
:class:`ODEBlock`, :class:`IMEXBlock`.
"""

from odenet.nn import functional
from odenet.nn._base import ConvOperator
from odenet.nn._block import ODEBlock
from odenet.nn._deform import DeformConv2d
from odenet.nn._dense import DenseConv2d
from odenet.nn._hamiltonian import HamiltonianRHS
from odenet.nn._imex import IMEXBlock
from odenet.nn._lean import LeanConv2d
from odenet.nn._rhs import (
    ACTIVATIONS,
    NORMS,
    ParabolicRHS,
    ResidualRHS,
    activation_name,
    make_activation,
    make_norm,
)
from odenet.nn._sparse import SparseConv2d

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "ConvOperator",
    "DeformConv2d",
    "DenseConv2d",
    "HamiltonianRHS",
    "IMEXBlock",
    "LeanConv2d",
    "ODEBlock",
    "ParabolicRHS",
    "ResidualRHS",
    "SparseConv2d",
    "activation_name",
    "functional",
    "make_activation",
    "make_norm",
]
