"""Pre-defined sparse convolutions (pSConv)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError
from odenet.nn._base import ConvOperator, kaiming_uniform_
from odenet.nn._checks import check_bool, check_positive_int
from odenet.nn.functional._sparse import (
    ENGINES,
    psc_mask,
    sparse_conv2d,
    sparse_conv2d_adjoint,
)

__all__ = ["SparseConv2d"]


class SparseConv2d(ConvOperator):
    r"""3×3 convolution with a pre-defined, periodic sparse kernel support (pSConv).

    The support of the kernel coupling input channel ``j`` to output channel ``i``
    is fixed before training by ``m = (i + j + 1) mod period`` (see
    :func:`odenet.nn.functional.psc_mask`): a dense 3×3 kernel once per period,
    otherwise one of the four 2×2 corner windows (Kundu et al., 2019). Weights are
    stored only on the support: ``weight`` is 1-D with ``mask.sum()`` entries
    (``37/8`` per channel pair on average for period 8, instead of 9), in the
    row-major order of ``mask.nonzero()``. Zero padding, stride 1.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    pattern : {"psc4"}, default "psc4"
        The support rule.
    period : int, default 8
        Period of the rule over channel indices.
    bias : bool, default False
        Add a learnable bias (not part of :meth:`adjoint`).
    engine : {"auto", "taps", "masked"}, default "auto"
        How to compute (see :func:`odenet.nn.functional.sparse_conv2d`): ``"taps"``
        does work proportional to the support, ``"masked"`` runs the vendor's dense
        convolution on the zero-filled kernel.

    Attributes
    ----------
    weight : Parameter
        1-D, the kernel values on the support.
    mask : Tensor
        Boolean buffer ``(out_channels, in_channels, 3, 3)``, the support.

    Examples
    --------
    >>> import torch, odenet
    >>> op = odenet.nn.SparseConv2d(64, 64)
    >>> op.weight.numel(), 64 * 64 * 37 // 8, 64 * 64 * 9
    (18944, 18944, 36864)
    >>> op(torch.randn(2, 64, 8, 8)).shape
    torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pattern: str = "psc4",
        period: int = 8,
        bias: bool = False,
        *,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("period", period)
        check_bool("bias", bias)
        if engine not in ENGINES:
            raise ArgumentError(f"engine: expected one of {ENGINES}, got {engine!r}")
        self.engine = engine
        mask = psc_mask(in_channels, out_channels, pattern, period)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, 3
        self.pattern, self.period = pattern, period
        self.register_buffer("mask", mask, persistent=False)
        nnz = int(mask.sum())
        self.weight = nn.Parameter(kaiming_uniform_(torch.empty(nnz), nnz / out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """``K x (+ bias)``."""
        return sparse_conv2d(x, self.weight, self.mask, self.bias, self.engine)

    def adjoint(self, z: Tensor) -> Tensor:
        """``Kᵀ z`` (bias excluded).

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.SparseConv2d(8, 16).double()
        >>> x, z = torch.randn(1, 8, 5, 5).double(), torch.randn(1, 16, 5, 5).double()
        >>> torch.allclose((op(x) * z).sum(), (x * op.adjoint(z)).sum())
        True
        """
        return sparse_conv2d_adjoint(z, self.weight, self.mask, self.engine)

    def dense_kernel(self) -> Tensor:
        """The kernel ``(out, in, 3, 3)``, zero off the support.

        Examples
        --------
        >>> import odenet
        >>> op = odenet.nn.SparseConv2d(8, 8)
        >>> bool((op.dense_kernel()[~op.mask] == 0).all())
        True
        """
        return self.weight.new_zeros(self.mask.shape).masked_scatter(self.mask, self.weight)

    def multiply_adds(self, height: int, width: int) -> int:
        """``mask.sum() · height · width``: proportional to the non-zeros.

        Examples
        --------
        >>> import odenet
        >>> odenet.nn.SparseConv2d(64, 64).multiply_adds(1, 1)
        18944
        """
        return int(self.weight.numel()) * height * width

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, pattern={self.pattern!r}, "
            f"period={self.period}, bias={self.bias is not None}"
        )
