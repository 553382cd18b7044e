"""The built-in methods: each is a tableau and an order, nothing else."""

from __future__ import annotations

import math
from types import MappingProxyType

from odenet.errors import ArgumentError, ArgumentTypeError, UnknownMethodError
from odenet.solvers._adaptive_methods import ADAPTIVE_METHODS
from odenet.solvers._reversible import REVERSIBLE, ReversibleMethod
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "EXPLICIT_METHODS",
    "IMEX_METHODS",
    "METHODS",
    "REVERSIBLE_METHODS",
    "check_implicit",
    "method_names",
    "resolve_method",
]

EULER = ButcherTableau(a=[[0.0]], b=[1.0], c=[0.0], order=1, name="euler")

MIDPOINT = ButcherTableau(a=[[0, 0], [1 / 2, 0]], b=[0, 1], c=[0, 1 / 2], order=2, name="midpoint")

HEUN = ButcherTableau(a=[[0, 0], [1, 0]], b=[1 / 2, 1 / 2], c=[0, 1], order=2, name="heun")

# Shu–Osher strong-stability-preserving RK3.
SSPRK3 = ButcherTableau(
    a=[[0, 0, 0], [1, 0, 0], [1 / 4, 1 / 4, 0]],
    b=[1 / 6, 1 / 6, 2 / 3],
    c=[0, 1, 1 / 2],
    order=3,
    name="ssprk3",
)

# Classic Runge–Kutta: weights 1/6, 1/3, 1/3, 1/6.
RK4 = ButcherTableau(
    a=[[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 1 / 2, 0, 0], [0, 0, 1, 0]],
    b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
    c=[0, 1 / 2, 1 / 2, 1],
    order=4,
    name="rk4",
)

# Kutta's 3/8 rule (torchdiffeq's "rk4").
RK4_38 = ButcherTableau(
    a=[[0, 0, 0, 0], [1 / 3, 0, 0, 0], [-1 / 3, 1, 0, 0], [1, -1, 1, 0]],
    b=[1 / 8, 3 / 8, 3 / 8, 1 / 8],
    c=[0, 1 / 3, 2 / 3, 1],
    order=4,
    name="rk4_38",
)

# Forward–backward Euler, ARS(1,1,1): explicit step of f, then (I + hL)^{-1}.
IMEX_EULER = IMEXTableau(
    explicit=ButcherTableau(a=[[0, 0], [1, 0]], b=[1, 0], c=[0, 1], order=1),
    implicit=ButcherTableau(a=[[0, 0], [0, 1]], b=[0, 1], c=[0, 1], order=1),
    order=1,
    name="imex_euler",
)

# Ascher, Ruuth & Spiteri (1997), ARS(2,2,2): L-stable, stiffly accurate.
_G = 1 - 1 / math.sqrt(2)
_D = 1 - 1 / (2 * _G)
ARS222 = IMEXTableau(
    explicit=ButcherTableau(
        a=[[0, 0, 0], [_G, 0, 0], [_D, 1 - _D, 0]], b=[_D, 1 - _D, 0], c=[0, _G, 1], order=2
    ),
    implicit=ButcherTableau(
        a=[[0, 0, 0], [0, _G, 0], [0, 1 - _G, _G]], b=[0, 1 - _G, _G], c=[0, _G, 1], order=2
    ),
    order=2,
    name="ars222",
)

# Ascher, Ruuth & Spiteri (1997), ARS(4,4,3): L-stable, stiffly accurate, order 3.
_C443 = [0, 1 / 2, 2 / 3, 1 / 2, 1]
ARS443 = IMEXTableau(
    explicit=ButcherTableau(
        a=[
            [0, 0, 0, 0, 0],
            [1 / 2, 0, 0, 0, 0],
            [11 / 18, 1 / 18, 0, 0, 0],
            [5 / 6, -5 / 6, 1 / 2, 0, 0],
            [1 / 4, 7 / 4, 3 / 4, -7 / 4, 0],
        ],
        b=[1 / 4, 7 / 4, 3 / 4, -7 / 4, 0],
        c=_C443,
        order=3,
    ),
    implicit=ButcherTableau(
        a=[
            [0, 0, 0, 0, 0],
            [0, 1 / 2, 0, 0, 0],
            [0, 1 / 6, 1 / 2, 0, 0],
            [0, -1 / 2, 1 / 2, 1 / 2, 0],
            [0, 3 / 2, -3 / 2, 1 / 2, 1 / 2],
        ],
        b=[0, 3 / 2, -3 / 2, 1 / 2, 1 / 2],
        c=_C443,
        order=3,
    ),
    order=3,
    name="ars443",
)

#: Every built-in method by name. Explicit methods map to a
#: :class:`~odenet.ButcherTableau`, IMEX methods to an :class:`~odenet.IMEXTableau`;
#: both carry ``.order``.
METHODS = MappingProxyType(
    {
        tab.name: tab
        for tab in (EULER, MIDPOINT, HEUN, SSPRK3, RK4, RK4_38, IMEX_EULER, ARS222, ARS443)
    }
)

#: Names of the explicit methods of :data:`METHODS`, in its order (derived, never listed by hand).
EXPLICIT_METHODS: tuple[str, ...] = tuple(
    n for n, tab in METHODS.items() if isinstance(tab, ButcherTableau)
)
#: Names of the IMEX pairs of :data:`METHODS`, in its order (derived, never listed by hand).
IMEX_METHODS: tuple[str, ...] = tuple(
    n for n, tab in METHODS.items() if isinstance(tab, IMEXTableau)
)

#: The reversible methods by name (:class:`~odenet.solvers.ReversibleMethod`, paired with
#: ``gradient="reversible"``), apart from :data:`METHODS`: they are not Runge–Kutta tableaux and
#: run in their own loop. :func:`resolve_method` resolves their names like those of METHODS.
REVERSIBLE_METHODS = MappingProxyType({m.name: m for m in REVERSIBLE})

_KINDS = {None: tuple(METHODS), "explicit": EXPLICIT_METHODS, "imex": IMEX_METHODS,
          "reversible": tuple(REVERSIBLE_METHODS), "adaptive": tuple(ADAPTIVE_METHODS)}


def method_names(kind: str | None = None) -> str:
    """The names of :data:`METHODS` of one kind, quoted and comma-separated, for messages.

    Parameters
    ----------
    kind : {None, "explicit", "imex", "reversible", "adaptive"}
        Every method of :data:`METHODS`, its explicit ones or its IMEX pairs; or the
        reversible methods, or the embedded pairs of :data:`ADAPTIVE_METHODS`.

    Returns
    -------
    str

    Examples
    --------
    >>> from odenet.solvers import method_names
    >>> method_names("imex")
    "'imex_euler', 'ars222', 'ars443'"
    """
    if kind not in _KINDS:
        raise ArgumentError(
            f"kind: expected None, 'explicit', 'imex', 'reversible' or 'adaptive', got {kind!r}"
        )
    return ", ".join(repr(n) for n in _KINDS[kind])


def resolve_method(
    method: object,
    name: str = "method",
    *,
    kind: str | None = None,
    explicit_only: bool = True,
) -> ButcherTableau | IMEXTableau:
    """The tableau of a method: the one owner of "name → tableau".

    :func:`odenet.odeint`, the ODE blocks, the models, the torchdiffeq compat module and
    :mod:`odenet.analysis` all resolve methods here, so a new entry of :data:`METHODS`
    (or a user's tableau) is accepted everywhere at once.

    Parameters
    ----------
    method : str, ButcherTableau, IMEXTableau or ReversibleMethod
        A key of :data:`METHODS` or of :data:`REVERSIBLE_METHODS`, or a method object
        (returned as is).
    name : str, default "method"
        The argument's name in error messages.
    kind : {None, "explicit", "imex", "reversible"}
        Restrict to explicit tableaux or to IMEX pairs (an :class:`~odenet.errors.ArgumentError`
        names the accepted ones otherwise).
    explicit_only : bool, default True
        Refuse a :class:`ButcherTableau` with a non-zero diagonal: odenet's solvers step with
        explicit stages only (the stability analysis of an implicit tableau passes ``False``).

    Returns
    -------
    ButcherTableau or IMEXTableau

    Raises
    ------
    odenet.errors.UnknownMethodError
        An unknown name; the message lists :data:`METHODS` (of the requested kind).
    odenet.errors.ArgumentError
        A method of the wrong kind, or an implicit Butcher tableau.
    odenet.errors.ArgumentTypeError
        Neither a name nor a tableau.

    Examples
    --------
    >>> from odenet.solvers import resolve_method
    >>> resolve_method("rk4").order
    4
    >>> resolve_method("ars222", kind="imex").name
    'ars222'
    >>> try:
    ...     resolve_method("rk4", kind="imex")
    ... except ValueError as err:
    ...     print(str(err).split(";")[0])
    method: 'rk4' is not an IMEX scheme
    """
    if kind not in _KINDS:
        raise ArgumentError(
            f"kind: expected None, 'explicit', 'imex', 'reversible' or 'adaptive', got {kind!r}"
        )
    if isinstance(method, str) and method in REVERSIBLE_METHODS:
        tableau = REVERSIBLE_METHODS[method]
    elif isinstance(method, str) and method in ADAPTIVE_METHODS:
        tableau = ADAPTIVE_METHODS[method]
    elif isinstance(method, str):
        if method not in METHODS:
            which = {None: "valid methods", "explicit": "the explicit methods",
                     "imex": "the IMEX schemes", "reversible": "the reversible methods",
                     "adaptive": "the adaptive methods"}[kind]
            tableaux = {None: "a ButcherTableau / IMEXTableau", "explicit": "a ButcherTableau",
                        "imex": "an IMEXTableau", "reversible": "a ReversibleMethod",
                        "adaptive": "a ButcherTableau with embedded weights"}[kind]
            more = (f"; reversible methods: {method_names('reversible')}; adaptive methods: "
                    f"{method_names('adaptive')}" if kind is None else "")
            raise UnknownMethodError(
                f"{name}: unknown method {method!r}; {which} are {method_names(kind)} "
                f"(or pass {tableaux}){more}"
            )
        tableau = METHODS[method]
    elif isinstance(method, (ButcherTableau, IMEXTableau, ReversibleMethod)):
        tableau = method
    else:
        raise ArgumentTypeError(
            f"{name}: expected a method name or a ButcherTableau / IMEXTableau, got "
            f"{type(method).__name__}"
        )
    label = tableau.name or type(tableau).__name__
    if kind == "imex" and not isinstance(tableau, IMEXTableau):
        raise ArgumentError(
            f"{name}: {label!r} is not an IMEX scheme; expected one of {method_names('imex')} "
            "or an IMEXTableau"
        )
    if kind == "explicit" and not isinstance(tableau, ButcherTableau):
        what = "a reversible method" if isinstance(tableau, ReversibleMethod) else "an IMEX scheme"
        raise ArgumentError(
            f"{name}: {label!r} is {what}; expected an explicit method "
            f"({method_names('explicit')}) or a ButcherTableau"
        )
    if kind == "adaptive" and not (isinstance(tableau, ButcherTableau) and tableau.is_adaptive):
        raise ArgumentError(
            f"{name}: {label!r} is not an adaptive method (an embedded pair); expected one of "
            f"{method_names('adaptive')} or a ButcherTableau with embedded weights"
        )
    if kind == "reversible" and not isinstance(tableau, ReversibleMethod):
        raise ArgumentError(
            f"{name}: {label!r} is not a reversible method; expected one of "
            f"{method_names('reversible')} or a ReversibleMethod"
        )
    if explicit_only and isinstance(tableau, ButcherTableau) and not tableau.is_explicit:
        raise ArgumentError(
            f"{name}: the tableau {label!r} is implicit (non-zero diagonal); odenet steps with "
            "explicit Butcher tableaux, or an IMEXTableau with implicit=L"
        )
    return tableau


def check_implicit(tableau: ButcherTableau | IMEXTableau, implicit: object) -> None:
    """The one owner of "this tableau needs / refuses an implicit operator".

    An :class:`IMEXTableau` solves ``y' = f(t, y) - L y`` and needs ``implicit=L``, a linear
    operator with ``L(y)`` and ``L.solve(r, gamma)``; an explicit tableau takes none.

    Parameters
    ----------
    tableau : ButcherTableau or IMEXTableau
        A resolved method (:func:`resolve_method`).
    implicit : linear operator or None
        What the caller passed as ``implicit``.

    Raises
    ------
    odenet.errors.ArgumentError
        A missing operator for an IMEX scheme, or one given to an explicit method.
    odenet.errors.ArgumentTypeError
        An ``implicit`` that is not a linear operator with ``solve``.

    Examples
    --------
    >>> import torch
    >>> from odenet.linear import ConvFFT
    >>> from odenet.solvers import METHODS, check_implicit
    >>> check_implicit(METHODS["ars222"], ConvFFT(torch.randn(2, 1, 3, 3)))  # fine
    >>> try:
    ...     check_implicit(METHODS["ars222"], None)
    ... except ValueError as err:
    ...     print(str(err).split(",")[0])
    implicit: method 'ars222' is an IMEX scheme and needs implicit=L
    """
    label = tableau.name or type(tableau).__name__
    if isinstance(tableau, IMEXTableau):
        if implicit is None:
            raise ArgumentError(
                f"implicit: method {label!r} is an IMEX scheme and needs implicit=L, the linear "
                "operator of y' = f(t, y) - L y (e.g. odenet.linear.ConvFFT)"
            )
        if not (callable(implicit) and callable(getattr(implicit, "solve", None))):
            raise ArgumentTypeError(
                "implicit: expected a linear operator with L(y) and L.solve(r, gamma) (e.g. "
                f"odenet.linear.ConvFFT), got {type(implicit).__name__}"
            )
    elif implicit is not None:
        raise ArgumentError(
            f"implicit: method {label!r} is explicit and takes no implicit operator; use an IMEX "
            f"method ({method_names('imex')}) or drop implicit="
        )
