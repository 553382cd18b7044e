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

from odenet import IMEXTableau
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.models import OPERATORS
from odenet.nn import ACTIVATIONS as _ACTIVATIONS
from odenet.nn import activation_name, make_activation

__all__ = [
    "ACTIVATIONS",
    "DATA",
    "DEFAULT_METHODS",
    "DEFAULT_SPEC",
    "FORMS",
    "NORMS",
    "Case",
    "build_case",
    "build_network",
    "check_spec",
    "load_data",
    "make_network",
    "model_names",
]

#: Models of the command: an ODE-ResNet with lean / sparse / deformable / dense
#: operators, or IMEXnet (dense explicit part, FFT-implicit depthwise smoothing).
def model_names() -> tuple[str, ...]:
    """The models: every operator of :data:`odenet.models.OPERATORS` (an ODE-ResNet built
    from it, read live, so a registered operator is a model), plus ``"imex"``.

    Examples
    --------
    >>> from odenet.analysis._models import model_names
    >>> model_names()[:4], model_names()[-1]
    (('lean', 'sparse', 'deform', 'dense'), 'imex')
    """
    return (*(op for op in OPERATORS if op != "imex"), "imex")


#: Activations by name: the names :func:`odenet.nn.make_activation` resolves (the same mapping,
#: so every name a specification or the command accepts builds).
ACTIVATIONS: Mapping[str, Callable[[Tensor], Tensor]] = _ACTIVATIONS

#: The block method of each model when the specification's ``method`` is ``None``.
DEFAULT_METHODS: dict[str, str] = {**dict.fromkeys(OPERATORS, "rk4"), "imex": "ars222"}

FORMS = ("parabolic", "residual")
NORMS = (None, "group", "instance")
DATA = ("auto", "digits", "synthetic")

#: The default specification (``odenet-analysis report`` with no arguments). ``method: None``
#: is the model's own method (:data:`DEFAULT_METHODS`: ``rk4``, ``ars222`` for ``imex``);
#: ``activation`` is a name of :data:`ACTIVATIONS`, a callable, an ``nn.Module`` or an
#: ``nn.Module`` subclass (names keep a specification JSON-able).
DEFAULT_SPEC: dict[str, Any] = {
    "model": "lean",
    "form": "parabolic",
    "norm": None,
    "activation": "tanh",
    "channels": 8,
    "batch": 16,
    "method": None,
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

    ``method: None`` becomes the model's own method (:data:`DEFAULT_METHODS`). Every
    invalid setting raises :class:`~odenet.errors.ArgumentError` (a bad value) or
    :class:`~odenet.errors.ArgumentTypeError` (a bad type) naming the setting.

    Examples
    --------
    >>> from odenet.analysis._models import check_spec
    >>> check_spec(model="dense", steps=8)["steps"]
    8
    >>> check_spec(model="imex")["method"]
    'ars222'
    >>> check_spec(model="resnet50")
    Traceback (most recent call last):
    ...
    odenet.errors.ArgumentError: model: unknown model 'resnet50'; valid models are 'lean', ...
    """
    if spec is not None and not isinstance(spec, Mapping):
        raise ArgumentTypeError(
            f"spec: expected a mapping of settings (see DEFAULT_SPEC), got {type(spec).__name__}"
        )
    out = dict(DEFAULT_SPEC)
    for src in (spec or {}), overrides:
        for k, v in src.items():
            if k not in DEFAULT_SPEC:
                raise ArgumentError(
                    f"spec: unknown setting {k!r}; valid settings are "
                    + ", ".join(repr(s) for s in DEFAULT_SPEC)
                )
            out[k] = v

    def choice(key: str, valid: tuple) -> None:
        v = out[key]
        if not (v is None or isinstance(v, str)):
            raise ArgumentTypeError(
                f"{key}: expected one of " + ", ".join(repr(x) for x in valid)
                + f", got {type(v).__name__}"
            )
        if v not in valid:
            raise ArgumentError(
                f"{key}: unknown {key} {v!r}; valid {key}s are "
                + ", ".join(repr(x) for x in valid)
            )

    if isinstance(out["dtype"], torch.dtype):  # torch.float64 -> "float64"
        out["dtype"] = str(out["dtype"]).replace("torch.", "")
    choice("model", model_names())
    choice("norm", NORMS)
    choice("form", FORMS)
    choice("data", DATA)
    choice("dtype", ("float32", "float64"))
    make_activation(out["activation"])  # a name, a callable or a module; refuses anything else
    for key in ("channels", "batch", "steps", "blocks"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentTypeError(f"{key}: expected a positive integer, got {type(v).__name__}")
        if v < 1:
            raise ArgumentError(f"{key}: expected a positive integer, got {v!r}")
    for key in ("T", "weight_scale"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ArgumentTypeError(
                f"{key}: expected a finite positive number, got {type(v).__name__}"
            )
        if not math.isfinite(v) or v <= 0:
            raise ArgumentError(f"{key}: expected a finite positive number, got {v!r}")
        out[key] = float(v)
    if out["weights"] is not None:
        import os

        try:
            w = os.fspath(out["weights"])
        except TypeError:
            raise ArgumentTypeError(
                f"weights: expected a file path or None, got {type(out['weights']).__name__}"
            ) from None
        if not os.path.isfile(w):
            raise ArgumentError(f"weights: no such file {w!r}")
        out["weights"] = w
    for key, low, high in (("seed", 0, 2**63 - 1), ("train_steps", 0, None)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentTypeError(f"{key}: expected a non-negative integer, got {v!r}")
        if v < low or (high is not None and v > high):
            raise ArgumentError(
                f"{key}: expected an integer in [{low}, {high if high is not None else 'inf'}], "
                f"got {v!r}"
            )
    from odenet.analysis._region import resolve_method

    if out["method"] is None:
        out["method"] = DEFAULT_METHODS.get(out["model"], "rk4")
    resolve_method(out["method"])
    dev = out["device"]
    if not isinstance(dev, (str, torch.device)):
        raise ArgumentTypeError(
            f"device: expected a device name such as 'cpu' or a torch.device, got "
            f"{type(dev).__name__}"
        )
    try:
        dev = torch.device(dev)
    except (RuntimeError, TypeError, ValueError):
        raise ArgumentError(f"device: not a device: {out['device']!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device: CUDA was requested but is not available")
    if dev.type == "meta":
        raise ArgumentError("device: 'meta' holds no data; expected a device to compute on")
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as err:
        raise ArgumentError(f"device: {str(dev)!r} is not available ({err})") from None
    out["device"] = str(dev)
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
    >>> from odenet.analysis._models import load_data
    >>> x, y, _ = load_data("synthetic", 4, 0)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 1, 8, 8), (4,))
    """
    return _synthetic(n, seed) if kind == "synthetic" else _digits(n, seed)


# -- the networks ---------------------------------------------------------------------------------
def _imex_names() -> str:
    from odenet.solvers import method_names

    return method_names("imex")


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
    >>> from odenet.analysis._models import check_spec, make_network
    >>> net, stem, blocks, head = make_network(check_spec(model="sparse", channels=4), 10)
    >>> type(blocks[0].rhs.op).__name__, type(blocks[0]).__name__
    ('SparseConv2d', 'ODEBlock')
    """
    import copy

    import odenet.nn as onn
    from odenet.analysis._region import resolve_method
    from odenet.models import ODEResNet

    s = check_spec(spec)
    C = s["channels"]
    act = s["activation"]

    def fresh_act() -> nn.Module:  # one module per use: layers never share its parameters
        return make_activation(copy.deepcopy(act) if isinstance(act, nn.Module) else act)

    tab = resolve_method(s["method"])
    if s["model"] == "imex":
        if not isinstance(tab, IMEXTableau):
            raise ArgumentError(
                f"method: {s['method']!r} is not an IMEX method; the 'imex' model needs one "
                f"({_imex_names()}, or an IMEXTableau), or method=None for its default "
                f"{DEFAULT_METHODS['imex']!r}"
            )
        blocks = nn.Sequential(*[
            onn.IMEXBlock(onn.DenseConv2d(C, C, 3), activation=fresh_act(), T=s["T"],
                          steps=s["steps"], method=s["method"], gradient="backprop")
            for _ in range(s["blocks"])
        ])
        stem = nn.Sequential(nn.Conv2d(1, C, 3, padding=1, bias=False), fresh_act())
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, num_classes))
        net = nn.Sequential(stem, blocks, head)
        _load_weights(net, s["weights"])
        return net, stem, blocks, head
    if isinstance(tab, IMEXTableau):
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
    >>> from odenet.analysis._models import build_network
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
    >>> from odenet.analysis._models import build_case
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
            "dense": "dense 3x3", "imex": "dense 3x3"}.get(s["model"], repr(s["model"]))
    norm = f", {s['norm']} normalisation" if s["norm"] and s["model"] != "imex" else ""
    desc = (
        f"ODE block of {'an IMEXnet' if s['model'] == 'imex' else 'an ODE-ResNet'} with "
        f"{kind} operators, {'parabolic' if s['model'] == 'imex' else s['form']} form{norm}"
        f"{' and an FFT-implicit depthwise L' if implicit is not None else ''}, "
        f"{activation_name(s['activation'])}, {C} channels; {method}, {s['steps']} steps on "
        f"[0, {s['T']:g}]; "
        f"data: {data_desc}"
    )
    return Case(rhs, block, y0, method, s["steps"], s["T"], implicit, loss_fn, params, desc, s)
