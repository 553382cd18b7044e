"""Neural-network building blocks: convolution operators, right-hand sides, ODE blocks."""

from odenet.nn import functional
from odenet.nn._imex import IMEXBlock

__all__ = ["IMEXBlock", "functional"]
