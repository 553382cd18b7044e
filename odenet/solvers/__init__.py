"""Solver core: tableaux, the generic stepper and the :class:`Problem` strategies drive."""

from odenet.errors import StepSizeError
from odenet.solvers._adaptive_methods import ADAPTIVE_METHODS
from odenet.solvers._grid import Grid, time_resolution
from odenet.solvers._methods import (
    EXPLICIT_METHODS,
    IMEX_METHODS,
    METHODS,
    REVERSIBLE_METHODS,
    check_implicit,
    method_names,
    resolve_method,
)
from odenet.solvers._problem import Problem, State, build_grid, detach_state
from odenet.solvers._reversible import (
    ALF,
    Leapfrog,
    ReversibleHeun,
    ReversibleMethod,
    ReversibleProblem,
)
from odenet.solvers._stepper import StepFn, make_step
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "ADAPTIVE_METHODS",
    "ALF",
    "EXPLICIT_METHODS",
    "IMEX_METHODS",
    "METHODS",
    "REVERSIBLE_METHODS",
    "ButcherTableau",
    "Grid",
    "IMEXTableau",
    "Leapfrog",
    "Problem",
    "ReversibleHeun",
    "ReversibleMethod",
    "ReversibleProblem",
    "State",
    "StepFn",
    "StepSizeError",
    "build_grid",
    "check_implicit",
    "detach_state",
    "make_step",
    "method_names",
    "resolve_method",
    "time_resolution",
]
