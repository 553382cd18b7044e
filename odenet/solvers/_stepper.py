"""One generic Runge–Kutta step (explicit and IMEX), specialised once per step size.

A step function has the signature ``step(f, ts, y) -> y_next`` where ``f(t, y)``
is the right-hand side, ``ts`` the tuple of stage times (0-d tensors) and ``y``
the state (a Tensor, or a tuple of Tensors for tuple states). Coefficients are
multiplied by ``h`` once, when the step function is built; zero coefficients
are skipped and stages whose result is never used are not evaluated.

Linear combinations start with one out-of-place operation (so no tensor
returned by ``f`` is ever written to) and accumulate in place into that fresh
tensor, which autograd supports because addition saves no tensors; the
increment is summed before it is added to the state (one rounding of the state).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "StepFn",
    "checked_method",
    "explicit_structure",
    "make_imex_stages",
    "make_step",
    "make_step_h",
    "traceable_method",
]

State = Tensor | tuple[Tensor, ...]
StepFn = Callable[[Callable, Sequence[Tensor], State], State]
_Terms = tuple[tuple[int, float], ...]


def _axpy(y: Tensor, k: Sequence, terms: _Terms) -> Tensor:
    """``y + sum(w * k[j] for j, w in terms)``, a fresh tensor unless ``terms`` is empty.

    Several terms are summed first and added to ``y`` once: the increment is small
    next to ``y``, so in float32 or lower precision one rounding of ``y`` per step
    instead of one per stage keeps long solves from drifting.
    """
    if not terms:
        return y
    if len(terms) == 1:
        j, w = terms[0]
        return torch.add(y, k[j], alpha=w)
    it = iter(terms)
    j, w = next(it)
    out = torch.mul(k[j].to(y.dtype), w)  # k in the state's dtype (autocast: f's is lower)
    for j, w in it:
        out.add_(k[j], alpha=w)
    return out.add_(y)


def _axpy_tuple(y: tuple, k: Sequence, terms: _Terms) -> tuple:
    if not terms:
        return y
    return tuple(
        _axpy(y[m], [None if kj is None else kj[m] for kj in k], terms) for m in range(len(y))
    )


def _axpy2(y: Tensor, k: Sequence, terms: _Terms, g: Sequence, gterms: _Terms) -> Tensor:
    """``y + Σ w k[j] + Σ v g[j]`` for the IMEX stages."""
    out = _axpy(y, k, terms)
    if not gterms:
        return out
    if out is y:
        return _axpy(y, g, gterms)
    for j, v in gterms:
        out.add_(g[j], alpha=v)
    return out


def _nonzero(row, h: float) -> _Terms:
    return tuple((j, h * float(w)) for j, w in enumerate(row) if w != 0)


def _explicit_step(tab: ButcherTableau, h: float, tuple_state: bool) -> StepFn:
    a, b = tab.a, tab.b
    s = tab.stages
    rows = tuple(_nonzero(a[i, :i], h) for i in range(s))
    weights = _nonzero(b, h)
    needed = tuple(bool(b[j] != 0 or (a[j + 1 :, j] != 0).any()) for j in range(s))
    axpy = _axpy_tuple if tuple_state else _axpy

    if s == 1:  # forward Euler: one evaluation, one axpy

        def step(f, ts, y):
            return axpy(y, (f(ts[0], y),), weights)

        return step

    def step(f, ts, y):
        k: list = []
        for i in range(s):
            k.append(f(ts[i], axpy(y, k, rows[i])) if needed[i] else None)
        return axpy(y, k, weights)

    return step


def _imex_stages(tab: IMEXTableau, h: float) -> Callable:
    """The IMEX step of ``tab`` for step size ``h`` that also returns its stage values.

    ``run(f, ts, y, implicit, keep=False) -> (y_next, stages)``: ``f(ts[i], Y_i)`` is the
    explicit part at stage ``i`` (``ts[i]`` is passed through untouched), ``implicit`` has
    ``implicit(Y)`` and ``implicit.solve(r, gamma)``; with ``keep`` the stage values ``Y_i``
    come back as a tuple (``()`` otherwise). The IMEX adjoint runs this same step on the
    adjoint equation, with ``Lᵀ`` as the operator and the stage index as ``ts[i]``.
    """
    E, I = tab.explicit, tab.implicit
    s = tab.stages
    sa = tab.is_stiffly_accurate
    rows_e = tuple(_nonzero(E.a[i, :i], h) for i in range(s))
    rows_i = tuple(_nonzero(I.a[i, :i], -h) for i in range(s))
    gammas = tuple(h * float(I.a[i, i]) for i in range(s))
    w_e = _nonzero(E.b, h)
    w_i = _nonzero(I.b, -h)
    need_f = tuple(
        bool((E.a[j + 1 :, j] != 0).any() or (not sa and E.b[j] != 0)) for j in range(s)
    )
    need_g = tuple(
        bool((I.a[j + 1 :, j] != 0).any() or (not sa and I.b[j] != 0)) for j in range(s)
    )

    def run(f, ts, y, implicit, keep: bool = False):
        F: list = [None] * s
        G: list = [None] * s
        kept: list = []
        Y = y
        for i in range(s):
            rhs = _axpy2(y, F, rows_e[i], G, rows_i[i])
            gamma = gammas[i]
            if gamma != 0.0:
                Y = implicit.solve(rhs, gamma)
                if need_g[i]:  # L Y = (rhs - Y) / gamma: no extra operator application
                    G[i] = torch.sub(rhs, Y).mul_(1.0 / gamma)
            else:
                Y = rhs
                if need_g[i]:
                    G[i] = implicit(Y)
            if keep:
                kept.append(Y)
            if need_f[i]:
                F[i] = f(ts[i], Y)
        return (Y if sa else _axpy2(y, F, w_e, G, w_i)), tuple(kept)

    return run


def _imex_step(tab: IMEXTableau, h: float, implicit) -> StepFn:
    run = _imex_stages(tab, h)

    def step(f, ts, y):
        return run(f, ts, y, implicit)[0]

    return step


def make_step(
    tableau: ButcherTableau | IMEXTableau, h: float, *, tuple_state: bool = False, implicit=None
) -> StepFn:
    """Build the step function of ``tableau`` for step size ``h`` (signed).

    Parameters
    ----------
    tableau : ButcherTableau or IMEXTableau
        The scheme; an explicit Butcher tableau or an IMEX pair.
    h : float
        Signed step size (negative when integrating backward in time).
    tuple_state : bool
        Whether the state is a tuple of tensors.
    implicit : linear operator, optional
        ``L`` with ``L(y)`` and ``L.solve(r, gamma)``; required for IMEX pairs.

    Returns
    -------
    callable
        ``step(f, ts, y) -> y_next``.

    Examples
    --------
    >>> import torch
    >>> from odenet import METHODS
    >>> from odenet.solvers import make_step
    >>> step = make_step(METHODS["heun"], 0.5)
    >>> ts = (torch.tensor(0.0), torch.tensor(0.5))
    >>> step(lambda t, y: -y, ts, torch.ones(1))  # 1 - h + h^2/2
    tensor([0.6250])
    """
    if isinstance(tableau, IMEXTableau):
        if tuple_state:
            raise ArgumentError("tuple_state: IMEX steps need a single tensor state, not a tuple")
        return _imex_step(tableau, float(h), implicit)
    return _explicit_step(tableau, float(h), tuple_state)


def make_imex_stages(tableau: IMEXTableau, h: float) -> Callable:
    """The generic IMEX step of :func:`make_step`, with its stage values on request.

    The step ``run(f, ts, y, implicit, keep=False) -> (y_next, stages)`` is the one
    :func:`make_step` builds (``make_step(tableau, h, implicit=L)(f, ts, y)`` is
    ``run(f, ts, y, L)[0]``), with the operator given per call and, when ``keep``, the
    stage values ``Y_i`` (after the implicit solve) returned as a tuple. ``ts[i]`` is
    handed to ``f`` as it is, so it may be any label of stage ``i``. The continuous
    adjoint of an IMEX solve runs this step on the adjoint equation (operator ``Lᵀ``).

    Parameters
    ----------
    tableau : IMEXTableau
        The IMEX pair.
    h : float
        Signed step size.

    Returns
    -------
    callable
        ``run(f, ts, y, implicit, keep=False) -> (y_next, stages)``.

    Examples
    --------
    >>> import torch
    >>> from odenet import METHODS
    >>> from odenet.solvers._stepper import make_imex_stages
    >>> class Scale:  # L y = 2 y
    ...     def __call__(self, y): return 2 * y
    ...     def solve(self, r, gamma): return r / (1 + 2 * gamma)
    >>> run = make_imex_stages(METHODS["imex_euler"], 0.5)
    >>> y, stages = run(lambda t, y: torch.zeros_like(y), (0.0, 0.5), torch.ones(1), Scale(),
    ...                 keep=True)
    >>> y, len(stages)  # (1 + 0.5 * 2)^-1
    (tensor([0.5000]), 2)
    """
    if not isinstance(tableau, IMEXTableau):
        raise ArgumentTypeError(
            f"tableau: expected an IMEXTableau, got {type(tableau).__name__}"
        )
    return _imex_stages(tableau, float(h))


def _lin(k: Sequence, terms: _Terms) -> Tensor:
    """``sum(w * k[j] for j, w in terms)`` (``terms`` not empty), a fresh tensor."""
    it = iter(terms)
    j, w = next(it)
    out = torch.mul(k[j], w)
    for j, w in it:
        out = out + k[j] * w
    return out


def _lin_like(y: Tensor, k: Sequence, terms: _Terms) -> Tensor:
    return _lin([None if kj is None else kj.to(y.dtype) for kj in k], terms)


def _add_h(y: State, k: Sequence, terms: _Terms, h: Tensor, tuple_state: bool) -> State:
    """``y + h * sum(w * k[j])`` with the step size ``h`` a tensor (tuple-wise)."""
    if not terms:
        return y
    if tuple_state:
        return tuple(
            ym + h * _lin_like(ym, [None if kj is None else kj[m] for kj in k], terms)
            for m, ym in enumerate(y)
        )
    return y + h * _lin_like(y, k, terms)


@torch._dynamo.assume_constant_result
def explicit_structure(tableau: ButcherTableau) -> tuple:
    """``(c, rows, weights, needed)`` of an explicit tableau as Python numbers.

    ``rows[i]`` and ``weights`` are the non-zero ``(j, a_ij)`` / ``(j, b_j)``, ``needed[j]``
    whether stage ``j`` is used. Computed on the host and, under :func:`torch.compile`,
    taken as a constant (the tableau's arrays are never traced).

    Examples
    --------
    >>> from odenet import METHODS
    >>> from odenet.solvers._stepper import explicit_structure
    >>> explicit_structure(METHODS["midpoint"])
    ((0.0, 0.5), ((), ((0, 0.5),)), ((1, 1.0),), (True, True))
    """
    a, b = tableau.a, tableau.b
    s = tableau.stages
    rows = tuple(_nonzero(a[i, :i], 1.0) for i in range(s))
    weights = _nonzero(b, 1.0)
    needed = tuple(bool(b[j] != 0 or (a[j + 1 :, j] != 0).any()) for j in range(s))
    return tuple(float(c) for c in tableau.c), rows, weights, needed


@torch._dynamo.assume_constant_result
def checked_method(method: object) -> bool:
    """Validate ``method`` as :func:`~odenet.solvers.resolve_method` does; ``True``.

    Under :func:`torch.compile` the check runs on the host, once per compilation, and its
    result is a constant (a tableau's arrays are never traced).
    """
    from odenet.solvers._methods import resolve_method

    resolve_method(method)
    return True


def traceable_method(method: object) -> ButcherTableau | IMEXTableau:
    """:func:`~odenet.solvers.resolve_method`, traceable by :func:`torch.compile`.

    Examples
    --------
    >>> from odenet.solvers._stepper import traceable_method
    >>> traceable_method("rk4").order
    4
    """
    from odenet.solvers._methods import METHODS, REVERSIBLE_METHODS, resolve_method

    if not torch.compiler.is_compiling():
        return resolve_method(method)
    checked_method(method)
    if isinstance(method, str):
        return METHODS[method] if method in METHODS else REVERSIBLE_METHODS[method]
    return method


def make_step_h(tableau: ButcherTableau, *, tuple_state: bool = False) -> Callable:
    """The explicit step of :func:`make_step` with the step size as a tensor argument.

    ``step(f, ts, y, h) -> y_next`` with ``h`` a 0-d tensor: the tableau's coefficients
    stay Python numbers (they are the method), the step size is data, so a traced or
    compiled step (:func:`torch.compile`) does not specialise on it and a new step size
    reuses the same graph. The increment is ``h * (sum b_i k_i)`` (``make_step`` folds
    ``h`` into the coefficients), equal to round-off.

    Examples
    --------
    >>> import torch
    >>> from odenet import METHODS
    >>> from odenet.solvers._stepper import make_step_h
    >>> step = make_step_h(METHODS["heun"])
    >>> ts = (torch.tensor(0.0), torch.tensor(0.5))
    >>> step(lambda t, y: -y, ts, torch.ones(1), torch.tensor(0.5))  # 1 - h + h^2/2
    tensor([0.6250])
    """
    if not isinstance(tableau, ButcherTableau):
        raise ArgumentTypeError(
            f"tableau: expected an explicit ButcherTableau, got {type(tableau).__name__}"
        )
    _, rows, weights, needed = explicit_structure(tableau)
    s = len(rows)

    def step(f, ts, y, h):
        k: list = []
        for i in range(s):
            k.append(f(ts[i], _add_h(y, k, rows[i], h, tuple_state)) if needed[i] else None)
        return _add_h(y, k, weights, h, tuple_state)

    return step
