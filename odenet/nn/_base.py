"""The contract shared by odenet's convolution operators."""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["ConvOperator", "kaiming_uniform_"]


def kaiming_uniform_(t: Tensor, fan_in: float) -> Tensor:
    """PyTorch's default convolution initialisation, U(-1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(max(fan_in, 1.0))
    return nn.init.uniform_(t, -bound, bound)


class ConvOperator(nn.Module):
    r"""Base class of the convolution operators ``K`` of right-hand sides.

    Contract: ``forward(x)`` returns ``K x`` (plus the operator's own bias, when it
    has one); :meth:`adjoint` returns ``Kᵀ z`` for the linear part, so that
    ``<K x, z> = <x, Kᵀ z>`` up to round-off. Operators that are linear only for
    fixed internal state (deformable convolutions, whose sampling positions depend
    on the input) return that frozen linear map from :meth:`linear_at`; for truly
    linear operators it is the operator itself. :meth:`multiply_adds` and
    :meth:`dense_multiply_adds` give the cost of one call per sample and that of a
    dense ``k × k`` convolution of the same shape, for cost reports.

    Subclasses set ``in_channels``, ``out_channels`` and ``kernel_size``.

    Examples
    --------
    >>> import torch, odenet
    >>> op = odenet.nn.LeanConv2d(4, 4)
    >>> isinstance(op, odenet.nn.ConvOperator)
    True
    >>> x, z = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    >>> bool(torch.isclose((op(x) * z).sum(), (x * op.adjoint(z)).sum(), rtol=1e-4))
    True
    """

    in_channels: int
    out_channels: int
    kernel_size: int

    def adjoint(self, z: Tensor) -> Tensor:
        """``Kᵀ z`` for the linear part of the operator (bias excluded)."""
        raise NotImplementedError

    def linear_at(self, y: Tensor) -> ConvOperator:
        """The linear map applied at ``y``: the operator itself for linear operators.

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.LeanConv2d(2, 2)
        >>> op.linear_at(torch.zeros(1, 2, 3, 3)) is op
        True
        """
        return self

    def dense_kernel(self) -> Tensor:
        """The equivalent dense kernel ``(out, in, k, k)`` of the linear part."""
        raise NotImplementedError(f"{type(self).__name__} has no fixed dense kernel")

    def multiply_adds(self, height: int, width: int) -> int:
        """Multiply-adds of one call on one ``height × width`` sample."""
        raise NotImplementedError

    def dense_multiply_adds(self, height: int, width: int) -> int:
        """Multiply-adds of a dense ``k × k`` convolution of the same shape, per sample.

        Examples
        --------
        >>> import odenet
        >>> odenet.nn.LeanConv2d(64, 64).dense_multiply_adds(32, 32)
        37748736
        """
        k = self.kernel_size
        return self.out_channels * self.in_channels * k * k * height * width

    def dense_parameters(self) -> int:
        """Weights of a dense ``k × k`` convolution of the same shape (plus the bias).

        Examples
        --------
        >>> import odenet
        >>> odenet.nn.LeanConv2d(64, 64).dense_parameters()
        36864
        """
        k = self.kernel_size
        bias = getattr(self, "bias", None)
        return self.out_channels * self.in_channels * k * k + (
            0 if bias is None else self.out_channels
        )
