"""Adaptive embedded Runge–Kutta pairs: tableaux, orders, step-size control, exact gradients."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import (
    ArgumentError,
    ArgumentTypeError,
    EventError,
    GradientError,
    NonFiniteStateError,
    TableauError,
    UnknownOptionError,
)
from odenet.gradients._adaptive import LAST
from odenet.solvers import ADAPTIVE_METHODS, ButcherTableau, StepSizeError
from odenet.solvers._adaptive import AdaptiveSolve
from odenet.solvers._controller import parse_adaptive_options

F64 = torch.float64
NAMES = tuple(ADAPTIVE_METHODS)
EXACT = ("anode", "revolve")


def rhs(t, y):
    """A nonlinear, time-dependent two-dimensional right-hand side."""
    return torch.stack(
        [-y[1] + 0.5 * y[0] * torch.cos(t), y[0] - 0.3 * y[1] ** 3 + 0.2 * torch.sin(2 * t)]
    )


Y0 = torch.tensor([1.0, 0.5], dtype=F64)
T2 = torch.tensor([0.0, 2.0], dtype=F64)


@functools.cache
def reference():
    fine = ADAPTIVE_METHODS["dopri8"].fixed_step()
    return odenet.odeint(rhs, Y0, T2, method=fine, step_size=2 / 400)[-1]


# -- tableaux -------------------------------------------------------------------------------------
def test_registry_orders_and_storage():
    orders = {n: (t.order, t.embedded_order) for n, t in ADAPTIVE_METHODS.items()}
    assert orders == {"adaptive_heun": (2, 1), "fehlberg2": (2, 1), "bosh3": (3, 2),
                      "dopri5": (5, 4), "tsit5": (5, 4), "dopri8": (8, 7)}
    assert not set(ADAPTIVE_METHODS) & set(odenet.METHODS)  # never in the fixed-step loops
    for tab in ADAPTIVE_METHODS.values():
        assert tab.is_adaptive
        assert tab.b_hat.dtype.name == "float64" and not tab.b_hat.flags.writeable
        assert abs(tab.b_hat.sum() - 1) < 1e-12 and abs(tab.b_err.sum()) < 1e-12
        assert abs(tab.b_mid.sum() - 0.5) < 1e-10
    assert [n for n, t in ADAPTIVE_METHODS.items() if t.is_fsal] == ["bosh3", "dopri5", "tsit5",
                                                                    "dopri8"]
    assert odenet.solvers.method_names("explicit").count("dopri5") == 0


HEUN = dict(a=[[0, 0], [1, 0]], b=[0.5, 0.5], c=[0, 1], order=2)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(b_hat=[0.9, 0.0], embedded_order=1), r"^b_hat: weights must sum to 1"),
        (dict(b_hat=[1.0, 0.0]), r"^embedded_order: expected a positive integer"),
        (dict(embedded_order=1), r"^embedded_order: given without b_hat"),
        (dict(b_hat=[1.0, 0.0], embedded_order=2), r"^embedded_order: expected an order different"),
        (dict(b_hat=[1.0, 0.0, 0.0], embedded_order=1), r"^b_hat: expected a vector of length 2"),
        (dict(b_hat=[0.6, 0.4], embedded_order=3), r"^embedded_order: .*do not have order 3"),
        (dict(b_hat=[1.0, 0.0], embedded_order=1, b_mid=[0.5, 0.5]), r"^b_mid: .*sum to 1/2"),
    ],
)
def test_invalid_embedded_pairs(kw, match):
    with pytest.raises(TableauError, match=match):
        ButcherTableau(**HEUN, **kw)


def test_equality_and_fixed_step():
    tab = ADAPTIVE_METHODS["bosh3"]
    same = ButcherTableau(tab.a, tab.b, tab.c, 3, b_hat=tab.b_hat, embedded_order=2,
                          b_mid=tab.b_mid)
    assert same == tab and hash(same) == hash(tab)
    assert tab.fixed_step() != tab and not tab.fixed_step().is_adaptive
    with pytest.raises(TableauError, match="no embedded weights"):
        odenet.METHODS["rk4"].fixed_step(embedded=True)


# steps per unit interval at the coarsest level, by order (the asymptotic regime of each pair)
BASE = {1: 128, 2: 32, 3: 16, 4: 16, 5: 16, 7: 3, 8: 3}


@pytest.mark.parametrize("embedded", [False, True], ids=["solution", "estimator"])
@pytest.mark.parametrize("name", NAMES)
def test_empirical_order_of_both_formulas(name, embedded):
    """Fixed steps with the solution weights b and with the embedded weights b_hat: the
    log-log slope of the error at T = 2 against the step size is the declared order."""
    tab = ADAPTIVE_METHODS[name].fixed_step(embedded)
    base = 1024 if (name, embedded) == ("fehlberg2", True) else BASE[tab.order]
    ref = reference()
    errs = []
    for i in range(3):
        y = odenet.odeint(rhs, Y0, T2, method=tab, step_size=2 / (base * 2**i))
        errs.append(float((y[-1] - ref).abs().max()))
    slope = math.log2(errs[-2] / errs[-1])
    assert tab.order - 0.3 < slope < tab.order + 0.6, (errs, slope)


# -- the adaptive loop ----------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """rhs as a module that records torchdiffeq's step callbacks."""

    def __init__(self, f=rhs):
        super().__init__()
        self.f = f
        self.accepted: list[tuple[float, float]] = []
        self.rejected = 0
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.f(t, y)

    def callback_accept_step(self, t0, y0, dt):
        self.accepted.append((float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.rejected += 1


@pytest.mark.parametrize("name", NAMES)
def test_tolerance_controls_the_error(name):
    errs = []
    for rtol in ((1e-3, 1e-5) if ADAPTIVE_METHODS[name].order < 5 else (1e-4, 1e-7)):
        y = odenet.odeint(rhs, Y0, T2, method=name, options={"rtol": rtol, "atol": rtol * 1e-2})
        errs.append(float((y[-1] - reference()).abs().max()))
    assert errs[1] < errs[0] / 10 and errs[1] < 2e-3, errs


def test_outputs_are_step_end_points_not_interpolated():
    t = torch.tensor([0.0, 0.3, 0.31, 1.7, 2.0], dtype=F64)
    f = Recorder()
    y = odenet.odeint(f, Y0, t, method="dopri5", options={"rtol": 1e-5})
    ends = {t0 + dt for t0, dt in f.accepted}
    assert set(t[1:].tolist()) <= ends  # every output time is the end of an accepted step
    opts = parse_adaptive_options({"rtol": 1e-5}, [Y0.shape], False)
    s = AdaptiveSolve(rhs, ADAPTIVE_METHODS["dopri5"], t, opts)
    outs = s.run((Y0,))
    assert [s.ends[n - 1] for n in s.out_index[1:]] == t[1:].tolist()
    for k in range(1, len(t)):  # the outputs are states of the step sequence, bit for bit
        assert torch.equal(s.advance((Y0,), 0, s.out_index[k])[0], outs[k][0])
        assert torch.equal(outs[k][0], y[k])


def test_decreasing_times():
    t = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    y = odenet.odeint(lambda t, y: -y, torch.ones(1, dtype=F64), t, method="tsit5",
                      options={"rtol": 1e-10, "atol": 1e-12})
    torch.testing.assert_close(y[:, 0], torch.exp(1 - t), rtol=1e-8, atol=0)


def test_tuple_state_with_per_component_tolerances():
    def f(t, y):
        return (-y[1], y[0])

    y0 = (torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    counts = []
    for rtol in ((1e-9, 1e-9), (1e-9, 1e-3)):
        g = Recorder(f)
        c, s = odenet.odeint(g, y0, t, method="dopri5", options={"rtol": rtol, "atol": 1e-12})
        counts.append(len(g.accepted))
        assert abs(c[-1, 0].item() - math.cos(1)) < 1e-5
    assert counts[1] < counts[0]  # the loose tolerance on y[1] needs fewer steps
    per_elem = torch.tensor([1e-9, 1e-9, 1e-3], dtype=F64)
    y = odenet.odeint(lambda t, y: -y, torch.ones(3, dtype=F64), t, method="bosh3",
                      options={"rtol": per_elem, "atol": 0.0})
    assert abs(y[-1, 0].item() - math.exp(-1)) < 1e-7


def test_jump_t_and_step_t_stop_the_steps():
    def jump(t, y):
        return -0.5 * y if t < 0.5 else y**2

    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    plain, better = Recorder(jump), Recorder(jump)
    odenet.odeint(plain, y0, t, method="dopri5", options={"rtol": 1e-6, "atol": 1e-6})
    odenet.odeint(better, y0, t, method="dopri5",
                  options={"rtol": 1e-6, "atol": 1e-6, "jump_t": [0.5]})
    assert better.nfe < plain.nfe
    assert 0.5 in {t0 + dt for t0, dt in better.accepted}
    stepped = Recorder()
    odenet.odeint(stepped, Y0, T2, method="dopri5",
                  options={"step_t": torch.tensor([0.77], dtype=F64)})
    assert 0.77 in {t0 + dt for t0, dt in stepped.accepted}


def test_first_step_max_step_and_pi_control():
    f = Recorder()
    odenet.odeint(f, Y0, T2, method="dopri5",
                  options={"first_step": 0.01, "max_step": 0.1, "rtol": 1e-6})
    assert f.accepted[0][1] == 0.01 and max(dt for _, dt in f.accepted) <= 0.1 * (1 + 1e-14)
    g = Recorder()
    y = odenet.odeint(g, Y0, T2, method="dopri5",
                      options={"rtol": 1e-7, "atol": 1e-9, "pcoeff": 0.4, "icoeff": 0.3})
    assert float((y[-1] - reference()).abs().max()) < 1e-6
    h = Recorder()
    odenet.odeint(h, Y0, T2, method="dopri5", options={"rtol": 1e-7, "atol": 1e-9})
    assert g.accepted != h.accepted  # the PI controller chose other steps


def solve(**kw):
    args = dict(func=lambda t, y: -y, y0=torch.ones(2, dtype=F64),
                t=torch.tensor([0.0, 1.0], dtype=F64), method="dopri5")
    args.update(kw)
    return odenet.odeint(**args)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: solve(step_size=0.1), ArgumentError, r"^step_size: 'dopri5' is an adaptive"),
        (lambda: solve(options={"step_size": 0.1}), ArgumentError, r"^step_size: adaptive"),
        (lambda: solve(options={"rtoll": 1e-3}), UnknownOptionError, r"'rtoll'.*'rtol'"),
        (lambda: solve(options={"rtol": -1.0}), ArgumentError, r"^rtol: expected a non-negative"),
        (lambda: solve(options={"rtol": 0.0, "atol": 0.0}), ArgumentError, r"both are zero"),
        (lambda: solve(options={"rtol": (1e-3, 1e-3)}), ArgumentTypeError, r"needs a tuple"),
        (lambda: solve(options={"norm": "max"}), ArgumentTypeError, r"^options\['norm'\]"),
        (lambda: solve(options={"safety": 2.0}), ArgumentError, r"^options\['safety'\]"),
        (lambda: solve(options={"jump_t": [0.5], "step_t": [0.5]}), ArgumentError, "share"),
        (lambda: solve(event_fn=lambda t, y: y.sum()), EventError, r"^event_fn: no event found"),
        (lambda: solve(options={"max_num_steps": 3, "rtol": 1e-12}), StepSizeError,
         r"max_num_steps.*t = 0"),
        (lambda: solve(func=lambda t, y: y * y, t=torch.tensor([0.0, 2.0], dtype=F64)),
         (StepSizeError, NonFiniteStateError), r"at t = (0\.99|1)\b"),
        (lambda: solve(gradient="revolve", y0=torch.ones(2, dtype=F64, requires_grad=True),
                       t=torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)),
         ArgumentError, r"^t: gradients .*'backprop' and 'adjoint'"),
    ],
)
def test_bad_input_is_a_clear_error(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_recomputing_strategies_refuse_random_func():
    y0 = torch.ones(4, dtype=F64, requires_grad=True)
    with pytest.raises(GradientError, match="random numbers"):  # draws, even unused ones
        solve(func=lambda t, y: -y + 0 * torch.rand_like(y), y0=y0, gradient="anode")


# -- gradients ------------------------------------------------------------------------------------
class Net(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=F64) / 2)
        self.b = torch.nn.Parameter(torch.randn(3, generator=g, dtype=F64) / 4)

    def forward(self, t, y):
        return torch.tanh(y @ self.w.T + self.b) * (1 + 0.5 * torch.sin(t))


def grads(strategy, method="dopri5", rtol=1e-6, tuple_state=False, seed=0, t=None):
    f = Net(seed)
    g = torch.Generator().manual_seed(seed + 1)
    y0 = torch.randn(2, 3, generator=g, dtype=F64).requires_grad_()
    t = torch.tensor([0.0, 0.4, 1.5], dtype=F64) if t is None else t
    if tuple_state:
        def func(t, y):
            return (f(t, y[0]) - 0.1 * y[1], 0.5 * y[0])

        ys = odenet.odeint(func, (y0, 2 * y0), t, method=method, gradient=strategy,
                           params=list(f.parameters()), options={"rtol": rtol, "atol": rtol})
        loss = sum((y * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum()
                   for y in ys)
    else:
        ys = odenet.odeint(f, y0, t, method=method, gradient=strategy,
                           options={"rtol": rtol, "atol": rtol})
        loss = (ys * torch.linspace(-1, 1, ys.numel(), dtype=F64).view_as(ys)).sum()
    return torch.autograd.grad(loss, (y0, f.w, f.b))


def rel(a, b):
    return max(float((x - y).abs().max() / y.abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "tsit5", "fehlberg2"])
def test_exact_strategies_equal_backprop(method):
    ref = grads("backprop", method)
    for strategy in (*EXACT, odenet.Revolve(checkpoints=1), odenet.Revolve(checkpoints=3)):
        assert rel(grads(strategy, method), ref) < 1e-12, strategy


def test_revolve_memory_is_bounded_by_its_checkpoints():
    grads(odenet.Revolve(checkpoints=2), rtol=1e-9)
    steps = LAST["forward_steps"]
    assert steps > 10 and LAST["snapshots"] <= 2 and LAST["backward_steps"] == steps
    assert LAST["backward_recomputed"] == odenet.gradients.binomial_advances(steps, 2)


@settings(max_examples=6, deadline=None)
@given(log_rtol=st.floats(-9, -3), tuple_state=st.booleans(), seed=st.integers(0, 50))
def test_exactness_over_tolerances_and_tuple_states(log_rtol, tuple_state, seed):
    ref = grads("backprop", rtol=10**log_rtol, tuple_state=tuple_state, seed=seed)
    for strategy in EXACT:
        got = grads(strategy, rtol=10**log_rtol, tuple_state=tuple_state, seed=seed)
        assert rel(got, ref) < 1e-12


@pytest.mark.parametrize("strategy", ["backprop", *EXACT])
def test_gradcheck_with_the_steps_held(strategy):
    """With the controller pinned (min_step = max_step) the step sequence cannot change under
    a perturbation, so finite differences see the discrete network the gradient is of."""
    f = Net(3)
    t = torch.tensor([0.0, 0.35, 1.0], dtype=F64)
    pin = {"first_step": 0.15, "min_step": 0.15, "max_step": 0.15}

    def run(y0, w):
        return odenet.odeint(lambda t, y: torch.tanh(y @ w.T) + f.b, y0, t, method="dopri5",
                             gradient=strategy, params=[w, f.b], options=pin)

    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (y0, f.w.detach().clone().requires_grad_()))


def test_gradient_with_respect_to_output_times():
    pin = {"first_step": 0.2, "min_step": 0.2, "max_step": 0.2}
    y0 = torch.tensor([0.3, -0.2], dtype=F64)

    def run(t):
        return odenet.odeint(rhs, y0, t, method="bosh3", options=pin)

    # output intervals of 3.25 and 3.15 steps: a perturbation keeps the step count
    assert torch.autograd.gradcheck(run, (torch.tensor([0.1, 0.75, 1.38], dtype=F64,
                                                       requires_grad=True),))


def test_adjoint_approaches_the_exact_gradient():
    gaps = [rel(grads("adjoint", rtol=r), grads("backprop", rtol=r)) for r in (1e-4, 1e-8)]
    assert gaps[1] < gaps[0] / 100 and gaps[1] < 1e-6, gaps
