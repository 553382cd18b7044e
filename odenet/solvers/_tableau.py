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
    """

    __slots__ = ("_a", "_b", "_c", "_order", "_name", "__weakref__")

    def __init__(self, a, b, c, order: int, name: str | None = None):
        A = _as_matrix(a, "a")
        s = A.shape[0]
        bv = _as_vector(b, "b", s)
        cv = _as_vector(c, "c", s)
        if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or order < 1:
            raise TableauError(f"order: expected a positive integer, got {order!r}")
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
        return f"ButcherTableau(name={self._name!r}, stages={self.stages}, order={self._order})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ButcherTableau):
            return NotImplemented
        return (
            self._order == other._order
            and np.array_equal(self._a, other._a)
            and np.array_equal(self._b, other._b)
            and np.array_equal(self._c, other._c)
        )

    def __hash__(self) -> int:
        return hash((self._order, self._a.tobytes(), self._b.tobytes(), self._c.tobytes()))

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
