"""torch.compile: one graph for odeint and ODEBlock, no recompiles for new step sizes.

Dynamo decides graph breaks and recompiles whatever the backend; the tests use the
``aot_eager`` backend (AOTAutograd traces forward and backward graphs, checkpointing
included) to keep them short. tests/benchmarks/bench_compile.py measures inductor.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import odenet
from odenet.errors import ArgumentError, GradientError

BACKEND = "aot_eager"


class _MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
        ).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)  # time-dependent: stage times matter


def _grads(module, *tensors):
    return [p.grad.clone() for p in module.parameters()] + [x.grad.clone() for x in tensors]


def _zero(module, *tensors):
    module.zero_grad()
    for x in tensors:
        x.grad = None


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("gradient", ["backprop", "anode"])
def test_odeint_compiles_to_one_graph_for_every_step_size(gradient):
    f = _MLP()

    def solve(y0, t):
        return odenet.odeint(f, y0, t, method="rk4", gradient=gradient)

    compiled = torch.compile(solve, fullgraph=True, backend=BACKEND)
    for T in (0.5, 1.0, 2.0):  # three step sizes T / 4, same number of steps
        t = torch.linspace(0.0, T, 5, dtype=torch.float64)
        y0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        out = compiled(y0, t)
        out.square().sum().backward()
        got = _grads(f, y0)
        _zero(f, y0)
        ref = solve(y0, t)
        ref.square().sum().backward()
        torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-14)
        for g, r in zip(got, _grads(f, y0)):
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13)
        _zero(f, y0)
    assert counters["stats"]["unique_graphs"] == 1  # no recompiles
    assert not counters["graph_break"]


def test_a_compiled_solve_equals_the_eager_solve_on_its_grid():
    # compiled: t is the grid; eager: the same grid from a step size
    f = _MLP()
    y0 = torch.randn(2, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    with torch.no_grad():
        got = torch.compile(
            lambda y: odenet.odeint(f, y, t, method="midpoint")[-1], fullgraph=True,
            backend=BACKEND,
        )(y0)
        ref = odenet.odeint(f, y0, t[[0, -1]], method="midpoint", step_size=0.1)[-1]
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-14)


def test_odeblock_compiles_to_one_graph_with_anode():
    torch.manual_seed(1)
    rhs = odenet.nn.ResidualRHS(odenet.nn.DenseConv2d(2, 2), activation="tanh")
    block = odenet.nn.ODEBlock(rhs, steps=3, method="rk4", gradient="anode").double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(block, fullgraph=True, backend=BACKEND)
    out = compiled(x)
    out.square().sum().backward()
    got = _grads(block, x)
    _zero(block, x)
    ref = block(x)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-13)
    for g, r in zip(got, _grads(block, x)):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-12)
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]


def test_what_cannot_be_compiled_is_refused_by_name():
    f = _MLP()
    y0 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    # (with fullgraph=True dynamo reports them as an "observed exception" of the traced code)
    with pytest.raises(GradientError, match="gradient='revolve' cannot be compiled"):
        torch.compile(lambda y: odenet.odeint(f, y, t, gradient="revolve"), backend=BACKEND)(y0)
    with pytest.raises(ArgumentError, match="step_size: under torch.compile"):
        torch.compile(lambda y: odenet.odeint(f, y, t, step_size=0.1), backend=BACKEND)(y0)
