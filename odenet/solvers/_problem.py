"""A validated fixed-step solve: right-hand side, scheme, time grid and the loop.

:class:`Problem` is what :func:`odenet.odeint` hands to a gradient strategy. It
knows the global step sequence (a :class:`~odenet.solvers.Grid`: every output
interval is cut into steps of the requested size, the last one shortened so that
a step lands exactly on each output time) and runs any range of it. Strategies
decide what to store and how to differentiate; they never rebuild the grid or the
step functions.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

import torch
from torch import Tensor

from odenet.errors import ArgumentError, FunctionOutputError, NonFiniteStateError
from odenet.solvers._grid import MAX_NUM_STEPS, Grid, build_grid, time_resolution
from odenet.solvers._stepper import StepFn, explicit_structure, make_step, make_step_h
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "Problem",
    "State",
    "as_state",
    "build_grid",
    "comps",
    "concrete",
    "detach_state",
    "host_times",
    "is_compiling",
]

State = Tensor | tuple[Tensor, ...]

# Stage times are made for this many consecutive steps at once (one small tensor op and
# one host-to-device copy per chunk); a few chunks are cached.
_CHUNK = 256
_CHUNKS_KEPT = 4
_STEP_FNS_KEPT = 64


def _describe(x: Tensor) -> str:
    return f"shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"


def _autocast_dtype(o: Tensor, ref: Tensor) -> bool:
    """Whether ``o`` is in the dtype :func:`torch.autocast` computes in on ``ref``'s device
    (then the step adds it to the full-precision state, which keeps its dtype)."""
    dev = ref.device.type
    return (
        ref.is_floating_point()
        and torch.is_autocast_enabled(dev)
        and o.dtype in (torch.get_autocast_dtype(dev), torch.float32)
        and o.dtype != ref.dtype
    )


def _check_output(out: object, y: State, tuple_state: bool) -> None:
    """Raise :class:`FunctionOutputError` unless ``out`` matches the state ``y``."""
    if tuple_state:
        if not isinstance(out, (tuple, list)) or len(out) != len(y):
            raise FunctionOutputError(
                f"func: expected a tuple of {len(y)} tensors (one per component of y0), "
                f"got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
            )
        pairs = list(enumerate(zip(out, y)))
    else:
        pairs = [(None, (out, y))]
    for m, (o, ref) in pairs:
        where = "func" if m is None else f"func (component {m})"
        if not isinstance(o, Tensor):
            raise FunctionOutputError(f"{where}: expected a Tensor, got {type(o).__name__}")
        for attr in ("shape", "dtype", "device"):
            if attr == "dtype" and _autocast_dtype(o, ref):
                continue
            if getattr(o, attr) != getattr(ref, attr):
                raise FunctionOutputError(
                    f"{where}: returned a tensor with wrong {attr}: got {_describe(o)}, "
                    f"expected {_describe(ref)} (the state's)"
                )


def is_compiling() -> bool:
    """Whether the code runs under :func:`torch.compile` (traced by dynamo): no host reads.

    Examples
    --------
    >>> from odenet.solvers._problem import is_compiling
    >>> is_compiling()
    False
    """
    return bool(torch.compiler.is_compiling())


def concrete(x: Tensor) -> Tensor | None:
    """The plain tensor holding ``x``'s values, for checks that read them on the host.

    Under :mod:`torch.func` transforms a tensor is a wrapper (a batched tensor under
    :func:`~torch.func.vmap`, a gradient-tracking one under :func:`~torch.func.grad`)
    whose values cannot steer Python control flow; the tensor it wraps can (under
    ``vmap`` it holds every sample, so ``concrete(x).isfinite().all()`` checks them
    all). ``None`` under :func:`torch.compile`, where nothing may be read on the host.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._problem import concrete
    >>> def f(y):
    ...     assert concrete(y).shape == (3, 2)  # the whole batch
    ...     return y
    >>> torch.func.vmap(f)(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """
    if is_compiling():
        return None
    fn = torch._C._functorch
    x = x.detach()
    while fn.is_functorch_wrapped_tensor(x):
        x = fn.get_unwrapped(x)
    return x


def _batched(x: Tensor) -> bool:
    fn = torch._C._functorch
    while fn.is_functorch_wrapped_tensor(x):
        if fn.is_batchedtensor(x):
            return True
        x = fn.get_unwrapped(x)
    return False


def host_times(t: Tensor) -> list[float]:
    """The values of the output times ``t`` as Python floats (the grid is built from them).

    Raises :class:`~odenet.errors.ArgumentError` when ``t`` is batched by
    :func:`torch.func.vmap` (every sample would need its own grid).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._problem import host_times
    >>> host_times(torch.tensor([0.0, 0.5]))
    [0.0, 0.5]
    """
    if _batched(t):
        raise ArgumentError(
            "t: batched by torch.func.vmap; the step grid is built from t's values, so every "
            "sample would need its own grid. vmap over y0 or the parameters and pass one t "
            "(in_dims=None for t), or loop over the time grids"
        )
    return concrete(t).tolist()


def _all_finite(y: State) -> bool:
    """Whether every component is finite (every sample under ``vmap``; True under compile)."""
    for c in comps(y):
        v = concrete(c)
        if v is not None and not bool(torch.isfinite(v).all()):
            return False
    return True


def comps(y: State) -> tuple[Tensor, ...]:
    """The components of a state as a tuple (one element for a plain Tensor).

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._problem import comps
    >>> len(comps(torch.ones(2))), len(comps((torch.ones(2), torch.zeros(1))))
    (1, 2)
    """
    return (y,) if isinstance(y, Tensor) else tuple(y)


def as_state(c: Sequence[Tensor], tuple_state: bool) -> State:
    """Inverse of :func:`comps`: a tuple state, or the single tensor of a plain one.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers._problem import as_state
    >>> as_state([torch.ones(1)], tuple_state=False)
    tensor([1.])
    """
    return tuple(c) if tuple_state else c[0]


def detach_state(y: State) -> State:
    """Detach every tensor of a state.

    Examples
    --------
    >>> import torch
    >>> from odenet.solvers import detach_state
    >>> y = (torch.ones(1, requires_grad=True), torch.zeros(1))
    >>> [c.requires_grad for c in detach_state(y)]
    [False, False]
    """
    if isinstance(y, Tensor):
        return y.detach()
    return tuple(c.detach() for c in y)


class Problem:
    """A fixed-step initial value problem ready to run, the object gradient strategies drive.

    Contract: ``func(t, y)`` takes and returns the internal state (a Tensor, or a
    tuple of Tensors when :attr:`tuple_state`); :attr:`grid` holds the ``Nt + 1``
    step end points (generated lazily: memory does not grow with ``Nt``); step
    ``n`` goes from ``grid[n]`` to ``grid[n + 1]``; output ``k`` is the state after
    :attr:`out_index` ``[k]`` steps. ``func`` is called with 0-d time tensors of
    :attr:`time_dtype` (the state's real dtype, as torchdiffeq does).

    When ``t`` requires grad, the step times are differentiable functions of ``t``
    (an output time moves the steps of the interval it starts and the length of the
    last step of the interval it ends), so autograd through :meth:`solve`,
    :meth:`step` or :meth:`advance` with a ``delta`` from :meth:`time_delta`
    delivers exact discrete gradients with respect to ``t``.

    Parameters
    ----------
    func : callable
        Right-hand side ``func(t, y)``.
    tableau : ButcherTableau or IMEXTableau
        The scheme.
    t : Tensor
        Output times (1-D, strictly monotone, validated by :func:`odenet.odeint`).
    step_size : float or None
        Positive step size; ``None`` takes one step per output interval.
    tuple_state : bool
        Whether the state is a tuple of tensors.
    implicit : linear operator, optional
        ``L`` for IMEX schemes (``y' = func(t, y) - L y``).
    check_finite : bool
        Check the state at every output time and raise :class:`NonFiniteStateError`
        naming the first non-finite step.
    params : tuple of Tensor
        The parameters gradients are taken for (besides ``y0``).
    time_dtype : torch.dtype, optional
        The dtype of the times ``func`` receives (default: ``t``'s).
    perturb : bool
        torchdiffeq's ``perturb``: a stage at the start of a step sees the next
        representable time after it, a stage at the end the previous one, so
        that ``func`` with a jump at a grid point sees the side the step is on.
    grid_points : sequence of float, optional
        An explicit grid instead of ``step_size`` (see :class:`~odenet.solvers.Grid`).
    max_num_steps : int
        Refuse a grid of more steps (an early, clear error).
    callback_step : callable, optional
        ``callback_step(t0, y0, dt)``, called before every step of the forward
        solve (not on recomputations), torchdiffeq's callback.

    Examples
    --------
    >>> import torch
    >>> from odenet import METHODS
    >>> from odenet.solvers import Problem
    >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.25)
    >>> p.num_steps, p.solve(torch.ones(1))[-1]
    (4, tensor([0.3164]))
    """

    def __init__(
        self,
        func: Callable,
        tableau: ButcherTableau | IMEXTableau,
        t: Tensor,
        step_size: float | None,
        *,
        tuple_state: bool = False,
        implicit=None,
        check_finite: bool = True,
        params: tuple[Tensor, ...] = (),
        time_dtype: torch.dtype | None = None,
        perturb: bool = False,
        grid_points: Sequence[float] | None = None,
        max_num_steps: int = MAX_NUM_STEPS,
        callback_step: Callable | None = None,
    ):
        self.func = func
        self.tableau = tableau
        self.t = t
        self.step_size = None if step_size is None else float(step_size)
        self.tuple_state = tuple_state
        self.implicit = implicit
        self.check_finite = check_finite
        self.params = tuple(params)
        self.time_dtype = t.dtype if time_dtype is None else time_dtype
        self.perturb = bool(perturb)
        self.callback_step = callback_step
        #: Traced by :func:`torch.compile`: the grid is ``t`` itself (one step per output
        #: interval), step sizes and stage times are tensors computed from ``t`` (see
        #: :meth:`solve`), so nothing is read on the host and a new ``t`` reuses the graph.
        self.traced = is_compiling()
        if self.traced:
            self._init_traced(tableau, grid_points, t)
            return
        times = host_times(t)
        self.grid = Grid(
            times,
            self.step_size,
            eps=time_resolution(t.dtype),
            points=grid_points,
            max_num_steps=max_num_steps,
        )
        self.out_index = self.grid.out_index
        self.step_sizes = self.grid.sizes
        self.direction = 1.0 if len(times) < 2 or times[-1] > times[0] else -1.0
        self._c = torch.tensor(tableau.c.tolist(), dtype=torch.float64)
        self._c_list = [float(c) for c in tableau.c]
        self._fns: OrderedDict[float, StepFn] = OrderedDict()
        self._chunks: OrderedDict[int, list[tuple[Tensor, ...]]] = OrderedDict()

    def _init_traced(self, tableau, grid_points, t: Tensor) -> None:
        why = None
        if self.step_size is not None:
            why = (
                "step_size: under torch.compile the step grid cannot depend on the values of t "
                "(they are not known while tracing); pass every step time in t (e.g. "
                "torch.linspace(t0, t1, steps + 1)) with step_size=None, one step per output "
                "interval, or use odenet.nn.ODEBlock, which does so"
            )
        elif grid_points is not None:
            why = (
                "options['grid_constructor']: not supported under torch.compile; pass the "
                "grid as t"
            )
        elif isinstance(tableau, IMEXTableau):
            why = (
                f"method: the IMEX method {tableau.name!r} is not supported under torch.compile "
                "(the implicit operators cache host-side data); use an explicit method or run "
                "the IMEX solve eagerly"
            )
        if why is not None:
            raise ArgumentError(why)
        self.grid = None
        self.out_index = list(range(len(t)))
        self.step_sizes = None
        self.direction = 1.0
        self._c_list = list(explicit_structure(tableau)[0])
        self._step_h = make_step_h(tableau, tuple_state=self.tuple_state)

    def _traced_step(self, n: int, y: State, func: Callable | None = None) -> State:
        """Step ``n`` from ``t[n]`` to ``t[n + 1]`` with tensor times and step size."""
        t = self.t.to(self.time_dtype)
        t0, t1 = t[n], t[n + 1]
        h = t1 - t0
        ts = []
        for c in self._c_list:
            if c == 0.0:
                tau = torch.nextafter(t0, t1) if self.perturb else t0
            elif c == 1.0:
                tau = torch.nextafter(t1, t0) if self.perturb else t1
            else:
                tau = t0 + c * h
            ts.append(tau)
        ref = comps(y)[0]
        hy = h.to(ref.real.dtype if ref.is_complex() else ref.dtype)
        return self._step_h(func or self.func, tuple(ts), y, hy)

    # -- structure ------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Total number of steps ``Nt`` over all output intervals."""
        if self.traced:
            return len(self.out_index) - 1
        return self.grid.num_steps

    @property
    def num_outputs(self) -> int:
        """Number of output times."""
        return len(self.out_index)

    @property
    def t_requires_grad(self) -> bool:
        """Whether gradients with respect to the output times ``t`` are wanted."""
        return self.t.requires_grad

    def with_func(self, func: Callable, *, tuple_state: bool | None = None) -> Problem:
        """A copy of this problem (same grid and scheme) with another right-hand side.

        ``tuple_state`` changes the state layout (e.g. the augmented state of the
        continuous adjoint); ``None`` keeps it.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> q = p.with_func(lambda t, y: y)
        >>> q.solve(torch.ones(1))[-1]
        tensor([2.2500])
        """
        new = object.__new__(Problem)
        new.__dict__.update(self.__dict__)
        new.func = func
        if tuple_state is not None and tuple_state != self.tuple_state:
            new.tuple_state = tuple_state
            new._fns = OrderedDict()
        return new

    def step_fn(self, h: float) -> StepFn:
        """The step function of this problem's scheme for the signed step size ``h`` (cached)."""
        fn = self._fns.get(h)
        if fn is None:
            fn = make_step(self.tableau, h, tuple_state=self.tuple_state, implicit=self.implicit)
            self._fns[h] = fn
            if len(self._fns) > _STEP_FNS_KEPT:
                self._fns.popitem(last=False)
        return fn

    def stage_times_at(self, start: float, h: float) -> tuple[Tensor, ...]:
        """Stage times ``start + c_i h`` (computed in float64, cast to :attr:`time_dtype`).

        With :attr:`perturb`, a stage at ``c_i = 0`` sees the next representable time in the
        direction of ``h`` and one at ``c_i = 1`` the previous one.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["midpoint"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.stage_times_at(0.5, 0.5)
        (tensor(0.5000), tensor(0.7500))
        """
        return self._stage_rows([start], [h], math.copysign(1.0, h))[0]

    def _stage_rows(
        self, starts: Sequence[float], hs: Sequence[float], sign: float
    ) -> list[tuple[Tensor, ...]]:
        """Stage times ``starts[j] + c_i hs[j]`` of several steps: the one place they are made.

        Computed in float64, cast to :attr:`time_dtype` on ``t``'s device in one copy;
        with :attr:`perturb` the stages at ``c_i = 0`` / ``c_i = 1`` move one ulp into the
        step (``sign``: its direction).
        """
        starts_t = torch.tensor(list(starts), dtype=torch.float64)
        hs_t = torch.tensor(list(hs), dtype=torch.float64)
        st = (starts_t[:, None] + hs_t[:, None] * self._c[None, :]).to(
            dtype=self.time_dtype, device=self.t.device
        )
        if self.perturb:
            st = self._perturb(st, sign)
        return [tuple(row.unbind()) for row in st.unbind()]

    def _perturb(self, st: Tensor, sign: float) -> Tensor:
        inf = torch.tensor(math.inf * sign, dtype=st.dtype, device=st.device)
        for i, c in enumerate(self._c_list):
            if c == 0.0:
                st[..., i] = torch.nextafter(st[..., i], inf)
            elif c == 1.0:
                st[..., i] = torch.nextafter(st[..., i], -inf)
        return st

    def stage_times(self, n: int) -> tuple[Tensor, ...]:
        """Stage times of step ``n`` (0-d tensors of :attr:`time_dtype` on ``t``'s device)."""
        q, r = divmod(n, _CHUNK)
        rows = self._chunks.get(q)
        if rows is None:
            lo, hi = q * _CHUNK, min((q + 1) * _CHUNK, self.num_steps)
            g = self.grid
            rows = self._stage_rows(
                [g[i] for i in range(lo, hi)], [g.size(i) for i in range(lo, hi)], self.direction
            )
            self._chunks[q] = rows
            if len(self._chunks) > _CHUNKS_KEPT:
                self._chunks.popitem(last=False)
        return rows[r]

    # -- differentiable times -------------------------------------------------------------------
    def time_delta(self, t: Tensor | None = None) -> Tensor | None:
        """``t - t.detach()`` in :attr:`time_dtype`: zero in value, the identity in gradient.

        Passed as ``delta`` to :meth:`step` / :meth:`advance` it makes the step times
        differentiable functions of ``t`` (of ``t`` itself, or of a stand-in leaf with
        the same values). ``None`` when ``t`` does not require grad.
        """
        t = self.t if t is None else t
        if not t.requires_grad:
            return None
        with torch.enable_grad():
            return (t - t.detach()).to(self.time_dtype)

    def _timed(self, n: int, f: Callable, delta: Tensor) -> tuple[Callable, tuple[Tensor, ...]]:
        """``f`` and the stage times of step ``n`` carrying their dependence on ``t``."""
        k, _, last = self.grid.interval(n)
        dk = delta[k]
        ts = self.stage_times(n)
        if not last:  # the step moves with t[k]; its length does not depend on t
            return f, tuple(tau + dk for tau in ts)
        dh = delta[k + 1] - dk
        ts = tuple(tau + (dk + c * dh) for tau, c in zip(ts, self._c_list))
        # a step of length h + dh: y + (h + dh) sum b_i k_i = y + h sum b_i (1 + dh/h) k_i
        scale = 1.0 + dh / self.grid.size(n)
        if self.tuple_state:
            return (lambda t, y: tuple(o * scale for o in f(t, y))), ts
        return (lambda t, y: f(t, y) * scale), ts

    # -- running --------------------------------------------------------------------------------
    def step(
        self, n: int, y: State, func: Callable | None = None, delta: Tensor | None = None
    ) -> State:
        """Advance ``y`` by step ``n`` (from ``grid[n]`` to ``grid[n + 1]``).

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.step(0, torch.ones(1))
        tensor([0.5000])
        """
        f = func or self.func
        if delta is not None:
            f, ts = self._timed(n, f, delta)
        else:
            ts = self.stage_times(n)
        return self.step_fn(self.grid.size(n))(f, ts, y)

    def step_from(self, start: float, h: float, y: State, func: Callable | None = None) -> State:
        """One step of this problem's scheme of signed length ``h`` from time ``start``.

        Off the grid: the partial steps of the IMEX adjoint, the reverse steps of the
        continuous adjoint (``h < 0``) and the trial steps of an event search. ``func``
        replaces :attr:`func` (e.g. an augmented right-hand side of the same state layout).

        Examples
        --------
        >>> import torch, odenet
        >>> p = odenet.solvers.Problem(lambda t, y: t * y, odenet.METHODS["midpoint"],
        ...                            torch.tensor([0.0, 1.0]), 0.5)
        >>> p.step_from(1.0, -0.5, torch.ones(1))  # backward in time, from t = 1 to t = 0.5
        tensor([0.7188])
        """
        return self.step_fn(h)(func or self.func, self.stage_times_at(start, h), y)

    def advance(self, y: State, start: int, stop: int, delta: Tensor | None = None) -> State:
        """Run steps ``start, ..., stop - 1`` from ``y`` and return the final state.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.advance(torch.ones(1), 0, 2)
        tensor([0.2500])
        """
        for n in range(start, stop):
            y = self.step(n, y, delta=delta)
        return y

    def solve(
        self,
        y0: State,
        *,
        validate: bool = True,
        first: State | None = None,
        marks: Collection[int] = (),
        on_mark: Callable[[int, State], None] | None = None,
    ) -> list[State]:
        """Run the whole grid from ``y0``; return the states at every output time.

        The first step's evaluations check ``func``'s output (type, shape, dtype,
        device) when ``validate``; with :attr:`check_finite` every output state is
        checked and the first non-finite step located. When ``t`` requires grad and
        grad mode is on, the step times carry their dependence on ``t``.

        ``first`` is the state after step 0 when the caller already took it;
        ``on_mark(n, y)`` is called with the state at every position ``n`` in
        ``marks`` before step ``n`` runs. :attr:`callback_step` is called before
        every step.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["heun"], torch.tensor([0.0, 0.5, 1.0]), 0.5)
        >>> [round(s.item(), 4) for s in p.solve(torch.ones(()))]
        [1.0, 0.625, 0.3906]
        """
        outs = [y0]
        if self.traced:  # torch.compile: t is the grid, nothing read on the host
            y = y0
            for n in range(len(self.out_index) - 1):
                if self.callback_step is not None:
                    t = self.t.to(self.time_dtype)
                    self.callback_step(t[n], y, t[n + 1] - t[n])
                y = self._traced_step(n, y, self._checked_func(y0) if n == 0 and validate else None)
                outs.append(y)
            return outs
        delta = self.time_delta() if torch.is_grad_enabled() else None
        cb = self.callback_step
        y = y0
        n = 0
        if first is not None:
            y, n = first, 1
        for k in range(1, len(self.out_index)):
            end = self.out_index[k]
            while n < end:
                if on_mark is not None and n in marks:
                    on_mark(n, y)
                if cb is not None:
                    self.call_back(cb, n, y)
                f = self._checked_func(y0) if n == 0 and validate else None
                y = self.step(n, y, func=f, delta=delta)
                n += 1
            if self.check_finite and not _all_finite(y):
                self.raise_nonfinite(k, outs[k - 1])
            outs.append(y)
        return outs

    def call_back(self, cb: Callable, n: int, y: State, sign: float = 1.0) -> None:
        """Call ``cb(t0, y, dt)`` for step ``n`` (``sign = -1``: traversed backward)."""
        t0, t1 = (self.grid[n], self.grid[n + 1]) if sign > 0 else (self.grid[n + 1], self.grid[n])
        kw = {"dtype": self.time_dtype, "device": self.t.device}
        cb(torch.tensor(t0, **kw), y, torch.tensor(t1 - t0, **kw))

    def stack(self, outs: Sequence[State]) -> State:
        """Stack per-time states into the result layout ``(len(t), *y0.shape)`` (tuple-wise).

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: -y, METHODS["euler"], torch.tensor([0.0, 1.0]), 0.5)
        >>> p.stack(p.solve(torch.ones(3))).shape
        torch.Size([2, 3])
        """
        if self.tuple_state:
            return tuple(torch.stack([o[m] for o in outs]) for m in range(len(outs[0])))
        return torch.stack(list(outs))

    # -- checks ---------------------------------------------------------------------------------
    def _checked_func(self, y0: State) -> Callable:
        f = self.func
        tuple_state = self.tuple_state

        def checked(t, y):
            out = f(t, y)
            _check_output(out, y0, tuple_state)
            return out

        return checked

    def raise_nonfinite(self, k: int, y_start: State) -> None:
        """Locate the first non-finite step between outputs ``k - 1`` and ``k`` and raise.

        The interval is re-run without graph from the (finite) output ``k - 1``,
        checking every step; the error names the step index and the time it reached.

        Raises
        ------
        NonFiniteStateError
            Always.

        Examples
        --------
        >>> import torch
        >>> from odenet import METHODS
        >>> from odenet.solvers import Problem
        >>> p = Problem(lambda t, y: y * y, METHODS["euler"], torch.tensor([0.0, 9.0]), 1.0)
        >>> p.raise_nonfinite(1, torch.tensor([3.0]))
        Traceback (most recent call last):
        ...
        odenet.errors.NonFiniteStateError: the state became non-finite (nan or inf) at step 6 ...
        """
        n0, n1 = self.out_index[k - 1], self.out_index[k]
        y = detach_state(y_start)
        with torch.no_grad():
            for n in range(n0, n1):
                y = self.step(n, y)
                if not _all_finite(y):
                    raise NonFiniteStateError(
                        f"the state became non-finite (nan or inf) at step {n} "
                        f"(t = {self.grid[n + 1]:.6g}, step size {self.step_sizes[n]:.6g}); "
                        "reduce step_size, check func, or pass options={'check_finite': False} "
                        "to skip this check",
                        step=n,
                        time=self.grid[n + 1],
                    )
        raise NonFiniteStateError(
            f"the state became non-finite (nan or inf) between t = {self.grid[n0]:.6g} and "
            f"t = {self.grid[n1]:.6g} (steps {n0} to {n1 - 1}); a re-run of that interval "
            "stayed finite, so func is not deterministic",
            step=None,
            time=self.grid[n1],
        )
