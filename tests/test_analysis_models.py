"""The networks of the analysis command: every accepted activation builds, IMEX methods are
decided by the tableau type, and activations given as callables, modules or classes work in
the models and right-hand sides of :mod:`odenet`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import odenet
from odenet import METHODS, IMEXTableau
from odenet.analysis._cli import build_parser, main
from odenet.analysis._models import (
    ACTIVATIONS,
    DEFAULT_METHODS,
    build_case,
    check_spec,
    make_network,
)
from odenet.errors import ArgumentError
from odenet.models import ODEResNet
from odenet.nn import IMEXBlock, LeanConv2d, ParabolicRHS, ResidualRHS, make_activation

TINY = ["--channels", "2", "--batch", "2", "--no-progress"]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("model", ["lean", "imex"])
def test_every_activation_the_command_accepts_builds_and_solves(name, model):
    # the command's parser takes its list from analysis._models.ACTIVATIONS
    args = build_parser().parse_args(["report", "--activations", name])
    assert args.activations == [name]
    case = build_case({"model": model, "activation": name, "channels": 2, "batch": 2})
    t = torch.tensor([0.0, case.T], dtype=case.y0.dtype)
    y = odenet.odeint(case.func, case.y0, t, method=case.method, step_size=case.step_size,
                      implicit=case.implicit)
    assert torch.isfinite(case.loss(y))
    assert name in case.description


@pytest.mark.parametrize("name", ["gelu", "sigmoid", "softplus", "silu"])
def test_report_runs_with_the_activations_that_used_to_crash(name, tmp_path):
    out = tmp_path / name
    rc = main(["report", "--quick", "--activations", name, "--sections", "gradients",
               "--steps", "2", "--strategies", "anode", "--methods", "euler", "-o", str(out),
               *TINY])
    assert rc == 0
    assert (out / "results.json").is_file()


@pytest.mark.parametrize(
    "activation",
    [torch.sigmoid, nn.functional.gelu, lambda x: x * torch.sigmoid(x), nn.GELU, nn.SiLU(),
     "softplus"],
    ids=["torch.sigmoid", "F.gelu", "lambda", "nn.GELU-class", "nn.SiLU-instance", "name"],
)
def test_oderesnet_accepts_callables_modules_and_classes(activation):
    net = ODEResNet(1, 3, widths=(4, 8), steps=1, method="euler", activation=activation)
    out = net(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 3)
    out.sum().backward()
    acts = [m for m in net.modules() if m.__class__.__name__ in ("_Activation", "GELU", "SiLU",
                                                                 "Softplus")]
    assert len(acts) == 4  # stem, transition, and each block's right-hand side


def test_a_module_instance_is_copied_per_layer():
    prelu = nn.PReLU()
    net = ODEResNet(1, 2, widths=(4, 8), steps=1, method="euler", activation=prelu)
    copies = [m for m in net.modules() if isinstance(m, nn.PReLU)]
    assert len(copies) == 4 and prelu not in copies
    assert len({id(m.weight) for m in copies}) == 4  # no shared parameters


@pytest.mark.parametrize("form", [ResidualRHS, ParabolicRHS])
def test_rhs_forms_take_callables(form):
    f = form(LeanConv2d(2, 2), activation=torch.sigmoid).double()
    assert isinstance(f.activation, nn.Module)
    y = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    assert f(0.0, y).shape == y.shape


def test_imex_block_and_imex_spec_take_callables():
    block = IMEXBlock(LeanConv2d(2, 2), activation=torch.tanh, method="ars222")
    assert block(torch.randn(1, 2, 6, 6)).shape == (1, 2, 6, 6)
    case = build_case({"model": "imex", "activation": nn.functional.silu, "channels": 2,
                       "batch": 2})
    assert "silu" in case.description


def test_make_activation_is_the_one_resolver():
    assert isinstance(make_activation("gelu"), nn.Module)
    assert isinstance(make_activation(nn.Tanh), nn.Tanh)
    m = nn.ReLU()
    assert make_activation(m) is m
    x = torch.linspace(-2, 2, 5)
    assert torch.equal(make_activation(torch.sigmoid)(x), torch.sigmoid(x))


# -- IMEX methods decided by the tableau's type -------------------------------------------------
EXPLICIT = [n for n, t in METHODS.items() if not isinstance(t, IMEXTableau)]
IMEX = [n for n, t in METHODS.items() if isinstance(t, IMEXTableau)]


def test_imex_model_default_method_is_an_explicit_choice():
    assert check_spec(model="imex")["method"] == DEFAULT_METHODS["imex"] == "ars222"
    assert check_spec(model="lean")["method"] == DEFAULT_METHODS["lean"] == "rk4"
    assert check_spec(model="imex", method="ars443")["method"] == "ars443"


@pytest.mark.parametrize("method", EXPLICIT)
def test_imex_model_refuses_every_explicit_method(method):
    with pytest.raises(ArgumentError, match=rf"^method: '{method}' is not an IMEX method; "
                                            r"the 'imex' model needs one \('imex_euler'"):
        make_network(check_spec(model="imex", method=method, channels=2), 10)


@pytest.mark.parametrize("method", IMEX)
def test_imex_model_keeps_every_imex_method(method):
    _, _, blocks, _ = make_network(check_spec(model="imex", method=method, channels=2), 10)
    assert blocks[0].method == method


def test_imex_model_keeps_a_custom_imex_tableau():
    base = METHODS["ars222"]
    custom = IMEXTableau(base.explicit, base.implicit, base.order, name="my_ars")
    case = build_case({"model": "imex", "method": custom, "channels": 2, "batch": 2})
    assert case.method == "my_ars" and case.block.method is custom
