"""torch.func transforms through the convolution operators, every engine, and through
ConvFFT and IMEX blocks: vmap, jacrev, jacfwd, hessian, per-sample gradients (vmap of grad),
vmap over parameters and forward mode, each against the per-sample loop or torch.autograd
(float64, to round-off).

The compiled kernels and the chunked and taps engines have no batching rule; under vmap the
operators compute with the vendor convolutions (deformable: the differentiable composite)."""

from __future__ import annotations

import pytest
import torch
from torch import func as F

import odenet
from odenet._functorch import under_vmap
from odenet.linear import ConvFFT
from odenet.nn import DeformConv2d, IMEXBlock, LeanConv2d, ParabolicRHS, SparseConv2d
from odenet.nn.functional import lean_conv2d, psc_mask, sparse_conv2d

D = torch.float64
CASES = [
    ("sparse", "fused"), ("sparse", "taps"), ("sparse", "masked"), ("sparse", "auto"),
    ("lean", "fused"), ("lean", "chunked"), ("lean", "conv"), ("lean", "auto"),
    ("deform", None),
]


def _make(kind: str, engine: str | None, c: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "sparse":
        # 8 channels, period 4: the taps engine applies (channel counts divisible by 4)
        return SparseConv2d(2 * c, 2 * c, period=4, bias=True, engine=engine).to(D)
    if kind == "lean":
        return LeanConv2d(c, c, bias=True, engine=engine).to(D)
    return DeformConv2d(c, c).to(D)  # (one engine)


def _input(op: torch.nn.Module, n: int = 3, size: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, op.in_channels, size, size, generator=g, dtype=D)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(("kind", "engine"), CASES)
def test_vmap_matches_the_loop(kind, engine):
    op = _make(kind, engine)
    x = _input(op)
    _close(F.vmap(op)(x), torch.stack([op(xi) for xi in x]))
    if kind != "deform":  # a deformable adjoint needs the state its offsets come from
        z = _input(op)
        _close(F.vmap(op.adjoint)(z), torch.stack([op.adjoint(zi) for zi in z]))


@pytest.mark.parametrize(("kind", "engine"), CASES)
def test_jacrev_and_jacfwd_match_autograd(kind, engine):
    op = _make(kind, engine)
    x = _input(op, n=1, size=4)[0]
    ref = torch.autograd.functional.jacobian(op, x)  # the engine's own backward, row by row
    _close(F.jacrev(op)(x), ref)
    _close(F.jacfwd(op)(x), ref)


@pytest.mark.parametrize(("kind", "engine"), CASES)
def test_hessian_matches_autograd(kind, engine):
    op = _make(kind, engine)
    x = _input(op, n=1, size=3)[0]

    def f(u):
        return op(u).pow(3).sum()

    _close(F.hessian(f)(x), torch.autograd.functional.hessian(f, x))


@pytest.mark.parametrize(("kind", "engine"), CASES)
def test_per_sample_gradients_match_the_loop(kind, engine):
    op = _make(kind, engine)
    x = _input(op)
    params = {k: v.detach() for k, v in op.named_parameters()}

    def loss(p, xi):
        return F.functional_call(op, p, (xi,)).tanh().square().sum()

    got = F.vmap(F.grad(loss), in_dims=(None, 0))(params, x)
    for i, xi in enumerate(x):
        op.zero_grad()
        F.functional_call(op, params, (xi,))  # (warm) then the module's own backward:
        op(xi).tanh().square().sum().backward()
        for name, p in op.named_parameters():
            _close(got[name][i], p.grad)


@pytest.mark.parametrize(("kind", "engine"), CASES)
def test_vmap_over_parameters_matches_the_loop(kind, engine):
    op = _make(kind, engine)
    x = _input(op, n=1)[0]
    g = torch.Generator().manual_seed(2)
    batch = {k: v.detach() + 0.1 * torch.randn(2, *v.shape, generator=g, dtype=D)
             for k, v in op.named_parameters()}
    got = F.vmap(lambda p: F.functional_call(op, p, (x,)))(batch)
    for i in range(2):
        _close(got[i], F.functional_call(op, {k: v[i] for k, v in batch.items()}, (x,)))


def test_functional_forms_under_vmap():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 1, 8, 5, 5, generator=g, dtype=D)
    mask = psc_mask(8, 8, period=4)
    w = torch.randn(int(mask.sum()), generator=g, dtype=D)
    for engine in ("taps", "auto"):
        got = F.vmap(lambda u, engine=engine: sparse_conv2d(u, w, mask, engine=engine))(x)
        _close(got, torch.stack([sparse_conv2d(u, w, mask, engine=engine) for u in x]))
    wl, sl = torch.randn(8, 8, generator=g, dtype=D), torch.randn(8, 5, generator=g, dtype=D)
    _close(F.vmap(lambda u: lean_conv2d(u, wl, sl))(x), torch.stack([lean_conv2d(u, wl, sl)
                                                                       for u in x]))


def test_per_sample_jacobians_of_a_lean_block():
    torch.manual_seed(0)
    rhs = odenet.nn.ResidualRHS(LeanConv2d(3, 3), activation="tanh").to(D)
    block = odenet.nn.ODEBlock(rhs, steps=2, gradient="anode").to(D)
    x = torch.randn(2, 1, 3, 4, 4, dtype=D)
    jac = F.vmap(F.jacrev(block))(x)
    for i in range(2):
        _close(jac[i], torch.autograd.functional.jacobian(block, x[i]))


def test_under_vmap_sees_every_level():
    assert not under_vmap()
    seen = []

    def f(u):
        seen.append(under_vmap())
        return u.sin().sum()

    F.vmap(F.grad(f))(torch.zeros(2, 3))
    F.grad(f)(torch.zeros(3))
    assert seen == [True, False]


def test_sparse_operator_on_the_meta_device():
    op = SparseConv2d(8, 16).to("meta")
    out = op(torch.empty(2, 8, 5, 5, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 16, 5, 5)
    assert op.adjoint(torch.empty(2, 16, 5, 5, device="meta")).shape == (2, 8, 5, 5)


def test_the_dense_kernel_is_the_support_filled_in_order():
    mask = psc_mask(8, 4, period=4)
    w = torch.arange(1, int(mask.sum()) + 1, dtype=D)
    op = SparseConv2d(8, 4, period=4).to(D)
    with torch.no_grad():
        op.weight.copy_(w)
    _close(op.dense_kernel(), torch.zeros(mask.shape, dtype=D).masked_scatter(mask, w))


# --------------------------------------------------------------------------- ConvFFT, IMEX


def _convfft(boundary: str) -> ConvFFT:
    g = torch.Generator().manual_seed(4)
    w = torch.randn(2, 1, 3, 3, generator=g, dtype=D)
    if boundary == "reflect":  # a doubly symmetric kernel (the DCT's eigenbasis)
        w = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4
    return ConvFFT(w, boundary=boundary)


class _Solve(torch.nn.Module):
    def __init__(self, op: ConvFFT) -> None:
        super().__init__()
        self.op = op

    def forward(self, r, gamma=0.7):
        return self.op.solve(r, gamma)


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_under_vmap(boundary):
    op = _convfft(boundary)
    r = torch.randn(3, 1, 2, 6, 6, dtype=D)
    gammas = torch.tensor([0.1, 1.0, 3.0], dtype=D)
    _close(F.vmap(lambda x: op.solve(x, 0.7))(r), torch.stack([op.solve(x, 0.7) for x in r]))
    _close(F.vmap(op)(r), torch.stack([op(x) for x in r]))
    _close(F.vmap(op.solve)(r, gammas), torch.stack([op.solve(x, g) for x, g in zip(r, gammas)]))


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_jacobians_in_every_argument(boundary):
    op = _convfft(boundary)
    m = _Solve(op)
    r = torch.randn(1, 2, 5, 5, dtype=D)
    w, gamma = op.weight.detach(), torch.tensor(0.7, dtype=D)
    fns = {
        "r": (lambda x: op.solve(x, 0.7), r),
        "weight": (lambda v: F.functional_call(m, {"op.weight": v}, (r,)), w),
        "gamma": (lambda g: op.solve(r, g), gamma),
        "apply": (op, r),
    }
    for name, (fn, arg) in fns.items():
        ref = torch.autograd.functional.jacobian(fn, arg)
        _close(F.jacrev(fn)(arg), ref)
        _close(F.jacfwd(fn)(arg), ref)


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_forward_mode_in_the_weight(boundary):
    """A dual weight's tangent reaches the output (it was dropped: a silently zero derivative)."""
    import torch.autograd.forward_ad as fwAD

    op = _convfft(boundary)
    m = _Solve(op)
    r = torch.randn(1, 2, 5, 5, dtype=D)
    w = op.weight.detach()
    dw = torch.randn_like(w)
    ref = torch.autograd.functional.jvp(
        lambda v: F.functional_call(m, {"op.weight": v}, (r,)), (w,), (dw,))[1]
    assert ref.abs().max() > 1e-3
    with fwAD.dual_level():
        out = F.functional_call(m, {"op.weight": fwAD.make_dual(w, dw)}, (r,))
        _close(fwAD.unpack_dual(out).tangent, ref)


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_per_sample_gradients_and_hessian(boundary):
    op = _convfft(boundary)
    m = _Solve(op)
    r = torch.randn(3, 1, 2, 5, 5, dtype=D)
    w = op.weight.detach()

    def loss(p, x):
        return F.functional_call(m, p, (x,)).square().sum()

    got = F.vmap(F.grad(loss), in_dims=(None, 0))({"op.weight": w}, r)["op.weight"]
    jac = torch.autograd.functional.jacobian
    ref = torch.stack([jac(lambda v, x=x: loss({"op.weight": v}, x), w) for x in r])
    _close(got, ref)

    def cubic(x):
        return op.solve(x, 0.7).pow(3).sum()

    _close(F.hessian(cubic)(r[0]), torch.autograd.functional.hessian(cubic, r[0]))


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_convfft_vmap_over_weights(boundary):
    """An ensemble of operators (weights batched by vmap) matches the loop over them."""
    op = _convfft(boundary)
    m = _Solve(op)
    g = torch.Generator().manual_seed(5)
    ws = op.weight.detach() * (1 + 0.1 * torch.rand(3, 1, 1, 1, 1, generator=g, dtype=D))
    r = torch.randn(2, 2, 5, 5, generator=g, dtype=D)
    got = F.vmap(lambda v: F.functional_call(m, {"op.weight": v}, (r,)))(ws)
    _close(got, torch.stack([ConvFFT(v, boundary=boundary).solve(r, 0.7) for v in ws]))
    got = F.vmap(lambda v: F.functional_call(op, {"weight": v}, (r,)))(ws)
    _close(got, torch.stack([ConvFFT(v, boundary=boundary)(r) for v in ws]))


@pytest.mark.parametrize("kind", ["lean", "sparse", "imex"])
def test_ensembles_of_blocks(kind):
    """torch.func.stack_module_state + vmap over the stacked parameters and buffers (masks
    included): outputs and per-model gradients equal each model's own."""
    import copy

    def make():
        if kind == "lean":
            return odenet.nn.ODEBlock(ParabolicRHS(LeanConv2d(4, 4)), steps=2)
        if kind == "sparse":
            rhs = odenet.nn.ResidualRHS(SparseConv2d(4, 4, period=2), activation="tanh")
            return odenet.nn.ODEBlock(rhs, steps=2, gradient="revolve")
        return IMEXBlock(ParabolicRHS(LeanConv2d(4, 4)), channels=4, steps=2)

    torch.manual_seed(0)
    models = [make().to(D) for _ in range(3)]
    params, buffers = F.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(2, 4, 5, 5, dtype=D)

    def loss(p, b):
        return F.functional_call(base, (p, b), (x,)).square().sum()

    out = F.vmap(lambda p, b: F.functional_call(base, (p, b), (x,)))(params, buffers)
    grads = F.vmap(F.grad(loss))(params, buffers)
    for i, model in enumerate(models):
        _close(out[i], model(x))
        model(x).square().sum().backward()
        for name, p in model.named_parameters():
            _close(grads[name][i], p.grad)


def test_imex_block_under_the_transforms():
    torch.manual_seed(0)
    block = IMEXBlock(ParabolicRHS(LeanConv2d(4, 4)), channels=4, steps=2).to(D)
    x = torch.randn(2, 1, 4, 5, 5, dtype=D)
    _close(F.vmap(block)(x), torch.stack([block(xi) for xi in x]))
    ref = torch.autograd.functional.jacobian(block, x[0])
    _close(F.jacrev(block)(x[0]), ref)
    _close(F.jacfwd(block)(x[0]), ref)
    _close(F.vmap(F.jacrev(block))(x)[1], torch.autograd.functional.jacobian(block, x[1]))


@pytest.mark.parametrize("kind", ["sparse", "lean", "deform", "convfft"])
def test_vmap_over_a_middle_dimension(kind):
    """A batch dimension that is not the first (a strided per-sample view) and nested vmap."""
    op = _convfft("periodic") if kind == "convfft" else _make(kind, "auto")
    c = op.weight.shape[0] if kind == "convfft" else op.in_channels
    x = torch.randn(1, c, 3, 5, 5, dtype=D)
    _close(F.vmap(op, in_dims=2)(x), torch.stack([op(x[:, :, i]) for i in range(3)]))
    _close(F.vmap(op, in_dims=2, out_dims=1)(x), torch.stack([op(x[:, :, i]) for i in range(3)], 1))
    y = torch.randn(3, 2, 1, c, 5, 5, dtype=D)
    _close(F.vmap(F.vmap(op))(y), torch.stack([torch.stack([op(b) for b in a]) for a in y]))


@pytest.mark.parametrize("kind", ["sparse", "lean"])
def test_batched_inference_keeps_the_fused_kernel(kind, monkeypatch):
    """Under vmap without gradients the compiled kernel runs once on the folded batch, and
    agrees with the per-sample loop; with gradients the vendor convolutions take over."""
    from odenet.nn import _fused

    if not _fused.available():
        pytest.skip("fused kernels unavailable")
    calls = []
    apply = _fused._apply
    monkeypatch.setattr(_fused, "_apply", lambda *a, **k: calls.append(1) or apply(*a, **k))
    op = _make(kind, "fused")
    x = _input(op)
    with torch.no_grad():
        got = F.vmap(op)(x)
        assert len(calls) == 1
        _close(got, torch.stack([op(xi) for xi in x]))
        _close(F.vmap(op.adjoint)(x), torch.stack([op.adjoint(xi) for xi in x]))
    calls.clear()
    F.vmap(op)(x).sum().backward()  # parameters require grad: the vendor path
    assert not calls
