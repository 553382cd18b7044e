"""Bad input to the analysis API (``gradient_consistency``, ``reversibility``, ``stability``,
``stability_region``, ``max_stable_steps``, ``convergence_order``, ``ODEProblem``, the model
specifications) and to :mod:`odenet.models`: every case is refused with odenet's typed error
whose message names the argument — never a raw numpy or torch traceback.

One table, one test: each row is ``(id, call, expected exception, regex on the message)``.
Outputs of the caller's own callables (``func``, ``loss``, ``exact``) that do not fit raise
:class:`~odenet.errors.FunctionOutputError`, as in :func:`odenet.odeint`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from odenet import analysis
from odenet.analysis._models import build_case, check_spec, make_network
from odenet.analysis._problems import MatrixOperator
from odenet.errors import (
    ArgumentError,
    ArgumentTypeError,
    FunctionOutputError,
    OdenetError,
    UnknownMethodError,
)
from odenet.models import ODEResNet, count_cost, make_operator
from odenet.nn import ResidualRHS, make_activation

F64 = torch.float64


def y3() -> torch.Tensor:
    return torch.ones(3, dtype=F64)


def decay(t, y):
    return -y


_W = torch.tensor(-1.0, dtype=F64, requires_grad=True)


def scaled(t, y):
    return _W * y


def grads(**kw):
    """A tiny gradient_consistency call (one method, one step count, no finite differences)."""
    args = {"model_or_func": scaled, "y0": y3(), "t": 1.0, "methods": "euler", "steps": [2],
            "strategies": ["anode"], "params": [_W], "fd_directions": 0}
    args.update(kw)
    return analysis.gradient_consistency(**args)


def rev(**kw):
    args = {"func": decay, "y0": y3(), "T": 1.0, "methods": "euler", "steps": [2]}
    args.update(kw)
    return analysis.reversibility(**args)


def stab(**kw):
    args = {"func": decay, "y": y3(), "method": "euler", "step_size": 0.1, "T": None}
    args.update(kw)
    return analysis.stability(args.pop("func"), args.pop("y"), **args)


def order(**kw):
    args = {"method": "euler", "steps": [4, 8]}
    args.update(kw)
    return analysis.convergence_order(**args)


def problem(**kw):
    args = {"func": decay, "y0": torch.ones(2, dtype=F64), "T": 1.0}
    args.update(kw)
    return analysis.ODEProblem(args.pop("func"), args.pop("y0"), args.pop("T"), **args)


def region(method="euler", **kw):
    return analysis.stability_region(method, **kw)


def net(**kw):
    args = {"in_channels": 1, "num_classes": 2, "widths": (4,), "steps": 1}
    args.update(kw)
    return ODEResNet(**args)


def spec(**kw):
    return build_case({"channels": 2, "batch": 2, **kw})


_FOLDER = Path(__file__).parent  # an existing folder: refused before anything is written


class _Block:
    """An ODE block (an ``rhs`` with ``T`` and ``steps``) whose step count is invalid."""

    T = 1.0
    steps = 0

    @staticmethod
    def rhs(t, y):
        return -y


CASES = [
    # -- stability_region / StabilityRegion / max_stable_steps
    ("max_step-nan", lambda: region().max_step([math.nan]), ArgumentError,
     r"^eigenvalues: expected finite numbers, got nan at index 0"),
    ("max_step-inf", lambda: region().max_step([-1.0, math.inf]), ArgumentError,
     r"^eigenvalues: expected finite numbers, got inf at index 1"),
    ("max_step-string", lambda: region().max_step(["abc"]), ArgumentTypeError,
     r"^eigenvalues: expected numbers, got str 'abc'"),
    ("max_step-empty", lambda: region().max_step([]), ArgumentError,
     r"^eigenvalues: expected at least one value"),
    ("max_stable_steps-string", lambda: analysis.max_stable_steps("euler", ["abc"]),
     ArgumentTypeError, r"^eigenvalues: expected numbers, got str 'abc'"),
    ("max_stable_steps-none", lambda: analysis.max_stable_steps("euler", None),
     ArgumentTypeError, r"^eigenvalues: expected numbers, got NoneType"),
    ("max_stable_steps-empty", lambda: analysis.max_stable_steps("euler", []), ArgumentError,
     r"^eigenvalues: expected at least one value"),
    ("max_stable_steps-ragged", lambda: analysis.max_stable_steps("euler", [[1.0], [1.0, 2.0]]),
     ArgumentTypeError, r"^eigenvalues: expected numbers, not a ragged nesting"),
    ("max_stable_steps-unknown-method", lambda: analysis.max_stable_steps("rk5", [-1.0]),
     UnknownMethodError, r"^method: unknown method 'rk5'; valid methods are 'euler'"),
    ("max_stable_steps-method-type", lambda: analysis.max_stable_steps(4, [-1.0]),
     ArgumentTypeError, r"^method: expected a method name or a ButcherTableau"),
    ("max_stable_steps-mu-string", lambda: analysis.max_stable_steps("ars222", [-1.0], ["x"]),
     ArgumentTypeError, r"^implicit_eigenvalues: expected real numbers, got str 'x'"),
    ("max_stable_steps-mu-negative", lambda: analysis.max_stable_steps("ars222", [-1.0], [-2.0]),
     ArgumentError, r"^implicit_eigenvalues: expected finite non-negative eigenvalues"),
    ("max_stable_steps-mu-explicit", lambda: analysis.max_stable_steps("rk4", [-1.0], [1.0]),
     ArgumentError, r"^implicit_eigenvalues: method 'rk4' is explicit"),
    ("region-unknown-method", lambda: region("rk5"), UnknownMethodError,
     r"^method: unknown method 'rk5'"),
    ("region-spectra-string", lambda: region(spectra=["x"]), ArgumentTypeError,
     r"^spectra: expected numbers, got str 'x'"),
    ("region-spectra-nan", lambda: region(spectra=[-1.0, math.nan]), ArgumentError,
     r"^spectra: expected finite numbers, got nan at index 1"),
    ("region-label-type", lambda: region(label=3), ArgumentTypeError,
     r"^label: expected a string or None, got int"),
    ("region-implicit-values-string", lambda: region("ars222", implicit_values=["x"]),
     ArgumentTypeError, r"^implicit_values: expected real numbers, got str 'x'"),
    ("region-implicit-values-negative", lambda: region("ars222", implicit_values=[-1.0]),
     ArgumentError, r"^implicit_values: expected finite non-negative values"),
    ("region-implicit-values-complex", lambda: region("ars222", implicit_values=[1j]),
     ArgumentError, r"^implicit_values: expected real numbers, got complex values"),
    ("region-implicit-values-explicit", lambda: region("rk4", implicit_values=[1.0]),
     ArgumentError, r"^implicit_values: method 'rk4' has no implicit part"),
    ("region-contains-string", lambda: region().contains("x"), ArgumentTypeError,
     r"^z: expected numbers, got str"),
    ("region-contains-negative-tol", lambda: region().contains(-1.0, tol=-1.0), ArgumentError,
     r"^tol: expected a finite non-negative number, got -1.0"),
    ("region-R-w_index", lambda: region().R(0.0, 3), ArgumentError,
     r"^w_index: expected an integer <= 0, got 3"),
    ("region-plot-spectra-nan", lambda: region().plot(spectra=[math.nan]), ArgumentError,
     r"^spectra: expected finite numbers"),
    # -- stability
    ("stability-func-nan", lambda: stab(func=lambda t, y: y * math.nan), FunctionOutputError,
     r"^func: returned non-finite values \(NaN or inf\) at y"),
    ("stability-func-inf-large-state", lambda: stab(func=lambda t, y: y / 0.0,
                                                    y=torch.ones(1500, dtype=F64), k=2),
     FunctionOutputError, r"^func: returned non-finite values"),
    ("stability-jacobian-inf", lambda: stab(func=lambda t, y: torch.sqrt(y),
                                            y=torch.zeros(3, dtype=F64)),
     FunctionOutputError, r"^func: its Jacobian at the point of linearisation is not finite"),
    ("stability-func-returns-tuple", lambda: stab(func=lambda t, y: (y,)), FunctionOutputError,
     r"^func: expected a Tensor, got tuple"),
    ("stability-func-wrong-shape", lambda: stab(func=lambda t, y: y[:2]), FunctionOutputError,
     r"^func: returned a tensor with wrong shape: got shape \(2,\)"),
    ("stability-func-wrong-dtype", lambda: stab(func=lambda t, y: y.float()),
     FunctionOutputError, r"^func: returned a tensor with wrong dtype"),
    ("stability-func-type", lambda: stab(func=3), ArgumentTypeError,
     r"^func: expected a callable func\(t, y\) or an ODE block, got int"),
    ("stability-y-tuple", lambda: stab(y=(y3(), y3())), ArgumentTypeError,
     r"^y: stability takes a single Tensor state"),
    ("stability-y-int", lambda: stab(y=torch.ones(3, dtype=torch.int64)), ArgumentTypeError,
     r"^y: expected a real floating point tensor, got dtype torch.int64"),
    ("stability-y-complex", lambda: stab(y=torch.ones(3, dtype=torch.complex128)),
     ArgumentTypeError, r"^y: expected a real floating point tensor"),
    ("stability-y-empty", lambda: stab(y=torch.ones(0, dtype=F64)), ArgumentError,
     r"^y: expected a non-empty tensor, got shape \(0,\)"),
    ("stability-y-meta", lambda: stab(y=torch.ones(3, device="meta")), ArgumentError,
     r"^y: on device meta, which holds no data"),
    ("stability-y-nan", lambda: stab(y=torch.tensor([math.nan], dtype=F64)), ArgumentError,
     r"^y: contains non-finite values"),
    ("stability-step-missing", lambda: stab(step_size=None), ArgumentError,
     r"^step_size: required"),
    ("stability-step-negative", lambda: stab(step_size=-0.1), ArgumentError,
     r"^step_size: expected a finite positive number, got -0.1"),
    ("stability-step-string", lambda: stab(step_size="0.1"), ArgumentTypeError,
     r"^step_size: expected a positive number, got str"),
    ("stability-t-string", lambda: stab(t="a"), ArgumentTypeError,
     r"^t: expected a real number, got str"),
    ("stability-t-nan", lambda: stab(t=math.nan), ArgumentError,
     r"^t: expected a finite number, got nan"),
    ("stability-T-zero", lambda: stab(T=0.0), ArgumentError,
     r"^T: expected a finite positive number, got 0.0"),
    ("stability-k-zero", lambda: stab(k=0), ArgumentError,
     r"^k: expected a positive integer, got 0"),
    ("stability-k-float", lambda: stab(k=2.5), ArgumentTypeError,
     r"^k: expected an integer, got float"),
    ("stability-which-unknown", lambda: stab(which=["XX"]), ArgumentError,
     r"^which: expected entries among \('LM', 'LR', 'SR', 'LI'\), got \['XX'\]"),
    ("stability-which-type", lambda: stab(which=3), ArgumentTypeError,
     r"^which: expected a sequence of ARPACK targets"),
    ("stability-tol-negative", lambda: stab(tol=-1.0), ArgumentError,
     r"^tol: expected a finite non-negative number"),
    ("stability-flow_tol-zero", lambda: stab(flow_tol=0.0), ArgumentError,
     r"^flow_tol: expected a finite positive number"),
    ("stability-power_iterations-zero", lambda: stab(power_iterations=0), ArgumentError,
     r"^power_iterations: expected a positive integer, got 0"),
    ("stability-seed-negative", lambda: stab(seed=-1), ArgumentError,
     r"^seed: expected a non-negative integer, got -1"),
    ("stability-seed-string", lambda: stab(seed="a"), ArgumentTypeError,
     r"^seed: expected an integer, got str"),
    ("stability-dense-string", lambda: stab(dense="yes"), ArgumentTypeError,
     r"^dense: expected True, False or None, got str"),
    ("stability-unknown-method", lambda: stab(method="rk5"), UnknownMethodError,
     r"^method: unknown method 'rk5'"),
    ("stability-imex-without-L", lambda: stab(method="ars222"), ArgumentError,
     r"^implicit: method 'ars222' is an IMEX scheme and needs implicit=L"),
    ("stability-imex-L-type", lambda: stab(method="ars222", implicit=3), ArgumentTypeError,
     r"^implicit: expected a linear operator with L\(y\) and L.solve"),
    ("stability-explicit-with-L", lambda: stab(implicit=MatrixOperator(torch.eye(3, dtype=F64))),
     ArgumentError, r"^implicit: method 'euler' is explicit and takes no implicit operator"),
    # -- gradient_consistency
    ("gradients-loss-vector", lambda: grads(loss=lambda y: y[-1]), FunctionOutputError,
     r"^loss: expected a scalar \(a tensor with one element\), got shape \(3,\)"),
    ("gradients-loss-vector-fd", lambda: grads(loss=lambda y: y[-1], fd_directions=1),
     FunctionOutputError, r"^loss: expected a scalar"),
    ("gradients-loss-float", lambda: grads(loss=lambda y: 1.0), FunctionOutputError,
     r"^loss: expected a scalar Tensor, got float"),
    ("gradients-loss-int-dtype", lambda: grads(loss=lambda y: torch.tensor(1)),
     FunctionOutputError, r"^loss: expected a real floating point scalar, got dtype torch.int64"),
    ("gradients-loss-nan", lambda: grads(loss=lambda y: y.sum() * math.nan),
     FunctionOutputError, r"^loss: returned a non-finite value \(nan\)"),
    ("gradients-loss-not-callable", lambda: grads(loss=3), ArgumentTypeError,
     r"^loss: expected a callable loss\(y\), got int"),
    ("gradients-steps-empty", lambda: grads(steps=[]), ArgumentError,
     r"^steps: expected at least one step count"),
    ("gradients-steps-negative", lambda: grads(steps=[4, -2]), ArgumentError,
     r"^steps: expected positive step counts, got -2"),
    ("gradients-steps-zero", lambda: grads(steps=[0]), ArgumentError,
     r"^steps: expected positive step counts, got 0"),
    ("gradients-steps-fraction", lambda: grads(steps=[2.5]), ArgumentTypeError,
     r"^steps: expected positive integers, got 2.5"),
    ("gradients-steps-string", lambda: grads(steps="8"), ArgumentTypeError,
     r"^steps: expected a sequence of positive integers, got str"),
    ("gradients-methods-empty", lambda: grads(methods=[]), ArgumentError,
     r"^methods: expected at least one method"),
    ("gradients-methods-unknown", lambda: grads(methods=["euler", "rk5"]), UnknownMethodError,
     r"^methods\[1\]: unknown method 'rk5'"),
    ("gradients-methods-repeated", lambda: grads(methods=["euler", "euler"]), ArgumentError,
     r"^methods: expected distinct methods, got 'euler' twice"),
    ("gradients-methods-type", lambda: grads(methods=3), ArgumentTypeError,
     r"^methods: expected a method name, a tableau, or a sequence of them, got int"),
    ("gradients-strategies-empty", lambda: grads(strategies=[]), ArgumentError,
     r"^strategies: expected at least one strategy"),
    ("gradients-strategies-unknown", lambda: grads(strategies=["magic"]), ArgumentError,
     r"^strategies: unknown strategy 'magic'; valid strategies are 'backprop'"),
    ("gradients-strategies-type", lambda: grads(strategies=3), ArgumentTypeError,
     r"^strategies: expected a sequence of strategy names"),
    ("gradients-strategies-revolve-zero", lambda: grads(strategies=["revolve:0"]), ArgumentError,
     r"^strategies: 'revolve:0': expected 'revolve:k' with k >= 1"),
    ("gradients-strategies-revolve-nan", lambda: grads(strategies=["revolve:x"]), ArgumentError,
     r"^strategies: 'revolve:x': expected 'revolve:k' with an integer k"),
    ("gradients-strategies-repeated", lambda: grads(strategies=["anode", "anode"]),
     ArgumentError, r"^strategies: expected distinct strategies other than the reference"),
    ("gradients-reference-torchdiffeq", lambda: grads(reference="torchdiffeq"), ArgumentError,
     r"^reference: expected an odenet strategy"),
    ("gradients-t-negative", lambda: grads(t=-1.0), ArgumentError,
     r"^t: expected a finite positive number, got -1.0"),
    ("gradients-t-one-time", lambda: grads(t=torch.tensor([1.0], dtype=F64)), ArgumentError,
     r"^t: expected a 1-D tensor of at least 2 times, got shape \(1,\)"),
    ("gradients-t-empty-interval", lambda: grads(t=torch.tensor([1.0, 1.0], dtype=F64)),
     ArgumentError, r"^t: expected distinct first and last times"),
    ("gradients-y0-list", lambda: grads(y0=[1.0, 2.0]), ArgumentTypeError,
     r"^y0: expected a Tensor, got list"),
    ("gradients-y0-empty", lambda: grads(y0=torch.ones(0, dtype=F64)), ArgumentError,
     r"^y0: expected a non-empty tensor"),
    ("gradients-params-no-grad", lambda: grads(params=[torch.ones(1, dtype=F64)]),
     ArgumentError, r"^params\[0\]: does not require grad"),
    ("gradients-params-not-tensor", lambda: grads(params=[3]), ArgumentTypeError,
     r"^params\[0\]: expected a Tensor, got int"),
    ("gradients-params-type", lambda: grads(params=3), ArgumentTypeError,
     r"^params: expected a sequence of tensors, got int"),
    ("gradients-params-other-device",
     lambda: grads(params=[torch.ones(1, device="meta", requires_grad=True)]), ArgumentError,
     r"^params\[0\]: on device meta, but y0 is on cpu"),
    ("gradients-fd_directions-negative", lambda: grads(fd_directions=-1), ArgumentError,
     r"^fd_directions: expected a non-negative integer, got -1"),
    ("gradients-fd_eps-zero", lambda: grads(fd_eps=0.0), ArgumentError,
     r"^fd_eps: expected a finite positive number, got 0.0"),
    ("gradients-seed-negative", lambda: grads(seed=-3), ArgumentError,
     r"^seed: expected a non-negative integer, got -3"),
    ("gradients-label-type", lambda: grads(label=3), ArgumentTypeError,
     r"^label: expected a string, got int"),
    ("gradients-store-type", lambda: grads(store=3), ArgumentTypeError,
     r"^store: expected a file path or None, got int"),
    ("gradients-progress-type", lambda: grads(progress="yes"), ArgumentTypeError,
     r"^progress: expected True, False or None, got str"),
    ("gradients-func-type", lambda: grads(model_or_func=3), ArgumentTypeError,
     r"^model_or_func: expected a callable func\(t, y\) or an ODE block, got int"),
    ("gradients-imex-without-L", lambda: grads(methods="ars222"), ArgumentError,
     r"^implicit: method 'ars222' is an IMEX scheme"),
    # -- reversibility
    ("reversibility-T-zero", lambda: rev(T=0), ArgumentError,
     r"^T: expected a finite positive number, got 0.0"),
    ("reversibility-T-inf", lambda: rev(T=math.inf), ArgumentError,
     r"^T: expected a finite positive number, got inf"),
    ("reversibility-t0-nan", lambda: rev(t0=math.nan), ArgumentError,
     r"^t0: expected a finite number, got nan"),
    ("reversibility-imex", lambda: rev(methods=["ars222"]), ArgumentError,
     r"^methods: 'ars222' is an IMEX method; its implicit solves cannot run backward"),
    ("reversibility-steps-empty", lambda: rev(steps=[]), ArgumentError,
     r"^steps: expected at least one step count"),
    ("reversibility-y0-int", lambda: rev(y0=torch.ones(2, dtype=torch.int32)),
     ArgumentTypeError, r"^y0: expected a real floating point tensor, got dtype torch.int32"),
    ("reversibility-label-none", lambda: rev(label=None), ArgumentTypeError,
     r"^label: expected a string, got NoneType"),
    ("reversibility-func-wrong-shape", lambda: rev(func=lambda t, y: y[:1]), FunctionOutputError,
     r"^func: returned a tensor with wrong shape"),
    # -- convergence_order and ODEProblem
    ("order-one-step-count", lambda: order(steps=[8]), ArgumentError,
     r"^steps: expected at least 2 distinct step counts, got \[8\]"),
    ("order-repeated-step-count", lambda: order(steps=[8, 8]), ArgumentError,
     r"^steps: expected at least 2 distinct step counts, got \[8\]"),
    ("order-negative-steps", lambda: order(steps=[-8, 8]), ArgumentError,
     r"^steps: expected positive step counts, got -8"),
    ("order-unknown-problem", lambda: order(problem="heat"), ArgumentError,
     r"^problem: unknown problem 'heat'; valid problems are 'linear'"),
    ("order-problem-type", lambda: order(problem=3), ArgumentTypeError,
     r"^problem: expected a problem name or an analysis.ODEProblem, got int"),
    ("order-imex-without-implicit-part", lambda: order(method="ars222", problem="vanderpol"),
     ArgumentError, r"^problem: 'vanderpol' has no implicit part"),
    ("order-repeated-methods", lambda: order(method=["euler", "euler"]), ArgumentError,
     r"^method: expected distinct methods, got 'euler' twice"),
    ("order-exact-wrong-shape",
     lambda: order(problem=problem(exact=lambda T: torch.ones(3, dtype=F64))),
     FunctionOutputError, r"^exact: returned shape \(3,\), expected y0's shape \(2,\)"),
    ("order-exact-not-tensor", lambda: order(problem=problem(exact=lambda T: 1.0)),
     FunctionOutputError, r"^exact: expected a Tensor \(the solution at T\), got float"),
    ("order-exact-nan",
     lambda: order(problem=problem(exact=lambda T: torch.full((2,), math.nan, dtype=F64))),
     FunctionOutputError, r"^exact: expected finite real values"),
    ("order-func-wrong-shape", lambda: order(problem=problem(func=lambda t, y: y[:1])),
     FunctionOutputError, r"^func: returned a tensor with wrong shape"),
    ("problem-func-type", lambda: problem(func=3), ArgumentTypeError,
     r"^func: expected a callable, got int"),
    ("problem-y0-int", lambda: problem(y0=torch.ones(2, dtype=torch.int64)), ArgumentTypeError,
     r"^y0: expected a real floating point tensor"),
    ("problem-y0-nan", lambda: problem(y0=torch.tensor([math.nan], dtype=F64)), ArgumentError,
     r"^y0: contains non-finite values"),
    ("problem-T-bool", lambda: problem(T=True), ArgumentTypeError,
     r"^T: expected a positive number, got bool"),
    ("problem-T-negative", lambda: problem(T=-1.0), ArgumentError,
     r"^T: expected a finite positive number, got -1.0"),
    ("problem-exact-type", lambda: problem(exact=3), ArgumentTypeError,
     r"^exact: expected a callable exact\(T\) -> Tensor or None, got int"),
    ("problem-implicit-without-solve", lambda: problem(implicit=lambda y: y), ArgumentTypeError,
     r"^implicit: expected a linear operator with L\(y\) and L.solve"),
    ("problem-name-type", lambda: problem(name=3), ArgumentTypeError,
     r"^name: expected a string, got int"),
    ("matrix-operator-not-square", lambda: MatrixOperator(torch.ones(2, 3, dtype=F64)),
     ArgumentError, r"^matrix: expected a square matrix, got shape \(2, 3\)"),
    # -- model specifications of the analysis command
    ("spec-not-a-mapping", lambda: check_spec(["lean"]), ArgumentTypeError,
     r"^spec: expected a mapping of settings"),
    ("spec-unknown-setting", lambda: check_spec(width=3), ArgumentError,
     r"^spec: unknown setting 'width'"),
    ("spec-imex-explicit-method", lambda: make_network(check_spec(model="imex", method="rk4",
                                                                  channels=2), 10),
     ArgumentError, r"^method: 'rk4' is not an IMEX method; the 'imex' model needs one"),
    ("spec-explicit-model-imex-method", lambda: spec(method="ars443"), ArgumentError,
     r"^method: 'ars443' is an IMEX method; it needs the 'imex' model"),
    ("spec-unknown-activation", lambda: spec(activation="swish"), ArgumentError,
     r"^activation: unknown name 'swish'; valid names are 'relu'"),
    ("spec-activation-type", lambda: spec(activation=3), ArgumentTypeError,
     r"^activation: expected a name, a callable, an nn.Module"),
    ("spec-model-type", lambda: spec(model=3), ArgumentTypeError,
     r"^model: expected one of 'lean'"),
    ("spec-channels-zero", lambda: spec(channels=0), ArgumentError,
     r"^channels: expected a positive integer, got 0"),
    ("spec-channels-float", lambda: spec(channels=2.0), ArgumentTypeError,
     r"^channels: expected a positive integer, got float"),
    ("spec-T-nan", lambda: spec(T=math.nan), ArgumentError,
     r"^T: expected a finite positive number, got nan"),
    ("spec-seed-negative", lambda: spec(seed=-1), ArgumentError,
     r"^seed: expected an integer in \[0, "),
    ("spec-dtype", lambda: spec(dtype=torch.float16), ArgumentError,
     r"^dtype: unknown dtype 'float16'; valid dtypes are 'float32', 'float64'"),
    ("spec-device-meta", lambda: spec(device="meta"), ArgumentError,
     r"^device: 'meta' holds no data"),
    ("spec-device-type", lambda: spec(device=0.5), ArgumentTypeError,
     r"^device: expected a device name"),
    ("spec-weights-type", lambda: spec(weights=3), ArgumentTypeError,
     r"^weights: expected a file path or None, got int"),
    # -- odenet.models
    ("model-activation-type", lambda: net(activation=3), ArgumentTypeError,
     r"^activation: expected a name, a callable, an nn.Module or an nn.Module subclass, got int"),
    ("model-activation-class", lambda: net(activation=dict), ArgumentTypeError,
     r"^activation: .* got the class dict"),
    ("model-activation-class-needs-args", lambda: net(activation=nn.Linear), ArgumentTypeError,
     r"^activation: cannot build Linear\(\) without arguments"),
    ("model-activation-unknown", lambda: net(activation="swish"), ArgumentError,
     r"^activation: unknown name 'swish'"),
    ("model-imex-method", lambda: net(method="ars222"), ArgumentError,
     r"^method: 'ars222' is an IMEX scheme; the blocks of an ODEResNet are explicit"),
    ("model-unknown-method-no-blocks", lambda: net(blocks=0, method="rk5"), UnknownMethodError,
     r"^method: unknown method 'rk5'"),
    ("model-unknown-gradient", lambda: net(gradient="magic"), ArgumentError,
     r"^gradient: unknown strategy 'magic'"),
    ("model-stencil", lambda: net(stencil=7), ArgumentError,
     r"^stencil: expected one of \[4, 5, 9\], got 7"),
    ("model-blocks-bool", lambda: net(blocks=True), ArgumentTypeError,
     r"^blocks: expected an int or a sequence of ints, got bool"),
    ("model-norm-module", lambda: net(norm=nn.Identity()), ArgumentTypeError,
     r"^norm: expected None or a name"),
    ("model-widths-float", lambda: net(widths=(4.0,)), ArgumentTypeError,
     r"^widths\[0\]: expected an int, got float"),
    ("model-T-zero", lambda: net(T=0.0), ArgumentError,
     r"^T: expected a finite positive number"),
    ("model-factory-returns-non-module", lambda: net(op=lambda c: 3), ArgumentTypeError,
     r"^op: the factory returned an object of type int"),
    ("make_operator-channels", lambda: make_operator("lean", 0), ArgumentError,
     r"^channels: expected an int >= 1, got 0"),
    ("rhs-activation-type", lambda: ResidualRHS(make_operator("lean", 2), activation=1.0),
     ArgumentTypeError, r"^activation: expected a name, a callable"),
    ("make_activation-unknown", lambda: make_activation("swish"), ArgumentError,
     r"^activation: unknown name 'swish'"),
    ("count_cost-shape-type", lambda: count_cost(net(), 8), ArgumentTypeError,
     r"^input_shape: expected a tuple \(C, H, W\) or \(B, C, H, W\), got int"),
    ("count_cost-shape-bool", lambda: count_cost(net(), (True, 8, 8)), ArgumentError,
     r"^input_shape: expected \(C, H, W\) or \(B, C, H, W\) of positive ints"),
    ("count_cost-wrong-channels", lambda: count_cost(net(), (3, 8, 8)), ArgumentError,
     r"^input_shape: the model does not take an input of shape \(1, 3, 8, 8\)"),
    ("gradients-reference-unknown", lambda: grads(reference="foo"), ArgumentError,
     r"^reference: unknown strategy 'foo'"),
    ("gradients-t-list", lambda: grads(t=[0.0, 1.0]), ArgumentTypeError,
     r"^t: expected a positive number T or a 1-D tensor of times, got list"),
    ("gradients-imex-L-type", lambda: grads(methods="ars222", implicit=3), ArgumentTypeError,
     r"^implicit: expected a linear operator"),
    ("reversibility-store-folder", lambda: rev(store=_FOLDER), ArgumentError,
     r"^store: .* is a folder; expected a JSON-lines file"),
    ("order-matrix-size", lambda: problem(implicit=MatrixOperator(torch.eye(3, dtype=F64))),
     ArgumentError, r"^implicit: a \(3, 3\) matrix does not act on y0 of 2 entries"),
    ("order-progress-type", lambda: order(progress=3), ArgumentTypeError,
     r"^progress: expected True, False or None, got int"),
    ("stability-block-zero-steps", lambda: stab(func=_Block(), step_size=None), ArgumentError,
     r"^func.steps: expected a positive integer, got 0"),
    ("region-method-list", lambda: region(["euler"]), ArgumentTypeError,
     r"^method: expected a method name or a ButcherTableau / IMEXTableau, got list"),
    ("max_stable_steps-numpy-object", lambda: analysis.max_stable_steps(
        "euler", np.array([1.0, "a"], dtype=object)), ArgumentTypeError,
     r"^eigenvalues: expected numbers, got str 'a'"),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert isinstance(info.value, OdenetError)
    assert type(info.value).__module__ == "odenet.errors"


def test_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
