"""Pre-defined sparse convolutions (pSConv)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odenet._layout import like_layout
from odenet.errors import ArgumentError
from odenet.nn import _fused
from odenet.nn._base import ConvOperator, kaiming_uniform_
from odenet.nn._checks import check_bool, check_positive_int
from odenet.nn.functional._checks import check_like
from odenet.nn.functional._sparse import _check as _check_sparse
from odenet.nn.functional._sparse import (
    _dense,
    psc_mask,
    sparse_conv2d,
    sparse_conv2d_adjoint,
)

__all__ = ["SparseConv2d"]

#: Engines of :class:`SparseConv2d`: the compiled ``"fused"`` kernel and the pure-PyTorch
#: engines of :func:`odenet.nn.functional.sparse_conv2d`.
ENGINES = ("auto", "fused", "taps", "masked")


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
    engine : {"auto", "fused", "taps", "masked"}, default "auto"
        How to compute. ``"fused"``: a compiled CPU kernel (built with the system's
        C++ compiler at first use and cached) that gathers the taps of the support
        by offset, never materialising them, forward and backward; float32/float64
        on the CPU. ``"taps"`` and ``"masked"``: the pure-PyTorch engines of
        :func:`odenet.nn.functional.sparse_conv2d` (work proportional to the
        support; the vendor's dense convolution on the zero-filled kernel).
        ``"auto"``: ``"fused"`` where it applies, else the functional ``"auto"``.
        Where the fused kernel cannot be built (no compiler) both ``"auto"`` and
        ``"fused"`` fall back after one :class:`RuntimeWarning`; under CPU autocast
        and for other devices or dtypes they use the pure-PyTorch engines
        (``"masked"`` under autocast). ``ODENET_FUSED=0`` in the environment turns
        the compiled kernels off. Under :func:`torch.func.vmap` (and ``jacrev``,
        ``jacfwd``, ``hessian``) the engines compute as ``"masked"``, except
        ``"fused"`` where no reverse-mode gradient will flow (it folds the vmapped
        dimension into the batch). All engines agree to round-off and preserve a
        channels-last input's memory format.

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
        self._plans: _fused.SparsePlans | None = None
        self._support = mask.numpy().copy()  # the plans' source, also inside torch.func

    def _fused_plans(self, x: Tensor) -> _fused.SparsePlans | None:
        """The fused kernel's plans when it computes this call, else None."""
        if self.engine not in ("auto", "fused") or not _fused.supports(x, (self.weight, self.bias)):
            return None
        if self.mask.shape[-2:] != (3, 3):
            return None
        lib = _fused.library()
        if lib is None:
            return None
        if self._plans is None:
            self._plans = _fused.SparsePlans.from_mask(self._support, lib.odenet_kmax())
        return self._plans

    def _fallback_engine(self, x: Tensor) -> str:
        if isinstance(x, Tensor) and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return "masked"  # the vendor's convolution, which autocast runs in low precision
        return "auto" if self.engine == "fused" else self.engine

    def forward(self, x: Tensor) -> Tensor:
        """``K x (+ bias)``."""
        plans = self._fused_plans(x) if isinstance(x, Tensor) else None
        if plans is None:
            out = sparse_conv2d(x, self.weight, self.mask, self.bias, self._fallback_engine(x))
            return like_layout(out, x)
        _check_sparse(x, self.weight, self.mask, transpose=False)
        if self.bias is not None:
            check_like("bias", self.bias, x)
        out = _fused.fused_sparse_conv2d(x, self.weight, self.mask, self.bias, plans)
        return like_layout(out, x)

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
        plans = self._fused_plans(z) if isinstance(z, Tensor) else None
        if plans is None:
            out = sparse_conv2d_adjoint(z, self.weight, self.mask, self._fallback_engine(z))
            return like_layout(out, z)
        _check_sparse(z, self.weight, self.mask, transpose=True)
        return like_layout(_fused.fused_sparse_conv2d_adjoint(z, self.weight, self.mask, plans), z)

    def dense_kernel(self) -> Tensor:
        """The kernel ``(out, in, 3, 3)``, zero off the support.

        Examples
        --------
        >>> import odenet
        >>> op = odenet.nn.SparseConv2d(8, 8)
        >>> bool((op.dense_kernel()[~op.mask] == 0).all())
        True
        """
        return _dense(self.weight, self.mask)

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

