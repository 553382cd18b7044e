"""Implicit linear operators ``L`` for the IMEX methods (``y' = f(t, y) - L y``).

:class:`ConvFFT` is IMEXnet's :math:`L = K^\\top K` for a depthwise convolution ``K``, applied
and inverted exactly in a spectral basis (FFT for periodic, DCT-II for reflective boundaries).
:class:`ImplicitOperator` is the contract ``odenet.odeint(..., implicit=L)`` relies on.

Examples
--------
>>> import torch
>>> from odenet.linear import ConvFFT, ImplicitOperator
>>> L = ConvFFT(torch.ones(2, 1, 3, 3))
>>> isinstance(L, ImplicitOperator)
True
"""

from odenet.linear._base import ImplicitOperator
from odenet.linear._convfft import ConvFFT

__all__ = ["ConvFFT", "ImplicitOperator"]
