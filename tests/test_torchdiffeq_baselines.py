"""torchdiffeq's solvers as strategies of the diagnostics: usable by name, never patched in."""

from __future__ import annotations

import pytest
import torch

import odenet
import odenet.analysis  # registers the baselines
from odenet.analysis._cost import _use_strategy, ode_blocks
from odenet.analysis._torchdiffeq import Torchdiffeq, TorchdiffeqAdjoint
from odenet.errors import ArgumentError

D = torch.float64


def _problem():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3).double()
    y0 = torch.randn(2, 3, dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=D)
    return lin, y0, t


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4_38"])
def test_baselines_are_registered_strategies_with_torchdiffeqs_numbers(method):
    import torchdiffeq

    assert odenet.gradients.STRATEGIES["torchdiffeq"] is Torchdiffeq
    assert odenet.gradients.STRATEGIES["torchdiffeq-adjoint"] is TorchdiffeqAdjoint
    lin, y0, t = _problem()
    ours = odenet.odeint(lambda t, y: torch.tanh(lin(y)), y0, t, method=method, step_size=0.125,
                         gradient="torchdiffeq")
    name = {"rk4_38": "rk4"}.get(method, method)
    theirs = torchdiffeq.odeint(lambda t, y: torch.tanh(lin(y)), y0, t, method=name,
                                options={"step_size": 0.125})
    assert torch.equal(ours, theirs)
    g_ours = torch.autograd.grad(ours.sum(), [y0, *lin.parameters()])
    adj = odenet.odeint(lambda t, y: torch.tanh(lin(y)), y0, t, method=method, step_size=0.125,
                        gradient="torchdiffeq-adjoint", params=list(lin.parameters()))
    g_adj = torch.autograd.grad(adj.sum(), [y0, *lin.parameters()])
    ref = torchdiffeq.odeint_adjoint(lambda t, y: torch.tanh(lin(y)), y0, t, method=name,
                                     options={"step_size": 0.125},
                                     adjoint_params=tuple(lin.parameters()))
    g_ref = torch.autograd.grad(ref.sum(), [y0, *lin.parameters()])
    bp = odenet.odeint(lambda t, y: torch.tanh(lin(y)), y0, t, method=method, step_size=0.125)
    g_bp = torch.autograd.grad(bp.sum(), [y0, *lin.parameters()])
    for a, b, c, r in zip(g_ours, g_bp, g_adj, g_ref):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)  # torchdiffeq.odeint is DTO
        assert torch.equal(c, r)  # the adjoint baseline is torchdiffeq's odeint_adjoint


def test_baselines_refuse_what_torchdiffeq_lacks_by_name():
    lin, y0, t = _problem()
    for kw in ({"method": "rk4"}, {"method": "heun"}):
        with pytest.raises(ArgumentError, match="^gradient: 'torchdiffeq' has no fixed-grid"):
            odenet.odeint(lambda t, y: -y, y0, t, step_size=0.25, gradient="torchdiffeq", **kw)
    with pytest.raises(ArgumentError, match="^gradient: 'torchdiffeq-adjoint' runs torchdiffeq"):
        odenet.odeint(lambda t, y: -y, y0, t, method="euler", step_size=0.25,
                      gradient="torchdiffeq-adjoint", options={"perturb": True})


def test_cost_sets_the_baseline_as_the_blocks_strategy_without_patching_forward():
    from odenet.analysis._models import build_case

    block = build_case({"model": "dense", "channels": 2, "batch": 2, "method": "rk4_38"}).block
    blocks = ode_blocks(torch.nn.Sequential(block))
    undo = _use_strategy(blocks, "torchdiffeq-adjoint")
    assert isinstance(block.gradient, TorchdiffeqAdjoint) and "forward" not in vars(block)
    dtype = next(block.parameters()).dtype
    y = block(torch.randn(2, 2, 8, 8, dtype=dtype))
    y.sum().backward()
    assert all(p.grad is not None for p in block.parameters() if p.requires_grad)
    for u in undo:
        u()
    assert not isinstance(block.gradient, Torchdiffeq)
    rk4 = build_case({"model": "dense", "channels": 2, "batch": 2, "method": "rk4"}).block
    with pytest.raises(ArgumentError, match="^strategy: torchdiffeq has no fixed-grid"):
        _use_strategy(ode_blocks(torch.nn.Sequential(rk4)), "torchdiffeq")
