r"""Algebraically reversible integrators and the fixed-step solve they run in.

A reversible method advances an *augmented* state ``s = (y, aux)`` with a step map
``Φ_h`` whose inverse ``Φ_h^{-1}`` is explicit: it costs as many evaluations of ``f``
as the step itself and needs no solve. The gradient strategy
:class:`odenet.Reversible` uses this to rebuild every state in the backward pass from
the final one, so the exact gradient of the discrete solve costs memory independent of
the number of steps. In exact arithmetic ``Φ_h^{-1}(Φ_h(s)) = s``; in floating point
the rebuilt states carry round-off that the inverse maps may amplify (see
:mod:`odenet.analysis` ``reconstruction``).

Every method works on flat tuples of tensors. ``f(t, y)`` takes a Python float ``t``
and the tuple ``y`` of the state's components and returns a tuple like ``y``; the
augmented state is ``(*y, *aux)``, ``m`` user components first.

Methods
-------
``reversible_heun`` (:class:`ReversibleHeun`)
    Kidger, Foster, Li & Lyons (2021). State ``(y, ŷ, F)``, ``F = f(t, ŷ)``; order 2;
    one evaluation per step. Any state layout.
``alf`` (:class:`ALF`)
    Zhuang et al., MALI (ICLR 2021): asynchronous leapfrog with damping ``η``. State
    ``(z, v)``, ``v`` an approximation of ``f(t, z)``; order 2 for ``η = 1``, 1 otherwise;
    one evaluation per step. Any state layout.
``leapfrog`` (:class:`Leapfrog`)
    Störmer–Verlet for partitioned systems ``y' = F(t, z)``, ``z' = G(t, y)`` (Hamiltonian
    networks: Haber & Ruthotto 2017, Chang et al. AAAI 2018). State ``(y, z, G)``; order 2;
    two calls of ``func`` per step. The state must be a tuple of even length ``(y…, z…)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from odenet.errors import ArgumentError, ArgumentTypeError, FunctionOutputError, NonFiniteStateError
from odenet.solvers._grid import MAX_NUM_STEPS, Grid, time_resolution
from odenet.solvers._problem import _check_output, as_state, comps, concrete

__all__ = [
    "ALF",
    "Leapfrog",
    "ReversibleHeun",
    "ReversibleMethod",
    "ReversibleProblem",
]

Comps = tuple[Tensor, ...]
TupleFunc = Callable[[float, Comps], Comps]


def _lin(*terms: tuple[float, Comps]) -> Comps:
    """``Σ w_j x_j`` componentwise over tuples of tensors (one fresh tensor per component)."""
    out = []
    for i in range(len(terms[0][1])):
        acc = None
        for w, x in terms:
            if w == 0.0:
                continue
            if acc is None:
                acc = x[i] if w == 1.0 else torch.mul(x[i], w)
                acc = acc.clone() if acc is x[i] else acc
            else:
                acc.add_(x[i], alpha=w)
        out.append(acc if acc is not None else torch.zeros_like(terms[0][1][i]))
    return tuple(out)


@dataclass(frozen=True)
class ReversibleMethod:
    """Base class of the reversible methods: a step map with an explicit inverse.

    Contract: ``init(f, t0, y)`` builds the augmented state from the user state ``y`` (a
    tuple of tensors); ``step(f, t0, h, s)`` advances it from ``t0`` to ``t0 + h``;
    ``inverse_step(f, t0, h, s1)`` undoes that step (``s1`` is the state at ``t0 + h``),
    so that ``inverse_step(f, t0, h, step(f, t0, h, s)) == s`` up to round-off;
    ``output(s)`` is the user state. ``f(t, y)`` takes a float ``t`` and a tuple ``y``
    and returns a tuple like ``y``. ``h`` may be negative (integration backward in time).

    Attributes
    ----------
    name : str
        The method's name (a key of :data:`odenet.solvers.REVERSIBLE_METHODS`).
    order : int
        The global order of accuracy of the user state (verified empirically by the tests).
    layout : tuple of str
        Names of the blocks of the augmented state, user state first.
    evaluations : int
        Calls of ``f`` per step (and per inverse step).

    Examples
    --------
    >>> import torch, odenet
    >>> m = odenet.solvers.REVERSIBLE_METHODS["reversible_heun"]
    >>> f = lambda t, y: (-y[0],)
    >>> s = m.init(f, 0.0, (torch.ones(2, dtype=torch.float64),))
    >>> s1 = m.step(f, 0.0, 0.1, s)
    >>> back = m.inverse_step(f, 0.0, 0.1, s1)
    >>> all(torch.allclose(a, b, rtol=0, atol=1e-15) for a, b in zip(back, s))
    True
    """

    name: str = ""
    order: int = 0
    layout: tuple[str, ...] = ()
    evaluations: int = 1

    def check_state(self, m: int, tuple_state: bool) -> None:
        """Raise unless a user state of ``m`` components (``tuple_state``) suits the method."""

    def width(self, m: int) -> int:
        """Number of tensors of the augmented state for ``m`` user components."""
        return m * len(self.layout)

    def init(self, f: TupleFunc, t0: float, y: Comps) -> Comps:
        """The augmented state at ``t0`` built from the user state ``y`` (evaluates ``f``)."""
        raise NotImplementedError

    def step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        """Advance the augmented state ``s`` from ``t0`` to ``t0 + h``."""
        raise NotImplementedError

    def inverse_step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        """Undo :meth:`step`: the augmented state at ``t0`` from the state ``s`` at ``t0 + h``."""
        raise NotImplementedError

    def output(self, s: Comps, m: int) -> Comps:
        """The user state: the first ``m`` tensors of the augmented state."""
        return tuple(s[:m])

    def user_components(self, width: int) -> int:
        """Number of user components of an augmented state of ``width`` tensors."""
        return width // len(self.layout)


@dataclass(frozen=True)
class ReversibleHeun(ReversibleMethod):
    r"""Reversible Heun (Kidger, Foster, Li & Lyons, 2021), order 2, one evaluation a step.

    The augmented state is ``(y, ŷ, F)`` with the auxiliary ``ŷ`` (``ŷ_0 = y_0``) and the
    cached ``F = f(t, ŷ)``. One step from ``t`` to ``t + h``:

    .. math::

        \hat y_{n+1} = 2 y_n - \hat y_n + h F_n, \quad F_{n+1} = f(t_{n+1}, \hat y_{n+1}),
        \quad y_{n+1} = y_n + \tfrac h2 (F_n + F_{n+1}),

    and its inverse, also one evaluation:

    .. math::

        \hat y_n = 2 y_{n+1} - \hat y_{n+1} - h F_{n+1}, \quad F_n = f(t_n, \hat y_n),
        \quad y_n = y_{n+1} - \tfrac h2 (F_n + F_{n+1}).

    On ``y' = λy`` the step matrix of ``(y, ŷ)`` has determinant ``-1``: both eigenvalues
    lie on the unit circle only for ``hλ`` on the imaginary segment ``[-i, i]``; for a
    decaying mode one of them exceeds 1 in modulus, so the difference ``y - ŷ`` grows
    in the forward and the inverse passes alike.

    Examples
    --------
    >>> import math, torch, odenet
    >>> m = odenet.solvers.ReversibleHeun()
    >>> f = lambda t, y: (-y[0],)
    >>> s = m.init(f, 0.0, (torch.ones((), dtype=torch.float64),))
    >>> for n in range(10):
    ...     s = m.step(f, n * 0.1, 0.1, s)
    >>> abs(m.output(s, 1)[0].item() - math.exp(-1)) < 1e-3
    True
    """

    name: str = "reversible_heun"
    order: int = 2
    layout: tuple[str, ...] = ("y", "y_hat", "f(y_hat)")
    evaluations: int = 1

    def init(self, f: TupleFunc, t0: float, y: Comps) -> Comps:
        y = tuple(y)
        return (*y, *y, *f(t0, y))

    def step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        m = len(s) // 3
        y, yh, F = s[:m], s[m : 2 * m], s[2 * m :]
        yh1 = _lin((2.0, y), (-1.0, yh), (h, F))
        F1 = tuple(f(t0 + h, yh1))
        y1 = tuple(yi + (F0i + F1i) * (h / 2) for yi, F0i, F1i in zip(y, F, F1))
        return (*y1, *yh1, *F1)

    def inverse_step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        m = len(s) // 3
        y1, yh1, F1 = s[:m], s[m : 2 * m], s[2 * m :]
        yh = _lin((2.0, y1), (-1.0, yh1), (-h, F1))
        F = tuple(f(t0, yh))
        y = tuple(yi - (F0i + F1i) * (h / 2) for yi, F0i, F1i in zip(y1, F, F1))
        return (*y, *yh, *F)


@dataclass(frozen=True)
class ALF(ReversibleMethod):
    r"""MALI's asynchronous leapfrog (Zhuang et al., ICLR 2021) with damping ``η``.

    The augmented state is ``(z, v)`` with ``v`` tracking ``f(t, z)`` (``v_0 = f(t_0,
    z_0)``). One step from ``t`` to ``t + h``:

    .. math::

        k = z_n + \tfrac h2 v_n, \quad u = f(t + \tfrac h2, k), \quad
        v_{n+1} = v_n + 2η (u - v_n), \quad z_{n+1} = k + \tfrac h2 v_{n+1},

    and its inverse, one evaluation:

    .. math::

        k = z_{n+1} - \tfrac h2 v_{n+1}, \quad u = f(t + \tfrac h2, k), \quad
        v_n = \frac{v_{n+1} - 2η u}{1 - 2η}, \quad z_n = k - \tfrac h2 v_n.

    With ``η = 1`` (MALI's default) ``z_{n+1} = z_n + h f(t + h/2, z_n + h/2 v_n)``, a
    midpoint step with ``v`` in place of ``f(z_n)``: order 2. With ``η < 1`` the step is
    only first-order accurate, and the inverse multiplies the error of ``v`` by
    ``1 / |1 - 2η| > 1`` each step: damping stabilises the forward pass and destabilises
    the reconstruction. ``η = 1/2`` is not invertible and refused.

    Parameters
    ----------
    eta : float, default 1.0
        Damping ``η ∈ (0, 1]``, ``η ≠ 1/2``.

    Examples
    --------
    >>> import torch, odenet
    >>> m = odenet.solvers.ALF(eta=0.9)
    >>> m.name, m.order
    ('alf', 1)
    >>> f = lambda t, y: (torch.tanh(y[0]),)
    >>> s = m.init(f, 0.0, (torch.tensor([0.3, -1.0], dtype=torch.float64),))
    >>> back = m.inverse_step(f, 0.0, 0.25, m.step(f, 0.0, 0.25, s))
    >>> float(max((a - b).abs().max() for a, b in zip(back, s))) < 1e-15
    True
    """

    eta: float = 1.0
    name: str = "alf"
    order: int = field(default=2, init=False)
    layout: tuple[str, ...] = ("z", "v")
    evaluations: int = 1

    def __post_init__(self) -> None:
        eta = self.eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)):
            raise ArgumentTypeError(
                f"eta: expected a real number in (0, 1], got {type(eta).__name__}"
            )
        if not (0.0 < eta <= 1.0) or not math.isfinite(eta):
            raise ArgumentError(f"eta: expected a damping in (0, 1], got {eta}")
        if eta == 0.5:
            raise ArgumentError(
                "eta: 0.5 makes the asynchronous leapfrog non-invertible (v_n = (v_{n+1} - 2 eta "
                "u) / (1 - 2 eta)); choose eta in (0, 1] other than 0.5"
            )
        object.__setattr__(self, "eta", float(eta))
        object.__setattr__(self, "order", 2 if eta == 1.0 else 1)

    def init(self, f: TupleFunc, t0: float, y: Comps) -> Comps:
        y = tuple(y)
        return (*y, *f(t0, y))

    def step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        m = len(s) // 2
        z, v = s[:m], s[m:]
        k = _lin((1.0, z), (h / 2, v))
        u = tuple(f(t0 + h / 2, k))
        e = 2.0 * self.eta
        v1 = _lin((1.0 - e, v), (e, u)) if e != 2.0 else _lin((2.0, u), (-1.0, v))
        z1 = _lin((1.0, k), (h / 2, v1))
        return (*z1, *v1)

    def inverse_step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        m = len(s) // 2
        z1, v1 = s[:m], s[m:]
        k = _lin((1.0, z1), (-h / 2, v1))
        u = tuple(f(t0 + h / 2, k))
        e = 2.0 * self.eta
        if e == 2.0:
            v = _lin((2.0, u), (-1.0, v1))
        else:
            v = _lin((1.0 / (1.0 - e), v1), (-e / (1.0 - e), u))
        z = _lin((1.0, k), (-h / 2, v))
        return (*z, *v)


@dataclass(frozen=True)
class Leapfrog(ReversibleMethod):
    r"""Störmer–Verlet leapfrog for partitioned systems ``y' = F(t, z)``, ``z' = G(t, y)``.

    The form of Hamiltonian networks (Haber & Ruthotto 2017; Chang et al., AAAI 2018): the
    state is a tuple of even length ``(y…, z…)``; ``func(t, (y…, z…))`` returns ``(F…,
    G…)`` where ``F`` may depend on ``z`` (and ``t``) only and ``G`` on ``y`` only (checked
    on the first step by the solvers). :class:`odenet.nn.HamiltonianRHS` is such a
    ``func``. The augmented state is ``(y, z, G)`` with the cached ``G = G(t, y)``. One
    step (kick–drift–kick):

    .. math::

        z_{n+½} = z_n + \tfrac h2 G_n, \quad y_{n+1} = y_n + h F(t + \tfrac h2, z_{n+½}),
        \quad G_{n+1} = G(t + h, y_{n+1}), \quad z_{n+1} = z_{n+½} + \tfrac h2 G_{n+1};

    the inverse runs the same updates backwards with the signs flipped. Symmetric and
    symplectic, order 2. On the oscillator ``y' = ωz, z' = -ωy`` it is stable (both
    eigenvalues of the step on the unit circle) exactly for ``|hω| ≤ 2``. ``f`` is called
    twice per step, once for ``F`` and once for ``G``; when ``f`` has methods ``dy(t, z)``
    and ``dz(t, y)`` (tuples in and out) only the needed half is evaluated — the solvers
    provide them for a ``func`` that has ``dy`` and ``dz``, such as
    :class:`odenet.nn.HamiltonianRHS` — otherwise the other half of each result is unused.

    Examples
    --------
    >>> import math, torch, odenet
    >>> m = odenet.solvers.Leapfrog()
    >>> f = lambda t, s: (s[1], -s[0])  # y' = z, z' = -y
    >>> one = torch.ones((), dtype=torch.float64)
    >>> s = m.init(f, 0.0, (one, 0 * one))
    >>> for n in range(100):
    ...     s = m.step(f, n * 0.01, 0.01, s)
    >>> abs(s[0].item() - math.cos(1.0)) < 1e-4
    True
    """

    name: str = "leapfrog"
    order: int = 2
    layout: tuple[str, ...] = ("y", "z", "G(y)")
    evaluations: int = 2

    def check_state(self, m: int, tuple_state: bool) -> None:
        if not tuple_state or m % 2:
            got = f"a tuple of {m} tensors" if tuple_state else "a single Tensor"
            raise ArgumentError(
                "y0: method 'leapfrog' integrates a partitioned system y' = F(t, z), "
                "z' = G(t, y) and needs a tuple state (y, z) of even length (e.g. "
                f"odenet.nn.HamiltonianRHS with y0=(y, z)), got {got}; for a single-tensor "
                "state use 'reversible_heun' or 'alf'"
            )

    def width(self, m: int) -> int:
        return m + m // 2

    def user_components(self, width: int) -> int:
        return 2 * width // 3

    def _F(self, f: TupleFunc, t: float, y: Comps, z: Comps) -> Comps:
        half = getattr(f, "dy", None)
        if half is not None:
            return tuple(half(t, z))
        return tuple(f(t, (*y, *z))[: len(y)])

    def _G(self, f: TupleFunc, t: float, y: Comps, z: Comps) -> Comps:
        half = getattr(f, "dz", None)
        if half is not None:
            return tuple(half(t, y))
        return tuple(f(t, (*y, *z))[len(y) :])

    def init(self, f: TupleFunc, t0: float, y: Comps) -> Comps:
        y = tuple(y)
        k = len(y) // 2
        return (*y, *self._G(f, t0, y[:k], y[k:]))

    def step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        k = len(s) // 3
        y, z, G = s[:k], s[k : 2 * k], s[2 * k :]
        zh = _lin((1.0, z), (h / 2, G))
        y1 = _lin((1.0, y), (h, self._F(f, t0 + h / 2, y, zh)))
        G1 = self._G(f, t0 + h, y1, zh)
        z1 = _lin((1.0, zh), (h / 2, G1))
        return (*y1, *z1, *G1)

    def inverse_step(self, f: TupleFunc, t0: float, h: float, s: Comps) -> Comps:
        k = len(s) // 3
        y1, z1, G1 = s[:k], s[k : 2 * k], s[2 * k :]
        zh = _lin((1.0, z1), (-h / 2, G1))
        y = _lin((1.0, y1), (-h, self._F(f, t0 + h / 2, y1, zh)))
        G = self._G(f, t0, y, zh)
        z = _lin((1.0, zh), (-h / 2, G))
        return (*y, *z, *G)


#: The built-in reversible methods, by name.
REVERSIBLE = (ReversibleHeun(), ALF(), Leapfrog())

# Time tensors kept by a ReversibleProblem (a few per step; the backward pass reuses them).
_TIMES_KEPT = 4096


class _Func:
    """``func`` on tuples of user components at float times; with ``ref`` (the user state as
    a tuple) every output is checked against it."""

    def __init__(self, rp: ReversibleProblem, ref: Comps | None = None) -> None:
        self.rp = rp
        self.ref = ref

    def __call__(self, s: float, c: Comps) -> Comps:
        rp = self.rp
        out = rp.func(rp._time(s), as_state(c, rp.tuple_state))
        if self.ref is not None:
            _check_output(out, as_state(self.ref, rp.tuple_state), rp.tuple_state)
        return comps(out)


class _HalvesFunc(_Func):
    """:class:`_Func` with the halves ``dy(t, z)`` and ``dz(t, y)`` of a partitioned ``func``
    (each half a Tensor for a pair state, a tuple for longer ones)."""

    def _half(self, name: str, s: float, x: Comps, ref: Comps | None) -> Comps:
        rp = self.rp
        single = len(x) == 1
        out = getattr(rp.func, name)(rp._time(s), x[0] if single else tuple(x))
        if ref is not None:
            try:
                _check_output(out, ref[0] if single else ref, not single)
            except FunctionOutputError as err:
                raise FunctionOutputError(str(err).replace("func", f"func.{name}", 1)) from None
        return comps(out)

    def dy(self, s: float, z: Comps) -> Comps:
        k = len(z)
        return self._half("dy", s, z, None if self.ref is None else self.ref[:k])

    def dz(self, s: float, y: Comps) -> Comps:
        k = len(y)
        return self._half("dz", s, y, None if self.ref is None else self.ref[k:])


def _all_finite(c: Sequence[Tensor]) -> bool:
    """Whether every tensor is finite (read behind torch.func wrappers; True when tracing)."""
    for x in c:
        v = concrete(x)
        if v is not None and not bool(torch.isfinite(v).all()):
            return False
    return True


class ReversibleProblem:
    """A fixed-step solve with a reversible method: the grid, the wrapped ``func``, the loop.

    What the reversible strategies drive (the counterpart of :class:`~odenet.solvers.Problem`).
    Step ``n`` goes from ``grid[n]`` to ``grid[n + 1]``; :meth:`step` and :meth:`inverse`
    act on the augmented state (a flat tuple, see :class:`ReversibleMethod`).

    Parameters
    ----------
    func : callable
        ``func(t, y)`` with odenet's conventions (0-d time tensor, state as given).
    method : ReversibleMethod
        The scheme.
    t : Tensor
        Output times (validated by :func:`odenet.odeint`).
    step_size : float or None
        Positive step size; ``None``: one step per output interval.
    tuple_state : bool
        Whether the user state is a tuple.
    m : int
        Number of user components.
    check_finite : bool
        Check the state at every output time.
    params : tuple of Tensor
        Tensors differentiated besides ``y0``.
    time_dtype : torch.dtype
        dtype of the times ``func`` receives.
    grid_points : sequence of float, optional
        An explicit grid instead of ``step_size``.
    max_num_steps : int
        Refuse larger grids.
    callback_step : callable, optional
        ``callback_step(t0, y, dt)`` before every forward step.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.solvers import ReversibleProblem
    >>> p = ReversibleProblem(lambda t, y: -y, odenet.solvers.resolve_method("alf"),
    ...                       torch.tensor([0.0, 1.0], dtype=torch.float64), 0.1)
    >>> outs, final = p.solve((torch.ones(1, dtype=torch.float64),))
    >>> p.num_steps, round(outs[-1][0].item(), 4)
    (10, 0.3685)
    """

    def __init__(
        self,
        func: Callable,
        method: ReversibleMethod,
        t: Tensor,
        step_size: float | None,
        *,
        tuple_state: bool = False,
        m: int = 1,
        check_finite: bool = True,
        params: tuple[Tensor, ...] = (),
        time_dtype: torch.dtype | None = None,
        grid_points: Sequence[float] | None = None,
        max_num_steps: int = MAX_NUM_STEPS,
        callback_step: Callable | None = None,
    ) -> None:
        method.check_state(m, tuple_state)
        self.func = func
        self.method = method
        self.t = t
        self.tuple_state = tuple_state
        self.m = m
        self.check_finite = check_finite
        self.params = tuple(params)
        self.time_dtype = t.dtype if time_dtype is None else time_dtype
        self.callback_step = callback_step
        self.grid = Grid(
            t.tolist(),
            None if step_size is None else float(step_size),
            eps=time_resolution(t.dtype),
            points=grid_points,
            max_num_steps=max_num_steps,
        )
        self.out_index = self.grid.out_index
        self._times: OrderedDict[float, Tensor] = OrderedDict()
        #: ``func`` on tuples of user components at float times (the methods' ``f``); for the
        #: leapfrog and a ``func`` with ``dy(t, z)`` and ``dz(t, y)``, with those halves.
        self.halves = isinstance(method, Leapfrog) and all(
            callable(getattr(func, n, None)) for n in ("dy", "dz"))
        self.f: TupleFunc = (_HalvesFunc if self.halves else _Func)(self)

    @property
    def num_steps(self) -> int:
        """Total number of steps ``Nt``."""
        return self.grid.num_steps

    @property
    def num_outputs(self) -> int:
        """Number of output times."""
        return len(self.out_index)

    # -- func on tuples -------------------------------------------------------------------------
    def _time(self, s: float) -> Tensor:
        """The 0-d time tensor ``func`` receives (cached: the backward pass asks for the same
        times as the forward, and each is one host-to-device copy on an accelerator)."""
        v = self._times.get(s)
        if v is None:
            v = torch.tensor(s, dtype=self.time_dtype, device=self.t.device)
            self._times[s] = v
            if len(self._times) > _TIMES_KEPT:
                self._times.popitem(last=False)
        return v

    def checked_f(self, y0: Comps) -> TupleFunc:
        """:attr:`f` that checks each output against the user state ``y0``."""
        return type(self.f)(self, tuple(y0))

    # -- stepping -------------------------------------------------------------------------------
    def init(self, y0: Comps, f: TupleFunc | None = None) -> Comps:
        """The augmented state at ``t[0]`` built from the user state ``y0``."""
        return self.method.init(f or self.f, self.grid[0], tuple(y0))

    def step(self, n: int, s: Comps, f: TupleFunc | None = None) -> Comps:
        """Advance the augmented state by step ``n``."""
        return self.method.step(f or self.f, self.grid[n], self.grid.size(n), s)

    def inverse(self, n: int, s: Comps) -> Comps:
        """Undo step ``n``: the augmented state at ``grid[n]`` from the one at ``grid[n + 1]``."""
        return self.method.inverse_step(self.f, self.grid[n], self.grid.size(n), s)

    def user(self, s: Comps) -> Comps:
        """The user components of an augmented state."""
        return self.method.output(s, self.m)

    def solve(self, y0: Comps, *, start: Comps | None = None) -> tuple[list[Comps], Comps]:
        """Run the whole grid; return the user states at every output time and the final
        augmented state. ``start``: the augmented state at ``t[0]`` when already built."""
        cb = self.callback_step
        s = self.init(y0) if start is None else start
        outs = [tuple(y0)]
        n = 0
        for k in range(1, self.num_outputs):
            prev = s
            end = self.out_index[k]
            while n < end:
                if cb is not None:
                    self._call_back(cb, n, s)
                s = self.step(n, s)
                n += 1
            if self.check_finite and not _all_finite(s):
                self.raise_nonfinite(k, prev)
            outs.append(self.user(s))
        return outs, s

    def _call_back(self, cb: Callable, n: int, s: Comps) -> None:
        kw = {"dtype": self.time_dtype, "device": self.t.device}
        t0, t1 = self.grid[n], self.grid[n + 1]
        cb(torch.tensor(t0, **kw), as_state(self.user(s), self.tuple_state),
           torch.tensor(t1 - t0, **kw))

    def stack(self, outs: Sequence[Comps]) -> tuple[Tensor, ...]:
        """Per-time user states stacked into ``(len(t), *shape)`` per component."""
        return tuple(torch.stack([o[c] for o in outs]) for c in range(self.m))

    def raise_nonfinite(self, k: int, s_start: Comps) -> None:
        """Locate the first non-finite step between outputs ``k - 1`` and ``k``; raise."""
        n0, n1 = self.out_index[k - 1], self.out_index[k]
        s = tuple(c.detach() for c in s_start)
        with torch.no_grad():
            for n in range(n0, n1):
                s = self.step(n, s)
                if not _all_finite(s):
                    raise NonFiniteStateError(
                        f"the state became non-finite (nan or inf) at step {n} "
                        f"(t = {self.grid[n + 1]:.6g}, step size {self.grid.size(n):.6g}) of "
                        f"method {self.method.name!r}; reduce step_size, check func, or pass "
                        "options={'check_finite': False} to skip this check",
                        step=n,
                        time=self.grid[n + 1],
                    )
        raise NonFiniteStateError(
            f"the state became non-finite (nan or inf) between t = {self.grid[n0]:.6g} and "
            f"t = {self.grid[n1]:.6g}; a re-run of that interval stayed finite, so func is not "
            "deterministic",
            step=None,
            time=self.grid[n1],
        )

    def check_separable(self, y0: Comps) -> None:
        """For :class:`Leapfrog`: raise unless ``func``'s ``F`` ignores ``y`` and ``G``
        ignores ``z`` at ``(t[0], y0)`` (one evaluation and one vector–Jacobian product)."""
        if not isinstance(self.method, Leapfrog) or self.halves:
            return
        k = self.m // 2
        x = tuple(c.detach().requires_grad_() for c in y0)
        with torch.enable_grad():
            out = self.f(self.grid[0], x)
            pairs = [(out[:k], x[:k], "dy/dt", "y"), (out[k:], x[k:], "dz/dt", "z")]
            for o, inp, what, of in pairs:
                o = [c for c in o if c.requires_grad]
                if not o:
                    continue
                g = torch.autograd.grad(o, inp, [torch.ones_like(c) for c in o],
                                        allow_unused=True, retain_graph=True)
                if any(gi is not None and bool((gi != 0).any()) for gi in g):
                    raise FunctionOutputError(
                        f"func: method 'leapfrog' needs a partitioned system y' = F(t, z), "
                        f"z' = G(t, y), but {what} depends on {of} (found at t = "
                        f"{self.grid[0]:.6g}); use 'reversible_heun' or 'alf' for a general "
                        "system"
                    )
