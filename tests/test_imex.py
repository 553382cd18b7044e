"""IMEX solves with ConvFFT: empirical order, unconditional stability, gradient strategies,
and the IMEXnet block."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError, NonFiniteStateError
from odenet.linear import ConvFFT

F64 = torch.float64
IMEX = [m for m, tab in odenet.METHODS.items() if isinstance(tab, odenet.IMEXTableau)]


def _kernel(g: torch.Generator, C: int, k: int, boundary: str) -> torch.Tensor:
    w = torch.randn(C, 1, k, k, generator=g, dtype=F64)
    if boundary == "reflect":
        w = (w + w.flip(-2)) / 2
        w = (w + w.flip(-1)) / 2
    return w - w.mean((-2, -1), keepdim=True)  # zero sum: constants are in L's null space


def _stiff_operator(g, C, H, W, stiffness, boundary="periodic", k=3) -> ConvFFT:
    """A ConvFFT whose largest eigenvalue is ``stiffness`` (its smallest is 0)."""
    w = _kernel(g, C, k, boundary)
    lam = ConvFFT(w, boundary=boundary).symbol(H, W).max()
    return ConvFFT(w * math.sqrt(stiffness / lam), boundary=boundary)


def _dense(op, C, H, W) -> torch.Tensor:
    n = C * H * W
    return op(torch.eye(n, dtype=F64).reshape(n, C, H, W)).reshape(n, n).T


def _slope(method, f, y0, L, exact, Ns, T=1.0):
    errs = []
    for N in Ns:
        y = odenet.odeint(f, y0, torch.tensor([0.0, T], dtype=F64), method=method,
                          step_size=T / N, implicit=L)[-1]
        errs.append(((y - exact).abs().max() / exact.abs().max()).item())
    return np.polyfit(np.log([T / N for N in Ns]), np.log(errs), 1)[0], errs


# -- empirical order ----------------------------------------------------------------------------
def _circular_eigenvalues(w: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Eigenvalues (full 2-D FFT grid) of the circular depthwise cross-correlation with ``w``:
    the FFT of its impulse response, which is the kernel placed without arithmetic."""
    C, _, kh, kw = w.shape
    e = torch.zeros(1, C, H, W, dtype=w.dtype)
    e[..., 0, 0] = 1.0
    imp = F.conv2d(F.pad(e, (kw // 2, kw // 2, kh // 2, kh // 2), mode="circular"), w, groups=C)
    return torch.fft.fft2(imp[0])


@pytest.mark.parametrize("method", IMEX)
@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), log_stiffness=st.floats(1.0, 6.0))
def test_order_with_stiff_operator(method, seed, log_stiffness):
    """y' = A y - L y with A a non-symmetric periodic depthwise convolution (commuting with L,
    ||A|| <= 1) and L mild on channel 0 (||L|| = 10) and stiff on channel 1 (||L|| up to 1e6):
    the error's slope is the declared order, however stiff L is. Exact solution per Fourier
    mode from exact eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    C, H, W = 2, 8, 7
    w = _kernel(g, C, 3, "periodic")
    lam = ConvFFT(w).symbol(H, W).amax((-2, -1))
    target = torch.tensor([10.0, 10.0**log_stiffness], dtype=F64)
    w = w * (target / lam).sqrt()[:, None, None, None]
    L = ConvFFT(w)
    wa = torch.randn(C, 1, 3, 3, generator=g, dtype=F64)
    wa = wa / wa.abs().sum((-2, -1), keepdim=True)

    def A(y):
        return F.conv2d(F.pad(y, (1, 1, 1, 1), mode="circular"), wa, groups=C)

    y0 = torch.randn(2, C, H, W, generator=g, dtype=F64)
    rate = _circular_eigenvalues(wa, H, W) - _circular_eigenvalues(w, H, W).abs().square()
    exact = torch.fft.ifft2(torch.exp(rate) * torch.fft.fft2(y0)).real
    assert _rel_max(A(y0) - L(y0), torch.fft.ifft2(rate * torch.fft.fft2(y0)).real) < 1e-9
    slope, errs = _slope(method, lambda t, y: A(y), y0, L, exact, [16, 32, 64, 128])
    assert abs(slope - odenet.METHODS[method].order) <= 0.3, (slope, errs)


def _rel_max(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("method", IMEX)
@settings(max_examples=3)
@given(seed=st.integers(0, 2**16), stiffness=st.floats(1.0, 10.0),
       boundary=st.sampled_from(["periodic", "reflect"]))
def test_order_coupled_and_forced(method, seed, stiffness, boundary):
    """y' = A y + cos(t) v - L y with a dense A that does not commute with L and a
    time-dependent forcing (stage times): exact solution from an augmented matrix exponential."""
    g = torch.Generator().manual_seed(seed)
    C, H, W = 2, 5, 6
    n = C * H * W
    L = _stiff_operator(g, C, H, W, stiffness, boundary)
    A = torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n)
    v = torch.randn(n, generator=g, dtype=F64)
    M = torch.zeros(n + 2, n + 2, dtype=F64)  # z = (y, cos t, sin t)
    M[:n, :n] = A - _dense(L, C, H, W)
    M[:n, n] = v
    M[n, n + 1], M[n + 1, n] = -1.0, 1.0
    y0 = torch.randn(2, C, H, W, generator=g, dtype=F64)
    z0 = torch.cat([y0.reshape(2, -1), torch.ones(2, 1, dtype=F64), torch.zeros(2, 1, dtype=F64)],
                   dim=1)
    exact = (z0 @ torch.linalg.matrix_exp(M).T)[:, :n].reshape(y0.shape)

    def f(t, y):
        return (y.reshape(2, -1) @ A.T + torch.cos(t) * v).reshape(y.shape)

    slope, errs = _slope(method, f, y0, L, exact, [16, 32, 64, 128])
    assert abs(slope - odenet.METHODS[method].order) <= 0.3, (slope, errs)


def test_imex_euler_is_the_imexnet_step():
    """imex_euler with ConvFFT is y <- (I + hL)^{-1} (y + h f(y)), IMEXnet's layer."""
    g = torch.Generator().manual_seed(0)
    L = _stiff_operator(g, 3, 8, 8, 50.0)
    y0 = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    f = lambda t, y: torch.tanh(y) * (1 + t)  # noqa: E731
    h = 0.25
    y = y0
    for n in range(4):
        y = L.solve(y + h * f(torch.tensor(n * h, dtype=F64), y), h)
    out = odenet.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=F64), method="imex_euler",
                        step_size=h, implicit=L)
    assert torch.allclose(out[-1], y, rtol=1e-13, atol=1e-13)


# -- unconditional stability --------------------------------------------------------------------
@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), log_h=st.floats(-1.0, 3.0), log_stiffness=st.floats(2.0, 4.0),
       boundary=st.sampled_from(["periodic", "reflect"]))
def test_unconditionally_stable_where_explicit_blows_up(seed, log_h, log_stiffness, boundary):
    """f = 0, ||L|| in [1e2, 1e4], h in [0.1, 1e3]: every IMEX step is non-expansive; rk4 on
    y' = -L y with the same h (h ||L|| >= 10, outside its stability interval) blows up."""
    g = torch.Generator().manual_seed(seed)
    h = 10.0**log_h
    L = _stiff_operator(g, 2, 8, 7, 10.0**log_stiffness, boundary)
    y0 = torch.randn(3, 2, 8, 7, generator=g, dtype=F64)
    t = torch.arange(6, dtype=F64) * h
    for method in IMEX:
        ys = odenet.odeint(lambda t, y: torch.zeros_like(y), y0, t, method=method, step_size=h,
                           implicit=L)
        norms = ys.flatten(1).norm(dim=1)
        assert bool(torch.all(norms[1:] <= norms[:-1] * (1 + 1e-12))), (method, norms)
        # the constant mode (L's null space) is kept exactly; everything else decays
        mean = y0.mean((-2, -1), keepdim=True)
        assert torch.allclose(ys[-1].mean((-2, -1), keepdim=True), mean, atol=1e-10)
    yr = odenet.odeint(lambda t, y: -L(y), y0, t, method="rk4",
                       options={"step_size": h, "check_finite": False})
    growth = yr[-1].norm() / y0.norm()
    assert not bool(torch.isfinite(growth)) or growth > 1e6, growth
    with pytest.raises(NonFiniteStateError):  # with the default check: a clear error
        odenet.odeint(lambda t, y: -L(y), y0, torch.arange(200, dtype=F64) * h,
                      method="rk4", step_size=h)


# -- gradients of every strategy ----------------------------------------------------------------
class Parabolic(torch.nn.Module):
    """f(t, y) = -Kᵀ tanh(K y + b) (1 + t) with a dense 3x3 convolution K."""

    def __init__(self, C: int, g: torch.Generator):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(C, C, 3, 3, generator=g, dtype=F64) / 3)
        self.b = torch.nn.Parameter(torch.randn(C, generator=g, dtype=F64) / 3)

    def forward(self, t, y):
        z = torch.tanh(F.conv2d(y, self.w, self.b, padding=1))
        return -F.conv_transpose2d(z, self.w, padding=1) * (1 + t)


def _grad_setup(boundary="periodic", scale=2.0):
    g = torch.Generator().manual_seed(7)
    C = 2
    func = Parabolic(C, g)
    L = ConvFFT(torch.nn.Parameter(_kernel(g, C, 3, boundary) * scale), boundary=boundary)
    y0 = torch.randn(2, C, 6, 5, generator=g, dtype=F64).requires_grad_()
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    weights = torch.randn(3, 2, C, 6, 5, generator=g, dtype=F64)
    inputs = [y0, *func.parameters(), L.weight]
    return func, L, y0, t, weights, inputs


def _grads(method, gradient, h, boundary="periodic", scale=2.0):
    func, L, y0, t, weights, inputs = _grad_setup(boundary, scale)
    y = odenet.odeint(func, y0, t, method=method, step_size=h, gradient=gradient, implicit=L)
    return torch.autograd.grad((y * weights).sum(), inputs)


def _rel(a, b):
    num = math.sqrt(sum(float((x - y).square().sum()) for x, y in zip(a, b)))
    return num / math.sqrt(sum(float(y.square().sum()) for y in b))


@pytest.mark.parametrize("method", IMEX)
@pytest.mark.parametrize(
    "gradient", ["anode", "revolve", odenet.Revolve(checkpoints=2)], ids=str
)
def test_dto_strategies_match_backprop(method, gradient):
    h = 0.125
    ref = _grads(method, "backprop", h)
    got = _grads(method, gradient, h)
    assert all(g.abs().sum() > 0 for g in ref)  # every input, the ConvFFT weight included
    assert _rel(got, ref) < 1e-10


def test_dto_strategies_match_backprop_reflect():
    ref = _grads("ars222", "backprop", 0.125, "reflect")
    assert _rel(_grads("ars222", "anode", 0.125, "reflect"), ref) < 1e-10


def test_backprop_matches_finite_differences():
    """The discrete gradient itself (through the custom solve) against central differences."""
    func, L, y0, t, weights, inputs = _grad_setup()

    def loss():
        y = odenet.odeint(func, y0, t, method="ars443", step_size=0.25, implicit=L)
        return (y * weights).sum()

    grads = torch.autograd.grad(loss(), inputs)
    eps = 1e-6
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for x, gx in zip(inputs, grads):
            d = torch.randn(x.shape, generator=g, dtype=F64)
            x.add_(d, alpha=eps)
            up = loss()
            x.sub_(d, alpha=2 * eps)
            down = loss()
            x.add_(d, alpha=eps)
            fd = (up - down) / (2 * eps)
            assert float(fd) == pytest.approx(float((gx * d).sum()), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("method", IMEX)
def test_adjoint_converges_to_the_gradient(method):
    """OTD (the adjoint solved with the same IMEX pair) is not the discrete gradient but
    converges to the exact one at the method's order. With ||L|| ~ 10 (h ||L|| ~ 1): for a
    much stiffer L both the forward error under time-dependent forcing and the OTD gradient
    error show the usual stiff order reduction of ARS schemes (stage order 1), e.g. ~2 for
    ars443 at ||L|| ~ 150 and h = 1/8."""
    ref = _grads("ars443", "backprop", 1 / 128, scale=0.5)
    order = odenet.METHODS[method].order
    h = 1 / 8
    e1 = _rel(_grads(method, "adjoint", h, scale=0.5), ref)
    e2 = _rel(_grads(method, "adjoint", h / 2, scale=0.5), ref)
    assert math.log2(e1 / e2) > order - 0.45, (e1, e2)
    dto = _grads(method, "backprop", h, scale=0.5)
    assert _rel(_grads(method, "adjoint", h, scale=0.5), dto) > 1e-4


def test_imex_on_cuda_matches_cpu(cuda):
    func, L, y0, t, weights, inputs = _grad_setup()
    y_cpu = odenet.odeint(func, y0, t, method="ars443", step_size=0.25, implicit=L)
    func.to(cuda)
    L.to(cuda)
    y_gpu = odenet.odeint(func, y0.detach().to(cuda), t.to(cuda), method="ars443",
                          step_size=0.25, implicit=L)
    assert torch.allclose(y_gpu.cpu(), y_cpu, rtol=1e-10, atol=1e-12)


# -- the IMEXnet block --------------------------------------------------------------------------
class ConvOp(torch.nn.Module):
    """A dense 3x3 convolution with its transpose: an operator in the sense of odenet.nn."""

    def __init__(self, c: int, seed: int = 0, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.in_channels = c
        self.weight = torch.nn.Parameter(
            torch.randn(c, c, 3, 3, generator=g, dtype=torch.float64).to(dtype) / 3
        )

    def forward(self, y):
        return F.conv2d(y, self.weight, padding=1)

    def adjoint(self, z):
        return F.conv_transpose2d(z, self.weight, padding=1)


def test_imex_block_is_the_imexnet_layer():
    from odenet.nn import IMEXBlock

    block = IMEXBlock(ConvOp(3), T=0.5, activation="tanh").double()  # imex_euler, one step
    assert block.implicit.weight.dtype == F64 and block.implicit.channels == 3
    y = torch.randn(2, 3, 10, 9, dtype=F64)
    f = block.rhs(torch.tensor(0.0, dtype=F64), y)
    assert torch.allclose(block(y), block.implicit.solve(y + 0.5 * f, 0.5), atol=1e-13)
    # the explicit part is the parabolic form -Kᵀ σ(K y): <f(y) - f(z), y - z> <= 0 for monotone σ
    z = torch.randn(2, 3, 10, 9, dtype=F64)
    with torch.no_grad():
        assert float(((f - block.rhs(torch.tensor(0.0), z)) * (y - z)).sum()) <= 1e-12
        # one layer couples every pixel of a channel (a global field of view)
        e = torch.zeros(1, 3, 10, 9, dtype=F64)
        e[0, 1, 4, 4] = 1e-3
        d = block(y[:1] + e) - block(y[:1])
        assert bool((d[0, 1].abs() > 1e-12).all())


@pytest.mark.parametrize("method", IMEX)
def test_imex_block_gradients_and_strategies(method):
    from odenet.nn import IMEXBlock

    y = torch.randn(2, 2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    grads = {}
    for gradient in ("backprop", "anode", "adjoint"):
        block = IMEXBlock(ConvOp(2, seed=1), T=1.0, steps=4, method=method, gradient=gradient,
                          activation="tanh").double()
        out = block(y)
        grads[gradient] = torch.autograd.grad(out.square().sum(), [y, *block.parameters()])
    assert all(g.abs().sum() > 0 for g in grads["backprop"])
    assert len(grads["backprop"]) == 4  # y, the explicit weight and bias, the implicit kernel
    assert _rel(grads["anode"], grads["backprop"]) < 1e-10
    # OTD: close to the discrete gradient (O(h^p): measured 0.13-0.19, 0.010-0.016 and
    # 0.005-0.007 over seeds for orders 1, 2, 3 at h = 1/4), not equal to it
    otd = _rel(grads["adjoint"], grads["backprop"])
    assert 1e-4 < otd < {1: 0.4, 2: 0.05, 3: 0.02}[odenet.METHODS[method].order]
    assert "method=" in repr(IMEXBlock(ConvOp(2), method=method))


def test_imex_block_trains_and_stays_stable():
    from odenet.nn import IMEXBlock

    torch.manual_seed(0)
    block = IMEXBlock(ConvOp(2, dtype=torch.float32), T=1.0, steps=2, method="ars222",
                      boundary="reflect")
    assert block.implicit.boundary == "reflect" and block.implicit.weight.dtype == torch.float32
    y = torch.randn(4, 2, 8, 8)
    target = torch.nn.functional.avg_pool2d(y, 3, stride=1, padding=1)  # a smoothing map
    opt = torch.optim.Adam(block.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = (block(y) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    big = IMEXBlock(ConvOp(2, dtype=torch.float32), T=1e3, steps=1)  # h = 1000: still bounded
    with torch.no_grad():
        out = big(y)
    assert bool(torch.isfinite(out).all())


def test_imex_block_errors():
    from odenet.nn import IMEXBlock

    op = ConvOp(2)
    with pytest.raises(ArgumentError, match="method: IMEXBlock needs an IMEX scheme"):
        IMEXBlock(op, method="rk4")
    with pytest.raises(ArgumentError, match="method: unknown method 'ars999'"):
        IMEXBlock(op, method="ars999")
    with pytest.raises(ArgumentError, match="T: expected a finite positive"):
        IMEXBlock(op, T=0.0)
    with pytest.raises(ArgumentError, match="steps: expected an int >= 1"):
        IMEXBlock(op, steps=0)
    with pytest.raises(ArgumentError, match="kernel_size: expected an odd"):
        IMEXBlock(op, kernel_size=4)
    with pytest.raises(ArgumentTypeError, match="rhs: expected"):
        IMEXBlock(3)
    with pytest.raises(ArgumentError, match="channels: cannot infer"):
        IMEXBlock(lambda t, y: -y)
    with pytest.raises(ArgumentTypeError, match="implicit: expected a linear operator"):
        IMEXBlock(op, implicit=torch.nn.Identity())
    with pytest.raises(ArgumentError, match="implicit: has 2 channels, but channels=3"):
        IMEXBlock(op, 3, implicit=ConvFFT(torch.ones(2, 1, 3, 3)))
    with pytest.raises(ArgumentError, match="activation: applies only when rhs is an operator"):
        IMEXBlock(lambda t, y: -y, channels=2, activation="tanh")
    block = IMEXBlock(lambda t, y: -y, channels=2)
    with pytest.raises(ArgumentError, match="y: expected a tensor of shape \\(..., 2, H, W\\)"):
        block(torch.randn(1, 3, 8, 8))


def test_imex_block_with_odenet_operators():
    from odenet.nn import IMEXBlock, LeanConv2d, ParabolicRHS

    torch.manual_seed(0)
    block = IMEXBlock(LeanConv2d(3, 3), activation="tanh", norm="instance", bias=False,
                      method="ars443", steps=2, boundary="reflect").double()
    assert isinstance(block.rhs, ParabolicRHS) and block.rhs.bias is None
    assert isinstance(block, odenet.nn.ODEBlock) and block.step_size == 0.5
    assert isinstance(block.rhs.norm, torch.nn.InstanceNorm2d)
    y = torch.randn(2, 3, 9, 8, dtype=F64, requires_grad=True)
    out = block(y)
    params = [y, *block.parameters()]
    g_anode = torch.autograd.grad(out.square().sum(), params)
    block.gradient = odenet.gradients.resolve_gradient("backprop")
    g_bp = torch.autograd.grad(block(y).square().sum(), params)
    assert _rel(g_anode, g_bp) < 1e-10
    rhs = ParabolicRHS(LeanConv2d(3, 3)).double()  # an RHS given as is
    assert IMEXBlock(rhs).rhs is rhs
