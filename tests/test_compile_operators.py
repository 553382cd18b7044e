"""torch.compile(fullgraph=True) of every operator and engine: no graph break, and the
forward pass and the gradients of the compiled call equal the eager ones.

Under tracing the compiled kernels and the engines dynamo cannot trace (the chunked and taps
Functions, the deformable Function with its custom forward mode) hand over to traceable forms:
the vendor convolutions, the differentiable composite. ConvFFT stays out of the graph."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from odenet.linear import ConvFFT
from odenet.nn import DeformConv2d, LeanConv2d, SparseConv2d


def _ops():
    torch.manual_seed(0)
    return {
        "lean-auto": LeanConv2d(8, 8),
        "lean-fused": LeanConv2d(8, 8, engine="fused"),
        "lean-chunked": LeanConv2d(8, 8, engine="chunked"),
        "lean-conv": LeanConv2d(8, 8, engine="conv"),
        "sparse-auto": SparseConv2d(8, 8),
        "sparse-taps": SparseConv2d(8, 8, period=4, engine="taps"),
        "sparse-masked": SparseConv2d(8, 8, engine="masked"),
        "deform": DeformConv2d(8, 8),
    }


@pytest.mark.parametrize("name", list(_ops()))
def test_fullgraph_compile_matches_eager(name):
    op = _ops()[name]
    params = [p for p in getattr(op, "parameters", list)() if p.requires_grad]
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(op, backend="eager", fullgraph=True)
    got = compiled(x)
    assert not counters["graph_break"]
    ref = op(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    g = torch.autograd.grad(got.square().sum(), [x, *params])
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *params])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_inductor_compiles_a_lean_operator():
    op = LeanConv2d(8, 8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    torch._dynamo.reset()
    got = torch.compile(op, fullgraph=True)(x)
    torch.testing.assert_close(got, op(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_stays_out_of_the_graph(boundary):
    """A graph break around ConvFFT (it runs eagerly): the gradients of its weight are right
    with a convolution after the solve, which a traced spectral solve got wrong under inductor;
    fullgraph=True stops with the reason."""
    torch.manual_seed(0)
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    if boundary == "reflect":
        w = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4
    op = ConvFFT(w, boundary=boundary)
    op.weight.requires_grad_(True)
    mix = torch.randn(4, 4, 1, 1, dtype=torch.float64)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)

    def f(x):
        return torch.nn.functional.conv2d(op.solve(x, 0.3), mix) + op(x)

    ref = torch.autograd.grad(f(x).square().sum(), [x, op.weight])
    torch._dynamo.reset()
    got = torch.autograd.grad(torch.compile(f)(x).square().sum(), [x, op.weight])
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="ConvFFT keeps its spectra on the host"):
        torch.compile(f, fullgraph=True)(x)
