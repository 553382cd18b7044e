"""Placeholder: the Adjoint strategy is being built (gradient-strategies issue)."""

from __future__ import annotations

from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State

__all__ = ["Adjoint"]


class Adjoint(GradientStrategy):
    """Work in progress."""

    name = "adjoint"

    def __init__(self, *args, **kwargs):
        pass

    def solve(self, problem: Problem, y0: State) -> State:
        raise NotImplementedError("Adjoint is not implemented yet")
