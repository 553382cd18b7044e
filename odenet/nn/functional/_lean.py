"""The lean operator of LeanResNet: a 1×1 convolution plus a depthwise 3×3 stencil.

``K x = W x + S x`` where ``W`` couples all channels point-wise and ``S`` applies
one small spatial stencil per channel (zero padding, stride 1). The 1×1 part is a
batched matrix product on the ``(B, C, H·W)`` view of the image (no im2col, no
copies); the stencil is a depthwise convolution. Forward, adjoint and their
derivatives are custom autograd functions that call each other, so gradients
cost two matrix products and two depthwise passes, and are differentiable again
(double backward) through the same functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

from odenet._functorch import under_vmap
from odenet.errors import ArgumentError
from odenet.nn.functional._checks import check_image, check_param

__all__ = ["STENCILS", "lean_conv2d", "lean_conv2d_adjoint", "stencil_kernel"]

#: Positions ``(row, col)`` inside the 3×3 kernel of each stencil, in row-major order;
#: column ``k`` of a stencil weight multiplies the neighbour at ``(row - 1, col - 1)``.
STENCILS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((0, 1), (1, 0), (1, 2), (2, 1)),
    5: ((0, 1), (1, 0), (1, 1), (1, 2), (2, 1)),
    9: tuple((r, c) for r in range(3) for c in range(3)),
}


def stencil_kernel(stencil_weight: Tensor) -> Tensor:
    """The depthwise 3×3 kernel ``(C, 1, 3, 3)`` of a stencil weight ``(C, s)``.

    Differentiable in ``stencil_weight``. The taps of each stencil are listed in
    :data:`STENCILS` (4: N, W, E, S; 5: N, W, centre, E, S; 9: the full 3×3 kernel,
    row-major).

    Parameters
    ----------
    stencil_weight : Tensor
        Shape ``(C, s)`` with ``s`` in {4, 5, 9}.

    Returns
    -------
    Tensor
        Shape ``(C, 1, 3, 3)``; zero outside the stencil.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn.functional import stencil_kernel
    >>> stencil_kernel(torch.arange(1.0, 6.0).view(1, 5))[0, 0]
    tensor([[0., 1., 0.],
            [2., 3., 4.],
            [0., 5., 0.]])
    """
    if not isinstance(stencil_weight, Tensor) or stencil_weight.ndim != 2:
        raise ArgumentError(
            "stencil_weight: expected a 2-D tensor (channels, stencil), got "
            + (
                f"shape {tuple(stencil_weight.shape)}"
                if isinstance(stencil_weight, Tensor)
                else type(stencil_weight).__name__
            )
        )
    c, s = stencil_weight.shape
    if s not in STENCILS:
        raise ArgumentError(
            f"stencil_weight: expected {sorted(STENCILS)} stencil taps (dimension 1), "
            f"got shape {tuple(stencil_weight.shape)}"
        )
    if s == 9:
        return stencil_weight.reshape(c, 1, 3, 3)
    index = torch.tensor([3 * r + q for r, q in STENCILS[s]], device=stencil_weight.device)
    full = stencil_weight.new_zeros(c, 9).index_copy(1, index, stencil_weight)
    return full.view(c, 1, 3, 3)


# Bytes of one tensor chunk processed at a time on the CPU: the input and output chunks of
# the matrix product and the shifted multiply-adds then stay in the L2 cache.
_CHUNK_BYTES = 1 << 20


def _chunks(x: Tensor) -> list[slice]:
    b = x.shape[0]
    if x.device.type != "cpu":
        return [slice(0, b)]
    per = max(1, x[0].numel() * x.element_size())
    n = max(1, min(b, _CHUNK_BYTES // per))
    return [slice(i, min(b, i + n)) for i in range(0, b, n)]


def _shift_slices(dy: int, dx: int, h: int, w: int):
    """Index ranges with ``out[oy, ox] += in[iy, ix]`` for ``in`` shifted by ``(dy, dx)``."""
    oy = slice(max(0, -dy), h - max(0, dy))
    iy = slice(max(0, dy), h - max(0, -dy))
    ox = slice(max(0, -dx), w - max(0, dx))
    ix = slice(max(0, dx), w - max(0, -dx))
    return (..., oy, ox), (..., iy, ix)


def _split_taps(s: Tensor, w: Tensor, transpose: bool):
    """The matrix with the centre tap folded in, and the off-centre taps ``(k, dy, dx)``."""
    taps = STENCILS[s.shape[1]]
    mat = w.t() if transpose else w
    sign = -1 if transpose else 1
    off = []
    for k, (r, q) in enumerate(taps):
        if (r, q) == (1, 1):
            mat = mat + torch.diag(s[:, k])
        else:
            off.append((k, sign * (r - 1), sign * (q - 1)))
    return mat, off


def _apply(x: Tensor, w: Tensor, s: Tensor, b: Tensor | None, transpose: bool) -> Tensor:
    """``K x + b`` (or ``Kᵀ x``) without autograd, chunk by chunk."""
    x = x.contiguous()
    c, h, wd = x.shape[1:]
    mat, off = _split_taps(s, w, transpose)
    cols = [s[:, k].view(1, c, 1, 1) for k, _, _ in off]
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for sl in _chunks(x):
        xc, oc = x[sl], out[sl]
        n = xc.shape[0]
        torch.bmm(mat.expand(n, c, c), xc.view(n, c, h * wd), out=oc.view(n, c, h * wd))
        for col, (_, dy, dx) in zip(cols, off):
            o_idx, i_idx = _shift_slices(dy, dx, h, wd)
            oc[o_idx].addcmul_(xc[i_idx], col)
        if b is not None:
            oc.add_(b.view(1, c, 1, 1))
    return out


def _tap_grads(a: Tensor, x: Tensor, ns: int) -> Tensor:
    """``out[c, k] = sum a[:, c] * shift_k(x)[:, c]`` for every tap, differentiable."""
    h, wd = x.shape[-2:]
    cols = []
    for r, q in STENCILS[ns]:
        o_idx, i_idx = _shift_slices(r - 1, q - 1, h, wd)
        cols.append((a[o_idx] * x[i_idx]).sum((0, 2, 3)))
    return torch.stack(cols, 1)


def _backward_fused(g, x, w, s, transpose, needs):
    """First-order gradients of ``K x + b`` (``transpose=False``) or of ``Kᵀ x``, in one
    chunked pass and without autograd: the input gradient (the other operator applied to
    ``g``), the weight, stencil and bias gradients."""
    need_x, need_w, need_s, need_b = needs
    c, h, wd = x.shape[1:]
    gx = _apply(g, w, s, None, not transpose) if need_x else None
    gw = gs = gb = None
    if need_w or need_s or need_b:
        ns = s.shape[1]
        taps = STENCILS[ns]
        # d<g, K x>/dW = sum g xᵀ; d<g, Kᵀ x>/dW = sum x gᵀ; the centre tap is its diagonal.
        first, second = (x, g) if transpose else (g, x)
        gw_full = x.new_zeros(c, c) if (need_w or need_s) else None
        gs = x.new_zeros(c, ns) if need_s else None
        gb = x.new_zeros(c) if need_b else None
        for sl in _chunks(x):
            fc, sc = first[sl], second[sl]
            n = fc.shape[0]
            if gw_full is not None:
                gw_full.addbmm_(fc.reshape(n, c, h * wd), sc.reshape(n, c, h * wd).transpose(1, 2))
            if gs is not None:
                for k, (r, q) in enumerate(taps):
                    if (r, q) == (1, 1):
                        continue
                    # <g, S x>: sum g * shift(x); <g, Sᵀ x> = <S g, x>: sum x * shift(g)
                    o_idx, i_idx = _shift_slices(r - 1, q - 1, h, wd)
                    gs[:, k] += (fc[o_idx] * sc[i_idx]).sum((0, 2, 3))
            if gb is not None:
                gb += g[sl].sum((0, 2, 3))
        if gs is not None:
            for k, rq in enumerate(taps):
                if rq == (1, 1):
                    gs[:, k] = torch.diagonal(gw_full)
        gw = gw_full if need_w else None
    return gx, gw, gs, gb


def _tangent(x, w, s, dx, dw, ds, transpose: bool):
    """Forward-mode derivative of the bilinear map ``(x, W, S) ↦ K x`` (or ``Kᵀ x``),
    itself differentiable (through the same functions)."""

    def k(u, w, s):
        return lean_conv2d_adjoint(u, w, s) if transpose else lean_conv2d(u, w, s)

    out = None
    if dx is not None:
        out = k(dx, w, s)
    if dw is not None or ds is not None:
        dw = torch.zeros_like(w) if dw is None else dw
        ds = torch.zeros_like(s) if ds is None else ds
        term = k(x, dw, ds)
        out = term if out is None else out + term
    return out


class _Lean(Function):
    """``W x + S x (+ b)``; backward through :class:`_LeanAdjoint`."""

    @staticmethod
    def forward(x: Tensor, w: Tensor, s: Tensor, b: Tensor | None) -> Tensor:
        return _apply(x, w, s, b, transpose=False)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w, s, b = inputs
        ctx.save_for_backward(x, w, s)
        ctx.save_for_forward(x, w, s)
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx, g: Tensor):
        x, w, s = ctx.saved_tensors
        x, g = x.contiguous(), g.contiguous()
        need = ctx.needs_input_grad
        needs = (need[0], need[1], need[2], ctx.has_bias and need[3])
        if not (torch.is_grad_enabled() or under_vmap()):
            return _backward_fused(g, x, w, s, False, needs)
        # create_graph or vmap (jacrev): differentiable, batchable composite
        gx = lean_conv2d_adjoint(g, w, s) if needs[0] else None
        gw = torch.bmm(_batched(g), _batched(x).transpose(1, 2)).sum(0) if needs[1] else None
        gs = _tap_grads(g, x, s.shape[1]) if needs[2] else None
        gb = g.sum((0, 2, 3)) if needs[3] else None
        return gx, gw, gs, gb

    @staticmethod
    def jvp(ctx, dx, dw, ds, db):
        x, w, s = ctx.saved_tensors
        out = _tangent(x, w, s, dx, dw, ds, transpose=False)
        if db is not None:
            db = db.view(1, -1, 1, 1)
            out = db.expand(x.shape).clone() if out is None else out + db
        return out if out is not None else torch.zeros_like(x)


class _LeanAdjoint(Function):
    """``Wᵀ z + Sᵀ z``; backward through :class:`_Lean`."""

    @staticmethod
    def forward(z: Tensor, w: Tensor, s: Tensor) -> Tensor:
        return _apply(z, w, s, None, transpose=True)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, w, s = inputs
        ctx.save_for_backward(z, w, s)
        ctx.save_for_forward(z, w, s)

    @staticmethod
    def backward(ctx, g: Tensor):
        z, w, s = ctx.saved_tensors
        z, g = z.contiguous(), g.contiguous()
        needs = (*ctx.needs_input_grad[:3], False)
        if not (torch.is_grad_enabled() or under_vmap()):
            return _backward_fused(g, z, w, s, True, needs)[:3]
        gz = lean_conv2d(g, w, s) if needs[0] else None
        gw = torch.bmm(_batched(z), _batched(g).transpose(1, 2)).sum(0) if needs[1] else None
        # <g, Sᵀ z> = <S g, z>
        gs = _tap_grads(z, g, s.shape[1]) if needs[2] else None
        return gz, gw, gs

    @staticmethod
    def jvp(ctx, dz, dw, ds):
        z, w, s = ctx.saved_tensors
        out = _tangent(z, w, s, dz, dw, ds, transpose=True)
        return out if out is not None else torch.zeros_like(z)


def by_convs(x: Tensor, w: Tensor, s: Tensor, b: Tensor | None) -> Tensor:
    """``W x + S x (+ b)`` as two vendor convolutions (1×1 and depthwise)."""
    y = F.conv2d(x, w[:, :, None, None], b)
    return y + F.conv2d(x, stencil_kernel(s), None, padding=1, groups=x.shape[1])


def adjoint_by_convs(z: Tensor, w: Tensor, s: Tensor) -> Tensor:
    """``Wᵀ z + Sᵀ z`` as two vendor convolutions."""
    y = F.conv2d(z, w.t()[:, :, None, None])
    return y + F.conv_transpose2d(z, stencil_kernel(s), None, padding=1, groups=z.shape[1])


def _batched(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], x.shape[1], -1)


def _check(input: Tensor, weight: Tensor, stencil_weight: Tensor) -> None:
    check_image("input", input)
    c = input.shape[1]
    if (
        isinstance(weight, Tensor)
        and weight.ndim == 2
        and weight.shape[0] == weight.shape[1]
        and weight.shape[0] != c
    ):
        # a square weight fixes the channel count: the input is what does not fit
        raise ArgumentError(
            f"input: expected {weight.shape[0]} channels (dimension 1) for a weight of shape "
            f"{tuple(weight.shape)}, got shape {tuple(input.shape)}"
        )
    check_param("weight", weight, (c, c), input)
    if (
        not isinstance(stencil_weight, Tensor)
        or stencil_weight.ndim != 2
        or (stencil_weight.shape[0] != c or stencil_weight.shape[1] not in STENCILS)
    ):
        got = (
            f"shape {tuple(stencil_weight.shape)}"
            if isinstance(stencil_weight, Tensor)
            else type(stencil_weight).__name__
        )
        raise ArgumentError(
            f"stencil_weight: expected shape ({c}, s) with s in {sorted(STENCILS)} "
            f"for {c} input channels, got {got}"
        )
    check_param("stencil_weight", stencil_weight, None, input)


def lean_conv2d(
    input: Tensor, weight: Tensor, stencil_weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    r"""Apply the lean operator ``K x = W x + S x (+ b)`` of LeanResNet.

    ``W`` is a 1×1 convolution (a ``C × C`` matrix applied at every pixel) and
    ``S`` a depthwise 3×3 stencil with zero padding, one per channel; the output
    has the input's shape. Cost per pixel: ``C² + s·C`` multiply-adds instead of a
    dense 3×3 convolution's ``9 C²``. Under :func:`torch.func.vmap` it computes with
    a 1×1 and a depthwise vendor convolution, which have batching rules.

    Parameters
    ----------
    input : Tensor
        ``(B, C, H, W)``.
    weight : Tensor
        ``(C, C)``: ``weight[o, i]`` couples input channel ``i`` to output channel ``o``.
    stencil_weight : Tensor
        ``(C, s)``, ``s`` in {4, 5, 9}; taps as in :data:`STENCILS` (see
        :func:`stencil_kernel`).
    bias : Tensor, optional
        ``(C,)``.

    Returns
    -------
    Tensor
        ``(B, C, H, W)``.

    See Also
    --------
    lean_conv2d_adjoint : the transpose ``Kᵀ`` (without bias).
    odenet.nn.LeanConv2d : the module.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from odenet.nn.functional import lean_conv2d, stencil_kernel
    >>> x, w, s = torch.randn(2, 3, 5, 5), torch.randn(3, 3), torch.randn(3, 5)
    >>> y = lean_conv2d(x, w, s)
    >>> dense = torch.diag_embed(stencil_kernel(s)[:, 0].permute(1, 2, 0)).permute(2, 3, 0, 1)
    >>> dense[:, :, 1, 1] += w
    >>> torch.allclose(y, F.conv2d(x, dense, padding=1), atol=1e-5)
    True
    """
    _check(input, weight, stencil_weight)
    if bias is not None:
        check_param("bias", bias, (input.shape[1],), input)
    if under_vmap():
        return by_convs(input, weight, stencil_weight, bias)
    return _Lean.apply(input, weight, stencil_weight, bias)


def lean_conv2d_adjoint(input: Tensor, weight: Tensor, stencil_weight: Tensor) -> Tensor:
    r"""Apply the transpose ``Kᵀ z = Wᵀ z + Sᵀ z`` of the lean operator.

    The exact adjoint of the linear part of :func:`lean_conv2d` under the
    Euclidean inner product: ``<K x, z> = <x, Kᵀ z>``. ``Sᵀ`` is the depthwise
    stencil with the kernel rotated by 180°.

    Parameters
    ----------
    input : Tensor
        ``z`` of shape ``(B, C, H, W)``.
    weight, stencil_weight : Tensor
        As in :func:`lean_conv2d`.

    Returns
    -------
    Tensor
        ``(B, C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn.functional import lean_conv2d, lean_conv2d_adjoint
    >>> x, z = torch.randn(2, 4, 6, 6, dtype=torch.float64), torch.randn(2, 4, 6, 6,
    ...                                                                 dtype=torch.float64)
    >>> w, s = torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 9, dtype=torch.float64)
    >>> lhs = (lean_conv2d(x, w, s) * z).sum()
    >>> rhs = (x * lean_conv2d_adjoint(z, w, s)).sum()
    >>> torch.allclose(lhs, rhs)
    True
    """
    _check(input, weight, stencil_weight)
    if under_vmap():
        return adjoint_by_convs(input, weight, stencil_weight)
    return _LeanAdjoint.apply(input, weight, stencil_weight)
