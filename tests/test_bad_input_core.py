"""Bad input to the solver core, ODE blocks, strategies, implicit operators and the torchdiffeq
compat module: every case is refused with odenet's typed error naming the argument.

One table, one test: each row is ``(id, call, expected exception, regex on the message)``.
"""

from __future__ import annotations

import math

import pytest
import torch

import odenet
from odenet.compat import torchdiffeq as tde
from odenet.errors import (
    ArgumentError,
    ArgumentTypeError,
    EventError,
    FunctionOutputError,
    GradientError,
    NonFiniteStateError,
    OdenetError,
    UnknownMethodError,
    UnknownOptionError,
)
from odenet.linear import ConvFFT
from odenet.nn import LeanConv2d, ODEBlock, ResidualRHS


def f(t, y):
    return -y


def y3():
    return torch.ones(3)


def t01():
    return torch.tensor([0.0, 1.0])


def solve(**kw):
    args = {"func": f, "y0": y3(), "t": t01(), "step_size": 0.1}
    args.update(kw)
    return odenet.odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


def L2():
    return ConvFFT(torch.randn(2, 1, 3, 3))


def img(c=2):
    return torch.ones(1, c, 4, 4)


def block(**kw):
    return ODEBlock(ResidualRHS(LeanConv2d(2, 2)), **kw)


def grid(values):
    return {"grid_constructor": lambda func, y0, t: values}


def backward_of(gradient, func, params=None, create_graph=False):
    y0 = torch.ones(2, requires_grad=True)
    y = odenet.odeint(func, y0, t01(), step_size=0.25, gradient=gradient, params=params)
    if create_graph:
        (g,) = torch.autograd.grad(y.sum(), y0, create_graph=True)
        return g.sum().backward()
    return y.sum().backward()


def later_closure(t, y, W=torch.tensor(0.5, requires_grad=True)):
    return -y if float(t) < 0.5 else -W * y


_NET = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))


CASES = [
    # y0
    (
        "y0-int",
        lambda: solve(y0=torch.ones(3, dtype=torch.int64)),
        ArgumentTypeError,
        r"^y0: expected a floating point tensor",
    ),
    (
        "y0-list-of-ints",
        lambda: solve(y0=[1, 2]),
        ArgumentTypeError,
        r"^y0\[0\]: expected a Tensor",
    ),
    (
        "y0-empty-tuple",
        lambda: solve(y0=()),
        ArgumentTypeError,
        r"^y0: expected a Tensor or a non-empty",
    ),
    ("y0-none", lambda: solve(y0=None), ArgumentTypeError, r"^y0: .*NoneType"),
    (
        "y0-nan",
        lambda: solve(y0=torch.tensor([math.nan])),
        ArgumentError,
        r"^y0: contains non-finite",
    ),
    (
        "y0-inf-component",
        lambda: solve(func=lambda t, y: y, y0=(y3(), torch.tensor([math.inf]))),
        ArgumentError,
        r"^y0\[1\]: contains non-finite",
    ),
    (
        "y0-mixed-devices",
        lambda: solve(func=lambda t, y: y, y0=(y3(), torch.ones(1, device="meta"))),
        ArgumentError,
        r"^y0\[1\]: on device meta",
    ),
    # t
    ("t-list", lambda: solve(t=[0.0, 1.0]), ArgumentTypeError, r"^t: expected a 1-D Tensor"),
    (
        "t-2d",
        lambda: solve(t=t01()[None]),
        ArgumentError,
        r"^t: expected a 1-D tensor, got shape \(1, 2\)",
    ),
    (
        "t-int",
        lambda: solve(t=torch.tensor([0, 1])),
        ArgumentTypeError,
        r"^t: expected a floating point",
    ),
    (
        "t-complex",
        lambda: solve(t=torch.tensor([0, 1], dtype=torch.complex64)),
        ArgumentTypeError,
        r"^t: expected a floating point",
    ),
    (
        "t-empty",
        lambda: solve(t=torch.tensor([])),
        ArgumentError,
        r"^t: expected at least one time",
    ),
    (
        "t-nan",
        lambda: solve(t=torch.tensor([0.0, math.nan])),
        ArgumentError,
        r"^t: contains non-finite",
    ),
    (
        "t-inf",
        lambda: solve(t=torch.tensor([0.0, math.inf])),
        ArgumentError,
        r"^t: contains non-finite",
    ),
    (
        "t-not-monotone",
        lambda: solve(t=torch.tensor([0.0, 1.0, 0.5])),
        ArgumentError,
        r"^t: expected strictly increasing or strictly decreasing",
    ),
    (
        "t-repeated",
        lambda: solve(t=torch.tensor([0.0, 1.0, 1.0])),
        ArgumentError,
        r"^t: expected strictly",
    ),
    (
        "t-other-device",
        lambda: solve(t=torch.tensor([0.0, 1.0], device="meta")),
        ArgumentError,
        r"^t: on device meta, but y0 is on cpu",
    ),
    # step_size and options
    (
        "step-zero",
        lambda: solve(step_size=0.0),
        ArgumentError,
        r"^step_size: expected a positive number",
    ),
    (
        "step-negative",
        lambda: solve(step_size=-0.1),
        ArgumentError,
        r"^step_size: expected a positive",
    ),
    (
        "step-nan",
        lambda: solve(step_size=math.nan),
        ArgumentError,
        r"^step_size: expected a finite",
    ),
    (
        "step-inf",
        lambda: solve(step_size=math.inf),
        ArgumentError,
        r"^step_size: expected a finite",
    ),
    (
        "step-str",
        lambda: solve(step_size="0.1"),
        ArgumentTypeError,
        r"^step_size: expected a real number, got str",
    ),
    (
        "step-bool",
        lambda: solve(step_size=True),
        ArgumentTypeError,
        r"^step_size: expected a real number, got bool",
    ),
    (
        "step-vector",
        lambda: solve(step_size=torch.ones(2)),
        ArgumentError,
        r"^step_size: expected a scalar",
    ),
    (
        "step-given-twice",
        lambda: solve(options={"step_size": 0.1}),
        ArgumentError,
        r"^step_size: given both",
    ),
    (
        "step-tiny-memory",
        lambda: solve(step_size=1e-300),
        ArgumentError,
        r"^step_size: 1e-300 .* 1e\+300 steps, more than max_num_steps",
    ),
    (
        "block-steps-over-limit",
        lambda: odenet.odeint(f, y3(), t01(), step_size=1e-6, options={"max_num_steps": 10**5}),
        ArgumentError,
        r"max_num_steps=100000",
    ),
    (
        "options-list",
        lambda: solve(step_size=None, options=[("step_size", 0.1)]),
        ArgumentTypeError,
        r"^options: expected a dict",
    ),
    (
        "options-unknown",
        lambda: solve(step_size=None, options={"stepsize": 0.1}),
        UnknownOptionError,
        r"^options: unknown option 'stepsize'; valid options are 'step_size'",
    ),
    ("options-adaptive-rtol", lambda: solve(options={"rtol": 1e-3}), UnknownOptionError, r"'rtol'"),
    (
        "options-interp",
        lambda: solve(options={"interp": "linear"}),
        UnknownOptionError,
        r"^options: 'interp' is not supported: odenet never interpolates",
    ),
    (
        "check-finite-str",
        lambda: solve(options={"check_finite": "yes"}),
        ArgumentTypeError,
        r"^options\['check_finite'\]: expected True or False",
    ),
    (
        "perturb-int",
        lambda: solve(options={"perturb": 1}),
        ArgumentTypeError,
        r"^options\['perturb'\]",
    ),
    (
        "max-steps-zero",
        lambda: solve(options={"max_num_steps": 0}),
        ArgumentError,
        r"^options\['max_num_steps'\]: expected a positive int, got 0",
    ),
    (
        "max-steps-float",
        lambda: solve(options={"max_num_steps": 1e3}),
        ArgumentTypeError,
        r"^options\['max_num_steps'\]",
    ),
    (
        "grid-not-callable",
        lambda: solve(step_size=None, options={"grid_constructor": [0, 1]}),
        ArgumentTypeError,
        r"^options\['grid_constructor'\]: expected a callable",
    ),
    ("grid-with-step", lambda: solve(options=grid(t01())), ArgumentError, r"mutually exclusive"),
    (
        "grid-returns-list",
        lambda: solve(step_size=None, options=grid([0.0, 1.0])),
        ArgumentTypeError,
        r"expected it to return a 1-D tensor",
    ),
    (
        "grid-wrong-start",
        lambda: solve(step_size=None, options=grid(torch.tensor([0.5, 1.0]))),
        ArgumentError,
        r"must start at t\[0\] = 0 and end at t\[-1\] = 1",
    ),
    (
        "grid-not-monotone",
        lambda: solve(step_size=None, options=grid(torch.tensor([0, 0.6, 0.4, 1]))),
        ArgumentError,
        r"must be strictly increasing like t",
    ),
    (
        "grid-nan",
        lambda: solve(step_size=None, options=grid(torch.tensor([0, math.nan, 1]))),
        ArgumentError,
        r"grid contains non-finite",
    ),
    (
        "grid-t-grad",
        lambda: solve(step_size=None, t=t01().requires_grad_(), options=grid(t01())),
        ArgumentError,
        r"^t: gradients .*grid_constructor",
    ),
    # method and implicit
    (
        "method-unknown",
        lambda: solve(method="rk5"),
        UnknownMethodError,
        r"^method: unknown method 'rk5'; valid methods are 'euler'",
    ),
    ("method-int", lambda: solve(method=4), ArgumentTypeError, r"^method: expected a method name"),
    (
        "method-implicit-tableau",
        lambda: solve(method=odenet.ButcherTableau(a=[[1.0]], b=[1.0], c=[1.0], order=1)),
        ArgumentError,
        r"^method: the tableau .* is implicit",
    ),
    (
        "imex-without-L",
        lambda: solve(method="ars222"),
        ArgumentError,
        r"^implicit: method 'ars222' .* needs implicit=L",
    ),
    (
        "explicit-with-L",
        lambda: solve(y0=img(), implicit=L2()),
        ArgumentError,
        r"^implicit: method 'rk4' is explicit",
    ),
    (
        "imex-tuple-state",
        lambda: solve(y0=(img(),), method="ars222", implicit=L2()),
        ArgumentError,
        r"^y0: IMEX methods need a single Tensor",
    ),
    (
        "imex-channels",
        lambda: solve(y0=img(3), method="ars222", implicit=L2()),
        ArgumentError,
        r"^y0: the implicit operator acts on 2 channels",
    ),
    (
        "imex-backward-time",
        lambda: solve(y0=img(), t=t01().flip(0), method="ars222", implicit=L2()),
        ArgumentError,
        r"^t: IMEX methods integrate forward",
    ),
    (
        "imex-t-grad",
        lambda: solve(y0=img(), t=t01().requires_grad_(), method="ars222", implicit=L2()),
        ArgumentError,
        r"^t: gradients .* IMEX",
    ),
    (
        "imex-L-not-operator",
        lambda: solve(y0=img(), method="ars222", implicit=lambda y: y),
        ArgumentTypeError,
        r"^implicit: expected a linear operator",
    ),
    # func
    (
        "func-not-callable",
        lambda: solve(func=3),
        ArgumentTypeError,
        r"^func: expected a callable func\(t, y\)",
    ),
    (
        "func-one-argument",
        lambda: solve(func=lambda y: -y),
        ArgumentTypeError,
        r"^func: expected a callable func\(t, y\) taking the time and the state, "
        r"but its signature is \(y\)",
    ),
    (
        "func-three-arguments",
        lambda: solve(func=lambda t, y, z: y),
        ArgumentTypeError,
        r"\(t, y, z\)",
    ),
    (
        "func-operator-module",
        lambda: solve(func=torch.nn.Linear(3, 3)),
        ArgumentTypeError,
        r"Linear.forward is .*ResidualRHS",
    ),
    (
        "func-wrong-shape",
        lambda: solve(func=lambda t, y: y[:2]),
        FunctionOutputError,
        r"^func: returned a tensor with wrong shape",
    ),
    (
        "func-returns-int",
        lambda: solve(func=lambda t, y: 1),
        FunctionOutputError,
        r"^func: expected a Tensor, got int",
    ),
    (
        "func-wrong-dtype",
        lambda: solve(func=lambda t, y: y.double()),
        FunctionOutputError,
        r"wrong dtype",
    ),
    (
        "func-tuple-length",
        lambda: solve(func=lambda t, y: (y[0],), y0=(y3(), y3())),
        FunctionOutputError,
        r"^func: expected a tuple of 2 tensors",
    ),
    (
        "func-blows-up",
        lambda: solve(
            func=lambda t, y: y * y,
            y0=torch.tensor([3.0]),
            t=torch.tensor([0.0, 9.0]),
            step_size=1.0,
        ),
        NonFiniteStateError,
        r"non-finite .* at step 1 \(t = 2",
    ),
    # gradient strategies
    (
        "gradient-unknown",
        lambda: solve(gradient="checkpoint"),
        ArgumentError,
        r"^gradient: unknown strategy 'checkpoint'; valid names are 'adjoint', 'anode'",
    ),
    (
        "gradient-class",
        lambda: solve(gradient=odenet.ANODE),
        ArgumentTypeError,
        r"such as ANODE\(\)",
    ),
    (
        "gradient-int",
        lambda: solve(gradient=1),
        ArgumentTypeError,
        r"^gradient: expected a strategy",
    ),
    (
        "revolve-zero",
        lambda: odenet.Revolve(checkpoints=0),
        ArgumentError,
        r"^checkpoints: expected at least 1",
    ),
    (
        "revolve-str",
        lambda: odenet.Revolve(checkpoints="2"),
        ArgumentTypeError,
        r"^checkpoints: expected an integer",
    ),
    (
        "params-not-tensor",
        lambda: solve(params=[1.0]),
        ArgumentTypeError,
        r"^params\[0\]: expected a Tensor",
    ),
    (
        "closure-on-first-step-anode",
        lambda: backward_of("anode", lambda t, y, W=torch.ones(2, requires_grad=True): -W * y),
        GradientError,
        r"not among the parameters .* on the first step",
    ),
    (
        "closure-later-anode",
        lambda: backward_of("anode", later_closure),
        GradientError,
        r"found recomputing the steps",
    ),
    (
        "closure-later-revolve",
        lambda: backward_of("revolve", later_closure),
        GradientError,
        r"found at step",
    ),
    (
        "closure-later-adjoint",
        lambda: backward_of("adjoint", later_closure),
        GradientError,
        r"found in the reverse solve",
    ),
    (
        "adjoint-dropout",
        lambda: backward_of("adjoint", lambda t, y: _NET.train()(y), list(_NET.parameters())),
        GradientError,
        r"^gradient='adjoint': func draws random numbers",
    ),
    (
        "revolve-double-backward",
        lambda: backward_of("revolve", f, create_graph=True),
        GradientError,
        r"gradient='revolve' cannot differentiate its own backward",
    ),
    (
        "adjoint-double-backward",
        lambda: backward_of("adjoint", f, create_graph=True),
        GradientError,
        r"gradient='adjoint' cannot differentiate its own backward",
    ),
    # events
    (
        "event-without-step",
        lambda: solve(step_size=None, event_fn=lambda t, y: y.sum() - 1),
        ArgumentError,
        r"^step_size: event handling",
    ),
    (
        "event-three-times",
        lambda: solve(t=torch.tensor([0.0, 1.0, 2.0]), event_fn=lambda t, y: y.sum() - 1),
        ArgumentError,
        r"^t: with event_fn.*len\(t\) = 3",
    ),
    (
        "event-returns-int",
        lambda: solve(event_fn=lambda t, y: 1),
        ArgumentTypeError,
        r"^event_fn: expected event_fn\(t, y\) to return a real floating point tensor",
    ),
    (
        "event-zero-at-start",
        lambda: solve(event_fn=lambda t, y: y.sum() - 3),
        ArgumentError,
        r"^event_fn: is exactly zero at the initial time",
    ),
    (
        "event-never",
        lambda: solve(event_fn=lambda t, y: y.sum() + 1, options={"max_num_steps": 10}),
        EventError,
        r"^event_fn: no event within max_num_steps = 10",
    ),
    # ODE blocks
    (
        "block-T-negative",
        lambda: block(T=-1),
        ArgumentError,
        r"^T: expected a finite positive number",
    ),
    ("block-T-str", lambda: block(T="1"), ArgumentTypeError, r"^T: expected a real number"),
    ("block-steps-zero", lambda: block(steps=0), ArgumentError, r"^steps: expected an int >= 1"),
    ("block-steps-float", lambda: block(steps=2.5), ArgumentTypeError, r"^steps: expected an int"),
    (
        "block-operator-as-rhs",
        lambda: ODEBlock(LeanConv2d(4, 4)),
        ArgumentTypeError,
        r"^rhs: expected a callable rhs\(t, y\).*LeanConv2d.forward.*ResidualRHS",
    ),
    (
        "block-adaptive-method-steps",
        lambda: block(method="dopri5", steps=4),
        ArgumentError,
        r"^steps: the adaptive method 'dopri5' chooses its own steps",
    ),
    (
        "block-fixed-method-options",
        lambda: block(method="rk4", options={"rtol": 1e-3}),
        ArgumentError,
        r"^options: only adaptive methods take options",
    ),
    (
        "block-imex-without-L",
        lambda: block(method="ars222"),
        ArgumentError,
        r"^implicit: method 'ars222'",
    ),
    (
        "block-gradient",
        lambda: block(gradient="nope"),
        ArgumentError,
        r"^gradient: unknown strategy 'nope'",
    ),
    (
        "block-input-list",
        lambda: block()([1.0]),
        ArgumentTypeError,
        r"^y: expected a Tensor, got list",
    ),
    (
        "block-input-int",
        lambda: block()(torch.ones(1, 2, 4, 4, dtype=torch.int64)),
        ArgumentTypeError,
        r"^y: expected a floating point tensor",
    ),
    # implicit operators
    (
        "convfft-weight-3d",
        lambda: ConvFFT(torch.randn(2, 3, 3)),
        ArgumentError,
        r"^weight: expected a depthwise kernel of shape \(C, 1, k, k\)",
    ),
    (
        "convfft-weight-int",
        lambda: ConvFFT(torch.ones(2, 1, 3, 3, dtype=torch.int64)),
        ArgumentTypeError,
        r"^weight: expected a real floating point",
    ),
    (
        "convfft-boundary",
        lambda: ConvFFT(torch.randn(2, 1, 3, 3), boundary="zero"),
        ArgumentError,
        r"^boundary: expected 'periodic' or 'reflect'",
    ),
    (
        "convfft-gamma-negative",
        lambda: L2().solve(img(), -1.0),
        ArgumentError,
        r"^gamma: expected gamma >= 0",
    ),
    (
        "convfft-gamma-nan",
        lambda: L2().solve(img(), math.nan),
        ArgumentError,
        r"^gamma: expected a finite",
    ),
    (
        "convfft-solve-channels",
        lambda: L2().solve(img(3), 1.0),
        ArgumentError,
        r"^r: has 3 channels",
    ),
    (
        "convfft-apply-2d",
        lambda: L2()(torch.ones(4, 4)),
        ArgumentError,
        r"^y: expected a tensor of shape \(\.\.\., C, H, W\)",
    ),
    (
        "convfft-image-too-small",
        lambda: ConvFFT(torch.randn(2, 1, 5, 5))(torch.ones(1, 2, 2, 2)),
        ArgumentError,
        r"^y: the image \(2x2\) is smaller than the 5x5 kernel",
    ),
    # torchdiffeq compat
    (
        "compat-default-dopri5-rtol",
        lambda: tde.odeint(f, y3(), t01(), rtol=-1.0),
        ArgumentError,
        r"^rtol: expected a non-negative number, got -1.0",
    ),
    (
        "compat-implicit-method",
        lambda: tde.odeint(f, y3(), t01(), method="gl6"),
        UnknownMethodError,
        r"'gl6' \(Adams or implicit\) is not available",
    ),
    (
        "compat-unknown-method",
        lambda: tde.odeint(f, y3(), t01(), method="rk45"),
        UnknownMethodError,
        r"^method: unknown method 'rk45'; torchdiffeq's fixed-step names",
    ),
    (
        "compat-interp-value",
        lambda: tde.odeint(f, y3(), t01(), method="euler", options={"interp": "spline"}),
        ArgumentError,
        r"^options\['interp'\]: expected 'linear' or 'cubic'",
    ),
    (
        "compat-norm",
        lambda: tde.odeint(f, y3(), t01(), method="euler", options={"norm": max}),
        ArgumentError,
        r"^options\['norm'\]",
    ),
    (
        "compat-adjoint-lambda",
        lambda: tde.odeint_adjoint(f, y3(), t01(), method="euler"),
        ArgumentTypeError,
        r"^func: must be an nn.Module .* adjoint_params",
    ),
    (
        "compat-adjoint-method",
        lambda: tde.odeint_adjoint(
            f, y3(), t01(), method="euler", adjoint_method="rk4", adjoint_params=()
        ),
        ArgumentError,
        r"^adjoint_method: odenet's adjoint uses the forward method",
    ),
    (
        "compat-adjoint-options",
        lambda: tde.odeint_adjoint(
            f, y3(), t01(), method="euler", adjoint_params=(), adjoint_options={"step_size": 0.1}
        ),
        ArgumentError,
        r"^adjoint_options:",
    ),
    (
        "compat-event-t0-vector",
        lambda: tde.odeint_event(
            f,
            y3(),
            t01(),
            event_fn=lambda t, y: y.sum() - 1,
            method="euler",
            options={"step_size": 0.1},
        ),
        ArgumentError,
        r"^t0: expected a single time",
    ),
    (
        "compat-event-t0-float",
        lambda: tde.odeint_event(f, y3(), 0.0, event_fn=lambda t, y: y.sum() - 1, method="euler"),
        ArgumentTypeError,
        r"^t0: expected a Tensor",
    ),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, OdenetError)


def test_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 100
