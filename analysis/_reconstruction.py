"""Reconstruction by inverse steps: how far the reversible methods can be trusted.

The reversible gradient strategy (:class:`odenet.Reversible`) rebuilds every state of the
forward pass by running the method's inverse step from the final state. In exact
arithmetic the rebuilt states are the forward ones; in floating point each inverse step
adds round-off and amplifies what came before. This module measures that drift on a
user's network (:func:`reconstruction`), predicts it on the linear test equation
(:func:`reversible_growth`), and feeds the report's ``reconstruction`` section.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import odenet
from odenet.analysis import _html as H
from odenet.analysis._common import check_positive, check_real, check_steps, unwrap_func
from odenet.analysis._results import Result, new_figure, steps_axis
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers import ReversibleMethod, resolve_method

__all__ = [
    "ReconstructionResult",
    "reconstruction",
    "reconstruction_keys",
    "reconstruction_section",
    "reversible_growth",
    "run_reconstruction",
    "run_section",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _methods(methods: object) -> list[ReversibleMethod]:
    if isinstance(methods, (str, ReversibleMethod)):
        methods = [methods]
    if not isinstance(methods, Sequence) or not methods:
        raise ArgumentTypeError(
            "methods: expected a reversible method (name or ReversibleMethod) or a non-empty "
            f"sequence of them, got {type(methods).__name__}"
        )
    out = [resolve_method(m, f"methods[{i}]", kind="reversible") for i, m in enumerate(methods)]
    labels = [_label(m) for m in out]
    for lab in labels:
        if labels.count(lab) > 1:
            raise ArgumentError(f"methods: expected distinct methods, got {lab!r} twice")
    return out


def _label(m: ReversibleMethod) -> str:
    eta = getattr(m, "eta", 1.0)
    return m.name if eta == 1.0 else f"{m.name}(eta={eta:g})"


def _dtypes(dtypes: object) -> list[torch.dtype]:
    if isinstance(dtypes, (str, torch.dtype)):
        dtypes = [dtypes]
    out = []
    for i, d in enumerate(dtypes):  # type: ignore[union-attr]
        d = _DTYPES.get(d, d) if isinstance(d, str) else d
        if d not in (torch.float32, torch.float64):
            raise ArgumentError(
                f"dtypes[{i}]: expected 'float32' or 'float64' (or the torch dtypes), got {d!r}"
            )
        out.append(d)
    if not out:
        raise ArgumentError("dtypes: expected at least one dtype")
    return out


def _cast(func: Callable, dtype: torch.dtype) -> Callable:
    """A copy of ``func`` in ``dtype`` when it is a module; a plain callable as it is."""
    if isinstance(func, nn.Module):
        return copy.deepcopy(func).to(dtype)
    return func


def _tol(dtype: torch.dtype, tolerance: float | None) -> float:
    return math.sqrt(torch.finfo(dtype).eps) if tolerance is None else tolerance


def _rel(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    num = max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))
    den = max(float(y.double().abs().max()) for y in b)
    r = num / max(den, 1e-300)
    return r if math.isfinite(r) else math.inf


class ReconstructionResult(Result):
    r"""Drift of the states rebuilt by inverse steps, per method, dtype and ``Nt``.

    Returned by :func:`reconstruction`. Columns: ``error`` is the relative difference
    :math:`\max|\hat y_0 - y_0| / \max|y_0|` after ``Nt`` steps forward and ``Nt``
    inverse steps back (``inf``: the rebuilt state blew up); ``aux_error`` the same for
    what the method carries (``ŷ``, ``v``, cached evaluations); ``gradient_error`` the
    relative difference between the gradients of ``gradient="reversible"`` and
    ``"backprop"`` of the same scheme (``None`` where not computed); ``fd_error`` (float64
    rows) the relative difference of its directional derivative along a random direction of
    the input and the parameters from a central finite difference; ``trusted`` whether
    ``error`` is within the tolerance (default :math:`\sqrt{\varepsilon}` of the dtype).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> lin = torch.nn.Linear(3, 3).double()
    >>> res = analysis.reconstruction(lambda t, y: torch.tanh(lin(y)),
    ...                               torch.randn(2, 3, dtype=torch.float64),
    ...                               steps=[10, 100], dtypes=["float64"], gradients=False)
    >>> [r["steps"] for r in res.rows]
    [10, 100, 10, 100]
    >>> res.trusted_steps("reversible_heun", "float64")
    100
    """

    kind = "reconstruction"
    columns = ("method", "dtype", "steps", "h", "error", "aux_error", "gradient_error",
               "fd_error", "trusted")

    def title(self) -> str:
        return f"reconstruction by inverse steps over [0, {self.T:g}]"

    def _rows(self, method: str, dtype: str) -> list[dict]:
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace("torch.", "")
        return [r for r in self.rows if r["method"] == method and r["dtype"] == dtype]

    def trusted_steps(self, method: str, dtype: str | torch.dtype) -> int | None:
        """The largest tried ``Nt`` up to which every tried ``Nt`` reconstructed within the
        tolerance (``None``: not even the smallest)."""
        best = None
        for r in sorted(self._rows(method, dtype), key=lambda r: r["steps"]):
            if not r["trusted"]:
                break
            best = r["steps"]
        return best

    def first_failure(self, method: str, dtype: str | torch.dtype) -> int | None:
        """The smallest tried ``Nt`` whose reconstruction exceeded the tolerance (``None``:
        none did)."""
        bad = [r["steps"] for r in self._rows(method, dtype) if not r["trusted"]]
        return min(bad) if bad else None

    def verdicts(self) -> list[str]:
        """One sentence per method and dtype: up to which ``Nt`` the reconstruction holds."""
        out = []
        pairs = dict.fromkeys((r["method"], r["dtype"]) for r in self.rows)
        for m, d in pairs:
            ok, bad = self.trusted_steps(m, d), self.first_failure(m, d)
            tol = self.tolerances[d]
            if bad is None:
                out.append(f"{m} in {d}: trustworthy for every tried Nt (up to {ok}; "
                           f"error <= {tol:.1e})")
            elif ok is None:
                out.append(f"{m} in {d}: NOT trustworthy from the smallest tried Nt = {bad} "
                           f"(error > {tol:.1e})")
            else:
                out.append(f"{m} in {d}: trustworthy up to Nt = {ok}, not beyond Nt = {bad} "
                           f"(error > {tol:.1e})")
        return out

    def notes(self) -> list[str]:
        return self.verdicts()

    def plot(self, ax=None):
        """Reconstruction error against ``Nt``, log-log: one colour per method, solid float64,
        dashed float32; dotted lines mark each dtype's tolerance.

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> res = analysis.reconstruction(lambda t, y: -y, torch.ones(2, dtype=torch.float64),
        ...                               steps=[4, 8], dtypes=["float64"], gradients=False)
        >>> res.plot().axes[0].get_yscale()
        'log'
        """
        if ax is None:
            fig, (ax,) = new_figure(width=6.4, height=4.6)
        else:
            fig = ax.figure
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        dtypes = list(dict.fromkeys(r["dtype"] for r in self.rows))
        floor = 1e-18
        for m in methods:
            for d in dtypes:
                rows = sorted(self._rows(m, d), key=lambda r: r["steps"])
                if not rows:
                    continue
                n = np.array([r["steps"] for r in rows])
                e = np.array([r["error"] for r in rows], dtype=float)
                e = np.where(np.isfinite(e), np.maximum(e, floor), np.nan)
                ls = "--" if d == "float32" else "-"
                ax.loglog(n, e, "o" + ls, color=f"C{methods.index(m)}", ms=4, label=f"{m}, {d}")
        for d in dtypes:
            ax.axhline(self.tolerances[d], color="0.5", ls=":", lw=1)
        steps_axis(ax, [r["steps"] for r in self.rows])
        ax.set_xlabel("steps Nt")
        ax.set_ylabel("relative error of the rebuilt y0")
        ax.set_title("Nt steps forward, then Nt inverse steps back")
        ax.legend(fontsize=8)
        return fig


def _solve_and_rebuild(f, method, y0, t0, T, nt):
    """Forward ``nt`` steps then ``nt`` inverse steps; (user error, aux error)."""
    h = T / nt
    with torch.no_grad():
        s0 = method.init(f, t0, y0)
        s = s0
        for n in range(nt):
            s = method.step(f, t0 + n * h, h, s)
            if n % 64 == 63 and not all(bool(torch.isfinite(c).all()) for c in s):
                return math.inf, math.inf
        if not all(bool(torch.isfinite(c).all()) for c in s):
            return math.inf, math.inf
        for n in reversed(range(nt)):
            s = method.inverse_step(f, t0 + n * h, h, s)
    m = len(y0)
    user = _rel(s[:m], s0[:m])
    aux = _rel(s[m:], s0[m:]) if len(s) > m else 0.0
    return user, aux


def _gradient_errors(func, y0, tuple_state, t0, T, nt, method, params, fd: bool):
    """Relative difference of the reversible gradient of one loss from backprop's, and (with
    ``fd``) of its directional derivative from a central finite difference (``None``
    otherwise)."""
    t = torch.tensor([t0, t0 + T], dtype=y0[0].dtype, device=y0[0].device)
    g = torch.Generator().manual_seed(0)

    def draw(c):
        return torch.randn(c.shape, generator=g, dtype=c.dtype).to(c.device)

    ws = [draw(c) for c in y0]

    def loss_of(x, gradient):
        state = x if tuple_state else x[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", odenet.gradients.ReconstructionWarning)
            out = odenet.odeint(func, state, t, method=method, step_size=T / nt,
                                gradient=gradient, params=params)
        outs = out if isinstance(out, tuple) else (out,)
        return sum((o[-1] * w).sum() for o, w in zip(outs, ws))

    grads = []
    for gradient in ("reversible", "backprop"):
        x = tuple(c.detach().clone().requires_grad_() for c in y0)
        with torch.enable_grad():
            grads.append(torch.autograd.grad(loss_of(x, gradient), [*x, *params],
                                             allow_unused=True))
    a = [u for u, v in zip(*grads) if u is not None and v is not None]
    b = [v for u, v in zip(*grads) if u is not None and v is not None]
    err = _rel(a, b) if a else 0.0
    if not fd:
        return err, None
    inputs = [*y0, *params]
    dirs = [draw(c) for c in inputs]
    eps = 1e-6 * max(1.0, max(float(c.detach().abs().max()) for c in inputs))
    exact = sum(float((gi * d).sum()) for gi, d in zip(grads[0], dirs) if gi is not None)
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            x = tuple(c + sign * eps * d for c, d in zip(y0, dirs))
            for p, d in zip(params, dirs[len(y0):]):
                p.add_(d, alpha=sign * eps)
            values.append(float(loss_of(x, "backprop")))
            for p, d in zip(params, dirs[len(y0):]):
                p.sub_(d, alpha=sign * eps)
    approx = (values[0] - values[1]) / (2 * eps)
    return err, abs(exact - approx) / max(abs(approx), 1e-300)


def reconstruction(
    func: Callable,
    y0: Tensor | tuple[Tensor, ...],
    T: float | None = None,
    methods: object = ("reversible_heun", "alf"),
    steps: Sequence[int] = (10, 100, 1000),
    dtypes: Sequence[str | torch.dtype] = ("float32", "float64"),
    *,
    t0: float = 0.0,
    tolerance: float | None = None,
    gradients: bool = True,
    gradient_max_steps: int = 256,
    params: Sequence[Tensor] | None = None,
) -> ReconstructionResult:
    r"""Up to which ``Nt`` and in which dtype states rebuilt by inverse steps can be trusted.

    For each reversible method, dtype and ``Nt``: ``Nt`` steps of size ``T / Nt`` from
    ``y0``, then ``Nt`` inverse steps back, and the relative error of the rebuilt ``y0``;
    with ``gradients``, also the relative difference between ``gradient="reversible"`` and
    backprop of the same scheme (up to ``gradient_max_steps`` steps: backprop stores every
    step) and, in float64, from a central finite difference along a random direction. A row
    is *trusted* when its error is within ``tolerance`` (default :math:`\sqrt{\varepsilon}`:
    3.5e-4 in float32, 1.5e-8 in float64), the level at which :class:`odenet.Reversible`
    warns. :meth:`ReconstructionResult.trusted_steps` then gives
    the ``Nt`` beyond which the reconstruction is not trustworthy for this network.

    Parameters
    ----------
    func : callable or ODE block
        ``func(t, y)``; a module is copied into each dtype; an ODE block contributes its
        right-hand side and ``T``. For ``leapfrog``, a partitioned ``func`` with a pair
        ``y0 = (y, z)`` (e.g. :class:`odenet.nn.HamiltonianRHS`).
    y0 : Tensor or tuple of Tensor
        The initial state (e.g. a block input).
    T : float, optional
        Length of the interval (default: the block's ``T``, else 1).
    methods : str, ReversibleMethod or sequence, default ("reversible_heun", "alf")
        Reversible methods (names of :data:`odenet.solvers.REVERSIBLE_METHODS` or objects
        such as ``odenet.solvers.ALF(eta=0.9)``).
    steps : sequence of int, default (10, 100, 1000)
        The step counts ``Nt``.
    dtypes : sequence, default ("float32", "float64")
    t0 : float, default 0
    tolerance : float, optional
        Relative error above which a row is not trusted.
    gradients : bool, default True
        Compare the reversible gradient with backprop's.
    gradient_max_steps : int, default 256
        Largest ``Nt`` of that comparison.
    params : sequence of Tensor, optional
        Parameters of the gradient comparison (default: ``func``'s, for a module).

    Returns
    -------
    ReconstructionResult

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> import odenet
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> block = odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(2, 2), "tanh"),
    ...                            method="alf", gradient="reversible")
    >>> res = analysis.reconstruction(block, torch.randn(1, 2, 4, 4), methods=["alf"],
    ...                               steps=[10, 100], gradient_max_steps=10)
    >>> res.trusted_steps("alf", "float64"), res.trusted_steps("alf", "float32")
    (100, 100)
    >>> res.rows[0]["gradient_error"] < 1e-3  # float32, 10 steps: reversible vs backprop
    True
    """
    f_raw, settings = unwrap_func(func)
    T = check_positive(T if T is not None else settings.get("T", 1.0), "T")
    t0 = check_real(t0, "t0")
    ms = _methods(methods)
    steps = check_steps(steps)
    dts = _dtypes(dtypes)
    if tolerance is not None:
        tolerance = check_positive(tolerance, "tolerance")
    if not isinstance(gradients, bool):
        raise ArgumentTypeError(
            f"gradients: expected True or False, got {type(gradients).__name__}"
        )
    y_in = tuple(y0) if isinstance(y0, (tuple, list)) else (y0,)
    for i, c in enumerate(y_in):
        if not isinstance(c, Tensor) or not c.is_floating_point():
            raise ArgumentTypeError(f"y0: expected floating-point tensors, got component {i}: "
                                    f"{type(c).__name__}")
    rows = []
    tols = {}
    for d in dts:
        dname = str(d).replace("torch.", "")
        tols[dname] = _tol(d, tolerance)
        fd = _cast(f_raw, d)
        yd = tuple(c.detach().to(d) for c in y_in)
        tuple_state = len(yd) > 1 or isinstance(y0, (tuple, list))

        def f(s, c, fd=fd, d=d, tuple_state=tuple_state):
            tt = torch.tensor(s, dtype=d, device=c[0].device)
            out = fd(tt, tuple(c) if tuple_state else c[0])
            return tuple(out) if tuple_state else (out,)

        ps = list(params) if params is not None else (
            list(fd.parameters()) if isinstance(fd, nn.Module) else [])
        if params is not None:
            ps = [p.detach().to(d).requires_grad_() for p in ps]
        for m in ms:
            m.check_state(len(yd), tuple_state)
            for nt in steps:
                err, aux = _solve_and_rebuild(f, m, yd, t0, T, nt)
                gerr = fderr = None
                if gradients and nt <= gradient_max_steps and math.isfinite(err):
                    gerr, fderr = _gradient_errors(fd, yd, tuple_state, t0, T, nt, m, ps,
                                                   d == torch.float64)
                rows.append({"method": _label(m), "dtype": dname, "steps": nt, "h": T / nt,
                             "error": err, "aux_error": aux, "gradient_error": gerr,
                             "fd_error": fderr, "trusted": bool(err <= tols[dname])})
    return ReconstructionResult(rows, T=T, tolerances=tols)


def reversible_growth(method: object, z: object) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-step amplification of the reversible map and of its inverse on the linear test
    equation, at ``z = hλ``.

    For ``reversible_heun`` and ``alf`` the test equation is ``y' = λy``; for ``leapfrog``
    the partitioned system ``y' = λz, z' = λy`` (eigenvalues ``±λ``; ``λ = iω`` is the
    harmonic oscillator). The step (and the inverse step) is linear in the augmented state;
    its matrix is assembled column by column from the method's own ``step`` /
    ``inverse_step`` in complex128 and its spectral radius returned. An inverse radius
    ``ρ⁻ > 1`` means that reconstruction errors grow like ``ρ⁻^Nt``.

    Parameters
    ----------
    method : str or ReversibleMethod
    z : complex or array_like of complex

    Returns
    -------
    forward, inverse : ndarray
        Spectral radii of the step and of the inverse step, shaped like ``z``.

    Examples
    --------
    >>> from odenet import analysis
    >>> fwd, inv = analysis.reversible_growth("leapfrog", [1.5j, 2.5j])
    >>> [round(float(x), 6) for x in fwd]  # stable for |h omega| <= 2 only
    [1.0, 4.0]
    >>> fwd, inv = analysis.reversible_growth("alf", [-0.5])  # a decaying mode
    >>> bool(inv[0] > 1)  # ... grows when rebuilt backwards
    True
    """
    m = resolve_method(method, "method", kind="reversible")
    zs = np.atleast_1d(np.asarray(z, dtype=np.complex128))
    fwd = np.empty(zs.shape, dtype=float)
    inv = np.empty(zs.shape, dtype=float)
    partitioned = m.name == "leapfrog"
    k = 2 if partitioned else 1
    width = m.width(k)
    for idx, zv in np.ndenumerate(zs):
        lam = complex(zv)

        def f(t, c, lam=lam):
            if partitioned:
                return (lam * c[1], lam * c[0])
            return (lam * c[0],)

        cols_f, cols_i = [], []
        for j in range(width):
            e = tuple(torch.tensor(1.0 + 0j if i == j else 0j, dtype=torch.complex128)
                      for i in range(width))
            cols_f.append([complex(x) for x in m.step(f, 0.0, 1.0, e)])
            cols_i.append([complex(x) for x in m.inverse_step(f, 0.0, 1.0, e)])
        fwd[idx] = float(np.abs(np.linalg.eigvals(np.array(cols_f).T)).max())
        inv[idx] = float(np.abs(np.linalg.eigvals(np.array(cols_i).T)).max())
    return fwd.reshape(np.shape(z)), inv.reshape(np.shape(z))


# -- the report's section ------------------------------------------------------------------------
#: The reconstruction section runs this many times the reversibility section's step counts.
STEP_FACTOR = 16


def run_reconstruction(spec: Mapping[str, Any], steps: Sequence[int]) -> ReconstructionResult:
    """The report's reconstruction section on the specification's ODE block (its explicit
    part ``f`` for IMEX models), in float32 and float64; gradients compared at the smallest
    step count.

    Examples
    --------
    >>> from odenet.analysis._reconstruction import run_reconstruction
    >>> res = run_reconstruction({"model": "dense", "channels": 2, "batch": 2}, [20, 40])
    >>> sorted({r["dtype"] for r in res.rows})
    ['float32', 'float64']
    """
    from odenet.analysis._models import build_case

    case = build_case(spec)
    return reconstruction(case.func, case.y0, case.T, ("reversible_heun", "alf"), steps,
                          gradient_max_steps=min(steps))


def reconstruction_section(results: Mapping[str, Any], figures: Sequence[str],
                           overlaps: Sequence[Sequence[str]]) -> str | None:
    """The HTML of the report's reconstruction section."""
    rc = results.get("reconstruction")
    if rc is None:
        return None
    return H.section(
        "Reconstruction by inverse steps",
        "The reversible methods rebuild every state of the forward pass by inverse steps "
        "(gradient='reversible', memory independent of Nt). The block is solved forward "
        "with Nt steps and rebuilt back with Nt inverse steps; the relative error of the "
        "rebuilt block input, in float32 and float64, against the tolerance √ε of the dtype "
        "(dotted). The gradient error compares gradient='reversible' with backprop of the "
        "same scheme.",
        figures, [H.table(rc.rows, rc.columns)], rc.verdicts())


def reconstruction_keys(results: Mapping[str, Any]) -> list[str]:
    """The section's headline sentences: where reconstruction stops being trustworthy."""
    rc = results.get("reconstruction")
    if not isinstance(rc, ReconstructionResult):
        return []
    return ["reconstruction by inverse steps: " + "; ".join(rc.verdicts())]



def run_section(context: Any) -> dict[str, Any]:
    """The report's runner (:data:`odenet.analysis._report.REPORT_SECTIONS`): the specification's
    block at :data:`STEP_FACTOR` times the reversibility section's step counts."""
    steps = [STEP_FACTOR * n for n in context.cfg["reversibility_steps"]]
    return {"reconstruction": run_reconstruction(context.spec, steps)}
