"""Differentiating through the controller's step sizes, adaptive ODE blocks, adaptive names.

``options['differentiate_steps']`` makes backprop follow the step sizes the controller chose
(initial-step heuristic, error ratios, proposals, rejected attempts included), so the gradient
is the derivative of the whole adaptive map: a central difference that re-runs the controller
measures it. The default holds the accepted steps fixed and differs from that by O(tolerance).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError, StepSizeError
from odenet.gradients._adaptive import LAST

F64 = torch.float64


def _problem(seed: int = 0, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    W = (torch.randn(n, n, generator=g, dtype=F64) / n**0.5).requires_grad_()
    b = torch.randn(n, generator=g, dtype=F64).requires_grad_()
    y0 = torch.randn(3, n, generator=g, dtype=F64).requires_grad_()
    return W, b, y0


def _loss(W, b, y0, *, diff, method="dopri5", rtol=1e-4, atol=1e-6, t=(0.0, 0.7, 2.0),
          extra=None):
    tt = torch.tensor(t, dtype=F64)
    opts = {"rtol": rtol, "atol": atol, "differentiate_steps": diff, **(extra or {})}
    y = odenet.odeint(lambda t, y: torch.tanh(y @ W.T + b) - 0.3 * y, y0, tt, method=method,
                      options=opts, gradient="backprop", params=[W, b])
    return (y[1:] ** 2).sum() + y[-1].sum()


def _directional(seed, method, extra=None, rtol=1e-4):
    """(d/dε of the full adaptive solve by central differences, the same with steps
    differentiated, with steps held fixed), along one random direction."""
    W, b, y0 = _problem(seed)
    g = torch.Generator().manual_seed(seed + 100)
    V = [torch.randn(x.shape, generator=g, dtype=F64) for x in (W, b, y0)]
    eps = 1e-6
    with torch.no_grad():
        plus = _loss(*(x + eps * v for x, v in zip((W, b, y0), V)), diff=False, method=method,
                     extra=extra, rtol=rtol)
        minus = _loss(*(x - eps * v for x, v in zip((W, b, y0), V)), diff=False, method=method,
                      extra=extra, rtol=rtol)
    fd = ((plus - minus) / (2 * eps)).item()
    out = []
    for diff in (True, False):
        grads = torch.autograd.grad(_loss(W, b, y0, diff=diff, method=method, extra=extra,
                                          rtol=rtol), (W, b, y0))
        out.append(sum((gi * v).sum() for gi, v in zip(grads, V)).item())
    return fd, out[0], out[1]


@pytest.mark.parametrize(
    "method, extra",
    [
        ("dopri5", None),
        ("bosh3", None),
        ("tsit5", {"pcoeff": 0.2, "icoeff": 0.4}),  # PI control
        ("adaptive_heun", {"first_step": 0.05}),
        ("dopri5", {"step_t": [0.3]}),
        ("fehlberg2", {"first_step": 0.9}),  # large first step: rejections
    ],
)
def test_differentiated_steps_match_differences_of_the_full_solve(method, extra):
    fd, diff, held = _directional(0, method, extra)
    assert abs(diff - fd) <= 1e-6 * abs(fd)


def test_held_steps_differ_from_the_full_derivative_by_the_tolerance():
    # the default is the gradient of the accepted steps, not of the adaptive map
    fd, diff, held = _directional(0, "dopri5")
    assert abs(diff - fd) <= 1e-6 * abs(fd)
    assert abs(held - fd) > 100 * abs(diff - fd)
    assert abs(held - fd) < 0.05 * abs(fd)


def test_rejected_attempts_carry_the_step_size_graph():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(4, 4, generator=g, dtype=F64).requires_grad_()
    V = torch.randn(4, 4, generator=g, dtype=F64)

    def loss(W, diff):
        y = odenet.odeint(lambda t, y: torch.tanh(y @ W.T) * (1 + t), torch.ones(2, 4, dtype=F64),
                          torch.tensor([0.0, 1.5], dtype=F64), method="dopri5", params=[W],
                          options={"rtol": 1e-6, "atol": 1e-8, "first_step": 0.8,
                                   "differentiate_steps": diff})
        return y[-1].square().sum()

    (gw,) = torch.autograd.grad(loss(W, True), W)
    assert LAST["forward_rejected"] > 0
    eps = 1e-6
    with torch.no_grad():
        fd = ((loss(W + eps * V, False) - loss(W - eps * V, False)) / (2 * eps)).item()
    (held,) = torch.autograd.grad(loss(W, False), W)
    assert abs((gw * V).sum().item() - fd) <= 1e-6 * abs(fd)
    assert abs((held * V).sum().item() - fd) > 1e-6 * abs(fd)


def test_the_option_changes_no_value_and_no_step():
    W, b, y0 = _problem(2)
    t = torch.tensor([0.0, 0.5, 1.3], dtype=F64)

    def solve(diff):
        y = odenet.odeint(lambda t, y: torch.tanh(y @ W.T + b), y0, t, method="dopri5",
                          options={"rtol": 1e-5, "differentiate_steps": diff})
        return y, dict(LAST)

    (a, sa), (c, sc) = solve(True), solve(False)
    assert torch.equal(a, c) and sa == sc


def test_output_time_gradients_with_differentiated_steps():
    W, b, y0 = _problem(3)

    def loss(t1, diff):
        t = torch.stack([torch.tensor(0.0, dtype=F64), t1])
        y = odenet.odeint(lambda t, y: torch.tanh(y @ W.T + b) * (1 + t), y0, t,
                          method="dopri5", options={"rtol": 1e-6, "differentiate_steps": diff})
        return y[-1].square().sum()

    t1 = torch.tensor(1.2, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(loss(t1, True), t1)
    eps = 1e-6
    with torch.no_grad():
        fd = (loss(t1 + eps, False) - loss(t1 - eps, False)) / (2 * eps)
    assert abs(g - fd) <= 1e-6 * abs(fd)


def test_tuple_states_with_differentiated_steps():
    a = torch.tensor(0.8, dtype=F64, requires_grad=True)

    def loss(a, diff):
        y = odenet.odeint(lambda t, y: (a * y[1], -torch.sin(y[0])),
                          (torch.tensor([1.0], dtype=F64), torch.tensor([0.0], dtype=F64)),
                          torch.tensor([0.0, 3.0], dtype=F64), method="bosh3", params=[a],
                          options={"rtol": 1e-5, "differentiate_steps": diff})
        return y[0][-1].sum() + 2 * y[1][-1].sum()

    (g,) = torch.autograd.grad(loss(a, True), a)
    eps = 1e-6
    with torch.no_grad():
        fd = (loss(a + eps, False) - loss(a - eps, False)) / (2 * eps)
    assert abs(g - fd) <= 1e-6 * abs(fd)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), rtol=st.sampled_from([1e-3, 1e-4, 1e-5]))
def test_differentiated_steps_hypothesis(seed, rtol):
    fd, diff, _ = _directional(seed, "dopri5", rtol=rtol)
    assert abs(diff - fd) <= 1e-5 * max(abs(fd), 1e-3)


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_differentiated_steps_need_backprop(gradient):
    W, b, y0 = _problem()
    with pytest.raises(ArgumentError, match=r"differentiate_steps.*backprop"):
        odenet.odeint(lambda t, y: torch.tanh(y @ W.T + b), y0, torch.tensor([0.0, 1.0], dtype=F64),
                      method="dopri5", options={"differentiate_steps": True}, gradient=gradient)


def test_differentiated_steps_bad_input():
    y0 = torch.ones(2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(ArgumentTypeError, match=r"options\['differentiate_steps'\]"):
        odenet.odeint(lambda t, y: -y, y0, t, method="dopri5",
                      options={"differentiate_steps": "yes"})
    from odenet.solvers._adaptive import odeint_adaptive

    with pytest.raises(ArgumentError, match="interpolated"):
        odeint_adaptive(lambda t, y: -y, y0, t, odenet.solvers.ADAPTIVE_METHODS["dopri5"],
                        {"differentiate_steps": True}, interpolate=True)


# --- adaptive ODE blocks ------------------------------------------------------------------


def test_adaptive_block_is_odeint():
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(3, 3)).double()
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    block = odenet.nn.ODEBlock(rhs, T=0.8, method="dopri5", options={"rtol": 1e-6},
                               gradient="backprop")
    ref = odenet.odeint(rhs, x, torch.tensor([0.0, 0.8], dtype=F64), method="dopri5",
                        options={"rtol": 1e-6})[-1]
    assert torch.equal(block(x), ref)
    assert block.steps is None and block.adaptive
    assert "dopri5" in repr(block) and "rtol" in repr(block)


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_adaptive_block_gradients(gradient):
    torch.manual_seed(0)  # a smooth right-hand side: the OTD adjoint converges with rtol
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(3, 3), activation="tanh").double()
    x = torch.randn(2, 3, 6, 6, dtype=F64, requires_grad=True)
    grads = []
    for g in ("backprop", gradient):
        block = odenet.nn.ODEBlock(rhs, method="bosh3", options={"rtol": 1e-7, "atol": 1e-9},
                                   gradient=g)
        grads.append(torch.autograd.grad(block(x).square().sum(), [x, *rhs.parameters()]))
    tol = 1e-4 if gradient == "adjoint" else 1e-10
    for a, c in zip(*grads):
        assert torch.allclose(a, c, rtol=tol, atol=tol * a.abs().max())


def test_adaptive_block_bad_input():
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(2, 2))
    with pytest.raises(ArgumentError, match="steps: the adaptive method 'dopri5'"):
        odenet.nn.ODEBlock(rhs, method="dopri5", steps=4)
    with pytest.raises(ArgumentError, match="options: only adaptive methods"):
        odenet.nn.ODEBlock(rhs, method="rk4", options={"rtol": 1e-3})
    with pytest.raises(ArgumentTypeError, match="options: expected a dict"):
        odenet.nn.ODEBlock(rhs, method="dopri5", options=[("rtol", 1e-3)])
    block = odenet.nn.ODEBlock(rhs, method="dopri5", options={"rtl": 1e-3})
    with pytest.raises(ArgumentError, match="rtl"):
        block(torch.randn(1, 2, 4, 4))
    from odenet.analysis._user_model import block_view

    with pytest.raises(ArgumentError, match="adaptive method 'dopri5'"):
        block_view(odenet.nn.ODEBlock(rhs, method="dopri5"))


def test_adaptive_names_and_errors():
    from odenet.solvers import method_names, resolve_method

    assert method_names("adaptive") == ", ".join(repr(n) for n in odenet.solvers.ADAPTIVE_METHODS)
    assert resolve_method("tsit5", kind="adaptive").name == "tsit5"
    with pytest.raises(ArgumentError, match="not an adaptive method"):
        resolve_method("rk4", kind="adaptive")
    with pytest.raises(ArgumentError, match="adaptive methods: 'adaptive_heun'"):
        resolve_method("dopri")
    assert odenet.solvers.StepSizeError is StepSizeError
    assert "StepSizeError" in odenet.errors.__all__
