"""``IMEXBlock``: the IMEXnet layer, an explicit convolution RHS plus an implicit ``ConvFFT``."""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients._base import GradientStrategy
from odenet.linear import ConvFFT
from odenet.nn._block import ODEBlock
from odenet.nn._rhs import ParabolicRHS
from odenet.solvers._methods import METHODS, method_names, resolve_method
from odenet.solvers._tableau import IMEXTableau

__all__ = ["IMEXBlock"]


def _parabolic(op: nn.Module, activation: object, norm: object, bias: object) -> nn.Module:
    kwargs = {"activation": activation, "norm": norm, "bias": bias}
    return ParabolicRHS(op, **{k: v for k, v in kwargs.items() if v is not None})


def _laplacian_kernel(channels: int, k: int, scale: float) -> Tensor:
    """``scale`` times the 5-point Laplacian, centred in a ``k x k`` kernel, per channel."""
    w = torch.zeros(channels, 1, k, k)
    c = k // 2
    w[:, 0, c, c] = -4.0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        w[:, 0, c + dy, c + dx] = 1.0
    return w * scale


class IMEXBlock(ODEBlock):
    r"""The IMEXnet layer: :math:`y' = f(y) - L y` with an explicit convolution part and an
    implicit, learnable :math:`L = K_L^\top K_L`, integrated by an IMEX scheme.

    Haber, Lensink, Treister & Ruthotto (2019) split each layer into an explicit step of a
    parabolic right-hand side :math:`f(y) = -K^\top \sigma(N(K y + b))` and an implicit step
    :math:`(I + h L)^{-1}` with :math:`L = K_L^\top K_L` for a depthwise kernel :math:`K_L`.
    The implicit step is solved exactly by FFT (:class:`odenet.linear.ConvFFT`), couples every
    pixel of a channel (a global field of view in one layer) and is stable for any step. With
    ``method="imex_euler"`` and one step this is the paper's layer
    :math:`y \leftarrow (I + hL)^{-1}(y + h f(y))`; ``ars222`` / ``ars443`` give second and
    third order, and every gradient strategy of :func:`odenet.odeint` applies. It is an
    :class:`~odenet.nn.ODEBlock` whose right-hand side and implicit operator are built for
    IMEXnet (``forward(y)`` returns the state at ``T``).

    Parameters
    ----------
    rhs : nn.Module or callable
        The explicit part. Either an operator of :mod:`odenet.nn` (a module with ``.adjoint``,
        e.g. ``LeanConv2d(c, c)``), wrapped into the parabolic form
        :class:`~odenet.nn.ParabolicRHS` ``(op, activation, norm, bias)``, or a right-hand side
        called as ``rhs(t, y)`` (e.g. a ``ParabolicRHS`` built by hand).
    channels : int, optional
        Channels ``C`` of the state; default ``in_channels`` of the operator. Needed only to
        build the default implicit operator.
    activation, norm, bias : optional
        Passed to :class:`~odenet.nn.ParabolicRHS` when ``rhs`` is an operator (its defaults
        when omitted: ``"relu"``, ``None``, ``True``); refused otherwise. ``activation`` is a
        name, a callable, a module or a module class (see :func:`~odenet.nn.make_activation`).
    implicit : ConvFFT, optional
        The implicit operator. Default: a learnable ``ConvFFT`` initialised as ``0.5`` times the
        5-point Laplacian per channel (eigenvalues in ``[0, 16]``: a diffusion).
    kernel_size : int, default 3
        Kernel size of the default implicit operator (odd).
    boundary : {"periodic", "reflect"}, default "periodic"
        Boundary of the default implicit operator.
    T : float, default 1.0
        Length of the time interval the block integrates over.
    steps : int, default 1
        Number of time steps (step size ``T / steps``).
    method : str or IMEXTableau, default "imex_euler"
        An IMEX scheme: a name of :data:`odenet.solvers.IMEX_METHODS` (``"imex_euler"``,
        ``"ars222"``, ``"ars443"``, …) or an ``IMEXTableau``.
    gradient : str or GradientStrategy, default "anode"
        Gradient strategy of :func:`odenet.odeint` (as :class:`~odenet.nn.ODEBlock`: ANODE
        stores the block's input only and recomputes its steps in backward; ``"backprop"``
        keeps every step's activations).

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        An explicit method, a non-positive ``T`` or ``steps``, an implicit operator without
        ``solve``, missing ``channels`` that cannot be inferred, a channel mismatch.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn import IMEXBlock, LeanConv2d
    >>> block = IMEXBlock(LeanConv2d(4, 4), activation="tanh", method="ars222", steps=2)
    >>> y = block(torch.randn(2, 4, 16, 16))
    >>> y.shape
    torch.Size([2, 4, 16, 16])
    >>> block.implicit                                # learnable L = K_L^T K_L, solved by FFT
    ConvFFT(channels=4, kernel_size=(3, 3), boundary='periodic')
    """

    def __init__(
        self,
        rhs: nn.Module | Callable,
        channels: int | None = None,
        *,
        activation: str | nn.Module | type[nn.Module] | Callable | None = None,
        norm: str | nn.Module | None = None,
        bias: bool | None = None,
        implicit: ConvFFT | None = None,
        kernel_size: int = 3,
        boundary: str = "periodic",
        T: float = 1.0,
        steps: int = 1,
        method: str | IMEXTableau = "imex_euler",
        gradient: str | GradientStrategy = "anode",
    ):
        if not callable(rhs):
            raise ArgumentTypeError(
                f"rhs: expected an operator with .adjoint or a right-hand side rhs(t, y), got "
                f"{type(rhs).__name__}"
            )
        _check_imex_method(method)
        if callable(getattr(rhs, "adjoint", None)):
            op = rhs
            rhs = _parabolic(op, activation, norm, bias)
        else:
            given = [n for n, v in (("activation", activation), ("norm", norm), ("bias", bias))
                     if v is not None]
            if given:
                raise ArgumentError(
                    f"{given[0]}: applies only when rhs is an operator (wrapped into "
                    "ParabolicRHS); rhs is already a right-hand side rhs(t, y)"
                )
            op = getattr(rhs, "op", None)
        if implicit is None:
            implicit = _default_implicit(rhs, op, channels, kernel_size, boundary)
        else:
            if not (callable(implicit) and callable(getattr(implicit, "solve", None))):
                raise ArgumentTypeError(
                    "implicit: expected a linear operator with L(y) and L.solve(r, gamma) "
                    f"(e.g. odenet.linear.ConvFFT), got {type(implicit).__name__}"
                )
            if channels is not None and getattr(implicit, "channels", channels) != channels:
                raise ArgumentError(
                    f"implicit: has {implicit.channels} channels, but channels={channels}"
                )
            width = getattr(rhs, "in_channels", None) or getattr(op, "in_channels", None)
            if width is not None and getattr(implicit, "channels", width) != width:
                raise ArgumentError(
                    f"implicit: has {implicit.channels} channels, but rhs acts on {width} "
                    "channels (its in_channels); the two parts of y' = f(y) - L y share one state"
                )
        super().__init__(rhs, T=T, steps=steps, method=method, gradient=gradient,
                         implicit=implicit)

    @property
    def step_size(self) -> float:
        """``T / steps``."""
        return self.T / self.steps

    def forward(self, y: Tensor) -> Tensor:
        """Integrate ``y' = f(y) - L y`` over ``[0, T]`` from ``y``; return the final state."""
        channels = getattr(self.implicit, "channels", None)
        if isinstance(y, Tensor) and channels is not None and (
            y.ndim < 3 or y.shape[-3] != channels
        ):
            raise ArgumentError(
                f"y: expected a tensor of shape (..., {channels}, H, W) (the implicit operator "
                f"has {channels} channels), got shape {tuple(y.shape)}"
            )
        return super().forward(y)


def _check_imex_method(method: object) -> IMEXTableau:
    """Refuse anything but an IMEX scheme, decided by the tableau's type (never by its name)."""
    if isinstance(method, str) and method not in METHODS:
        resolve_method(method, kind="imex")  # the unknown-name error, listing the IMEX schemes
    tableau = resolve_method(method)
    if not isinstance(tableau, IMEXTableau):
        raise ArgumentError(
            f"method: IMEXBlock needs an IMEX scheme ({method_names('imex')} or an IMEXTableau), "
            f"got {tableau.name!r}; use ODEBlock for explicit ones"
        )
    return tableau


def _default_implicit(rhs, op, channels, kernel_size, boundary) -> ConvFFT:
    """A learnable ConvFFT: 0.5 x the 5-point Laplacian per channel, dtype/device of the op."""
    if channels is None:
        channels = getattr(rhs, "in_channels", None) or getattr(op, "in_channels", None)
    if channels is None:
        raise ArgumentError(
            "channels: cannot infer the number of channels from rhs; pass channels=C "
            "or an implicit operator"
        )
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise ArgumentError(f"channels: expected a positive integer, got {channels!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral) or (
        kernel_size < 3 or kernel_size % 2 == 0
    ):
        raise ArgumentError(f"kernel_size: expected an odd integer >= 3, got {kernel_size!r}")
    src = op if isinstance(op, nn.Module) else rhs
    ref = next(iter(src.parameters()), None) if isinstance(src, nn.Module) else None
    w = _laplacian_kernel(int(channels), int(kernel_size), 0.5)
    if ref is not None:
        w = w.to(dtype=ref.dtype, device=ref.device)
    return ConvFFT(nn.Parameter(w), boundary=boundary)
