"""Low precision: autocast (CPU bfloat16; CUDA float16/bfloat16) and half-precision inputs.

Every number is compared with the same computation in float64. Bounds in units of
bfloat16's machine epsilon (8 significant bits: eps = 2**-7, a rounding moves a value by at
most eps / 2 relative).
"""

from __future__ import annotations

import pytest
import torch

import odenet

BF16_EPS = torch.finfo(torch.bfloat16).eps  # 2**-7

DEVICES = [("cpu", torch.bfloat16)]
if torch.cuda.is_available():
    DEVICES += [("cuda", torch.float16), ("cuda", torch.bfloat16)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


def test_convfft_solves_half_precision_in_float32_and_rounds_only_the_result():
    torch.manual_seed(0)
    w = torch.randn(3, 1, 3, 3)
    r = torch.randn(2, 3, 12, 12).bfloat16()
    L = odenet.linear.ConvFFT(w)
    x = L.solve(r, 0.7)
    assert x.dtype == torch.bfloat16
    ref = odenet.linear.ConvFFT(w.double()).solve(r.double(), 0.7)
    # float32 transforms, then one rounding to bfloat16: within half a bf16 ulp of each value
    # (plus float32 round-off of the solve)
    err = (x.double() - ref).abs()
    assert bool((err <= BF16_EPS / 2 * ref.abs() + 1e-5 * ref.abs().max()).all())
    y = L(r)
    assert y.dtype == torch.bfloat16
    assert _rel(y, odenet.linear.ConvFFT(w.double())(r.double())) <= BF16_EPS
    # a half-precision operator (module.bfloat16()) solves in float32 too
    Lh = odenet.linear.ConvFFT(w.bfloat16())
    assert _rel(Lh.solve(r, 0.7), odenet.linear.ConvFFT(w.bfloat16().double()).solve(
        r.double(), 0.7)) <= BF16_EPS


def test_convfft_half_precision_gradients():
    torch.manual_seed(1)
    w = torch.randn(2, 1, 3, 3, requires_grad=True)
    r = torch.randn(1, 2, 8, 8).bfloat16().requires_grad_()
    odenet.linear.ConvFFT(w).solve(r, 0.5).float().square().sum().backward()
    w64 = w.detach().double().requires_grad_()
    r64 = r.detach().double().requires_grad_()
    odenet.linear.ConvFFT(w64).solve(r64, 0.5).square().sum().backward()
    assert r.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert _rel(r.grad, r64.grad) <= 2 * BF16_EPS
    assert _rel(w.grad, w64.grad) <= 2 * BF16_EPS


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_deform_conv_under_autocast(device, dtype):
    torch.manual_seed(2)
    op = odenet.nn.DeformConv2d(4, 4).to(device)
    torch.nn.init.normal_(op.offset_conv.weight, std=0.2)  # non-trivial offsets and mask
    x = torch.randn(2, 4, 9, 9, device=device)
    with torch.autocast(device, dtype=dtype):
        out = op(x)
        adj = op.adjoint(torch.randn_like(out), x)
    assert out.dtype == torch.float32 and adj.dtype == torch.float32
    ref = op.double()(x.double())
    # only the offset convolution runs in low precision: the sampling positions carry its
    # rounding, the sampling and the convolution are float32
    assert _rel(out, ref) <= 4 * BF16_EPS


@pytest.mark.parametrize("device,dtype", DEVICES)
@pytest.mark.parametrize("gradient", ["anode", "revolve"])
def test_odeblock_under_autocast_keeps_a_full_precision_state(device, dtype, gradient):
    torch.manual_seed(3)
    rhs = odenet.nn.ResidualRHS(odenet.nn.DenseConv2d(3, 3), activation="tanh")
    block = odenet.nn.ODEBlock(rhs, steps=4, method="rk4", gradient=gradient).to(device)
    x = torch.randn(2, 3, 6, 6, device=device, requires_grad=True)
    with torch.autocast(device, dtype=dtype):
        out = block(x)
    assert out.dtype == torch.float32  # the state stays float32, f runs in low precision
    out.square().sum().backward()
    got = [p.grad.clone() for p in block.parameters()]
    # the strategies' recomputations re-enter autocast (without its cast cache, which would
    # sum a weight's gradient in low precision): their gradients are backprop's
    block.zero_grad()
    block.gradient = odenet.Backprop()
    with torch.autocast(device, dtype=dtype, cache_enabled=False):
        ref_bp = block(x)
    ref_bp.square().sum().backward()
    for g, p in zip(got, block.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
    # against float64: four steps of a bf16 right-hand side
    ref = block.double()(x.detach().double())
    assert _rel(out.detach(), ref) <= 4 * BF16_EPS


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_imex_block_under_autocast(device, dtype):
    torch.manual_seed(4)
    block = odenet.nn.IMEXBlock(odenet.nn.DenseConv2d(3, 3), steps=2, method="ars222").to(device)
    x = torch.randn(2, 3, 8, 8, device=device)
    with torch.autocast(device, dtype=dtype):
        out = block(x)
    assert out.dtype == torch.float32
    ref = block.double()(x.double())
    assert _rel(out.detach(), ref) <= 4 * BF16_EPS
