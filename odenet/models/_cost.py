"""Parameter and multiply-add counts per layer, against a dense network of the same shape."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.nn._base import ConvOperator

__all__ = ["CostReport", "LayerCost", "count_cost"]


@dataclass
class LayerCost:
    """Cost of one layer in a :class:`CostReport`.

    Attributes
    ----------
    name : str
        Qualified module name (``"other"`` collects the remaining parameters:
        normalisations and right-hand-side biases).
    kind : str
        Module class name.
    params : int
        Parameters of the layer.
    calls : int
        Applications during one forward pass (an operator inside an ODE block is
        applied once per method stage and step; a parabolic form also applies its
        transpose, which is counted as an application).
    macs : int
        Multiply-adds per sample over all applications.
    dense_params, dense_macs : int
        The same for a dense ``k × k`` convolution of the same shape (equal to
        ``params`` / ``macs`` for layers that are dense already).
    """

    name: str
    kind: str
    params: int
    calls: int
    macs: int
    dense_params: int
    dense_macs: int


@dataclass
class CostReport:
    """Per-layer parameters and multiply-adds of a network (see :func:`count_cost`).

    Examples
    --------
    >>> import odenet
    >>> net = odenet.models.ODEResNet(1, 10, widths=(64,), steps=1, method="euler",
    ...                               norm=None)
    >>> report = odenet.models.count_cost(net, (1, 8, 8))
    >>> row = report.layers[1]
    >>> row.kind, row.params, row.dense_params
    ('LeanConv2d', 4416, 36864)
    >>> round(report.to_dict()["macs_ratio"], 3) < 1
    True
    """

    input_shape: tuple[int, ...]
    layers: list[LayerCost] = field(default_factory=list)

    @property
    def params(self) -> int:
        """Total parameters."""
        return sum(r.params for r in self.layers)

    @property
    def macs(self) -> int:
        """Total multiply-adds per sample."""
        return sum(r.macs for r in self.layers)

    @property
    def dense_params(self) -> int:
        """Total parameters with every operator replaced by a dense convolution."""
        return sum(r.dense_params for r in self.layers)

    @property
    def dense_macs(self) -> int:
        """Total multiply-adds with every operator replaced by a dense convolution."""
        return sum(r.dense_macs for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with the per-layer rows and the totals' ratios."""
        return {
            "input_shape": list(self.input_shape),
            "layers": [asdict(r) for r in self.layers],
            "params": self.params,
            "macs": self.macs,
            "dense_params": self.dense_params,
            "dense_macs": self.dense_macs,
            "params_ratio": self.params / max(self.dense_params, 1),
            "macs_ratio": self.macs / max(self.dense_macs, 1),
        }

    def table(self) -> str:
        """A plain-text table of the layers and the totals."""
        head = ("layer", "kind", "params", "dense params", "calls", "MACs", "dense MACs")
        rows = [
            (
                r.name,
                r.kind,
                f"{r.params:,}",
                f"{r.dense_params:,}",
                str(r.calls),
                f"{r.macs:,}",
                f"{r.dense_macs:,}",
            )
            for r in self.layers
        ]
        rows.append(
            (
                "total",
                "",
                f"{self.params:,}",
                f"{self.dense_params:,}",
                "",
                f"{self.macs:,}",
                f"{self.dense_macs:,}",
            )
        )
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
            for row in [head, *rows]
        ]
        lines.insert(1, "-" * len(lines[0]))
        ratio = (
            f"ratios to dense: params {self.params / max(self.dense_params, 1):.3f}, "
            f"MACs {self.macs / max(self.dense_macs, 1):.3f}"
        )
        return "\n".join([*lines, ratio])

    def __str__(self) -> str:
        return self.table()


def _own_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@contextlib.contextmanager
def _instrument_operators(ops: dict[str, ConvOperator], counts: dict[str, list[int]]):
    """Count every application (forward, adjoint, frozen apply) of the operators."""
    patched = []
    for name, op in ops.items():
        depth = [0]

        def wrap(fn, name=name, op=op, depth=depth):
            def counted(*args, **kwargs):
                if depth[0] == 0:
                    x = args[0]
                    counts[name][0] += 1
                    counts[name][1] += op.multiply_adds(*x.shape[-2:])
                    counts[name][2] += op.dense_multiply_adds(*x.shape[-2:])
                depth[0] += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    depth[0] -= 1

            return counted

        for attr in ("forward", "adjoint", "apply_frozen"):
            fn = getattr(op, attr, None)
            if fn is not None:
                setattr(op, attr, wrap(fn))
                patched.append((op, attr))
    try:
        yield
    finally:
        for op, attr in patched:
            delattr(op, attr)


def count_cost(model: nn.Module, input_shape: tuple[int, ...]) -> CostReport:
    r"""Count parameters and multiply-adds per layer, and those of a dense equivalent.

    Runs one forward pass on a zero input (under ``torch.no_grad()``) and records
    every application of the convolution operators of :mod:`odenet.nn`
    (:class:`~odenet.nn.ConvOperator`: forward, transpose and frozen applications,
    i.e. every right-hand-side evaluation of every ODE block), of
    :class:`torch.nn.Conv2d` and of :class:`torch.nn.Linear` (convolutions inside an
    operator, such as the offset convolution of a deformable one, get their own rows
    with no dense counterpart). For each operator
    the "dense" columns give what a dense ``k × k`` convolution of the same shape
    would cost, so the totals compare the network with a dense ResNet of the same
    shape (same stages, widths, blocks, steps). Normalisations, activations,
    pooling and additions are not counted as multiply-adds; their parameters
    appear in the ``"other"`` row.

    Parameters
    ----------
    model : nn.Module
        The network (e.g. :class:`ODEResNet`).
    input_shape : tuple of int
        ``(C, H, W)`` of one sample (a leading batch dimension is allowed; the
        counts are per sample).

    Returns
    -------
    CostReport

    Examples
    --------
    >>> import odenet
    >>> net = odenet.models.ODEResNet(1, 10, widths=(16, 32), op="sparse", steps=2)
    >>> report = odenet.models.count_cost(net, (1, 8, 8))
    >>> report.params == sum(p.numel() for p in net.parameters())
    True
    >>> print(report.table().splitlines()[0].split())
    ['layer', 'kind', 'params', 'dense', 'params', 'calls', 'MACs', 'dense', 'MACs']
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(input_shape, (tuple, list, torch.Size)):
        raise ArgumentTypeError(
            f"input_shape: expected a tuple (C, H, W) or (B, C, H, W), got "
            f"{type(input_shape).__name__}"
        )
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ArgumentError(
            f"input_shape: expected (C, H, W) or (B, C, H, W) of positive ints, got {input_shape!r}"
        )
    ops: dict[str, ConvOperator] = {}
    plain: dict[str, nn.Module] = {}
    auxiliary: set[str] = set()  # layers inside an operator (e.g. an offset convolution)
    for name, m in model.named_modules():
        inside = any(name.startswith(o + ".") for o in ops)
        if isinstance(m, ConvOperator) and not inside:
            ops[name] = m
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            plain[name] = m
            if inside:
                auxiliary.add(name)
    counts = {name: [0, 0, 0] for name in [*ops, *plain]}
    hooks = []
    for name, m in plain.items():

        def hook(mod, args, out, name=name):
            per_sample = out.numel() // out.shape[0]
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                macs = per_sample * (mod.in_channels // mod.groups) * k
            else:
                macs = per_sample * mod.in_features
            counts[name][0] += 1
            counts[name][1] += macs
            counts[name][2] += 0 if name in auxiliary else macs

        hooks.append(m.register_forward_hook(hook))
    p = next(model.parameters(), None)
    x = torch.zeros(
        shape,
        dtype=p.dtype if p is not None else torch.float32,
        device=p.device if p is not None else None,
    )
    try:
        with torch.no_grad(), _instrument_operators(ops, counts):
            try:
                model(x)
            except RuntimeError as err:  # e.g. a channel count the first layer does not take
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise ArgumentError(
                    f"input_shape: the model does not take an input of shape {shape} ({first})"
                ) from err
    finally:
        for h in hooks:
            h.remove()
    report = CostReport(input_shape=shape[1:])
    counted = 0
    for name in [n for n, _ in model.named_modules() if n in counts]:
        m = ops.get(name, plain.get(name))
        calls, macs, dense_macs = counts[name]
        if isinstance(m, ConvOperator):
            params = sum(p.numel() for p in m.parameters(recurse=False))
            dense_params = m.dense_parameters()
        else:
            params = _own_params(m)
            dense_params = 0 if name in auxiliary else params
        report.layers.append(
            LayerCost(name, type(m).__name__, params, calls, macs, dense_params, dense_macs)
        )
        counted += params
    other = _own_params(model) - counted
    if other:
        report.layers.append(LayerCost("other", "norms, biases", other, 0, 0, other, 0))
    return report
