"""An ODE-ResNet: stages of ODE blocks with cheap convolution operators."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from torch import Tensor, nn

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients._base import GradientStrategy, resolve_gradient
from odenet.nn._base import ConvOperator
from odenet.nn._block import ODEBlock
from odenet.nn._checks import check_positive_int
from odenet.nn._deform import DeformConv2d
from odenet.nn._dense import DenseConv2d
from odenet.nn._lean import LeanConv2d
from odenet.nn._rhs import ParabolicRHS, ResidualRHS, make_activation, make_norm
from odenet.nn._sparse import SparseConv2d
from odenet.nn.functional._lean import STENCILS
from odenet.solvers._methods import resolve_method
from odenet.solvers._tableau import IMEXTableau

__all__ = ["OPERATORS", "ODEResNet", "make_operator", "register_operator"]

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}

#: The operator registry: name -> factory ``factory(channels, **options)`` of a
#: ``channels -> channels`` operator, read by :func:`make_operator`, :class:`ODEResNet` and
#: the models of :mod:`odenet.analysis`. Extend it with :func:`register_operator`.
OPERATORS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(_FACTORIES)


def register_operator(
    name: str, factory: Callable[..., nn.Module], *, replace: bool = False
) -> Callable[..., nn.Module]:
    """Make ``factory`` available by ``name`` to :func:`make_operator` and :class:`ODEResNet`.

    An operator is its functional form, its module, and this one line.

    Parameters
    ----------
    name : str
        The operator's name (``op=name``).
    factory : callable
        ``factory(channels, **options)`` returning a ``channels -> channels`` module; of the
        options :func:`make_operator` knows (``stencil``, ``period``) it receives those its
        signature names.
    replace : bool, default False
        Allow replacing an operator already registered under ``name``.

    Returns
    -------
    callable
        ``factory`` (so that the function can be used as a decorator through
        ``functools.partial``).

    Raises
    ------
    odenet.errors.ArgumentError
        ``name`` is taken (without ``replace=True``) or empty.

    Examples
    --------
    >>> import torch
    >>> from odenet.models import OPERATORS, make_operator, register_operator
    >>> _ = register_operator("conv5", lambda c: torch.nn.Conv2d(c, c, 5, padding=2))
    >>> make_operator("conv5", 4).kernel_size
    (5, 5)
    >>> "conv5" in OPERATORS
    True
    """
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"name: expected a non-empty string, got {name!r}")
    if not callable(factory):
        raise ArgumentTypeError(f"factory: expected a callable, got {type(factory).__name__}")
    if name in _FACTORIES and not replace and _FACTORIES[name] is not factory:
        raise ArgumentError(
            f"name: the operator {name!r} is already registered; pass replace=True to replace it"
        )
    _FACTORIES[name] = factory
    return factory


register_operator("lean", lambda channels, stencil=5: LeanConv2d(channels, channels,
                                                                 stencil=stencil))
register_operator("sparse", lambda channels, period=8: SparseConv2d(channels, channels, "psc4",
                                                                    period=period))
register_operator("deform", lambda channels: DeformConv2d(channels, channels, 3, padding=1,
                                                          modulated=True))
register_operator("dense", lambda channels: DenseConv2d(channels, channels, 3))


def _call_factory(factory: Callable[..., nn.Module], channels: int, options: dict) -> nn.Module:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: channels only
        return factory(channels)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return factory(channels, **options)
    return factory(channels, **{k: v for k, v in options.items() if k in params})

_FORMS = {"residual": ResidualRHS, "parabolic": ParabolicRHS}


def make_operator(
    op: str | Callable[[int], nn.Module], channels: int, *, stencil: int = 5, period: int = 8
) -> nn.Module:
    """A ``channels → channels`` operator by name (:data:`OPERATORS`), or from a factory
    ``op(channels)``.

    ``"dense"``: :class:`~odenet.nn.DenseConv2d` (3×3); ``"lean"``:
    :class:`~odenet.nn.LeanConv2d` (``stencil``); ``"sparse"``:
    :class:`~odenet.nn.SparseConv2d` (psc4, ``period``); ``"deform"``:
    :class:`~odenet.nn.DeformConv2d` (3×3, modulated).

    Examples
    --------
    >>> from odenet.models import make_operator
    >>> make_operator("lean", 8)
    LeanConv2d(8, 8, stencil=5, bias=False)
    """
    check_positive_int("channels", channels)
    if isinstance(op, str):
        if op not in OPERATORS:
            raise ArgumentError(
                f"op: unknown operator {op!r}; valid names are "
                + ", ".join(repr(o) for o in OPERATORS)
                + " (or pass a factory op(channels), or register one with register_operator)"
            )
        made, what = (
            _call_factory(OPERATORS[op], channels, {"stencil": stencil, "period": period}),
            f"the registered factory of {op!r}",
        )
    elif callable(op):
        made, what = op(channels), "the factory"
    else:
        raise ArgumentTypeError(f"op: expected a name or a callable, got {type(op).__name__}")
    if not isinstance(made, nn.Module):
        raise ArgumentTypeError(
            f"op: {what} returned an object of type {type(made).__name__}; expected an "
            f"nn.Module operator on {channels} channels (e.g. odenet.nn.LeanConv2d)"
        )
    return made


class ODEResNet(nn.Module):
    r"""A residual network read as an ODE: stages of ODE blocks joined by downsampling.

    Layout (as the networks of the ANODE and LeanResNet papers): a dense 3×3
    opening convolution ``in_channels → widths[0]`` with normalisation and
    activation; for every stage ``s`` a sequence of ``blocks[s]``
    :class:`~odenet.nn.ODEBlock`\ s, each integrating ``f(y) = σ(N(K y + b))``
    (``form="residual"``) or ``−Kᵀσ(N(K y + b))`` (``form="parabolic"``) with ``K``
    the chosen operator on ``widths[s]`` channels; between stages a transition
    (2×2 average pooling, then a dense 1×1 convolution to the next width,
    normalisation, activation); finally global average pooling and a linear
    classifier. Only the ODE blocks use the cheap operators; the opening and the
    1×1 transitions stay dense, as in pSConv.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    num_classes : int
        Number of outputs of the classifier.
    widths : sequence of int, default (16, 32)
        Channels of each stage; every stage after the first halves the resolution.
    blocks : int or sequence of int, default 1
        ODE blocks per stage (one number for all stages, or one per stage).
    op : {"dense", "lean", "sparse", "deform"} or callable, default "lean"
        The operator ``K`` of the blocks (see :func:`make_operator`).
    form : {"residual", "parabolic"}, default "residual"
        The right-hand side form.
    method : str or ButcherTableau, default "rk4"
        Explicit method of the blocks (see :data:`odenet.METHODS`); an IMEX method is
        refused (IMEXnet's blocks are :class:`odenet.nn.IMEXBlock`).
    steps : int, default 4
        Steps per block.
    T : float, default 1.0
        Integration time per block.
    gradient : str or GradientStrategy, default "anode"
        Gradient strategy of the blocks.
    activation : str, callable, nn.Module or nn.Module subclass, default "relu"
        ``σ`` everywhere: a name of :data:`odenet.nn.ACTIVATIONS`, a callable such as
        ``torch.sigmoid``, a module class such as ``torch.nn.GELU``, or a module instance
        (copied for every layer, so that layers never share its parameters); see
        :func:`odenet.nn.make_activation`.
    norm : None, str, default "group"
        ``N`` in the blocks and after the opening/transitions (see
        :func:`odenet.nn.make_norm`). Group normalisation keeps every sample
        independent and has no running statistics, which suits recomputing
        gradient strategies.
    stencil : {4, 5, 9}, default 5
        Stencil of the lean operators.

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        Any invalid argument, named in the message (checked before anything is built).

    Examples
    --------
    >>> import torch, odenet
    >>> net = odenet.models.ODEResNet(1, 10, widths=(8, 16), steps=2, gradient="backprop")
    >>> net(torch.randn(4, 1, 8, 8)).shape
    torch.Size([4, 10])
    >>> [type(m.rhs.op).__name__ for m in net.modules() if isinstance(m, odenet.nn.ODEBlock)]
    ['LeanConv2d', 'LeanConv2d']
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (16, 32),
        blocks: int | Sequence[int] = 1,
        op: str | Callable[[int], nn.Module] = "lean",
        form: str = "residual",
        method: str = "rk4",
        steps: int = 4,
        T: float = 1.0,
        gradient: str | GradientStrategy = "anode",
        activation: str | nn.Module | type[nn.Module] | Callable = "relu",
        norm: str | None = "group",
        stencil: int = 5,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        widths = tuple(widths) if isinstance(widths, (tuple, list)) else widths
        if not isinstance(widths, tuple) or not widths:
            raise ArgumentTypeError("widths: expected a non-empty sequence of ints")
        for i, w in enumerate(widths):
            check_positive_int(f"widths[{i}]", w)
        if isinstance(blocks, int) and not isinstance(blocks, bool):
            blocks = (blocks,) * len(widths)
        if not isinstance(blocks, (tuple, list)):
            raise ArgumentTypeError(
                f"blocks: expected an int or a sequence of ints, got {type(blocks).__name__}"
            )
        blocks = tuple(blocks)
        if len(blocks) != len(widths):
            raise ArgumentError(
                f"blocks: expected one count per stage ({len(widths)} stages), got {len(blocks)}"
            )
        for i, nb in enumerate(blocks):
            check_positive_int(f"blocks[{i}]", nb, minimum=0)
        if form not in _FORMS:
            raise ArgumentError(f"form: expected 'residual' or 'parabolic', got {form!r}")
        if isinstance(op, str) and op not in OPERATORS:
            make_operator(op, 1)  # raises the error listing the valid names
        # refuse bad settings before building anything (also when no stage has a block)
        if isinstance(stencil, bool) or stencil not in STENCILS:
            raise ArgumentError(f"stencil: expected one of {sorted(STENCILS)}, got {stencil!r}")
        tableau = resolve_method(method)
        if isinstance(tableau, IMEXTableau):
            raise ArgumentError(
                f"method: {tableau.name!r} is an IMEX scheme; the blocks of an ODEResNet are "
                "explicit (use an explicit method, or odenet.nn.IMEXBlock for IMEXnet)"
            )
        resolve_gradient(gradient)
        make_activation(activation)
        if norm is not None and not isinstance(norm, str):
            raise ArgumentTypeError(
                "norm: expected None or a name (each layer gets its own normalisation), got "
                f"{type(norm).__name__}"
            )
        make_norm(norm, 1)  # refuses an unknown name

        def act() -> nn.Module:
            # a module instance is copied per use: layers must not share its parameters
            a = copy.deepcopy(activation) if isinstance(activation, nn.Module) else activation
            return make_activation(a)
        self.widths, self.blocks, self.op_name = (
            widths,
            blocks,
            op if isinstance(op, str) else "custom",
        )
        rhs_cls = _FORMS[form]

        def post(c: int) -> list[nn.Module]:
            return [make_norm(norm, c), act()]

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), *post(widths[0])
        )
        stages, transitions = [], []
        for s, (w, nb) in enumerate(zip(widths, blocks)):
            if s > 0:
                transitions.append(
                    nn.Sequential(
                        nn.AvgPool2d(2), nn.Conv2d(widths[s - 1], w, 1, bias=False), *post(w)
                    )
                )
            stage = [
                ODEBlock(
                    rhs_cls(
                        make_operator(op, w, stencil=stencil), activation=act(), norm=norm
                    ),
                    T=T,
                    steps=steps,
                    method=method,
                    gradient=gradient,
                )
                for _ in range(nb)
            ]
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.transitions = nn.ModuleList(transitions)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], num_classes)
        )

    def features(self, x: Tensor) -> Tensor:
        """The feature map before the classifier head."""
        y = self.stem(x)
        for s, stage in enumerate(self.stages):
            if s > 0:
                y = self.transitions[s - 1](y)
            y = stage(y)
        return y

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``(B, num_classes)``."""
        return self.head(self.features(x))

    def operators(self) -> list[ConvOperator]:
        """The operators ``K`` of all ODE blocks, in order.

        Examples
        --------
        >>> import odenet
        >>> net = odenet.models.ODEResNet(3, 2, widths=(4, 8), blocks=(1, 2), op="sparse")
        >>> [op.in_channels for op in net.operators()]
        [4, 8, 8]
        """
        return [m.rhs.op for m in self.modules() if isinstance(m, ODEBlock)]
