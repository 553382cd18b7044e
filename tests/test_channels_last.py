"""Memory layout and state forms: channels-last preserved, tuple states in ODEBlock."""

from __future__ import annotations

import pytest
import torch

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError

CL = torch.channels_last


def _cl(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    return x, x.contiguous(memory_format=CL)


def test_convfft_keeps_channels_last():
    x, xc = _pair()
    L = odenet.linear.ConvFFT(torch.randn(4, 1, 3, 3, dtype=torch.float64))
    for f in (L, L.adjoint, lambda y: L.solve(y, 0.3)):
        out = f(xc)
        assert _cl(out)
        torch.testing.assert_close(out, f(x), rtol=1e-14, atol=1e-14)
    xg = xc.clone().requires_grad_()
    out = L.solve(xg, 0.3)  # through the autograd Function too
    assert _cl(out)
    out.sum().backward()


def test_deform_conv_keeps_channels_last():
    x, xc = _pair(1)
    op = odenet.nn.DeformConv2d(4, 4).double()
    torch.nn.init.normal_(op.offset_conv.weight, std=0.2)
    assert _cl(op(xc)) and _cl(op.adjoint(xc, xc))
    torch.testing.assert_close(op(xc), op(x), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("gradient", ["backprop", "anode"])
def test_blocks_keep_channels_last(gradient):
    x, xc = _pair(2)
    blocks = [
        odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.DenseConv2d(4, 4)), steps=2,
                           gradient=gradient),
        odenet.nn.IMEXBlock(odenet.nn.DenseConv2d(4, 4), steps=2, gradient=gradient),
    ]
    for block in blocks:
        block = block.double()
        out = block(xc)
        assert _cl(out), type(block).__name__
        torch.testing.assert_close(out, block(x), rtol=1e-12, atol=1e-12)


class _Oscillator(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.3, dtype=torch.float64))

    def forward(self, t, y):
        q, p = y
        return p, -self.w**2 * q


@pytest.mark.parametrize("gradient", ["backprop", "anode", "revolve", "adjoint"])
def test_odeblock_takes_tuple_states_as_odeint_does(gradient):
    f = _Oscillator()
    block = odenet.nn.ODEBlock(f, T=1.5, steps=6, method="rk4", gradient=gradient)
    q0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    p0 = torch.zeros(2, dtype=torch.float64)
    q, p = block((q0, p0))
    ref = odenet.odeint(f, (q0, p0), torch.tensor([0.0, 1.5], dtype=torch.float64),
                        method="rk4", step_size=0.25, gradient=gradient)
    torch.testing.assert_close(q, ref[0][-1], rtol=0, atol=0)
    torch.testing.assert_close(p, ref[1][-1], rtol=0, atol=0)
    (q.sum() + p.sum()).backward()
    assert q0.grad is not None and f.w.grad is not None
    with pytest.raises(ArgumentTypeError, match=r"got tuple holding a float as y\[1\]"):
        block((q0, 1.0))


def test_a_step_size_that_requires_grad_is_refused():
    h = torch.tensor(0.1, requires_grad=True)
    with pytest.raises(ArgumentError, match="step_size: a tensor that requires grad"):
        odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), step_size=h)
    y = odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]),
                      step_size=h.detach())
    assert y.shape == (2, 2)
