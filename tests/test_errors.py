"""Every input error of odeint is raised with a message naming the argument."""

from __future__ import annotations

import math

import pytest
import torch

import odenet
from odenet.errors import (
    ArgumentError,
    ArgumentTypeError,
    FunctionOutputError,
    NonFiniteStateError,
    UnknownMethodError,
    UnknownOptionError,
)

T = torch.tensor([0.0, 1.0])
Y0 = torch.ones(3)


def neg(t, y):
    return -y


def test_unknown_method_lists_valid_ones():
    msg = r"method: unknown method 'rk5'.*'euler'.*'ars443'"
    with pytest.raises(UnknownMethodError, match=msg):
        odenet.odeint(neg, Y0, T, method="rk5", step_size=0.1)
    with pytest.raises(ArgumentTypeError, match="method: expected"):
        odenet.odeint(neg, Y0, T, method=3, step_size=0.1)


def test_implicit_tableau_refused_as_method():
    with pytest.raises(ArgumentError, match="method: .* implicit"):
        odenet.odeint(neg, Y0, T, method=odenet.METHODS["ars222"].implicit, step_size=0.1)


@pytest.mark.parametrize("key", ["rtol", "stepsize", "foo"])
def test_unknown_option(key):
    with pytest.raises(UnknownOptionError, match=f"options: unknown option '{key}'.*'step_size'"):
        odenet.odeint(neg, Y0, T, options={"step_size": 0.1, key: 1})


def test_interp_option_refused_with_reason():
    with pytest.raises(UnknownOptionError, match="'interp' is not supported: odenet never interp"):
        odenet.odeint(neg, Y0, T, options={"step_size": 0.1, "interp": "cubic"})


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"step_size": 0.0}, ArgumentError, "step_size: expected a positive number, got 0.0"),
        ({"step_size": -0.1}, ArgumentError, "step_size: expected a positive number"),
        ({"step_size": math.nan}, ArgumentError, "step_size: expected a finite number"),
        ({"step_size": math.inf}, ArgumentError, "step_size: expected a finite number"),
        ({"step_size": "0.1"}, ArgumentTypeError, "step_size: expected a real number"),
        ({"step_size": 0.1, "options": {"step_size": 0.1}}, ArgumentError, "one place"),
        ({"options": {"step_size": 0.1, "check_finite": 1}}, ArgumentTypeError, "check_finite"),
    ],
)
def test_step_size_errors(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        odenet.odeint(neg, Y0, T, **kwargs)


@pytest.mark.parametrize(
    ("t", "exc", "message"),
    [
        (torch.zeros(2, 2), ArgumentError, r"t: expected a 1-D tensor, got shape \(2, 2\)"),
        (torch.tensor([0.0, 1.0, 0.5]), ArgumentError, "t: expected strictly increasing"),
        (torch.tensor([0.0, 0.0]), ArgumentError, "t: expected strictly increasing"),
        (torch.tensor([0.0, math.nan]), ArgumentError, "t: contains non-finite"),
        (torch.tensor([0, 1]), ArgumentTypeError, "t: expected a floating point tensor"),
        (torch.tensor([]), ArgumentError, "t: expected at least one time"),
        ([0.0, 1.0], ArgumentTypeError, "t: expected a 1-D Tensor"),
    ],
)
def test_t_errors(t, exc, message):
    with pytest.raises(exc, match=message):
        odenet.odeint(neg, Y0, t, step_size=0.1)


def test_t_on_other_device(cuda):
    with pytest.raises(ArgumentError, match="t: on device cpu, but y0 is on cuda"):
        odenet.odeint(neg, Y0.to(cuda), T, step_size=0.1)


@pytest.mark.parametrize(
    ("y0", "exc", "message"),
    [
        (torch.ones(3, dtype=torch.int64), ArgumentTypeError, "y0: expected a floating point"),
        ((torch.ones(2), torch.ones(2, dtype=torch.int32)), ArgumentTypeError, r"y0\[1\]"),
        (torch.tensor([1.0, math.inf]), ArgumentError, "y0: contains non-finite"),
        (3.0, ArgumentTypeError, "y0: expected a Tensor or a non-empty tuple"),
        ((), ArgumentTypeError, "y0: expected a Tensor or a non-empty tuple"),
    ],
)
def test_y0_errors(y0, exc, message):
    with pytest.raises(exc, match=message):
        odenet.odeint(lambda t, y: y, y0, T, step_size=0.1)


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (lambda t, y: y[:2], r"func: returned a tensor with wrong shape: got shape \(2,\)"),
        (lambda t, y: y.double(), "func: returned a tensor with wrong dtype.*torch.float64"),
        (lambda t, y: y.numpy(), "func: expected a Tensor, got ndarray"),
        (lambda t, y: (y,), "func: expected a Tensor, got tuple"),
    ],
)
def test_func_output_errors(func, message):
    with pytest.raises(FunctionOutputError, match=message):
        odenet.odeint(func, Y0, T, step_size=0.1)


def test_func_output_tuple_errors():
    y0 = (torch.ones(2), torch.ones(3))
    with pytest.raises(FunctionOutputError, match="expected a tuple of 2 tensors.*length 1"):
        odenet.odeint(lambda t, y: (y[0],), y0, T, step_size=0.1)
    with pytest.raises(FunctionOutputError, match=r"component 1\): .*wrong shape"):
        odenet.odeint(lambda t, y: (y[0], y[1][:1]), y0, T, step_size=0.1)


def test_func_output_device(cuda):
    with pytest.raises(FunctionOutputError, match="wrong device"):
        odenet.odeint(lambda t, y: y.cpu(), Y0.to(cuda), T.to(cuda), step_size=0.1)


def test_func_not_callable():
    with pytest.raises(ArgumentTypeError, match="func: expected a callable"):
        odenet.odeint(3, Y0, T, step_size=0.1)


def test_nonfinite_state_names_step_and_time():
    # y' = y^2 with y(0) = 1 blows up at t = 1; Euler with h = 0.25 overflows float32 at step 6.
    t = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(NonFiniteStateError) as info:
        odenet.odeint(lambda t, y: y * y * 40.0, torch.ones(1), t, method="euler", step_size=0.25)
    err = info.value
    y, n = 1.0, 0
    while math.isfinite(y) and y < 3.4e38:  # reference: where float32 overflows
        y, n = y + 0.25 * 40.0 * y * y, n + 1
    assert err.step == n - 1
    assert err.time == pytest.approx(0.25 * n)
    assert f"step {n - 1} (t = {0.25 * n:g}" in str(err)


def test_nonfinite_check_can_be_disabled():
    y = odenet.odeint(
        lambda t, y: y * y * 40.0, torch.ones(1), torch.tensor([0.0, 2.0]), method="euler",
        options={"step_size": 0.25, "check_finite": False},
    )
    assert not torch.isfinite(y[-1]).all()


def test_implicit_errors():
    with pytest.raises(ArgumentError, match="implicit: method 'ars222' is an IMEX scheme"):
        odenet.odeint(neg, Y0, T, method="ars222", step_size=0.1)
    with pytest.raises(ArgumentError, match="implicit: method 'rk4' is explicit"):
        odenet.odeint(neg, Y0, T, method="rk4", step_size=0.1, implicit=object())
    with pytest.raises(ArgumentTypeError, match="implicit: expected a linear operator"):
        odenet.odeint(neg, Y0, T, method="ars222", step_size=0.1, implicit=object())


def test_gradient_errors():
    with pytest.raises(ArgumentError, match="gradient: unknown strategy 'magic'.*'anode'"):
        odenet.odeint(neg, Y0, T, step_size=0.1, gradient="magic")
    msg = r"gradient: expected a strategy instance.*ANODE\(\)"
    with pytest.raises(ArgumentTypeError, match=msg):
        odenet.odeint(neg, Y0, T, step_size=0.1, gradient=odenet.ANODE)


def test_params_errors():
    with pytest.raises(ArgumentTypeError, match=r"params\[1\]: expected a Tensor"):
        odenet.odeint(neg, Y0, T, step_size=0.1, params=[torch.ones(1), "w"])


def test_implicit_channel_mismatch_names_y0():
    L = odenet.linear.ConvFFT(torch.randn(3, 1, 3, 3))
    msg = r"y0: the implicit operator acts on 3 channels.*\(2, 4, 8, 8\)"
    with pytest.raises(ArgumentError, match=msg):
        odenet.odeint(neg, torch.ones(2, 4, 8, 8), T, method="ars222", step_size=0.1, implicit=L)
