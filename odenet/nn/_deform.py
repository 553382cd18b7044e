"""Deformable convolution modules (DCN v1 / v2)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError
from odenet.nn._base import ConvOperator, kaiming_uniform_
from odenet.nn._checks import check_bool, check_positive_int
from odenet.nn.functional._checks import check_image
from odenet.nn.functional._deform import deform_conv2d, deform_conv2d_adjoint

__all__ = ["DeformConv2d"]


class DeformConv2d(ConvOperator):
    r"""Deformable convolution that predicts its own sampling offsets (and mask).

    A ``kernel_size × kernel_size`` convolution whose taps are moved by offsets
    predicted from the input by an ordinary convolution of the same geometry
    (DCN v1, Dai et al. 2017); with ``modulated=True`` each tap is also scaled by
    a predicted mask (DCN v2, Zhu et al. 2019). The offset convolution is
    zero-initialised and the mask is ``2·sigmoid(·)``, so a new layer starts as a
    plain convolution (zero offsets, unit mask).

    The operator is linear in its input only for fixed sampling positions; its
    transpose is therefore taken at a state ``y`` (:meth:`adjoint` with ``y=`` or
    explicit ``offset=``/``mask=``), and :meth:`linear_at` returns the frozen
    linear map used by :class:`ParabolicRHS`.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel_size : int, default 3
        Odd kernel size.
    padding : int, default 1
        Zero padding (``kernel_size // 2`` keeps the size at stride 1).
    modulated : bool, default True
        Predict and apply a mask (DCN v2).
    stride, dilation : int, default 1
        As in :class:`torch.nn.Conv2d`.
    offset_groups : int, default 1
        Offset groups (must divide ``in_channels``).
    bias : bool, default False
        Add a learnable bias to the output.

    Under :func:`torch.autocast` the offset convolution runs in the autocast dtype and the
    deformable sampling in ``float32`` (as torchvision's ``deform_conv2d``), so the output
    is ``float32``.

    Examples
    --------
    >>> import torch, odenet
    >>> import torch.nn.functional as F
    >>> op = odenet.nn.DeformConv2d(4, 6)
    >>> x = torch.randn(2, 4, 7, 7)
    >>> torch.allclose(op(x), F.conv2d(x, op.weight, padding=1), atol=1e-5)  # fresh layer
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        modulated: bool = True,
        *,
        stride: int = 1,
        dilation: int = 1,
        offset_groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("padding", padding, minimum=0)
        check_positive_int("stride", stride)
        check_positive_int("dilation", dilation)
        check_positive_int("offset_groups", offset_groups)
        check_bool("modulated", modulated)
        check_bool("bias", bias)
        if kernel_size % 2 == 0:
            raise ArgumentError(
                f"kernel_size: expected an odd size (taps centred on the output pixel), "
                f"got {kernel_size}"
            )
        if in_channels % offset_groups:
            raise ArgumentError(
                f"offset_groups: must divide in_channels ({in_channels}), got {offset_groups}"
            )
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        self.padding, self.stride, self.dilation = padding, stride, dilation
        self.modulated, self.offset_groups = modulated, offset_groups
        k = kernel_size
        self.weight = nn.Parameter(
            kaiming_uniform_(torch.empty(out_channels, in_channels, k, k), in_channels * k * k)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        n_off = offset_groups * k * k * (3 if modulated else 2)
        self.offset_conv = nn.Conv2d(
            in_channels, n_off, k, stride=stride, padding=padding, dilation=dilation
        )
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def sampling(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The offsets ``(B, 2·G·k², H_out, W_out)`` and mask (or None) predicted from ``x``.

        Examples
        --------
        >>> import torch, odenet
        >>> offset, mask = odenet.nn.DeformConv2d(2, 2).sampling(torch.randn(1, 2, 5, 5))
        >>> offset.shape, mask.shape, float(mask.detach().mean())
        (torch.Size([1, 18, 5, 5]), torch.Size([1, 9, 5, 5]), 1.0)
        """
        check_image("x", x, channels=self.in_channels)
        o = self.offset_conv(x)
        n = 2 * self.offset_groups * self.kernel_size**2
        offset = o[:, :n]
        mask = 2.0 * torch.sigmoid(o[:, n:]) if self.modulated else None
        return offset, mask

    def forward(self, x: Tensor) -> Tensor:
        """The deformable convolution with offsets (and mask) predicted from ``x``."""
        offset, mask = self.sampling(x)
        return self.apply_frozen(x, offset, mask)

    def apply_frozen(self, u: Tensor, offset: Tensor, mask: Tensor | None) -> Tensor:
        """The convolution of ``u`` with given sampling offsets and mask (bias included)."""
        u, offset, mask, weight, bias, ctx = _full_precision(
            u, offset, mask, self.weight, self.bias
        )
        with ctx:
            return deform_conv2d(
                u, offset, weight, bias, self.stride, self.padding, self.dilation, mask
            )

    def adjoint(
        self,
        z: Tensor,
        y: Tensor | None = None,
        *,
        offset: Tensor | None = None,
        mask: Tensor | None = None,
        input_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """``Kᵀ z`` for the sampling positions at state ``y`` (or the given ``offset``/``mask``).

        Parameters
        ----------
        z : Tensor
            ``(B, out_channels, H_out, W_out)``.
        y : Tensor, optional
            The input the offsets (and mask) are predicted from.
        offset, mask : Tensor, optional
            Explicit sampling instead of ``y``.
        input_size : (int, int), optional
            ``(H, W)`` of the result when ``y`` is not given; default: that of ``z``
            (right for stride 1 with "same" padding).

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.DeformConv2d(3, 3).double()
        >>> torch.nn.init.normal_(op.offset_conv.weight, std=0.3)  # doctest: +ELLIPSIS
        Parameter...
        >>> x, y, z = (torch.randn(1, 3, 5, 5, dtype=torch.float64) for _ in range(3))
        >>> K = op.linear_at(y)
        >>> torch.allclose((K(x) * z).sum(), (x * op.adjoint(z, y)).sum())
        True
        """
        if y is not None:
            if offset is not None or mask is not None:
                raise ArgumentError("offset: give either y or offset/mask, not both")
            offset, mask = self.sampling(y)
            input_size = tuple(y.shape[-2:])
        elif offset is None:
            raise ArgumentError(
                "y: a deformable convolution is linear only for fixed sampling positions; pass "
                "the state they are predicted from (adjoint(z, y)) or offset= (and mask=)"
            )
        elif self.modulated and mask is None:
            raise ArgumentError("mask: this layer is modulated; pass mask= with offset=")
        check_image("z", z, channels=self.out_channels)
        if input_size is None:
            input_size = tuple(z.shape[-2:])
        z, offset, mask, weight, _, ctx = _full_precision(z, offset, mask, self.weight, None)
        with ctx:
            return deform_conv2d_adjoint(
                z, offset, weight, input_size, self.stride, self.padding, self.dilation, mask
            )

    def linear_at(self, y: Tensor) -> _FrozenDeform:
        """The linear map ``u ↦ K(y) u`` with the sampling positions predicted from ``y``.

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.DeformConv2d(2, 2)
        >>> y = torch.randn(1, 2, 4, 4)
        >>> torch.allclose(op.linear_at(y)(y), op(y))
        True
        """
        offset, mask = self.sampling(y)
        return _FrozenDeform(self, offset, mask, tuple(y.shape[-2:]))

    def _out_size(self, height: int, width: int) -> tuple[int, int]:
        span = self.dilation * (self.kernel_size - 1)
        return (
            (height + 2 * self.padding - span - 1) // self.stride + 1,
            (width + 2 * self.padding - span - 1) // self.stride + 1,
        )

    def multiply_adds(self, height: int, width: int) -> int:
        """The convolution and its bilinear sampling (4 per sampled value), per sample.

        The offset convolution (:attr:`offset_conv`) is a separate layer.

        Examples
        --------
        >>> import odenet
        >>> odenet.nn.DeformConv2d(8, 8).multiply_adds(1, 1)  # 8·8·9 + 4·8·9
        864
        """
        ho, wo = self._out_size(height, width)
        k2 = self.kernel_size**2
        return (self.out_channels + 4) * self.in_channels * k2 * ho * wo

    def dense_multiply_adds(self, height: int, width: int) -> int:
        ho, wo = self._out_size(height, width)
        return self.out_channels * self.in_channels * self.kernel_size**2 * ho * wo

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, modulated={self.modulated}, stride={self.stride}, "
            f"dilation={self.dilation}, offset_groups={self.offset_groups}, "
            f"bias={self.bias is not None}"
        )


def _full_precision(x: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor,
                    bias: Tensor | None):
    """Under :func:`torch.autocast`, the deformable sampling in full precision.

    The offset convolution runs in the autocast dtype, the bilinear sampling and the
    convolution in ``float32`` (``float64`` for a float64 input) with autocast off, as
    torchvision's ``deform_conv2d`` does: sampling positions rounded to half precision
    would move the taps by up to a pixel over a large image. The result is in that full
    precision dtype. Outside autocast everything is returned unchanged.
    """
    if not torch.is_autocast_enabled(x.device.type):
        return x, offset, mask, weight, bias, contextlib.nullcontext()
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32

    def cast(v: Tensor | None) -> Tensor | None:
        return None if v is None else v.to(dt)

    ctx = torch.autocast(x.device.type, enabled=False)
    return cast(x), cast(offset), cast(mask), cast(weight), cast(bias), ctx


class _FrozenDeform:
    """A deformable convolution with fixed sampling: a linear map with an adjoint."""

    def __init__(
        self, op: DeformConv2d, offset: Tensor, mask: Tensor | None, input_size: tuple[int, int]
    ) -> None:
        self.op, self.offset, self.mask, self.input_size = op, offset, mask, input_size

    def __call__(self, u: Tensor) -> Tensor:
        return self.op.apply_frozen(u, self.offset, self.mask)

    def adjoint(self, z: Tensor) -> Tensor:
        return self.op.adjoint(z, offset=self.offset, mask=self.mask, input_size=self.input_size)
