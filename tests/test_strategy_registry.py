"""The public strategy registry: user strategies by name, unique names, messages from it."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
import torch

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.gradients import STRATEGIES, resolve_gradient, strategy_names

F64 = torch.float64
BUILT_INS = {
    "adjoint": odenet.Adjoint,
    "anode": odenet.ANODE,
    "backprop": odenet.Backprop,
    "revolve": odenet.Revolve,
}


class CountingBackprop(odenet.GradientStrategy):
    """A user strategy defined outside odenet: backprop that counts its solves."""

    name = "myname"
    solves = 0

    def solve(self, problem, y0):
        type(self).solves += 1
        return problem.stack(problem.solve(y0))


def test_strategies_lists_the_built_ins():
    assert isinstance(STRATEGIES, Mapping)
    assert odenet.gradients.STRATEGIES is STRATEGIES
    for name, cls in BUILT_INS.items():
        assert STRATEGIES[name] is cls and name in STRATEGIES
        assert isinstance(resolve_gradient(name), cls)
    assert set(BUILT_INS) <= set(STRATEGIES) and len(STRATEGIES) == len(list(STRATEGIES))
    assert "GradientStrategy" not in repr(STRATEGIES) and "ANODE" in repr(STRATEGIES)


def test_strategies_is_read_only():
    with pytest.raises(TypeError):
        STRATEGIES["mine"] = CountingBackprop  # type: ignore[index]
    with pytest.raises(TypeError):
        del STRATEGIES["anode"]  # type: ignore[attr-defined]
    assert STRATEGIES["anode"] is odenet.ANODE


def test_user_strategy_by_name_in_odeint():
    assert STRATEGIES["myname"] is CountingBackprop
    w = torch.tensor(-0.5, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    before = CountingBackprop.solves
    y = odenet.odeint(lambda t, y: w * y, torch.ones(2, dtype=F64), t, method="euler",
                      step_size=0.25, gradient="myname", params=[w])
    assert CountingBackprop.solves == before + 1
    y[-1].sum().backward()
    assert float(w.grad) == pytest.approx(2 * 4 * 0.25 * (1 - 0.125) ** 3)  # d/dw 2 (1 + w/4)^4
    # names are case-insensitive, as for the built-ins
    odenet.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), gradient="MyName")
    assert CountingBackprop.solves == before + 2


def test_user_strategy_by_name_in_odeblock():
    block = odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(2, 2)), steps=2,
                               gradient="myname")
    assert isinstance(block.gradient, CountingBackprop)
    before = CountingBackprop.solves
    out = block(torch.randn(1, 2, 5, 5))
    assert CountingBackprop.solves == before + 1 and out.shape == (1, 2, 5, 5)
    out.square().sum().backward()
    assert all(p.grad is not None for p in block.parameters())


def test_a_taken_name_is_refused_naming_both_classes():
    with pytest.raises(ArgumentError) as err:

        class NotANODE(odenet.GradientStrategy):
            name = "anode"

    msg = str(err.value)
    assert "'anode'" in msg and "odenet.gradients._anode.ANODE" in msg
    assert f"{__name__}.test_a_taken_name_is_refused_naming_both_classes.<locals>.NotANODE" in msg
    assert STRATEGIES["anode"] is odenet.ANODE
    with pytest.raises(ArgumentError, match=r"'myname' is taken by .*CountingBackprop"):

        class Other(odenet.Backprop):
            name = "myname"

    assert STRATEGIES["myname"] is CountingBackprop


def _define(value: int) -> type:
    class Redefined(odenet.Backprop):
        name = "redefined-test"
        marker = value

    return Redefined


def test_redefining_the_same_class_replaces_it():
    first, second = _define(1), _define(2)
    assert first is not second
    assert STRATEGIES["redefined-test"] is second and resolve_gradient("redefined-test").marker == 2


def test_inherited_names_and_bad_names():
    class Tweaked(odenet.ANODE):  # inherits "anode" without claiming it: no conflict
        pass

    assert STRATEGIES["anode"] is odenet.ANODE
    assert isinstance(odenet.gradients.resolve_gradient(Tweaked()), Tweaked)
    with pytest.raises(ArgumentError, match=r"lower-case name .* got 'Shouty'"):

        class Shouty(odenet.Backprop):
            name = "Shouty"

    with pytest.raises(ArgumentTypeError, match=r"\.name: expected a string"):

        class Numbered(odenet.Backprop):
            name = 3  # type: ignore[assignment]

    assert "Shouty" not in STRATEGIES and "shouty" not in STRATEGIES


def test_unknown_name_lists_the_registry():
    with pytest.raises(ArgumentError) as err:
        resolve_gradient("checkpoint")
    listed = re.search(r"valid names are (.*) \(or pass", str(err.value)).group(1)
    assert listed == strategy_names() == ", ".join(repr(k) for k in sorted(STRATEGIES))
    assert "'myname'" in listed and all(repr(k) in listed for k in BUILT_INS)
    with pytest.raises(ArgumentError, match="'myname'"):
        odenet.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]),
                      gradient="checkpoint")
