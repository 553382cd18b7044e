"""Modules of odenet.nn: operators, right-hand-side forms, ODEBlock."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.autograd import gradcheck

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn import (
    ConvOperator,
    DeformConv2d,
    DenseConv2d,
    LeanConv2d,
    ODEBlock,
    ParabolicRHS,
    ResidualRHS,
    SparseConv2d,
)

D = torch.float64


def _randomise_deform(op: DeformConv2d, std: float = 0.3) -> DeformConv2d:
    with torch.no_grad():
        op.offset_conv.weight.normal_(0, std)
        op.offset_conv.bias.normal_(0, std)
    return op


def make_ops(c: int = 8) -> dict[str, ConvOperator]:
    torch.manual_seed(0)
    return {
        "dense": DenseConv2d(c, c),
        "lean4": LeanConv2d(c, c, stencil=4),
        "lean5": LeanConv2d(c, c, stencil=5, bias=True),
        "lean9": LeanConv2d(c, c, stencil=9),
        "sparse": SparseConv2d(c, c, bias=True),
        "sparse_taps": SparseConv2d(c, c, engine="taps"),
        "deform": _randomise_deform(DeformConv2d(c, c)),
        "deform_v1": _randomise_deform(DeformConv2d(c, c, modulated=False)),
    }


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize("name", list(make_ops()))
def test_operator_adjoint_dot_product(name):
    op = make_ops()[name].double()
    g = torch.Generator().manual_seed(1)
    x, z, y = (torch.randn(2, 8, 6, 5, generator=g, dtype=D) for _ in range(3))
    lin = op.linear_at(y)
    bias = getattr(op, "bias", None)
    kx = lin(x) - (0 if bias is None else bias.view(1, -1, 1, 1))
    kt = op.adjoint(z, y) if isinstance(op, DeformConv2d) else op.adjoint(z)
    assert torch.isclose((kx * z).sum(), (x * kt).sum(), rtol=1e-12)


@pytest.mark.parametrize("name", ["dense", "lean4", "lean5", "lean9", "sparse", "sparse_taps"])
def test_dense_kernel_is_the_operator(name):
    op = make_ops()[name].double()
    x = torch.randn(2, 8, 5, 7, dtype=D)
    bias = getattr(op, "bias", None)
    ref = F.conv2d(x, op.dense_kernel(), bias, padding=1)
    assert torch.allclose(op(x), ref, rtol=1e-12, atol=1e-12)


@given(c=st.integers(1, 70), stencil=st.sampled_from([4, 5, 9]))
def test_lean_parameter_count(c, stencil):
    op = LeanConv2d(c, c, stencil=stencil)
    assert sum(p.numel() for p in op.parameters()) == c * c + stencil * c
    assert op.multiply_adds(3, 2) == (c * c + stencil * c) * 6
    assert LeanConv2d(c, c, stencil=stencil, bias=True).bias.shape == (c,)


def test_lean_paper_count():
    """REFERENCES (LeanResNet): c = 64: 36,864 dense vs 4,416 lean (s = 5)."""
    op = LeanConv2d(64, 64)
    assert sum(p.numel() for p in op.parameters()) == 4416
    assert op.dense_parameters() == 36864


@given(cin=st.integers(1, 40), cout=st.integers(1, 40), period=st.integers(1, 12))
def test_sparse_parameter_count(cin, cout, period):
    op = SparseConv2d(cin, cout, period=period)
    m = (torch.arange(cout).view(-1, 1) + torch.arange(cin).view(1, -1) + 1) % period
    expected = int(torch.where(m == 0, 9, 4).sum())
    assert op.weight.numel() == expected == int(op.mask.sum())
    assert sum(p.numel() for p in op.parameters()) == expected
    if cin % 8 == 0 and period == 8:
        assert expected == cin * cout * 37 // 8
    assert op.multiply_adds(4, 5) == expected * 20


def test_deform_starts_as_plain_convolution():
    torch.manual_seed(0)
    for modulated in (True, False):
        op = DeformConv2d(3, 5, modulated=modulated, bias=True)
        x = torch.randn(2, 3, 6, 7)
        assert torch.allclose(op(x), F.conv2d(x, op.weight, op.bias, padding=1), atol=1e-5)
        offset, mask = op.sampling(x)
        assert offset.abs().max() == 0
        assert (mask is None) == (not modulated)
        if mask is not None:
            assert torch.equal(mask, torch.ones_like(mask))


def test_deform_gradients_reach_offset_conv():
    op = _randomise_deform(DeformConv2d(2, 2)).double()
    x = torch.randn(1, 2, 5, 5, dtype=D, requires_grad=True)
    assert gradcheck(op, (x,))
    op(x).sum().backward()
    assert op.offset_conv.weight.grad.abs().sum() > 0


def test_operator_errors():
    with pytest.raises(ArgumentError, match="in_channels == out_channels"):
        LeanConv2d(4, 8)
    with pytest.raises(ArgumentError, match=r"stencil: expected one of \[4, 5, 9\]"):
        LeanConv2d(4, 4, stencil=3)
    with pytest.raises(ArgumentTypeError, match="in_channels: expected an int"):
        LeanConv2d(4.0, 4)
    with pytest.raises(ArgumentError, match="kernel_size: expected an odd size"):
        DenseConv2d(4, 4, kernel_size=2)
    with pytest.raises(ArgumentError, match="kernel_size: expected an odd size"):
        DeformConv2d(4, 4, kernel_size=4)
    with pytest.raises(ArgumentError, match="offset_groups: must divide in_channels"):
        DeformConv2d(4, 4, offset_groups=3)
    with pytest.raises(ArgumentError, match="period: expected an int >= 1"):
        SparseConv2d(4, 4, period=0)
    with pytest.raises(ArgumentError, match="engine: expected one of"):
        SparseConv2d(4, 4, engine="gpu")
    with pytest.raises(ArgumentError, match=r"x: expected 4 channels"):
        DenseConv2d(4, 4)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ArgumentError, match="input: expected a 4-D tensor"):
        LeanConv2d(4, 4)(torch.randn(4, 5, 5))
    op = DeformConv2d(4, 4)
    with pytest.raises(ArgumentError, match="y: a deformable convolution is linear only"):
        op.adjoint(torch.randn(1, 4, 5, 5))
    with pytest.raises(ArgumentError, match="mask: this layer is modulated"):
        op.adjoint(torch.randn(1, 4, 5, 5), offset=torch.zeros(1, 18, 5, 5))


# --------------------------------------------------------------------------- RHS forms


@pytest.mark.parametrize("name", list(make_ops()))
def test_rhs_formulas(name):
    op = make_ops()[name].double()
    torch.manual_seed(2)
    y = torch.randn(2, 8, 5, 6, dtype=D)
    res = ResidualRHS(op, activation="tanh", norm=None).double()
    par = ParabolicRHS(op, activation="tanh", norm=None).double()
    with torch.no_grad():
        res.bias.normal_()
        par.bias.copy_(res.bias)
    u = torch.tanh(op(y) + res.bias.view(1, -1, 1, 1))
    assert torch.allclose(res(0.0, y), u, rtol=1e-12, atol=1e-12)
    kt = op.adjoint(u, y) if isinstance(op, DeformConv2d) else op.adjoint(u)
    assert torch.allclose(par(0.0, y), -kt, rtol=1e-12, atol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16),
       name=st.sampled_from(["dense", "lean5", "sparse_taps", "deform"]),
       activation=st.sampled_from(["relu", "tanh", "leaky_relu", "identity"]))
def test_parabolic_jacobian_is_negative_semidefinite(seed, name, activation):
    """vᵀ J v = −(K v)ᵀ diag(σ') (K v) <= 0 for monotone σ and no normalisation."""
    op = make_ops()[name].double()
    f = ParabolicRHS(op, activation=activation).double()
    g = torch.Generator().manual_seed(seed)
    y, v = (torch.randn(2, 8, 5, 5, generator=g, dtype=D) for _ in range(2))
    _, jv = torch.func.jvp(lambda y: f(0.0, y), (y,), (v,))
    assert (v * jv).sum() <= 1e-12 * (v * v).sum()


@pytest.mark.parametrize("norm", [None, "batch", "instance", "group", nn.Identity()])
@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu", "identity", torch.sin])
def test_rhs_norms_and_activations(norm, activation):
    op = LeanConv2d(8, 8)
    f = ResidualRHS(op, activation=activation, norm=norm)
    y = torch.randn(3, 8, 4, 4)
    out = f(torch.tensor(0.0), y)
    assert out.shape == y.shape and torch.isfinite(out).all()
    if norm == "group":
        assert f.norm.num_groups == 8
    if activation == "relu":
        assert (out >= 0).all()


def test_rhs_errors():
    op = LeanConv2d(4, 4)
    with pytest.raises(ArgumentError, match="activation: unknown name 'swish'"):
        ResidualRHS(op, activation="swish")
    with pytest.raises(ArgumentError, match="norm: unknown name 'layer'"):
        ResidualRHS(op, norm="layer")
    with pytest.raises(ArgumentTypeError, match="norm: expected None, a name or a module"):
        ResidualRHS(op, norm=3)
    with pytest.raises(ArgumentTypeError, match="op: the parabolic form needs Kᵀ"):
        ParabolicRHS(nn.Conv2d(4, 4, 3, padding=1))
    with pytest.raises(ArgumentTypeError, match="op: expected an nn.Module"):
        ResidualRHS(lambda y: y)
    with pytest.raises(ArgumentTypeError, match="bias: expected True or False"):
        ResidualRHS(op, bias=1)


def test_parabolic_changes_width():
    """K may map C to C' channels; N acts on the C' channels of K y."""
    f = ParabolicRHS(SparseConv2d(4, 16), norm="group")
    y = torch.randn(2, 4, 5, 5)
    assert f(0.0, y).shape == y.shape
    assert f.norm.num_channels == 16


# --------------------------------------------------------------------------- ODEBlock


def _block(gradient="backprop", method="rk4", steps=3, T=0.7, name="lean5"):
    torch.manual_seed(3)
    rhs = ResidualRHS(make_ops(4)[name] if name != "lean5" else LeanConv2d(4, 4),
                      activation="tanh").double()
    return ODEBlock(rhs, T=T, steps=steps, method=method, gradient=gradient)


def test_odeblock_equals_odeint():
    block = _block()
    y = torch.randn(2, 4, 5, 5, dtype=D)
    t = torch.tensor([0.0, 0.7], dtype=D)
    ref = odenet.odeint(block.rhs, y, t, method="rk4", step_size=0.7 / 3)[-1]
    assert torch.equal(block(y), ref)
    # forward Euler by hand
    euler = _block(method="euler", steps=2, T=1.0)
    y1 = y + 0.5 * euler.rhs(0.0, y)
    y2 = y1 + 0.5 * euler.rhs(0.5, y1)
    assert torch.allclose(euler(y), y2, rtol=1e-12, atol=1e-12)


def test_odeblock_parameters_and_gradcheck():
    block = _block()
    names = sorted(n for n, _ in block.named_parameters())
    assert names == ["rhs.bias", "rhs.op.stencil_weight", "rhs.op.weight"]
    y = torch.randn(1, 4, 4, 4, dtype=D, requires_grad=True)
    w = block.rhs.op.weight
    assert gradcheck(lambda y, w: block(y), (y, w))


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_odeblock_gradient_strategies(gradient):
    """DTO strategies (ANODE is the default) give backprop's gradients exactly; the OTD
    adjoint agrees to discretisation error."""
    ref_block = _block("backprop", steps=4)
    block = _block(gradient, steps=4)
    block.load_state_dict(ref_block.state_dict())
    y = torch.randn(2, 4, 5, 5, dtype=D)
    grads = []
    for b in (ref_block, block):
        yy = y.clone().requires_grad_()
        loss = (b(yy) ** 2).sum()
        grads.append(torch.autograd.grad(loss, [yy, *b.parameters()]))
    tol = 1e-10 if gradient != "adjoint" else 1e-2
    for a, r in zip(grads[1], grads[0]):
        assert torch.allclose(a, r, rtol=tol, atol=tol)


def test_odeblock_default_is_anode():
    block = ODEBlock(ResidualRHS(LeanConv2d(4, 4)))
    assert isinstance(block.gradient, odenet.ANODE)
    assert (block.T, block.steps, block.method) == (1.0, 4, "rk4")
    y = torch.randn(2, 4, 6, 6, requires_grad=True)
    block(y).sum().backward()
    assert y.grad is not None and block.rhs.op.weight.grad is not None


def test_odeblock_with_deform_and_parabolic():
    torch.manual_seed(4)
    rhs = ParabolicRHS(_randomise_deform(DeformConv2d(2, 2)), activation="tanh").double()
    block = ODEBlock(rhs, steps=1, method="midpoint", gradient="backprop")
    y = torch.randn(1, 2, 3, 4, dtype=D, requires_grad=True)
    assert gradcheck(block, (y,))


def test_odeblock_errors():
    rhs = ResidualRHS(LeanConv2d(4, 4))
    with pytest.raises(ArgumentError, match="T: expected a finite positive number"):
        ODEBlock(rhs, T=0.0)
    with pytest.raises(ArgumentError, match="steps: expected an int >= 1"):
        ODEBlock(rhs, steps=0)
    with pytest.raises(odenet.errors.UnknownMethodError, match="method: unknown method"):
        ODEBlock(rhs, method="rk5")
    with pytest.raises(ArgumentError, match="gradient: unknown strategy"):
        ODEBlock(rhs, gradient="magic")
    with pytest.raises(ArgumentError, match="implicit: method 'ars222' is an IMEX scheme"):
        ODEBlock(rhs, method="ars222")
    with pytest.raises(ArgumentTypeError, match="rhs: expected a callable"):
        ODEBlock(3)
    with pytest.raises(ArgumentTypeError, match="y: expected a Tensor"):
        ODEBlock(rhs)([1.0])
