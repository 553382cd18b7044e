"""odenet.models: the ODE-ResNet and the cost accounting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import odenet
from odenet.errors import ArgumentError
from odenet.models import OPERATORS, ODEResNet, count_cost, make_operator
from odenet.nn import ODEBlock


@pytest.mark.parametrize("op", OPERATORS)
@pytest.mark.parametrize("form", ["residual", "parabolic"])
def test_forward_and_backward_every_operator(op, form):
    torch.manual_seed(0)
    net = ODEResNet(3, 5, widths=(8, 16), blocks=(1, 1), op=op, form=form, steps=1,
                    method="midpoint")
    x = torch.randn(2, 3, 8, 8)
    out = net(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    assert [type(o).__name__ for o in net.operators()] == [type(make_operator(op, 8)).__name__] * 2


def test_structure():
    net = ODEResNet(1, 10, widths=(4, 8, 16), blocks=(2, 1, 0), steps=3, T=0.5, method="heun",
                    norm=None)
    blocks = [m for m in net.modules() if isinstance(m, ODEBlock)]
    assert len(blocks) == 3
    assert all((b.steps, b.T, b.method) == (3, 0.5, "heun") for b in blocks)
    assert isinstance(blocks[0].gradient, odenet.ANODE)
    assert net.features(torch.randn(1, 1, 16, 16)).shape == (1, 16, 4, 4)


def test_training_reduces_the_loss():
    """A few Adam steps on a toy problem: horizontal vs vertical stripes."""
    torch.manual_seed(1)
    stripes = (torch.arange(8) % 2).float().view(8, 1).expand(8, 8)
    y = torch.arange(32) % 2
    x = 0.3 * torch.randn(32, 1, 8, 8)
    x[y == 1, 0] += stripes
    x[y == 0, 0] += stripes.t()
    net = ODEResNet(1, 2, widths=(8,), steps=2, method="euler")
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_cost_lean_against_formulas():
    c, h, w, steps = 64, 8, 8, 2
    net = ODEResNet(1, 10, widths=(c,), steps=steps, method="rk4", norm=None)
    report = count_cost(net, (1, h, w))
    assert report.params == sum(p.numel() for p in net.parameters())
    row = next(r for r in report.layers if r.kind == "LeanConv2d")
    evaluations = 4 * steps  # rk4: four stages per step
    assert row.calls == evaluations
    assert row.params == c * c + 5 * c and row.dense_params == 9 * c * c
    assert row.macs == evaluations * (c * c + 5 * c) * h * w
    assert row.dense_macs == evaluations * 9 * c * c * h * w
    d = report.to_dict()
    assert d["params"] == report.params and 0 < d["macs_ratio"] < 1
    assert "total" in report.table() and str(report) == report.table()


def test_cost_dense_network_is_its_own_baseline():
    net = ODEResNet(3, 4, widths=(8, 16), op="dense", steps=1, method="euler")
    report = count_cost(net, (2, 3, 8, 8))  # a batch dimension is allowed
    assert report.macs == report.dense_macs and report.params == report.dense_params


def test_cost_parabolic_counts_the_transpose_and_sparse_is_proportional():
    res = count_cost(ODEResNet(1, 2, widths=(16,), op="sparse", steps=1, method="euler"),
                     (1, 4, 4))
    par = count_cost(ODEResNet(1, 2, widths=(16,), op="sparse", form="parabolic", steps=1,
                               method="euler"), (1, 4, 4))
    r_res = next(r for r in res.layers if r.kind == "SparseConv2d")
    r_par = next(r for r in par.layers if r.kind == "SparseConv2d")
    assert r_par.calls == 2 * r_res.calls == 2
    assert r_res.macs / r_res.dense_macs == pytest.approx(37 / 72)


def test_cost_deform_has_offset_rows():
    report = count_cost(ODEResNet(1, 2, widths=(8,), op="deform", steps=1, method="euler"),
                        (1, 6, 6))
    kinds = [r.kind for r in report.layers]
    assert "DeformConv2d" in kinds
    off = next(r for r in report.layers if r.name.endswith("offset_conv"))
    assert off.dense_params == 0 and off.dense_macs == 0 and off.macs > 0
    assert report.params == sum(r.params for r in report.layers)


def test_errors():
    with pytest.raises(ArgumentError, match="op: unknown operator 'conv'"):
        ODEResNet(1, 2, op="conv")
    with pytest.raises(ArgumentError, match="form: expected 'residual' or 'parabolic'"):
        ODEResNet(1, 2, form="hamiltonian")
    with pytest.raises(ArgumentError, match="blocks: expected one count per stage"):
        ODEResNet(1, 2, widths=(4, 8), blocks=(1, 1, 1))
    with pytest.raises(ArgumentError, match=r"widths\[1\]: expected an int >= 1"):
        ODEResNet(1, 2, widths=(4, 0))
    with pytest.raises(ArgumentError, match="input_shape: expected"):
        count_cost(ODEResNet(1, 2), (8, 8))
    with pytest.raises(odenet.errors.ArgumentTypeError, match="model: expected an nn.Module"):
        count_cost(lambda x: x, (1, 8, 8))


def test_custom_operator_factory():
    net = ODEResNet(1, 2, widths=(8,), op=lambda c: odenet.nn.LeanConv2d(c, c, stencil=9))
    assert net.operators()[0].stencil == 9


def test_a_registered_operator_is_usable_by_name_everywhere():
    from odenet.models import register_operator

    def shifted(channels, stencil=5):  # receives the options its signature names
        return odenet.nn.LeanConv2d(channels, channels, stencil=stencil)

    register_operator("test-shifted", shifted, replace=True)
    assert OPERATORS["test-shifted"] is shifted
    assert make_operator("test-shifted", 3, stencil=9).stencil == 9
    net = ODEResNet(1, 10, widths=(4,), blocks=1, op="test-shifted", steps=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ArgumentError, match="name: the operator 'test-shifted' is already"):
        register_operator("test-shifted", lambda c: odenet.nn.DenseConv2d(c, c))
    with pytest.raises(ArgumentError, match="name: expected a non-empty string"):
        register_operator("", shifted)
