"""Gradient strategies: exactness against Backprop and finite differences, the adjoint against
torchdiffeq, and the behaviours users hit (dropout, BatchNorm, closures, double backward,
inference)."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError, GradientError

F64 = torch.float64
EXPLICIT = [m for m, tab in odenet.METHODS.items() if isinstance(tab, odenet.ButcherTableau)]
IMEX = [m for m, tab in odenet.METHODS.items() if isinstance(tab, odenet.IMEXTableau)]
DTO = [
    odenet.ANODE(),
    odenet.Revolve(checkpoints=1),
    odenet.Revolve(checkpoints=2),
    odenet.Revolve(),
]


# -- right-hand sides and a dense implicit operator ------------------------------------------
class MLP(torch.nn.Module):
    """f(t, y) = W2 tanh(W1 y + b1) (1 + t): non-linear, time dependent, with parameters."""

    def __init__(self, n: int = 3, width: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.l1 = torch.nn.Linear(n, width, dtype=F64)
        self.l2 = torch.nn.Linear(width, n, dtype=F64)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * (1 + t)


class Pair(torch.nn.Module):
    """A coupled tuple state (u, v): u' = tanh(v A), v' = -sin(u B) t."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = torch.nn.Parameter(torch.randn(3, 2, dtype=F64, generator=g))
        self.B = torch.nn.Parameter(torch.randn(2, 3, dtype=F64, generator=g))

    def forward(self, t, y):
        u, v = y
        return torch.tanh(v @ self.A), -torch.sin(u @ self.B) * t


class Dense(torch.nn.Module):
    """L y = y M with M = BᵀB (+ a skew part S when ``skew``): positive semi-definite."""

    def __init__(self, n: int = 3, seed: int = 5, skew: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.B = torch.nn.Parameter(torch.randn(n, n, dtype=F64, generator=g))
        S = torch.randn(n, n, dtype=F64, generator=g) if skew else torch.zeros(n, n, dtype=F64)
        self.register_buffer("S", S - S.T)

    def matrix(self):
        return self.B.T @ self.B + self.S

    def forward(self, y):
        return y @ self.matrix()

    def solve(self, r, gamma):
        if gamma < 0:
            raise ValueError("gamma must be >= 0")
        A = torch.eye(self.B.shape[0], dtype=F64) + gamma * self.matrix()
        return torch.linalg.solve(A.T, r.reshape(-1, r.shape[-1]).T).T.reshape(r.shape)


def _weights(y, seed=3):
    g = torch.Generator().manual_seed(seed)
    if isinstance(y, tuple):
        return tuple(torch.randn(c.shape, dtype=F64, generator=g) for c in y)
    return torch.randn(y.shape, dtype=F64, generator=g)


def _loss(y, w):
    if isinstance(y, tuple):
        return sum((c * wc).sum() for c, wc in zip(y, w))
    return (y * w).sum()


def _setup(method: str, variant: str):
    """(func, y0, t, implicit, params) for a method and a variant plain/tuple/descending."""
    g = torch.Generator().manual_seed(1)
    implicit = None
    if variant == "tuple":
        func = Pair()
        y0 = (torch.randn(2, 2, dtype=F64, generator=g), torch.randn(2, 3, dtype=F64, generator=g))
    else:
        func = MLP()
        y0 = torch.randn(2, 3, dtype=F64, generator=g)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=F64)
    if variant == "descending":
        t = t.flip(0)
    if method in IMEX:
        implicit = Dense()
    return func, y0, t, implicit


def _grads(method, variant, gradient, h=0.1, y0_grad=True):
    func, y0, t, implicit = _setup(method, variant)
    comps = y0 if isinstance(y0, tuple) else (y0,)
    for c in comps:
        c.requires_grad_(y0_grad)
    y = odenet.odeint(func, y0, t, method=method, step_size=h, gradient=gradient, implicit=implicit)
    params = [*func.parameters(), *(implicit.parameters() if implicit is not None else [])]
    inputs = [*(comps if y0_grad else ()), *params]
    return y, torch.autograd.grad(_loss(y, _weights(y)), inputs)


def _rel(a, b):
    """Largest per-tensor relative error; tensors that vanish analytically (|y| at round-off
    of the largest gradient) are measured against that scale."""
    scale = max(float(y.abs().max()) for y in b)
    return max(
        float((x - y).abs().max()) / max(float(y.abs().max()), 1e-4 * scale, 1e-300)
        for x, y in zip(a, b)
    )


CASES = [(m, v) for m in EXPLICIT for v in ("plain", "tuple", "descending")] + [
    (m, "plain") for m in IMEX
]


# -- DTO strategies equal Backprop -----------------------------------------------------------
@pytest.mark.parametrize(("method", "variant"), CASES)
def test_checkpointing_equals_backprop(method, variant):
    y_ref, ref = _grads(method, variant, "backprop")
    for strategy in DTO:
        y, got = _grads(method, variant, strategy)
        ys, yr = (y, y_ref) if isinstance(y, tuple) else ((y,), (y_ref,))
        for a, b in zip(ys, yr):
            assert torch.equal(a, b), strategy  # the forward pass is the same computation
        assert _rel(got, ref) <= 1e-12, (strategy, _rel(got, ref))


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_params_only_and_y0_only(gradient):
    _, ref = _grads("rk4", "plain", "backprop", y0_grad=False)
    _, got = _grads("rk4", "plain", gradient, y0_grad=False)
    assert _rel(got, ref) <= (1e-12 if gradient != "adjoint" else 1e-3)
    # y0 only: no parameters require grad
    func, y0, t, _ = _setup("heun", "plain")
    func.requires_grad_(False)
    y0.requires_grad_()
    outs = []
    for g in ("backprop", gradient):
        y = odenet.odeint(func, y0, t, method="heun", step_size=0.1, gradient=g)
        outs.append(torch.autograd.grad(_loss(y, _weights(y)), y0)[0])
    assert _rel([outs[1]], [outs[0]]) <= (1e-12 if gradient != "adjoint" else 1e-2)


@pytest.mark.parametrize("method", list(odenet.METHODS))
@pytest.mark.parametrize("gradient", ["anode", "revolve"])
def test_gradcheck_finite_differences(method, gradient):
    implicit = Dense(2) if method in IMEX else None
    t = torch.tensor([0.0, 0.25, 0.6], dtype=F64)

    def solve(y0, W, *L):
        def f(t, y):
            return torch.tanh(y @ W) * (1 + t)

        return odenet.odeint(
            f,
            y0,
            t,
            method=method,
            step_size=0.2,
            gradient=gradient,
            implicit=implicit,
            params=[W, *L],
        )

    y0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    extra = (implicit.B,) if implicit is not None else ()
    assert torch.autograd.gradcheck(solve, (y0, W, *extra))


# -- the adjoint ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs"), [("euler", "euler"), ("midpoint", "midpoint"), ("rk4_38", "rk4")]
)
@pytest.mark.parametrize("variant", ["plain", "tuple", "descending"])
def test_adjoint_matches_torchdiffeq(ours, theirs, variant):
    func, y0, _, _ = _setup(ours, variant)
    t = torch.tensor([0.0, 0.25, 0.75, 1.0], dtype=F64)  # multiples of the step: shared grid
    if variant == "descending":
        t = t.flip(0)
    comps = y0 if isinstance(y0, tuple) else (y0,)
    for c in comps:
        c.requires_grad_()
    inputs = [*comps, *func.parameters()]
    y = odenet.odeint(func, y0, t, method=ours, step_size=0.125, gradient="adjoint")
    got = torch.autograd.grad(_loss(y, _weights(y)), inputs)
    y_td = torchdiffeq.odeint_adjoint(func, y0, t, method=theirs, options={"step_size": 0.125})
    ref = torch.autograd.grad(_loss(y_td, _weights(y_td)), inputs)
    assert _rel(got, ref) <= 1e-8
    y_dto = odenet.odeint(func, y0, t, method=ours, step_size=0.125)
    dto = torch.autograd.grad(_loss(y_dto, _weights(y_dto)), inputs)
    assert _rel(got, dto) > 1e-7  # optimize-then-discretize is not the discrete gradient


def _adjoint_error(method, h, ref, implicit):
    func = MLP()
    y0 = torch.randn(
        2, 3, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True
    )
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    params = [*func.parameters(), *(implicit.parameters() if implicit is not None else [])]
    y = odenet.odeint(
        func, y0, t, method=method, step_size=h, gradient="adjoint", implicit=implicit
    )
    got = torch.autograd.grad(_loss(y, _weights(y)), [y0, *params])
    return _rel(got, ref)


@pytest.mark.parametrize("method", list(odenet.METHODS))
def test_adjoint_converges_at_the_method_order(method):
    """OTD -> the exact gradient at the order of the method (IMEX: non-symmetric L too)."""
    for skew in (False, True) if method in IMEX else (None,):
        implicit = Dense(skew=skew) if method in IMEX else None
        ref_method = "ars443" if method in IMEX else "rk4"
        func = MLP()
        y0 = torch.randn(
            2, 3, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True
        )
        t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
        params = [*func.parameters(), *(implicit.parameters() if implicit is not None else [])]
        y = odenet.odeint(func, y0, t, method=ref_method, step_size=1 / 256, implicit=implicit)
        ref = torch.autograd.grad(_loss(y, _weights(y)), [y0, *params])
        order = odenet.METHODS[method].order
        h = {1: 1 / 16, 2: 1 / 8, 3: 1 / 16 if method in IMEX else 1 / 4, 4: 1 / 4}[order]
        e1 = _adjoint_error(method, h, ref, implicit)
        e2 = _adjoint_error(method, h / 2, ref, implicit)
        assert math.log2(e1 / e2) > order - 0.45, (e1, e2)


@pytest.mark.parametrize("method", list(odenet.METHODS))
def test_all_strategies_vs_central_differences(method):
    """Directional derivatives: DTO strategies to 1e-8, the adjoint to its O(h^p) error."""
    implicit = Dense(2) if method in IMEX else None
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    g = torch.Generator().manual_seed(4)
    y0 = torch.randn(3, 2, dtype=F64, generator=g)
    W = torch.randn(2, 2, dtype=F64, generator=g)
    dy, dW = torch.randn(3, 2, dtype=F64, generator=g), torch.randn(2, 2, dtype=F64, generator=g)
    w = torch.randn(3, 3, 2, dtype=F64, generator=g)

    def loss(y0, W, gradient, h):
        y = odenet.odeint(lambda t, y: torch.tanh(y @ W) * (1 + t), y0, t, method=method,
                          step_size=h, gradient=gradient, implicit=implicit,
                          params=[W, *([implicit.B] if implicit is not None else [])])
        return (y * w).sum()

    order = odenet.METHODS[method].order
    for h in (0.1, 0.05):
        eps = 1e-6
        with torch.no_grad():
            fd = (loss(y0 + eps * dy, W + eps * dW, "backprop", h)
                  - loss(y0 - eps * dy, W - eps * dW, "backprop", h)) / (2 * eps)
        for gradient in ("backprop", "anode", "revolve", "adjoint"):
            a, b = y0.clone().requires_grad_(), W.clone().requires_grad_()
            ga, gb = torch.autograd.grad(loss(a, b, gradient, h), (a, b))
            dd = (ga * dy).sum() + (gb * dW).sum()
            err = float(abs(dd - fd) / abs(fd))
            bound = 1e-8 if gradient != "adjoint" else 5 * h**order
            assert err <= bound, (gradient, h, err)


# -- Revolve's schedule ----------------------------------------------------------------------
def _optimal(l, s, memo={}):
    """Dynamic programming over the first split: the minimal number of advances."""
    if l == 1:
        return 0
    if s == 1:
        return l * (l - 1) // 2
    if (l, s) not in memo:
        memo[l, s] = min(m + _optimal(l - m, s - 1) + _optimal(m, s) for m in range(1, l))
    return memo[l, s]


def test_binomial_formula_is_the_optimum():
    for l in range(1, 41):
        for s in range(1, 6):
            assert odenet.gradients.binomial_advances(l, s) == _optimal(l, s), (l, s)


def _simulate(l, s):
    """Check a schedule's consistency; return its number of advanced steps."""
    snaps: set[int] = set()
    pos = None
    reversed_steps = []
    advances = 0
    for act in odenet.gradients.binomial_schedule(l, s):
        kind = act[0]
        if kind == "store":
            assert pos == act[1] or (act[1] == 0 and pos is None)
            pos = act[1]
            snaps.add(act[1])
            assert len(snaps) <= s
        elif kind == "advance":
            assert pos == act[1] and act[2] > act[1]
            advances += act[2] - act[1]
            pos = act[2]
        elif kind == "restore":
            assert act[1] in snaps
            pos = act[1]
        elif kind == "free":
            snaps.remove(act[1])
        else:
            assert kind == "reverse" and pos == act[1]
            reversed_steps.append(act[1])
            pos = None
    assert reversed_steps == list(range(l - 1, -1, -1))
    return advances


@given(l=st.integers(1, 400), s=st.integers(1, 9))
@settings(max_examples=40)
def test_binomial_schedule_is_valid_and_optimal(l, s):
    assert _simulate(l, s) == odenet.gradients.binomial_advances(l, s)


@pytest.mark.parametrize(("nt", "k"), [(10, 2), (10, 1), (17, 3), (16, None), (5, 9), (1, 1)])
def test_revolve_recomputes_as_scheduled(nt, k):
    """Evaluations in backward = stages x (schedule's recomputations + Nt steps with graph)."""
    calls = [0]
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)

    def f(t, y):
        calls[0] += 1
        return torch.tanh(y @ W)

    strategy = odenet.Revolve(checkpoints=k)
    t = torch.tensor([0.0, *([nt // 2] if nt > 1 else []), nt], dtype=F64)
    y = odenet.odeint(
        f,
        torch.ones(2, 2, dtype=F64),
        t,
        method="rk4",
        step_size=1.0,
        gradient=strategy,
        params=[W],
    )
    forward = calls[0]
    assert forward == 4 * nt
    y.sum().backward()
    assert calls[0] - forward == 4 * (strategy.recomputations(nt) + nt)
    assert strategy.recomputations(nt) == odenet.gradients.binomial_advances(
        nt, strategy.snapshots(nt)
    ) - (nt - 1)


@given(
    seed=st.integers(0, 2**31 - 1),
    n_out=st.integers(2, 5),
    h=st.sampled_from([0.07, 0.1, 0.13, 0.3]),
    k=st.one_of(st.none(), st.integers(1, 6)),
    batch=st.integers(1, 3),
    method=st.sampled_from(["euler", "heun", "ssprk3"]),
)
@settings(max_examples=15)
def test_checkpointing_equals_backprop_hypothesis(seed, n_out, h, k, batch, method):
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(n_out, dtype=F64, generator=g)).values
    t = torch.cat([torch.zeros(1, dtype=F64), times.cumsum(0) + 0.05 * torch.arange(1, n_out + 1)])
    W = torch.randn(3, 3, dtype=F64, generator=g, requires_grad=True)
    y0 = torch.randn(batch, 3, dtype=F64, generator=g, requires_grad=True)
    res = []
    for strategy in ("backprop", odenet.Revolve(checkpoints=k), odenet.ANODE()):
        y = odenet.odeint(
            lambda t, y: torch.sin(y @ W),
            y0,
            t,
            method=method,
            step_size=h,
            gradient=strategy,
            params=[W],
        )
        res.append(torch.autograd.grad(_loss(y, _weights(y)), [y0, W]))
    assert _rel(res[1], res[0]) <= 1e-12
    assert _rel(res[2], res[0]) <= 1e-12


# -- behaviours users hit ------------------------------------------------------------------
class Noisy(torch.nn.Module):
    def __init__(self, norm: bool = False, p: float = 0.5):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 4, dtype=F64)
        self.drop = torch.nn.Dropout(p)
        self.norm = torch.nn.BatchNorm1d(4, dtype=F64) if norm else torch.nn.Identity()

    def forward(self, t, y):
        return self.drop(torch.tanh(self.norm(self.lin(y))))


def _train_step(func, gradient, seed=7):
    y0 = torch.randn(
        6, 4, dtype=F64, generator=torch.Generator().manual_seed(2), requires_grad=True
    )
    torch.manual_seed(seed)
    y = odenet.odeint(
        func,
        y0,
        torch.tensor([0.0, 0.4, 1.0], dtype=F64),
        method="rk4",
        step_size=0.1,
        gradient=gradient,
    )
    grads = torch.autograd.grad(_loss(y, _weights(y)), [y0, *func.parameters()])
    return grads, torch.rand(3)  # the caller's random stream after the backward pass


@pytest.mark.parametrize("gradient", ["anode", odenet.Revolve(checkpoints=2)])
def test_dropout_recomputation_is_bit_identical(gradient):
    func = Noisy()
    ref, after_ref = _train_step(func, "backprop")
    got, after = _train_step(func, gradient)
    assert _rel(got, ref) <= 1e-12
    assert torch.equal(after, after_ref)  # recomputation leaves the caller's RNG alone
    other, _ = _train_step(func, gradient, seed=8)
    assert _rel(other, ref) > 1e-3  # the masks matter: another seed, another gradient


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_batchnorm_running_stats_updated_once(gradient):
    ref = Noisy(norm=True, p=0.0)
    net = Noisy(norm=True, p=0.0)
    g_ref, _ = _train_step(ref, "backprop")
    g, _ = _train_step(net, gradient)
    for name, b in ref.norm.named_buffers():
        assert torch.equal(getattr(net.norm, name), b), name
    assert int(net.norm.num_batches_tracked) == 10 * 4  # one update per evaluation
    if gradient != "adjoint":
        assert _rel(g, g_ref) <= 1e-12
    # eval mode: the running statistics are used and stay untouched
    ref.eval(), net.eval()
    g_ref, _ = _train_step(ref, "backprop")
    g, _ = _train_step(net, gradient)
    for name, b in ref.norm.named_buffers():
        assert torch.equal(getattr(net.norm, name), b), name
    if gradient != "adjoint":
        assert _rel(g, g_ref) <= 1e-12


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_closure_tensor_is_refused_not_silently_zero(gradient):
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    y0 = torch.ones(1, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(GradientError, match="params="):
        odenet.odeint(lambda t, y: y @ W, y0, t, step_size=0.5, gradient=gradient)
    # even when nothing else requires grad
    with pytest.raises(GradientError, match="params="):
        odenet.odeint(lambda t, y: y @ W, y0.detach(), t, step_size=0.5, gradient=gradient)
    # a module used inside a lambda: its parameters must be passed
    lin = torch.nn.Linear(2, 2, dtype=F64)
    with pytest.raises(GradientError, match=r"2 tensor\(s\)"):
        odenet.odeint(lambda t, y: lin(y), y0, t, step_size=0.5, gradient=gradient)
    # a tensor derived from a parameter outside func is fine when the parameter is passed
    V = W * torch.full((2, 2), 2.0, dtype=F64)
    y = odenet.odeint(lambda t, y: y @ V, y0, t, step_size=0.5, gradient=gradient, params=[W])
    y[-1].sum().backward()
    yb = odenet.odeint(lambda t, y: y @ V, y0, t, step_size=0.5)
    gb = torch.autograd.grad(yb[-1].sum(), W)[0]
    tol = 1e-12 if gradient != "adjoint" else 0.2
    assert torch.allclose(W.grad, gb, rtol=tol, atol=0)
    # and Backprop needs nothing
    odenet.odeint(lambda t, y: y @ W, y0, t, step_size=0.5)[-1].sum().backward()


def test_closure_in_implicit_operator_is_refused():
    class Op:  # not a Module: its weight is invisible to odeint
        def __init__(self):
            self.B = torch.randn(2, 2, dtype=F64, requires_grad=True)

        def __call__(self, y):
            return y @ (self.B.T @ self.B)

        def solve(self, r, gamma):
            A = torch.eye(2, dtype=F64) + gamma * self.B.T @ self.B
            return torch.linalg.solve(A, r.T).T

    op = Op()
    y0 = torch.ones(1, 2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    for gradient in ("anode", "revolve", "adjoint"):
        with pytest.raises(GradientError, match="params="):
            odenet.odeint(
                lambda t, y: -y,
                y0,
                t,
                method="ars222",
                step_size=0.5,
                implicit=op,
                gradient=gradient,
            )
        y = odenet.odeint(
            lambda t, y: -y,
            y0,
            t,
            method="ars222",
            step_size=0.5,
            implicit=op,
            gradient=gradient,
            params=[op.B],
        )
        assert torch.autograd.grad(y[-1].sum(), op.B)[0].abs().sum() > 0


@pytest.mark.parametrize("method", ["rk4", "ars222"])
def test_double_backward_anode(method):
    implicit = Dense(2).requires_grad_(False) if method in IMEX else None
    t = torch.tensor([0.0, 0.3, 0.6], dtype=F64)

    def solve(y0, W, gradient):
        return odenet.odeint(
            lambda t, y: torch.tanh(y @ W) * (1 + t),
            y0,
            t,
            method=method,
            step_size=0.2,
            gradient=gradient,
            implicit=implicit,
            params=[W],
        )

    y0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: solve(a, b, "anode"), (y0, W))
    # Hessian-vector products equal Backprop's
    hv = []
    for gradient in ("backprop", "anode"):
        y = solve(y0, W, gradient)
        gy, gW = torch.autograd.grad(y.square().sum(), (y0, W), create_graph=True)
        hv.append(torch.autograd.grad(gy.sum() + gW.sum(), (y0, W)))
    assert _rel(hv[1], hv[0]) <= 1e-12


@pytest.mark.parametrize("gradient", ["revolve", "adjoint"])
def test_double_backward_refused(gradient):
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    y = odenet.odeint(
        lambda t, y: y @ W,
        torch.ones(1, 2, dtype=F64),
        torch.tensor([0.0, 1.0], dtype=F64),
        step_size=0.5,
        gradient=gradient,
        params=[W],
    )
    with pytest.raises(GradientError, match="create_graph"):
        torch.autograd.grad(y.sum(), W, create_graph=True)


@pytest.mark.parametrize("gradient", ["anode", "revolve", "adjoint"])
def test_inference_stores_and_recomputes_nothing(gradient):
    calls = [0]
    lin = torch.nn.Linear(3, 3, dtype=F64)

    class Counted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, t, y):
            calls[0] += 1
            return self.lin(y)

    func = Counted()
    y0 = torch.ones(2, 3, dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    ref = odenet.odeint(func, y0, t, step_size=0.1, gradient="backprop")
    with torch.no_grad():
        calls[0] = 0
        y = odenet.odeint(func, y0, t, step_size=0.1, gradient=gradient)
    assert calls[0] == 40 and y.grad_fn is None and torch.equal(y, ref.detach())
    func.requires_grad_(False)  # grad enabled, but nothing requires grad
    calls[0] = 0
    y = odenet.odeint(func, y0, t, step_size=0.1, gradient=gradient)
    assert calls[0] == 40 and y.grad_fn is None and torch.equal(y, ref.detach())
    func.requires_grad_(True)
    calls[0] = 0
    y = odenet.odeint(func, y0, t, step_size=0.1, gradient=gradient)
    assert calls[0] == 40 and y.grad_fn is not None  # the forward pass evaluates once


def test_anode_recomputes_each_step_once():
    calls = [0]
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)

    def f(t, y):
        calls[0] += 1
        return torch.tanh(y @ W)

    y = odenet.odeint(
        f,
        torch.ones(2, 2, dtype=F64),
        torch.tensor([0.0, 0.35, 1.0], dtype=F64),
        method="ssprk3",
        step_size=0.1,
        gradient="anode",
        params=[W],
    )
    assert calls[0] == 3 * 11
    y.sum().backward()
    assert calls[0] == 2 * 3 * 11


def test_in_place_change_of_a_saved_output_is_caught():
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    y0 = torch.ones(1, 2, dtype=F64, requires_grad=True)
    y = odenet.odeint(
        lambda t, y: y @ W,
        y0,
        torch.tensor([0.0, 0.5, 1.0], dtype=F64),
        step_size=0.25,
        gradient="anode",
        params=[W],
    )
    with torch.no_grad():  # the saved output is checked by autograd's version counter
        y[1].mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# -- strategy objects --------------------------------------------------------------------------
def test_strategy_objects_names_and_reprs():
    for name, cls in [
        ("backprop", odenet.Backprop),
        ("anode", odenet.ANODE),
        ("revolve", odenet.Revolve),
        ("adjoint", odenet.Adjoint),
    ]:
        assert cls.name == name
        assert isinstance(odenet.gradients.resolve_gradient(name), cls)
    assert repr(odenet.ANODE()) == "ANODE()"
    assert repr(odenet.Adjoint()) == "Adjoint()"
    assert repr(odenet.Revolve(checkpoints=2)) == "Revolve(checkpoints=2)"
    assert repr(odenet.Revolve()) == "Revolve(checkpoints=None)"
    assert odenet.Revolve().snapshots(1) == 1
    assert odenet.Revolve().snapshots(10) == 4
    assert odenet.Revolve().snapshots(16) == 4
    with pytest.raises(ArgumentError, match="checkpoints"):
        odenet.Revolve(checkpoints=0)
    with pytest.raises(ArgumentTypeError, match="checkpoints"):
        odenet.Revolve(checkpoints=2.0)
    with pytest.raises(ArgumentError, match="num_steps"):
        odenet.gradients.binomial_advances(0, 2)


def test_revolve_memory_holds_k_states():
    """Only ``checkpoints`` snapshots (input included) and one working state are kept."""
    W = torch.randn(2, 2, dtype=F64, requires_grad=True)
    y = odenet.odeint(
        lambda t, y: torch.tanh(y @ W),
        torch.ones(1, 2, dtype=F64),
        torch.tensor([0.0, 1.0], dtype=F64),
        method="euler",
        step_size=0.01,
        gradient=odenet.Revolve(checkpoints=3),
        params=[W],
    )
    node = y.grad_fn
    kept = [n for n, (s, _) in node.snaps.items() if s is not None]
    assert len(kept) + 1 <= 3  # plus the saved input
    assert node.work[0] is not None


# -- CUDA -------------------------------------------------------------------------------------
def test_cuda_anode_revolve_dropout(cuda):
    func = Noisy().to(cuda)
    y0 = torch.randn(6, 4, dtype=F64, device=cuda, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, device=cuda)
    res = []
    for gradient in ("backprop", "anode", odenet.Revolve(checkpoints=2)):
        torch.manual_seed(3)
        y = odenet.odeint(func, y0, t, step_size=0.1, gradient=gradient)
        res.append(torch.autograd.grad(y.square().sum(), [y0, *func.parameters()]))
        res[-1] = [*res[-1], torch.rand(2, device=cuda)]
    for got in res[1:]:
        assert _rel(got[:-1], res[0][:-1]) <= 1e-12
        assert torch.equal(got[-1], res[0][-1])


def test_adjoint_reverse_blow_up_is_reported():
    """Stable forward (|1 + h λ| = 0.9), unstable reverse (|1 - h λ| = 2.9 per step)."""
    lam = torch.tensor(-1900.0, dtype=F64, requires_grad=True)
    y0 = torch.ones(1, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def solve(gradient, **options):
        return odenet.odeint(lambda t, y: lam * y, y0, t, method="euler",
                             options={"step_size": 1e-3, **options}, gradient=gradient,
                             params=[lam])

    y = solve("adjoint")
    with pytest.raises(odenet.errors.NonFiniteStateError, match="reverse-time solve"):
        y[-1].sum().backward()
    y = solve("adjoint", check_finite=False)
    g_y0, g_lam = torch.autograd.grad(y[-1].sum(), (y0, lam))
    assert torch.isfinite(g_y0).all()  # linear f: the adjoint itself does not see y ...
    assert not torch.isfinite(g_lam).all()  # ... but the parameter gradient integrates a y
    y = solve("anode")  # discretize-then-optimize: exact and finite
    g = torch.autograd.grad(y[-1].sum(), y0)[0]
    assert torch.isfinite(g).all() and torch.allclose(g, torch.full_like(g, 0.9**1000))
