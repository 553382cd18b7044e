"""Linear stability of Runge–Kutta and IMEX schemes: the exact stability function and its region.

For the test equation :math:`y' = \\lambda y` a Runge–Kutta step multiplies the
state by :math:`R(z) = 1 + z b^T (I - zA)^{-1} \\mathbf 1` with :math:`z = h\\lambda`.
For an IMEX pair applied to :math:`y' = \\lambda y - \\mu y` (explicit part
:math:`\\lambda`, implicit part :math:`-\\mu`, :math:`\\mu \\ge 0` an eigenvalue
of ``L``) with :math:`z = h\\lambda`, :math:`w = h\\mu`:

.. math::

    R(z, w) = 1 + (z b - w \\tilde b)^T (I - zA + w\\tilde A)^{-1} \\mathbf 1
            = \\frac{\\det(I - zA + w\\tilde A + \\mathbf 1 (z b - w \\tilde b)^T)}
                   {\\det(I - zA + w\\tilde A)} .

Numerator and denominator are polynomials whose coefficients are computed
exactly from the tableau entries (a determinant of a matrix of linear
polynomials, expanded by minors), so :math:`R` is exact up to rounding, and
the boundary crossings along a ray are roots of :math:`|N|^2 - |D|^2`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.polynomial import polynomial as P

from odenet import ButcherTableau, IMEXTableau, solvers
from odenet.analysis._common import check_int, check_numbers, check_positive
from odenet.analysis._results import Result, new_figure
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "StabilityRegion",
    "evaluate_R",
    "max_stable_steps",
    "resolve_method",
    "stability_region",
]

_COEF_TOL = 1e-12  # relative size under which a coefficient of |N|^2 - |D|^2 counts as zero
_BOUNDARY_TOL = 1e-10  # |R| <= 1 + tol counts as inside


def resolve_method(method: object, name: str = "method") -> ButcherTableau | IMEXTableau:
    """:func:`odenet.solvers.resolve_method`, also for implicit Butcher tableaux (whose
    stability regions the diagnostics draw although odenet never steps with them).

    Examples
    --------
    >>> from odenet.analysis._region import resolve_method
    >>> resolve_method("rk4").order
    4
    """
    return solvers.resolve_method(method, name, explicit_only=False)


# -- exact polynomial algebra --------------------------------------------------------------------
def _trim(c: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(c != 0)
    return c[: nz[-1] + 1] if nz.size else c[:1] * 0


def _det_poly(c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Coefficients (ascending) of ``det(c0 + r c1)`` by expansion in minors (memoised)."""
    s = c0.shape[0]

    @functools.cache
    def minor(row: int, cols: int) -> np.ndarray:
        if row == s:
            return np.ones(1, dtype=complex)
        acc = np.zeros(1, dtype=complex)
        sign = 1.0
        for j in range(s):
            if not cols & (1 << j):
                continue
            entry = np.array([c0[row, j], c1[row, j]], dtype=complex)
            if entry[0] != 0 or entry[1] != 0:
                acc = P.polyadd(acc, sign * P.polymul(entry, minor(row + 1, cols & ~(1 << j))))
            sign = -sign
        return acc

    return _trim(np.asarray(minor(0, (1 << s) - 1), dtype=complex))


def _pair(tab: ButcherTableau | IMEXTableau):
    """``(A, b, At, bt)`` with the implicit part zero for Butcher tableaux."""
    if isinstance(tab, IMEXTableau):
        return tab.explicit.a, tab.explicit.b, tab.implicit.a, tab.implicit.b
    s = tab.stages
    return tab.a, tab.b, np.zeros((s, s)), np.zeros(s)


def _ray_polys(tab, lam_coef: complex, mu_coef: float, z0: complex = 0.0, w0: float = 0.0):
    """N, D of R along ``z = z0 + r * lam_coef``, ``w = w0 + r * mu_coef`` as polynomials in r."""
    A, b, At, bt = _pair(tab)
    s = A.shape[0]
    one = np.ones((s, 1))
    eye = np.eye(s)
    # M(z, w) = I - z A + w At ;  N-matrix = M + 1 (z b - w bt)^T
    d0 = eye - z0 * A + w0 * At
    d1 = -lam_coef * A + mu_coef * At
    n0 = d0 + one @ (z0 * b - w0 * bt)[None, :]
    n1 = d1 + one @ (lam_coef * b - mu_coef * bt)[None, :]
    return _det_poly(n0.astype(complex), n1.astype(complex)), _det_poly(
        d0.astype(complex), d1.astype(complex)
    )


def _first_exit(num: np.ndarray, den: np.ndarray) -> float:
    """sup{r > 0 : |N(r')| <= |D(r')| for all 0 < r' <= r} (0 if unstable at once, inf if never)."""
    nn = P.polymul(num, np.conj(num)).real
    dd = P.polymul(den, np.conj(den)).real
    p = P.polysub(nn, dd)
    scale = max(np.abs(nn).max(), np.abs(dd).max(), 1e-300)
    p = np.where(np.abs(p) <= _COEF_TOL * scale, 0.0, p)
    p[0] = 0.0  # R(0) = 1 exactly
    p = _trim(p)
    nz = np.flatnonzero(p)
    if nz.size == 0:
        return float("inf")  # |R| = 1 on the whole ray
    if p[nz[0]] > 0:
        return 0.0
    roots = np.roots(p[::-1])
    real = np.sort(
        np.unique(
            [
                r.real
                for r in roots
                if r.real > 0 and abs(r.imag) <= 1e-7 * max(1.0, abs(r))
            ]
        )
    )
    for k, r in enumerate(real):
        nxt = real[k + 1] if k + 1 < len(real) else 2 * r + 1
        if P.polyval(0.5 * (r + nxt), p) > 0:
            return float(r)
    return float("inf")


def _w_values(tab, implicit_values: Iterable[float] | None) -> tuple[float, ...]:
    if implicit_values is None:
        return (0.0,)
    ws = tuple(
        float(w)
        for w in check_numbers(implicit_values, "implicit_values", real=True).ravel()
    )
    if any(w < 0 for w in ws):
        raise ArgumentError(
            "implicit_values: expected finite non-negative values w = h * mu (mu >= 0 an "
            f"eigenvalue of the implicit operator L), got {list(ws)}"
        )
    if isinstance(tab, ButcherTableau) and any(w != 0 for w in ws):
        raise ArgumentError(
            f"implicit_values: method {tab.name!r} has no implicit part; implicit values are "
            "for IMEX methods"
        )
    return ws


def evaluate_R(tab: ButcherTableau | IMEXTableau, z, w=0.0) -> np.ndarray:
    """``R(z, w)`` for arrays ``z`` (complex) and ``w`` (broadcast), by batched linear solves.

    Examples
    --------
    >>> from odenet import METHODS
    >>> from odenet.analysis._region import evaluate_R
    >>> evaluate_R(METHODS["imex_euler"], [-1.0, 1.0], 1.0).real.tolist()  # (1 + z) / (1 + w)
    [0.0, 1.0]
    """
    A, b, At, bt = _pair(tab)
    s = A.shape[0]
    z, w = np.broadcast_arrays(np.asarray(z, dtype=complex), np.asarray(w, dtype=float))
    zf, wf = z.ravel(), w.ravel()
    M = np.eye(s)[None] - zf[:, None, None] * A[None] + wf[:, None, None] * At[None]
    Y = np.linalg.solve(M, np.ones((zf.size, s, 1), dtype=complex))[..., 0]
    v = zf[:, None] * b[None] - wf[:, None] * bt[None]
    return (1.0 + np.sum(v * Y, axis=1)).reshape(z.shape)


def max_stable_steps(
    method: ButcherTableau | IMEXTableau | str,
    eigenvalues: Sequence[complex],
    implicit_eigenvalues: Sequence[float] = (0.0,),
) -> np.ndarray:
    r"""Largest stable step for each eigenvalue: sup h with :math:`|R(h'\lambda, h'\mu)| \le 1`
    for all h' in (0, h].

    ``eigenvalues`` are finite numbers (any shape, at least one), ``implicit_eigenvalues``
    finite numbers >= 0 (IMEX methods only); anything else raises
    :class:`~odenet.errors.ArgumentError` / :class:`~odenet.errors.ArgumentTypeError`.
    For IMEX methods every eigenvalue :math:`\lambda` of the explicit part is
    paired with every eigenvalue :math:`\mu \ge 0` of ``L`` (both scale with
    ``h``); the result is the minimum over the pairs. ``0`` means unstable for
    every positive step (e.g. :math:`\mathrm{Re}\,\lambda > 0`), ``inf`` stable
    for every step.

    Examples
    --------
    >>> from odenet.analysis._region import max_stable_steps
    >>> max_stable_steps("euler", [-4.0, -1 + 1j, 2.0]).round(6).tolist()
    [0.5, 1.0, 0.0]
    """
    tab = resolve_method(method)
    lams = np.atleast_1d(check_numbers(eigenvalues, "eigenvalues"))
    mus = np.atleast_1d(check_numbers(implicit_eigenvalues, "implicit_eigenvalues", real=True))
    if np.any(mus < 0):
        raise ArgumentError("implicit_eigenvalues: expected finite non-negative eigenvalues of L")
    if isinstance(tab, ButcherTableau) and np.any(mus != 0):
        raise ArgumentError(
            f"implicit_eigenvalues: method {tab.name!r} is explicit and has no implicit part"
        )
    L, M = np.meshgrid(lams, mus, indexing="ij")
    L, M = L.ravel(), M.ravel()
    scale = np.maximum(np.abs(L), M)
    live = scale > 0
    limits = np.full(L.shape, np.inf)
    if live.any():
        # polynomials in r = h * scale, so that their coefficients are O(1)
        nums, dens = _batched_ray_polys(tab, L[live] / scale[live], M[live] / scale[live])
        limits[live] = [
            _first_exit(n, d) / sc for n, d, sc in zip(nums, dens, scale[live])
        ]
    return limits.reshape(lams.size, mus.size).min(axis=1).reshape(lams.shape)


def _batched_ray_polys(tab, lam: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N and D of R(r lam, r mu) as polynomials in r for many rays at once.

    Both have degree <= s; they are evaluated at the (s+1)-th roots of unity by
    batched determinants and turned into coefficients by an FFT (exact
    interpolation, well conditioned for the O(1) rays used here).
    """
    A, b, At, bt = _pair(tab)
    s = A.shape[0]
    m = s + 1
    nodes = np.exp(2j * np.pi * np.arange(m) / m)
    E = lam[:, None, None] * A[None] - mu[:, None, None] * At[None]  # (P, s, s)
    e = lam[:, None] * b[None] - mu[:, None] * bt[None]  # (P, s)
    eye = np.eye(s)
    Md = eye[None, None] - nodes[None, :, None, None] * E[:, None]  # (P, m, s, s)
    Mn = Md + nodes[None, :, None, None] * np.ones((s, 1))[None, None] * e[:, None, None, :]
    dens = np.fft.fft(np.linalg.det(Md), axis=-1) / m
    nums = np.fft.fft(np.linalg.det(Mn), axis=-1) / m
    return nums, dens


class StabilityRegion(Result):
    r"""The linear stability region :math:`\{z : |R(z, w)| \le 1\}` of a scheme.

    Returned by :func:`stability_region`. For IMEX methods the region is the set
    of :math:`z = h\lambda` stable for every :math:`w = h\mu` in
    :attr:`implicit_values`.

    Attributes
    ----------
    method : str
    numerator, denominator : list of list of float
        Ascending coefficients of :math:`R = N/D` for each value of ``w``.
    real_axis_limit : float
        The most negative real :math:`z` reached from 0 inside the region (``-inf`` if unbounded).
    imaginary_axis_limit : float
        The largest :math:`y` with :math:`iy` reached from 0 inside the region.

    Examples
    --------
    >>> from odenet import analysis
    >>> reg = analysis.stability_region("euler")
    >>> reg.real_axis_limit
    -2.0
    >>> bool(reg.contains(-1 + 0.5j)), bool(reg.contains(0.1))
    (True, False)
    """

    kind = "stability_region"
    columns = ("method", "order", "stages", "w", "real_axis_limit", "imaginary_axis_limit", "R(z)")

    def __init__(self, tableau, implicit_values: Sequence[float], spectra=None, label=None):
        self.tableau = tableau
        ws = tuple(implicit_values)
        polys = [_ray_polys(tableau, 1.0, 0.0, 0.0, w) for w in ws]
        real_lim = min(_first_exit(*_ray_polys(tableau, -1.0, 0.0, 0.0, w)) for w in ws)
        imag_lim = min(_first_exit(*_ray_polys(tableau, 1j, 0.0, 0.0, w)) for w in ws)
        self._polys = [(n.real.copy(), d.real.copy()) for n, d in polys]
        self._spectra = None if spectra is None else check_numbers(
            spectra, "spectra", allow_empty=True).ravel()
        rows = []
        for w, (n, d) in zip(ws, self._polys):
            rows.append(
                {
                    "method": tableau.name,
                    "order": tableau.order,
                    "stages": tableau.stages,
                    "w": w,
                    "real_axis_limit": -_first_exit(*_ray_polys(tableau, -1.0, 0.0, 0.0, w)),
                    "imaginary_axis_limit": _first_exit(*_ray_polys(tableau, 1j, 0.0, 0.0, w)),
                    "R(z)": _format_rational(n, d),
                }
            )
        super().__init__(
            rows,
            method=tableau.name,
            implicit_values=list(ws),
            numerator=[n.tolist() for n, _ in self._polys],
            denominator=[d.tolist() for _, d in self._polys],
            real_axis_limit=-real_lim,
            imaginary_axis_limit=imag_lim,
            label=label or tableau.name,
        )

    def title(self) -> str:
        return f"stability region of {self.method}"

    # -- evaluation -------------------------------------------------------------------------------
    def R(self, z, w_index: int = 0) -> np.ndarray:
        """The stability function at ``z`` for the ``w_index``-th implicit value.

        Examples
        --------
        >>> from odenet import analysis
        >>> complex(analysis.stability_region("rk4").R(-1.0)).real  # 1 - 1 + 1/2 - 1/6 + 1/24
        0.375
        """
        w_index = check_int(w_index, "w_index", 0, len(self._polys) - 1)
        n, d = self._polys[w_index]
        z = check_numbers(z, "z", allow_empty=True)
        return P.polyval(z, n) / P.polyval(z, d)

    def abs_R(self, z) -> np.ndarray:
        """``max_w |R(z, w)|`` over the implicit values (``|R(z)|`` for explicit methods)."""
        z = check_numbers(z, "z", allow_empty=True)
        return np.max([np.abs(self.R(z, i)) for i in range(len(self._polys))], axis=0)

    def contains(self, z, tol: float = _BOUNDARY_TOL) -> np.ndarray:
        """Whether ``z`` (array-like) lies in the region, ``|R(z)| <= 1 + tol``.

        Examples
        --------
        >>> from odenet import analysis
        >>> analysis.stability_region("rk4").contains([-2.7, -2.9]).tolist()
        [True, False]
        """
        tol = check_positive(tol, "tol", allow_zero=True)
        return self.abs_R(z) <= 1.0 + tol

    def max_step(self, eigenvalues) -> float:
        """Largest ``h`` with every ``h * eigenvalue`` in the region (fixed ``w``).

        ``eigenvalues``: finite numbers, at least one (``inf`` when all are 0).

        Examples
        --------
        >>> from odenet import analysis
        >>> analysis.stability_region("euler").max_step([-10.0, -2.0])
        0.2
        """
        lams = np.atleast_1d(check_numbers(eigenvalues, "eigenvalues")).ravel()
        best = float("inf")
        for lam in lams:
            if lam == 0:
                continue
            r = min(
                _first_exit(*_ray_polys(self.tableau, lam / abs(lam), 0.0, 0.0, w))
                for w in self.implicit_values
            )
            best = min(best, r / abs(lam))
        return float(best)

    # -- drawing ----------------------------------------------------------------------------------
    def extent(self, spectra=None) -> tuple[float, float, float, float]:
        """A plotting box ``(xmin, xmax, ymin, ymax)`` that shows the region and ``spectra``."""
        X, Y = np.meshgrid(np.linspace(-12.0, 4.0, 321), np.linspace(0.0, 8.0, 161))
        inside = self.contains(X + 1j * Y)
        if inside.any():
            xs, ys = X[inside], Y[inside]
            xmin, xmax, ymax = xs.min(), xs.max(), ys.max()
        else:
            xmin, xmax, ymax = -2.0, 0.5, 1.5
        pad = 0.12 * max(xmax - xmin, 2 * ymax, 1.0)
        xmin, xmax, ymax = min(xmin - pad, -1.0), max(xmax + pad, 0.5), max(ymax + pad, 1.0)
        pts = self._spectra if spectra is None else check_numbers(
            spectra, "spectra", allow_empty=True).ravel()
        if pts is not None and pts.size:
            xmin = min(xmin, 1.1 * pts.real.min())
            xmax = max(xmax, 1.1 * pts.real.max() + 0.1)
            ymax = max(ymax, 1.1 * np.abs(pts.imag).max())
        return float(xmin), float(xmax), float(-ymax), float(ymax)

    def plot(self, ax=None, *, spectra=None, color: str = "C0", fill: bool = True):
        """Draw the region (filled) and its boundary; overlay ``spectra`` (values of z = h·λ).

        Examples
        --------
        >>> from odenet import analysis
        >>> fig = analysis.stability_region("rk4").plot(spectra=[-1.0, -2 + 1j])
        >>> fig.axes[0].get_xlabel()
        'Re z'
        """
        pts = self._spectra if spectra is None else check_numbers(
            spectra, "spectra", allow_empty=True).ravel()
        if ax is None:
            fig, (ax,) = new_figure(width=5.6, height=5.0)
        else:
            fig = ax.figure
        x0, x1, y0, y1 = self.extent(pts)
        X, Y = np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401))
        A = self.abs_R(X + 1j * Y)
        if fill:
            ax.contourf(X, Y, A, levels=[0, 1], colors=[color], alpha=0.25)
        ax.contour(X, Y, A, levels=[1], colors=[color], linewidths=1.6)
        ws = self.implicit_values
        ax.plot([], [], color=color, lw=1.6, label=self.label + (" (all w)" if len(ws) > 1 else ""))
        if 1 < len(ws) <= 6:  # each w's own boundary
            Z = X + 1j * Y
            for i, w in enumerate(ws):
                Ai = np.abs(self.R(Z, i))
                ax.contour(X, Y, Ai, levels=[1], colors=[f"C{i + 1}"], linewidths=0.9,
                           linestyles="--")
                ax.plot([], [], color=f"C{i + 1}", lw=0.9, ls="--", label=f"w = hμ = {w:.3g}")
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        if pts is not None and pts.size:
            inside = self.contains(pts)
            ax.plot(pts.real[inside], pts.imag[inside], "o", ms=4, color="k", label="hλ inside")
            if (~inside).any():
                ax.plot(
                    pts.real[~inside], pts.imag[~inside], "x", ms=6, color="C3", label="hλ outside"
                )
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_xlabel("Re z")
        ax.set_ylabel("Im z")
        ax.set_title(f"|R(z)| ≤ 1: {self.label}")
        ax.legend(loc="upper left", fontsize=8)
        return fig


def _format_rational(num: np.ndarray, den: np.ndarray) -> str:
    def poly(c: np.ndarray) -> str:
        terms = []
        for k, v in enumerate(c):
            if abs(v) < 1e-15:
                continue
            mag = f"{abs(v):.6g}"
            var = "z" if k == 1 else f"z^{k}"
            body = mag if k == 0 else (var if mag == "1" else f"{mag} {var}")
            if not terms:
                terms.append(("-" if v < 0 else "") + body)
            else:
                terms.append(("- " if v < 0 else "+ ") + body)
        return " ".join(terms) if terms else "0"

    d = _trim(np.asarray(den))
    if d.size == 1 and abs(d[0] - 1) < 1e-15:
        return poly(np.asarray(num))
    return f"({poly(np.asarray(num))}) / ({poly(d)})"


def stability_region(
    method: str | ButcherTableau | IMEXTableau,
    *,
    implicit_values: Sequence[float] | None = None,
    spectra: Sequence[complex] | None = None,
    label: str | None = None,
) -> StabilityRegion:
    r"""The linear stability region of a method from its exact stability function.

    Parameters
    ----------
    method : str, ButcherTableau or IMEXTableau
        A name of :data:`odenet.METHODS` or a tableau (explicit, diagonally
        implicit, or an IMEX pair).
    implicit_values : sequence of float, optional
        IMEX methods only: the values :math:`w = h\mu \ge 0` (``h`` times the
        eigenvalues of the implicit operator ``L``). The region is the set of
        :math:`z = h\lambda` for which :math:`|R(z, w)| \le 1` for every given
        ``w``. Default ``(0,)``: the explicit part alone.
    spectra : sequence of complex, optional
        Values of :math:`z = h\lambda` drawn over the region by :meth:`~StabilityRegion.plot`
        (finite numbers).
    label : str, optional
        Name used in the legend (default: the method's name).

    Returns
    -------
    StabilityRegion
        With the exact coefficients of :math:`R`, the real- and imaginary-axis
        limits, :meth:`~StabilityRegion.contains`, :meth:`~StabilityRegion.max_step`
        and :meth:`~StabilityRegion.plot`.

    Examples
    --------
    >>> from odenet import analysis
    >>> reg = analysis.stability_region("rk4")
    >>> round(reg.real_axis_limit, 4), round(reg.imaginary_axis_limit, 4)
    (-2.7853, 2.8284)
    >>> [round(c, 12) for c in reg.numerator[0]]        # 1 + z + z^2/2 + z^3/6 + z^4/24
    [1.0, 1.0, 0.5, 0.166666666667, 0.041666666667]
    >>> imex = analysis.stability_region("ars222", implicit_values=[0.0, 10.0])
    >>> imex.real_axis_limit < 0
    True
    """
    tab = resolve_method(method)
    ws = _w_values(tab, implicit_values)
    if label is not None and not isinstance(label, str):
        raise ArgumentTypeError(f"label: expected a string or None, got {type(label).__name__}")
    return StabilityRegion(tab, ws, spectra=spectra, label=label)
