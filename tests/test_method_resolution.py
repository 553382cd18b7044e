"""One owner for "name -> tableau" and for the implicit-operator pairing (odenet.solvers)."""

from __future__ import annotations

import pytest
import torch

import odenet
from odenet.errors import ArgumentError, ArgumentTypeError, UnknownMethodError
from odenet.linear import ConvFFT
from odenet.nn import IMEXBlock, LeanConv2d, ODEBlock, ResidualRHS
from odenet.solvers import (
    EXPLICIT_METHODS,
    IMEX_METHODS,
    METHODS,
    ButcherTableau,
    IMEXTableau,
    check_implicit,
    method_names,
    resolve_method,
)

RALSTON = ButcherTableau(a=[[0, 0], [2 / 3, 0]], b=[1 / 4, 3 / 4], c=[0, 2 / 3], order=2,
                         name="ralston")
IMPLICIT_MIDPOINT = ButcherTableau(a=[[0.5]], b=[1.0], c=[0.5], order=2, name="imp_mid")


def L2():
    return ConvFFT(torch.randn(2, 1, 3, 3))


def test_name_lists_are_derived_from_methods():
    assert EXPLICIT_METHODS + IMEX_METHODS == tuple(METHODS)
    assert all(isinstance(METHODS[n], ButcherTableau) for n in EXPLICIT_METHODS)
    assert all(isinstance(METHODS[n], IMEXTableau) for n in IMEX_METHODS)
    assert method_names("imex") == ", ".join(repr(n) for n in IMEX_METHODS)
    assert method_names() == ", ".join(repr(n) for n in METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_name_resolves_to_its_tableau(name):
    assert resolve_method(name) is METHODS[name]
    kind = "imex" if name in IMEX_METHODS else "explicit"
    assert resolve_method(name, kind=kind) is METHODS[name]
    other = "explicit" if kind == "imex" else "imex"
    with pytest.raises(ArgumentError, match=f"^method: '{name}' is"):
        resolve_method(name, kind=other)


def test_tableaux_pass_through_and_implicit_ones_are_refused_for_stepping():
    assert resolve_method(RALSTON) is RALSTON
    with pytest.raises(ArgumentError, match="is implicit"):
        resolve_method(IMPLICIT_MIDPOINT)
    assert resolve_method(IMPLICIT_MIDPOINT, explicit_only=False) is IMPLICIT_MIDPOINT


def test_errors_name_the_argument_and_list_the_kind():
    with pytest.raises(UnknownMethodError, match="^block_method: unknown method 'rk5'; valid"):
        resolve_method("rk5", "block_method")
    with pytest.raises(UnknownMethodError, match="the IMEX schemes are 'imex_euler'"):
        resolve_method("rk5", kind="imex")
    with pytest.raises(ArgumentTypeError, match="^method: expected a method name"):
        resolve_method(4)
    with pytest.raises(ArgumentError, match="^kind:"):
        resolve_method("rk4", kind="implicit")


def test_implicit_pairing_has_one_rule_everywhere():
    check_implicit(METHODS["ars222"], L2())
    check_implicit(METHODS["rk4"], None)
    with pytest.raises(ArgumentError, match="^implicit: method 'ars222' is an IMEX scheme"):
        check_implicit(METHODS["ars222"], None)
    with pytest.raises(ArgumentTypeError, match="^implicit: expected a linear operator"):
        check_implicit(METHODS["ars222"], "L")
    with pytest.raises(ArgumentError, match="^implicit: method 'rk4' is explicit"):
        check_implicit(METHODS["rk4"], L2())
    # the same messages from odeint and from an ODE block
    f = ResidualRHS(LeanConv2d(2, 2))
    for call in (
        lambda: odenet.odeint(lambda t, y: -y, torch.ones(1, 2, 4, 4), torch.tensor([0.0, 1.0]),
                              method="ars222", step_size=0.5),
        lambda: ODEBlock(f, method="ars222"),
    ):
        with pytest.raises(ArgumentError, match="^implicit: method 'ars222' is an IMEX scheme"):
            call()


def test_blocks_store_the_resolved_tableau():
    block = ODEBlock(ResidualRHS(LeanConv2d(2, 2)), method="heun", steps=2)
    assert block.method == "heun" and block.tableau is METHODS["heun"]
    custom = ODEBlock(ResidualRHS(LeanConv2d(2, 2)), method=RALSTON, steps=2)
    assert custom.tableau is RALSTON and "ralston" in repr(custom)
    imex = IMEXBlock(LeanConv2d(2, 2), method="ars443")
    assert imex.tableau is METHODS["ars443"]


def test_imex_block_refuses_unknown_names_like_ode_block():
    with pytest.raises(UnknownMethodError, match="the IMEX schemes are"):
        IMEXBlock(LeanConv2d(2, 2), method="ars999")
    with pytest.raises(UnknownMethodError):
        ODEBlock(ResidualRHS(LeanConv2d(2, 2)), method="ars999")
