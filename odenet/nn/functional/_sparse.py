"""Pre-defined sparse 3×3 convolutions (pSConv): a fixed, periodic kernel support."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

from odenet._functorch import batched, under_vmap
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn.functional import _sparse_engine as engine_impl
from odenet.nn.functional._checks import check_image, check_like

__all__ = ["ENGINES", "PATTERNS", "psc_mask", "sparse_conv2d", "sparse_conv2d_adjoint"]

#: Ways to compute a sparse convolution: ``"taps"`` (work proportional to the support, see
#: below), ``"masked"`` (the vendor's dense convolution with the zero-filled kernel) and
#: ``"auto"``.
ENGINES = ("auto", "taps", "masked")

# "auto" uses the taps engine from this many input and output channels on (measured on a
# 2-core CPU: slower than a vendor dense convolution below 128 channels, faster from 128).
_AUTO_TAPS_CHANNELS = 128

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
    # (no count on the meta device, while torch.compile traces (a data-dependent value) or
    # for a mask batched by vmap (stacked module states))
    counted = mask.device.type != "meta" and not torch.compiler.is_compiling() and not batched(mask)
    nnz = int(mask.sum()) if counted else weight.shape[0]
    if weight.shape[0] != nnz:
        raise ArgumentError(
            f"weight: expected {nnz} values (one per non-zero of mask), got {weight.shape[0]}"
        )
    check_like("weight", weight, input)
    if mask.device != input.device:
        raise ArgumentError(f"mask: on device {mask.device}, but input is on {input.device}")


def _dense(weight: Tensor, mask: Tensor) -> Tensor:
    """The kernel, zero off ``mask`` (``kernel[mask] == weight``), by a gather: unlike
    ``masked_scatter`` it has a batching rule under :func:`torch.func.vmap`."""
    flat = mask.reshape(-1)
    pos = torch.cumsum(flat, 0) * flat  # 1 + the weight's index on the support, 0 off it
    return torch.cat([weight.new_zeros(1), weight])[pos].view(mask.shape)


def _masked(input, weight, mask, bias):
    kh, kw = mask.shape[-2:]
    return F.conv2d(input, _dense(weight, mask), bias, padding=(kh // 2, kw // 2))


def _masked_t(input, weight, mask):
    kh, kw = mask.shape[-2:]
    return F.conv_transpose2d(input, _dense(weight, mask), padding=(kh // 2, kw // 2))


def _reference_vjp(fn, args, needs, g):
    """Differentiable vector-Jacobian product of ``fn`` (for double backward and under
    :func:`torch.func.vmap`); None for the arguments not needed."""
    wanted = [i for i, a in enumerate(args) if a is not None and needs[i]]

    def f(*leaves):
        full = list(args)
        for i, a in zip(wanted, leaves):
            full[i] = a
        return fn(*full)

    out: list = [None] * len(args)
    if wanted:
        _, vjp_fn = torch.func.vjp(f, *(args[i] for i in wanted))
        for i, gr in zip(wanted, vjp_fn(g)):
            out[i] = gr
    return out


def _reference_jvp(fn, args, tangents):
    """Jacobian-vector product of ``fn`` by two reverse passes (works under forward AD)."""
    use = [i for i, (a, t) in enumerate(zip(args, tangents)) if a is not None and t is not None]

    def f(*leaves):
        full = list(args)
        for i, a in zip(use, leaves):
            full[i] = a
        return fn(*full)

    out, vjp_fn = torch.func.vjp(f, *(args[i] for i in use))

    def dot(g):
        return sum((v * tangents[i]).sum() for v, i in zip(vjp_fn(g), use))

    return torch.func.grad(dot)(torch.zeros_like(out))


class _Taps(Function):
    """``K x (+ b)`` by the taps engine; backward through :class:`_TapsT`."""

    @staticmethod
    def forward(x, weight, bias, mask, plan):
        return engine_impl.apply(x.contiguous(), weight, plan, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, mask, plan = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.save_for_forward(x, weight, bias)
        ctx.mask, ctx.plan = mask, plan

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            gx, gw, gb = _reference_vjp(
                lambda x, w, b: _masked(x, w, ctx.mask, b), [x, weight, bias], need[:3], g
            )
            return gx, gw, gb, None, None
        g = g.contiguous()
        gx = engine_impl.transpose(g, weight, ctx.plan) if need[0] else None
        gw = engine_impl.weight_grad(g, x.contiguous(), ctx.plan) if need[1] else None
        gb = g.sum((0, 2, 3)) if bias is not None and need[2] else None
        return gx, gw, gb, None, None

    @staticmethod
    def jvp(ctx, dx, dw, db, _mask, _plan):
        x, weight, bias = ctx.saved_tensors
        return _reference_jvp(
            lambda x, w, b: _masked(x, w, ctx.mask, b), [x, weight, bias], [dx, dw, db]
        )


class _TapsT(Function):
    """``Kᵀ z`` by the taps engine."""

    @staticmethod
    def forward(z, weight, mask, plan):
        return engine_impl.transpose(z.contiguous(), weight, plan)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, weight, mask, plan = inputs
        ctx.save_for_backward(z, weight)
        ctx.save_for_forward(z, weight)
        ctx.mask, ctx.plan = mask, plan

    @staticmethod
    def backward(ctx, g):
        z, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            gz, gw = _reference_vjp(
                lambda z, w: _masked_t(z, w, ctx.mask), [z, weight], need[:2], g
            )
            return gz, gw, None, None
        g = g.contiguous()
        gz = engine_impl.apply(g, weight, ctx.plan, None) if need[0] else None
        # <g, Kᵀ z> = <K g, z>
        gw = engine_impl.weight_grad(z.contiguous(), g, ctx.plan) if need[1] else None
        return gz, gw, None, None

    @staticmethod
    def jvp(ctx, dz, dw, _mask, _plan):
        z, weight = ctx.saved_tensors
        return _reference_jvp(lambda z, w: _masked_t(z, w, ctx.mask), [z, weight], [dz, dw])


def _plan(input: Tensor, mask: Tensor, engine: str):
    if engine not in ENGINES:
        raise ArgumentError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if (
        engine == "masked"
        or input.dtype not in (torch.float32, torch.float64)
        or input.device.type == "meta"
        or under_vmap()
        or torch.compiler.is_compiling()  # the vendor convolution traces; the plan would not
    ):
        return None
    plan = engine_impl.plan_for(mask)
    if engine == "taps":
        if plan is None:
            raise ArgumentError(
                "engine: 'taps' needs a 3x3 support with channel counts divisible by 4 that "
                f"saves work over a dense kernel; got a mask of shape {tuple(mask.shape)}"
            )
        return plan
    big = min(mask.shape[0], mask.shape[1]) >= _AUTO_TAPS_CHANNELS
    return plan if big and input.device.type == "cpu" else None


def sparse_conv2d(
    input: Tensor,
    weight: Tensor,
    mask: Tensor,
    bias: Tensor | None = None,
    engine: str = "auto",
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
    engine : {"auto", "taps", "masked"}, default "auto"
        ``"taps"``: work proportional to the support. Output channels are split
        into four groups (``i mod 4``) and input channels into four classes; every
        tap multiplies each group only with the input classes it couples to (one
        batched matrix product per tap and run of adjacent classes, read from a
        zero-padded channel-major copy where a tap is a column offset); the
        centre tap is one dense product. For psc4 this is 5.25 of 9 multiply-adds
        per channel pair (the support has 4.625). Needs a 3×3 mask and channel
        counts divisible by 4. ``"masked"``: a dense convolution with the
        zero-filled kernel (the vendor's kernel, no saving in work). ``"auto"``:
        taps on the CPU from 128 input and output channels, masked otherwise
        (see ``tests/benchmarks/bench_ops.py``); under :func:`torch.func.vmap`
        always masked (the taps engine has no batching rule). Both are exact and differentiable
        twice.

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
    plan = _plan(input, mask, engine)
    if plan is None:
        return _masked(input, weight, mask, bias)
    return _Taps.apply(input, weight, bias, mask, plan)


def sparse_conv2d_adjoint(
    input: Tensor, weight: Tensor, mask: Tensor, engine: str = "auto"
) -> Tensor:
    r"""The transpose of :func:`sparse_conv2d` (without bias): ``<K x, z> = <x, Kᵀ z>``.

    Parameters
    ----------
    input : Tensor
        ``z`` of shape ``(B, C_out, H, W)``.
    weight, mask, engine
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
    plan = _plan(input, mask, engine)
    if plan is None:
        return _masked_t(input, weight, mask)
    return _TapsT.apply(input, weight, mask, plan)
