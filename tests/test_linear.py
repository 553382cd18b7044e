"""ConvFFT: dense references, adjoint tests, gradients, the symbol cache, errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.linear import ConvFFT, ImplicitOperator
from odenet.linear._transforms import dct, dct_matrix, idct

F64 = torch.float64


# -- references ---------------------------------------------------------------------------------
def _symmetrise(w: torch.Tensor) -> torch.Tensor:
    w = (w + w.flip(-2)) / 2
    return (w + w.flip(-1)) / 2


def _kernel(seed: int, C: int, k: int, boundary: str, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, 1, k, k, generator=g, dtype=dtype)
    return _symmetrise(w) if boundary == "reflect" else w


def _pad(y: torch.Tensor, ph: int, pw: int, boundary: str) -> torch.Tensor:
    """Circular padding from torch; half-sample symmetric padding from NumPy (an independent
    implementation of the reflective boundary)."""
    if boundary == "periodic":
        return F.pad(y, (pw, pw, ph, ph), mode="circular")
    widths = [(0, 0)] * (y.ndim - 2) + [(ph, ph), (pw, pw)]
    return torch.from_numpy(np.pad(y.numpy(), widths, mode="symmetric"))


def _conv_k(y: torch.Tensor, w: torch.Tensor, boundary: str) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    return F.conv2d(_pad(y, kh // 2, kw // 2, boundary), w, groups=w.shape[0])


def _dense_k(w: torch.Tensor, H: int, W: int, boundary: str) -> torch.Tensor:
    """The matrix of K on flattened (C, H, W) images, column by column from conv2d."""
    C = w.shape[0]
    n = C * H * W
    basis = torch.eye(n, dtype=w.dtype).reshape(n, C, H, W)
    return _conv_k(basis, w, boundary).reshape(n, n).T


def _dense_l(w, H, W, boundary):
    K = _dense_k(w, H, W, boundary)
    return K.T @ K


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


BOUNDARIES = ["periodic", "reflect"]


# -- the operator against dense matrices -------------------------------------------------------
@given(
    boundary=st.sampled_from(BOUNDARIES),
    C=st.integers(1, 3),
    k=st.sampled_from([3, 5]),
    dh=st.integers(0, 5),
    dw=st.integers(0, 5),
    gamma=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_matches_dense_kt_k(boundary, C, k, dh, dw, gamma, seed):
    H, W = k + dh, k + dw  # odd and even sizes, down to the kernel size
    w = _kernel(seed, C, k, boundary)
    L = ConvFFT(w, boundary=boundary)
    Ld = _dense_l(w, H, W, boundary)
    y = torch.randn(2, C, H, W, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    yf = y.reshape(2, -1)
    assert _rel(L(y).reshape(2, -1), yf @ Ld.T) < 1e-12
    assert _rel(L.adjoint(y).reshape(2, -1), yf @ Ld) < 1e-12
    x_dense = torch.linalg.solve(torch.eye(C * H * W, dtype=F64) + gamma * Ld, yf.T).T
    assert _rel(L.solve(y, gamma).reshape(2, -1), x_dense) < 1e-12
    # the symbol holds the eigenvalues of the dense matrix
    s = L.symbol(H, W)
    if boundary == "periodic":  # the rfft2 half grid: rebuild the full one by Hermitian symmetry
        full = torch.cat([s, s[:, (-torch.arange(H)) % H][:, :, 1 : (W + 1) // 2].flip(-1)], -1)
    else:
        full = s
    ev = torch.linalg.eigvalsh(Ld)
    assert _rel(full.flatten().sort().values, ev) < 1e-12


def test_reflect_is_neumann_not_wraparound():
    """Reflective K with a 3x3 kernel is conv2d with edge replication; nothing wraps around."""
    w = _kernel(0, 2, 3, "reflect")
    y = torch.randn(1, 2, 9, 8, dtype=F64)
    Kd = _dense_k(w, 9, 8, "reflect")
    ref = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), w, groups=2)
    assert _rel((y.reshape(1, -1) @ Kd.T).reshape_as(y), ref) < 1e-14
    L = ConvFFT(w, boundary="reflect")
    e = torch.zeros(1, 2, 9, 8, dtype=F64)
    e[..., 4, 0] = 1.0  # a spike on the left edge: L reaches 2 columns, never the right edge
    out = L(e)
    assert out[..., :, 3:].abs().max() < 1e-12 and out[..., :, :3].abs().max() > 0.1
    out_p = ConvFFT(w)(e)  # periodic: it does wrap
    assert out_p[..., :, -2:].abs().max() > 0.1


@pytest.mark.parametrize("C", [1, 2])
def test_reflect_fft_dct_path(monkeypatch, C):
    """Large images take the FFT-based DCT: forced here on small ones, against the dense
    reference, the matrix path, and gradcheck."""
    import odenet.linear._transforms as tr

    w = _kernel(5 + C, C, 5, "reflect")
    y = torch.randn(2, C, 7, 6, dtype=F64)
    L = ConvFFT(w, boundary="reflect")
    by_matrix = (L(y), L.solve(y, 3.0))
    monkeypatch.setattr(tr, "DCT_MATMUL_MAX", 0)
    L.clear_cache()
    Ld = _dense_l(w, 7, 6, "reflect")
    assert _rel(L(y).reshape(2, -1), y.reshape(2, -1) @ Ld.T) < 1e-12
    assert _rel(L(y), by_matrix[0]) < 1e-12 and _rel(L.solve(y, 3.0), by_matrix[1]) < 1e-12
    r = y.clone().requires_grad_()
    v = torch.randn(C, 1, 3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r, v: _op(v, "reflect").solve(r, 0.7), (r, v))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9, 16])
def test_dct_matches_scipy(n):
    x = torch.randn(3, n, dtype=F64)
    ref = torch.from_numpy(scipy.fft.dct(x.numpy(), type=2, norm="ortho"))
    assert _rel(dct(x), ref) < 1e-13
    assert _rel(idct(ref), x) < 1e-13
    assert _rel(x @ dct_matrix(n, F64, x.device).T, ref) < 1e-13
    xf = x.float()
    assert (dct(xf) - ref.float()).abs().max() < 1e-5 and dct(xf).dtype == torch.float32


# -- adjoint / symmetry / definiteness ----------------------------------------------------------
@settings(max_examples=10)
@given(boundary=st.sampled_from(BOUNDARIES), seed=st.integers(0, 2**16),
       gamma=st.floats(0.0, 50.0))
def test_dot_products(boundary, seed, gamma):
    g = torch.Generator().manual_seed(seed)
    L = ConvFFT(_kernel(seed, 3, 5, boundary), boundary=boundary)
    y, z = torch.randn(2, 4, 3, 11, 12, dtype=F64, generator=g)
    dot = lambda a, b: (a * b).sum().item()  # noqa: E731
    assert dot(L(y), z) == pytest.approx(dot(y, L.adjoint(z)), rel=1e-12, abs=1e-10)
    assert dot(L(y), z) == pytest.approx(dot(y, L(z)), rel=1e-12, abs=1e-10)
    assert dot(L.solve(y, gamma), z) == pytest.approx(dot(y, L.solve(z, gamma)), rel=1e-12)
    assert dot(y, L(y)) >= 0
    # (I + γL)^{-1} is a contraction
    assert L.solve(y, gamma).norm() <= y.norm() * (1 + 1e-12)


# -- gradients ----------------------------------------------------------------------------------
def _op(v: torch.Tensor, boundary: str) -> ConvFFT:
    # reflect kernels are symmetrised inside, so a finite-difference probe stays valid
    return ConvFFT(_symmetrise(v) if boundary == "reflect" else v, boundary=boundary)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("gamma_kind", ["float", "scalar_tensor", "batch_tensor"])
def test_gradcheck_solve(boundary, gamma_kind):
    torch.manual_seed(3)
    r = torch.randn(2, 2, 5, 6, dtype=F64, requires_grad=True)
    v = torch.randn(2, 1, 3, 3, dtype=F64, requires_grad=True)
    if gamma_kind == "float":
        args, fn = (r, v), lambda r, v: _op(v, boundary).solve(r, 0.7)
    else:
        g = torch.tensor(0.7, dtype=F64) if gamma_kind == "scalar_tensor" else torch.tensor(
            [0.3, 2.0], dtype=F64)
        args = (r, v, g.requires_grad_())
        fn = lambda r, v, g: _op(v, boundary).solve(r, g)  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_gradcheck_apply(boundary):
    torch.manual_seed(4)
    y = torch.randn(2, 2, 5, 4, dtype=F64, requires_grad=True)
    v = torch.randn(2, 1, 3, 3, dtype=F64, requires_grad=True)
    fn = lambda y, v: _op(v, boundary)(y)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (y, v))
    assert torch.autograd.gradgradcheck(fn, (y, v))


def test_gradients_only_where_needed():
    w = torch.nn.Parameter(torch.randn(2, 1, 3, 3, dtype=F64))
    L = ConvFFT(w)
    r = torch.randn(1, 2, 6, 6, dtype=F64, requires_grad=True)
    L.solve(r, 1.0).sum().backward()
    assert r.grad is not None and w.grad is not None
    L.requires_grad_(False)
    r2 = torch.randn(1, 2, 6, 6, dtype=F64)
    assert not L.solve(r2, 1.0).requires_grad  # no graph when nothing needs it
    with torch.no_grad():
        assert not ConvFFT(w)(r).requires_grad


# -- the symbol cache ---------------------------------------------------------------------------
def _check_solution(L: ConvFFT, weight: torch.Tensor, r: torch.Tensor, gamma: float):
    """Compare with a fresh operator built from a copy of the current weight."""
    fresh = ConvFFT(weight.detach().clone())
    assert _rel(L.solve(r, gamma), fresh.solve(r, gamma)) < 1e-13


def test_cache_reused_and_invalidated():
    w = torch.nn.Parameter(torch.randn(2, 1, 3, 3, dtype=F64))
    L = ConvFFT(w)
    r = torch.randn(2, 2, 8, 8, dtype=F64)
    L.solve(r, 0.5)
    spec = L._cache[(8, 8)]
    L.solve(r, 0.5)
    assert L._cache[(8, 8)] is spec  # reused while the weight is unchanged
    opt = torch.optim.SGD(L.parameters(), lr=0.1)
    L.solve(r, 0.5).square().sum().backward()
    opt.step()  # in-place update: the version counter moves
    _check_solution(L, w, r, 0.5)
    assert L._cache[(8, 8)] is not spec
    w.data.mul_(3.0)  # through .data: no version bump, caught by the value comparison
    _check_solution(L, w, r, 0.5)
    L.load_state_dict({"weight": torch.ones(2, 1, 3, 3, dtype=F64)})
    _check_solution(L, w, r, 0.5)
    L.float()  # a cast replaces the data
    assert L.solve(r.float(), 0.5).dtype == torch.float32
    L.clear_cache()
    assert not L._cache


def test_cache_never_returns_a_freed_graph():
    """Two forward/backward passes with the same weight (gradient accumulation): the symbol's
    graph must not be reused after the first backward freed it."""
    w = torch.nn.Parameter(torch.randn(2, 1, 3, 3, dtype=F64))
    L = ConvFFT(w)
    r = torch.randn(2, 2, 7, 6, dtype=F64)
    L.solve(r, 1.0).square().sum().backward()
    g1 = w.grad.clone()
    L.solve(r, 1.0).square().sum().backward()  # would raise on a freed graph
    assert torch.allclose(w.grad, 2 * g1)
    w2 = torch.nn.Parameter(w.detach().clone())
    ConvFFT(w2).solve(r, 1.0).square().sum().backward()
    assert torch.allclose(g1, w2.grad)


def test_weight_computed_from_parameters_keeps_its_graph():
    theta = torch.randn(2, 1, 3, 3, dtype=F64, requires_grad=True)
    L = ConvFFT(2.0 * theta)
    assert list(L.parameters()) == []  # used as given, not detached into a new Parameter
    L.solve(torch.randn(1, 2, 6, 6, dtype=F64), 1.0).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_module_semantics():
    w = torch.randn(3, 1, 3, 3)
    L = ConvFFT(w)
    assert isinstance(L.weight, torch.nn.Parameter) and not L.weight.requires_grad
    assert L.weight.data_ptr() == w.data_ptr()  # shares storage, no copy
    assert isinstance(L, ImplicitOperator)
    assert L.channels == 3 and L.kernel_size == (3, 3)
    assert "boundary='periodic'" in repr(L)
    P = torch.nn.Parameter(torch.randn(3, 1, 5, 5))
    L2 = ConvFFT(P, boundary="periodic")
    assert list(L2.parameters()) == [P]
    L3 = copy.deepcopy(L2)
    y = torch.randn(2, 3, 8, 8)
    assert torch.allclose(L3(y), L2(y))
    assert set(L2.state_dict()) == {"weight"}


def test_batch_shapes_and_batched_gamma():
    L = ConvFFT(_kernel(1, 3, 3, "periodic"))
    r = torch.randn(4, 3, 9, 10, dtype=F64)
    gam = torch.tensor([0.0, 0.1, 1.0, 1e3], dtype=F64)
    x = L.solve(r, gam)
    for b in range(4):
        assert _rel(x[b], L.solve(r[b : b + 1], float(gam[b]))[0]) < 1e-13
    assert _rel(L.solve(r[0], 0.5), L.solve(r, 0.5)[0]) < 1e-13  # unbatched (C, H, W)
    r5 = torch.randn(2, 2, 3, 9, 10, dtype=F64)
    x5 = L.solve(r5, 0.5).reshape(4, 3, 9, 10)
    assert _rel(x5, L.solve(r5.reshape(4, 3, 9, 10), 0.5)) < 1e-13
    assert L.solve(r, 0.0) is r
    assert L.solve(r, torch.tensor(0.5, dtype=F64)).shape == r.shape


def test_float32_and_device(device):
    w = _kernel(2, 4, 3, "periodic", torch.float32).to(device)
    L = ConvFFT(w)
    r = torch.randn(2, 4, 16, 16, device=device)
    x = L.solve(r, 2.0)
    assert x.device == r.device and x.dtype == torch.float32
    assert ((x + 2.0 * L(x) - r).abs().max() / r.abs().max()) < 1e-5
    Lr = ConvFFT(_symmetrise(w), boundary="reflect")
    x = Lr.solve(r, 2.0)
    assert ((x + 2.0 * Lr(x) - r).abs().max() / r.abs().max()) < 1e-5


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weight", "kwargs", "exc", "match"),
    [
        ([[1.0]], {}, ArgumentTypeError, "weight: expected a Tensor"),
        (torch.ones(2, 1, 3, 3, dtype=torch.int64), {}, ArgumentTypeError, "floating point"),
        (torch.ones(2, 2, 3, 3), {}, ArgumentError, "depthwise .* got shape \\(2, 2, 3, 3\\)"),
        (torch.ones(2, 3, 3), {}, ArgumentError, "depthwise"),
        (torch.ones(2, 1, 4, 4), {}, ArgumentError, "odd kernel sizes .* 4x4"),
        (torch.ones(2, 1, 3, 2), {}, ArgumentError, "odd"),
        (torch.full((1, 1, 3, 3), float("nan")), {}, ArgumentError, "non-finite"),
        (torch.ones(2, 1, 3, 3), {"boundary": "zeros"}, ArgumentError, "boundary: expected"),
        (torch.arange(9.0).reshape(1, 1, 3, 3), {"boundary": "reflect"}, ArgumentError,
         "reflect.*symmetric"),
    ],
)
def test_construction_errors(weight, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ConvFFT(weight, **kwargs)


def test_call_errors():
    L = ConvFFT(torch.ones(2, 1, 5, 5))
    r = torch.randn(1, 2, 8, 8)
    cases = [
        (lambda: L.solve(torch.randn(1, 3, 8, 8), 1.0), ArgumentError, "r: has 3 channels"),
        (lambda: L(torch.randn(1, 3, 8, 8)), ArgumentError, "y: has 3 channels"),
        (lambda: L.solve(torch.randn(1, 2, 4, 8), 1.0), ArgumentError, "smaller than the 5x5"),
        (lambda: L.solve(torch.randn(8, 8), 1.0), ArgumentError, "shape \\(..., C, H, W\\)"),
        (lambda: L.solve(r.double(), 1.0), ArgumentTypeError, "dtype torch.float64 differs"),
        (lambda: L.solve(r.to(torch.complex64), 1.0), ArgumentTypeError, "real floating"),
        (lambda: L.solve([1.0], 1.0), ArgumentTypeError, "r: expected a Tensor"),
        (lambda: L.solve(r, -0.1), ArgumentError, "gamma: expected gamma >= 0"),
        (lambda: L.solve(r, float("inf")), ArgumentError, "gamma: expected a finite"),
        (lambda: L.solve(r, float("nan")), ArgumentError, "gamma: expected a finite"),
        (lambda: L.solve(r, "1"), ArgumentTypeError, "gamma: expected a real number"),
        (lambda: L.solve(r, True), ArgumentTypeError, "gamma"),
        (lambda: L.solve(r, torch.tensor([-1.0])), ArgumentError, "gamma: expected values >= 0"),
        (lambda: L.solve(r, torch.ones(3)), ArgumentError, "batch shape \\(1,\\)"),
        (lambda: L.solve(r, torch.tensor(1)), ArgumentTypeError, "gamma: expected a real"),
        (lambda: L.symbol(4, 8), ArgumentError, "height: expected at least"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()


def test_reflect_weight_becoming_asymmetric_is_refused():
    w = torch.nn.Parameter(_kernel(0, 1, 3, "reflect"))
    L = ConvFFT(w, boundary="reflect")
    r = torch.randn(1, 1, 6, 6, dtype=F64)
    L.solve(r, 1.0)
    with torch.no_grad():
        w[0, 0, 0, 0] += 1.0
    with pytest.raises(ArgumentError, match="reflect"):
        L.solve(r, 1.0)


def test_odeint_refuses_mismatched_methods():
    L = ConvFFT(torch.ones(1, 1, 3, 3))
    y0, t = torch.randn(1, 1, 6, 6), torch.tensor([0.0, 1.0])
    with pytest.raises(ArgumentError, match="implicit: method 'rk4' is explicit"):
        odenet.odeint(lambda t, y: -y, y0, t, method="rk4", step_size=0.1, implicit=L)
    with pytest.raises(ArgumentError, match="implicit: method 'ars443' is an IMEX scheme"):
        odenet.odeint(lambda t, y: -y, y0, t, method="ars443", step_size=0.1)
    with pytest.raises(ArgumentError, match=r"y0: the implicit operator acts on 1 channels"):
        odenet.odeint(lambda t, y: -y, torch.randn(1, 2, 6, 6), t, method="ars443",
                      step_size=0.1, implicit=L)
