"""A dense convolution with an adjoint (the baseline operator)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odenet.errors import ArgumentError
from odenet.nn._base import ConvOperator, kaiming_uniform_
from odenet.nn._checks import check_bool, check_positive_int
from odenet.nn.functional._checks import check_image

__all__ = ["DenseConv2d"]


class DenseConv2d(ConvOperator):
    r"""A dense ``k × k`` convolution with zero "same" padding and its adjoint.

    The baseline the cheap operators are measured against, in the same
    :class:`ConvOperator` contract (``Kᵀ`` is ``conv_transpose2d`` with the same
    kernel).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size : int, default 3
        Odd, so that the output keeps the input's size.
    bias : bool, default False
        Add a learnable bias (not part of :meth:`adjoint`).

    Examples
    --------
    >>> import torch, odenet
    >>> op = odenet.nn.DenseConv2d(4, 8)
    >>> op(torch.randn(1, 4, 6, 6)).shape, op.adjoint(torch.randn(1, 8, 6, 6)).shape
    (torch.Size([1, 8, 6, 6]), torch.Size([1, 4, 6, 6]))
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("kernel_size", kernel_size)
        check_bool("bias", bias)
        if kernel_size % 2 == 0:
            raise ArgumentError(
                f"kernel_size: expected an odd size (the output keeps the input's size), "
                f"got {kernel_size}"
            )
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        k = kernel_size
        self.weight = nn.Parameter(
            kaiming_uniform_(torch.empty(out_channels, in_channels, k, k), in_channels * k * k)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """``K x (+ bias)``."""
        check_image("x", x, channels=self.in_channels)
        return F.conv2d(x, self.weight, self.bias, padding=self.kernel_size // 2)

    def adjoint(self, z: Tensor) -> Tensor:
        """``Kᵀ z`` (bias excluded).

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.DenseConv2d(2, 3).double()
        >>> x, z = torch.randn(1, 2, 4, 4).double(), torch.randn(1, 3, 4, 4).double()
        >>> torch.allclose((op(x) * z).sum(), (x * op.adjoint(z)).sum())
        True
        """
        check_image("z", z, channels=self.out_channels)
        return F.conv_transpose2d(z, self.weight, padding=self.kernel_size // 2)

    def dense_kernel(self) -> Tensor:
        """The kernel itself."""
        return self.weight

    def multiply_adds(self, height: int, width: int) -> int:
        """``out · in · k² · height · width``."""
        return self.dense_multiply_adds(height, width)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}"
        )
