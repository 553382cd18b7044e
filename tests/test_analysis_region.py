"""Stability functions and regions: exact polynomials against naive references and odeint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet import METHODS, ButcherTableau, IMEXTableau, analysis
from odenet.analysis._problems import MatrixOperator
from odenet.analysis._region import evaluate_R, max_stable_steps
from odenet.errors import ArgumentError, ArgumentTypeError, UnknownMethodError

EXPLICIT = [m for m, t in METHODS.items() if isinstance(t, ButcherTableau)]
IMEX = [m for m, t in METHODS.items() if isinstance(t, IMEXTableau)]


def naive_R(tab, z: complex, w: float = 0.0) -> complex:
    """1 + (z b - w bt)^T (I - z A + w At)^{-1} 1, one complex solve."""
    if isinstance(tab, IMEXTableau):
        A, b, At, bt = tab.explicit.a, tab.explicit.b, tab.implicit.a, tab.implicit.b
    else:
        A, b = tab.a, tab.b
        At, bt = np.zeros_like(A), np.zeros_like(b)
    s = len(b)
    Y = np.linalg.solve(np.eye(s) - z * A + w * At, np.ones(s, dtype=complex))
    return complex(1 + (z * b - w * bt) @ Y)


def test_euler_region_is_the_disc():
    reg = analysis.stability_region("euler")
    assert reg.real_axis_limit == pytest.approx(-2.0, abs=1e-12)
    assert reg.imaginary_axis_limit == 0.0
    rng = np.random.default_rng(0)
    z = rng.uniform(-3, 1, 4000) + 1j * rng.uniform(-2, 2, 4000)
    d = np.abs(1 + z)
    far = np.abs(d - 1) > 1e-9
    assert np.array_equal(reg.contains(z[far]), d[far] <= 1)
    assert reg.numerator[0] == [1.0, 1.0]


def test_rk4_axis_limits():
    for name in ("rk4", "rk4_38"):  # same stability polynomial
        reg = analysis.stability_region(name)
        assert reg.real_axis_limit == pytest.approx(-2.785293563405282, abs=1e-9)
        assert reg.imaginary_axis_limit == pytest.approx(2 * math.sqrt(2), abs=1e-9)
    assert analysis.stability_region("ssprk3").imaginary_axis_limit == pytest.approx(math.sqrt(3))
    assert analysis.stability_region("midpoint").real_axis_limit == pytest.approx(-2.0)


@pytest.mark.parametrize("name", EXPLICIT)
def test_explicit_polynomial_is_b_A_powers(name):
    tab = METHODS[name]
    coef = [1.0]
    v = np.ones(tab.stages)
    for _ in range(tab.stages):
        coef.append(float(tab.b @ v))
        v = tab.a @ v
    while len(coef) > 1 and coef[-1] == 0:
        coef.pop()
    reg = analysis.stability_region(name)
    np.testing.assert_allclose(reg.numerator[0], coef, atol=1e-14)
    assert reg.denominator[0] == pytest.approx([1.0])


@settings(max_examples=20)
@given(
    name=st.sampled_from(list(METHODS)),
    x=st.floats(-4, 1),
    y=st.floats(-3, 3),
    w=st.sampled_from([0.0, 0.3, 5.0, 80.0]),
)
def test_stability_function_matches_naive_solve(name, x, y, w):
    tab = METHODS[name]
    w = w if isinstance(tab, IMEXTableau) else 0.0
    reg = analysis.stability_region(name, implicit_values=[w] if w else None)
    z = complex(x, y)
    ref = naive_R(tab, z, w)
    assert abs(complex(reg.R(z)) - ref) <= 1e-11 * max(1.0, abs(ref))
    assert abs(complex(evaluate_R(tab, z, w)) - ref) <= 1e-11 * max(1.0, abs(ref))


@pytest.mark.parametrize("name", EXPLICIT)
def test_one_step_of_odeint_multiplies_by_R(name):
    # y' = lambda y for complex lambda = a + ib as a real 2x2 system
    a, b, h = -0.7, 1.3, 0.4
    M = torch.tensor([[a, -b], [b, a]], dtype=torch.float64)
    y = odenet.odeint(lambda t, y: M @ y, torch.tensor([1.0, 0.0], dtype=torch.float64),
                      torch.tensor([0.0, h], dtype=torch.float64), method=name, step_size=h)[-1]
    R = complex(analysis.stability_region(name).R(h * complex(a, b)))
    assert complex(y[0].item(), y[1].item()) == pytest.approx(R, abs=1e-13)


@pytest.mark.parametrize("name", IMEX)
def test_one_imex_step_multiplies_by_R(name):
    lam, mu, h = -0.8, 6.0, 0.3
    L = MatrixOperator(mu * torch.eye(1, dtype=torch.float64))
    y = odenet.odeint(lambda t, y: lam * y, torch.ones(1, dtype=torch.float64),
                      torch.tensor([0.0, h], dtype=torch.float64), method=name, step_size=h,
                      implicit=L)[-1]
    R = naive_R(METHODS[name], h * lam, h * mu)
    assert y.item() == pytest.approx(R.real, abs=1e-13)
    assert abs(R.imag) < 1e-14


@settings(max_examples=20)
@given(
    name=st.sampled_from(list(METHODS)),
    re=st.floats(-5, 0.5),
    im=st.floats(-5, 5),
    mu=st.sampled_from([0.0, 1.0, 50.0]),
)
def test_max_stable_step_is_the_first_exit(name, re, im, mu):
    tab = METHODS[name]
    mu = mu if isinstance(tab, IMEXTableau) else 0.0
    lam = complex(re, im)
    if abs(lam) < 1e-3:
        return
    hmax = float(max_stable_steps(tab, [lam], [mu])[0])

    def amp(h: float) -> float:
        return abs(naive_R(tab, h * lam, h * mu))

    if hmax == 0.0:
        assert amp(1e-3 / abs(lam)) > 1 - 1e-12 or re > 0
        return
    grid = np.linspace(0, min(hmax, 50.0), 60)[1:]
    assert all(amp(h) <= 1 + 1e-8 for h in grid)
    if math.isfinite(hmax):
        # just beyond the limit the step amplifies (somewhere in a short interval)
        beyond = [hmax * (1 + e) for e in (1e-6, 1e-4, 1e-2, 5e-2)]
        assert max(amp(h) for h in beyond) > 1 + 1e-12


def test_max_step_of_the_region_object():
    reg = analysis.stability_region("euler")
    assert reg.max_step([-10.0, -2.0]) == pytest.approx(0.2)
    assert reg.max_step([1.0]) == 0.0
    assert reg.max_step([0.0]) == math.inf


def test_imex_region_is_the_intersection_over_w():
    ws = [0.0, 1.0, 20.0]
    reg = analysis.stability_region("ars222", implicit_values=ws)
    singles = [analysis.stability_region("ars222", implicit_values=[w]) for w in ws]
    rng = np.random.default_rng(1)
    z = rng.uniform(-3, 1, 500) + 1j * rng.uniform(-2, 2, 500)
    both = np.logical_and.reduce([s.contains(z) for s in singles])
    assert np.array_equal(reg.contains(z), both)
    assert reg.real_axis_limit == pytest.approx(max(s.real_axis_limit for s in singles))
    # imex_euler: R = (1 + z) / (1 + w)
    r = analysis.stability_region("imex_euler", implicit_values=[3.0])
    assert complex(r.R(0.5)) == pytest.approx(1.5 / 4.0)


def test_result_object_contract():
    reg = analysis.stability_region("rk4", spectra=[-1 + 0.5j, -3.0])
    d = reg.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["method"] == "rk4" and d["kind"] == "stability_region"
    assert "rk4" in repr(reg) and "real_axis_limit" in repr(reg)
    fig = reg.plot()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "hλ outside" in labels and "hλ inside" in labels
    fig2 = analysis.stability_region("ars443", implicit_values=[0.0, 2.0]).plot()
    assert any("w = hμ" in t for t in fig2.axes[0].get_legend_handles_labels()[1])


def test_bad_arguments():
    with pytest.raises(UnknownMethodError, match="method: unknown method 'rk5'"):
        analysis.stability_region("rk5")
    with pytest.raises(ArgumentTypeError, match="method"):
        analysis.stability_region(4)
    with pytest.raises(ArgumentError, match="implicit_values"):
        analysis.stability_region("ars222", implicit_values=[-1.0])
    with pytest.raises(ArgumentError, match="no implicit part"):
        analysis.stability_region("rk4", implicit_values=[1.0])
    with pytest.raises(ArgumentError, match="implicit_eigenvalues"):
        max_stable_steps("euler", [-1.0], [2.0])


def test_custom_and_diagonally_implicit_tableaux():
    # implicit midpoint rule as a DIRK: R = (1 + z/2) / (1 - z/2), |R| = 1 on the imaginary axis
    tab = ButcherTableau(a=[[0.5]], b=[1.0], c=[0.5], order=2, name="implicit-midpoint")
    reg = analysis.stability_region(tab)
    assert complex(reg.R(-2.0)) == pytest.approx(0.0)
    assert reg.real_axis_limit == -math.inf  # A-stable: the whole negative axis
    assert reg.imaginary_axis_limit == math.inf
    assert bool(reg.contains(-100 + 3j)) and not bool(reg.contains(0.1))
