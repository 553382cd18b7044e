"""Matrix-free spectra (ARPACK vs dense), step limits, IMEX regions, flow-map amplification."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

import odenet
from odenet import analysis
from odenet.analysis._jacobian import JacobianOperator
from odenet.analysis._problems import MatrixOperator
from odenet.analysis._stability import flow_amplification
from odenet.errors import ArgumentError, ArgumentTypeError


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _conv_rhs(seed: int = 0, channels: int = 3, parabolic: bool = True):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(channels, channels, 3, 3, generator=g, dtype=torch.float64) / 3

    def f(t, y):
        z = torch.tanh(torch.nn.functional.conv2d(y, W, padding=1))
        if parabolic:
            return -torch.nn.functional.conv_transpose2d(z, W, padding=1)
        return z

    return f


def test_arpack_spectrum_equals_dense_on_a_small_state():
    f = _conv_rhs(parabolic=False)
    y = torch.randn(1, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    res = analysis.stability(f, y, "rk4", 0.1, k=5, which=("LM", "LR"), T=None, dense=True,
                             tol=1e-12)
    dense = np.asarray(res.dense_eigenvalues)
    # independent dense reference from torch.autograd.functional.jacobian
    J = torch.autograd.functional.jacobian(lambda x: f(0.0, x), y).reshape(75, 75).numpy()
    ref = scipy.linalg.eigvals(J)
    np.testing.assert_allclose(np.sort_complex(dense), np.sort_complex(ref), atol=1e-10)
    rho = np.abs(ref).max()
    for lam in res.eigenvalues:
        assert np.abs(ref - lam).min() <= 1e-8 * rho
    # the LM eigenvalues are the largest in magnitude
    lm = sorted((abs(r["eigenvalue"]) for r in res.rows if r["source"] == "LM"), reverse=True)
    np.testing.assert_allclose(lm, np.sort(np.abs(ref))[::-1][: len(lm)], rtol=1e-8)
    assert res.arpack_error < 1e-8


def test_diagonal_system_step_limits():
    lam = -torch.arange(1.0, 31.0, dtype=torch.float64)  # eigenvalues -1 ... -30
    f = lambda t, y: lam * y  # noqa: E731
    y = torch.ones(30, dtype=torch.float64)
    e = analysis.stability(f, y, "euler", 0.05, k=3, T=None)
    assert e.max_step == pytest.approx(2 / 30)
    assert e.stable
    r = analysis.stability(f, y, "rk4", 0.1, k=3, T=None)
    assert r.max_step == pytest.approx(2.785293563405282 / 30, rel=1e-9)
    assert not r.stable  # 0.1 * 30 = 3 > 2.785
    assert r.spectral_radius == pytest.approx(30)
    assert r.max_real == pytest.approx(-1)
    # the same without the dense spectrum: ARPACK's extreme eigenvalues set the limit
    a = analysis.stability(f, y, "rk4", 0.05, k=3, T=None, dense=False)
    assert a.dense_eigenvalues is None
    assert a.max_step == pytest.approx(2.785293563405282 / 30, rel=1e-7)


def test_growing_modes_and_parabolic_spectrum():
    y = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    p = analysis.stability(_conv_rhs(), y, "rk4", 0.25, k=3, T=None)
    assert p.max_real <= 1e-10 * p.spectral_radius  # -K^T D K: negative semi-definite
    assert p.n_growing == 0
    g = analysis.stability(lambda t, x: 0.5 * x, y, "rk4", 0.25, k=3, T=None)
    assert g.n_growing == y.numel() and not g.stable and g.max_step == 0.0


def test_imex_explicit_spectrum_against_the_imex_region():
    n = 12
    mus = torch.linspace(0.0, 400.0, n, dtype=torch.float64)
    L = MatrixOperator(torch.diag(mus))
    f = lambda t, y: -0.5 * y  # noqa: E731
    y = torch.ones(n, dtype=torch.float64)
    res = analysis.stability(f, y, "ars222", 0.5, implicit=L, k=2, T=None)
    assert res.implicit_range == pytest.approx([0.0, 400.0], abs=1e-9)
    assert res.stable  # L-stable implicit part: the stiff L does not limit the step
    # the same ODE fully explicit: rk4 must take h <= 2.785 / 400.5
    full = analysis.stability(lambda t, x: f(t, x) - L(x), y, "rk4", 0.5, k=2, T=None)
    assert not full.stable
    assert full.max_step == pytest.approx(2.785293563405282 / 400.5, rel=1e-6)
    with pytest.raises(ArgumentError, match="positive semi-definite|symmetric"):
        bad = MatrixOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
        analysis.stability(lambda t, x: -x, torch.ones(2, dtype=torch.float64), "ars222", 0.1,
                           implicit=bad, T=None)


def test_flow_amplification_equals_the_dense_flow_norm():
    f = _conv_rhs(parabolic=False, seed=3)
    y = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)

    def flow(x):
        return odenet.odeint(f, x, t, method="rk4", step_size=0.25)[-1]

    J = torch.autograd.functional.jacobian(flow, y).reshape(48, 48)
    ref = float(torch.linalg.matrix_norm(J, 2))
    amp, iters = flow_amplification(f, y, "rk4", 0.25, 1.0, tol=1e-10)
    assert amp == pytest.approx(ref, rel=1e-8)
    assert iters <= 48
    res = analysis.stability(f, y, "rk4", 0.25, k=2, T=1.0)
    assert res.flow_amplification == pytest.approx(ref, rel=1e-3)


def test_jacobian_operator_products_and_fallback():
    f = _conv_rhs(parabolic=False, seed=5)
    y = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    J = JacobianOperator(lambda x: f(0.0, x), y)
    D = torch.autograd.functional.jacobian(lambda x: f(0.0, x), y).reshape(48, 48)
    v = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    u = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(J.matvec(v).reshape(-1), D @ v.reshape(-1))
    torch.testing.assert_close(J.rmatvec(u).reshape(-1), D.T @ u.reshape(-1))
    # adjoint dot-product test
    assert float((J.matvec(v) * u).sum()) == pytest.approx(float((v * J.rmatvec(u)).sum()))
    J._forward_ok = False  # the double-backward path
    torch.testing.assert_close(J.matvec(v).reshape(-1), D @ v.reshape(-1))
    np.testing.assert_allclose(J.dense(), D.numpy(), atol=1e-14)


def test_ode_block_and_result_contract():
    import odenet.nn as onn

    torch.manual_seed(0)
    block = onn.ODEBlock(onn.ParabolicRHS(onn.LeanConv2d(2, 2), activation="tanh"), steps=4,
                         method="midpoint").double()
    y = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    res = analysis.stability(block, y, k=2, T=0.5)
    assert res.method == "midpoint" and res.step_size == 0.25
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["kind"] == "stability" and d["flow_amplification"] is not None
    assert "largest stable step" in repr(res)
    assert len(res.plot().axes) == 2


def test_bad_arguments():
    y = torch.ones(4, dtype=torch.float64)
    f = lambda t, x: -x  # noqa: E731
    with pytest.raises(ArgumentTypeError, match="y: stability takes a single Tensor"):
        analysis.stability(f, (y, y), "rk4", 0.1)
    with pytest.raises(ArgumentError, match="implicit: method 'ars222'"):
        analysis.stability(f, y, "ars222", 0.1)
    with pytest.raises(ArgumentError, match="implicit: method 'rk4' is explicit"):
        analysis.stability(f, y, "rk4", 0.1, implicit=MatrixOperator(torch.eye(4)))
    with pytest.raises(ArgumentError, match="step_size"):
        analysis.stability(f, y, "rk4", -1.0)
    with pytest.raises(ArgumentError, match="step_size: required"):
        analysis.stability(f, y, "rk4")
    with pytest.raises(ArgumentError, match="k: expected a positive integer"):
        analysis.stability(f, y, "rk4", 0.1, k=0)
    with pytest.raises(ArgumentError, match="which"):
        analysis.stability(f, y, "rk4", 0.1, which=("XX",))
    with pytest.raises(ArgumentError, match="non-finite"):
        analysis.stability(f, torch.tensor([math.nan]), "rk4", 0.1)
