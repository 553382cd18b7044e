"""Reversible methods (reversible Heun, ALF, leapfrog) and the reversible gradient strategy:
orders, inverse steps, reconstruction, gradients against backprop of the same scheme and
finite differences, tuple states, both time directions, ODEBlock, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError, FunctionOutputError, GradientError
from odenet.solvers import ALF, REVERSIBLE_METHODS, Leapfrog, ReversibleHeun

F64 = torch.float64
GENERAL = ["reversible_heun", "alf"]  # any state layout


class MLP(torch.nn.Module):
    """f(t, y) = W2 tanh(W1 y + b1) (1 + t / 2): non-linear, time dependent."""

    def __init__(self, n: int = 3, width: int = 5, seed: int = 0, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(seed)
        self.l1 = torch.nn.Linear(n, width, dtype=F64)
        self.l2 = torch.nn.Linear(width, n, dtype=F64)
        with torch.no_grad():
            self.l2.weight.mul_(scale)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * (1 + t / 2)


class Pair(torch.nn.Module):
    """A coupled tuple state (u, v): u' = tanh(v A), v' = -sin(u B)(1 + t)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(3, 2, dtype=F64, generator=g))
        self.B = torch.nn.Parameter(torch.randn(2, 3, dtype=F64, generator=g))

    def forward(self, t, y):
        u, v = y
        return torch.tanh(v @ self.A), -torch.sin(u @ self.B) * (1 + t)


class Pendulum(torch.nn.Module):
    """Partitioned, time dependent: y' = a z (1 + t/4), z' = -sin(y B) + t/10."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(torch.tensor(1.3, dtype=F64))
        self.B = torch.nn.Parameter(torch.randn(3, 3, dtype=F64, generator=g) / 2)

    def forward(self, t, s):
        y, z = s
        return self.a * z * (1 + t / 4), -torch.sin(y @ self.B) + t / 10


def _problem(name: str, seed: int = 0):
    """(func, y0) for a method: a partitioned pair for leapfrog, a tensor otherwise."""
    g = torch.Generator().manual_seed(seed + 100)
    if name == "leapfrog":
        return Pendulum(seed), (torch.randn(2, 3, dtype=F64, generator=g),
                                torch.randn(2, 3, dtype=F64, generator=g))
    return MLP(seed=seed), torch.randn(2, 3, dtype=F64, generator=g)


def _leaf(y0):
    if isinstance(y0, tuple):
        return tuple(c.clone().requires_grad_() for c in y0)
    return y0.clone().requires_grad_()


def _flat(y0):
    return list(y0) if isinstance(y0, tuple) else [y0]


def _loss(out):
    comps = out if isinstance(out, tuple) else (out,)
    w = torch.linspace(0.5, 1.5, comps[0].shape[0], dtype=F64)
    return sum((c.square().sum(dim=tuple(range(1, c.ndim))) * w).sum() for c in comps)


def _grads(func, y0, t, method, gradient, h):
    y0 = _leaf(y0)
    ps = list(func.parameters())
    out = odenet.odeint(func, y0, t, method=method, step_size=h, gradient=gradient)
    return torch.autograd.grad(_loss(out), _flat(y0) + ps), out


# -- methods: orders and inverse steps ----------------------------------------------------------
def _observed_order(name: str, method) -> float:
    func, y0 = _problem(name)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with torch.no_grad():
        if name == "leapfrog":
            ref = odenet.odeint(func, y0, t, method="rk4", step_size=1 / 2048)
            ref = torch.cat([c[-1].flatten() for c in ref])
        else:
            ref = odenet.odeint(func, y0, t, method="rk4", step_size=1 / 2048)[-1].flatten()
        errs, hs = [], []
        for nt in (16, 32, 64, 128):
            y = odenet.odeint(func, y0, t, method=method, step_size=1 / nt)
            y = torch.cat([c[-1].flatten() for c in y]) if isinstance(y, tuple) else y[-1].flatten()
            errs.append(float((y - ref).abs().max()))
            hs.append(1 / nt)
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize(
    ("name", "method"),
    [("reversible_heun", "reversible_heun"), ("alf", "alf"), ("alf", ALF(eta=0.8)),
     ("leapfrog", "leapfrog")],
    ids=["reversible_heun", "alf", "alf-eta0.8", "leapfrog"],
)
def test_observed_order_matches_declared(name, method):
    declared = odenet.solvers.resolve_method(method).order
    slope = _observed_order(name, method)
    assert abs(slope - declared) < 0.25, (slope, declared)


def test_methods_are_registered_by_name_and_kind():
    assert tuple(REVERSIBLE_METHODS) == ("reversible_heun", "alf", "leapfrog")
    for name in REVERSIBLE_METHODS:
        m = REVERSIBLE_METHODS[name]
        assert name not in odenet.METHODS  # the Runge-Kutta tableaux only
        assert odenet.solvers.resolve_method(name) is m
        assert isinstance(m, odenet.solvers.ReversibleMethod) and m.name == name
        assert odenet.solvers.resolve_method(name, kind="reversible") is m
        with pytest.raises(ArgumentError, match="is a reversible method"):
            odenet.solvers.resolve_method(name, kind="explicit")
    # the fixed-step lists that other code loops over do not contain them
    assert not set(REVERSIBLE_METHODS) & set(odenet.solvers.EXPLICIT_METHODS)
    assert not set(REVERSIBLE_METHODS) & set(odenet.solvers.IMEX_METHODS)
    with pytest.raises(odenet.errors.UnknownMethodError, match="reversible methods: 'rev"):
        odenet.solvers.resolve_method("leapfrg")
    with pytest.raises(ArgumentError, match="'rk4' is not a reversible method"):
        odenet.solvers.resolve_method("rk4", kind="reversible")
    assert odenet.solvers.method_names("reversible") == "'reversible_heun', 'alf', 'leapfrog'"
    custom = ALF(eta=0.75)
    assert odenet.solvers.resolve_method(custom) is custom


def _tuple_f(func):
    return lambda t, c: tuple(func(torch.tensor(t, dtype=F64), c if len(c) > 1 else c[0])) \
        if len(c) > 1 else (func(torch.tensor(t, dtype=F64), c[0]),)


@settings(max_examples=12, deadline=None)
@given(
    which=st.sampled_from(["reversible_heun", "alf", "alf-0.7", "leapfrog"]),
    h=st.floats(-0.5, 0.5).filter(lambda x: abs(x) > 1e-3),
    seed=st.integers(0, 50),
    batch=st.integers(1, 3),
)
def test_inverse_step_undoes_step(which, h, seed, batch):
    method = {"reversible_heun": ReversibleHeun(), "alf": ALF(), "alf-0.7": ALF(eta=0.7),
              "leapfrog": Leapfrog()}[which]
    name = "leapfrog" if which == "leapfrog" else "reversible_heun"
    func, y0 = _problem(name, seed)
    y0 = tuple(c[:1].expand(batch, -1).clone() for c in _flat(y0))
    f = _tuple_f(func)
    with torch.no_grad():
        s = method.init(f, 0.3, y0)
        s1 = method.step(f, 0.3, h, s)
        back = method.inverse_step(f, 0.3, h, s1)
    assert len(s) == method.width(len(y0))
    scale = max(float(c.abs().max()) for c in s)
    err = max(float((a - b).abs().max()) for a, b in zip(back, s))
    assert err <= 1e-13 * max(1.0, scale)
    assert max(float((a - b).abs().max()) for a, b in zip(s1, s)) > 0  # the step moved


@pytest.mark.parametrize("name", REVERSIBLE_METHODS)
def test_reconstruction_after_100_steps_of_a_lipschitz_1_rhs(name):
    # f(y) = tanh(W y) with ||W||_2 = 1 (Lipschitz constant 1); leapfrog: W acting across (y, z)
    g = torch.Generator().manual_seed(3)
    W = torch.randn(4, 4, dtype=F64, generator=g)
    W /= torch.linalg.matrix_norm(W, ord=2)
    if name == "leapfrog":
        def f(t, c):
            y, z = c
            return (torch.tanh(z @ W.T),), (-torch.tanh(y @ W),)
        f2 = lambda t, c: (*f(t, c)[0], *f(t, c)[1])  # noqa: E731
        y0 = (torch.randn(3, 4, dtype=F64, generator=g), torch.randn(3, 4, dtype=F64, generator=g))
    else:
        f2 = lambda t, c: (torch.tanh(c[0] @ W.T),)  # noqa: E731
        y0 = (torch.randn(3, 4, dtype=F64, generator=g),)
    method = REVERSIBLE_METHODS[name]
    h = 0.01
    with torch.no_grad():
        s0 = method.init(f2, 0.0, y0)
        s = s0
        for n in range(100):
            s = method.step(f2, n * h, h, s)
        for n in reversed(range(100)):
            s = method.inverse_step(f2, n * h, h, s)
    err = max(float((a - b).abs().max()) for a, b in zip(s, s0))
    assert err <= 1e-12


def test_alf_damping_amplifies_the_reconstruction_error():
    # the inverse of damped ALF multiplies the error of v by 1 / |1 - 2 eta| each step
    f = lambda t, c: (torch.tanh(c[0]),)  # noqa: E731
    y0 = (torch.linspace(-1, 1, 5, dtype=F64),)
    errs = {}
    for eta in (1.0, 0.7):
        m = ALF(eta=eta)
        with torch.no_grad():
            s0 = m.init(f, 0.0, y0)
            s = s0
            for n in range(40):
                s = m.step(f, n * 0.05, 0.05, s)
            for n in reversed(range(40)):
                s = m.inverse_step(f, n * 0.05, 0.05, s)
        errs[eta] = max(float((a - b).abs().max()) for a, b in zip(s, s0))
    assert errs[1.0] < 1e-13
    assert errs[0.7] > 1e3 * max(errs[1.0], 1e-16)


# -- gradients ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REVERSIBLE_METHODS)
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_gradients_equal_backprop_of_the_same_scheme(name, direction):
    func, y0 = _problem(name)
    t = direction * torch.tensor([0.0, 0.35, 1.0], dtype=F64)
    g_rev, out_rev = _grads(func, y0, t, name, "reversible", 0.05)
    g_bp, out_bp = _grads(func, y0, t, name, "backprop", 0.05)
    for a, b in zip(_flat(out_rev), _flat(out_bp)):
        assert torch.equal(a, b)  # the same forward numbers
    for a, b in zip(g_rev, g_bp):
        assert float((a - b).abs().max()) <= 1e-9 * float(b.abs().max())


@pytest.mark.parametrize("name", GENERAL)
def test_tuple_state_gradients_equal_backprop(name):
    func = Pair(seed=2)
    g = torch.Generator().manual_seed(1)
    y0 = (torch.randn(2, 2, dtype=F64, generator=g), torch.randn(2, 3, dtype=F64, generator=g))
    t = torch.tensor([0.0, 0.5, 0.8], dtype=F64)
    g_rev, out = _grads(func, y0, t, name, "reversible", 0.04)
    g_bp, _ = _grads(func, y0, t, name, "backprop", 0.04)
    assert isinstance(out, tuple) and out[0].shape == (3, 2, 2) and out[1].shape == (3, 2, 3)
    for a, b in zip(g_rev, g_bp):
        assert float((a - b).abs().max()) <= 1e-9 * float(b.abs().max())


@pytest.mark.parametrize("method", ["reversible_heun", ALF(eta=0.9), "leapfrog"],
                         ids=["reversible_heun", "alf-0.9", "leapfrog"])
def test_gradcheck_against_finite_differences(method):
    name = method if isinstance(method, str) else "alf"
    func, y0 = _problem(name, seed=4)
    t = torch.tensor([0.0, 0.3, 0.6], dtype=F64)
    n = len(_flat(y0))

    # the parameters enter as explicit inputs: func reads them through params=
    def wrapped(*args):
        state = tuple(args[:n]) if n > 1 else args[0]
        fn = torch.func.functional_call
        names = [k for k, _ in func.named_parameters()]
        pv = dict(zip(names, args[n:]))
        return odenet.odeint(lambda tt, s: fn(func, pv, (tt, s)), state, t, method=method,
                             step_size=0.1, gradient="reversible", params=list(args[n:]))

    inputs = tuple(c.clone().requires_grad_() for c in _flat(y0)) + tuple(
        p.detach().clone().requires_grad_() for p in func.parameters())
    assert torch.autograd.gradcheck(wrapped, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@settings(max_examples=8, deadline=None)
@given(
    name=st.sampled_from(list(REVERSIBLE_METHODS)),
    nt=st.integers(1, 12),
    seed=st.integers(0, 100),
    batch=st.integers(1, 3),
)
def test_hypothesis_gradients_match_backprop(name, nt, seed, batch):
    func, y0 = _problem(name, seed)
    y0 = tuple(c[:1].expand(batch, -1).clone() for c in _flat(y0))
    y0 = y0 if name == "leapfrog" else y0[0]
    t = torch.tensor([0.0, 0.7], dtype=F64)
    g_rev, _ = _grads(func, y0, t, name, "reversible", 0.7 / nt)
    g_bp, _ = _grads(func, y0, t, name, "backprop", 0.7 / nt)
    for a, b in zip(g_rev, g_bp):
        assert float((a - b).abs().max()) <= 1e-9 * max(float(b.abs().max()), 1e-300)


def test_odeblock_with_reversible_heun():
    torch.manual_seed(0)
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(3, 3), activation="tanh").double()
    x = torch.randn(2, 3, 5, 5, dtype=F64)
    grads = {}
    for gradient in ("reversible", "backprop"):
        block = odenet.nn.ODEBlock(rhs, steps=20, method="reversible_heun", gradient=gradient)
        xx = x.clone().requires_grad_()
        loss = block(xx).square().sum()
        grads[gradient] = torch.autograd.grad(loss, [xx, *rhs.parameters()])
    for a, b in zip(grads["reversible"], grads["backprop"]):
        assert float((a - b).abs().max()) <= 1e-9 * float(b.abs().max())
    assert "reversible_heun" in repr(block)


def test_hamiltonian_rhs_with_leapfrog_conserves_volume_and_matches_backprop():
    torch.manual_seed(1)
    f = odenet.nn.HamiltonianRHS(odenet.nn.LeanConv2d(2, 2)).double()
    y0 = (torch.randn(1, 2, 4, 4, dtype=F64), torch.randn(1, 2, 4, 4, dtype=F64))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    g_rev, out = _grads(f, y0, t, "leapfrog", "reversible", 0.1)
    g_bp, _ = _grads(f, y0, t, "leapfrog", "backprop", 0.1)
    for a, b in zip(g_rev, g_bp):
        assert float((a - b).abs().max()) <= 1e-9 * max(float(b.abs().max()), 1e-300)
    # the step is symplectic: the Jacobian of the flow map has determinant 1
    def flow(v):
        s = (v[:32].view(1, 2, 4, 4), v[32:].view(1, 2, 4, 4))
        y, z = odenet.odeint(f, s, t, method="leapfrog", step_size=0.25)
        return torch.cat([y[-1].flatten(), z[-1].flatten()])

    J = torch.autograd.functional.jacobian(flow, torch.cat([c.flatten() for c in y0]))
    assert abs(float(torch.linalg.det(J)) - 1.0) < 1e-10


def test_no_grad_and_inputs_without_grad_store_nothing():
    func, y0 = _problem("alf")
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with torch.no_grad():
        a = odenet.odeint(func, y0, t, method="alf", step_size=0.1, gradient="reversible")
    assert a.grad_fn is None
    b = odenet.odeint(func, y0, t, method="alf", step_size=0.1, gradient="reversible")
    assert b.grad_fn is not None  # the parameters of func need a gradient
    assert torch.equal(a, b)


def test_reconstruction_error_is_recorded_and_warned():
    strategy = odenet.Reversible()
    func, y0 = _problem("reversible_heun")
    y0 = y0.clone().requires_grad_()
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y = odenet.odeint(func, y0, t, method="reversible_heun", step_size=0.01, gradient=strategy)
    y[-1].sum().backward()
    assert strategy.last_reconstruction_error < 1e-12
    # damped ALF in float32 over many steps: the rebuilt states drift, and the user is told
    f32 = MLP(seed=1, scale=1.0).float()
    strategy = odenet.Reversible()
    x = torch.randn(2, 3).requires_grad_()
    y = odenet.odeint(f32, x, torch.tensor([0.0, 4.0]), method=ALF(eta=0.9), step_size=0.02,
                      gradient=strategy)
    with pytest.warns(odenet.gradients.ReconstructionWarning, match="rebuilt by inverse steps"):
        y[-1].sum().backward()
    assert strategy.last_reconstruction_error > math.sqrt(torch.finfo(torch.float32).eps)


# -- bad input ------------------------------------------------------------------------------------
def test_errors_name_the_method_and_the_alternatives():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ArgumentError, match="method 'rk4' is not one") as err:
        odenet.odeint(f, y0, t, method="rk4", gradient="reversible")
    assert "'reversible_heun', 'alf', 'leapfrog'" in str(err.value)
    with pytest.raises(ArgumentError, match="'revolve' cannot differentiate the reversible meth"):
        odenet.odeint(f, y0, t, method="alf", gradient="revolve")
    with pytest.raises(ArgumentError, match="'adjoint' cannot differentiate the reversible meth"):
        odenet.odeint(f, y0, t, method="alf", gradient="adjoint")
    with pytest.raises(ArgumentError, match="needs a tuple state"):
        odenet.odeint(f, y0, t, method="leapfrog", gradient="reversible")
    with pytest.raises(ArgumentError, match="t: gradients with respect to the output times"):
        odenet.odeint(f, y0, t.clone().requires_grad_(), method="alf")
    with pytest.raises(ArgumentError, match="event_fn"):
        odenet.odeint(f, y0, t, method="alf", step_size=0.1, event_fn=lambda t, y: y.sum())
    with pytest.raises(ArgumentError, match="perturb"):
        odenet.odeint(f, y0, t, method="alf", options={"perturb": True})
    with pytest.raises(ArgumentError, match="takes no implicit operator"):
        odenet.odeint(f, y0, t, method="alf",
                      implicit=odenet.linear.ConvFFT(torch.ones(1, 1, 3, 3)))
    with pytest.raises(ArgumentError, match="eta: 0.5 makes"):
        ALF(eta=0.5)
    with pytest.raises(ArgumentError, match=r"eta: expected a damping in \(0, 1\]"):
        ALF(eta=1.5)
    with pytest.raises(ArgumentError, match="tolerance"):
        odenet.Reversible(tolerance=-1.0)


def test_leapfrog_refuses_a_non_separable_system():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(FunctionOutputError, match="dy/dt depends on y"):
        odenet.odeint(lambda t, s: (s[1] - s[0], -s[0]), y0, t, method="leapfrog")


def test_random_draws_and_closures_are_refused():
    t = torch.tensor([0.0, 1.0], dtype=F64)
    lin = torch.nn.Linear(3, 3, dtype=F64)
    drop = torch.nn.Dropout(0.5)
    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    with pytest.raises(GradientError, match="drew random numbers"):
        odenet.odeint(lambda t, y: drop(lin(y)), y0, t, method="alf", step_size=0.1,
                      gradient="reversible", params=list(lin.parameters()))
    with pytest.raises(GradientError, match="not among the parameters"):
        odenet.odeint(lambda t, y: lin(y), y0, t, method="alf", step_size=0.1,
                      gradient="reversible", params=[])


def test_non_finite_state_names_the_step():
    t = torch.tensor([0.0, 5.0], dtype=F64)
    with pytest.raises(odenet.errors.NonFiniteStateError, match="at step"):
        odenet.odeint(lambda t, y: y * y, torch.full((1,), 3.0, dtype=F64), t,
                      method="reversible_heun", step_size=0.5)


def test_callback_step_and_single_time():
    seen = []

    class F(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y, dt):
            seen.append(round(float(dt), 6))

    y0 = torch.ones(1, dtype=F64)
    odenet.odeint(F(), y0, torch.tensor([0.0, 0.25], dtype=F64), method="alf", step_size=0.1)
    assert seen == [0.1, 0.1, 0.05]
    out = odenet.odeint(F(), y0, torch.tensor([0.0], dtype=F64), method="alf")
    assert out.shape == (1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                      method="reversible_heun")


def test_torch_func_transforms_differentiate_the_steps():
    func, y0 = _problem("reversible_heun", seed=3)
    t = torch.tensor([0.0, 0.5], dtype=F64)

    def final(y, gradient):
        return odenet.odeint(func, y, t, method="reversible_heun", step_size=0.1,
                             gradient=gradient)[-1].square().sum()

    g_func = torch.func.grad(lambda y: final(y, "reversible"))(y0)
    x = y0.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(final(x, "reversible"), x)
    assert torch.allclose(g_func, g_ref, rtol=1e-10, atol=0)
    per_sample = torch.func.vmap(lambda y: final(y[None], "reversible"))(y0)
    with torch.no_grad():
        loop = torch.stack([final(y0[i : i + 1], "backprop") for i in range(len(y0))])
    assert torch.allclose(per_sample, loop, rtol=1e-12)


def test_device_agnostic(device):
    torch.manual_seed(0)
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(3, 3), activation="tanh").double().to(device)
    x = torch.randn(2, 3, 5, 5, dtype=F64, device=device)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, device=device)
    grads = {}
    for gradient in ("reversible", "backprop"):
        xx = x.clone().requires_grad_()
        y = odenet.odeint(rhs, xx, t, method="alf", step_size=0.05, gradient=gradient)
        assert y.device == x.device
        grads[gradient] = torch.autograd.grad(y.square().sum(), [xx, *rhs.parameters()])
    for a, b in zip(grads["reversible"], grads["backprop"]):
        assert a.device == x.device
        assert float((a - b).abs().max()) <= 1e-9 * float(b.abs().max())


@pytest.mark.parametrize("name", REVERSIBLE_METHODS)
def test_anode_recomputes_and_equals_backprop(name):
    func, y0 = _problem(name, seed=5)
    t = torch.tensor([0.0, 0.4, 0.9], dtype=F64)
    g_an, out_an = _grads(func, y0, t, name, "anode", 0.05)
    g_bp, out_bp = _grads(func, y0, t, name, "backprop", 0.05)
    for a, b in zip(_flat(out_an), _flat(out_bp)):
        assert torch.equal(a, b)
    for a, b in zip(g_an, g_bp):
        assert float((a - b).abs().max()) <= 1e-12 * max(float(b.abs().max()), 1e-300)


def test_anode_replays_dropout_where_reversible_refuses_it():
    lin = torch.nn.Linear(3, 3, dtype=F64)
    drop = torch.nn.Dropout(0.3)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.randn(4, 3, dtype=F64)
    grads = {}
    for gradient in ("anode", "backprop"):
        torch.manual_seed(7)
        x = y0.clone().requires_grad_()
        y = odenet.odeint(lambda t, y: torch.tanh(drop(lin(y))), x, t, method="alf",
                          step_size=0.1, gradient=gradient, params=list(lin.parameters()))
        grads[gradient] = torch.autograd.grad(y[-1].sum(), [x, *lin.parameters()])
        after = torch.rand(1)
        grads[gradient + "-rng"] = (after,)
    for a, b in zip(grads["anode"], grads["backprop"]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    assert torch.equal(grads["anode-rng"][0], grads["backprop-rng"][0])  # caller's stream kept


def test_leapfrog_evaluates_only_the_needed_half_of_a_hamiltonian_rhs():
    torch.manual_seed(2)
    f = odenet.nn.HamiltonianRHS(odenet.nn.LeanConv2d(2, 2)).double()
    calls = []
    f.op.register_forward_hook(lambda *a: calls.append(1))
    y0 = (torch.randn(1, 2, 4, 4, dtype=F64), torch.randn(1, 2, 4, 4, dtype=F64))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with torch.no_grad():
        fast = odenet.odeint(f, y0, t, method="leapfrog", step_size=0.1)
        assert len(calls) == 1 + 2 * 10  # G at t0, then one F and one G per step
        full = odenet.odeint(lambda t, s: f(t, s), y0, t, method="leapfrog", step_size=0.1)
    for a, b in zip(fast, full):
        assert torch.equal(a, b)  # the halves are the same numbers as the whole
    g_rev, _ = _grads(f, y0, t, "leapfrog", "reversible", 0.1)
    g_bp, _ = _grads(f, y0, t, "leapfrog", "backprop", 0.1)
    for a, b in zip(g_rev, g_bp):
        assert float((a - b).abs().max()) <= 1e-9 * max(float(b.abs().max()), 1e-300)
    bad = odenet.nn.HamiltonianRHS(odenet.nn.LeanConv2d(2, 2)).double()
    bad.dz = lambda t, y: y[..., :2]
    with pytest.raises(FunctionOutputError, match=r"func\.dz"):
        odenet.odeint(bad, y0, t, method="leapfrog", step_size=0.1)
