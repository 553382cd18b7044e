"""The built-in methods: each is a tableau and an order, nothing else."""

from __future__ import annotations

import math
from types import MappingProxyType

from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = ["METHODS"]

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
