"""The gradient-strategy contract and the name registry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers._problem import Problem, State

__all__ = ["STRATEGIES", "GradientStrategy", "resolve_gradient", "strategy_names"]

_REGISTRY: dict[str, type[GradientStrategy]] = {}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _register(cls: type[GradientStrategy]) -> None:
    """Enter ``cls`` under its own ``name`` (the one set in its class body, if any)."""
    name = cls.__dict__.get("name", "")
    if not isinstance(name, str):
        raise ArgumentTypeError(
            f"{_qualified(cls)}.name: expected a string (the strategy's shorthand), got "
            f"{type(name).__name__}"
        )
    if not name:
        return
    if name != name.strip().lower():
        raise ArgumentError(
            f"{_qualified(cls)}.name: expected a lower-case name without surrounding spaces "
            f"(gradient= names are case-insensitive), got {name!r}"
        )
    old = _REGISTRY.get(name)
    if old is not None and old is not cls and _qualified(old) != _qualified(cls):
        raise ArgumentError(
            f"{_qualified(cls)}.name: the strategy name {name!r} is taken by "
            f"{_qualified(old)}; choose another name"
        )
    _REGISTRY[name] = cls  # new, or a redefinition of the same class (a reloaded module)


class _Strategies(Mapping):
    """Every gradient strategy usable by name: name → :class:`GradientStrategy` subclass.

    Read-only and live: a subclass of :class:`GradientStrategy` that sets a non-empty
    ``name`` in its class body is added when it is defined (user strategies included),
    and ``gradient="name"`` then makes an instance of it with no arguments. Names are
    lower case and unique: a different class claiming a taken name is refused with an
    :class:`~odenet.errors.ArgumentError` naming both; defining the same class again
    (same module and qualified name, e.g. a reloaded module) replaces the entry. The
    messages listing valid strategy names derive from this mapping.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.gradients import STRATEGIES
    >>> {"adjoint", "anode", "backprop", "revolve"} <= set(STRATEGIES)  # the built-ins
    True
    >>> STRATEGIES["anode"]
    <class 'odenet.gradients._anode.ANODE'>
    >>> class Plain(odenet.Backprop):  # a user strategy is usable by name once defined
    ...     name = "plain-example"
    >>> STRATEGIES["plain-example"] is Plain
    True
    >>> y = odenet.odeint(lambda t, y: -y, torch.ones(1, requires_grad=True),
    ...                   torch.tensor([0.0, 1.0]), gradient="plain-example")
    >>> y.grad_fn is not None
    True
    """

    def __getitem__(self, name: str) -> type[GradientStrategy]:
        return _REGISTRY[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return "STRATEGIES(" + repr({k: v.__name__ for k, v in _REGISTRY.items()}) + ")"


#: Every gradient strategy usable by name, name → class (read-only, live; user subclasses
#: with a ``name`` included). See :class:`GradientStrategy`.
STRATEGIES: Mapping[str, type[GradientStrategy]] = _Strategies()


def strategy_names() -> str:
    """The names of :data:`STRATEGIES`, sorted, quoted and comma-separated, for messages.

    Examples
    --------
    >>> from odenet.gradients import strategy_names
    >>> strategy_names()  # doctest: +ELLIPSIS
    "...'anode', 'backprop'..., 'revolve'..."
    """
    return ", ".join(repr(k) for k in sorted(_REGISTRY))


class GradientStrategy:
    """Base class of the gradient strategies of :func:`odenet.odeint`.

    Contract: :meth:`solve` integrates ``problem`` from ``y0`` and returns the
    stacked outputs (``problem.stack`` layout: ``(len(t), *y0.shape)``, tuple-wise
    for tuple states) such that backpropagating through them delivers gradients
    to ``y0`` and to every tensor of ``problem.params``. A strategy decides what
    it stores in forward and how it differentiates in backward; it never changes
    the numbers of the forward solve. Outside autograd (``torch.no_grad()`` or
    nothing requiring grad) it must store nothing and recompute nothing.

    A new strategy is one subclass with a :attr:`name` (its string shorthand) and a
    :meth:`solve`; defining it registers it in :data:`~odenet.gradients.STRATEGIES`.

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
    >>> odenet.gradients.resolve_gradient("detached-example")  # registered by its name
    Detached()
    """

    #: The strategy's shorthand: ``gradient=name`` in :func:`odenet.odeint`,
    #: :class:`odenet.nn.ODEBlock` and :func:`resolve_gradient` makes ``cls()``. Set in a
    #: subclass's body, a non-empty lower-case name registers the subclass in
    #: :data:`~odenet.gradients.STRATEGIES` (user subclasses too); a name taken by another
    #: class is an :class:`~odenet.errors.ArgumentError`. ``""`` (the default; also a
    #: subclass that only inherits a name): usable as an instance only.
    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _register(cls)

    def solve(self, problem: Problem, y0: State) -> State:
        """Integrate ``problem`` from ``y0``; return the stacked outputs (see the contract)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_gradient(gradient: str | GradientStrategy) -> GradientStrategy:
    """Turn ``gradient`` (a name or a strategy instance) into a strategy instance.

    A name (case-insensitive) is looked up in :data:`STRATEGIES` and its class
    instantiated without arguments; an instance is returned as it is.

    Parameters
    ----------
    gradient : str or GradientStrategy
        A key of :data:`STRATEGIES` or a strategy instance.

    Returns
    -------
    GradientStrategy

    Raises
    ------
    ArgumentError
        An unknown name; the message lists :data:`STRATEGIES`.
    ArgumentTypeError
        Neither a string nor a strategy instance (a strategy class included).

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
            f"gradient: unknown strategy {gradient!r}; valid names are {strategy_names()} "
            "(or pass a GradientStrategy instance)"
        )
    raise ArgumentTypeError(
        f"gradient: expected a strategy name or a GradientStrategy instance, "
        f"got {type(gradient).__name__}"
    )
