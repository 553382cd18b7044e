"""Right-hand-side forms ``f(t, y)`` built from a convolution operator."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn._checks import check_bool, check_positive_int

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "ParabolicRHS",
    "ResidualRHS",
    "activation_name",
    "make_activation",
    "make_norm",
]

def _identity(x: Tensor) -> Tensor:
    return x


#: Activations accepted by name (every name :func:`make_activation` resolves).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "leaky_relu": F.leaky_relu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "silu": F.silu,
    "identity": _identity,
}

#: Normalisations accepted by name (besides None and a module).
NORMS = ("batch", "instance", "group")


class _Activation(nn.Module):
    """A parameter-free activation function as a module (so that it fits ``nn.Sequential``)."""

    def __init__(self, name: str, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.name, self.fn = name, fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def activation_name(activation: object) -> str:
    """A short display name of an activation given by name, module, module class or callable.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn import activation_name
    >>> activation_name("gelu"), activation_name(torch.sigmoid), activation_name(torch.nn.SiLU())
    ('gelu', 'sigmoid', 'SiLU')
    """
    if isinstance(activation, str):
        return activation
    if isinstance(activation, _Activation):
        return activation.name
    if isinstance(activation, nn.Module):
        return type(activation).__name__
    name = getattr(activation, "__name__", None)
    return name if isinstance(name, str) else type(activation).__name__


def make_activation(
    activation: str | nn.Module | type[nn.Module] | Callable[[Tensor], Tensor],
) -> nn.Module:
    """Resolve an activation into a module: the one place every activation argument goes through.

    Parameters
    ----------
    activation : str, nn.Module, nn.Module subclass or callable
        A name of :data:`ACTIVATIONS`; a module instance (returned as given, so its
        parameters, e.g. of :class:`torch.nn.PReLU`, are the caller's); a module class
        (instantiated without arguments, e.g. ``torch.nn.GELU``); or any callable
        ``σ(x) -> Tensor`` (e.g. ``torch.sigmoid``), wrapped into a parameter-free module.

    Returns
    -------
    nn.Module
        Usable inside :class:`torch.nn.Sequential` and registered as a submodule.

    Raises
    ------
    odenet.errors.ArgumentError
        An unknown name (the message lists the valid ones).
    odenet.errors.ArgumentTypeError
        Anything else that is not callable, a class that is not an ``nn.Module``
        subclass, or a module class that cannot be built without arguments.

    Examples
    --------
    >>> import torch
    >>> from odenet.nn import make_activation
    >>> make_activation("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    >>> make_activation(torch.sigmoid)
    _Activation(sigmoid)
    >>> make_activation(torch.nn.GELU)
    GELU(approximate='none')
    """
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ArgumentError(
                f"activation: unknown name {activation!r}; valid names are "
                + ", ".join(repr(a) for a in ACTIVATIONS)
                + " (or pass a callable or an nn.Module)"
            )
        return _Activation(activation, ACTIVATIONS[activation])
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, type):
        if not issubclass(activation, nn.Module):
            raise ArgumentTypeError(
                f"activation: expected a name, a callable, an nn.Module or an nn.Module "
                f"subclass, got the class {activation.__name__}"
            )
        try:
            return activation()
        except TypeError as err:
            raise ArgumentTypeError(
                f"activation: cannot build {activation.__name__}() without arguments ({err}); "
                "pass an instance instead"
            ) from None
    if callable(activation):
        return _Activation(activation_name(activation), activation)
    raise ArgumentTypeError(
        "activation: expected a name, a callable, an nn.Module or an nn.Module subclass, got "
        f"{type(activation).__name__}"
    )


def make_norm(norm: str | nn.Module | None, channels: int) -> nn.Module:
    """Resolve a normalisation for ``channels`` channels.

    ``None``: identity; ``"batch"``: :class:`torch.nn.BatchNorm2d`; ``"instance"``:
    :class:`torch.nn.InstanceNorm2d` with affine parameters; ``"group"``:
    :class:`torch.nn.GroupNorm` with ``gcd(channels, 8)`` groups; a module is used
    as given.

    Examples
    --------
    >>> from odenet.nn import make_norm
    >>> norm = make_norm("group", 12)
    >>> type(norm).__name__, norm.num_groups
    ('GroupNorm', 4)
    """
    if norm is None:
        return nn.Identity()
    if isinstance(norm, nn.Module):
        return norm
    if isinstance(norm, str) and norm in NORMS:
        check_positive_int("channels", channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if isinstance(norm, str):
        raise ArgumentError(
            f"norm: unknown name {norm!r}; valid names are None, "
            + ", ".join(repr(n) for n in NORMS)
            + " (or pass a module)"
        )
    raise ArgumentTypeError(f"norm: expected None, a name or a module, got {type(norm).__name__}")


def _channels(op: object) -> int:
    """Output channels of ``op``: ``out_channels``, else the first dimension of a 4-D
    ``weight``, else ``in_channels`` (a square operator)."""
    for c in (getattr(op, "out_channels", None),):
        if isinstance(c, int) and not isinstance(c, bool):
            return c
    w = getattr(op, "weight", None)
    if isinstance(w, Tensor) and w.ndim == 4:
        return int(w.shape[0])
    c = getattr(op, "in_channels", None)
    if isinstance(c, int) and not isinstance(c, bool):
        return c
    raise ArgumentTypeError(
        f"op: expected a convolution operator with out_channels (e.g. odenet.nn.LeanConv2d), "
        f"got {type(op).__name__}"
    )


class _RHSBase(nn.Module):
    def __init__(
        self,
        op: nn.Module,
        activation: str | nn.Module | type[nn.Module] | Callable,
        norm: str | nn.Module | None,
        bias: bool,
    ) -> None:
        super().__init__()
        if not isinstance(op, nn.Module) or not callable(op):
            raise ArgumentTypeError(f"op: expected an nn.Module operator, got {type(op).__name__}")
        check_bool("bias", bias)
        self.op = op
        c = _channels(op)
        self.activation = make_activation(activation)
        self.norm = make_norm(norm, c)
        self.bias = nn.Parameter(torch.zeros(c)) if bias else None

    def _inner(self, u: Tensor) -> Tensor:
        if self.bias is not None:
            u = u + self.bias.view(1, -1, 1, 1)
        return self.activation(self.norm(u))


class ResidualRHS(_RHSBase):
    r"""``f(t, y) = σ(N(K y + b))``: the right-hand side of a residual network's block.

    With forward Euler and one unit step, ``y + f(y)`` is a ResNet block; finer
    steps and higher-order methods turn the network into an ODE discretisation.
    Usable as ``func`` in :func:`odenet.odeint` (it ignores ``t``).

    Parameters
    ----------
    op : ConvOperator
        ``K`` (e.g. :class:`LeanConv2d`, :class:`SparseConv2d`,
        :class:`DeformConv2d`, :class:`DenseConv2d`); must map ``C`` channels to
        ``C`` for use in an ODE.
    activation : str, callable, nn.Module or nn.Module subclass, default "relu"
        ``σ``: a name of :data:`ACTIVATIONS` (``"relu"``, ``"tanh"``, ``"gelu"``, ...), a
        callable such as ``torch.sigmoid``, or a module (see :func:`make_activation`).
    norm : None, str or nn.Module, default None
        ``N``: ``None`` (identity), ``"batch"``, ``"instance"``, ``"group"`` (see
        :func:`make_norm`) or a module. Batch normalisation in training mode
        makes ``f`` depend on the whole batch and updates running statistics at
        every evaluation (also when a gradient strategy recomputes the forward).
    bias : bool, default True
        Learnable ``b`` (zero-initialised).

    Examples
    --------
    >>> import torch, odenet
    >>> f = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(4, 4), activation="tanh")
    >>> y = odenet.odeint(f, torch.randn(2, 4, 6, 6), torch.tensor([0.0, 1.0]), step_size=0.5)
    >>> y.shape
    torch.Size([2, 2, 4, 6, 6])
    """

    def __init__(
        self,
        op: nn.Module,
        activation: str | nn.Module | type[nn.Module] | Callable = "relu",
        norm: str | nn.Module | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(op, activation, norm, bias)

    def forward(self, t: Tensor | float, y: Tensor) -> Tensor:
        """``σ(N(K y + b))``."""
        return self._inner(self.op(y))


class ParabolicRHS(_RHSBase):
    r"""``f(t, y) = −Kᵀ σ(N(K y + b))``: the stable, parabolic right-hand side.

    For a monotone ``σ`` (and ``N`` the identity or a positive per-channel
    scaling) the Jacobian ``−Kᵀ diag(σ') K`` is symmetric negative semi-definite,
    so the continuous dynamics do not amplify perturbations (Ruthotto & Haber,
    PDE-motivated networks); this is the explicit part of IMEXnet. ``Kᵀ`` is the
    operator's :meth:`~ConvOperator.adjoint`; for a deformable convolution both
    ``K`` and ``Kᵀ`` use the sampling positions predicted from ``y``
    (:meth:`~ConvOperator.linear_at`). Usable as ``func`` in :func:`odenet.odeint`.

    Parameters
    ----------
    op : ConvOperator
        ``K``, mapping ``C`` to ``C'`` channels (any ``C'``); must have ``.adjoint``.
    activation : str, callable, nn.Module or nn.Module subclass, default "relu"
        ``σ`` (see :func:`make_activation`).
    norm : None, str or nn.Module, default None
        ``N`` on the ``C'`` channels of ``K y`` (see :class:`ResidualRHS`).
    bias : bool, default True
        Learnable ``b`` (zero-initialised).

    Examples
    --------
    >>> import torch, odenet
    >>> f = odenet.nn.ParabolicRHS(odenet.nn.SparseConv2d(8, 16), activation="tanh").double()
    >>> y = torch.randn(1, 8, 5, 5, dtype=torch.float64)
    >>> v = torch.randn_like(y)
    >>> _, jv = torch.func.jvp(lambda y: f(0.0, y), (y,), (v,))
    >>> bool((v * jv).sum() <= 0)  # negative semi-definite Jacobian
    True
    """

    def __init__(
        self,
        op: nn.Module,
        activation: str | nn.Module | type[nn.Module] | Callable = "relu",
        norm: str | nn.Module | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(op, activation, norm, bias)
        if not callable(getattr(op, "adjoint", None)):
            raise ArgumentTypeError(
                f"op: the parabolic form needs Kᵀ, but {type(op).__name__} has no .adjoint; use "
                "an operator of odenet.nn (DenseConv2d for a plain convolution)"
            )

    def forward(self, t: Tensor | float, y: Tensor) -> Tensor:
        """``−Kᵀ σ(N(K y + b))``."""
        linear_at = getattr(self.op, "linear_at", None)
        k = linear_at(y) if callable(linear_at) else self.op
        return -k.adjoint(self._inner(k(y)))
