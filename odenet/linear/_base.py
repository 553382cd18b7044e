"""The contract of an implicit linear operator ``L`` for the IMEX methods."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["ImplicitOperator"]


@runtime_checkable
class ImplicitOperator(Protocol):
    r"""The contract of an implicit operator ``L`` for ``y' = f(t, y) - L y``.

    :func:`odenet.odeint` itself needs only ``L(y)`` and ``L.solve`` (checked by
    :func:`odenet.solvers.check_implicit`); ``L.adjoint``, when present, serves the continuous
    adjoint (``gradient="adjoint"``), which otherwise transposes ``L`` by a vector–Jacobian
    product. The operators of :mod:`odenet.linear` implement all three. Contract:

    * ``L(y)`` applies the linear operator to a state ``y``, returning a tensor like ``y``;
    * ``L.adjoint(z)`` applies its transpose :math:`L^\top` (with respect to the Euclidean
      inner product over all entries), so that :math:`\langle L y, z\rangle =
      \langle y, L^\top z\rangle`;
    * ``L.solve(r, gamma)`` returns :math:`(I + \gamma L)^{-1} r` for a scalar
      :math:`\gamma \ge 0`; an IMEX stage with implicit coefficient :math:`a_{ii}` calls it
      once with :math:`\gamma = h\,a_{ii}`.

    All three are differentiable in their tensor inputs and in the operator's parameters.
    ``L`` should be positive semi-definite (:math:`\langle y, L y\rangle \ge 0`) so that the
    solve exists for every :math:`\gamma \ge 0` and the implicit stages are unconditionally
    stable. An :class:`torch.nn.Module` operator has its parameters collected by
    :func:`odenet.odeint`.

    Examples
    --------
    A scalar multiple of the identity satisfies the contract:

    >>> import torch, odenet
    >>> from odenet.linear import ImplicitOperator
    >>> class Scaled:
    ...     def __init__(self, c):
    ...         self.c = c
    ...     def __call__(self, y):
    ...         return self.c * y
    ...     def adjoint(self, z):
    ...         return self.c * z
    ...     def solve(self, r, gamma):
    ...         return r / (1 + gamma * self.c)
    >>> isinstance(Scaled(2.0), ImplicitOperator)
    True
    >>> y = odenet.odeint(lambda t, y: torch.zeros_like(y), torch.ones(1, dtype=torch.float64),
    ...                   torch.tensor([0.0, 1.0], dtype=torch.float64), method="imex_euler",
    ...                   step_size=0.5, implicit=Scaled(2.0))
    >>> y[-1].item()  # two backward Euler steps: (1 / (1 + 0.5 * 2))^2
    0.25
    """

    def __call__(self, y: Tensor) -> Tensor:
        """Apply ``L``."""
        ...

    def adjoint(self, z: Tensor) -> Tensor:
        """Apply the transpose of ``L``."""
        ...

    def solve(self, r: Tensor, gamma: float | Tensor) -> Tensor:
        """Return ``(I + gamma L)^{-1} r``."""
        ...
