"""The networks the ``odenet-analysis`` command analyses: specifications, data and one ODE block.

A specification (a plain dict, see :data:`DEFAULT_SPEC`) names a model and its
settings; :func:`build_case` turns it into a :class:`Case`: the right-hand side
of the network's ODE block, the block input computed from real data (a batch
of scikit-learn's bundled digits by default, or generated bar images) through
the opening layer, the block's method/steps/``T``, the implicit operator of IMEX
models, and the classification loss of the head on the block output. Building
is deterministic in the seed, so a measurement process can rebuild the same case
from the specification alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from odenet.errors import ArgumentError

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_SPEC",
    "MODELS",
    "Case",
    "build_case",
    "build_network",
    "check_spec",
    "make_network",
]

#: Models of the command: an ODE-ResNet with lean / sparse / deformable / dense
#: operators, or IMEXnet (dense explicit part, FFT-implicit depthwise smoothing).
MODELS = ("lean", "sparse", "deform", "dense", "imex")

#: Activations by name.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softplus": nn.functional.softplus,
    "gelu": nn.functional.gelu,
    "silu": nn.functional.silu,
    "leaky_relu": nn.functional.leaky_relu,
}

FORMS = ("parabolic", "residual")
NORMS = (None, "group", "instance")
DATA = ("auto", "digits", "synthetic")

#: The default specification (``odenet-analysis report`` with no arguments).
DEFAULT_SPEC: dict[str, Any] = {
    "model": "lean",
    "form": "parabolic",
    "norm": None,
    "activation": "tanh",
    "channels": 8,
    "batch": 16,
    "method": "rk4",
    "steps": 4,
    "T": 1.0,
    "dtype": "float64",
    "device": "cpu",
    "seed": 0,
    "data": "auto",
    "weight_scale": 1.0,
    "train_steps": 0,
    "blocks": 1,
    "weights": None,
}


def check_spec(spec: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A complete, validated specification: :data:`DEFAULT_SPEC` updated by ``spec`` and overrides.

    Examples
    --------
    >>> from analysis._models import check_spec
    >>> check_spec(model="dense", steps=8)["steps"]
    8
    >>> check_spec(model="resnet50")
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: model: unknown model 'resnet50'; valid models are 'lean', ...
    """
    out = dict(DEFAULT_SPEC)
    for src in (spec or {}), overrides:
        for k, v in src.items():
            if k not in DEFAULT_SPEC:
                raise ArgumentError(
                    f"spec: unknown setting {k!r}; valid settings are "
                    + ", ".join(repr(s) for s in DEFAULT_SPEC)
                )
            out[k] = v

    def choice(key: str, valid) -> None:
        if out[key] not in valid:
            raise ArgumentError(
                f"{key}: unknown {key} {out[key]!r}; valid {key}s are "
                + ", ".join(repr(v) for v in valid)
            )

    choice("model", MODELS)
    choice("norm", NORMS)
    choice("form", FORMS)
    choice("activation", tuple(ACTIVATIONS))
    choice("data", DATA)
    choice("dtype", ("float32", "float64"))
    for key in ("channels", "batch", "steps", "blocks"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArgumentError(f"{key}: expected a positive integer, got {v!r}")
    for key in ("T", "weight_scale"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ArgumentError(f"{key}: expected a finite positive number, got {v!r}")
        out[key] = float(v)
    if out["weights"] is not None:
        import os

        w = os.fspath(out["weights"])
        if not os.path.isfile(w):
            raise ArgumentError(f"weights: no such file {w!r}")
        out["weights"] = w
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int):
        raise ArgumentError(f"seed: expected an integer, got {out['seed']!r}")
    if isinstance(out["train_steps"], bool) or not isinstance(out["train_steps"], int) or (
        out["train_steps"] < 0
    ):
        raise ArgumentError(
            f"train_steps: expected a non-negative integer, got {out['train_steps']!r}"
        )
    from analysis._region import resolve_method

    resolve_method(out["method"])
    try:
        dev = torch.device(out["device"])
    except (RuntimeError, TypeError):
        raise ArgumentError(f"device: not a device: {out['device']!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device: CUDA was requested but is not available")
    return out


# -- data --------------------------------------------------------------------------------------
def _digits(n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    from sklearn.datasets import load_digits

    d = load_digits()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(d.target), generator=g)[:n]
    x = torch.tensor(d.images, dtype=torch.float64)[idx].unsqueeze(1) / 16.0
    return x, torch.tensor(d.target)[idx], "scikit-learn digits (8x8, 10 classes)"


def _synthetic(n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """8x8 images of a bar in one of 4 orientations (the class), with noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = 0.1 * torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    r = torch.arange(8)
    for i, c in enumerate(labels.tolist()):
        k = int(torch.randint(1, 7, (1,), generator=g))
        if c == 0:
            x[i, 0, k, :] += 1.0
        elif c == 1:
            x[i, 0, :, k] += 1.0
        elif c == 2:
            x[i, 0, r, r] += 1.0
        else:
            x[i, 0, r, 7 - r] += 1.0
    return x, labels, "generated bar images (8x8, 4 orientations)"


def load_data(kind: str, n: int, seed: int) -> tuple[Tensor, Tensor, str]:
    """``(images, labels, description)`` of ``n`` samples: generated bars for ``"synthetic"``,
    scikit-learn's digits for ``"digits"`` and ``"auto"``.

    Examples
    --------
    >>> from analysis._models import load_data
    >>> x, y, _ = load_data("synthetic", 4, 0)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 1, 8, 8), (4,))
    """
    return _synthetic(n, seed) if kind == "synthetic" else _digits(n, seed)


# -- the networks ---------------------------------------------------------------------------------
def _activation(name: str):
    import odenet.nn as onn

    return name if name in onn.ACTIVATIONS else ACTIVATIONS[name]


def make_network(
    spec: Mapping[str, Any], num_classes: int
) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """``(network, stem, blocks, head)`` of the network of a specification.

    ODE-ResNet models are :class:`odenet.models.ODEResNet` with one stage of
    ``channels`` channels and ``blocks`` ODE blocks (its stem, the stage, its
    head); ``imex`` is IMEXnet: a 3x3 opening convolution, ``blocks``
    :class:`odenet.nn.IMEXBlock` s (dense parabolic explicit part, learnable
    FFT-implicit depthwise ``L``) and a pooling + linear head.

    Examples
    --------
    >>> from analysis._models import check_spec, make_network
    >>> net, stem, blocks, head = make_network(check_spec(model="sparse", channels=4), 10)
    >>> type(blocks[0].rhs.op).__name__, type(blocks[0]).__name__
    ('SparseConv2d', 'ODEBlock')
    """
    import odenet.nn as onn
    from analysis._region import resolve_method
    from odenet import IMEXTableau
    from odenet.models import ODEResNet

    s = check_spec(spec)
    C = s["channels"]
    act = _activation(s["activation"])
    if s["model"] == "imex":
        method = s["method"] if s["method"] in ("imex_euler", "ars222", "ars443") else "ars222"
        blocks = nn.Sequential(*[
            onn.IMEXBlock(onn.DenseConv2d(C, C, 3), activation=act, T=s["T"],
                          steps=s["steps"], method=method, gradient="backprop")
            for _ in range(s["blocks"])
        ])
        stem = nn.Sequential(nn.Conv2d(1, C, 3, padding=1, bias=False), onn.make_activation(act))
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, num_classes))
        net = nn.Sequential(stem, blocks, head)
        _load_weights(net, s["weights"])
        return net, stem, blocks, head
    if isinstance(resolve_method(s["method"]), IMEXTableau):
        raise ArgumentError(
            f"method: {s['method']!r} is an IMEX method; it needs the 'imex' model (an implicit "
            "part), or choose an explicit method"
        )
    net = ODEResNet(1, num_classes, widths=(C,), blocks=s["blocks"], op=s["model"],
                    form=s["form"],
                    method=s["method"], steps=s["steps"], T=s["T"], gradient="backprop",
                    activation=act, norm=s["norm"])
    _load_weights(net, s["weights"])
    return net, net.stem, net.stages[0], net.head


def _load_weights(net: nn.Module, path: str | None) -> None:
    """Load a state dict saved with ``torch.save(net.state_dict(), path)`` (no unpickling)."""
    if path is None:
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file
        raise ArgumentError(f"weights: cannot read {path!r} as a state dict ({err})") from None
    if not isinstance(state, Mapping):
        raise ArgumentError(f"weights: {path!r} holds a {type(state).__name__}, not a state dict")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = " ".join(line.strip() for line in str(err).splitlines()[:2])
        raise ArgumentError(
            f"weights: {path!r} does not fit the network of this specification ({first}); "
            "match --model, --channels, --blocks, --form and --norm to the saved network"
        ) from None


def build_network(spec: Mapping[str, Any] | None = None) -> tuple[nn.Module, Tensor, str]:
    """``(network, images, description)``: the whole network of a specification and a batch.

    The network is the stem, ``blocks`` ODE blocks and the head in sequence
    (an :class:`odenet.models.ODEResNet`, or IMEXnet; weights from the seed or
    the ``weights`` file, untrained), on ``batch`` images of the data.

    Examples
    --------
    >>> from analysis._models import build_network
    >>> net, x, _ = build_network({"model": "lean", "channels": 2, "batch": 3, "blocks": 2})
    >>> tuple(net(x).shape)
    (3, 10)
    """
    s = check_spec(spec)
    dtype = getattr(torch, s["dtype"])
    device = torch.device(s["device"])
    x, labels, data_desc = load_data(s["data"], max(s["batch"], 64), s["seed"])
    torch.manual_seed(s["seed"])
    net = make_network(s, max(int(labels.max()) + 1, 2))[0].to(dtype=dtype, device=device)
    return net, x[: s["batch"]].to(dtype=dtype, device=device), data_desc


@dataclass
class Case:
    """One ODE block of a network, ready for the analysis functions."""

    func: nn.Module
    block: nn.Module
    y0: Tensor
    method: str
    steps: int
    T: float
    implicit: Any = None
    loss: Callable[[Tensor], Tensor] | None = None
    params: list[Tensor] = field(default_factory=list)
    description: str = ""
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def step_size(self) -> float:
        return self.T / self.steps


def build_case(spec: Mapping[str, Any] | None = None) -> Case:
    """Build the network of a specification and return its ODE block as a :class:`Case`.

    The network (:func:`make_network`): an opening 3x3 convolution (1 to
    ``channels``), one ODE block whose right-hand side is built from the chosen
    operator, and a head (average pooling and a linear layer); weights are drawn
    from the seed (the block's convolutions scaled by ``weight_scale``) and
    optionally trained for
    ``train_steps`` Adam steps on the data. The case's ``y0`` is the block input
    for a batch of ``batch`` images, its loss the cross-entropy of the head.

    Examples
    --------
    >>> from analysis._models import build_case
    >>> case = build_case({"model": "lean", "channels": 2, "batch": 3})
    >>> tuple(case.y0.shape), case.method, case.steps
    ((3, 2, 8, 8), 'rk4', 4)
    >>> float(case.loss(case.y0[None])) > 0
    True
    """
    s = check_spec(spec)
    dtype = getattr(torch, s["dtype"])
    device = torch.device(s["device"])
    n_data = max(s["batch"], 512 if s["train_steps"] else 64)
    x, labels, data_desc = load_data(s["data"], n_data, s["seed"])
    n_classes = max(int(labels.max()) + 1, 2)
    torch.manual_seed(s["seed"])
    C = s["channels"]
    _, opening, blocks, head = make_network(s, n_classes)
    block = blocks[0]
    rhs, implicit = block.rhs, block.implicit
    method = block.method if isinstance(block.method, str) else block.method.name
    if s["weight_scale"] != 1.0:
        with torch.no_grad():
            for name, p in rhs.named_parameters():
                if name.endswith("weight") and p.ndim == 4:
                    p.mul_(s["weight_scale"])
    nets = nn.ModuleList([opening, block, head]).to(dtype=dtype, device=device)
    x = x.to(dtype=dtype, device=device)
    labels = labels.to(device)
    t = torch.tensor([0.0, s["T"]], dtype=dtype, device=device)
    h = s["T"] / s["steps"]

    def logits(y_end: Tensor) -> Tensor:
        return head(y_end)

    if s["train_steps"]:
        import odenet

        opt = torch.optim.Adam(nets.parameters(), lr=5e-3)
        g = torch.Generator().manual_seed(s["seed"] + 1)
        for _ in range(s["train_steps"]):
            idx = torch.randint(0, len(labels), (32,), generator=g)
            y = odenet.odeint(rhs, opening(x[idx]), t, method=method, step_size=h,
                              implicit=implicit)
            loss = nn.functional.cross_entropy(logits(y[-1]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in [*opening.parameters(), *head.parameters()]:
        p.requires_grad_(False)
    with torch.no_grad():
        y0 = opening(x[: s["batch"]])
    batch_labels = labels[: s["batch"]]

    def loss_fn(y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits(y[-1]), batch_labels)

    params = [p for p in block.parameters() if p.requires_grad]
    kind = {"lean": "lean", "sparse": "pre-defined sparse (psc4)", "deform": "deformable",
            "dense": "dense 3x3", "imex": "dense 3x3"}[s["model"]]
    norm = f", {s['norm']} normalisation" if s["norm"] and s["model"] != "imex" else ""
    desc = (
        f"ODE block of {'an IMEXnet' if s['model'] == 'imex' else 'an ODE-ResNet'} with "
        f"{kind} operators, {'parabolic' if s['model'] == 'imex' else s['form']} form{norm}"
        f"{' and an FFT-implicit depthwise L' if implicit is not None else ''}, "
        f"{s['activation']}, {C} channels; {method}, {s['steps']} steps on [0, {s['T']:g}]; "
        f"data: {data_desc}"
    )
    return Case(rhs, block, y0, method, s["steps"], s["T"], implicit, loss_fn, params, desc, s)
