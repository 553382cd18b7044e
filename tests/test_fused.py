"""The compiled (fused) sparse and lean kernels against the pure-PyTorch engines.

The fused kernels are built once per test session (``odenet.nn._fused.library``; a
few seconds, cached under ``TORCH_EXTENSIONS_DIR``). Where no compiler is available the
fused tests skip, and the fallback tests check that the operators then warn once and
use the pure-PyTorch engines.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

from odenet.nn import LeanConv2d, SparseConv2d, _fused

D = torch.float64


@pytest.fixture(scope="module")
def lib():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        built = _fused.library()
    if built is None:
        pytest.skip(f"fused kernels unavailable: {_fused._state['error'] or _fused.ENV + '=0'}")
    return built


def _pair(make, engine, reference, dtype, seed):
    """Two modules with the same parameters: one on ``engine``, one on ``reference``."""
    torch.manual_seed(seed)
    a = make(engine).to(dtype)
    b = make(reference).to(dtype)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        if a.bias is not None:
            a.bias.normal_()
            b.bias.copy_(a.bias)
    return a, b


def _grads(op, x, z, adjoint=False):
    x = x.clone().requires_grad_()
    for p in op.parameters():
        p.grad = None
    out = op.adjoint(x) if adjoint else op(x)
    out.backward(z)
    return out.detach(), [x.grad, *(p.grad for p in op.parameters())]


def _close(a, b, dtype):
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == D else dict(rtol=2e-4, atol=2e-4)
    torch.testing.assert_close(a, b, **tol)


def _check_agree(fused, ref, x, z, dtype):
    out_f, grads_f = _grads(fused, x, z)
    out_r, grads_r = _grads(ref, x, z)
    _close(out_f, out_r, dtype)
    for gf, gr in zip(grads_f, grads_r):
        _close(gf, gr, dtype)
    # the transpose, on an output-shaped input
    out_f, grads_f = _grads(fused, z, x, adjoint=True)
    out_r, grads_r = _grads(ref, z, x, adjoint=True)
    _close(out_f, out_r, dtype)
    for gf, gr in zip(grads_f, grads_r):
        if gr is not None:  # the bias is not part of the adjoint
            _close(gf, gr, dtype)


# --------------------------------------------------------------------------- sparse


@settings(max_examples=12)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    cin=st.integers(1, 20),
    cout=st.integers(1, 20),
    h=st.integers(1, 9),
    w=st.integers(1, 21),
    period=st.integers(1, 9),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_sparse_fused_matches_masked(lib, seed, b, cin, cout, h, w, period, bias, dtype):
    """Forward, transpose and all first derivatives agree with the vendor's dense
    convolution on the zero-filled kernel, for any channel counts, periods and widths
    (including widths that are not a multiple of the vector length)."""
    fused, ref = _pair(lambda e: SparseConv2d(cin, cout, period=period, bias=bias, engine=e),
                       "fused", "masked", dtype, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cin, h, w, generator=g, dtype=D).to(dtype)
    z = torch.randn(b, cout, h, w, generator=g, dtype=D).to(dtype)
    _check_agree(fused, ref, x, z, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["sparse", "lean"])
def test_fused_benchmark_shape(lib, kind, dtype):
    """The benchmark's shape (64 channels, 32×32): every kernel block full, and in float64
    the input channels taken in several chunks (the kernel's cache blocking)."""
    if kind == "sparse":
        fused, ref = _pair(lambda e: SparseConv2d(64, 64, bias=True, engine=e), "fused",
                           "masked", dtype, 0)
    else:
        fused, ref = _pair(lambda e: LeanConv2d(64, 64, stencil=9, bias=True, engine=e),
                           "fused", "chunked", dtype, 0)
    x, z = torch.randn(2, 64, 32, 32, dtype=dtype), torch.randn(2, 64, 32, 32, dtype=dtype)
    _check_agree(fused, ref, x, z, dtype)


def test_sparse_fused_gradcheck(lib):
    """First and second derivatives by finite differences (second ones through the
    differentiable reference), forward and transpose, with a bias."""
    torch.manual_seed(0)
    op = SparseConv2d(8, 4, bias=True, engine="fused").double()
    x = torch.randn(2, 8, 3, 5, dtype=D, requires_grad=True)
    z = torch.randn(2, 4, 3, 5, dtype=D, requires_grad=True)
    assert gradcheck(op, (x,))
    assert gradgradcheck(op, (x,))
    assert gradcheck(op.adjoint, (z,))
    assert gradgradcheck(op.adjoint, (z,))
    w = op.weight.detach().clone().requires_grad_()

    def in_weight(w):
        return torch.func.functional_call(op, {"weight": w}, (x,))

    assert gradcheck(in_weight, (w,))


def test_sparse_fused_forward_mode(lib):
    """torch.func.jvp through the fused function equals the operator on the tangent."""
    torch.manual_seed(1)
    op = SparseConv2d(6, 10, engine="fused").double()
    x, v = torch.randn(2, 6, 4, 5, dtype=D), torch.randn(2, 6, 4, 5, dtype=D)
    _, jv = torch.func.jvp(op, (x,), (v,))
    torch.testing.assert_close(jv, op(v).detach(), rtol=1e-12, atol=1e-12)


def test_sparse_fused_adjoint_dot_product(lib):
    op = SparseConv2d(16, 24, engine="fused").double()
    x, z = torch.randn(3, 16, 7, 6, dtype=D), torch.randn(3, 24, 7, 6, dtype=D)
    lhs, rhs = (op(x) * z).sum(), (x * op.adjoint(z)).sum()
    assert torch.isclose(lhs, rhs, rtol=1e-12)


# --------------------------------------------------------------------------- lean


@settings(max_examples=10)
@given(
    seed=st.integers(0, 2**16),
    b=st.integers(1, 3),
    c=st.integers(1, 19),
    h=st.integers(1, 8),
    w=st.integers(1, 20),
    stencil=st.sampled_from([4, 5, 9]),
    bias=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    engine=st.sampled_from(["fused", "conv"]),
)
def test_lean_engines_match_chunked(lib, seed, b, c, h, w, stencil, bias, dtype, engine):
    fused, ref = _pair(lambda e: LeanConv2d(c, c, stencil=stencil, bias=bias, engine=e),
                       engine, "chunked", dtype, seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=D).to(dtype)
    z = torch.randn(b, c, h, w, generator=g, dtype=D).to(dtype)
    _check_agree(fused, ref, x, z, dtype)


@pytest.mark.parametrize("stencil", [4, 5, 9])
def test_lean_fused_gradcheck(lib, stencil):
    torch.manual_seed(stencil)
    op = LeanConv2d(5, 5, stencil=stencil, bias=True, engine="fused").double()
    x = torch.randn(2, 5, 4, 3, dtype=D, requires_grad=True)
    assert gradcheck(op, (x,))
    assert gradgradcheck(op, (x,))
    assert gradcheck(op.adjoint, (x,))
    params = {"weight": op.weight.detach().clone(), "stencil_weight": op.stencil_weight.detach()}
    params = {k: v.clone().requires_grad_() for k, v in params.items()}

    def in_params(w, s):
        return torch.func.functional_call(op, {"weight": w, "stencil_weight": s}, (x,))

    assert gradcheck(in_params, (params["weight"], params["stencil_weight"]))
    _, jv = torch.func.jvp(op.adjoint, (x.detach(),), (x.detach() * 2,))
    torch.testing.assert_close(jv, 2 * op.adjoint(x).detach(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("make", [lambda: SparseConv2d(16, 16), lambda: LeanConv2d(16, 16)],
                         ids=["sparse", "lean"])
def test_fused_thread_counts_agree(lib, make):
    """One parallel region per call, dynamic scheduling: 1 and 2 threads agree to round-off
    (the weight gradient's summation order may differ)."""
    torch.manual_seed(0)
    op = make().double()
    x, z = torch.randn(5, 16, 6, 9, dtype=D), torch.randn(5, 16, 6, 9, dtype=D)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _grads(op, x, z)
        torch.set_num_threads(2)
        two = _grads(op, x, z)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(one[0], two[0], rtol=0, atol=0)
    for a, b in zip(one[1], two[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- formats


ENGINES = [
    ("sparse", "fused"), ("sparse", "taps"), ("sparse", "masked"),
    ("lean", "fused"), ("lean", "chunked"), ("lean", "conv"),
]


def _op(kind, engine, c=8):
    if kind == "sparse":
        return SparseConv2d(c, c, bias=True, engine=engine)
    return LeanConv2d(c, c, bias=True, engine=engine)


@pytest.mark.parametrize(("kind", "engine"), ENGINES)
def test_channels_last_is_preserved(kind, engine):
    """A channels-last input gives a channels-last output (and its gradient), equal to the
    contiguous computation."""
    torch.manual_seed(0)
    op = _op(kind, engine).double()
    x = torch.randn(2, 8, 5, 6, dtype=D).contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    x.requires_grad_()
    out = op(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, op(x.contiguous()), rtol=1e-12, atol=1e-12)
    adj = op.adjoint(x)
    assert adj.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("kind", "engine"), ENGINES)
def test_cpu_bf16_autocast(kind, engine):
    """Under CPU bfloat16 autocast the operators run in bfloat16 (like nn.Conv2d), stay
    close to float32, and the parameters get float32 gradients."""
    torch.manual_seed(0)
    op = _op(kind, engine, c=16)
    x = torch.randn(2, 16, 8, 8)
    ref = op(x).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(x)
        adj = op.adjoint(x)
    assert out.dtype == torch.bfloat16 and adj.dtype == torch.bfloat16
    err = (out.float() - ref).norm() / ref.norm()
    assert err < 2e-2, err
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in op.parameters())


# --------------------------------------------------------------------------- fallback


def _reset(monkeypatch):
    for key, value in (("lib", None), ("tried", False), ("error", None), ("warned", False)):
        monkeypatch.setitem(_fused._state, key, value)


def test_fallback_without_a_compiler(monkeypatch):
    """A failed build is reported once as a RuntimeWarning; the operators then compute with
    the pure-PyTorch engines, exactly as those do."""
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise OSError("no C++ compiler found")

    _reset(monkeypatch)
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    torch.manual_seed(0)
    sparse = SparseConv2d(8, 8, engine="fused").double()
    lean = LeanConv2d(8, 8, engine="fused").double()
    x = torch.randn(2, 8, 5, 5, dtype=D)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        y = sparse(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        y_lean = lean(x)
        assert _fused.library() is None and not _fused.available()
    masked = copy.deepcopy(sparse)
    masked.engine = "masked"
    torch.testing.assert_close(y, masked(x), rtol=1e-12, atol=1e-12)
    chunked = copy.deepcopy(lean)
    chunked.engine = "chunked"
    torch.testing.assert_close(y_lean, chunked(x), rtol=1e-12, atol=1e-12)
    # without the kernel, the lean operator takes the vendor convolutions with several threads
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert LeanConv2d(8, 8)._engine(x) == "chunked"
        torch.set_num_threads(2)
        assert LeanConv2d(8, 8)._engine(x) == "conv"
        assert LeanConv2d(8, 8, engine="chunked")._engine(x) == "chunked"
    finally:
        torch.set_num_threads(threads)


def test_a_compiler_without_openmp_builds_a_single_threaded_kernel(lib, monkeypatch):
    """The flags are tried in turn: where -fopenmp fails (Apple's clang), the kernel is built
    without it, warns nothing, and computes the same."""
    from torch.utils import cpp_extension

    real = cpp_extension.load

    def no_openmp(*args, **kwargs):
        if "-fopenmp" in kwargs["extra_cflags"]:
            raise OSError("clang: error: unsupported option '-fopenmp'")
        return real(*args, **kwargs)

    _reset(monkeypatch)
    monkeypatch.setattr(cpp_extension, "load", no_openmp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serial = _fused.library()
    assert serial is not None and serial is not lib
    torch.manual_seed(0)
    fused, ref = _pair(lambda e: SparseConv2d(12, 8, bias=True, engine=e), "fused", "masked", D, 0)
    x, z = torch.randn(3, 12, 5, 7, dtype=D), torch.randn(3, 8, 5, 7, dtype=D)
    _check_agree(fused, ref, x, z, D)


def test_environment_turns_the_kernels_off(monkeypatch):
    _reset(monkeypatch)
    monkeypatch.setenv(_fused.ENV, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _fused.library() is None
        op = SparseConv2d(4, 4)
        assert op._fused_plans(torch.randn(1, 4, 3, 3)) is None
        assert op(torch.randn(1, 4, 3, 3)).shape == (1, 4, 3, 3)
    assert not _fused._state["tried"]  # nothing was built


def test_engine_argument_is_checked():
    from odenet.errors import ArgumentError

    with pytest.raises(ArgumentError, match="^engine: expected one of"):
        LeanConv2d(4, 4, engine="gpu")
    with pytest.raises(ArgumentError, match="^engine: expected one of"):
        SparseConv2d(4, 4, engine="chunked")


def test_the_kernel_source_is_installed():
    """The C++ source ships with the package (package data), where the loader looks."""
    import fnmatch
    import pathlib
    import sys

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    root = pathlib.Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["odenet.nn"]
    rel = _fused.SOURCE.relative_to(pathlib.Path(_fused.__file__).parent).as_posix()
    assert _fused.SOURCE.is_file()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns)
