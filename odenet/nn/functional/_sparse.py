"""Pre-defined sparse 3×3 convolutions (pSConv): a fixed, periodic kernel support."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn.functional._checks import check_image, check_like

__all__ = ["PATTERNS", "psc_mask", "sparse_conv2d", "sparse_conv2d_adjoint"]

# The four 2×2 corner windows of a 3×3 kernel: top-left, top-right, bottom-left, bottom-right.
_CORNERS = (
    ((0, 0), (0, 1), (1, 0), (1, 1)),
    ((0, 1), (0, 2), (1, 1), (1, 2)),
    ((1, 0), (1, 1), (2, 0), (2, 1)),
    ((1, 1), (1, 2), (2, 1), (2, 2)),
)

#: Names of the built-in support patterns.
PATTERNS = ("psc4",)


def psc_mask(in_channels: int, out_channels: int, pattern: str = "psc4", period: int = 8) -> Tensor:
    r"""The boolean support ``(out_channels, in_channels, 3, 3)`` of a pSConv layer.

    ``"psc4"`` (Kundu et al., 2019): the kernel coupling input channel ``j`` to
    output channel ``i`` is chosen by ``m = (i + j + 1) mod period``: ``m = 0``
    gives a dense 3×3 kernel, otherwise a 2×2 corner window, cycling through
    top-left, top-right, bottom-left, bottom-right as ``(m - 1) mod 4`` = 0, 1, 2,
    3. With the default period 8 this is the authors' rule: ``m`` in {1, 5}
    top-left, {2, 6} top-right, {3, 7} bottom-left, 4 bottom-right, 0 dense, so
    that on average 37/8 of the 9 taps are used (4.625 / 9 = 51 %). Every 2×2
    window contains the centre tap.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts (positive).
    pattern : {"psc4"}
        The support rule.
    period : int, default 8
        Period of the rule over channel indices (positive).

    Returns
    -------
    Tensor
        ``torch.bool``, shape ``(out_channels, in_channels, 3, 3)``.

    Examples
    --------
    >>> from odenet.nn.functional import psc_mask
    >>> mask = psc_mask(8, 8)
    >>> mask[0, 0].int()  # m = 1: top-left corner
    tensor([[1, 1, 0],
            [1, 1, 0],
            [0, 0, 0]], dtype=torch.int32)
    >>> int(mask.sum()), 8 * 37
    (296, 296)
    """
    for name, v in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("period", period),
    ):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentTypeError(f"{name}: expected an int, got {type(v).__name__}")
        if v < 1:
            raise ArgumentError(f"{name}: expected a positive int, got {v}")
    if pattern not in PATTERNS:
        raise ArgumentError(f"pattern: unknown pattern {pattern!r}; valid patterns are {PATTERNS}")
    windows = torch.zeros(5, 3, 3, dtype=torch.bool)
    windows[4] = True  # dense
    for c, taps in enumerate(_CORNERS):
        for r, q in taps:
            windows[c, r, q] = True
    i = torch.arange(out_channels).view(-1, 1)
    j = torch.arange(in_channels).view(1, -1)
    m = (i + j + 1) % period
    kind = torch.where(m == 0, torch.full_like(m, 4), (m - 1) % 4)
    return windows[kind]


def _check(input: Tensor, weight: Tensor, mask: Tensor, transpose: bool) -> None:
    check_image("input", input)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim != 4:
        raise ArgumentTypeError(
            "mask: expected a boolean tensor (out_channels, in_channels, kh, kw), e.g. from "
            "psc_mask"
        )
    kh, kw = mask.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ArgumentError(
            f"mask: expected an odd kernel size (the output keeps the input's size), got {kh}x{kw}"
        )
    cin = mask.shape[0] if transpose else mask.shape[1]
    if input.shape[1] != cin:
        raise ArgumentError(
            f"input: expected {cin} channels (dimension 1) for a mask of shape "
            f"{tuple(mask.shape)}, got shape {tuple(input.shape)}"
        )
    if not isinstance(weight, Tensor) or weight.ndim != 1:
        raise ArgumentError(
            "weight: expected a 1-D tensor of the kernel values on the support, got "
            + (
                f"shape {tuple(weight.shape)}"
                if isinstance(weight, Tensor)
                else type(weight).__name__
            )
        )
    nnz = int(mask.sum())
    if weight.shape[0] != nnz:
        raise ArgumentError(
            f"weight: expected {nnz} values (one per non-zero of mask), got {weight.shape[0]}"
        )
    check_like("weight", weight, input)
    if mask.device != input.device:
        raise ArgumentError(f"mask: on device {mask.device}, but input is on {input.device}")


def _dense(weight: Tensor, mask: Tensor) -> Tensor:
    return weight.new_zeros(mask.shape).masked_scatter(mask, weight)


def sparse_conv2d(
    input: Tensor, weight: Tensor, mask: Tensor, bias: Tensor | None = None
) -> Tensor:
    r"""Convolution with a pre-defined sparse kernel (zero padding, stride 1).

    The kernel is zero outside ``mask``; ``weight`` holds its values on the
    support, in the row-major order of ``mask.nonzero()`` (so
    ``kernel[mask] == weight``).

    Parameters
    ----------
    input : Tensor
        ``(B, C_in, H, W)``.
    weight : Tensor
        1-D, ``mask.sum()`` values.
    mask : Tensor
        Boolean ``(C_out, C_in, kh, kw)`` with odd ``kh, kw`` (e.g. :func:`psc_mask`).
    bias : Tensor, optional
        ``(C_out,)``.

    Returns
    -------
    Tensor
        ``(B, C_out, H, W)``.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from odenet.nn.functional import psc_mask, sparse_conv2d
    >>> mask = psc_mask(8, 16)
    >>> w = torch.randn(int(mask.sum()))
    >>> x = torch.randn(2, 8, 6, 6)
    >>> kernel = torch.zeros(16, 8, 3, 3).masked_scatter(mask, w)
    >>> torch.allclose(sparse_conv2d(x, w, mask), F.conv2d(x, kernel, padding=1), atol=1e-5)
    True
    """
    _check(input, weight, mask, transpose=False)
    if bias is not None:
        if not isinstance(bias, Tensor) or tuple(bias.shape) != (mask.shape[0],):
            raise ArgumentError(f"bias: expected shape ({mask.shape[0]},)")
        check_like("bias", bias, input)
    kh, kw = mask.shape[-2:]
    return F.conv2d(input, _dense(weight, mask), bias, padding=(kh // 2, kw // 2))


def sparse_conv2d_adjoint(input: Tensor, weight: Tensor, mask: Tensor) -> Tensor:
    r"""The transpose of :func:`sparse_conv2d` (without bias): ``<K x, z> = <x, Kᵀ z>``.

    Parameters
    ----------
    input : Tensor
        ``z`` of shape ``(B, C_out, H, W)``.
    weight, mask : Tensor
        As in :func:`sparse_conv2d`.

    Returns
    -------
    Tensor
        ``(B, C_in, H, W)``.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn.functional import psc_mask, sparse_conv2d, sparse_conv2d_adjoint
    >>> mask = psc_mask(8, 16)
    >>> w = torch.randn(int(mask.sum()), dtype=torch.float64)
    >>> x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    >>> z = torch.randn(2, 16, 5, 5, dtype=torch.float64)
    >>> lhs = (sparse_conv2d(x, w, mask) * z).sum()
    >>> torch.allclose(lhs, (x * sparse_conv2d_adjoint(z, w, mask)).sum())
    True
    """
    _check(input, weight, mask, transpose=True)
    kh, kw = mask.shape[-2:]
    return F.conv_transpose2d(input, _dense(weight, mask), padding=(kh // 2, kw // 2))
