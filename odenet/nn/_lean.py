"""The lean convolution operator of LeanResNet."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odenet._functorch import under_vmap
from odenet._layout import like_layout
from odenet.errors import ArgumentError
from odenet.nn import _fused
from odenet.nn._base import ConvOperator, kaiming_uniform_
from odenet.nn._checks import check_bool, check_positive_int
from odenet.nn.functional._checks import check_param
from odenet.nn.functional._lean import (
    STENCILS,
    adjoint_by_convs,
    by_convs,
    lean_conv2d,
    lean_conv2d_adjoint,
    stencil_kernel,
)
from odenet.nn.functional._lean import _check as _check_lean

__all__ = ["LeanConv2d"]

#: Engines of :class:`LeanConv2d`.
ENGINES = ("auto", "fused", "chunked", "conv")


class LeanConv2d(ConvOperator):
    r"""Lean convolution ``K x = W₁ₓ₁ x + S x``: a 1×1 convolution plus a depthwise stencil.

    The operator of LeanResNet (Ephrath et al., 2019): a point-wise, fully coupled
    1×1 convolution (``C × C`` weights) and a per-channel spatial stencil with no
    channel coupling (``s`` weights per channel), a drop-in for a 3×3 convolution
    with ``C² + s·C`` instead of ``9 C²`` parameters and multiply-adds per pixel
    (4,416 instead of 36,864 at ``C = 64``, ``s = 5``). Zero padding, stride 1: the
    output has the input's shape.

    Parameters
    ----------
    in_channels, out_channels : int
        Must be equal: the depthwise stencil maps each channel to itself.
    stencil : {4, 5, 9}, default 5
        The depthwise stencil: 4 = the four neighbours N, W, E, S; 5 = those and
        the centre; 9 = a full 3×3 depthwise kernel (taps listed in
        :data:`odenet.nn.functional.STENCILS`).
    bias : bool, default False
        Add a learnable bias (not part of :meth:`adjoint`).
    engine : {"auto", "fused", "chunked", "conv"}, default "auto"
        How to compute. ``"fused"``: a compiled CPU kernel (built with the system's
        C++ compiler at first use and cached) that applies the matrix and the
        stencil in one pass per image, one parallel region per call with dynamic
        scheduling, so that a descheduled thread does not stall the others;
        float32/float64 on the CPU. ``"chunked"``: :func:`odenet.nn.functional.lean_conv2d`
        (batched matrix products and shifted multiply-adds, chunk by chunk).
        ``"conv"``: a 1×1 and a depthwise vendor convolution. ``"auto"``:
        ``"fused"`` where it applies, ``"conv"`` under CPU autocast (which runs it
        in low precision) and on the CPU with more than one thread, ``"chunked"``
        otherwise. Where the fused kernel cannot be built (no compiler) ``"auto"``
        and ``"fused"`` fall back after one :class:`RuntimeWarning`;
        ``ODENET_FUSED=0`` in the environment turns the compiled kernels off. Under
        :func:`torch.func.vmap` (and ``jacrev``, ``jacfwd``, ``hessian``) the engines
        compute as ``"conv"``, except ``"fused"`` where no reverse-mode gradient will
        flow (it folds the vmapped dimension into the batch). All engines agree to
        round-off and preserve a channels-last input's memory format.

    Attributes
    ----------
    weight : Parameter
        ``(C, C)``, the 1×1 convolution.
    stencil_weight : Parameter
        ``(C, stencil)``.
    bias : Parameter or None
        ``(C,)``.

    Examples
    --------
    >>> import torch, odenet
    >>> op = odenet.nn.LeanConv2d(64, 64)
    >>> sum(p.numel() for p in op.parameters())  # 64² + 5·64
    4416
    >>> op(torch.randn(2, 64, 8, 8)).shape
    torch.Size([2, 64, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stencil: int = 5,
        bias: bool = False,
        *,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_bool("bias", bias)
        if in_channels != out_channels:
            raise ArgumentError(
                f"out_channels: a lean operator needs in_channels == out_channels (its depthwise "
                f"stencil maps each channel to itself), got {in_channels} -> {out_channels}; "
                "change the width with a 1x1 convolution between ODE blocks"
            )
        if isinstance(stencil, bool) or stencil not in STENCILS:
            raise ArgumentError(
                f"stencil: expected one of {sorted(STENCILS)} (4: N/W/E/S, 5: plus the centre, "
                f"9: full 3x3), got {stencil!r}"
            )
        if engine not in ENGINES:
            raise ArgumentError(f"engine: expected one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self._plans: _fused.LeanPlans | None = None
        self.in_channels = self.out_channels = in_channels
        self.kernel_size = 3
        self.stencil = stencil
        c = in_channels
        self.weight = nn.Parameter(kaiming_uniform_(torch.empty(c, c), fan_in=c + stencil))
        self.stencil_weight = nn.Parameter(
            kaiming_uniform_(torch.empty(c, stencil), fan_in=c + stencil)
        )
        self.bias = nn.Parameter(torch.zeros(c)) if bias else None

    def _engine(self, x: object) -> str:
        """The engine that computes this call."""
        if not isinstance(x, Tensor):
            return "chunked"  # the functional form reports the bad input
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        params = (self.weight, self.stencil_weight, self.bias)
        if self.engine in ("auto", "fused") and _fused.supports(x, params) and _fused.library():
            return "fused"
        if self.engine == "conv" or cpu_autocast or under_vmap():
            return "conv"
        if torch.compiler.is_compiling():
            return "conv"  # plain convolutions: traceable, and inductor fuses around them
        if self.engine != "chunked" and x.device.type == "cpu" and torch.get_num_threads() > 1:
            # many small kernels stall on descheduled threads; two vendor convolutions less so
            # (tests/benchmarks/bench_lean_threads.py)
            return "conv"
        return "chunked"

    def _lean_plans(self) -> _fused.LeanPlans:
        if self._plans is None:
            lib = _fused.library()
            assert lib is not None
            self._plans = _fused.LeanPlans.build(self.in_channels, self.stencil, lib.odenet_kmax())
        return self._plans

    def forward(self, x: Tensor) -> Tensor:
        """``K x (+ bias)``."""
        engine = self._engine(x)
        w, s, b = self.weight, self.stencil_weight, self.bias
        if engine == "chunked":
            return like_layout(lean_conv2d(x, w, s, b), x)
        _check_lean(x, w, s)
        if b is not None:
            check_param("bias", b, (self.in_channels,), x)
        if engine == "conv":
            return by_convs(x, w, s, b)
        return like_layout(_fused.fused_lean_conv2d(x, w, s, b, self._lean_plans()), x)

    def adjoint(self, z: Tensor) -> Tensor:
        """``Kᵀ z = W₁ₓ₁ᵀ z + Sᵀ z`` (bias excluded).

        Examples
        --------
        >>> import torch, odenet
        >>> op = odenet.nn.LeanConv2d(3, 3, stencil=9).double()
        >>> x, z = torch.randn(2, 3, 4, 4).double(), torch.randn(2, 3, 4, 4).double()
        >>> torch.allclose((op(x) * z).sum(), (x * op.adjoint(z)).sum())
        True
        """
        engine = self._engine(z)
        w, s = self.weight, self.stencil_weight
        if engine == "chunked":
            return like_layout(lean_conv2d_adjoint(z, w, s), z)
        _check_lean(z, w, s)
        if engine == "conv":
            return adjoint_by_convs(z, w, s)
        return like_layout(_fused.fused_lean_conv2d_adjoint(z, w, s, self._lean_plans()), z)

    def dense_kernel(self) -> Tensor:
        """The equivalent ``(C, C, 3, 3)`` kernel: the stencil on the diagonal, W at the centre.

        Examples
        --------
        >>> import torch, odenet
        >>> import torch.nn.functional as F
        >>> op = odenet.nn.LeanConv2d(3, 3)
        >>> x = torch.randn(1, 3, 5, 5)
        >>> torch.allclose(op(x), F.conv2d(x, op.dense_kernel(), padding=1), atol=1e-5)
        True
        """
        k = stencil_kernel(self.stencil_weight)[:, 0]  # (C, 3, 3)
        dense = torch.diag_embed(k.permute(1, 2, 0)).permute(2, 3, 0, 1)
        center = torch.zeros_like(dense)
        center[:, :, 1, 1] = self.weight
        return dense + center

    def multiply_adds(self, height: int, width: int) -> int:
        """``(C² + stencil·C) · height · width``.

        Examples
        --------
        >>> import odenet
        >>> odenet.nn.LeanConv2d(64, 64).multiply_adds(1, 1)
        4416
        """
        c = self.in_channels
        return (c * c + self.stencil * c) * height * width

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, stencil={self.stencil}, "
            f"bias={self.bias is not None}"
        )
