"""The continuous adjoint (optimize-then-discretize) of Chen et al. (2018)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet.errors import GradientError, NonFiniteStateError
from odenet.gradients._common import Backward, Call, CallStrategy, segment_vjp, vjp, zeros_if_none
from odenet.solvers._problem import Problem, _all_finite, as_state, comps
from odenet.solvers._stepper import make_imex_stages
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
    discrete = False


class _AdjointFunction(torch.autograd.Function):
    @staticmethod
    def forward(call: Call, t: Tensor, *inputs: Tensor):
        stacked = comps(call.problem.stack(call.sweep(y0=inputs[: call.m])))
        if call.drew_random_numbers():
            raise GradientError(
                "gradient='adjoint': func draws random numbers (e.g. dropout in training "
                "mode); the continuous adjoint re-evaluates func at other states and times, so "
                "its gradient would not be that of the forward pass. Put the random modules in "
                "eval mode (module.eval()), or use gradient='anode' or 'revolve', which replay "
                "the random draws exactly"
            )
        return stacked

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, _, *ins = inputs
        Backward.save(ctx, call, ins, output, y0=False)

    @staticmethod
    def backward(ctx, *grads: Tensor):
        b = Backward(ctx)
        a = [g[-1] for g in grads]
        ath = [torch.zeros_like(q) for q in b.params.tensors]
        gt = None
        with b.guard(), torch.no_grad():
            if isinstance(b.problem.tableau, IMEXTableau):
                a0, ath = _imex_adjoint(b, grads[0], a[0], ath)
                a = [a0]
            else:
                a, ath, gt = _explicit_adjoint(b, grads, a, ath)
        b.params.add(ath)
        return b.result(a, gt)


Adjoint.function = _AdjointFunction


def _func_vjp(call: Call, t: Tensor, y: Sequence[Tensor], cot, ps, want_t: bool = False):
    """``f(t, y)`` and the products ``cotᵀ ∂f/∂y``, ``cotᵀ ∂f/∂θ`` (zeros where unused), and
    ``cotᵀ ∂f/∂t`` when ``want_t``."""
    td = t.detach().requires_grad_(want_t)
    r = segment_vjp(
        call,
        lambda state: call.problem.func(td, state),
        y,
        cot,
        ps,
        when=lambda: f"in the reverse solve (t = {float(t):.6g})",
        t_leaf=td if want_t else None,
    )
    gp = [zeros_if_none(gi, q) for gi, q in zip(r.params, ps)]
    if want_t:
        gp.append(zeros_if_none(r.t, td))
    return list(r.out), r.y, gp


def _explicit_adjoint(b: Backward, grads, a, ath):
    """torchdiffeq's augmented reverse solve with our scheme and grid, interval by interval.

    With ``need_t`` the augmented state carries torchdiffeq's time adjoint: at each output
    time ``t_k`` the gradient is ``grad_k · f(t_k, y_k)``, and ``t_0`` gets the time
    adjoint integrated back to it.
    """
    p, call, m, need_t = b.problem, b.call, b.m, b.need_t
    ps, stacked = b.params.tensors, b.stacked
    cb = getattr(p.func, "callback_step_adjoint", None)

    def aug(t: Tensor, z: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        fy, gy, gp = _func_vjp(call, t, z[:m], [-c for c in z[m : 2 * m]], ps, want_t=need_t)
        return (*fy, *gy, *gp)

    reverse = p.with_func(aug, tuple_state=True)  # the same scheme on the augmented state
    extra = [torch.zeros((), dtype=p.time_dtype, device=call.device)] if need_t else []
    gt = torch.zeros(p.num_outputs, dtype=p.t.dtype, device=call.device) if need_t else None
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
            z = reverse.step_from(p.grid[n + 1], -p.step_sizes[n], z)
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
    if _all_finite(z):
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
        g = vjp((op(x),), (z,), (x,))[0]
    return zeros_if_none(g, z)


class _Transposed:
    """``Lᵀ`` as an implicit operator: ``Lᵀ z`` (``L.adjoint`` when the operator has one, the
    contract of :class:`odenet.linear.ImplicitOperator`, otherwise a vector–Jacobian product
    of ``L``) and ``(I + γLᵀ)⁻¹ r``, the vector–Jacobian product of ``L.solve`` (linear in
    ``r``)."""

    def __init__(self, L):
        self.L = L

    def __call__(self, z: Tensor) -> Tensor:
        adj = getattr(self.L, "adjoint", None)
        return adj(z) if callable(adj) else _linear_vjp(self.L, z)

    def solve(self, r: Tensor, gamma: float) -> Tensor:
        return _linear_vjp(lambda x: self.L.solve(x, gamma), r)


def _transposed(L, like: Tensor):
    """``Lᵀ`` with ``Lᵀ(z)`` and ``Lᵀ.solve(r, γ)``: ``L`` itself when a random probe finds
    ``Lᵀ = L`` (every ``L = KᵀK`` of :mod:`odenet.linear`), else :class:`_Transposed`."""
    lt = _Transposed(L)
    gen = torch.Generator(device=like.device).manual_seed(0)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype, device=like.device)
    lv, ltv = L(v), lt(v)
    tol = torch.finfo(like.dtype).eps ** 0.5
    if float(torch.linalg.vector_norm(ltv - lv)) <= tol * float(torch.linalg.vector_norm(lv)):
        return L
    return lt


def _imex_adjoint(b: Backward, gys, a: Tensor, ath: list[Tensor]):
    """Reverse IMEX solve of the adjoint on forward-recomputed states (see :class:`Adjoint`).

    In the reversed time ``s = -t`` the adjoint solves ``a' = (∂f/∂y)ᵀ a - Lᵀ a``: one step
    of it is the forward IMEX step (:func:`~odenet.solvers._stepper.make_imex_stages`) with
    ``Lᵀ`` as the operator and ``A ↦ (∂f/∂y)ᵀ A`` at the forward state of each stage as the
    explicit part. The parameters' gradient is the quadrature of the same step over the
    stage values: explicit weights for ``(∂f/∂θ)ᵀ A_i``, implicit ones for
    ``(∂(L Y_i)/∂θ)ᵀ A_i``.
    """
    p, call, ps = b.problem, b.call, b.params.tensors
    ys = b.stacked[0]
    cb = getattr(p.func, "callback_step_adjoint", None)
    tab: IMEXTableau = p.tableau
    bE, bI, c = tab.explicit.b, tab.implicit.b, tab.c
    stages = range(tab.stages)
    L = p.implicit
    lt = _transposed(L, a)
    steps: dict[float, Callable] = {}

    def reverse_step(n: int, a: Tensor, y_n: Tensor, y_next: Tensor):
        """Step ``n`` backward: the new ``a`` and the increment of the parameters' gradient."""
        h = p.step_sizes[n]
        taus = p.stage_times_at(p.grid[n + 1], -h)
        states: dict[float, Tensor] = {}
        dth = [torch.zeros_like(q) for q in ps]

        def state(i: int) -> Tensor:
            """The forward state at stage ``i``'s time: a forward step from ``grid[n]``."""
            ci = float(c[i])
            if ci not in states:
                states[ci] = (
                    y_n if ci == 1.0 else y_next if ci == 0.0
                    else p.step_from(p.grid[n], (1.0 - ci) * h, y_n)
                )
            return states[ci]

        def explicit(i: int, A: Tensor) -> Tensor:
            _, gy, gp = _func_vjp(call, taus[i], (state(i),), (A,), ps)
            for q, g in enumerate(gp):
                dth[q].add_(g, alpha=h * float(bE[i]))
            return gy[0]

        if h not in steps:
            steps[h] = make_imex_stages(tab, h)
        a, kept = steps[h](explicit, stages, a, lt, keep=bool(ps))
        for i in stages:
            if bI[i] != 0 and ps:
                with torch.enable_grad():
                    gl = vjp((L(state(i).detach()),), (kept[i],), ps)
                for q, g in enumerate(gl):
                    if g is not None:
                        dth[q].sub_(g, alpha=h * float(bI[i]))
        return a, dth

    for k in range(p.num_outputs - 1, 0, -1):
        n0, n1 = p.out_index[k - 1], p.out_index[k]
        traj = [ys[k - 1]]
        for n in range(n0, n1):
            traj.append(p.step(n, traj[-1]))
        for n in range(n1 - 1, n0 - 1, -1):
            if cb is not None:
                p.call_back(cb, n, (traj[n + 1 - n0], a, *ath), sign=-1.0)
            a, dth = reverse_step(n, a, traj[n - n0], traj[n + 1 - n0])
            ath = [q + d for q, d in zip(ath, dth)]
        if p.check_finite:
            _check_finite(p, k, (a, *ath))
        a = a + gys[k - 1]
    return a, ath
