"""torchvision's ``TestDeformConv`` behaviour, in our words, for ``deform_conv2d``.

The cases follow what torchvision's own test class checks on the CPU (TorchScript
aside): the forward pass against a pixel-loop reference with weight groups, offset
groups, unequal strides, padding and dilation, with and without a mask, for an empty
and a non-empty batch, on contiguous and non-contiguous tensors; gradients by finite
differences in float64 in the same settings; wrong offset and mask sizes as a
``RuntimeError`` naming the shape. Beyond those: the offset gradient's rule at samples
exactly on ``-1`` and on the last row or column, empty channel dimensions, and any
strides for every input.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from test_ops import deform_reference
from torch.autograd import gradcheck

from odenet.errors import ArgumentError, ShapeError
from odenet.nn import DeformConv2d
from odenet.nn.functional import deform_conv2d

D = torch.float64
# torchvision's geometry: 6 input channels in 2 weight groups and 3 offset groups,
# a 3x2 kernel, stride (2, 1), padding (1, 0), dilation (2, 1) on a 5x4 image
CIN, COUT, WG, OG, KH, KW = 6, 2, 2, 3, 3, 2
GEO = dict(stride=(2, 1), padding=(1, 0), dilation=(2, 1))
H, W = 5, 4
HO = (H + 2 * 1 - (2 * (KH - 1) + 1)) // 2 + 1
WO = (W + 2 * 0 - (1 * (KW - 1) + 1)) // 1 + 1


def _scramble(t: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """The same values in a non-contiguous layout (made contiguous in another order)."""
    inverse = [order.index(i) for i in range(t.ndim)]
    return t.permute(*order).contiguous().permute(*inverse)


def _args(batch: int, contiguous: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, CIN, H, W, generator=g, dtype=D)
    offset = torch.randn(batch, OG * 2 * KH * KW, HO, WO, generator=g, dtype=D)
    mask = torch.randn(batch, OG * KH * KW, HO, WO, generator=g, dtype=D)
    weight = torch.randn(COUT, CIN // WG, KH, KW, generator=g, dtype=D)
    bias = torch.randn(COUT, generator=g, dtype=D)
    if not contiguous:
        x = _scramble(x, (0, 1, 3, 2))
        offset = _scramble(offset, (1, 3, 0, 2))
        mask = _scramble(mask, (1, 3, 0, 2))
        weight = _scramble(weight, (3, 2, 0, 1))
        assert not weight.is_contiguous()
        assert batch == 0 or not (x.is_contiguous() or offset.is_contiguous())
    return [t.requires_grad_() for t in (x, offset, mask, weight, bias)]


def _reference(x, offset, mask, weight, bias):
    if x.shape[0] == 0:
        return torch.zeros(0, COUT, HO, WO, dtype=D)
    return deform_reference(x, offset, weight, bias, GEO["stride"], GEO["padding"],
                            GEO["dilation"], mask)


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("batch", [0, 5])
def test_forward_against_pixel_loop(contiguous, batch):
    x, offset, mask, weight, bias = _args(batch, contiguous)
    got = deform_conv2d(x, offset, weight, bias, mask=mask, **GEO)
    assert got.shape == (batch, COUT, HO, WO)
    torch.testing.assert_close(got, _reference(x, offset, mask, weight, bias),
                               rtol=1e-10, atol=1e-10)
    got = deform_conv2d(x, offset, weight, bias, **GEO)  # no modulation
    torch.testing.assert_close(got, _reference(x, offset, None, weight, bias),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("batch", [0, 3])
def test_gradients_by_finite_differences(contiguous, batch):
    x, offset, mask, weight, bias = _args(batch, contiguous, seed=1)

    def modulated(x_, offset_, mask_, weight_, bias_):
        return deform_conv2d(x_, offset_, weight_, bias_, mask=mask_, **GEO)

    def plain(x_, offset_, weight_, bias_):
        return deform_conv2d(x_, offset_, weight_, bias_, **GEO)

    assert gradcheck(modulated, (x, offset, mask, weight, bias), fast_mode=True)
    assert gradcheck(plain, (x, offset, weight, bias), fast_mode=True)


def test_wrong_sizes_raise_runtime_errors_naming_the_shape():
    x, offset, mask, weight, _ = _args(10, True)
    with pytest.raises(RuntimeError, match="the shape of the offset") as err:
        deform_conv2d(x, torch.rand_like(offset[:, :2]), weight, **GEO)
    assert isinstance(err.value, ShapeError) and isinstance(err.value, ArgumentError)
    assert f"(10, 2 * offset_groups * {KH} * {KW}, {HO}, {WO})" in str(err.value)
    with pytest.raises(RuntimeError, match=r"mask.shape\[1\] is not valid") as err:
        deform_conv2d(x, offset, weight, mask=torch.rand_like(mask[:, :2]), **GEO)
    assert f"expected shape (10, {OG * KH * KW}, {HO}, {WO})" in str(err.value)
    with pytest.raises(RuntimeError, match="the shape of the offset"):  # shape before dtype
        deform_conv2d(x, torch.rand_like(offset[:, :2]), weight.detach().float(), **GEO)
    with pytest.raises(RuntimeError, match="the shape of the offset"):  # wrong batch
        deform_conv2d(x, offset[:3], weight, **GEO)
    with pytest.raises(RuntimeError, match="the shape of the offset"):  # wrong size
        deform_conv2d(x, offset[..., :1], weight, **GEO)


# ------------------------------------------------------------------ empty sizes


@pytest.mark.parametrize(
    "shapes, out",
    [
        (((0, 2, 5, 5), (0, 18, 5, 5), (3, 2, 3, 3)), (0, 3, 5, 5)),  # empty batch
        (((2, 2, 5, 5), (2, 18, 5, 5), (0, 2, 3, 3)), (2, 0, 5, 5)),  # no output channels
        (((2, 0, 5, 5), (2, 18, 5, 5), (3, 0, 3, 3)), (2, 3, 5, 5)),  # no input channels
        (((0, 0, 5, 5), (0, 18, 5, 5), (0, 0, 3, 3)), (0, 0, 5, 5)),  # nothing at all
    ],
)
@pytest.mark.parametrize("modulated", [False, True])
def test_empty_sizes_give_empty_outputs_and_zero_gradients(shapes, out, modulated):
    x, offset, weight = (torch.rand(s, dtype=D, requires_grad=True) for s in shapes)
    bias = torch.randn(shapes[2][0], dtype=D, requires_grad=True)
    mask = torch.rand(shapes[1][0], 9, 5, 5, dtype=D, requires_grad=True) if modulated else None
    y = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    assert y.shape == out
    # with no input channels the sum over them is empty: only the bias is left
    torch.testing.assert_close(y, bias.detach().view(1, -1, 1, 1).expand(out))
    leaves = [x, offset, weight, bias] + ([mask] if modulated else [])
    grads = torch.autograd.grad(y.sum(), leaves, allow_unused=True)
    for leaf, grad in zip(leaves[:3], grads[:3]):
        assert grad is not None and grad.shape == leaf.shape
        assert not grad.any()
    if modulated:
        assert grads[4] is not None and grads[4].shape == mask.shape and not grads[4].any()


def test_module_on_an_empty_batch():
    layer = DeformConv2d(2, 3)
    x = torch.rand(0, 2, 5, 5, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 3, 5, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())


# ------------------------------------------------------------------ strides


@pytest.mark.parametrize(
    "layout",
    ["transposed-weight", "channels-last", "sliced", "broadcast", "all"],
)
def test_any_strides_for_every_input(layout):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 6, 7, generator=g, dtype=D)
    offset = 2 * torch.randn(2, 2 * 2 * 9, 6, 7, generator=g, dtype=D)
    mask = torch.rand(2, 2 * 9, 6, 7, generator=g, dtype=D)
    weight = torch.randn(6, 2, 3, 3, generator=g, dtype=D)
    bias = torch.randn(6, generator=g, dtype=D)
    ref = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    if layout in ("transposed-weight", "all"):
        weight = weight.transpose(2, 3).contiguous().transpose(2, 3)
    if layout in ("channels-last", "all"):
        x = x.contiguous(memory_format=torch.channels_last)
        offset = offset.contiguous(memory_format=torch.channels_last)
    if layout in ("sliced", "all"):
        mask = torch.stack([mask, mask], -1)[..., 0]
        bias = torch.stack([bias, bias], -1)[:, 1]
    if layout == "broadcast":  # stride 0: one offset field for the whole batch
        offset = offset[:1].expand(2, -1, -1, -1)
        mask = mask[:1].expand(2, -1, -1, -1)
        ref = deform_conv2d(x, offset.contiguous(), weight, bias, padding=1,
                            mask=mask.contiguous())
    leaves = [t.requires_grad_() if t.is_leaf else t for t in (x, offset, mask, weight, bias)]
    got = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert all(t.is_contiguous() for t in (got,))
    if layout == "all":
        leaves = [x, offset, mask, weight, bias]
        for t in leaves:
            t.requires_grad_()
        assert gradcheck(lambda *a: deform_conv2d(*a[:2], a[3], a[4], padding=1, mask=a[2]),
                         leaves, fast_mode=True)


# ------------------------------------------------------------------ the offset gradient's rule


def _right_derivative(x, offset, weight, index, mask=None, eps=1e-7):
    """d out / d offset[index] from the right, by a one-sided difference (linear there)."""
    shifted = offset.clone()
    shifted[index] += eps
    base = deform_conv2d(x, offset, weight, padding=1, mask=mask)
    return (deform_conv2d(x, shifted, weight, padding=1, mask=mask) - base) / eps


@pytest.mark.parametrize(
    "where",
    [(-1.0, 0.3), (0.3, -1.0), (-1.0, -1.0), (4.0, 0.3), (0.3, 5.0), (4.0, 5.0), (2.0, 3.0),
     (-0.5, 2.0), (-1.5, 2.0), (5.0, 2.0)],
)
def test_offset_gradient_is_the_right_derivative_everywhere(where):
    """A sample exactly on row or column -1, on the last row or column (here 4 and 5 of a
    5x6 image), at an interior integer point or anywhere else: the offset gradient is the
    one-sided right derivative, as torchvision computes it. Points at or beyond H (or W)
    and at or below -2 see nothing on either side."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=D)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=D)
    offset = torch.zeros(1, 18, 5, 6, dtype=D)
    # tap (1, 1) of output pixel (0, 0) samples at (dy, dx) exactly
    offset[0, 8, 0, 0], offset[0, 9, 0, 0] = where
    offset.requires_grad_()
    out = deform_conv2d(x, offset, weight, padding=1)
    gout = torch.randn(out.shape, generator=g, dtype=D)
    (grad,) = torch.autograd.grad(out, offset, gout)
    for channel in (8, 9):
        index = (0, channel, 0, 0)
        expected = (_right_derivative(x, offset.detach(), weight, index) * gout).sum()
        assert abs(float(grad[index]) - float(expected)) < 1e-6, (where, channel)


def test_fresh_module_offset_gradient_matches_one_sided_differences():
    """A fresh DeformConv2d predicts zero offsets, so with padding 1 its border taps sample
    exactly on -1 and on the last row and column: every offset-gradient entry is the right
    derivative, none is silently zero."""
    torch.manual_seed(0)
    layer = DeformConv2d(2, 3).double()
    x = torch.randn(1, 2, 5, 5, dtype=D)
    offset, mask = layer.sampling(x)
    offset, mask = offset.detach().requires_grad_(), mask.detach()
    weight = layer.weight.detach()
    out = deform_conv2d(x, offset, weight, padding=1, mask=mask)
    gout = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, offset, gout)
    assert not offset.any() and offset.numel() == 450
    expected = torch.zeros_like(grad)
    for index in torch.cartesian_prod(*(torch.arange(n) for n in offset.shape)).tolist():
        expected[tuple(index)] = (
            _right_derivative(x, offset.detach(), weight, tuple(index), mask) * gout
        ).sum()
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-6)
    # the entries whose sample sits exactly on -1 in their own direction, the other
    # coordinate inside the image: each has a non-zero right derivative (the rule before
    # made all of them zero)
    on_minus_one = torch.zeros_like(grad, dtype=torch.bool)
    for i in range(3):
        for j in range(3):
            for oy in range(5):
                for ox in range(5):
                    y, x = oy - 1 + i, ox - 1 + j
                    on_minus_one[0, 2 * (3 * i + j), oy, ox] = y == -1 and -1 < x < 5
                    on_minus_one[0, 2 * (3 * i + j) + 1, oy, ox] = x == -1 and -1 < y < 5
    assert int(on_minus_one.sum()) == 26
    assert bool(grad[on_minus_one].ne(0).all())


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="torchvision is not installed (it is never a dependency)")
def test_edge_rule_matches_torchvision():
    from torchvision.ops import deform_conv2d as tv_deform_conv2d

    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 5, 6, generator=g, dtype=D)
    weight = torch.randn(3, 4, 3, 3, generator=g, dtype=D, requires_grad=True)
    # integer offsets between -3 and 3: many samples on -1, on the last row and column
    offset = torch.randint(-3, 4, (2, 18, 5, 6), generator=g).to(D).requires_grad_()
    mask = torch.rand(2, 9, 5, 6, generator=g, dtype=D, requires_grad=True)
    leaves = (x.requires_grad_(), offset, weight, mask)
    ours = deform_conv2d(x, offset, weight, padding=1, mask=mask)
    theirs = tv_deform_conv2d(x, offset, weight, padding=1, mask=mask)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    gout = torch.randn(ours.shape, generator=g, dtype=D)
    for a, b in zip(torch.autograd.grad(ours, leaves, gout),
                    torch.autograd.grad(theirs, leaves, gout)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
