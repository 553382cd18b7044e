"""Solver core: tableaux, the generic stepper and the :class:`Problem` strategies drive."""

from odenet.solvers._grid import Grid, time_resolution
from odenet.solvers._methods import METHODS
from odenet.solvers._problem import Problem, State, build_grid, detach_state
from odenet.solvers._stepper import StepFn, make_step
from odenet.solvers._tableau import ButcherTableau, IMEXTableau

__all__ = [
    "METHODS",
    "ButcherTableau",
    "Grid",
    "IMEXTableau",
    "Problem",
    "State",
    "StepFn",
    "build_grid",
    "detach_state",
    "make_step",
    "time_resolution",
]
