"""torch.compile(fullgraph=True) of every operator and engine: no graph break, and the
forward pass and the gradients of the compiled call equal the eager ones.

Under tracing the compiled kernels and the engines dynamo cannot trace (the chunked and taps
Functions, the deformable Function with its custom forward mode, ConvFFT's spectral cache)
hand over to traceable forms: the vendor convolutions, the differentiable composites."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from odenet.linear import ConvFFT
from odenet.nn import DeformConv2d, LeanConv2d, SparseConv2d


def _ops():
    torch.manual_seed(0)
    sym = torch.randn(8, 1, 3, 3)
    sym = (sym + sym.flip(-1) + sym.flip(-2) + sym.flip(-1, -2)) / 4
    periodic, reflect = ConvFFT(torch.randn(8, 1, 3, 3)), ConvFFT(sym, boundary="reflect")
    periodic.weight.requires_grad_(True)  # its gradient is compared too
    return {
        "lean-auto": LeanConv2d(8, 8),
        "lean-fused": LeanConv2d(8, 8, engine="fused"),
        "lean-chunked": LeanConv2d(8, 8, engine="chunked"),
        "lean-conv": LeanConv2d(8, 8, engine="conv"),
        "sparse-auto": SparseConv2d(8, 8),
        "sparse-taps": SparseConv2d(8, 8, period=4, engine="taps"),
        "sparse-masked": SparseConv2d(8, 8, engine="masked"),
        "deform": DeformConv2d(8, 8),
        "convfft-apply": periodic,
        "convfft-solve": lambda x: periodic.solve(x, 0.5),
        "convfft-reflect-solve": lambda x: reflect.solve(x, 0.5),
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
