"""Functional forms of the operators of :mod:`odenet.nn`.

Every operator comes with its exact transpose (``*_adjoint``), so that
``<K x, z> = <x, Kᵀ z>``; all are differentiable twice.
"""

from odenet.nn.functional._deform import deform_conv2d, deform_conv2d_adjoint
from odenet.nn.functional._lean import STENCILS, lean_conv2d, lean_conv2d_adjoint, stencil_kernel
from odenet.nn.functional._sparse import (
    ENGINES,
    PATTERNS,
    psc_mask,
    sparse_conv2d,
    sparse_conv2d_adjoint,
)

__all__ = [
    "ENGINES",
    "PATTERNS",
    "STENCILS",
    "deform_conv2d",
    "deform_conv2d_adjoint",
    "lean_conv2d",
    "lean_conv2d_adjoint",
    "psc_mask",
    "sparse_conv2d",
    "sparse_conv2d_adjoint",
    "stencil_kernel",
]
