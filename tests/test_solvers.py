"""Explicit solvers: tableaux, empirical order, torchdiffeq agreement, grid, gradients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torchdiffeq
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import TableauError
from odenet.solvers import build_grid

EXPLICIT = [name for name, tab in odenet.METHODS.items() if isinstance(tab, odenet.ButcherTableau)]
F64 = torch.float64


def _stable_matrix(seed: int, n: int, scale: float) -> np.ndarray:
    """A random matrix with eigenvalues in the open left half plane."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n)) / math.sqrt(n)
    S = rng.standard_normal((n, n)) / math.sqrt(n)
    A = -(B @ B.T + 0.1 * np.eye(n)) + (S - S.T)
    return scale * A / max(1.0, np.abs(np.linalg.eigvals(A)).max())


def test_methods_registry():
    assert set(odenet.METHODS) == {
        "euler", "midpoint", "heun", "ssprk3", "rk4", "rk4_38", "imex_euler", "ars222", "ars443",
    }
    orders = {name: tab.order for name, tab in odenet.METHODS.items()}
    assert orders == {
        "euler": 1, "midpoint": 2, "heun": 2, "ssprk3": 3, "rk4": 4, "rk4_38": 4,
        "imex_euler": 1, "ars222": 2, "ars443": 3,
    }
    np.testing.assert_allclose(odenet.METHODS["rk4"].b, [1 / 6, 1 / 3, 1 / 3, 1 / 6])
    np.testing.assert_allclose(odenet.METHODS["rk4_38"].b, [1 / 8, 3 / 8, 3 / 8, 1 / 8])


@pytest.mark.parametrize("name", EXPLICIT)
def test_tableau_frozen_and_explicit(name):
    tab = odenet.METHODS[name]
    assert tab.is_explicit
    with pytest.raises(ValueError):
        tab.a[0, 0] = 1.0  # read-only storage
    with pytest.raises(AttributeError):
        tab.order = 7
    a32, b32, c32 = tab.to(torch.float32)
    assert a32.dtype == torch.float32 and tab.to(torch.float32)[0] is a32  # cached


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(a=[[0.0]], b=[0.5], c=[0.0], order=1), "sum to 1"),
        (dict(a=[[0, 0], [0.5, 0]], b=[0, 1], c=[0, 0.4], order=2), "row 1"),
        (dict(a=[[0, 1], [0, 0]], b=[0.5, 0.5], c=[1, 0], order=1), "lower-triangular"),
        (dict(a=[[0, 0], [1, 0]], b=[0.5, 0.5], c=[0, 1], order=3), "order 3"),
        (dict(a=[[0, 0], [1, 0]], b=[0.5, 0.5, 0], c=[0, 1], order=2), "length 2"),
        (dict(a=[[0, 0, 0], [1, 0, 0]], b=[1, 0], c=[0, 1], order=1), "square"),
        (dict(a=[[0.0]], b=[1.0], c=[0.0], order=0), "positive integer"),
    ],
)
def test_tableau_validation(kwargs, message):
    with pytest.raises(TableauError, match=message):
        odenet.ButcherTableau(**kwargs)


def test_imex_tableau_validation():
    E = odenet.METHODS["ars222"].explicit
    I = odenet.METHODS["ars222"].implicit
    with pytest.raises(TableauError, match="strictly lower"):
        odenet.IMEXTableau(I, I, order=1)
    with pytest.raises(TableauError, match="stage counts"):
        odenet.IMEXTableau(odenet.METHODS["heun"], I, order=1)
    with pytest.raises(TableauError, match="coupling"):
        odenet.IMEXTableau(E, I, order=3)


def _global_error(method: str, A: np.ndarray, y0: np.ndarray, T: float, n: int) -> float:
    At = torch.tensor(A, dtype=F64)
    y = odenet.odeint(
        lambda t, y: y @ At.T, torch.tensor(y0, dtype=F64), torch.tensor([0.0, T], dtype=F64),
        method=method, step_size=T / n,
    )
    exact = scipy.linalg.expm(A * T) @ y0
    return float(np.linalg.norm(y[-1].numpy() - exact) / np.linalg.norm(exact))


@pytest.mark.parametrize("method", EXPLICIT)
@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 6), scale=st.floats(0.5, 3.0))
def test_empirical_order_linear(method, seed, n, scale):
    """Log-log slope of the global error vs h within ±0.3 of the declared order."""
    A = _stable_matrix(seed, n, scale)
    y0 = np.random.default_rng(seed + 1).standard_normal(n)
    order = odenet.METHODS[method].order
    steps = {1: [32, 64, 128, 256], 2: [16, 32, 64, 128], 3: [8, 16, 32, 64]}.get(
        order, [8, 12, 16, 24]
    )
    errs = [_global_error(method, A, y0, 1.0, k) for k in steps]
    slope = np.polyfit(np.log([1.0 / k for k in steps]), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, (errs, slope)


TORCHDIFFEQ_NAMES = {"euler": "euler", "midpoint": "midpoint", "rk4_38": "rk4"}


@pytest.mark.parametrize("method", sorted(TORCHDIFFEQ_NAMES))
@pytest.mark.parametrize("direction", [1, -1])
def test_agrees_with_torchdiffeq(method, direction):
    torch.manual_seed(0)
    W1 = torch.randn(6, 4, dtype=F64)
    W2 = torch.randn(4, 6, dtype=F64)

    def f(t, y):
        return torch.tanh(y @ W1.T + t) @ W2.T

    h = 0.05
    t = direction * torch.tensor([0.0, 0.1, 0.35, 0.5, 1.0], dtype=F64)
    y0 = torch.randn(3, 4, dtype=F64)
    ours = odenet.odeint(f, y0, t, method=method, options={"step_size": h})
    ref = torchdiffeq.odeint(f, y0, t, method=TORCHDIFFEQ_NAMES[method], options={"step_size": h})
    assert ours.shape == ref.shape == (5, 3, 4)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_grid_lands_on_outputs():
    grid, idx = build_grid([0.0, 0.25, 1.0], 0.3)
    assert grid == [0.0, 0.25, 0.55, 0.85, 1.0] and idx == [0, 1, 4]
    # round-off in t/h must not create a vanishing extra step
    grid, idx = build_grid([0.0, 0.3], 0.1)
    assert len(grid) == 4 and grid[-1] == 0.3
    grid, idx = build_grid([1.0, 0.0], 0.4)
    assert grid == [1.0, 0.6, pytest.approx(0.2), 0.0]


@settings(max_examples=25)
@given(
    times=st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=6, unique=True),
    h=st.floats(1e-2, 3.0),
    descending=st.booleans(),
    method=st.sampled_from(EXPLICIT),
)
def test_outputs_exact_at_requested_times(times, h, descending, method):
    """y' = 1 and y' = t are integrated exactly by every method: outputs sit exactly at t."""
    times = sorted(times, reverse=descending)
    if min(abs(a - b) for a, b in itertools.pairwise(times)) < 1e-6:
        return
    t = torch.tensor(times, dtype=F64)
    y0 = (torch.zeros(2, dtype=F64), torch.zeros((), dtype=F64))
    out = odenet.odeint(
        lambda t, y: (torch.ones_like(y[0]), t.clone()), y0, t, method=method, step_size=h
    )
    assert isinstance(out, tuple) and out[0].shape == (len(times), 2) and out[1].shape == (len(t),)
    torch.testing.assert_close(out[0][:, 0], t - t[0], rtol=0, atol=1e-12)
    if odenet.METHODS[method].order >= 2:  # y' = t needs sum(b c) = 1/2
        torch.testing.assert_close(out[1], (t**2 - t[0] ** 2) / 2, rtol=0, atol=1e-11)


@pytest.mark.parametrize("method", EXPLICIT)
def test_function_evaluations_counted(method):
    calls = []

    def f(t, y):
        calls.append(float(t))
        return -y

    odenet.odeint(f, torch.ones(3), torch.tensor([0.0, 0.35, 1.0]), method=method, step_size=0.1)
    n_steps = 4 + 7  # 0.35 -> 4 steps (last one shortened), 0.65 -> 7 steps
    assert len(calls) == odenet.METHODS[method].stages * n_steps


def test_result_layout_and_dtypes(device):
    for dtype in (torch.float32, F64):
        y0 = torch.randn(2, 3, dtype=dtype, device=device)
        t = torch.linspace(0, 1, 4, dtype=dtype, device=device)
        seen = []

        def f(t, y):
            seen.append((t.dtype, t.device, t.ndim))
            return -y

        y = odenet.odeint(f, y0, t, step_size=0.1)
        assert y.shape == (4, 2, 3) and y.dtype == dtype and y.device.type == device.type
        assert torch.equal(y[0], y0)
        assert seen[0] == (dtype, y0.device, 0)
        torch.testing.assert_close(y[-1], y0 * math.exp(-1), rtol=1e-5, atol=1e-6)


def test_user_tableau_and_torchdiffeq_options_dict():
    ralston = odenet.ButcherTableau(a=[[0, 0], [2 / 3, 0]], b=[1 / 4, 3 / 4], c=[0, 2 / 3], order=2)
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y = odenet.odeint(lambda t, y: -y, y0, t, ralston, {"step_size": 0.5})
    assert y[-1].item() == pytest.approx((1 - 0.5 + 0.125) ** 2, abs=1e-15)


@pytest.mark.parametrize("method", EXPLICIT)
def test_gradcheck(method):
    torch.manual_seed(1)
    W = torch.randn(3, 3, dtype=F64, requires_grad=True)
    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.7], dtype=F64)

    def solve(y0, W):
        return odenet.odeint(lambda t, y: torch.tanh(y @ W) * (1 + t), y0, t, method=method,
                             step_size=0.2)

    assert torch.autograd.gradcheck(solve, (y0, W))


@pytest.mark.parametrize("method", ["euler", "rk4", "ssprk3"])
def test_double_backward(method):
    torch.manual_seed(2)
    W = torch.randn(3, 3, dtype=F64, requires_grad=True)
    y0 = torch.randn(3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5], dtype=F64)

    def loss(y0, W):
        y = odenet.odeint(lambda t, y: torch.tanh(y @ W), y0, t, method=method, step_size=0.25)
        return (y[-1] ** 2).sum()

    assert torch.autograd.gradgradcheck(loss, (y0, W))
    (g,) = torch.autograd.grad(loss(y0, W), W, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), y0)
    assert torch.isfinite(gg).all() and gg.abs().sum() > 0


def test_tuple_state_gradients():
    torch.manual_seed(3)
    a = torch.randn(3, dtype=F64, requires_grad=True)
    b = torch.randn(2, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def solve(a, b):
        out = odenet.odeint(
            lambda t, y: (torch.sin(y[1].sum()) * y[0], -y[1] * y[0].mean()), (a, b), t,
            method="rk4_38", step_size=0.25,
        )
        return out

    assert torch.autograd.gradcheck(solve, (a, b))


def test_no_grad_mode_matches_and_stores_nothing():
    W = torch.randn(4, 4, requires_grad=True)
    y0 = torch.randn(4)
    t = torch.tensor([0.0, 1.0])
    with_grad = odenet.odeint(lambda t, y: torch.tanh(y @ W), y0, t, step_size=0.1)
    with torch.no_grad():
        without = odenet.odeint(lambda t, y: torch.tanh(y @ W), y0, t, step_size=0.1)
    assert with_grad.requires_grad and not without.requires_grad
    assert torch.equal(with_grad.detach(), without)
