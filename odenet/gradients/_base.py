"""The gradient-strategy contract and the name registry."""

from __future__ import annotations

from typing import ClassVar

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers._problem import Problem, State

__all__ = ["GradientStrategy", "resolve_gradient"]

_REGISTRY: dict[str, type[GradientStrategy]] = {}


class GradientStrategy:
    """Base class of the gradient strategies of :func:`odenet.odeint`.

    Contract: :meth:`solve` integrates ``problem`` from ``y0`` and returns the
    stacked outputs (``problem.stack`` layout: ``(len(t), *y0.shape)``, tuple-wise
    for tuple states) such that backpropagating through them delivers gradients
    to ``y0`` and to every tensor of ``problem.params``. A strategy decides what
    it stores in forward and how it differentiates in backward; it never changes
    the numbers of the forward solve. Outside autograd (``torch.no_grad()`` or
    nothing requiring grad) it must store nothing and recompute nothing.

    A new strategy is one subclass with a ``name`` (its string shorthand) and a
    :meth:`solve`.

    Examples
    --------
    >>> import torch, odenet
    >>> class Detached(odenet.GradientStrategy):
    ...     name = "detached-example"
    ...     def solve(self, problem, y0):
    ...         with torch.no_grad():
    ...             return problem.stack(problem.solve(y0))
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]),
    ...                   step_size=0.5, gradient=Detached())
    >>> y.requires_grad
    False
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name and not cls.__module__.startswith("odenet."):
            return  # user strategies are used as instances, not registered by name
        if cls.name:
            _REGISTRY[cls.name] = cls

    def solve(self, problem: Problem, y0: State) -> State:
        """Integrate ``problem`` from ``y0``; return the stacked outputs (see the contract)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_gradient(gradient: str | GradientStrategy) -> GradientStrategy:
    """Turn ``gradient`` (a name or a strategy instance) into a strategy instance.

    Examples
    --------
    >>> from odenet.gradients import resolve_gradient
    >>> resolve_gradient("backprop")
    Backprop()
    """
    if isinstance(gradient, GradientStrategy):
        return gradient
    if isinstance(gradient, type) and issubclass(gradient, GradientStrategy):
        raise ArgumentTypeError(
            f"gradient: expected a strategy instance such as {gradient.__name__}(), "
            f"got the class {gradient.__name__}"
        )
    if isinstance(gradient, str):
        key = gradient.lower()
        if key in _REGISTRY:
            return _REGISTRY[key]()
        raise ArgumentError(
            f"gradient: unknown strategy {gradient!r}; valid names are "
            + ", ".join(repr(k) for k in sorted(_REGISTRY))
            + " (or pass a GradientStrategy instance)"
        )
    raise ArgumentTypeError(
        f"gradient: expected a strategy name or a GradientStrategy instance, "
        f"got {type(gradient).__name__}"
    )
