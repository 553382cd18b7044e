"""A training monitor: every ``k`` optimiser steps, each ODE block's stability, gradient error
and reconstruction error on a small probe batch, as JSON lines (and TensorBoard scalars)."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import odenet
from odenet import IMEXTableau
from odenet.analysis._jacobian import JacobianOperator
from odenet.analysis._region import evaluate_R, max_stable_steps
from odenet.analysis._user_model import BlockCapture, capture_blocks, check_inputs
from odenet.errors import ArgumentError, ArgumentTypeError, NonFiniteStateError

__all__ = ["MONITOR_THRESHOLDS", "Monitor", "MonitorWarning", "krylov_eigenvalues"]

#: Default thresholds: a warning is issued (once per block and quantity) when a value exceeds
#: its threshold. ``step_ratio``: the block's step over the largest stable step along the
#: estimated damped spectrum (above 1: some damped mode leaves the stability region);
#: ``gradient_error``: relative ∂L/∂θ error of the block's strategy against backprop;
#: ``reconstruction_error``: relative error of y0 rebuilt by a reverse-time solve from y(T).
MONITOR_THRESHOLDS: dict[str, float] = {
    "step_ratio": 1.0,
    "gradient_error": 1e-3,
    "reconstruction_error": 1e-2,
}

_QUANTITIES = ("stability", "gradient", "reconstruction")


class MonitorWarning(RuntimeWarning):
    """A monitored quantity of an ODE block crossed its threshold (issued once per block and
    quantity).

    Examples
    --------
    >>> from odenet.analysis._monitor import MonitorWarning
    >>> issubclass(MonitorWarning, RuntimeWarning)
    True
    """


def krylov_eigenvalues(func: Callable[[Tensor], Tensor], y: Tensor, steps: int = 10,
                       seed: int = 0) -> np.ndarray:
    r"""Ritz values of the Jacobian of ``func`` at ``y`` after ``steps`` Arnoldi steps.

    Each step is one Jacobian–vector product (forward mode, matrix-free); the Ritz values
    (eigenvalues of the Hessenberg matrix, modified Gram–Schmidt with one
    reorthogonalisation) approximate the extreme eigenvalues, the outlying ones first. With
    ``steps`` equal to the state size they are the whole spectrum; for a normal Jacobian
    (e.g. symmetric) they lie in the convex hull of the spectrum, so their largest modulus
    never exceeds the spectral radius.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._monitor import krylov_eigenvalues
    >>> A = torch.diag(torch.tensor([-1.0, -2.0, -8.0], dtype=torch.float64))
    >>> lam = krylov_eigenvalues(lambda y: A @ y, torch.ones(3, dtype=torch.float64), 3)
    >>> sorted(lam.real.round(8).tolist())
    [-8.0, -2.0, -1.0]
    """
    J = JacobianOperator(func, y, name="rhs")
    n = J.n
    m = max(1, min(int(steps), n))
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y)
    V = [v / v.norm()]
    H = np.zeros((m + 1, m))
    k = m
    for j in range(m):
        w = J.matvec(V[j]).reshape(y.shape).to(y)
        for _ in range(2):
            for i, vi in enumerate(V):
                c = float((w * vi).sum())
                H[i, j] += c
                w = w - c * vi
        beta = float(w.norm())
        H[j + 1, j] = beta
        if beta <= 1e-12 * max(float(np.abs(H[: j + 1, : j + 1]).max()), 1e-300):
            k = j + 1
            break
        V.append(w / beta)
    return np.linalg.eigvals(H[:k, :k])


def _implicit_max(implicit, y: Tensor, steps: int) -> float:
    """Largest eigenvalue of a symmetric positive semi-definite ``L`` (a few Lanczos steps)."""
    vals = krylov_eigenvalues(lambda x: implicit(x), y, steps)
    return float(max(vals.real.max(), 0.0))


class Monitor:
    r"""Watch a network's ODE blocks while it trains.

    Call :meth:`step` after every optimiser step; every ``every`` calls the monitor runs
    the network on its small probe batch (forward hooks capture each block's input and the
    loss gradient at its output, the model in evaluation mode; parameters' ``.grad`` are
    not touched) and records for every block:

    - **stability**: Ritz values of :math:`J = \partial f/\partial y` at the first probe
      sample's block input after ``krylov_steps`` Arnoldi steps (:func:`krylov_eigenvalues`,
      one forward-mode product each), their :math:`h\rho`, the largest :math:`|R(h\lambda)|`
      of the block's method over them (IMEX methods: for the implicit operator's extreme
      eigenvalues too) and ``step_ratio``: ``h`` over the largest stable step along the
      estimated damped spectrum (:math:`\mathrm{Re}\,\lambda \le 0`; above 1 the step leaves
      the stability region);
    - **gradient**: ``gradient_error``, the relative error of the block's strategy's
      :math:`\partial L/\partial\theta` against backprop, :math:`L` the network's loss
      linearised at the block output (0 for backprop itself);
    - **reconstruction**: ``reconstruction_error``, :math:`\|\hat y_0 - y_0\|/\|y_0\|` of a
      reverse-time solve from :math:`y(T)` with the block's method and steps (what the
      continuous adjoint relies on; ``None`` for IMEX blocks).

    Each record is one JSON line in ``path`` (``{"step", "seconds", "loss", "blocks":
    {name: {...}}}``), is kept in :attr:`history`, and goes to TensorBoard as scalars
    ``block/quantity`` when ``tensorboard`` is a writer, or a folder and
    ``torch.utils.tensorboard`` is importable (otherwise TensorBoard is skipped without a
    warning). A value above its threshold (:data:`MONITOR_THRESHOLDS`, overridable) issues a
    :class:`MonitorWarning` once per block and quantity.

    Parameters
    ----------
    model : nn.Module
        The network being trained (containing ODE blocks; see
        :mod:`odenet.analysis._user_model` for the block protocol).
    inputs : Tensor or tuple of Tensor
        The probe batch (a few samples: its size sets the cost).
    targets : Tensor, optional
    loss : callable, optional
        The network's loss ``loss(output, targets)`` (defaults as
        :func:`odenet.analysis.report`).
    every : int, default 100
        Record every ``every`` calls of :meth:`step` (the first call records too).
    path : str or path-like, optional
        JSON-lines file (appended to).
    tensorboard : None, False, str, path-like or writer, default None
        ``None``: a ``tensorboard`` folder beside ``path`` when ``torch.utils.tensorboard``
        is importable; a folder: the log directory; an object with ``add_scalar``: used as is;
        ``False``: off.
    thresholds : dict, optional
        Overrides of :data:`MONITOR_THRESHOLDS`.
    quantities : sequence of str, default all
        Among ``"stability"``, ``"gradient"``, ``"reconstruction"``.
    krylov_steps : int, default 8
        Arnoldi steps of the stability estimate.

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument (no ODE block in the model, a non-positive ``every``, an unknown
        threshold or quantity), named in the message.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis import Monitor
    >>> net = odenet.models.ODEResNet(1, 3, widths=(4,), blocks=2, steps=2, gradient="adjoint")
    >>> x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.01)
    >>> mon = Monitor(net, x[:2], targets=y[:2], every=2, tensorboard=False)
    >>> for i in range(4):
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(net(x), y).backward()
    ...     opt.step()
    ...     _ = mon.step()
    >>> [r["step"] for r in mon.history]
    [0, 2]
    >>> sorted(mon.history[-1]["blocks"]["stages.0.0"])  # doctest: +NORMALIZE_WHITESPACE
    ['gradient_error', 'h', 'h_rho', 'max_abs_R', 'method', 'reconstruction_error',
     'spectral_radius', 'step_ratio', 'steps', 'strategy']
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor | Sequence[Tensor],
        *,
        targets: Tensor | None = None,
        loss: Callable | None = None,
        every: int = 100,
        path: str | os.PathLike | None = None,
        tensorboard: Any = None,
        thresholds: Mapping[str, float] | None = None,
        quantities: Sequence[str] = _QUANTITIES,
        krylov_steps: int = 8,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"model: expected a torch.nn.Module, got "
                                    f"{type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ArgumentError(f"every: expected a positive integer, got {every!r}")
        if isinstance(krylov_steps, bool) or not isinstance(krylov_steps, int) or \
                krylov_steps < 1:
            raise ArgumentError(f"krylov_steps: expected a positive integer, got "
                                f"{krylov_steps!r}")
        self.thresholds = dict(MONITOR_THRESHOLDS)
        if thresholds is not None:
            if not isinstance(thresholds, Mapping):
                raise ArgumentTypeError(f"thresholds: expected a dict, got "
                                        f"{type(thresholds).__name__}")
            for k, v in thresholds.items():
                if k not in MONITOR_THRESHOLDS:
                    raise ArgumentError(f"thresholds: unknown quantity {k!r}; valid are "
                                        + ", ".join(map(repr, MONITOR_THRESHOLDS)))
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0):
                    raise ArgumentError(f"thresholds[{k!r}]: expected a positive number, got "
                                        f"{v!r}")
                self.thresholds[k] = float(v)
        if isinstance(quantities, str):
            quantities = [quantities]
        quantities = list(quantities)
        bad = [q for q in quantities if q not in _QUANTITIES]
        if bad or not quantities:
            raise ArgumentError(f"quantities: expected some of {', '.join(map(repr, _QUANTITIES))}"
                                f", got {quantities!r}")
        self.model, self.inputs = model, check_inputs(inputs)
        self.targets, self.loss = targets, loss
        self.every, self.quantities, self.krylov_steps = every, quantities, krylov_steps
        capture_blocks(model, self.inputs, targets=targets, loss=loss)  # checks the model now
        self.path = None if path is None else Path(os.fspath(path))
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0
        self._calls = 0
        self._warned: set[tuple[str, str]] = set()
        self._writer = self._open_writer(tensorboard)

    # -- outputs ------------------------------------------------------------------------------
    def _open_writer(self, tensorboard: Any):
        if tensorboard is False:
            return None
        if tensorboard is not None and not isinstance(tensorboard, (str, os.PathLike)):
            if not callable(getattr(tensorboard, "add_scalar", None)):
                raise ArgumentTypeError(f"tensorboard: expected a folder, a writer with "
                                        f"add_scalar, None or False, got "
                                        f"{type(tensorboard).__name__}")
            return tensorboard
        folder = tensorboard if tensorboard is not None else (
            None if self.path is None else self.path.parent / "tensorboard")
        if folder is None:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: skipped without a warning
            return None
        return SummaryWriter(log_dir=os.fspath(folder))

    def close(self) -> None:
        """Flush and close the TensorBoard writer (if the monitor opened one)."""
        if self._writer is not None and callable(getattr(self._writer, "close", None)):
            self._writer.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recording ----------------------------------------------------------------------------
    def step(self, step: int | None = None) -> dict[str, Any] | None:
        """Count one optimiser step; every ``every`` calls, :meth:`record` (returns its record,
        else ``None``). ``step`` overrides the counter in the record."""
        n = self._calls
        self._calls += 1
        if n % self.every:
            return None
        return self.record(n if step is None else step)

    def record(self, step: int | None = None) -> dict[str, Any]:
        """Measure every block now; write and return the record."""
        t0 = time.perf_counter()
        step = self._calls if step is None else int(step)
        caps, loss = capture_blocks(self.model, self.inputs, targets=self.targets,
                                    loss=self.loss)
        blocks = {c.name: self._block(c) for c in caps}
        rec = {"step": step, "loss": loss, "blocks": blocks}
        self.seconds += time.perf_counter() - t0
        rec["seconds"] = time.perf_counter() - t0
        self.history.append(rec)
        self._write(rec)
        self._check(rec)
        return rec

    def _block(self, cap: BlockCapture) -> dict[str, Any]:
        out: dict[str, Any] = {"method": cap.tableau.name, "steps": cap.steps,
                               "h": cap.step_size, "strategy": cap.strategy}
        if "stability" in self.quantities:
            out.update(_stability(cap, self.krylov_steps))
        if "gradient" in self.quantities:
            out["gradient_error"] = _gradient_error(cap)
        if "reconstruction" in self.quantities:
            out["reconstruction_error"] = _reconstruction_error(cap)
        return out

    def _write(self, rec: Mapping[str, Any]) -> None:
        if self.path is not None:
            from odenet.analysis._results import jsonable

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(jsonable(rec), allow_nan=False) + "\n")
        if self._writer is not None:
            for name, vals in rec["blocks"].items():
                for k, v in vals.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and \
                            math.isfinite(v):
                        self._writer.add_scalar(f"{name}/{k}", v, rec["step"])

    def _check(self, rec: Mapping[str, Any]) -> None:
        for name, vals in rec["blocks"].items():
            for key, limit in self.thresholds.items():
                v = vals.get(key)
                if v is None or (key, name) in self._warned:
                    continue
                if not (v <= limit):  # NaN and inf cross too
                    self._warned.add((key, name))
                    warnings.warn(
                        f"Monitor: block {name!r} at step {rec['step']}: {key} = {v:.3g} "
                        f"exceeds {limit:g} ({_MEANING[key]})", MonitorWarning, stacklevel=3)


_MEANING = {
    "step_ratio": "the step leaves the method's stability region for some damped mode",
    "gradient_error": "the strategy's gradient parts from backprop's",
    "reconstruction_error": "the reverse-time solve does not rebuild the block input",
}


def _stability(cap: BlockCapture, steps: int) -> dict[str, Any]:
    y = cap.input[:1].detach()
    t0 = torch.zeros((), dtype=y.dtype, device=y.device)
    lam = krylov_eigenvalues(lambda x: cap.rhs(t0, x), y, steps)
    h = cap.step_size
    mus = np.zeros(1)
    if isinstance(cap.tableau, IMEXTableau) and cap.implicit is not None:
        mus = np.array([0.0, _implicit_max(cap.implicit, y, steps)])
    R = np.abs(evaluate_R(cap.tableau, (h * lam)[:, None], (h * mus)[None, :])).max()
    rho = float(np.abs(lam).max())
    damped = lam[lam.real <= 1e-9 * max(rho, 1e-300)]
    hmax = float(max_stable_steps(cap.tableau, damped, mus).min()) if damped.size else math.inf
    return {"spectral_radius": rho, "h_rho": h * rho, "max_abs_R": float(R),
            "step_ratio": h / hmax if hmax > 0 else math.inf}


def _grads(cap: BlockCapture, strategy) -> Tensor:
    t = torch.tensor([0.0, cap.T], dtype=cap.input.dtype, device=cap.input.device)
    x = cap.input.detach().clone().requires_grad_(True)
    y = odenet.odeint(cap.rhs, x, t, method=cap.tableau, step_size=cap.step_size,
                      gradient=strategy, implicit=cap.implicit, params=list(cap.params))
    gs = torch.autograd.grad(cap.loss()(y), list(cap.params), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double()
                      for g, p in zip(gs, cap.params)])


def _gradient_error(cap: BlockCapture) -> float | None:
    if not cap.params or cap.gradient is None:
        return None
    if isinstance(cap.gradient, odenet.Backprop) and type(cap.gradient) is odenet.Backprop:
        return 0.0
    ref = _grads(cap, "backprop")
    try:
        g = _grads(cap, cap.gradient)
    except NonFiniteStateError:
        return math.inf
    return float((g - ref).norm()) / (float(ref.norm()) or 1.0)


def _reconstruction_error(cap: BlockCapture) -> float | None:
    if isinstance(cap.tableau, IMEXTableau):
        return None
    y0 = cap.input
    t = torch.tensor([0.0, cap.T], dtype=y0.dtype, device=y0.device)
    with torch.no_grad():
        try:
            yT = odenet.odeint(cap.rhs, y0, t, method=cap.tableau, step_size=cap.step_size)[-1]
            back = odenet.odeint(cap.rhs, yT, t.flip(0), method=cap.tableau,
                                 step_size=cap.step_size)[-1]
        except NonFiniteStateError:
            return math.inf
    return float((back - y0).norm()) / (float(y0.norm()) or 1.0)
