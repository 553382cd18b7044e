"""Linear stability of a step along the spectrum of the right-hand side's Jacobian."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigs, eigsh
from torch import Tensor

import odenet
from odenet import ButcherTableau, IMEXTableau
from odenet.analysis._common import (
    check_bool,
    check_int,
    check_positive,
    check_real,
    check_seed,
    check_tensor,
    unwrap_func,
)
from odenet.analysis._jacobian import JacobianOperator
from odenet.analysis._region import (
    StabilityRegion,
    evaluate_R,
    max_stable_steps,
    resolve_method,
)
from odenet.analysis._results import Result, new_figure
from odenet.errors import ArgumentError, ArgumentTypeError, FunctionOutputError
from odenet.solvers import check_implicit
from odenet.solvers._problem import _check_output

__all__ = ["StabilityResult", "flow_amplification", "stability"]

_WHICH = ("LM", "LR", "SR", "LI")
_DENSE_LIMIT = 1024


def _arpack(op, n: int, k: int, which: str, tol: float, seed: int, shift: float = 0.0,
            light: bool = False):
    """ARPACK ``eigs`` on ``op + shift I`` (eigenvalues shifted back); partial results on failure.

    ARPACK's convergence test is relative to each Ritz value, so eigenvalues
    clustered at 0 (typical rightmost eigenvalues of saturated networks) never
    converge; a shift by the spectral radius moves them away from 0. ``light``
    (a cross-check beside the dense spectrum) makes one short attempt only.
    """
    v0 = np.random.default_rng(seed).standard_normal(n)
    A = op
    if shift != 0.0:
        A = LinearOperator((n, n), matvec=lambda v: op.matvec(v) + shift * v, dtype=np.float64)
    partial = np.zeros(0, dtype=complex)
    # a second, wider and looser attempt for clustered spectra
    attempts = [(max(2 * k + 1, 40), tol, 15), (max(4 * k + 1, 80), max(tol, 1e-5), 8)]
    if light:
        attempts = [(max(2 * k + 1, 40), tol, 6)]
    for ncv, tol_, its in attempts:
        try:
            vals = eigs(A, k=k, which=which, tol=tol_, v0=v0, ncv=min(n, ncv), maxiter=its,
                        return_eigenvectors=False)
            return np.asarray(vals) - shift, True
        except ArpackNoConvergence as err:
            partial = np.asarray(err.eigenvalues)
            if partial.size:
                break
        except ArpackError:  # e.g. the shifted operator vanishes (J = -shift * I)
            if shift != 0.0:
                return _arpack(op, n, k, which, tol, seed, 0.0, light)
            return partial, False
    return partial - shift, False


def _implicit_spectrum(implicit, y: Tensor, seed: int, tol: float) -> tuple[float, float]:
    """Smallest and largest eigenvalue of a symmetric positive semi-definite ``L``."""
    J = JacobianOperator(lambda x: implicit(x), torch.zeros_like(y), name="implicit")
    n = J.n
    # symmetry check: <L x, z> == <x, L z>
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y)
    z = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y)
    with torch.no_grad():
        lx, lz = implicit(x), implicit(z)
    a, b = float((lx * z).sum()), float((x * lz).sum())
    scale = float(lx.norm() * z.norm()) + 1e-300
    eps = 1e3 * torch.finfo(y.dtype).eps
    if abs(a - b) > eps * scale:
        raise ArgumentError(
            "implicit: expected a symmetric positive semi-definite operator L (such as "
            f"odenet.linear.ConvFFT); <Lx, z> = {a:.6g} but <x, Lz> = {b:.6g}"
        )
    if n <= _DENSE_LIMIT:
        mu = scipy.linalg.eigvalsh(J.dense())
        lo, hi = float(mu[0]), float(mu[-1])
    else:
        op = J.linear_operator()
        v0 = np.random.default_rng(seed).standard_normal(n)
        hi = float(eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0])
        try:
            lo = float(eigsh(op, k=1, which="SA", tol=tol, v0=v0, maxiter=50 * n,
                             return_eigenvectors=False)[0])
        except ArpackNoConvergence:
            lo = 0.0
    if lo < -eps * max(abs(hi), 1.0):
        raise ArgumentError(
            f"implicit: L has a negative eigenvalue {lo:.6g}; IMEX methods need L positive "
            "semi-definite"
        )
    return max(lo, 0.0), max(hi, 0.0)


def _mu_samples(lo: float, hi: float) -> np.ndarray:
    if hi <= 0:
        return np.zeros(1)
    pts = [lo, hi, *np.linspace(lo, hi, 9)]
    if lo > 0:
        pts += list(np.geomspace(lo, hi, 9))
    else:
        pts += list(np.geomspace(hi * 1e-4, hi, 9))
    return np.unique(np.asarray(pts, dtype=float))


def _lanczos_max(apply, v0: Tensor, iterations: int, tol: float) -> tuple[float, int]:
    """Largest eigenvalue of a symmetric positive semi-definite operator by Lanczos.

    Full reorthogonalisation; stops when the residual bound of the largest Ritz
    value falls below ``tol`` times that value, when that value grew by less than
    ``tol`` (relative) in two consecutive iterations, or after ``iterations`` products.
    """
    V = [v0 / v0.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    theta = 0.0
    stalled = 0
    for j in range(iterations):
        w = apply(V[j])
        a = float(torch.dot(w.reshape(-1), V[j].reshape(-1)))
        alphas.append(a)
        for _ in range(2):  # reorthogonalise twice against the whole basis
            for v in V:
                w = w - torch.dot(w.reshape(-1), v.reshape(-1)) * v
        b = float(w.norm())
        T = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        vals, vecs = np.linalg.eigh(T)
        prev, theta = theta, float(vals[-1])
        scale = max(abs(theta), 1e-300)
        resid = b * abs(vecs[-1, -1])
        if resid <= tol * scale or b <= 1e-14 * scale:
            return theta, j + 1
        # stagnation of the Ritz value (clustered top eigenvalues converge slowly as vectors)
        stalled = stalled + 1 if j > 0 and theta - prev <= tol * scale else 0
        if stalled >= 2:
            return theta, j + 1
        betas.append(b)
        V.append(w / b)
    warnings.warn(
        f"flow_amplification: Lanczos stopped after {iterations} iterations before reaching "
        f"the tolerance {tol:g}; the estimate is a lower bound",
        RuntimeWarning,
        stacklevel=3,
    )
    return theta, iterations


def flow_amplification(
    func: Callable,
    y0: Tensor,
    method: str | ButcherTableau | IMEXTableau,
    step_size: float,
    T: float,
    *,
    t0: float = 0.0,
    implicit=None,
    iterations: int = 60,
    tol: float = 1e-4,
    seed: int = 0,
) -> tuple[float, int]:
    r"""Largest amplification of input perturbations by the discrete solve over ``[t0, t0 + T]``.

    The power iteration on :math:`J^T J`, with :math:`J = \partial y_N / \partial y_0`
    the Jacobian of the whole discrete flow map, accelerated by Lanczos (the
    Krylov space of the power iteration, fully reorthogonalised): each iteration
    is one Jacobian–vector product through :func:`odenet.odeint` (forward mode)
    and one vector–Jacobian product through the recorded solve. ``tol`` bounds
    the relative residual of the Ritz value :math:`\sigma_{\max}^2` (or its relative
    growth per iteration, when the top singular values cluster); ``iterations``
    the number of iterations. Returns :math:`\|J\|_2 = \sigma_{\max}(J)` and the
    number of iterations.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._stability import flow_amplification
    >>> A = torch.tensor([[-1.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    >>> amp, _ = flow_amplification(lambda t, y: A @ y, torch.ones(2, dtype=torch.float64),
    ...                             "rk4", 0.01, 2.0)
    >>> round(amp, 5)  # exp(0.5 * 2)
    2.71828
    """
    dtype = y0.dtype
    tt = torch.tensor([t0, t0 + T], dtype=dtype, device=y0.device)

    def flow(x: Tensor) -> Tensor:
        return odenet.odeint(func, x, tt, method=method, step_size=step_size,
                             implicit=implicit, gradient="backprop")[-1]

    J = JacobianOperator(flow, y0, name="func (through the whole solve)")
    g = torch.Generator(device="cpu").manual_seed(seed)
    v0 = torch.randn(y0.shape, generator=g, dtype=torch.float64).to(y0)
    lam, its = _lanczos_max(lambda v: J.rmatvec(J.matvec(v)), v0, min(iterations, J.n), tol)
    return math.sqrt(max(lam, 0.0)), its


class StabilityResult(Result):
    r"""Spectrum of :math:`\partial f/\partial y` at a state against a method's stability region.

    Returned by :func:`stability`. Rows: the extreme eigenvalues (ARPACK's, or the
    dense ones when the state is too small for ARPACK), with :math:`h\lambda`,
    :math:`|R(h\lambda)|`, whether it lies in the region and the largest stable
    step for that eigenvalue alone.

    Attributes
    ----------
    stable : bool
        Every computed :math:`h\lambda` lies in the stability region.
    max_step : float
        Largest stable step along the computed spectrum (``0`` when some
        eigenvalue has a positive real part that no step can stabilise).
    max_step_damped : float
        The same over the eigenvalues with :math:`\mathrm{Re}\,\lambda \le 0` (the
        modes the ODE itself does not amplify).
    spectral_radius, max_real : float
    flow_amplification : float or None
        :math:`\|\partial y(T)/\partial y_0\|_2` of the discrete solve.
    arpack_error : float or None
        Largest distance of an ARPACK eigenvalue to the dense spectrum, relative
        to the spectral radius (when both were computed).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> A = torch.diag(torch.tensor([-1.0, -4.0], dtype=torch.float64))
    >>> res = analysis.stability(lambda t, y: A @ y, torch.ones(2, dtype=torch.float64),
    ...                          "euler", 0.25, T=None)
    >>> res.stable, res.max_step
    (True, 0.5)
    """

    kind = "stability"
    columns = ("source", "eigenvalue", "h*eigenvalue", "|R|", "in_region", "max_step")

    def title(self) -> str:
        return (
            f"stability of {self.method} at h = {self.step_size:g} "
            f"(state size {self.state_size})"
        )

    def notes(self) -> list[str]:
        s = self.summary
        out = [
            f"spectral radius {s['spectral_radius']:.4g}, max Re(lambda) {s['max_real']:.4g}, "
            f"{s['n_growing']} growing mode(s)",
            f"all h*lambda in the region: {'yes' if s['stable'] else 'NO'}; largest stable step "
            f"{s['max_step']:.4g} (damped modes only: {s['max_step_damped']:.4g})",
        ]
        if s.get("implicit_range") is not None:
            lo, hi = s["implicit_range"]
            out.append(f"implicit operator spectrum [{lo:.4g}, {hi:.4g}] (IMEX region)")
        if s.get("arpack_error") is not None:
            out.append(f"ARPACK vs dense spectrum: max relative distance {s['arpack_error']:.2e}")
        if not s.get("arpack_converged", True):
            out.append("ARPACK did not converge for every requested eigenvalue (partial list)")
        if s.get("flow_amplification") is not None:
            out.append(
                f"flow-map amplification over T = {s['T']:g}: {s['flow_amplification']:.4g}"
            )
        return out

    def region(self) -> StabilityRegion:
        """The method's stability region at this step (IMEX: for the implicit spectrum)."""
        tab = self.tableau
        ws = None
        if isinstance(tab, IMEXTableau):
            ws = (self.step_size * self._mu).tolist()
        return StabilityRegion(tab, ws or (0.0,), spectra=self.hlambda_all())

    def hlambda_all(self) -> np.ndarray:
        dense = self.summary.get("dense_eigenvalues")
        vals = dense if dense is not None else self.summary["eigenvalues"]
        return self.step_size * np.asarray(vals, dtype=complex)

    def __init__(self, rows, *, tableau, mu, **summary):
        super().__init__(rows, **summary)
        self.tableau = tableau
        self._mu = np.asarray(mu, dtype=float)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["implicit_samples"] = self._mu.tolist() if self.implicit_range is not None else None
        return d

    def plot(self, ax=None):
        """Left: the region with every h·λ; right: max |R(h λ)| over the spectrum against h.

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> A = torch.diag(torch.tensor([-1.0, -4.0], dtype=torch.float64))
        >>> res = analysis.stability(lambda t, y: A @ y, torch.ones(2, dtype=torch.float64),
        ...                          "rk4", 0.25, T=None)
        >>> len(res.plot().axes)
        2
        """
        fig, (ax0, ax1) = new_figure(1, 2, width=5.4, height=4.8)
        reg = self.region()
        reg.plot(ax0)
        ax0.set_title(f"{self.method}: h·λ at h = {self.step_size:.3g}")
        lams = np.asarray(
            self.summary.get("dense_eigenvalues") or self.summary["eigenvalues"], dtype=complex
        )
        tab = self.tableau
        mus = self._mu
        hmax = self.summary["max_step"]
        top = 2.5 * max(self.step_size, hmax if math.isfinite(hmax) else 0.0)
        hs = np.linspace(0.0, top, 300)[1:]
        amp = np.ones_like(hs)
        med = np.ones_like(hs)
        for i, h in enumerate(hs):
            z = h * lams[:, None]
            w = h * mus[None, :]
            per = np.abs(evaluate_R(tab, z, w)).max(axis=1)
            amp[i], med[i] = per.max(), np.median(per)
        ax1.semilogy(hs, amp, color="C0", lw=1.6, label="max over the spectrum")
        ax1.semilogy(hs, med, color="C0", lw=1.0, ls="--", label="median over the spectrum")
        ax1.axhline(1.0, color="0.5", lw=0.8)
        ax1.axvline(self.step_size, color="C2", ls="--", label=f"h = {self.step_size:.3g}")
        if math.isfinite(hmax) and hmax > 0:
            ax1.axvline(hmax, color="C3", ls=":", label=f"largest stable h = {hmax:.3g}")
        ax1.set_xlabel("step size h")
        ax1.set_ylabel("|R(hλ)|")
        ax1.set_title("amplification of one step against h")
        ax1.legend(fontsize=8)
        return fig


def stability(
    func: Callable,
    y: Tensor,
    method: str | ButcherTableau | IMEXTableau | None = None,
    step_size: float | None = None,
    *,
    t: float = 0.0,
    implicit=None,
    k: int = 6,
    which: Sequence[str] = ("LM", "LR"),
    dense: bool | None = None,
    T: float | None = 1.0,
    tol: float = 1e-8,
    flow_tol: float = 1e-4,
    power_iterations: int = 60,
    seed: int = 0,
) -> StabilityResult:
    r"""Where the Jacobian's spectrum at ``y`` sits in the method's stability region.

    The extreme eigenvalues of :math:`J = \partial f/\partial y (t, y)` are
    computed matrix-free: Jacobian–vector products from :func:`torch.func.jvp`
    behind a :class:`scipy.sparse.linalg.LinearOperator`, ARPACK's ``eigs`` for
    each ``which`` (largest magnitude, largest real part, largest imaginary
    part). For small states the dense Jacobian (:func:`torch.func.jacfwd`) and
    :func:`scipy.linalg.eigvals` give the full spectrum, which cross-checks
    ARPACK and is used for the step limit. Each :math:`h\lambda` is tested
    against the exact stability function; the largest stable step is the
    smallest, over the eigenvalues, of the first exit of the ray
    :math:`h \mapsto h\lambda` from the region (roots of :math:`|R|^2 - 1`).

    For IMEX methods ``func`` is the explicit part of ``y' = func(t, y) - L y``:
    its spectrum is tested against the IMEX scheme's region for every sampled
    eigenvalue :math:`\mu` of ``L`` (both scale with ``h``), with ``L``'s
    extreme eigenvalues from ``eigsh``.

    With ``T`` given, the amplification of input perturbations by the whole
    discrete solve over ``[t, t + T]`` is estimated by power iteration on
    :math:`J_\Phi^T J_\Phi` (the flow map's Jacobian): the forward stability
    of the network.

    Parameters
    ----------
    func : callable or ODE block
        ``func(t, y)``; an object with an ``rhs`` attribute (an ODE block) gives
        its right-hand side and, unless given here, its method, step and ``implicit``.
    y : Tensor
        The state at which to linearise (any shape; the whole tensor is the state).
    method : str, ButcherTableau or IMEXTableau, optional
        Default: the ODE block's method, else ``"rk4"``.
    step_size : float
        The step ``h`` (default for ODE blocks: ``T / steps``).
    t : float
        Time at which ``func`` is linearised.
    implicit : linear operator, optional
        ``L`` for IMEX methods.
    k : int
        Eigenvalues per ARPACK run.
    which : sequence of str
        ARPACK targets among ``"LM"``, ``"LR"``, ``"SR"``, ``"LI"``.
    dense : bool, optional
        Compute the dense spectrum too (default: when the state has at most 1024 entries).
    T : float or None, default 1.0
        Horizon of the flow-map amplification; ``None`` skips it.
    tol : float
        ARPACK tolerance of the Jacobian's eigenvalues.
    flow_tol : float
        Relative residual tolerance of the flow-map amplification (of its square).
    power_iterations : int
        Most Lanczos iterations of the flow-map amplification.
    seed : int
        Seed of the starting vectors.

    Returns
    -------
    StabilityResult

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument, named in the message.
    odenet.errors.FunctionOutputError
        ``func`` returns something other than a finite tensor of ``y``'s shape, dtype and
        device at ``y``, or its Jacobian there is not finite.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> K = torch.randn(20, 20, dtype=torch.float64) / 20 ** 0.5
    >>> f = lambda t, y: -K.T @ torch.tanh(K @ y)      # parabolic: real spectrum <= 0
    >>> res = analysis.stability(f, torch.randn(20, dtype=torch.float64), "rk4", 0.5, k=4)
    >>> res.stable, res.max_real <= 1e-12, res.arpack_error < 1e-8
    (True, True, True)
    """
    a = _check_arguments(func, y, method, step_size, t, implicit, k, which, dense, T, tol,
                         flow_tol, power_iterations, seed)
    f, y, tab, h = a.func, a.y, a.tableau, a.step_size
    tt = torch.tensor(a.t, dtype=y.dtype, device=y.device)
    _check_value(f, tt, y)
    J = JacobianOperator(lambda x: f(tt, x), y, name="func")
    arpack_vals, converged, dense_vals = _spectrum(J, a)
    arpack_error = None
    if dense_vals is not None and arpack_vals:
        rho = max(np.abs(dense_vals).max(), 1e-300)
        arpack_error = float(
            max(float(np.abs(dense_vals - lam).min()) / rho for _, lam in arpack_vals)
        )
    extreme = _extreme(arpack_vals, dense_vals, a.which, a.k)
    spectrum = np.asarray(dense_vals if dense_vals is not None else [v for _, v in extreme])
    mu = np.zeros(1)
    implicit_range = None
    if isinstance(tab, IMEXTableau):
        lo, hi = _implicit_spectrum(a.implicit, y, a.seed, a.tol)
        implicit_range = [lo, hi]
        mu = _mu_samples(lo, hi)
    amp = iters = None
    if a.T is not None:
        amp, iters = flow_amplification(
            f, y, tab, h, a.T, t0=a.t, implicit=a.implicit, iterations=a.power_iterations,
            tol=a.flow_tol, seed=a.seed,
        )
    return StabilityResult(
        _rows(tab, extreme, mu, h),
        tableau=tab,
        mu=mu,
        method=tab.name,
        step_size=h,
        state_size=J.n,
        eigenvalues=[v for _, v in extreme],
        dense_eigenvalues=None if dense_vals is None else list(dense_vals),
        **_limits(tab, spectrum, mu, h),
        arpack_converged=converged,
        arpack_error=arpack_error,
        implicit_range=implicit_range,
        T=a.T,
        flow_amplification=amp,
        power_iterations=iters,
    )


class _Arguments(NamedTuple):
    """The checked arguments of :func:`stability`."""

    func: Callable
    y: Tensor
    tableau: ButcherTableau | IMEXTableau
    step_size: float
    t: float
    implicit: object
    k: int
    which: tuple[str, ...]
    dense: bool | None
    T: float | None
    tol: float
    flow_tol: float
    power_iterations: int
    seed: int


def _check_arguments(func, y, method, step_size, t, implicit, k, which, dense, T, tol, flow_tol,
                     power_iterations, seed) -> _Arguments:
    """:func:`stability`'s arguments checked, in order, with an ODE block's defaults."""
    f, block = unwrap_func(func)
    if block:
        if method is None:
            method = block.get("method")
        if step_size is None and "T" in block and "steps" in block:
            step_size = check_positive(block["T"], "func.T") / check_int(
                block["steps"], "func.steps", 1)
        if implicit is None:
            implicit = block.get("implicit")
    if isinstance(y, (tuple, list)):
        raise ArgumentTypeError("y: stability takes a single Tensor state, not a tuple")
    y = check_tensor(y, "y").detach()
    tab = resolve_method("rk4" if method is None else method)
    if step_size is None:
        raise ArgumentError("step_size: required (the step h whose stability is checked)")
    h = check_positive(step_size, "step_size")
    t = check_real(t, "t")
    if T is not None:
        T = check_positive(T, "T")
    k = check_int(k, "k", 1)
    which = _check_which(which)
    dense = check_bool(dense, "dense", allow_none=True)
    tol = check_positive(tol, "tol", allow_zero=True)
    flow_tol = check_positive(flow_tol, "flow_tol")
    power_iterations = check_int(power_iterations, "power_iterations", 1)
    seed = check_seed(seed)
    check_implicit(tab, implicit)
    return _Arguments(f, y, tab, h, t, implicit, k, which, dense, T, tol, flow_tol,
                      power_iterations, seed)


def _check_which(which: object) -> tuple[str, ...]:
    if isinstance(which, str):
        which = (which,)
    if not isinstance(which, (list, tuple)):
        raise ArgumentTypeError(
            f"which: expected a sequence of ARPACK targets among {_WHICH}, got "
            f"{type(which).__name__}"
        )
    which = tuple(which)
    bad = [w for w in which if not isinstance(w, str) or w not in _WHICH]
    if bad or not which:
        raise ArgumentError(f"which: expected entries among {_WHICH}, got {list(which)}")
    return which


def _check_value(f: Callable, tt: Tensor, y: Tensor) -> None:
    """``f(t, y)`` is a finite Tensor of the state's shape, dtype and device."""
    with torch.no_grad():
        out = f(tt, y)
    _check_output(out, y, False)
    if not bool(torch.isfinite(out).all()):
        raise FunctionOutputError(
            "func: returned non-finite values (NaN or inf) at y; its spectrum there is "
            "undefined"
        )


def _spectrum(J: JacobianOperator, a: _Arguments):
    """ARPACK's extreme eigenvalues ``[(target, λ)]``, whether all converged, and the dense
    spectrum (``None`` for large states unless ``dense``)."""
    n = J.n
    use_dense = n <= _DENSE_LIMIT if a.dense is None else bool(a.dense)
    arpack_vals: list[tuple[str, complex]] = []
    converged = True
    if a.k < n - 1:
        op = J.linear_operator()
        order = sorted(a.which, key=lambda w: w != "LM")  # LM first: its radius sets the shifts
        radius = 0.0
        for i, wh in enumerate(order):
            shift = {"LM": 0.0, "SR": -radius}.get(wh, radius)
            vals, ok = _arpack(op, n, a.k, wh, a.tol, a.seed + i, shift, light=use_dense)
            if wh == "LM" and len(vals):
                radius = float(np.abs(vals).max())
            converged &= ok
            arpack_vals.extend((wh, complex(v)) for v in vals)
        if not converged and not use_dense:
            warnings.warn(
                "stability: ARPACK did not converge for every eigenvalue; the partial spectrum "
                "is reported (raise tol or k)",
                RuntimeWarning,
                stacklevel=3,  # stability's caller
            )
    elif not use_dense:
        use_dense = True  # too small for ARPACK
    dense_vals = scipy.linalg.eigvals(J.dense()) if use_dense else None
    return arpack_vals, converged, dense_vals


def _extreme(arpack_vals: list[tuple[str, complex]], dense_vals, which: Sequence[str],
             k: int) -> list[tuple[str, complex]]:
    """The rows' eigenvalues: ARPACK's, and the dense ones for targets ARPACK missed."""
    found = [(wh, lam) for wh, lam in arpack_vals]
    if dense_vals is not None:
        dv = np.asarray(dense_vals)
        order = {"LM": -np.abs(dv), "LR": -dv.real, "SR": dv.real, "LI": -dv.imag}
        for wh in which:
            if not any(src == wh for src, _ in arpack_vals):
                found += [(f"dense {wh}", complex(dv[i])) for i in np.argsort(order[wh])[:k]]
    seen: dict[tuple[float, float], str] = {}
    for wh, lam in found:
        seen.setdefault((round(lam.real, 10), round(lam.imag, 10)), wh)
    return [(src, complex(*key)) for key, src in seen.items()]


def _limits(tab, spectrum: np.ndarray, mu: np.ndarray, h: float) -> dict:
    """The spectral radius, the step limits along every eigenvalue (conjugates share one) and
    whether every ``hλ`` lies in the region."""
    rho = float(np.abs(spectrum).max()) if spectrum.size else 0.0
    max_real = float(spectrum.real.max()) if spectrum.size else 0.0
    uniq = np.unique(np.round(spectrum.real, 12) + 1j * np.round(np.abs(spectrum.imag), 12))
    limits = max_stable_steps(tab, uniq, mu)
    growing_tol = 1e-9 * max(rho, 1e-300)
    damped = uniq.real <= growing_tol
    absR = np.abs(evaluate_R(tab, (h * uniq)[:, None], h * mu[None, :])).max(axis=1)
    return {
        "spectral_radius": rho,
        "max_real": max_real,
        "n_growing": int((spectrum.real > growing_tol).sum()),
        "stable": bool((absR <= 1.0 + 1e-10).all()),
        "max_step": float(limits.min()) if limits.size else float("inf"),
        "max_step_damped": float(limits[damped].min()) if damped.any() else float("inf"),
    }


def _rows(tab, extreme: list[tuple[str, complex]], mu: np.ndarray, h: float) -> list[dict]:
    rows = []
    for src, lam in extreme:
        zl = h * lam
        ar = float(np.abs(evaluate_R(tab, np.full(mu.shape, zl), h * mu)).max())
        rows.append(
            {
                "source": src,
                "eigenvalue": lam,
                "h*eigenvalue": zl,
                "|R|": ar,
                "in_region": ar <= 1.0 + 1e-10,
                "max_step": float(max_stable_steps(tab, [lam], mu)[0]),
            }
        )
    return rows
