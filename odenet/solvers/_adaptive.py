"""Adaptive solves with the embedded Runge–Kutta pairs: the loop, its record, its replay.

:class:`AdaptiveSolve` runs the error-controlled loop of an embedded pair
(:mod:`odenet.solvers._controller`) and records every accepted step (its start,
its signed size, its end and the time its first stage saw). The recorded steps are
the discrete network that was computed: :meth:`AdaptiveSolve.replay` runs accepted
step ``n`` again with the very same operations, so recomputing strategies (ANODE,
checkpointing) differentiate exactly what the forward pass computed, with the step
sizes the controller chose held fixed.

Output times. By default a step lands exactly on every output time (the step that
would pass it is shortened, as for ``step_t``); nothing is interpolated, and each
output is a step end point. ``interpolate=True`` is torchdiffeq's dense output: steps
pass the output times and the outputs come from its fourth-order interpolant (the
torchdiffeq compat module uses it to reproduce torchdiffeq's numbers).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from odenet.errors import ArgumentError, NonFiniteStateError, StepSizeError
from odenet.solvers._controller import (
    AdaptiveOptions,
    Controller,
    error_ratio_tensor,
    host_scalar,
    initial_step,
)
from odenet.solvers._grid import time_resolution
from odenet.solvers._problem import _check_output, as_state, comps
from odenet.solvers._tableau import ButcherTableau

__all__ = ["AdaptiveSolve", "adaptive_tableau"]

Comps = tuple[Tensor, ...]
_Terms = tuple[tuple[int, float], ...]


def adaptive_tableau(method: object) -> ButcherTableau | None:
    """The embedded pair ``method`` names (or is), ``None`` when it is not an adaptive method.

    Examples
    --------
    >>> from odenet.solvers._adaptive import adaptive_tableau
    >>> adaptive_tableau("dopri5").order, adaptive_tableau("rk4")
    (5, None)
    """
    from odenet.solvers._adaptive_methods import ADAPTIVE_METHODS

    if isinstance(method, str):
        return ADAPTIVE_METHODS.get(method)
    if isinstance(method, ButcherTableau) and method.is_adaptive:
        return method
    return None


def _comb(base: Tensor | None, ks: Sequence[Tensor], terms: _Terms) -> Tensor | None:
    """``base + Σ w k[j]``, summed first and added once (a fresh tensor unless no terms)."""
    if not terms:
        return base
    if base is not None and len(terms) == 1:
        j, w = terms[0]
        return torch.add(base, ks[j], alpha=w)
    it = iter(terms)
    j, w = next(it)
    out = torch.mul(ks[j], w)
    for j, w in it:
        out.add_(ks[j], alpha=w)
    return out if base is None else out.add_(base)


def _comb_comps(base: Comps | None, ks: Sequence[Comps], terms: _Terms) -> Comps:
    m = len(ks[0])
    return tuple(
        _comb(None if base is None else base[c], [k[c] for k in ks], terms) for c in range(m)
    )


def _plus(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """``a + b`` where ``None`` is zero."""
    return a if b is None else b if a is None else a + b


def _minus(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """``a - b`` where ``None`` is zero."""
    return a if b is None else -b if a is None else a - b


def _all_finite(xs: Sequence[Tensor]) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in xs)


class AdaptiveSolve:
    """One adaptive solve of ``y' = func(t, y)`` with an embedded pair: loop, record, replay.

    Parameters
    ----------
    func : callable
        ``func(t, y)`` (a tuple of tensors in and out when ``tuple_state``).
    tableau : ButcherTableau
        An embedded pair (``tableau.is_adaptive``).
    t : Tensor
        Output times (1-D, strictly monotone).
    opts : AdaptiveOptions
        Validated options (:func:`~odenet.solvers._controller.parse_adaptive_options`).
    tuple_state : bool
        Whether the state is a tuple of tensors.
    params : tuple of Tensor
        The parameters gradients are taken for (besides ``y0``).
    time_dtype : torch.dtype, optional
        The dtype of the times ``func`` receives (default ``t``'s).
    callbacks : dict, optional
        torchdiffeq's ``callback_step``, ``callback_accept_step``, ``callback_reject_step``
        (each ``cb(t0, y0, dt)``), called during the forward loop only.

    Attributes
    ----------
    starts, sizes, ends, first_times : list of float
        Per accepted step: its start, signed size, end (``ends[n] == starts[n + 1]``) and
        the time its first stage was evaluated at.
    jumps : list of bool
        Per accepted step: whether it ended on a ``jump_t`` time.
    out_index : list of int
        Output ``k`` is the state after ``out_index[k]`` accepted steps (landing mode).
    nfe, accepted, rejected : int
        Evaluations of ``func`` and step counts of the forward loop.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers import ADAPTIVE_METHODS
    >>> from odenet.solvers._adaptive import AdaptiveSolve
    >>> from odenet.solvers._controller import parse_adaptive_options
    >>> y0 = torch.ones(1, dtype=torch.float64)
    >>> opts = parse_adaptive_options({"rtol": 1e-8, "atol": 1e-10}, [y0.shape], False)
    >>> s = AdaptiveSolve(lambda t, y: -y, ADAPTIVE_METHODS["dopri5"],
    ...                   torch.tensor([0.0, 1.0], dtype=torch.float64), opts)
    >>> out = s.run((y0,))
    >>> abs(out[-1][0].item() - torch.e ** -1) < 1e-8, s.ends[-1] == 1.0
    (True, True)
    """

    def __init__(
        self,
        func: Callable,
        tableau: ButcherTableau,
        t: Tensor,
        opts: AdaptiveOptions,
        *,
        tuple_state: bool = False,
        params: tuple[Tensor, ...] = (),
        time_dtype: torch.dtype | None = None,
        callbacks: dict[str, Callable] | None = None,
    ):
        self.func = func
        self.tableau = tableau
        self.t = t
        self.opts = opts
        self.tuple_state = tuple_state
        self.params = tuple(params)
        self.implicit = None
        self.time_dtype = t.dtype if time_dtype is None else time_dtype
        self.callbacks = dict(callbacks or {})
        self.times = [float(x) for x in t.detach().tolist()]
        self.direction = 1.0 if len(self.times) < 2 or self.times[-1] > self.times[0] else -1.0
        a, b = tableau.a, tableau.b
        s = tableau.stages
        self._s = s
        self._rows = [tuple((j, float(w)) for j, w in enumerate(a[i, :i]) if w != 0)
                      for i in range(s)]
        self._b = tuple((j, float(w)) for j, w in enumerate(b) if w != 0)
        self._e = tuple((j, float(w)) for j, w in enumerate(tableau.b_err) if w != 0)
        self._mid = (None if tableau.b_mid is None else
                     tuple((j, float(w)) for j, w in enumerate(tableau.b_mid) if w != 0))
        self._c = [float(x) for x in tableau.c]
        self._fsal = tableau.is_fsal
        # torchdiffeq keeps its times in float64 whatever the state's dtype (func still sees
        # them in the state's dtype): with its arithmetic a step may be shorter than the
        # state dtype's time resolution
        self._eps = time_resolution(torch.float64 if opts.interpolate else self.time_dtype)
        self.starts: list[float] = []
        self.sizes: list[float] = []
        self.ends: list[float] = []
        self.first_times: list[float] = []
        self.jumps: list[bool] = []
        self.out_index: list[int] = [0]
        self.nfe = self.accepted = self.rejected = 0
        self.before_last: Comps | None = None  # the event search's last step start
        self._device = None

    # -- evaluation -----------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Number of accepted steps of the forward loop."""
        return len(self.sizes)

    @property
    def num_outputs(self) -> int:
        """Number of output times."""
        return len(self.times)

    def time(self, x: float) -> Tensor:
        """``x`` as a 0-d tensor of :attr:`time_dtype` on the state's device."""
        return torch.tensor(x, dtype=self.time_dtype, device=self._device)

    def wrap(self, func: Callable, y0: Comps | None = None) -> Callable[[Tensor, Comps], Comps]:
        """``func`` on component tuples (``y0``: check its first outputs against it)."""
        ts = self.tuple_state
        checked = [y0 is None]

        def F(t: Tensor, y: Comps) -> Comps:
            self.nfe += 1
            out = func(t, as_state(y, ts))
            if not checked[0]:
                _check_output(out, as_state(y0, ts), ts)
                checked[0] = True
            return comps(out)

        return F

    def stage_times(
        self, t0: float, h: float, t1: float, first: float, jump: bool = False
    ) -> tuple[Tensor, ...]:
        """Stage times of a step: ``first`` for ``c = 0``, exactly ``t1`` for ``c = 1``.

        A step that ends on a ``jump_t`` time evaluates its stages at ``c = 1`` at the
        representable time just before ``t1`` (the side of the jump the step is on).
        With torchdiffeq's arithmetic (:attr:`AdaptiveOptions.interpolate`) the times are
        formed in the time dtype and every stage at ``c = 1`` sees the time just before
        ``t1`` (torchdiffeq perturbs them all).
        """
        if not self.opts.interpolate:
            vals = [first if c == 0.0 else t1 if c == 1.0 else t0 + c * h for c in self._c]
            ts = torch.tensor(vals, dtype=self.time_dtype, device=self._device)
            if jump:
                ts = torch.where(torch.tensor(self._c, device=ts.device) == 1.0,
                                 torch.nextafter(ts, torch.full_like(ts, t0)), ts)
            return tuple(ts.unbind())
        # times formed in float64, then cast to the state's dtype, where the stages at c = 1
        # are moved to the representable time before t1 (torchdiffeq's order of operations)
        kw = {"dtype": torch.float64, "device": self._device}
        tt0, dt, tt1 = (torch.tensor(x, **kw) for x in (t0, h, t1))
        td = self.time_dtype
        before = torch.nextafter(tt1.to(td), tt0.to(td))
        return tuple(
            torch.tensor(first, **kw).to(td) if c == 0.0 else before if c == 1.0
            else (tt0 + c * dt).to(td)
            for c in self._c
        )

    def step(
        self, F: Callable, ts: Sequence[Tensor], y: Comps, f0: Comps, h: float
    ) -> tuple[Comps, Comps, list[Comps]]:
        """One step of the pair from ``y`` (whose derivative is ``f0``): ``(y1, error, k)``."""
        if self.opts.interpolate:
            return self._step_torchdiffeq(F, ts, y, f0, h)
        k: list[Comps] = [f0]
        yi = y
        for i in range(1, self._s):
            yi = _comb_comps(y, k, tuple((j, w * h) for j, w in self._rows[i]))
            k.append(F(ts[i], yi))
        if not self._fsal:
            yi = _comb_comps(y, k, tuple((j, w * h) for j, w in self._b))
        err = _comb_comps(None, k, tuple((j, w * h) for j, w in self._e))
        return yi, err, k

    def _step_torchdiffeq(
        self, F: Callable, ts: Sequence[Tensor], y: Comps, f0: Comps, h: float
    ) -> tuple[Comps, Comps, list[Comps]]:
        """The step with torchdiffeq's arithmetic (stages stacked and summed), so that the
        compat module reproduces its numbers and accepted steps to the last bit."""
        tab = self.tableau
        dtype = y[0].dtype
        dt = torch.tensor(h, dtype=dtype, device=y[0].device)

        def weights(w) -> Tensor:
            return torch.as_tensor(w, dtype=dtype, device=y[0].device) * dt

        def combine(base: Comps | None, k: list[Comps], w) -> Comps:
            ww = weights(w)
            out = []
            for c in range(len(y)):
                s = torch.sum(torch.stack([kk[c] for kk in k], dim=-1) * ww, dim=-1)
                out.append(s if base is None else base[c] + s)
            return tuple(out)

        k: list[Comps] = [f0]
        yi = y
        for i in range(1, self._s):
            yi = combine(y, k, tab.a[i, :i].tolist())
            k.append(F(ts[i], yi))
        if not self._fsal:
            yi = combine(y, k, tab.b.tolist())
        err = combine(None, k, tab.b_err.tolist())
        return yi, err, k

    # -- the forward loop -----------------------------------------------------------------------
    def run(
        self, y0: Comps, *, record: bool = True,
        until: Callable[[float, Comps], bool] | None = None,
    ) -> list[Comps]:
        """Integrate from ``y0`` (components); return the state at every output time.

        Records the accepted steps (when ``record``). Under grad mode the graph runs
        through the accepted steps only; the controller sees detached values.

        ``until(t1, y1)``, called after every accepted step, ends the solve when it returns
        True (the event search): the steps then run past ``t[1]`` without landing on it,
        the result is ``[y0, y1]`` and :attr:`before_last` holds the state the last step
        started from.
        """
        o = self.opts
        self._device = y0[0].device
        ctrl = Controller(o, self.tableau.order)
        sign = self.direction
        F = self.wrap(self.func, y0)
        cb_step = self.callbacks.get("callback_step")
        cb_acc = self.callbacks.get("callback_accept_step")
        cb_rej = self.callbacks.get("callback_reject_step")
        u = sign * self.times[0]
        y = y0
        # t may require grad: the step times then carry their dependence on it (_timed)
        delta = None
        if self.t.requires_grad and torch.is_grad_enabled():
            delta = (self.t - self.t.detach()).to(self.time_dtype)

        def at(x: float, k: int) -> Tensor:  # time x of a step of output interval k (>= 1)
            tt = self.time(x)
            if delta is None:
                return tt
            return tt + delta[0 if o.interpolate else k - 1]

        # differentiate_steps: every step size carries the graph of the controller's choice.
        # sg: the derivative part of the current step's start time (t-space, a zero-valued
        # tensor or None); hg: that of the proposed size |h| (u-space).
        diff = o.differentiate_steps and torch.is_grad_enabled()
        sg = None if delta is None else delta[0]
        hg = None
        f0 = F(at(sign * u, 1), y)
        if o.first_step is None:
            def time_at(h0: float, dh0: Tensor | None) -> Tensor:
                tt = self.time(sign * (u + h0))
                return _plus(_plus(tt, sg), None if dh0 is None else sign * dh0)

            with torch.set_grad_enabled(diff):  # its graph only to differentiate the steps
                h, hg = initial_step(F, sign * u, y, f0, self.tableau.order - 1, o.rtol, o.atol,
                                     o.norm, self.tuple_state, time_at, sign)
            h = abs(h)
        else:
            h = o.first_step
        stops = sorted({sign * x for x in o.step_t} | {sign * x for x in o.jump_t})
        jumps = {sign * x for x in o.jump_t}
        stops = [x for x in stops if x > u]
        si = 0
        first_u = u  # the time the next step's first stage sees (moved past a jump)
        outs = [y0]
        interp: tuple | None = None  # (u0, u1, coefficients) of the last accepted step
        for kk in range(1, len(self.times)):
            target = math.inf if until is not None else sign * self.times[kk]
            attempts = 0
            while True:
                if until is not None:
                    pass  # only until() ends the event search
                elif self.opts.interpolate:
                    if interp is not None and target <= interp[1]:
                        break
                    if interp is None and target <= u:
                        break
                elif u >= target:
                    break
                if attempts >= o.max_num_steps:
                    raise StepSizeError(
                        f"options['max_num_steps']: {o.max_num_steps} step attempts between "
                        f"t = {outs_u(kk, self.times)} and t = {self.times[kk]:.6g} did not "
                        f"reach it (at t = {sign * u:.6g}, step size {h:.3g}); raise "
                        "max_num_steps or loosen rtol/atol",
                        time=sign * u,
                    )
                attempts += 1
                if not math.isfinite(h):
                    h = o.min_step
                h_asked = h
                h = min(max(h, o.min_step), o.max_step)
                if h != h_asked:  # clamped: a constant
                    hg = None
                u1 = u + h
                jump = False
                end = "free"  # the step's end: chosen by the controller, an output, a stop
                if not o.interpolate and until is None and (
                    u1 >= target or target - u1 <= 4 * self._eps * max(abs(target), abs(u))
                ):
                    u1 = target
                    end = "output"
                while si < len(stops) and stops[si] <= u:
                    si += 1
                if si < len(stops) and u < stops[si] < u1:
                    u1 = stops[si]
                    jump = u1 in jumps
                    end = "stop"
                # torchdiffeq steps by the proposed size itself (its t1 = t0 + dt is rounded);
                # a step cut short (an output, a stop) is as long as the cut leaves
                hh = h if o.interpolate and end == "free" else u1 - u
                if not hh > 8 * self._eps * max(abs(u), abs(u1), 1e-300) or u + hh <= u:
                    raise self._stalled(sign * u, hh, y)
                t0, t1, hs = sign * u, sign * u1, sign * hh
                if cb_step is not None:
                    cb_step(self.time(t0), as_state(y, self.tuple_state), self.time(hs))
                ts = self.stage_times(t0, hs, t1, sign * first_u, jump)
                Fs, f0s, scale = F, f0, None
                dstep = None
                if diff:
                    if end == "output":
                        eg = None if delta is None else delta[kk]
                    elif end == "stop":
                        eg = None
                    else:
                        eg = _plus(sg, None if hg is None else sign * hg.to(self.time_dtype))
                    dstep = _minus(eg, sg)
                    ts, scale = self._moved(ts, sg, dstep, hs)
                elif delta is not None:
                    ts, scale = self._timed(ts, delta, kk, u1 == target, hs)
                if scale is not None:
                    def Fs(t, y, F=F, scale=scale):
                        return tuple(x * scale for x in F(t, y))

                    f0s = tuple(x * scale for x in f0)
                y1, err, k = self.step(Fs, ts, y, f0s, hs)
                with contextlib.nullcontext() if diff else torch.no_grad():
                    ratio_t = error_ratio_tensor(err, y, y1, o.rtol, o.atol, o.norm,
                                                 self.tuple_state)
                ratio = abs(host_scalar(ratio_t))
                if not diff:
                    ratio_t = None
                with torch.no_grad():
                    if o.check_finite and math.isfinite(ratio) and not _all_finite(y1):
                        ratio = math.inf
                ok = math.isfinite(ratio) and ctrl.accept(ratio, min(hh, h))
                if ok:
                    if cb_acc is not None:
                        cb_acc(self.time(t0), as_state(y, self.tuple_state), self.time(hs))
                    if record:
                        self.starts.append(t0)
                        self.sizes.append(hs)
                        self.ends.append(t1)
                        self.first_times.append(sign * first_u)
                        self.jumps.append(jump)
                    self.accepted += 1
                    if o.interpolate:
                        interp = (u, u1, self._fit(y, y1, k, hs))
                    if until is not None and until(t1, y1):
                        self.before_last = y
                        outs.append(y1)
                        break
                    first_u = u1
                    y = y1
                    nk = kk + 1 if u1 == target else kk  # the interval the next step is in
                    if diff:
                        sg = eg
                    if jump:
                        first_u = self._next_after(u1)
                        tf = (_plus(self.time(sign * first_u), sg) if diff
                              else at(sign * first_u, nk))
                        f0 = F(tf, y)
                    elif self._fsal or o.interpolate:
                        f0 = k[-1] if scale is None else tuple(x / scale for x in k[-1])
                    else:
                        f0 = F(_plus(self.time(t1), sg) if diff else at(t1, nk), y)
                    u = u1
                else:
                    if cb_rej is not None:
                        cb_rej(self.time(t0), as_state(y, self.tuple_state), self.time(hs))
                    self.rejected += 1
                if diff:
                    hh_t = None if dstep is None else hh + sign * dstep
                    h, hg = ctrl.propose_graph(
                        hh, ratio, ok, h_t=hh_t,
                        ratio_t=ratio_t if math.isfinite(ratio) else None)
                else:
                    h = ctrl.propose(hh, ratio, ok)
            if until is not None:
                break
            if o.interpolate:
                if interp is None:
                    outs.append(y0)
                else:
                    outs.append(self._evaluate(interp, target, None if delta is None else kk))
            else:
                outs.append(y)
                if record:
                    self.out_index.append(len(self.sizes))
        return outs

    def _next_after(self, u: float) -> float:
        """The next representable time after ``u`` (in the state's time dtype), in u-space."""
        tt = torch.tensor(self.direction * u, dtype=self.time_dtype)
        nxt = torch.nextafter(tt, torch.tensor(self.direction * math.inf, dtype=self.time_dtype))
        return self.direction * float(nxt)

    def _stalled(self, t: float, h: float, y: Comps) -> Exception:
        if not _all_finite(y):
            return NonFiniteStateError(
                f"the state became non-finite (nan or inf) at t = {t:.6g}", time=t
            )
        return StepSizeError(
            f"the step size fell to {h:.3g} at t = {t:.6g}, below the resolution of "
            f"{self.time_dtype} times there: the error test kept failing (a stiff problem, a "
            "singularity or non-finite values of func near this time); loosen rtol/atol, give "
            "options['min_step'], or check func",
            time=t,
        )

    def _fit(self, y0: Comps, y1: Comps, k: list[Comps], h: float) -> list[Comps]:
        """torchdiffeq's quartic through y0, y1, the mid-step value and the end slopes."""
        if self._mid is None:
            raise ArgumentError(
                f"method: {self.tableau.name!r} has no mid-step weights (b_mid), which the "
                "interpolating output needs"
            )
        dtype = y0[0].dtype
        ww = torch.as_tensor(self.tableau.b_mid.tolist(), dtype=dtype, device=y0[0].device)
        ww = ww * torch.tensor(h, dtype=dtype, device=y0[0].device)
        ymid = tuple(
            y0[c] + torch.sum(torch.stack([kk[c] for kk in k], dim=-1) * ww, dim=-1)
            for c in range(len(y0))
        )
        out = []
        for a0, a1, am, g0, g1 in zip(y0, y1, ymid, k[0], k[-1]):
            a = 2 * h * (g1 - g0) - 8 * (a1 + a0) + 16 * am
            b = h * (5 * g0 - 3 * g1) + 18 * a0 + 14 * a1 - 32 * am
            c = h * (g1 - 4 * g0) - 11 * a0 - 5 * a1 + 16 * am
            out.append((a0, h * g0, c, b, a))
        return out

    def _moved(
        self, ts: tuple[Tensor, ...], start: Tensor | None, dstep: Tensor | None, h: float
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """Stage times and a right-hand-side scale for a step whose start time and size
        carry derivative parts ``start`` and ``dstep`` (zero-valued tensors or ``None``):
        a step of size ``h + dstep`` is the step of size ``h`` of ``(1 + dstep/h) f``."""
        if start is None and dstep is None:
            return ts, None
        moved = tuple(_plus(_plus(tau, start), None if dstep is None else c * dstep)
                      for tau, c in zip(ts, self._c))
        return moved, None if dstep is None else 1.0 + dstep / h

    def _timed(
        self, ts: tuple[Tensor, ...], delta: Tensor, kk: int, last: bool, h: float
    ) -> tuple[tuple[Tensor, ...], Tensor | None]:
        """Stage times (and a right-hand-side scale) carrying their dependence on ``t``.

        The step sizes are held fixed, so the steps of an output interval move with its
        start time; landing on an output time, the last step's length moves with it: a
        step of length ``h + dh`` is the step of length ``h`` of ``(1 + dh/h) f``.
        With interpolated outputs every step moves with ``t[0]``.
        """
        if self.opts.interpolate:
            return tuple(tau + delta[0] for tau in ts), None
        dk = delta[kk - 1]
        if not last:
            return tuple(tau + dk for tau in ts), None
        dh = delta[kk] - dk
        ts = tuple(tau + (dk + c * dh) for tau, c in zip(ts, self._c))
        return ts, 1.0 + dh / h

    def _evaluate(self, interp: tuple, target: float, kk: int | None = None) -> Comps:
        u0, u1, coef = interp
        x = (target - u0) / (u1 - u0)
        xt = None
        if kk is not None:  # the output time requires grad: x moves with t[kk] and t[0]
            sign = self.direction
            tk = self.t[kk].to(torch.float64)
            d0 = (self.t[0] - self.t[0].detach()).to(torch.float64)
            xt = ((tk - d0) - sign * u0) / (sign * (u1 - u0))
        res = []
        for e, d, c, b, a in coef:
            dt = e.real.dtype if e.is_complex() else e.dtype
            xx = torch.tensor(x, dtype=dt, device=e.device) if xt is None else xt.to(dt)
            total = e + xx * d
            p = xx
            for q in (c, b, a):
                p = p * xx
                total = total + p * q
            res.append(total)
        return tuple(res)

    # -- replay of the recorded steps -----------------------------------------------------------
    def replay(self, n: int, y: Comps, func: Callable | None = None) -> Comps:
        """Accepted step ``n`` again from ``y``: the forward pass's operations exactly."""
        F = self.wrap(func or self.func)
        t0, h, t1, first = self.starts[n], self.sizes[n], self.ends[n], self.first_times[n]
        ts = self.stage_times(t0, h, t1, first, self.jumps[n])
        f0 = F(ts[0], y)
        k: list[Comps] = [f0]
        yi = y
        for i in range(1, self._s):
            if self._fsal and i == self._s - 1:
                yi = _comb_comps(y, k, tuple((j, w * h) for j, w in self._rows[i]))
                break
            yi = _comb_comps(y, k, tuple((j, w * h) for j, w in self._rows[i]))
            k.append(F(ts[i], yi))
        if not self._fsal:
            yi = _comb_comps(y, k, tuple((j, w * h) for j, w in self._b))
        return yi

    def advance(self, y: Comps, start: int, stop: int) -> Comps:
        """Replay accepted steps ``start, ..., stop - 1`` from ``y``."""
        for n in range(start, stop):
            y = self.replay(n, y)
        return y

    def stack(self, outs: Sequence[Comps]) -> tuple[Tensor, ...]:
        """Stack per-time component tuples into ``(len(t), *shape)`` per component."""
        return tuple(torch.stack([o[m] for o in outs]) for m in range(len(outs[0])))


def outs_u(k: int, times: Sequence[float]) -> str:
    """The start of output interval ``k`` for messages."""
    return f"{times[k - 1]:.6g}"


def odeint_adaptive(
    func: Callable,
    y0: object,
    t: object,
    tableau: ButcherTableau,
    options: object = None,
    *,
    step_size: object = None,
    gradient: object = "backprop",
    implicit: object = None,
    params: object = None,
    event_fn: object = None,
    rtol: object = None,
    atol: object = None,
    interpolate: bool = False,
):
    """:func:`odenet.odeint` for an embedded pair (see its documentation of the options).

    Examples
    --------
    >>> import torch, odenet
    >>> t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64), t,
    ...                   method="dopri5", options={"rtol": 1e-9, "atol": 1e-12})
    >>> abs(y[-1].item() - torch.e ** -1) < 1e-9
    True
    """
    # the input checks odeint applies to every method (odenet._integrate owns them)
    from odenet._integrate import _check_t, _check_y0, _collect_params, check_signature
    from odenet.gradients._adaptive import solve_adaptive
    from odenet.gradients._base import resolve_gradient
    from odenet.solvers._controller import parse_adaptive_options

    name = tableau.name
    if step_size is not None:
        raise ArgumentError(
            f"step_size: {name!r} is an adaptive method and chooses its own step sizes under "
            "error control (rtol, atol); give options['first_step'] for the first one, or use a "
            "fixed-step method (the pair's own weights: tableau.fixed_step())"
        )
    if implicit is not None:
        raise ArgumentError(
            f"implicit: the adaptive method {name!r} is explicit and takes no implicit "
            "operator; use an IMEX method with a step size"
        )
    y0, tuple_state = _check_y0(y0)
    cs = comps(y0)
    t = _check_t(t, cs[0].device)
    check_signature("func", func)
    strategy = resolve_gradient(gradient)
    params = _collect_params(func, None, params)
    opts = parse_adaptive_options(
        options, [c.shape for c in cs], tuple_state, rtol=rtol, atol=atol, interpolate=interpolate
    )
    callbacks = {
        n: getattr(func, n)
        for n in ("callback_step", "callback_accept_step", "callback_reject_step")
        if callable(getattr(func, n, None))
    }
    if event_fn is not None:
        from odenet._events import solve_to_event_adaptive

        if len(t) != 2:
            raise ArgumentError(
                f"t: with event_fn, t holds the initial time and a second time giving the "
                f"direction of integration (len(t) == 2, as in torchdiffeq), got len(t) = {len(t)}"
            )
        if opts.differentiate_steps:
            raise ArgumentError(
                "options['differentiate_steps']: not supported with event_fn (the event solve "
                "replays the accepted steps as a fixed grid)"
            )
        return solve_to_event_adaptive(
            func, y0, t, tableau, strategy, event_fn, tuple_state=tuple_state, params=params,
            opts=opts, time_dtype=cs[0].real.dtype, callbacks=callbacks,
        )
    if len(t) == 1:
        return tuple(torch.stack([c]) for c in cs) if tuple_state else torch.stack([y0])
    solve = AdaptiveSolve(
        func, tableau, t, opts, tuple_state=tuple_state, params=params,
        time_dtype=cs[0].real.dtype, callbacks=callbacks,
    )
    return solve_adaptive(strategy, solve, y0)
