"""Convolution operators of odenet.nn.functional: one shared tester per op family.

Every family is checked the same way: the forward against a naive reference
(a dense convolution with the equivalent full kernel for lean and sparse, a
pixel loop with the bilinear formula for deformable) to 1e-12 in float64 over
hypothesis-drawn shapes; the adjoint by the dot-product test; first and second
derivatives by gradcheck / gradgradcheck.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

import odenet.nn.functional._lean as lean_impl
from odenet.errors import ArgumentError, ArgumentTypeError, ShapeError
from odenet.nn.functional import (
    STENCILS,
    deform_conv2d,
    deform_conv2d_adjoint,
    lean_conv2d,
    lean_conv2d_adjoint,
    psc_mask,
    sparse_conv2d,
    sparse_conv2d_adjoint,
    stencil_kernel,
)

D = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, g, requires_grad=False):
    return torch.randn(*shape, generator=g, dtype=D).requires_grad_(requires_grad)


# --------------------------------------------------------------------------- references


def lean_reference(x, w, s, b=None):
    """Dense 3x3 convolution with the lean operator's full kernel."""
    c = w.shape[0]
    kernel = torch.zeros(c, c, 3, 3, dtype=x.dtype)
    for k, (r, q) in enumerate(STENCILS[s.shape[1]]):
        kernel[range(c), range(c), r, q] = s[:, k]
    kernel[:, :, 1, 1] += w
    return F.conv2d(x, kernel, b, padding=1)


def sparse_reference(x, w, mask, b=None):
    kernel = torch.zeros(mask.shape, dtype=x.dtype)
    kernel[mask] = w  # row-major order of mask.nonzero()
    return F.conv2d(x, kernel, b, padding=1)


def deform_reference(x, offset, weight, bias, stride, padding, dilation, mask):
    """Pixel loop, straight from the definition (torchvision's bilinear_interpolate)."""
    x, offset, weight = x.detach().numpy(), offset.detach().numpy(), weight.detach().numpy()
    mask = None if mask is None else mask.detach().numpy()
    b, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    wg = cin // cin_g
    og = offset.shape[1] // (2 * kh * kw)
    cg = cin // og
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = offset.shape[2:]

    def value(img, y, xx):
        if y <= -1 or y >= h or xx <= -1 or xx >= w:
            return np.zeros(img.shape[0])
        y0, x0 = math.floor(y), math.floor(xx)
        ly, lx = y - y0, xx - x0
        out = np.zeros(img.shape[0])
        for yy, xc, wt in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                           (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
            if 0 <= yy < h and 0 <= xc < w:
                out += wt * img[:, yy, xc]
        return out

    cols = np.zeros((b, cin, kh, kw, ho, wo))
    for n in range(b):
        for g in range(og):
            img = x[n, g * cg:(g + 1) * cg]
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for oy in range(ho):
                        for ox in range(wo):
                            dy = offset[n, g * 2 * kh * kw + 2 * k, oy, ox]
                            dx = offset[n, g * 2 * kh * kw + 2 * k + 1, oy, ox]
                            v = value(img, oy * sh - ph + i * dh + dy, ox * sw - pw + j * dw + dx)
                            if mask is not None:
                                v = v * mask[n, g * kh * kw + k, oy, ox]
                            cols[n, g * cg:(g + 1) * cg, i, j, oy, ox] = v
    out = np.zeros((b, cout, ho, wo))
    cout_g = cout // wg
    for gi in range(wg):
        wgt = weight[gi * cout_g:(gi + 1) * cout_g]  # (cout_g, cin_g, kh, kw)
        col = cols[:, gi * cin_g:(gi + 1) * cin_g]
        out[:, gi * cout_g:(gi + 1) * cout_g] = np.einsum("ocij,bcijyx->boyx", wgt, col)
    if bias is not None:
        out += bias.detach().numpy()[None, :, None, None]
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- cases


class LeanCase:
    name = "lean"

    def __init__(self, seed, b=2, c=3, h=5, w=4, stencil=5):
        g = _gen(seed)
        self.x = _randn(b, c, h, w, g=g)
        self.z = _randn(b, c, h, w, g=g)
        self.params = (_randn(c, c, g=g), _randn(c, stencil, g=g))
        self.bias = _randn(c, g=g)

    def forward(self, x, *params, bias=None):
        return lean_conv2d(x, *params, bias)

    def adjoint(self, z, *params):
        return lean_conv2d_adjoint(z, *params)

    def reference(self, x, *params, bias=None):
        return lean_reference(x, *params, bias)


class SparseCase:
    name = "sparse"

    def __init__(self, seed, b=2, cin=4, cout=6, h=5, w=4, period=4, engine="masked"):
        g = _gen(seed)
        self.engine = engine
        self.mask = psc_mask(cin, cout, period=period)
        self.x = _randn(b, cin, h, w, g=g)
        self.z = _randn(b, cout, h, w, g=g)
        self.params = (_randn(int(self.mask.sum()), g=g),)
        self.bias = _randn(cout, g=g)

    def forward(self, x, w, bias=None):
        return sparse_conv2d(x, w, self.mask, bias, engine=self.engine)

    def adjoint(self, z, w):
        return sparse_conv2d_adjoint(z, w, self.mask, engine=self.engine)

    def reference(self, x, w, bias=None):
        return sparse_reference(x, w, self.mask, bias)


class DeformCase:
    name = "deform"

    def __init__(self, seed, b=2, cin=4, cout=6, h=5, w=6, k=3, stride=(1, 1), padding=(1, 1),
                 dilation=(1, 1), og=2, wg=2, modulated=True, scale=1.5, grid=False):
        g = _gen(seed)
        self.geo = dict(stride=stride, padding=padding, dilation=dilation)
        ho = (h + 2 * padding[0] - dilation[0] * (k - 1) - 1) // stride[0] + 1
        wo = (w + 2 * padding[1] - dilation[1] * (k - 1) - 1) // stride[1] + 1
        self.input_size = (h, w)
        self.x = _randn(b, cin, h, w, g=g)
        self.z = _randn(b, cout, ho, wo, g=g)
        offset = _randn(b, 2 * og * k * k, ho, wo, g=g) * scale
        if grid:  # integer offsets: samples exactly on grid lines, many outside the image
            offset = offset.round()
        self.offset = offset
        self.mask = torch.rand(b, og * k * k, ho, wo, generator=g, dtype=D) if modulated else None
        self.params = (_randn(cout, cin // wg, k, k, g=g),)
        self.groups = wg
        self.bias = _randn(cout, g=g)

    def forward(self, x, w, bias=None):
        return deform_conv2d(x, self.offset, w, bias, mask=self.mask, **self.geo)

    def adjoint(self, z, w):
        return deform_conv2d_adjoint(z, self.offset, w, self.input_size, mask=self.mask,
                                     groups=self.groups, **self.geo)

    def reference(self, x, w, bias=None):
        g = self.geo
        return deform_reference(x, self.offset, w, bias, g["stride"], g["padding"],
                                g["dilation"], self.mask)


def _dot_test(case, rtol=1e-12):
    lhs = (case.forward(case.x, *case.params) * case.z).sum()
    rhs = (case.x * case.adjoint(case.z, *case.params)).sum()
    assert torch.isclose(lhs, rhs, rtol=rtol, atol=1e-12), (lhs.item(), rhs.item())


def _forward_test(case):
    got = case.forward(case.x, *case.params, bias=case.bias)
    ref = case.reference(case.x, *case.params, bias=case.bias)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12), (got - ref).abs().max()


# --------------------------------------------------------------------------- lean


@given(seed=st.integers(0, 2**16), b=st.integers(1, 3), c=st.integers(1, 6),
       h=st.integers(1, 7), w=st.integers(1, 7), stencil=st.sampled_from(sorted(STENCILS)),
       chunk=st.sampled_from([1, 64, 1 << 20]))
def test_lean_forward_and_adjoint(seed, b, c, h, w, stencil, chunk, monkeypatch):
    monkeypatch.setattr(lean_impl, "_CHUNK_BYTES", chunk)  # one sample per chunk, or all at once
    case = LeanCase(seed, b, c, h, w, stencil)
    _forward_test(case)
    _dot_test(case)
    adj = case.adjoint(case.z, *case.params)
    ref = F.conv_transpose2d(case.z, _lean_dense_kernel(*case.params), padding=1)
    assert torch.allclose(adj, ref, rtol=1e-12, atol=1e-12)


def _lean_dense_kernel(w, s):
    kernel = torch.diag_embed(stencil_kernel(s)[:, 0].permute(1, 2, 0)).permute(2, 3, 0, 1).clone()
    kernel[:, :, 1, 1] += w
    return kernel


@pytest.mark.parametrize("stencil", sorted(STENCILS))
def test_lean_gradcheck_gradgradcheck(stencil):
    case = LeanCase(0, b=2, c=3, h=4, w=3, stencil=stencil)
    x = case.x.requires_grad_()
    w, s = (p.requires_grad_() for p in case.params)
    b = case.bias.requires_grad_()
    assert gradcheck(lean_conv2d, (x, w, s, b), check_forward_ad=True)
    assert gradgradcheck(lean_conv2d, (x, w, s, b))
    z = case.z.requires_grad_()
    assert gradcheck(lean_conv2d_adjoint, (z, w, s), check_forward_ad=True)
    assert gradgradcheck(lean_conv2d_adjoint, (z, w, s))


def test_lean_gradients_match_reference():
    """The fused first-order backward equals autograd through the dense reference."""
    case = LeanCase(3, b=3, c=5, h=6, w=7, stencil=9)
    leaves = [case.x, *case.params, case.bias]
    for t in leaves:
        t.requires_grad_()
    g = torch.randn(3, 5, 6, 7, dtype=D)
    got = torch.autograd.grad(lean_conv2d(*leaves), leaves, g)
    ref = torch.autograd.grad(lean_reference(*leaves), leaves, g)
    for a, r in zip(got, ref):
        assert torch.allclose(a, r, rtol=1e-12, atol=1e-12)


def test_lean_errors():
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ArgumentError, match="input: expected a 4-D tensor"):
        lean_conv2d(torch.randn(3, 4, 4), torch.randn(3, 3), torch.randn(3, 5))
    with pytest.raises(ArgumentError, match=r"weight: expected shape \(3, 3\)"):
        lean_conv2d(x, torch.randn(4, 3), torch.randn(3, 5))
    with pytest.raises(ArgumentError, match=r"stencil_weight: expected shape \(3, s\)"):
        lean_conv2d(x, torch.randn(3, 3), torch.randn(3, 6))
    with pytest.raises(ArgumentTypeError, match="weight: dtype"):
        lean_conv2d(x, torch.randn(3, 3, dtype=D), torch.randn(3, 5))
    with pytest.raises(ArgumentTypeError, match="input: expected a floating point"):
        lean_conv2d(x.long(), torch.randn(3, 3), torch.randn(3, 5))


# --------------------------------------------------------------------------- sparse


def test_psc_mask_is_the_authors_rule():
    """m = (i + j + 1) mod 8: {1, 5} top-left, {2, 6} top-right, {3, 7} bottom-left, 4
    bottom-right 2x2, 0 dense (REFERENCES: pSConv)."""
    mask = psc_mask(16, 24)
    windows = {
        "tl": torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.bool),
        "tr": torch.tensor([[0, 1, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.bool),
        "bl": torch.tensor([[0, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.bool),
        "br": torch.tensor([[0, 0, 0], [0, 1, 1], [0, 1, 1]], dtype=torch.bool),
        "dense": torch.ones(3, 3, dtype=torch.bool),
    }
    rule = {1: "tl", 5: "tl", 2: "tr", 6: "tr", 3: "bl", 7: "bl", 4: "br", 0: "dense"}
    for i in range(24):
        for j in range(16):
            assert torch.equal(mask[i, j], windows[rule[(i + j + 1) % 8]])
    assert int(mask.sum()) == 16 * 24 * 37 // 8


@given(seed=st.integers(0, 2**16), b=st.integers(1, 2), cin=st.integers(1, 9),
       cout=st.integers(1, 9), h=st.integers(1, 6), w=st.integers(1, 6),
       period=st.integers(1, 9))
def test_sparse_forward_and_adjoint(seed, b, cin, cout, h, w, period):
    case = SparseCase(seed, b, cin, cout, h, w, period)
    _forward_test(case)
    _dot_test(case)


@given(seed=st.integers(0, 2**16), b=st.integers(1, 3), cin=st.sampled_from([4, 8, 12, 16]),
       cout=st.sampled_from([4, 8, 16, 24]), h=st.integers(1, 7), w=st.integers(1, 7),
       period=st.sampled_from([4, 8, 16]), chunk=st.sampled_from([1, 4096, 1 << 19]))
def test_sparse_taps_engine(seed, b, cin, cout, h, w, period, chunk, monkeypatch):
    """The taps engine (work proportional to the support) is exact, in one or many chunks,
    and its first derivatives equal the masked dense kernel's."""
    from odenet.nn.functional import _sparse_engine

    monkeypatch.setattr(_sparse_engine, "_CHUNK_BYTES", chunk)
    case = SparseCase(seed, b, cin, cout, h, w, period, engine="taps")
    _forward_test(case)
    _dot_test(case)
    leaves = [case.x.requires_grad_(), case.params[0].requires_grad_(),
              case.bias.requires_grad_()]
    g = torch.randn(b, cout, h, w, dtype=D)
    got = torch.autograd.grad(case.forward(*leaves[:2], bias=leaves[2]), leaves, g)
    ref = torch.autograd.grad(case.reference(*leaves[:2], bias=leaves[2]), leaves, g)
    for a, r in zip(got, ref):
        assert torch.allclose(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ["masked", "taps"])
def test_sparse_gradcheck_gradgradcheck(engine):
    case = SparseCase(1, b=2, cin=8, cout=4, h=4, w=3, period=8, engine=engine)
    x, (w,), b = case.x.requires_grad_(), [p.requires_grad_() for p in case.params], case.bias
    b.requires_grad_()
    f = lambda x, w, b: case.forward(x, w, bias=b)  # noqa: E731
    assert gradcheck(f, (x, w, b), check_forward_ad=True) and gradgradcheck(f, (x, w, b))
    z = case.z.requires_grad_()
    assert gradcheck(case.adjoint, (z, w), check_forward_ad=True)
    assert gradgradcheck(case.adjoint, (z, w))


def test_sparse_errors():
    mask = psc_mask(4, 4)
    w = torch.randn(int(mask.sum()))
    with pytest.raises(ArgumentError, match=r"input: expected 4 channels"):
        sparse_conv2d(torch.randn(1, 3, 5, 5), w, mask)
    with pytest.raises(ArgumentError, match=r"weight: expected 64 values"):
        sparse_conv2d(torch.randn(1, 4, 5, 5), w[:-1], mask)
    with pytest.raises(ArgumentError, match="odd kernel size"):
        sparse_conv2d(torch.randn(1, 4, 5, 5), torch.randn(64), torch.ones(4, 4, 2, 2).bool())
    with pytest.raises(ArgumentTypeError, match="mask: expected a boolean"):
        sparse_conv2d(torch.randn(1, 4, 5, 5), w, mask.float())
    with pytest.raises(ArgumentError, match="pattern: unknown pattern"):
        psc_mask(4, 4, pattern="psc2")
    with pytest.raises(ArgumentError, match="period: expected a positive int"):
        psc_mask(4, 4, period=0)
    with pytest.raises(ArgumentError, match="engine: expected one of"):
        sparse_conv2d(torch.randn(1, 4, 5, 5), w, mask, engine="fast")
    with pytest.raises(ArgumentError, match="engine: 'taps' needs"):
        sparse_conv2d(torch.randn(1, 6, 5, 5), torch.randn(int(psc_mask(6, 6).sum())),
                      psc_mask(6, 6), engine="taps")


# --------------------------------------------------------------------------- deformable


@settings(max_examples=12)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 2), groups=st.sampled_from([(1, 1), (2, 1),
       (1, 2), (2, 2)]), cmul=st.integers(1, 2), h=st.integers(1, 6), w=st.integers(1, 6),
       k=st.sampled_from([1, 2, 3]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       dilation=st.integers(1, 2), modulated=st.booleans(), scale=st.sampled_from([0.5, 2.0, 6.0]),
       grid=st.booleans())
def test_deform_forward_and_adjoint(seed, b, groups, cmul, h, w, k, stride, padding, dilation,
                                    modulated, scale, grid):
    og, wg = groups
    cin, cout = 2 * cmul * max(og, wg), 2 * wg
    span = dilation * (k - 1)
    if h + 2 * padding - span < 1 or w + 2 * padding - span < 1:
        return  # no output pixels; the error is tested separately
    case = DeformCase(seed, b, cin, cout, h, w, k, (stride, stride), (padding, padding),
                      (dilation, dilation), og, wg, modulated, scale, grid)
    _forward_test(case)
    _dot_test(case)


def test_deform_samples_on_grid_lines_and_outside():
    """Integer offsets land exactly on pixels (the value is that pixel), and points at or
    beyond -1 / H contribute nothing."""
    x = torch.arange(1.0, 26.0, dtype=D).view(1, 1, 5, 5)
    w = torch.ones(1, 1, 1, 1, dtype=D)
    off = torch.zeros(1, 2, 5, 5, dtype=D)
    off[0, 0], off[0, 1] = 1.0, 2.0  # sample (y + 1, x + 2)
    y = deform_conv2d(x, off, w)
    expected = torch.zeros(5, 5, dtype=D)
    expected[:4, :3] = x[0, 0, 1:, 2:]
    assert torch.equal(y[0, 0], expected)
    off[0, 0], off[0, 1] = -1.0, 0.0  # y - 1: row 0 samples y = -1 exactly -> 0
    y = deform_conv2d(x, off, w)
    assert torch.equal(y[0, 0, 0], torch.zeros(5, dtype=D))
    assert torch.equal(y[0, 0, 1:], x[0, 0, :4])
    off[0, 0] = -0.5  # half way to the border: half the first row
    y = deform_conv2d(x, off, w)
    assert torch.allclose(y[0, 0, 0], 0.5 * x[0, 0, 0], rtol=0, atol=1e-15)
    off[0, 0] = 100.0
    assert torch.equal(deform_conv2d(x, off, w), torch.zeros_like(y))


@pytest.mark.parametrize("modulated", [True, False])
def test_deform_gradcheck_gradgradcheck(modulated):
    groups = 2 if modulated else 1
    case = DeformCase(2, b=1, cin=2 * groups, cout=2, h=3, w=3, og=groups, wg=groups,
                      modulated=modulated)
    x, (w,), b = case.x.requires_grad_(), [p.requires_grad_() for p in case.params], case.bias
    b.requires_grad_()
    off = case.offset.requires_grad_()
    inputs = [x, off, w, b]
    if modulated:
        inputs.append(case.mask.requires_grad_())

    def f(x, off, w, b, m=None):
        return deform_conv2d(x, off, w, b, padding=1, mask=m)

    assert gradcheck(f, inputs, check_forward_ad=True)
    if modulated:
        assert gradgradcheck(f, inputs)
    else:  # second derivatives in the input and offsets only (cheaper)
        assert gradgradcheck(lambda x, off: f(x, off, w.detach(), b.detach()), (x, off))


def test_deform_adjoint_differentiable():
    case = DeformCase(4, b=1, cin=2, cout=2, h=3, w=3, og=1, wg=1)
    z, (w,) = case.z.requires_grad_(), [p.requires_grad_() for p in case.params]
    off, m = case.offset.requires_grad_(), case.mask.requires_grad_()

    def f(z, off, w, m):
        return deform_conv2d_adjoint(z, off, w, (3, 3), padding=1, mask=m)

    assert gradcheck(f, (z, off, w, m))


def test_deform_float32_matches_float64():
    case = DeformCase(5, b=2, cin=4, cout=6, h=7, w=6, og=2, wg=1)
    ref = case.forward(case.x, *case.params)
    got = deform_conv2d(case.x.float(), case.offset.float(), case.params[0].float(), padding=1,
                        mask=case.mask.float())
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=1e-4)


def test_deform_errors():
    x, w = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3)
    off, m = torch.zeros(2, 18, 6, 6), torch.ones(2, 9, 6, 6)
    with pytest.raises(ShapeError, match=r"offset: the shape of.*\(2, 2 \* offset_groups"):
        deform_conv2d(x, torch.zeros(2, 17, 6, 6), w, padding=1)
    with pytest.raises(ArgumentError, match=r"\(2, 18, 6, 6\), does not fit.*e.g. \(2, 18, 4, 4\)"):
        deform_conv2d(x, off, w)  # padding 0 gives a 4x4 output
    with pytest.raises(ArgumentError, match=r"mask: .*expected shape \(2, 9, 6, 6\)"):
        deform_conv2d(x, off, w, padding=1, mask=torch.ones(2, 18, 6, 6))
    with pytest.raises(ArgumentError, match="input: expected a 4-D tensor"):
        deform_conv2d(x[0], off, w, padding=1)
    with pytest.raises(ArgumentError, match=r"weight: dimension 1 \(3\) must divide"):
        deform_conv2d(x, off, torch.randn(3, 3, 3, 3), padding=1)
    with pytest.raises(ArgumentError, match="too small"):
        deform_conv2d(torch.randn(1, 4, 2, 2), torch.zeros(1, 18, 1, 1), w)
    with pytest.raises(ArgumentError, match="stride: expected values >= 1"):
        deform_conv2d(x, off, w, padding=1, stride=0)
    with pytest.raises(ArgumentTypeError, match="offset: dtype"):
        deform_conv2d(x, off.double(), w, padding=1, mask=m)
    with pytest.raises(ArgumentError, match=r"input: expected shape \(2, 3, 6, 6\)"):
        deform_conv2d_adjoint(torch.randn(2, 3, 5, 5), off, w, (6, 6), padding=1)


# --------------------------------------------------------------------------- torchvision, CUDA


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="torchvision is not installed (it is never a dependency)")
@pytest.mark.parametrize("modulated", [True, False])
def test_deform_matches_torchvision(modulated):
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    case = DeformCase(7, b=2, cin=4, cout=6, h=7, w=8, stride=(2, 1), padding=(1, 2),
                      dilation=(1, 2), og=2, wg=2, modulated=modulated, scale=3.0)
    leaves = [case.x, case.offset, case.params[0], case.bias]
    if modulated:
        leaves.append(case.mask)
    for t in leaves:
        t.requires_grad_()
    args = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    ours = deform_conv2d(*leaves[:4], mask=leaves[4] if modulated else None, **args)
    theirs = tv_deform_conv2d(*leaves[:4], mask=leaves[4] if modulated else None, **args)
    assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(theirs, leaves, g)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_ops_on_cuda_match_cpu(cuda):
    lean = LeanCase(0, b=2, c=8, h=9, w=7, stencil=5)
    sparse = SparseCase(0, cin=8, cout=16, period=8, engine="taps")
    deform = DeformCase(0)
    for case in (lean, sparse, deform):
        ref = case.forward(case.x, *case.params, bias=case.bias)
        moved = [p.to(cuda) for p in case.params]
        if case is sparse:
            case.mask = case.mask.to(cuda)
        if case is deform:
            case.offset, case.mask = case.offset.to(cuda), case.mask.to(cuda)
        got = case.forward(case.x.to(cuda), *moved, bias=case.bias.to(cuda))
        assert torch.allclose(got.cpu(), ref, rtol=1e-10, atol=1e-10), case.name
