"""Plain backpropagation through every step."""

from __future__ import annotations

from odenet.gradients._base import GradientStrategy
from odenet.solvers._problem import Problem, State

__all__ = ["Backprop"]


class Backprop(GradientStrategy):
    """Autograd through every step: exact gradients of the discrete network, O(Nt·s) memory.

    The default strategy. Supports double backward (``create_graph=True``) and
    gradients for any tensor ``func`` uses, closures included.

    Examples
    --------
    >>> import torch, odenet
    >>> y0 = torch.ones(2, requires_grad=True)
    >>> y = odenet.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="euler",
    ...                   step_size=0.5, gradient=odenet.Backprop())
    >>> y[-1].sum().backward()
    >>> y0.grad
    tensor([0.2500, 0.2500])
    """

    name = "backprop"

    def solve(self, problem: Problem, y0: State) -> State:
        return problem.stack(problem.solve(y0))
