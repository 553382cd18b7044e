"""Placeholder: the ANODE strategy is being built (gradient-strategies issue)."""

from __future__ import annotations

from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State

__all__ = ["ANODE"]


class ANODE(GradientStrategy):
    """Work in progress."""

    name = "anode"

    def __init__(self, *args, **kwargs):
        pass

    def solve(self, problem: Problem, y0: State) -> State:
        raise NotImplementedError("ANODE is not implemented yet")
