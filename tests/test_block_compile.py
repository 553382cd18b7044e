"""ODEBlock(compile=k): the solve as repeated calls of one compiled chunk of k steps."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError

F64 = torch.float64


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                       torch.nn.Linear(8, 4)).double()

    def forward(self, t, y):
        return self.net(y)


@pytest.mark.parametrize("gradient", ["backprop", "anode"])
def test_compiled_chunks_equal_the_eager_block(gradient):
    torch.manual_seed(0)
    rhs = MLP()
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    torch._dynamo.reset()
    counters.clear()
    eager = odenet.nn.ODEBlock(rhs, T=0.9, steps=6, gradient=gradient)
    comp = odenet.nn.ODEBlock(rhs, T=0.9, steps=6, gradient=gradient, compile=3)
    ye, yc = eager(x), comp(x)
    torch.testing.assert_close(yc, ye, rtol=0, atol=1e-13)
    ge = torch.autograd.grad(ye.square().sum(), [x, *rhs.parameters()])
    gc = torch.autograd.grad(comp(x).square().sum(), [x, *rhs.parameters()])
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert counters["stats"]["unique_graphs"] == 1  # both chunks, all calls: one graph
    assert "compile=3" in repr(comp)


def test_compiled_chunks_with_a_tuple_state():
    class Oscillator(torch.nn.Module):
        def forward(self, t, y):
            q, p = y
            return p, -q

    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    eager = odenet.nn.ODEBlock(Oscillator(), steps=4, gradient="backprop")
    comp = odenet.nn.ODEBlock(Oscillator(), steps=4, gradient="backprop", compile=2)
    for a, b in zip(comp(y0), eager(y0)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_compile_bad_input():
    rhs = MLP()
    with pytest.raises(ArgumentTypeError, match="^compile: expected True, False or a positive"):
        odenet.nn.ODEBlock(rhs, compile=0.5)
    with pytest.raises(ArgumentTypeError, match="^compile:"):
        odenet.nn.ODEBlock(rhs, compile=-2)
    with pytest.raises(ArgumentError, match="^compile: a compiled block needs gradient="):
        odenet.nn.ODEBlock(rhs, gradient="adjoint", compile=True)
    with pytest.raises(ArgumentError, match="^compile: a compiled block needs an explicit"):
        odenet.nn.ODEBlock(rhs, method="dopri5", compile=True)
    assert odenet.nn.ODEBlock(rhs, compile=True).compile == 10
    assert odenet.nn.ODEBlock(rhs).compile == 0
