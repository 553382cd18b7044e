"""``HamiltonianRHS``: the partitioned right-hand side of Hamiltonian (leapfrog) networks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn._checks import check_bool
from odenet.nn._rhs import _channels, make_activation

__all__ = ["HamiltonianRHS"]


class HamiltonianRHS(nn.Module):
    r"""``y' = −K₁ᵀσ(K₁z + b₁)``, ``z' = K₂ᵀσ(K₂y + b₂)``: a Hamiltonian network's dynamics.

    The state is a pair ``(y, z)``; the derivative of ``y`` depends on ``z`` only and that
    of ``z`` on ``y`` only, the partitioned form the ``leapfrog`` method (Störmer–Verlet)
    needs to be reversible (Haber & Ruthotto, "Stable architectures for deep neural
    networks", 2017; Chang et al., "Reversible architectures for arbitrarily deep residual
    neural networks", AAAI 2018). For ``σ = Φ'`` the flow is Hamiltonian with
    ``H(y, z) = −Σ Φ(K₁z + b₁) − Σ Φ(K₂y + b₂)``: it preserves volume, and the
    linearisation's eigenvalues are purely imaginary when ``K₁ = K₂`` and ``σ`` is
    monotone, so the dynamics neither blow up nor forget their input (Haber & Ruthotto's
    stability argument). :meth:`dy` and :meth:`dz` are the two halves; ``leapfrog`` calls
    them separately, one evaluation of each per step.

    Parameters
    ----------
    op : ConvOperator
        ``K₁`` (e.g. :class:`LeanConv2d`), with ``.adjoint`` (the transpose), mapping the
        ``C`` channels of ``z`` to any number of channels.
    op2 : ConvOperator, optional
        ``K₂`` (same requirements, acting on ``y``); default: ``op`` itself (shared weights).
    activation : str, callable, nn.Module or nn.Module subclass, default "tanh"
        ``σ`` (see :func:`make_activation`).
    bias : bool, default True
        Learnable ``b₁`` and ``b₂`` (zero-initialised).

    Examples
    --------
    >>> import torch, odenet
    >>> f = odenet.nn.HamiltonianRHS(odenet.nn.LeanConv2d(4, 4)).double()
    >>> y0 = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    >>> z0 = torch.zeros_like(y0)
    >>> y, z = odenet.odeint(f, (y0, z0), torch.tensor([0.0, 1.0], dtype=torch.float64),
    ...                      method="leapfrog", step_size=0.1, gradient="reversible")
    >>> y.shape, z.shape
    (torch.Size([2, 2, 4, 6, 6]), torch.Size([2, 2, 4, 6, 6]))
    """

    def __init__(
        self,
        op: nn.Module,
        op2: nn.Module | None = None,
        activation: str | nn.Module | type[nn.Module] | Callable = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_bool("bias", bias)
        for name, o in (("op", op), ("op2", op2)):
            if o is None:
                continue
            if not isinstance(o, nn.Module) or not callable(o):
                raise ArgumentTypeError(
                    f"{name}: expected an nn.Module operator, got {type(o).__name__}"
                )
            if not callable(getattr(o, "adjoint", None)):
                raise ArgumentTypeError(
                    f"{name}: the Hamiltonian form needs Kᵀ, but {type(o).__name__} has no "
                    ".adjoint; use an operator of odenet.nn (DenseConv2d for a plain convolution)"
                )
        self.op = op
        self.op2 = op2
        c1 = _channels(op)
        c2 = _channels(op2) if op2 is not None else c1
        self.activation = make_activation(activation)
        self.bias1 = nn.Parameter(torch.zeros(c1)) if bias else None
        self.bias2 = nn.Parameter(torch.zeros(c2)) if bias else None

    def _term(self, op: nn.Module, b: Tensor | None, x: Tensor) -> Tensor:
        linear_at = getattr(op, "linear_at", None)
        op = linear_at(x) if callable(linear_at) else op  # deformable: Kᵀ samples where K did
        u = op(x)
        if b is not None:
            u = u + b.view(1, -1, *([1] * (u.ndim - 2)))
        return op.adjoint(self.activation(u))

    def forward(self, t: Tensor | float, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``(−K₁ᵀσ(K₁z + b₁), K₂ᵀσ(K₂y + b₂))`` for ``state = (y, z)``."""
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ArgumentError(
                "state: HamiltonianRHS acts on a pair (y, z); pass y0=(y, z) to odenet.odeint, "
                f"got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
            )
        y, z = state
        return self.dy(t, z), self.dz(t, y)

    def dy(self, t: Tensor | float, z: Tensor) -> Tensor:
        """``y' = −K₁ᵀσ(K₁z + b₁)``: the half of :meth:`forward` that ``leapfrog`` evaluates
        on its own (it never needs both halves at one point)."""
        return -self._term(self.op, self.bias1, z)

    def dz(self, t: Tensor | float, y: Tensor) -> Tensor:
        """``z' = K₂ᵀσ(K₂y + b₂)``, the other half."""
        return self._term(self.op if self.op2 is None else self.op2, self.bias2, y)
