"""Butcher and IMEX tableaux: validated, frozen coefficient data."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import torch

from odenet.errors import TableauError

__all__ = ["ButcherTableau", "IMEXTableau"]

_TOL = 1e-12


def _as_matrix(value: object, name: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise TableauError(f"{name}: expected a square matrix, got shape {arr.shape}")
    return arr


def _as_vector(value: object, name: str, size: int) -> np.ndarray:
    arr = np.array(value, dtype=np.float64)
    if arr.shape != (size,):
        raise TableauError(f"{name}: expected a vector of length {size}, got shape {arr.shape}")
    return arr


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _order_conditions(
    bs: Sequence[np.ndarray], As: Sequence[np.ndarray], c: np.ndarray, order: int
):
    """Yield (description, value, expected) for the rooted-tree conditions up to ``order`` (≤ 4).

    With several ``b``/``A`` (IMEX pairs) every combination is checked, which gives the coupling
    conditions of additive Runge–Kutta methods.
    """
    for b in bs:
        yield "sum(b)", b.sum(), 1.0
        if order >= 2:
            yield "sum(b*c)", b @ c, 1 / 2
        if order >= 3:
            yield "sum(b*c^2)", b @ c**2, 1 / 3
            for A in As:
                yield "sum(b*A@c)", b @ A @ c, 1 / 6
        if order >= 4:
            yield "sum(b*c^3)", b @ c**3, 1 / 4
            for A in As:
                yield "sum(b*c*(A@c))", (b * c) @ (A @ c), 1 / 8
                yield "sum(b*A@c^2)", b @ A @ c**2, 1 / 12
            for A1, A2 in itertools.product(As, repeat=2):
                yield "sum(b*A@A@c)", b @ A1 @ A2 @ c, 1 / 24


def _same(x: np.ndarray | None, y: np.ndarray | None) -> bool:
    return (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y))


def _embedded(b_hat, embedded_order, b_mid, s: int, order: int, A: np.ndarray, c: np.ndarray):
    """Validate the embedded weights, their order and the mid-step weights of a tableau."""
    bh = bm = None
    if b_hat is None:
        if embedded_order is not None:
            raise TableauError("embedded_order: given without b_hat (the embedded weights)")
    else:
        bh = _as_vector(b_hat, "b_hat", s)
        if not np.isfinite(bh).all():
            raise TableauError("b_hat: coefficients must be finite")
        if (
            not isinstance(embedded_order, (int, np.integer))
            or isinstance(embedded_order, bool)
            or embedded_order < 1
        ):
            raise TableauError(
                f"embedded_order: expected a positive integer with b_hat, got {embedded_order!r}"
            )
        if embedded_order == order:
            raise TableauError(
                f"embedded_order: expected an order different from the solution's ({order}); "
                "the difference of the two solutions is the error estimate"
            )
        if abs(bh.sum() - 1.0) > _TOL:
            raise TableauError(f"b_hat: weights must sum to 1, got sum {bh.sum()!r}")
        for desc, value, expected in _order_conditions([bh], [A], c, min(int(embedded_order), 4)):
            if abs(value - expected) > 1e-10:
                raise TableauError(
                    f"embedded_order: the embedded weights do not have order {embedded_order}: "
                    f"condition {desc} = {value!r}, expected {expected!r}"
                )
    if b_mid is not None:
        bm = _as_vector(b_mid, "b_mid", s)
        if not np.isfinite(bm).all() or abs(bm.sum() - 0.5) > 1e-10:
            raise TableauError(
                f"b_mid: mid-step weights must be finite and sum to 1/2, got sum {bm.sum()!r}"
            )
    return bh, bm


class ButcherTableau:
    r"""Coefficients of a Runge–Kutta method, validated and frozen.

    The method advances :math:`y_{n+1} = y_n + h \sum_i b_i k_i` with stages
    :math:`k_i = f(t_n + c_i h,\; y_n + h \sum_j a_{ij} k_j)`.

    Validation at construction: ``a`` is square and lower triangular (explicit
    methods are strictly lower triangular; a non-zero diagonal makes a
    diagonally implicit tableau, used as the implicit half of an
    :class:`IMEXTableau`), :math:`\sum_i b_i = 1`, every row of ``a`` sums to
    its ``c``, and the classical order conditions hold up to ``min(order, 4)``.
    Coefficients are stored once as read-only float64 arrays; :meth:`to` gives
    tensors for a dtype/device, cached.

    An *embedded* pair (an adaptive method) also carries the weights ``b_hat`` of
    a second solution of lower order ``embedded_order`` built from the same stages;
    :math:`y_{n+1} - \hat y_{n+1} = h \sum_i (b_i - \hat b_i) k_i` estimates the
    local error that the step-size controller of :func:`odenet.odeint` keeps below
    its tolerances. ``b_hat`` is validated like ``b`` (:math:`\sum_i \hat b_i = 1`,
    order conditions up to ``min(embedded_order, 4)``) and stored as float64.
    ``b_mid`` are optional weights of the value at the middle of a step,
    :math:`y(t_n + h/2) \approx y_n + h \sum_i b^{mid}_i k_i` (torchdiffeq's
    ``c_mid``, used only for its dense-output interpolation; validated
    :math:`\sum_i b^{mid}_i = 1/2`).

    Parameters
    ----------
    a : array_like, shape (s, s)
        Runge–Kutta matrix.
    b : array_like, shape (s,)
        Weights.
    c : array_like, shape (s,)
        Nodes.
    order : int
        Declared order of accuracy (checked against the order conditions up to 4).
    name : str, optional
        Human-readable name used in messages and reports.
    b_hat : array_like, shape (s,), optional
        Weights of the embedded solution (error estimator) of an adaptive pair.
    embedded_order : int, optional
        Order of the embedded solution; required with ``b_hat`` and below ``order``
        for the pairs used by the controller (checked up to 4).
    b_mid : array_like, shape (s,), optional
        Weights of the mid-step value, for torchdiffeq's interpolation.

    Examples
    --------
    >>> import torch, odenet
    >>> ralston = odenet.ButcherTableau(a=[[0, 0], [2/3, 0]], b=[1/4, 3/4], c=[0, 2/3],
    ...                                 order=2, name="ralston")
    >>> ralston.stages, ralston.is_explicit
    (2, True)
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]),
    ...                   method=ralston, step_size=0.1)
    >>> round(y[-1].item(), 4)
    0.3685
    >>> heun_euler = odenet.ButcherTableau(a=[[0, 0], [1, 0]], b=[1/2, 1/2], c=[0, 1], order=2,
    ...                                    b_hat=[1, 0], embedded_order=1, name="heun_euler")
    >>> heun_euler.is_adaptive, heun_euler.b_err.tolist()
    (True, [-0.5, 0.5])
    """

    __slots__ = (
        "_a", "_b", "_c", "_order", "_b_hat", "_embedded_order", "_b_mid", "_name", "__weakref__"
    )

    def __init__(
        self,
        a,
        b,
        c,
        order: int,
        name: str | None = None,
        *,
        b_hat=None,
        embedded_order: int | None = None,
        b_mid=None,
    ):
        A = _as_matrix(a, "a")
        s = A.shape[0]
        bv = _as_vector(b, "b", s)
        cv = _as_vector(c, "c", s)
        if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 1:
            raise TableauError(f"order: expected a positive integer, got {order!r}")
        bh, bm = _embedded(b_hat, embedded_order, b_mid, s, int(order), A, cv)
        if not (np.isfinite(A).all() and np.isfinite(bv).all() and np.isfinite(cv).all()):
            raise TableauError("a, b, c: coefficients must be finite")
        if np.any(np.triu(A, k=1) != 0):
            raise TableauError(
                "a: expected a lower-triangular matrix (explicit or diagonally implicit); "
                "fully implicit tableaux are not supported"
            )
        if abs(bv.sum() - 1.0) > _TOL:
            raise TableauError(f"b: weights must sum to 1, got sum {bv.sum()!r}")
        rows = A.sum(axis=1)
        bad = np.flatnonzero(np.abs(rows - cv) > _TOL)
        if bad.size:
            i = int(bad[0])
            raise TableauError(
                f"a, c: row {i} of a must sum to c[{i}] = {cv[i]!r}, got {rows[i]!r}"
            )
        for desc, value, expected in _order_conditions([bv], [A], cv, min(int(order), 4)):
            if abs(value - expected) > 1e-10:
                raise TableauError(
                    f"order: the tableau does not have order {order}: condition {desc} = "
                    f"{value!r}, expected {expected!r}"
                )
        self._a = _frozen(A)
        self._b = _frozen(bv)
        self._c = _frozen(cv)
        self._order = int(order)
        self._b_hat = None if bh is None else _frozen(bh)
        self._embedded_order = None if bh is None else int(embedded_order)
        self._b_mid = None if bm is None else _frozen(bm)
        self._name = name or "custom"

    # -- read-only data -------------------------------------------------------------------------
    @property
    def a(self) -> np.ndarray:
        """Runge–Kutta matrix, read-only float64 array of shape (s, s)."""
        return self._a

    @property
    def b(self) -> np.ndarray:
        """Weights, read-only float64 array of shape (s,)."""
        return self._b

    @property
    def c(self) -> np.ndarray:
        """Nodes, read-only float64 array of shape (s,)."""
        return self._c

    @property
    def order(self) -> int:
        """Declared order of accuracy."""
        return self._order

    @property
    def name(self) -> str:
        """Name used in messages and reports."""
        return self._name

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return self._a.shape[0]

    @property
    def is_explicit(self) -> bool:
        """True when ``a`` is strictly lower triangular."""
        return bool(np.all(np.diag(self._a) == 0))

    @property
    def is_stiffly_accurate(self) -> bool:
        """True when ``b`` equals the last row of ``a`` (the step result is the last stage)."""
        return bool(np.array_equal(self._a[-1], self._b))

    @property
    def b_hat(self) -> np.ndarray | None:
        """Embedded weights (read-only float64), ``None`` for a method without error estimate."""
        return self._b_hat

    @property
    def b_err(self) -> np.ndarray | None:
        """``b - b_hat``: the weights of the local error estimate (``None`` without ``b_hat``)."""
        return None if self._b_hat is None else self._b - self._b_hat

    @property
    def embedded_order(self) -> int | None:
        """Order of the embedded solution (``None`` without ``b_hat``)."""
        return self._embedded_order

    @property
    def b_mid(self) -> np.ndarray | None:
        """Weights of the mid-step value (torchdiffeq's ``c_mid``), or ``None``."""
        return self._b_mid

    @property
    def is_adaptive(self) -> bool:
        """True for an embedded pair (``b_hat`` given): :func:`odenet.odeint` controls its steps."""
        return self._b_hat is not None

    @property
    def is_fsal(self) -> bool:
        """First same as last: the last stage is ``f(t_n + h, y_{n+1})``, the next step's first.

        Explicit, ``c[-1] == 1``, ``b[-1] == 0`` and the last row of ``a`` equal to ``b``.

        Examples
        --------
        >>> from odenet.solvers import ADAPTIVE_METHODS
        >>> ADAPTIVE_METHODS["dopri5"].is_fsal, ADAPTIVE_METHODS["fehlberg2"].is_fsal
        (True, False)
        """
        return bool(
            self.is_explicit
            and self.stages > 1
            and self._c[-1] == 1.0
            and self._b[-1] == 0.0
            and np.array_equal(self._a[-1], self._b)
        )

    def fixed_step(self, embedded: bool = False) -> ButcherTableau:
        """The solution (or, with ``embedded``, the embedded) formula as a plain fixed-step tableau.

        An adaptive pair always runs under step-size control; this gives its
        weights to the fixed-step solvers (empirical orders, comparisons).

        Examples
        --------
        >>> from odenet.solvers import ADAPTIVE_METHODS
        >>> tab = ADAPTIVE_METHODS["bosh3"]
        >>> tab.fixed_step(), tab.fixed_step(embedded=True).order
        (ButcherTableau(name='bosh3', stages=4, order=3), 2)
        """
        if embedded:
            if self._b_hat is None:
                raise TableauError(f"embedded: the tableau {self._name!r} has no embedded weights")
            return ButcherTableau(self._a, self._b_hat, self._c, self._embedded_order,
                                  name=f"{self._name}-embedded")
        return ButcherTableau(self._a, self._b, self._c, self._order, name=self._name)

    def to(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        """Return ``(a, b, c)`` as tensors of ``dtype`` on ``device`` (cached per dtype/device).

        Examples
        --------
        >>> import torch, odenet
        >>> a, b, c = odenet.METHODS["rk4"].to(torch.float32)
        >>> b.dtype, tuple(a.shape)
        (torch.float32, (4, 4))
        """
        return _tableau_tensors(self, dtype, torch.device(device) if device is not None else None)

    def __repr__(self) -> str:
        emb = "" if self._b_hat is None else f", embedded_order={self._embedded_order}"
        return (
            f"ButcherTableau(name={self._name!r}, stages={self.stages}, order={self._order}{emb})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ButcherTableau):
            return NotImplemented
        return (
            self._order == other._order
            and np.array_equal(self._a, other._a)
            and np.array_equal(self._b, other._b)
            and np.array_equal(self._c, other._c)
            and _same(self._b_hat, other._b_hat)
            and self._embedded_order == other._embedded_order
            and _same(self._b_mid, other._b_mid)
        )

    def __hash__(self) -> int:
        extra = tuple(None if x is None else x.tobytes() for x in (self._b_hat, self._b_mid))
        return hash((self._order, self._a.tobytes(), self._b.tobytes(), self._c.tobytes(), extra))

    def __setattr__(self, key: str, value: object) -> None:
        if hasattr(self, "_name"):
            raise AttributeError(f"{type(self).__name__} is frozen")
        object.__setattr__(self, key, value)


@functools.lru_cache(maxsize=128)
def _tableau_tensors(tab: ButcherTableau, dtype: torch.dtype, device: torch.device | None):
    return tuple(
        torch.tensor(x.tolist(), dtype=dtype, device=device) for x in (tab.a, tab.b, tab.c)
    )


class IMEXTableau:
    r"""An implicit–explicit (additive) Runge–Kutta pair for :math:`y' = f(t, y) - L y`.

    The explicit tableau integrates ``f``, the diagonally implicit one the
    linear part ``-L y``. Stage :math:`i` solves
    :math:`(I + h\,\tilde a_{ii} L) Y_i = y_n + h\sum_{j<i} a_{ij} f(Y_j) - h \sum_{j<i}
    \tilde a_{ij} L Y_j`, one call of ``L.solve``.

    Validation at construction: both tableaux have the same number of stages
    and the same nodes ``c``; the explicit one is strictly lower triangular; the
    implicit one is lower triangular with a non-negative diagonal; the order
    conditions, including the coupling conditions of additive Runge–Kutta
    methods, hold up to ``min(order, 3)``.

    Parameters
    ----------
    explicit, implicit : ButcherTableau
        The two halves of the pair.
    order : int
        Declared order of the pair.
    name : str, optional
        Name used in messages and reports.

    Examples
    --------
    >>> import odenet
    >>> pair = odenet.METHODS["ars222"]
    >>> pair.order, pair.stages, pair.is_stiffly_accurate
    (2, 3, True)
    """

    __slots__ = ("_explicit", "_implicit", "_order", "_name", "__weakref__")

    def __init__(
        self,
        explicit: ButcherTableau,
        implicit: ButcherTableau,
        order: int,
        name: str | None = None,
    ):
        if not isinstance(explicit, ButcherTableau) or not isinstance(implicit, ButcherTableau):
            raise TableauError("explicit, implicit: expected two ButcherTableau instances")
        if explicit.stages != implicit.stages:
            raise TableauError(
                f"explicit, implicit: stage counts differ ({explicit.stages} vs {implicit.stages})"
            )
        if not explicit.is_explicit:
            raise TableauError("explicit: expected a strictly lower-triangular tableau")
        if np.any(np.diag(implicit.a) < 0):
            raise TableauError("implicit: diagonal coefficients must be non-negative")
        if np.any(np.abs(explicit.c - implicit.c) > _TOL):
            raise TableauError("explicit, implicit: the two tableaux must share the nodes c")
        if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 1:
            raise TableauError(f"order: expected a positive integer, got {order!r}")
        bs = [explicit.b, implicit.b]
        As = [explicit.a, implicit.a]
        for desc, value, expected in _order_conditions(bs, As, explicit.c, min(int(order), 3)):
            if abs(value - expected) > 1e-10:
                raise TableauError(
                    f"order: the pair does not have order {order}: coupling condition {desc} = "
                    f"{value!r}, expected {expected!r}"
                )
        self._explicit = explicit
        self._implicit = implicit
        self._order = int(order)
        self._name = name or "custom-imex"

    @property
    def explicit(self) -> ButcherTableau:
        """Tableau applied to the explicit part ``f``."""
        return self._explicit

    @property
    def implicit(self) -> ButcherTableau:
        """Tableau applied to the implicit linear part ``-L y``."""
        return self._implicit

    @property
    def order(self) -> int:
        """Declared order of the pair."""
        return self._order

    @property
    def name(self) -> str:
        """Name used in messages and reports."""
        return self._name

    @property
    def stages(self) -> int:
        """Number of stages (shared by both tableaux)."""
        return self._explicit.stages

    @property
    def c(self) -> np.ndarray:
        """Shared nodes."""
        return self._explicit.c

    @property
    def is_stiffly_accurate(self) -> bool:
        """True when both tableaux are stiffly accurate: the step result is the last stage."""
        return self._explicit.is_stiffly_accurate and self._implicit.is_stiffly_accurate

    def __repr__(self) -> str:
        return f"IMEXTableau(name={self._name!r}, stages={self.stages}, order={self._order})"

    def __setattr__(self, key: str, value: object) -> None:
        if hasattr(self, "_name"):
            raise AttributeError(f"{type(self).__name__} is frozen")
        object.__setattr__(self, key, value)
