"""torchdiffeq's fixed-grid behaviour, case by case, through ``odenet.compat.torchdiffeq``.

The cases follow what torchdiffeq's own test suite checks for its fixed-grid
methods (solver error on both time directions and dtypes, no integration, event
handling, perturb, grid constructor, gradients including ``t``, callbacks),
written here in odenet's words, plus direct comparisons with the installed
torchdiffeq where both define the same numbers.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torchdiffeq as real_tde

import odenet
from odenet.compat import torchdiffeq as tde
from odenet.errors import ArgumentError, GradientError, UnknownMethodError

F64 = torch.float64
FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4")
STRATEGIES = ("backprop", "anode", "revolve", "adjoint")


class Drift(torch.nn.Module):
    """y' = a + (y - (a t + b))^5: its solution a t + b is integrated exactly by every method."""

    def __init__(self, dtype=F64):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.2, dtype=dtype))
        self.b = torch.nn.Parameter(torch.tensor(3.0, dtype=dtype))

    def forward(self, t, y):
        return self.a + (y - (self.a * t + self.b)) ** 5

    def exact(self, t):
        return self.a * t + self.b


def drift_problem(dtype, reverse=False, n=10):
    f = Drift(dtype)
    t = torch.linspace(1, 8, n, dtype=F64)
    if reverse:
        t = t.flip(0)
    sol = f.exact(t).to(dtype).detach()
    return f, sol[0].clone().requires_grad_(), t, sol


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.tanh(self.lin(y))


# -- solving --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("reverse", [False, True])
def test_drift_solved_on_t_without_step_size(method, dtype, reverse):
    """float64 t with a float32 state: func gets times in the state's dtype."""
    f, y0, t, sol = drift_problem(dtype, reverse)
    y = tde.odeint(f, y0, t, method=method)
    assert y.dtype == dtype and y.shape == sol.shape
    assert float(((sol - y) / sol).abs().max().detach()) < 3e-4


def test_no_step_size_takes_one_step_per_interval():
    f = Counter()
    tde.odeint(f, torch.ones(2), torch.linspace(0, 1, 7), method="rk4")
    assert f.nfe == 6 * 4


def test_func_receives_time_in_state_dtype():
    seen = []

    def f(t, y):
        seen.append(t.dtype)
        return -y

    odenet.odeint(f, torch.ones(2), torch.tensor([0.0, 1.0], dtype=F64), step_size=0.5)
    assert set(seen) == {torch.float32}


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("tuple_state", [False, True])
def test_single_output_time_returns_the_initial_state(method, tuple_state):
    y0 = torch.randn(3, requires_grad=True)
    t = torch.tensor([0.5])
    if tuple_state:
        out = tde.odeint(lambda t, y: (-y[0], y[1]), (y0, 2 * y0), t, method=method)
        assert out[0].shape == (1, 3) and torch.equal(out[1][0], 2 * y0)
    else:
        out = tde.odeint(lambda t, y: -y, y0, t, method=method)
        assert out.shape == (1, 3) and torch.equal(out[0], y0)
        out.sum().backward()
        assert torch.equal(y0.grad, torch.ones(3))


@pytest.mark.parametrize("method,ours", [("euler", "euler"), ("midpoint", "midpoint"),
                                         ("heun2", "heun"), ("rk4", "rk4_38")])
@pytest.mark.parametrize("step_size", [None, 0.05])
def test_same_numbers_as_torchdiffeq(method, ours, step_size):
    torch.manual_seed(0)
    W = torch.randn(3, 3, dtype=F64)

    def f(t, y):
        return torch.tanh(y @ W.T) * torch.cos(t)

    y0 = torch.randn(2, 3, dtype=F64)
    t = torch.tensor([0.0, 0.1, 0.35, 0.5, 1.0], dtype=F64)
    opts = {} if step_size is None else {"step_size": step_size}
    ref = real_tde.odeint(f, y0, t, method=method, options=opts)
    torch.testing.assert_close(tde.odeint(f, y0, t, method=method, options=opts), ref,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(odenet.odeint(f, y0, t, method=ours, step_size=step_size), ref,
                               rtol=0, atol=1e-12)


def test_heun3_is_third_order():
    errs = []
    for n in (10, 20, 40):
        y = tde.odeint(lambda t, y: -y * torch.cos(t), torch.ones(1, dtype=F64),
                       torch.linspace(0, 2, n + 1, dtype=F64), method="heun3")
        errs.append(abs(y[-1].item() - math.exp(-math.sin(2.0))))
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errs)]
    assert all(abs(o - 3) < 0.2 for o in orders), orders


def test_adaptive_default_runs_and_other_methods_are_clear_errors():
    y = tde.odeint(lambda t, y: -y, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))
    assert abs(y[-1].item() - math.exp(-1)) < 1e-7  # dopri5 at torchdiffeq's rtol=1e-7
    with pytest.raises(UnknownMethodError, match="scipy"):
        tde.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="scipy_solver")
    with pytest.raises(UnknownMethodError, match="Adams or implicit"):
        tde.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="gl4")


def test_interp_and_tolerances_warn_rather_than_vanish():
    f = lambda t, y: -y  # noqa: E731
    t = torch.tensor([0.0, 1.0])
    with pytest.warns(UserWarning, match="interp"):
        tde.odeint(f, torch.ones(1), t, method="euler", options={"interp": "cubic"})
    with pytest.warns(UserWarning, match="rtol"):
        tde.odeint(f, torch.ones(1), t, method="euler", rtol=1e-3)
    with pytest.raises(odenet.errors.UnknownOptionError, match="interp"):
        odenet.odeint(f, torch.ones(1), t, options={"interp": "linear"})


# -- perturb and grid constructors ----------------------------------------------------------------
@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("perturb", [False, True])
def test_perturb_moves_evaluations_off_the_grid(method, adjoint, perturb):
    ts: list[float] = []

    def f(t, x):
        ts.append(t.item())
        return -x

    x0 = torch.tensor([1.0, 2.0], requires_grad=True)
    solve = tde.odeint_adjoint if adjoint else tde.odeint
    kw = {"adjoint_params": ()} if adjoint else {}
    xs = solve(f, x0, torch.tensor([0.0, 1.0]), method=method,
               options={"step_size": 0.5, "perturb": perturb}, **kw)
    assert {0.0, 0.5}.isdisjoint(ts) == perturb
    if adjoint:
        ts.clear()
        xs.sum().backward()
        assert {1.0, 0.5}.isdisjoint(ts) == perturb


@pytest.mark.parametrize("adjoint", [False, True])
def test_grid_constructor(adjoint):
    calls = []

    def grid(func, y0, t):
        calls.append(t.tolist())
        return torch.linspace(0, 1, 11)

    x0 = torch.tensor(1.0, requires_grad=True)
    solve = tde.odeint_adjoint if adjoint else tde.odeint
    kw = {"adjoint_params": ()} if adjoint else {}
    xs = solve(lambda t, x: x, x0, torch.tensor([0.0, 1.0]), method="euler",
               options={"grid_constructor": grid}, **kw)
    assert calls == [[0.0, 1.0]]
    assert abs(xs[1].item() - 1.1**10) < 1e-5
    xs[1].backward()
    assert abs(x0.grad.item() - 1.1**10) < 1e-5


def test_grid_constructor_lands_on_output_times_and_is_checked():
    seen = []

    def f(t, y):
        seen.append(round(t.item(), 12))
        return -y

    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    odenet.odeint(f, torch.ones(1, dtype=F64), t, method="euler",
                  options={"grid_constructor": lambda f, y, t: torch.linspace(0, 1, 5)})
    assert seen == [0.0, 0.25, 0.3, 0.5, 0.75]
    with pytest.raises(ArgumentError, match="must start at t\\[0\\]"):
        odenet.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]),
                      options={"grid_constructor": lambda f, y, t: torch.linspace(0.1, 1, 5)})
    with pytest.raises(ArgumentError, match="mutually exclusive"):
        odenet.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), step_size=0.1,
                      options={"grid_constructor": lambda f, y, t: t})


# -- gradients, including t -----------------------------------------------------------------------
@pytest.mark.parametrize("method", FIXED)
def test_gradcheck_y0_and_t_backprop(method):
    f, y0, t, _ = drift_problem(F64)
    t = t.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y0, t: tde.odeint(f, y0, t, method=method), (y0, t))


@pytest.mark.parametrize("method", FIXED)
def test_gradcheck_y0_and_t_adjoint(method):
    f, y0, t, _ = drift_problem(F64)
    t = t.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda y0, t: tde.odeint_adjoint(f, y0, t, method=method), (y0, t)
    )


@pytest.mark.parametrize("gradient", ["backprop", "anode", "revolve"])
@pytest.mark.parametrize("step_size", [None, 0.07])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_discrete_gradients_with_respect_to_t(gradient, step_size, direction):
    """DTO strategies give the exact gradient of the discrete solve w.r.t. the output times."""
    torch.manual_seed(1)
    W = torch.randn(3, 3, dtype=F64) * 0.5

    def f(t, y):
        return torch.tanh(y @ W.T) * torch.cos(t) + t * y

    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = (direction * torch.tensor([0.1, 0.35, 0.8, 1.0], dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda y0, t: odenet.odeint(f, y0, t, method="rk4", step_size=step_size,
                                    gradient=gradient, params=[]),
        (y0, t),
    )


def test_t_gradients_match_torchdiffeq():
    """On t itself as the grid, torchdiffeq's autograd and odenet's agree, for both odeints."""
    torch.manual_seed(2)
    W = torch.randn(2, 2, dtype=F64)

    def f(t, y):
        return torch.tanh(y @ W.T) * torch.sin(3 * t)

    y0 = torch.randn(2, dtype=F64)
    grads = []
    for solve in (real_tde.odeint, tde.odeint):
        t = torch.tensor([0.0, 0.3, 0.9, 1.4], dtype=F64, requires_grad=True)
        solve(f, y0, t, method="rk4").square().sum().backward()
        grads.append(t.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)

    class Mod(torch.nn.Module):
        def forward(self, t, y):
            return f(t, y)

    grads = []
    for solve in (real_tde.odeint_adjoint, tde.odeint_adjoint):
        t = torch.tensor([0.0, 0.3, 0.9, 1.4], dtype=F64, requires_grad=True)
        solve(Mod(), y0, t, method="rk4", options={"step_size": 0.05}).square().sum().backward()
        grads.append(t.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-10)


def test_imex_refuses_t_gradients_by_name():
    L = odenet.linear.ConvFFT(torch.randn(2, 1, 3, 3))
    t = torch.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(ArgumentError, match="t: gradients .* IMEX"):
        odenet.odeint(lambda t, y: -y, torch.randn(1, 2, 4, 4), t, method="ars222",
                      implicit=L, step_size=0.5)


# -- events ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("reverse", [False, True])
def test_event_found(method, dtype, reverse):
    f, y0, t, sol = drift_problem(dtype, reverse)
    target = sol[2]
    t_ev, y = tde.odeint(f, y0, t[:2], method=method, event_fn=lambda t, y: (y - target).sum(),
                         options={"step_size": 0.01})
    tol = 5e-3 if method == "euler" else 1e-4
    assert y.shape == (2,) and float(abs((y[-1] - target) / target)) < tol
    assert abs((t_ev.item() - t[2].item()) / t[2].item()) < tol
    assert t_ev.dtype == t.dtype


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("reverse", [False, True])
def test_event_time_is_differentiable(interface, reverse):
    """y' = -y from y0 until y = 1/2: tau = log(2 y0), d tau / d y0 = 1 / y0 (sign for reverse)."""
    y0 = torch.tensor([1.5], dtype=F64, requires_grad=True)
    kw = {"adjoint_params": ()} if interface == "odeint_adjoint" else {}
    t_ev, sol = tde.odeint_event(
        lambda t, y: -y, y0, torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y.sum() - (0.5 if not reverse else 3.0), method="rk4",
        options={"step_size": 0.01}, reverse_time=reverse,
        odeint_interface=getattr(tde, interface), **kw,
    )
    expect = math.log(2 * 1.5) if not reverse else math.log(1.5 / 3.0)
    assert abs(t_ev.item() - expect) < 1e-8
    (g,) = torch.autograd.grad(t_ev, y0)
    assert abs(g.item() - 1 / 1.5) < 1e-6
    assert abs(sol[-1].item() - (0.5 if not reverse else 3.0)) < 1e-8


def test_event_errors_are_clear():
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ArgumentError, match="step_size"):
        odenet.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), event_fn=lambda t, y: y - 0.5)
    with pytest.raises(ArgumentError, match="len\\(t\\) == 2"):
        odenet.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0, 2.0]), step_size=0.1,
                      event_fn=lambda t, y: y.sum() - 0.5)
    with pytest.raises(odenet.errors.EventError, match="max_num_steps"):
        odenet.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), step_size=0.1,
                      options={"max_num_steps": 50}, event_fn=lambda t, y: y.sum() + 1.0)


# -- callbacks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("forward,adjoint", [(False, True), (True, False), (True, True)])
def test_step_callbacks_counted_like_torchdiffeq(method, forward, adjoint):
    f = Counter()
    counts = {"fwd": 0, "adj": 0}
    if forward:
        f.callback_step = lambda t0, y0, dt: counts.__setitem__("fwd", counts["fwd"] + 1)
    if adjoint:
        f.callback_step_adjoint = lambda t0, y0, dt: counts.__setitem__("adj", counts["adj"] + 1)
    xs = tde.odeint_adjoint(f, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]),
                            method=method, options={"step_size": 0.1})
    assert counts["fwd"] == (10 if forward else 0)
    xs.sum().backward()
    assert counts["adj"] == (10 if adjoint else 0)


@pytest.mark.parametrize("gradient", STRATEGIES)
def test_callback_step_once_per_forward_step_for_every_strategy(gradient):
    f = Counter()
    seen = []
    f.callback_step = lambda t0, y0, dt: seen.append((round(t0.item(), 6), round(dt.item(), 6)))
    y = odenet.odeint(f, torch.ones(2), torch.tensor([0.0, 0.5]), step_size=0.2,
                      gradient=gradient)
    y.sum().backward()  # recomputation in backward calls no step callback
    assert seen == [(0.0, 0.2), (0.2, 0.2), (0.4, 0.1)]


@pytest.mark.parametrize("name", ["callback_accept_step", "callback_reject_step"])
def test_unsupported_callbacks_warn(name):
    f = Counter()
    setattr(f, name, lambda t0, y0, dt: None)
    with pytest.warns(UserWarning, match=name):
        tde.odeint(f, torch.ones(2), torch.tensor([0.0, 1.0]), method="euler")
    f = Counter()
    f.callback_step_adjoint = lambda t0, y0, dt: None
    with pytest.warns(UserWarning, match="only by gradient='adjoint'"):
        odenet.odeint(f, torch.ones(2), torch.tensor([0.0, 1.0]), step_size=0.5)


# -- what the adjoint cannot do is loud -----------------------------------------------------------
def test_adjoint_refuses_random_func():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5))
    y0 = torch.randn(4, 3)
    with pytest.raises(GradientError, match="random numbers.*eval"):
        odenet.odeint(lambda t, y: net(y), y0, torch.tensor([0.0, 1.0]), step_size=0.25,
                      gradient="adjoint", params=list(net.parameters()))
    net.eval()
    odenet.odeint(lambda t, y: net(y), y0, torch.tensor([0.0, 1.0]), step_size=0.25,
                  gradient="adjoint", params=list(net.parameters()))


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_closure_tensor_first_used_later_is_refused(gradient):
    W = torch.tensor(0.5, requires_grad=True)

    def f(t, y):
        return -y if t < 0.5 else -W * y

    y = odenet.odeint(f, torch.ones(2, requires_grad=True), torch.tensor([0.0, 1.0]),
                      step_size=0.25, gradient=gradient)
    with warnings.catch_warnings(), pytest.raises(GradientError, match="not among the parameters"):
        y.sum().backward()
