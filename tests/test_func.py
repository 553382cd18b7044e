"""torch.func transforms through odeint and ODEBlock: vmap, jacrev, jacfwd, jvp, grad."""

from __future__ import annotations

import pytest
import torch
from torch import func as F

import odenet
from odenet.errors import ArgumentError, GradientError

STRATEGIES = ["backprop", "anode", "revolve", "adjoint"]
DISCRETE = ["backprop", "anode", "revolve"]
T = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)
    ).double()


def _solve(f, y, gradient, t=T, **kw):
    return odenet.odeint(
        lambda t, y: f(y), y, t, method="rk4", step_size=0.2, gradient=gradient,
        params=list(f.parameters()), **kw,
    )


@pytest.mark.parametrize("gradient", STRATEGIES)
def test_vmap_over_initial_states_matches_the_loop(gradient):
    f = _mlp()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad() if gradient == "adjoint" else torch.enable_grad():
        # the adjoint's gradient is not that of the steps: it needs the parameters' grads off
        out = F.vmap(lambda y: _solve(f, y, gradient))(y0)
    ref = torch.stack([_solve(f, y, gradient) for y in y0])
    assert out.shape == (4, 3, 3)
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("gradient", DISCRETE)
def test_vmap_then_backward_gives_the_loop_gradients(gradient):
    f = _mlp()
    y0 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    F.vmap(lambda y: _solve(f, y, gradient))(y0).square().sum().backward()
    got = [p.grad.clone() for p in f.parameters()] + [y0.grad.clone()]
    f.zero_grad()
    y0.grad = None
    sum(_solve(f, y, gradient).square().sum() for y in y0).backward()
    ref = [p.grad for p in f.parameters()] + [y0.grad]
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13)


def test_vmap_jacrev_of_an_anode_block_equals_the_per_sample_loop():
    torch.manual_seed(0)
    rhs = odenet.nn.ResidualRHS(odenet.nn.DenseConv2d(2, 2), activation="tanh")
    block = odenet.nn.ODEBlock(rhs, steps=3, gradient="anode").double()
    with torch.no_grad():
        rhs.bias.normal_()
    x = torch.randn(3, 1, 2, 4, 4, dtype=torch.float64)  # 3 samples, each a batch of one
    jac = F.vmap(F.jacrev(block))(x)
    # the loop goes through ANODE's own backward pass (plain autograd)
    loop = torch.stack([torch.autograd.functional.jacobian(block, xi) for xi in x])
    assert jac.shape == (3, 1, 2, 4, 4, 1, 2, 4, 4)
    assert float((jac - loop).abs().max().detach()) <= 1e-12
    assert float(loop.abs().max().detach()) > 0.1  # not a trivially zero Jacobian


@pytest.mark.parametrize("gradient", DISCRETE)
def test_jacrev_jacfwd_jvp_agree_with_autograd(gradient):
    f = _mlp(1)
    y = torch.randn(3, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda y: _solve(f, y, "backprop"), y)
    run = lambda y: _solve(f, y, gradient)  # noqa: E731
    torch.testing.assert_close(F.jacrev(run)(y), ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(F.jacfwd(run)(y), ref, rtol=1e-12, atol=1e-13)
    v = torch.randn(3, dtype=torch.float64)
    _, jv = F.jvp(run, (y,), (v,))
    torch.testing.assert_close(jv, ref @ v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("gradient", DISCRETE)
def test_func_grad_with_respect_to_parameters(gradient):
    # functional_call swaps the block's parameters; per-sample gradients by vmap(grad)
    torch.manual_seed(2)
    rhs = odenet.nn.ResidualRHS(odenet.nn.DenseConv2d(2, 2), activation="tanh")
    block = odenet.nn.ODEBlock(rhs, steps=2, gradient=gradient).double()
    params = {k: v.detach() for k, v in block.named_parameters()}
    x = torch.randn(2, 1, 2, 3, 3, dtype=torch.float64)

    def loss(p, xi):
        return F.functional_call(block, p, (xi,)).square().sum()

    per_sample = F.vmap(F.grad(loss), in_dims=(None, 0))(params, x)
    for i in range(2):
        block.zero_grad()
        block(x[i]).square().sum().backward()
        for k, p in block.named_parameters():
            torch.testing.assert_close(per_sample[k][i], p.grad, rtol=1e-12, atol=1e-13)


def test_hessian_through_anode():
    f = _mlp(3)
    y = torch.randn(3, dtype=torch.float64)
    h = F.hessian(lambda y: _solve(f, y, "anode")[-1].square().sum())(y)
    ref = torch.autograd.functional.hessian(
        lambda y: _solve(f, y, "backprop")[-1].square().sum(), y
    )
    torch.testing.assert_close(h, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "transform",
    [
        lambda run, y: F.vmap(run)(y[None]),  # parameters that require grad
        lambda run, y: F.jacrev(run)(y),
        lambda run, y: F.jacfwd(run)(y),
        lambda run, y: F.grad(lambda y: run(y).sum())(y),
    ],
    ids=["vmap", "jacrev", "jacfwd", "grad"],
)
def test_the_adjoint_refuses_differentiating_transforms_by_name(transform):
    f = _mlp()
    with pytest.raises(GradientError, match="gradient='adjoint' does not support gradients under"):
        transform(lambda y: _solve(f, y, "adjoint"), torch.randn(3, dtype=torch.float64))


def test_checks_under_vmap_read_every_sample():
    f = _mlp()
    y0 = torch.randn(3, 3, dtype=torch.float64)
    y0[1, 2] = float("nan")
    with pytest.raises(ArgumentError, match="y0: contains non-finite"):
        F.vmap(lambda y: _solve(f, y, "anode"))(y0)
    grow = lambda t, y: y * y  # noqa: E731  blows up for the second sample only
    y0 = torch.tensor([[0.1], [3.0]])
    with pytest.raises(odenet.errors.NonFiniteStateError, match="at step 6"):
        F.vmap(lambda y: odenet.odeint(grow, y, torch.tensor([0.0, 9.0]),
                                       method="euler", step_size=1.0))(y0)


def test_batched_times_are_refused():
    f = _mlp()
    ts = torch.stack([T, 2 * T])
    with pytest.raises(ArgumentError, match="t: batched by torch.func.vmap"):
        F.vmap(lambda t: _solve(f, torch.ones(3, dtype=torch.float64), "anode", t=t))(ts)


def test_event_handling_is_refused_under_vmap():
    f = _mlp()
    with pytest.raises(ArgumentError, match="event_fn: event handling is not supported under"):
        F.vmap(lambda y: odenet.odeint(lambda t, y: f(y), y, T[[0, 2]], step_size=0.1,
                                       event_fn=lambda t, y: y[0] - 0.5))(
            torch.randn(3, 3, dtype=torch.float64)
        )


@pytest.mark.parametrize("gradient", DISCRETE)
def test_jacrev_with_respect_to_the_output_times(gradient):
    f = _mlp(4)
    y0 = torch.randn(3, dtype=torch.float64)

    def run(t, gradient):
        return odenet.odeint(lambda t, y: f(y) * torch.cos(t), y0, t, step_size=0.15,
                             gradient=gradient, params=list(f.parameters()))

    ref = torch.autograd.functional.jacobian(lambda t: run(t, "backprop"), T)
    torch.testing.assert_close(F.jacrev(lambda t: run(t, gradient))(T), ref, rtol=1e-12,
                               atol=1e-13)


# --------------------------------------------------------------------------- adaptive solves


def _adaptive(f, y, gradient):
    return odenet.odeint(lambda t, y: f(y), y, T, method="dopri5", gradient=gradient,
                         params=list(f.parameters()), options={"rtol": 1e-7, "atol": 1e-9})


@pytest.mark.parametrize("gradient", DISCRETE)
def test_adaptive_jacobians_under_the_transforms(gradient):
    """Under jacrev, jacfwd and grad the recomputing strategies differentiate the accepted
    steps themselves: the Jacobian of the steps (step sizes held fixed), as their own
    backward passes give it."""
    f = _mlp(5)
    y0 = torch.randn(3, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda y: _adaptive(f, y, gradient), y0)
    for transform in (F.jacrev, F.jacfwd):
        torch.testing.assert_close(transform(lambda y: _adaptive(f, y, gradient))(y0), ref,
                                   rtol=1e-12, atol=1e-13)
    got = F.grad(lambda y: _adaptive(f, y, gradient)[-1].sum())(y0)
    torch.testing.assert_close(got, ref[-1].sum(0), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("gradient", ["anode", "revolve"])
def test_adaptive_forward_mode(gradient):
    import torch.autograd.forward_ad as fwAD

    f = _mlp(6)
    y0, v = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    ref = torch.autograd.functional.jacobian(lambda y: _adaptive(f, y, gradient), y0) @ v
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(_adaptive(f, fwAD.make_dual(y0, v), gradient)).tangent
    torch.testing.assert_close(tangent, ref, rtol=1e-12, atol=1e-13)


def test_adaptive_adjoint_refuses_the_transforms_by_name():
    f = _mlp()
    y0 = torch.randn(3, dtype=torch.float64)
    with pytest.raises(GradientError, match="gradient='adjoint' does not support gradients"):
        F.jacrev(lambda y: _adaptive(f, y, "adjoint"))(y0)


@pytest.mark.parametrize("gradient", STRATEGIES)
def test_adaptive_solves_are_refused_under_vmap(gradient):
    f = _mlp()
    # (the adjoint's gradient is not that of the steps: it needs the parameters' grads off)
    with torch.no_grad() if gradient == "adjoint" else torch.enable_grad():
        with pytest.raises(ArgumentError, match="torch.func.vmap cannot batch"):
            F.vmap(lambda y: _adaptive(f, y, gradient))(torch.randn(2, 3, dtype=torch.float64))
