"""The continuous adjoint (optimize-then-discretize) of Chen et al. (2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet.errors import GradientError, NonFiniteStateError
from odenet.gradients._common import (
    Call,
    CallStrategy,
    as_state,
    comps,
    grad_guard,
    refuse_double_backward,
    scatter,
    stacked_comps,
    sweep,
    vjp,
    zeros_if_none,
)
from odenet.solvers._problem import Problem
from odenet.solvers._stepper import make_step
from odenet.solvers._tableau import IMEXTableau

__all__ = ["Adjoint"]


class Adjoint(CallStrategy):
    r"""The continuous adjoint of Chen et al. (2018): optimize-then-discretize gradients.

    The forward pass runs without graph and keeps only the outputs. The backward
    pass solves, from each output time to the previous one, the augmented system

    .. math::

        y' = f(t, y), \qquad a' = -\Big(\frac{\partial f}{\partial y}\Big)^{\!\top} a, \qquad
        a_\theta' = -\Big(\frac{\partial f}{\partial \theta}\Big)^{\!\top} a

    backward in time with the same Runge–Kutta method and the same step grid
    (traversed in reverse), the vector–Jacobian products coming from
    :func:`torch.autograd.grad`. As in ``torchdiffeq.odeint_adjoint`` the state is
    reset to the forward value at every output time and the gradient arriving
    there is added to :math:`a`; with the same scheme (torchdiffeq's ``"rk4"`` is
    ``"rk4_38"`` here) and a grid that torchdiffeq shares (output intervals that are
    multiples of the step) the two agree to round-off. Memory is independent of
    the number of steps.

    This is *not* the gradient of the discrete network: it differs from
    :class:`Backprop` by :math:`O(h^p)` for a method of order :math:`p`, and the
    reverse-time reconstruction of :math:`y` can fail (ANODE, Gholami et al. 2019)
    — the ``analysis`` diagnostics measure both.

    IMEX methods (``y' = f(t, y) - L y``): the adjoint
    :math:`a' = -(\partial f/\partial y)^\top a + L^\top a` is dissipative backward in
    time and is integrated with the same IMEX pair, its implicit stages solving
    :math:`(I + \gamma L^\top)` with :math:`\gamma \ge 0` (``L.solve`` itself when
    :math:`L^\top = L`, as for every :math:`L = K^\top K` of :mod:`odenet.linear`; the
    transposed solve otherwise); the gradient with respect to the parameters of
    :math:`L` is accumulated with the implicit weights. The state, however, cannot be
    reconstructed backward in time: reverse-time diffusion is ill-posed and would need
    :math:`(I - \gamma L)^{-1}`.
    The state is therefore re-integrated *forward* over each output interval from
    the stored output at its start (keeping that interval's grid states: memory
    O(steps per output interval), without graph), and its values at the stage times
    of the reverse step are forward IMEX steps of the matching length from the grid
    state before them. Cost: about one extra forward solve.

    Dropout masks are not replayed (the backward pass evaluates ``func`` at other
    states and times), module buffers are left as the forward pass left them, the
    caller's random stream is untouched, closure tensors are refused, nothing is
    stored under :func:`torch.no_grad`, and double backward is refused with a
    :class:`~odenet.errors.GradientError`.

    Examples
    --------
    >>> import torch, odenet
    >>> w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    >>> t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y = odenet.odeint(lambda t, y: w * y, torch.ones(1, dtype=torch.float64), t,
    ...                   method="rk4_38", step_size=0.1, gradient="adjoint", params=[w])
    >>> y[-1].sum().backward()
    >>> abs(w.grad.item() - torch.e ** -1) < 1e-5  # d/dw exp(w) at w = -1
    True
    """

    name = "adjoint"

    def apply(self, call: Call) -> tuple[Tensor, ...]:
        p = call.problem
        return _AdjointFunction.apply(call, p.t, *comps(call.y0), *p.params)


class _AdjointFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: Call, t: Tensor, *inputs: Tensor):
        stacked = stacked_comps(call.problem, sweep(call))
        if call.drew_random_numbers():
            raise GradientError(
                "gradient='adjoint': func draws random numbers (e.g. dropout in training "
                "mode); the continuous adjoint re-evaluates func at other states and times, so "
                "its gradient would not be that of the forward pass. Put the random modules in "
                "eval mode (module.eval()), or use gradient='anode' or 'revolve', which replay "
                "the random draws exactly"
            )
        ctx.call = call
        ctx.save_for_backward(*inputs[call.m :], *stacked)
        return stacked

    @staticmethod
    def backward(ctx, *grads: Tensor):
        refuse_double_backward("adjoint")
        call: Call = ctx.call
        p = call.problem
        m = call.m
        saved = ctx.saved_tensors
        params, stacked = saved[: len(saved) - m], saved[len(saved) - m :]
        need = ctx.needs_input_grad[2:]
        need_t = ctx.needs_input_grad[1]
        pidx = [i for i in range(len(params)) if need[m + i]]
        ps = [params[i] for i in pidx]
        a = [grads[c][-1] for c in range(m)]
        ath = [torch.zeros_like(q) for q in ps]
        gt = None
        with grad_guard(call.device, call.buffers), torch.no_grad():
            if isinstance(p.tableau, IMEXTableau):
                a, ath = _imex_adjoint(call, ps, stacked[0], grads[0], a[0], ath)
                a = [a]
            else:
                a, ath, gt = _explicit_adjoint(call, ps, stacked, grads, a, ath, need_t)
        gy = [a[c] if need[c] else None for c in range(m)]
        return (None, gt, *gy, *scatter(len(params), pidx, ath))


def _vjp(call: Call, t: Tensor, y: Sequence[Tensor], cot, ps, want_t: bool = False):
    """``f(t, y)`` and the products ``cotᵀ ∂f/∂y``, ``cotᵀ ∂f/∂θ`` (zeros where unused), and
    ``cotᵀ ∂f/∂t`` when ``want_t``."""
    p = call.problem
    with torch.enable_grad():
        yd = tuple(c.detach().requires_grad_() for c in y)
        td = t.detach().requires_grad_(want_t)
        fy = comps(p.func(td, as_state(yd, p.tuple_state)))
        call.check_closure(fy, (*yd, td), f"in the reverse solve (t = {float(t):.6g})")
        g = vjp(fy, cot, (*yd, *ps, *([td] if want_t else [])))
    gy = [zeros_if_none(gi, yi) for gi, yi in zip(g, yd)]
    gp = [zeros_if_none(gi, q) for gi, q in zip(g[len(yd) : len(yd) + len(ps)], ps)]
    if want_t:
        gp.append(zeros_if_none(g[-1], td))
    return [o.detach() for o in fy], gy, gp


def _explicit_adjoint(call: Call, ps, stacked, grads, a, ath, need_t: bool):
    """torchdiffeq's augmented reverse solve with our scheme and grid, interval by interval.

    With ``need_t`` the augmented state carries torchdiffeq's time adjoint: at each output
    time ``t_k`` the gradient is ``grad_k · f(t_k, y_k)``, and ``t_0`` gets the time
    adjoint integrated back to it.
    """
    p = call.problem
    m = len(stacked)
    cb = getattr(p.func, "callback_step_adjoint", None)

    def aug(t: Tensor, z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        fy, gy, gp = _vjp(call, t, z[:m], [-c for c in z[m : 2 * m]], ps, want_t=need_t)
        return (*fy, *gy, *gp)

    extra = [torch.zeros((), dtype=p.time_dtype, device=call.device)] if need_t else []
    gt = torch.zeros(p.num_outputs, dtype=p.t.dtype, device=call.device) if need_t else None
    cache: dict[float, Callable] = {}
    for k in range(p.num_outputs - 1, 0, -1):
        if need_t:
            tk = p.t[k].detach().to(p.time_dtype)
            fk = comps(p.func(tk, as_state(tuple(s[k] for s in stacked), p.tuple_state)))
            dl = sum((f * g).sum() for f, g in zip(fk, (grads[c][k] for c in range(m))))
            gt[k] = dl
            extra = [extra[0] - dl]
        z = (*(s[k] for s in stacked), *a, *ath, *extra)
        for n in range(p.out_index[k] - 1, p.out_index[k - 1] - 1, -1):
            if cb is not None:
                p.call_back(cb, n, z, sign=-1.0)
            h = -p.step_sizes[n]
            if h not in cache:
                cache[h] = make_step(p.tableau, h, tuple_state=True)
            z = cache[h](aug, p.stage_times_at(p.grid[n + 1], h), z)
        if p.check_finite:
            _check_finite(p, k, z)
        a = [z[m + c] + grads[c][k - 1] for c in range(m)]
        ath = list(z[2 * m : 2 * m + len(ps)])
        extra = list(z[2 * m + len(ps) :])
    if need_t:
        gt[0] = extra[0]
    return a, ath, gt


def _check_finite(p: Problem, k: int, z: Sequence[Tensor]) -> None:
    """Raise when the reverse solve over output interval ``k`` produced NaN or inf."""
    if all(bool(torch.isfinite(c).all()) for c in z):
        return
    t0, t1 = p.grid[p.out_index[k - 1]], p.grid[p.out_index[k]]
    raise NonFiniteStateError(
        f"gradient='adjoint': the reverse-time solve from t = {t1:.6g} back to t = {t0:.6g} "
        "became non-finite (nan or inf): the reconstructed state or the adjoint blew up, as the "
        "continuous adjoint does when the backward dynamics are unstable. Use a "
        "discretize-then-optimize strategy (gradient='anode', 'revolve' or 'backprop'), a "
        "smaller step_size, or options={'check_finite': False} to get the non-finite gradient",
        step=p.out_index[k - 1],
        time=t0,
    )


def _linear_vjp(op: Callable, z: Tensor) -> Tensor:
    """``Aᵀ z`` for a linear map ``op``, by one vector–Jacobian product at zero."""
    with torch.enable_grad():
        x = torch.zeros_like(z).requires_grad_()
        out = op(x)
        g = (
            torch.autograd.grad(out, x, z, allow_unused=True, retain_graph=True)[0]
            if out.requires_grad
            else None
        )
    return zeros_if_none(g, z)


def _transposed(L, like: Tensor) -> tuple[Callable, Callable]:
    """``(z ↦ Lᵀ z, (r, γ) ↦ (I + γLᵀ)⁻¹ r)`` for the operator ``L``.

    ``Lᵀ`` is ``L.adjoint`` when the operator has one (the contract of
    :class:`odenet.linear.ImplicitOperator`), otherwise a vector–Jacobian product of
    ``L``. A random probe decides whether ``Lᵀ = L`` (every ``L = KᵀK`` of
    :mod:`odenet.linear`): then ``L`` and ``L.solve`` serve directly; otherwise the
    transposed solve is the vector–Jacobian product of ``L.solve`` (linear in ``r``).
    """
    adj = getattr(L, "adjoint", None)

    def lt(z: Tensor) -> Tensor:
        return adj(z) if callable(adj) else _linear_vjp(L, z)

    gen = torch.Generator(device=like.device).manual_seed(0)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype, device=like.device)
    lv, ltv = L(v), lt(v)
    tol = torch.finfo(like.dtype).eps ** 0.5
    if float(torch.linalg.vector_norm(ltv - lv)) <= tol * float(torch.linalg.vector_norm(lv)):
        return L, L.solve

    def solve_t(r: Tensor, gamma: float) -> Tensor:
        return _linear_vjp(lambda x: L.solve(x, gamma), r)

    return lt, solve_t


def _imex_adjoint(call: Call, ps, ys, gys, a: Tensor, ath: list[Tensor]):
    """Reverse IMEX solve of the adjoint on forward-recomputed states (see :class:`Adjoint`)."""
    p = call.problem
    cb = getattr(p.func, "callback_step_adjoint", None)
    tab: IMEXTableau = p.tableau
    E, I = tab.explicit.a, tab.implicit.a
    bE, bI = tab.explicit.b, tab.implicit.b
    c = tab.c
    s = tab.stages
    L = p.implicit
    lt, solve_t = _transposed(L, a)
    need_g = [bool(bE[i] != 0 or (E[i + 1 :, i] != 0).any()) for i in range(s)]
    need_l = [bool(bI[i] != 0 or (I[i + 1 :, i] != 0).any()) for i in range(s)]
    partial: dict[tuple[float, float], Callable] = {}

    def state_at(n: int, y_n: Tensor, y_next: Tensor, ci: float) -> Tensor:
        if ci == 1.0:
            return y_n
        if ci == 0.0:
            return y_next
        h = (1.0 - ci) * p.step_sizes[n]
        key = (p.step_sizes[n], ci)
        if key not in partial:
            partial[key] = make_step(tab, h, implicit=L)
        return partial[key](p.func, p.stage_times_at(p.grid[n], h), y_n)

    for k in range(p.num_outputs - 1, 0, -1):
        n0, n1 = p.out_index[k - 1], p.out_index[k]
        traj = [ys[k - 1]]
        for n in range(n0, n1):
            traj.append(p.step(n, traj[-1]))
        for n in range(n1 - 1, n0 - 1, -1):
            h = p.step_sizes[n]
            y_n, y_next = traj[n - n0], traj[n + 1 - n0]
            if cb is not None:
                p.call_back(cb, n, (y_next, a, *ath), sign=-1.0)
            taus = p.stage_times_at(p.grid[n + 1], -h)
            Ys: dict[float, Tensor] = {}
            G: list[Tensor | None] = [None] * s
            LA: list[Tensor | None] = [None] * s
            dth = [torch.zeros_like(q) for q in ath]
            for i in range(s):
                rhs = a
                for j in range(i):
                    if E[i, j] != 0:
                        rhs = rhs + (h * float(E[i, j])) * G[j]
                    if I[i, j] != 0:
                        rhs = rhs - (h * float(I[i, j])) * LA[j]
                gamma = h * float(I[i, i])
                if gamma != 0.0:
                    A = solve_t(rhs, gamma)
                    if need_l[i]:  # Lᵀ A = (rhs - A) / gamma: no extra operator application
                        LA[i] = (rhs - A) / gamma
                else:
                    A = rhs
                    if need_l[i]:
                        LA[i] = lt(A)
                ci = float(c[i])
                if need_g[i] or (bE[i] != 0 and ps) or (bI[i] != 0 and ps):
                    if ci not in Ys:
                        Ys[ci] = state_at(n, y_n, y_next, ci)
                    Y = Ys[ci]
                if need_g[i] or (bE[i] != 0 and ps):
                    _, gy, gp = _vjp(call, taus[i], (Y,), (A,), ps)
                    G[i] = gy[0]
                    for q, g in enumerate(gp):
                        dth[q].add_(g, alpha=h * float(bE[i]))
                if bI[i] != 0 and ps:
                    with torch.enable_grad():
                        ly = L(Y.detach())
                        if ly.requires_grad:
                            gl = torch.autograd.grad(
                                ly, ps, A, allow_unused=True, retain_graph=True
                            )
                            for q, g in enumerate(gl):
                                if g is not None:
                                    dth[q].sub_(g, alpha=h * float(bI[i]))
            new = a
            for i in range(s):
                if bE[i] != 0:
                    new = new + (h * float(bE[i])) * G[i]
                if bI[i] != 0:
                    new = new - (h * float(bI[i])) * LA[i]
            a = new
            ath = [q + d for q, d in zip(ath, dth)]
        if p.check_finite:
            _check_finite(p, k, (a, *ath))
        a = a + gys[k - 1]
    return a, ath
