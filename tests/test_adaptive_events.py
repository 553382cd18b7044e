"""Events with adaptive methods, and the adjoint norm's calling convention (torchdiffeq's)."""

from __future__ import annotations

import math

import pytest
import torch

import odenet
from odenet.compat import torchdiffeq as tde
from odenet.errors import ArgumentError, EventError

F64 = torch.float64


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "tsit5", "dopri8"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_event_time_and_state(method, direction):
    # y' = -y from y(0) = 1 (forward) or y' = y backward: y = 1/2 at t = ±ln 2
    f = (lambda t, y: -y) if direction > 0 else (lambda t, y: y)
    y0 = torch.ones(2, dtype=F64)
    t = torch.tensor([0.0, direction], dtype=F64)
    te, sol = odenet.odeint(f, y0, t, method=method, event_fn=lambda t, y: y.sum() - 1.0,
                            options={"rtol": 1e-9, "atol": 1e-12})
    assert sol.shape == (2, 2)
    assert abs(te.item() - direction * math.log(2)) < 1e-7
    assert torch.allclose(sol[-1], torch.full((2,), 0.5, dtype=F64), atol=1e-7)
    assert torch.equal(sol[0], y0)


def test_event_state_is_a_real_step_solution():
    # the state at the event is the discrete solution on the accepted steps + the last
    # shortened one: rerunning them as a fixed grid gives the same state
    from odenet.gradients._adaptive import LAST

    y0 = torch.tensor([1.0, 0.0], dtype=F64)

    def f(t, y):
        return torch.stack([y[1], -y[0]])

    te, sol = odenet.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=F64), method="dopri5",
                            event_fn=lambda t, y: y[0], options={"rtol": 1e-6})
    assert abs(te.item() - math.pi / 2) < 1e-5
    assert abs(sol[-1][0].item()) < 1e-12  # landed on the event to round-off
    assert LAST["forward_steps"] >= 2


@pytest.mark.parametrize("gradient", ["backprop", "anode", "revolve", "adjoint"])
def test_event_gradients_hold_the_event_time(gradient):
    # d y(tau)/d y0 at fixed tau = exp(-tau) = 1/2
    y0 = torch.ones(1, dtype=F64, requires_grad=True)
    te, sol = odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                            method="dopri5", event_fn=lambda t, y: y.sum() - 0.5,
                            gradient=gradient, options={"rtol": 1e-10, "atol": 1e-12})
    (g,) = torch.autograd.grad(sol[-1].sum(), y0)
    assert abs(g.item() - 0.5) < 1e-6
    assert not te.requires_grad


def test_compat_event_time_gradient():
    # tau = ln(2 y0): d tau / d y0 = 1 / y0
    y0 = torch.tensor([1.5], dtype=F64, requires_grad=True)
    for call, kw in ((tde.odeint, {}), (tde.odeint_adjoint, {"adjoint_params": ()})):
        te, sol = call(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                       event_fn=lambda t, y: y.sum() - 0.5, method="dopri5", **kw)
        (g,) = torch.autograd.grad(te, y0)
        assert abs(te.item() - math.log(3.0)) < 1e-6
        assert abs(g.item() - 1 / 1.5) < 1e-6
    te, sol = tde.odeint_event(lambda t, y: -y, y0, torch.tensor(0.0, dtype=F64),
                               event_fn=lambda t, y: y.sum() - 0.5, method="dopri5")
    (g,) = torch.autograd.grad(te, y0)
    assert abs(g.item() - 1 / 1.5) < 1e-6


def test_adaptive_event_bad_input():
    y0 = torch.ones(1, dtype=F64)
    with pytest.raises(ArgumentError, match="len"):
        odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 0.5, 1.0], dtype=F64),
                      method="dopri5", event_fn=lambda t, y: y.sum() - 0.5)
    with pytest.raises(ArgumentError, match="jump_t"):
        odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                      method="dopri5", event_fn=lambda t, y: y.sum() - 0.5,
                      options={"jump_t": [0.3]})
    with pytest.raises(ArgumentError, match="differentiate_steps"):
        odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                      method="dopri5", event_fn=lambda t, y: y.sum() - 0.5,
                      options={"differentiate_steps": True})
    with pytest.raises(EventError, match="max_num_steps"):  # never reaches the event
        odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                      method="dopri5", event_fn=lambda t, y: y.sum() + 1.0,
                      options={"max_num_steps": 50})


def test_user_adjoint_norm_sees_torchdiffeq_tuple():
    seen = []

    def norm(z):
        seen.append(tuple(x.shape for x in z))
        return max(x.abs().max() for x in z)

    w = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
    y0 = (torch.tensor(1.0, dtype=F64), torch.ones(2, 2, dtype=F64))
    ys = odenet.odeint(lambda t, y: (w[0] * y[0], w[1] * y[1]), y0,
                       torch.tensor([0.0, 1.0], dtype=F64), method="dopri5", gradient="adjoint",
                       params=[w], options={"adjoint_norm": norm})
    (ys[0][-1] + ys[1][-1].sum()).backward()
    # (t adjoint, *y, *y adjoint, *parameter adjoints)
    assert seen and seen[0] == ((), (), (2, 2), (), (2, 2), (2,))


def test_default_adjoint_norm_on_the_node():
    # as torchdiffeq's: the node's adjoint_options['norm'] is the reverse solve's norm
    calls = []
    y0 = torch.ones(3, dtype=F64, requires_grad=True)
    ys = tde.odeint_adjoint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                            adjoint_params=())
    base = ys.grad_fn.adjoint_options["norm"]

    def spy(z):
        calls.append(len(z))
        return base(z)

    ys.grad_fn.adjoint_options["norm"] = spy
    ys.sum().backward()
    assert calls and calls[0] == 3  # (t adjoint, y, y adjoint): func has no parameters


def test_default_adjoint_norm_of_a_tuple_state_sees_the_flat_state():
    # torchdiffeq's layout: each output component a view of a slice above the adjoint's node,
    # whose norm sees (t adjoint, flat y, flat y adjoint, *parameter adjoints)
    seen = []
    w = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
    y0 = (torch.tensor(1.0, dtype=F64), torch.ones(2, 2, dtype=F64))
    xs = tde.odeint_adjoint(lambda t, y: (w[0] * y[0], w[1] * y[1]), y0,
                            torch.tensor([0.0, 1.0], dtype=F64), adjoint_params=(w,))
    node = xs[0].grad_fn.next_functions[0][0].next_functions[0][0]
    base = node.adjoint_options["norm"]

    def spy(z):
        seen.append(tuple(x.shape for x in z))
        return base(z)

    node.adjoint_options["norm"] = spy
    (xs[0].sum() + xs[1].sum()).backward()
    assert seen and seen[0] == ((), (5,), (5,), (2,))
    assert w.grad is not None and torch.isfinite(w.grad).all()
