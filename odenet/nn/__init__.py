"""Neural-network building blocks: convolution operators, right-hand sides, ODE blocks."""

from odenet.nn import functional

__all__ = ["functional"]
