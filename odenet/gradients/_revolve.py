"""Placeholder: the Revolve strategy is being built (gradient-strategies issue)."""

from __future__ import annotations

from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State

__all__ = ["Revolve"]


class Revolve(GradientStrategy):
    """Work in progress."""

    name = "revolve"

    def __init__(self, *args, **kwargs):
        pass

    def solve(self, problem: Problem, y0: State) -> State:
        raise NotImplementedError("Revolve is not implemented yet")
