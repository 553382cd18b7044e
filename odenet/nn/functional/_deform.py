"""Deformable convolution (DCN v1 / v2) with torchvision's signature and layout."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import Function

from odenet._functorch import under_vmap
from odenet.errors import ArgumentError, ShapeError
from odenet.nn.functional._checks import check_image, check_like, check_param, pair


class _Geo(NamedTuple):
    """Shapes and hyper-parameters of one deformable convolution."""

    b: int
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    wg: int  # weight groups
    og: int  # offset groups
    ho: int
    wo: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    @property
    def k(self) -> int:
        return self.kh * self.kw


__all__ = ["deform_conv2d", "deform_conv2d_adjoint"]


def _geometry(input, offset, weight, stride, padding, dilation, mask):
    check_image("input", input)
    check_image("offset", offset)
    check_image("weight", weight)
    sh, sw = pair("stride", stride, minimum=1)
    ph, pw = pair("padding", padding, minimum=0)
    dh, dw = pair("dilation", dilation, minimum=1)
    b, cin, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    if (cin_g == 0 and cin != 0) or (cin_g != 0 and cin % cin_g != 0):
        raise ShapeError(
            f"weight: dimension 1 ({cin_g}) must divide the input channels ({cin}); "
            f"expected weight of shape (out_channels, {cin} // groups, kh, kw)"
        )
    wg = cin // cin_g if cin_g else 1  # no input channels: one (empty) group
    if cout % wg != 0:
        raise ShapeError(
            f"weight: out_channels ({cout}) must be divisible by the weight groups ({wg} = "
            f"{cin} input channels / weight.shape[1] {cin_g})"
        )
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ShapeError(
            f"input: spatial size {h}x{w} is too small for kernel {kh}x{kw} with padding "
            f"({ph}, {pw}), dilation ({dh}, {dw}), stride ({sh}, {sw}): the output would be "
            f"{ho}x{wo}"
        )
    k = kh * kw
    ob, oc, oh, ow = offset.shape
    og = oc // (2 * k) if oc % (2 * k) == 0 else 0
    if ob != b or og == 0 or (oh, ow) != (ho, wo) or cin % og != 0:
        raise ShapeError(
            f"offset: the shape of the offset, {tuple(offset.shape)}, does not fit: expected "
            f"({b}, 2 * offset_groups * {kh} * {kw}, {ho}, {wo}) (batch, two coordinates per "
            f"kernel tap and offset group, output height, width) with offset_groups dividing "
            f"the {cin} input channels, e.g. ({b}, {2 * k}, {ho}, {wo})"
        )
    if mask is not None:
        check_image("mask", mask)
        if tuple(mask.shape) != (b, og * k, ho, wo):
            what = "mask.shape[1] is not valid" if mask.shape[1] != og * k else "wrong shape"
            raise ShapeError(
                f"mask: {what}: expected shape ({b}, {og * k}, {ho}, {wo}) (batch, "
                f"offset_groups * {kh} * {kw}, out height, out width) to match offset, "
                f"got {tuple(mask.shape)}"
            )
    # shapes first (as torchvision checks them), then dtypes and devices
    check_like("offset", offset, input)
    check_like("weight", weight, input)
    if mask is not None:
        check_like("mask", mask, input)
    return _Geo(b, cin, h, w, cout, kh, kw, wg, og, ho, wo, sh, sw, ph, pw, dh, dw)


def _sampling(offset, mask, geo):
    """Flat corner indices ``(N, 4)`` into the channels-last input rows and their weights.

    Rows ``n`` run over ``(b, oy, ox, k, g)``; the weight of a corner is its bilinear
    weight, zero when the corner or the whole point lies outside the image (as in
    torchvision), times the modulation mask. Also returns what the offset and mask
    gradients need.
    """
    b, h, w, kh, kw, og, ho, wo = geo.b, geo.h, geo.w, geo.kh, geo.kw, geo.og, geo.ho, geo.wo
    sh, sw, ph, pw, dh, dw = geo.sh, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw
    k = kh * kw
    dev, dt = offset.device, offset.dtype
    off = offset.reshape(b, og, k, 2, ho, wo).permute(0, 4, 5, 2, 1, 3)  # (B, Ho, Wo, K, og, 2)
    ki = torch.arange(kh, device=dev).repeat_interleave(kw)
    kj = torch.arange(kw, device=dev).repeat(kh)
    by = (torch.arange(ho, device=dev) * sh - ph).view(1, ho, 1, 1, 1) + (ki * dh).view(
        1, 1, 1, k, 1
    )
    bx = (torch.arange(wo, device=dev) * sw - pw).view(1, 1, wo, 1, 1) + (kj * dw).view(
        1, 1, 1, k, 1
    )
    py = by.to(dt) + off[..., 0]
    px = bx.to(dt) + off[..., 1]
    y0f, x0f = torch.floor(py), torch.floor(px)
    ly, lx = py - y0f, px - x0f
    hy, hx = 1 - ly, 1 - lx
    # a corner counts when it lies in the image: this alone makes a point with
    # y <= -1, y >= H, x <= -1 or x >= W contribute nothing, and gives every offset
    # the one-sided right derivative (torchvision's rule), at -1 and on the last
    # row or column as at interior integer points
    y0 = y0f.clamp(-2, h).long()
    x0 = x0f.clamp(-2, w).long()
    vy0 = (y0 >= 0) & (y0 <= h - 1)
    vy1 = (y0 >= -1) & (y0 <= h - 2)
    vx0 = (x0 >= 0) & (x0 <= w - 1)
    vx1 = (x0 >= -1) & (x0 <= w - 2)
    valid = torch.stack((vy0 & vx0, vy0 & vx1, vy1 & vx0, vy1 & vx1), -1).to(dt)
    bil = torch.stack((hy * hx, hy * lx, ly * hx, ly * lx), -1)
    yc0, yc1 = y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1)
    xc0, xc1 = x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1)
    base = torch.arange(b, device=dev).view(b, 1, 1, 1, 1) * h
    grp = torch.arange(og, device=dev).view(1, 1, 1, 1, og)
    idx = torch.stack(
        [
            ((base + yy) * w + xx) * og + grp
            for yy, xx in ((yc0, xc0), (yc0, xc1), (yc1, xc0), (yc1, xc1))
        ],
        -1,
    )
    m = None if mask is None else mask.reshape(b, og, k, ho, wo).permute(0, 3, 4, 2, 1)
    wgt = bil * valid if m is None else bil * valid * m.unsqueeze(-1)
    return idx.reshape(-1, 4), wgt.reshape(-1, 4), (hy, hx, ly, lx, valid, m)


def _columns(input, offset, mask, geo):
    """Bilinear samples ``(B·Ho·Wo, K·Cin)`` times the mask: the differentiable reference."""
    rows = _rows(input, geo)
    idx, wgt, _ = _sampling(offset, mask, geo)
    vals = rows.index_select(0, idx.reshape(-1)).view(idx.shape[0], 4, rows.shape[1])
    cols = (vals * wgt.unsqueeze(-1)).sum(1)
    return cols.view(geo.b * geo.ho * geo.wo, geo.k * geo.cin)


def _weight_matrix(weight, geo):
    """``(wg, K·Cin/wg, Cout/wg)`` with rows in the ``(k, cin)`` order of the columns."""
    cin, cout, kh, kw, wg = (geo.cin, geo.cout, geo.kh, geo.kw, geo.wg)
    cin_g = cin // wg
    return (
        weight.reshape(wg, cout // wg, cin_g, kh * kw)
        .permute(0, 3, 2, 1)
        .reshape(wg, kh * kw * cin_g, cout // wg)
    )


def _group_columns(cols, geo):
    """``(B·P, K·Cin)`` -> ``(wg, B·P, K·Cin/wg)``."""
    cin, kh, kw, wg = (geo.cin, geo.kh, geo.kw, geo.wg)
    if wg == 1:
        return cols.unsqueeze(0)
    n = cols.shape[0]
    cin_g = cin // wg
    return cols.view(n, kh * kw, wg, cin_g).permute(2, 0, 1, 3).reshape(wg, n, kh * kw * cin_g)


def _ungroup_columns(gcols, geo):
    """Inverse of :func:`_group_columns`."""
    cin, kh, kw, wg = (geo.cin, geo.kh, geo.kw, geo.wg)
    if wg == 1:
        return gcols[0]
    n = gcols.shape[1]
    return gcols.view(wg, n, kh * kw, cin // wg).permute(1, 2, 0, 3).reshape(n, kh * kw * cin)


def _output(cols, weight, bias, geo):
    b, cout, wg, ho, wo = (geo.b, geo.cout, geo.wg, geo.ho, geo.wo)
    out = torch.bmm(_group_columns(cols, geo), _weight_matrix(weight, geo))  # (wg, BP, cout/wg)
    out = out.view(wg, b, ho, wo, cout // wg).permute(1, 0, 4, 2, 3).reshape(b, cout, ho, wo)
    if bias is not None:
        out = out + bias.view(1, cout, 1, 1)
    return out


def _reference(input, offset, mask, weight, bias, geo):
    """The whole operator from differentiable primitives (any-order derivatives)."""
    return _output(_columns(input, offset, mask, geo), weight, bias, geo)


def _csr(idx, wgt, n_rows):
    n = idx.shape[0]
    crow = torch.arange(0, 4 * n + 1, 4, device=idx.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            crow, idx.reshape(-1), wgt.reshape(-1), size=(n, n_rows), dtype=wgt.dtype
        )


class _DeformConv(Function):
    """Fast first derivatives (sparse gather/scatter + one matrix product each way);
    second and forward-mode derivatives through :func:`_reference`."""

    @staticmethod
    def forward(input, offset, mask, weight, bias, geo):
        rows = _rows(input, geo)
        idx, wgt, _ = _sampling(offset, mask, geo)
        cols = (_csr(idx, wgt, rows.shape[0]) @ rows).view(geo.b * geo.ho * geo.wo, geo.k * geo.cin)
        return _output(cols, weight, bias, geo), idx, wgt, cols

    @staticmethod
    def setup_context(ctx, inputs, outputs):
        input, offset, mask, weight, bias, geo = inputs
        _, idx, wgt, cols = outputs
        ctx.mark_non_differentiable(idx, wgt, cols)
        ctx.save_for_backward(input, offset, mask, weight, bias, idx, wgt, cols)
        ctx.save_for_forward(input, offset, mask, weight, bias)
        ctx.geo = geo

    @staticmethod
    def backward(ctx, g, *_):
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            return _reference_grads(ctx, g)
        input, offset, mask, weight, bias, idx, wgt, cols = ctx.saved_tensors
        geo = ctx.geo
        need = ctx.needs_input_grad
        b, cin, h, w, cout, wg, og, ho, wo = (
            geo.b, geo.cin, geo.h, geo.w, geo.cout, geo.wg, geo.og, geo.ho, geo.wo
        )  # fmt: skip
        k, cg = geo.k, cin // og
        # (wg, B·P, cout/wg)
        g2 = g.reshape(b, wg, cout // wg, ho, wo).permute(1, 0, 3, 4, 2)
        g2 = g2.reshape(wg, b * ho * wo, cout // wg)
        g_in = g_off = g_mask = g_w = g_b = None
        if need[3]:
            gw = torch.bmm(_group_columns(cols, geo).transpose(1, 2), g2)  # (wg, K·cin_g, cout_g)
            g_w = gw.view(wg, k, cin // wg, cout // wg).permute(0, 3, 2, 1).reshape(weight.shape)
        if need[4] and bias is not None:
            g_b = g.sum((0, 2, 3))
        if need[0] or need[1] or need[2]:
            wmat = _weight_matrix(weight, geo)
            gcols = _ungroup_columns(torch.bmm(g2, wmat.transpose(1, 2)), geo)
            gcols = gcols.reshape(b * ho * wo * k * og, cg)
            if need[0]:
                g_rows = _scatter_rows(gcols, idx, wgt, b * h * w * og)
                g_in = g_rows.view(b, h, w, cin).permute(0, 3, 1, 2).contiguous()
            if need[1] or need[2]:
                dots = _corner_dots(gcols, _rows(input, geo), idx)  # d<g, out>/d wgt
                _, _, (hy, hx, ly, lx, valid, m) = _sampling(offset, mask, geo)
                gv = dots.view(b, ho, wo, k, og, 4) * valid  # d<g, out>/d(bilinear·valid·m)
                if m is not None:
                    bil = torch.stack((hy * hx, hy * lx, ly * hx, ly * lx), -1)
                    if need[2]:
                        g_mask = (gv * bil).sum(-1).permute(0, 4, 3, 1, 2).reshape(mask.shape)
                    gv = gv * m.unsqueeze(-1)
                if need[1]:
                    gy = (gv[..., 2] - gv[..., 0]) * hx + (gv[..., 3] - gv[..., 1]) * lx
                    gx = (gv[..., 1] - gv[..., 0]) * hy + (gv[..., 3] - gv[..., 2]) * ly
                    g_off = torch.stack((gy, gx), -1).permute(0, 4, 3, 5, 1, 2)
                    g_off = g_off.reshape(offset.shape)
        return g_in, g_off, g_mask, g_w, g_b, None

    @staticmethod
    def jvp(ctx, *tangents):
        # J t by two reverse passes of the reference (J t = d/dg <Jᵀ g, t>), which works both
        # under torch.autograd.forward_ad and inside torch.func transforms
        primals = list(ctx.saved_tensors)
        use = [i for i in range(5) if primals[i] is not None and tangents[i] is not None]

        def f(*args):
            full = list(primals)
            for i, a in zip(use, args):
                full[i] = a
            return _reference(*full, ctx.geo)

        out, vjp_fn = torch.func.vjp(f, *(primals[i] for i in use))

        def dot(g):
            return sum((v * tangents[i]).sum() for v, i in zip(vjp_fn(g), use))

        return torch.func.grad(dot)(torch.zeros_like(out)), None, None, None


def _rows(input, geo):
    """The input as rows ``(B·H·W·og, C_in / og)`` (channels last)."""
    return input.permute(0, 2, 3, 1).reshape(geo.b * geo.h * geo.w * geo.og, geo.cin // geo.og)


def _scatter_rows(gcols, idx, wgt, n_rows):
    """``Sᵀ gcols``: every sample's gradient spread onto its four corners."""
    return _csr(idx, wgt, n_rows).t() @ gcols


def _corner_dots(gcols, rows, idx):
    """``out[n, c] = <gcols[n], rows[idx[n, c]]>`` (a sampled matrix product)."""
    ones = torch.ones(idx.shape, dtype=rows.dtype, device=rows.device)
    pattern = _csr(idx, ones, rows.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dots = torch.sparse.sampled_addmm(pattern, gcols, rows.t(), beta=0.0)
    return dots.values().view(idx.shape[0], 4)


def _reference_grads(ctx, g):
    """Differentiable first derivatives (used when a graph of the gradient is requested)."""
    args = list(ctx.saved_tensors[:5])
    wanted = [i for i, a in enumerate(args) if a is not None and ctx.needs_input_grad[i]]

    def f(*leaves):
        full = list(args)
        for i, a in zip(wanted, leaves):
            full[i] = a
        return _reference(*full, ctx.geo)

    _, vjp_fn = torch.func.vjp(f, *(args[i] for i in wanted))
    result: list = [None] * 6
    for i, gr in zip(wanted, vjp_fn(g)):
        result[i] = gr
    return tuple(result)


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Deformable 2-D convolution (DCN v1; v2 with ``mask``), torchvision's signature.

    For output pixel ``(oy, ox)`` and kernel tap ``(i, j)`` the input is sampled
    bilinearly at ``y = oy·s_h − p_h + i·d_h + Δy``, ``x = ox·s_w − p_w + j·d_w + Δx``,
    zero outside the image (a point with ``y <= -1``, ``y >= H``, ``x <= -1`` or
    ``x >= W`` contributes nothing, as in torchvision), multiplied by the mask
    (modulated, v2) and contracted with the weight.

    The samples are a sparse linear map of the input (four weights per sample), so
    the operator is one sparse-dense product followed by one dense matrix product;
    the input gradient is the transposed sparse product, the offset and mask
    gradients a sampled product. All of it is vectorised; nothing loops over
    pixels. Differentiable twice (second derivatives go through a composite of
    differentiable gathers). The result agrees with
    ``torchvision.ops.deform_conv2d`` to round-off (tested when torchvision is
    importable; it is not a dependency).

    Parameters
    ----------
    input : Tensor
        ``(B, C_in, H, W)``.
    offset : Tensor
        ``(B, 2·G·kh·kw, H_out, W_out)`` for ``G`` offset groups (each covering
        ``C_in / G`` consecutive input channels); channel ``g·2·kh·kw + 2(i·kw + j)``
        holds ``Δy`` of tap ``(i, j)`` and the next channel ``Δx``.
    weight : Tensor
        ``(C_out, C_in / groups, kh, kw)``; ``groups`` is inferred as in torchvision.
    bias : Tensor, optional
        ``(C_out,)``.
    stride, padding, dilation : int or (int, int)
        As in :func:`torch.nn.functional.conv2d`.
    mask : Tensor, optional
        ``(B, G·kh·kw, H_out, W_out)``, channel ``g·kh·kw + i·kw + j``.

    Returns
    -------
    Tensor
        ``(B, C_out, H_out, W_out)``.

    Raises
    ------
    odenet.errors.ShapeError
        Shapes that do not fit together (the message gives the expected shape); both
        an :class:`~odenet.errors.ArgumentError` and a :class:`RuntimeError`, as
        torchvision raises.
    odenet.errors.ArgumentError
        Other bad arguments (negative padding, a non-tensor, mismatched dtypes).

    See Also
    --------
    deform_conv2d_adjoint : the transpose with respect to ``input``.
    odenet.nn.DeformConv2d : the module, which predicts its offsets.

    Examples
    --------
    With zero offsets and a unit mask it is an ordinary convolution:

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from odenet.nn.functional import deform_conv2d
    >>> x, w = torch.randn(2, 4, 7, 7), torch.randn(6, 4, 3, 3)
    >>> offset, mask = torch.zeros(2, 18, 7, 7), torch.ones(2, 9, 7, 7)
    >>> y = deform_conv2d(x, offset, w, padding=1, mask=mask)
    >>> torch.allclose(y, F.conv2d(x, w, padding=1), atol=1e-5)
    True

    An offset of exactly one pixel shifts the samples:

    >>> offset[:, 1::2] = 1.0  # Δx = 1 for every tap
    >>> y = deform_conv2d(x, offset, w, padding=1)
    >>> torch.allclose(y[..., :-1], F.conv2d(x, w, padding=1)[..., 1:], atol=1e-5)
    True
    """
    geo = _geometry(input, offset, weight, stride, padding, dilation, mask)
    if bias is not None:
        check_param("bias", bias, (weight.shape[0],), input)
    if (
        input.dtype not in (torch.float32, torch.float64)
        or min(geo.b, geo.cin, geo.cout) == 0
        or under_vmap()
        or torch.compiler.is_compiling()
    ):
        # empty sizes: the composite gives empty outputs and zero (or zero-size) gradients;
        # under torch.func.vmap it has the batching rules the fast Function lacks, and
        # torch.compile traces it (dynamo cannot trace a Function with a custom jvp)
        return _reference(input, offset, mask, weight, bias, geo)
    return _DeformConv.apply(input, offset, mask, weight, bias, geo)[0]


def deform_conv2d_adjoint(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    input_size: tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: Tensor | None = None,
    groups: int = 1,
) -> Tensor:
    r"""The transpose of :func:`deform_conv2d` in its input, for fixed offsets and mask.

    ``u ↦ deform_conv2d(u, offset, weight, None, stride, padding, dilation, mask)`` is
    linear; this returns its transpose applied to ``input`` (``z``), so that
    ``<K u, z> = <u, Kᵀ z>``. Differentiable in ``input``, ``offset``, ``weight`` and
    ``mask``.

    Parameters
    ----------
    input : Tensor
        ``z`` of shape ``(B, C_out, H_out, W_out)``.
    offset, weight, stride, padding, dilation, mask
        As in :func:`deform_conv2d`.
    input_size : (int, int)
        ``(H, W)`` of the space ``Kᵀ z`` lives in.
    groups : int, default 1
        Weight groups (``C_in = groups · weight.shape[1]``).

    Returns
    -------
    Tensor
        ``(B, C_in, H, W)``.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn.functional import deform_conv2d, deform_conv2d_adjoint
    >>> u = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    >>> w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    >>> off = torch.randn(1, 18, 6, 6, dtype=torch.float64)
    >>> z = torch.randn(1, 5, 6, 6, dtype=torch.float64)
    >>> lhs = (deform_conv2d(u, off, w, padding=1) * z).sum()
    >>> rhs = (u * deform_conv2d_adjoint(z, off, w, (6, 6), padding=1)).sum()
    >>> torch.allclose(lhs, rhs)
    True
    """
    check_image("input", input)
    h, w = pair("input_size", input_size, minimum=1)
    b = input.shape[0]
    if not isinstance(weight, Tensor) or weight.ndim != 4:
        raise ArgumentError(
            "weight: expected a 4-D tensor (out_channels, in_channels / groups, kh, kw)"
        )
    if not isinstance(offset, Tensor) or offset.ndim != 4 or offset.shape[0] != b:
        raise ArgumentError(f"offset: expected a 4-D tensor with batch size {b} (that of input)")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ArgumentError(f"groups: expected a positive int, got {groups!r}")
    cin = weight.shape[1] * groups
    u = input.new_zeros(b, cin, h, w)
    geo = _geometry(u, offset, weight, stride, padding, dilation, mask)
    if tuple(input.shape) != (b, geo.cout, geo.ho, geo.wo):
        raise ArgumentError(
            f"input: expected shape ({b}, {geo.cout}, {geo.ho}, {geo.wo}) (the output shape of "
            f"the deformable convolution), got {tuple(input.shape)}"
        )
    # the transpose of a linear map is its vector-Jacobian product (at any point)
    _, vjp_fn = torch.func.vjp(
        lambda u: deform_conv2d(u, offset, weight, None, stride, padding, dilation, mask), u
    )
    return vjp_fn(input)[0]
