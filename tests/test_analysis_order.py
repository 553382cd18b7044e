"""Observed convergence orders and reverse-time reconstruction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from odenet import METHODS, IMEXTableau, analysis
from odenet.analysis._convergence import fit_order
from odenet.analysis._problems import BUILTIN_PROBLEMS, MatrixOperator, builtin_problem
from odenet.errors import ArgumentError, ArgumentTypeError, UnknownMethodError


@pytest.mark.parametrize("problem", ["linear", "vanderpol"])
def test_euler_and_rk4_orders(problem):
    res = analysis.convergence_order(["euler", "rk4"], problem, steps=[16, 32, 64, 128])
    assert abs(res.observed["euler"] - 1) <= 0.3
    assert abs(res.observed["rk4"] - 4) <= 0.3
    assert res.declared == {"euler": 1, "rk4": 4}


def test_every_method_attains_its_order():
    # one list of all methods drives the check; IMEX methods on problems with an implicit part
    for problem in ("linear", "convnet"):
        res = analysis.convergence_order(list(METHODS), problem, steps=[8, 16, 32, 64])
        for name, tab in METHODS.items():
            assert abs(res.observed[name] - tab.order) <= 0.3, (problem, name, res.observed)
    res = analysis.convergence_order(
        [m for m, t in METHODS.items() if not isinstance(t, IMEXTableau)], "lotka_volterra",
        steps=[16, 32, 64, 128])
    for name, p in res.observed.items():
        assert abs(p - METHODS[name].order) <= 0.3, (name, p)


def test_dop853_reference_matches_the_exact_solution():
    lin = builtin_problem("linear")
    same = analysis.ODEProblem(lin.func, lin.y0, lin.T, implicit=lin.implicit)  # no exact
    assert float((same.reference() - lin.reference()).norm()) < 1e-11


def test_fit_order_and_round_off_floor():
    assert fit_order([1, 0.5, 0.25], [1, 0.25, 0.0625]) == pytest.approx(2.0)
    assert math.isnan(fit_order([1, 0.5], [1e-20, 1e-20], floor=1e-13))
    # rk4 on an exactly integrated problem: errors hit the floor, the fit uses the rest
    p = analysis.ODEProblem(lambda t, y: torch.ones_like(y) * t ** 3,
                            torch.zeros(1, dtype=torch.float64), 1.0,
                            exact=lambda T: torch.tensor([T ** 4 / 4], dtype=torch.float64))
    res = analysis.convergence_order("rk4", p, steps=[2, 4])
    assert all(r["error"] < 1e-14 for r in res.rows)
    assert math.isnan(res.observed["rk4"])


def test_result_contract_and_resume(tmp_path):
    store = tmp_path / "order.jsonl"
    res = analysis.convergence_order(["euler", "heun"], "linear", [4, 8], store=store)
    assert len(store.read_text().splitlines()) == 4
    again = analysis.convergence_order(["euler", "heun"], "linear", [4, 8], store=store)
    assert again.rows == res.rows
    assert len(store.read_text().splitlines()) == 4  # nothing recomputed
    json.dumps(res.to_dict(), allow_nan=False)
    assert "observed order" in repr(res)
    assert res.plot().axes[0].get_xscale() == "log"


def test_bad_arguments():
    with pytest.raises(UnknownMethodError):
        analysis.convergence_order("rk9")
    with pytest.raises(ArgumentError, match="problem: unknown problem 'kepler'"):
        analysis.convergence_order("rk4", "kepler")
    with pytest.raises(ArgumentError, match="has no implicit part"):
        analysis.convergence_order("ars222", "vanderpol")
    with pytest.raises(ArgumentError, match="steps: expected positive"):
        analysis.convergence_order("rk4", steps=[0, 4])
    with pytest.raises(ArgumentTypeError, match="problem"):
        analysis.convergence_order("rk4", problem=3)
    assert set(BUILTIN_PROBLEMS) == {"linear", "vanderpol", "lotka_volterra", "convnet"}


# -- reversibility ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_reconstruction_error_of_a_linear_ode_is_exact(method):
    # y' = lam y: y_back = (R(h lam) R(-h lam))^N y0, so the error is |(R(z)R(-z))^N - 1|
    lam, T = -1.5, 1.0
    reg = analysis.stability_region(method)
    res = analysis.reversibility(lambda t, y: lam * y, torch.ones(3, dtype=torch.float64), T,
                                 method, [2, 4, 8, 16])
    for row in res.rows:
        z = T / row["steps"] * lam
        expected = abs((complex(reg.R(z)) * complex(reg.R(-z))) ** row["steps"] - 1)
        assert row["error"] == pytest.approx(expected, rel=1e-6, abs=1e-14)
    errors = [r["error"] for r in res.rows]
    assert errors == sorted(errors, reverse=True)


def test_reversibility_blow_up_and_labels():
    # y' = -y^5: with 3 Euler steps of 2 the discrete solve explodes; with 3000 it is fine
    f = lambda t, y: -(y ** 5)  # noqa: E731
    res = analysis.reversibility(f, torch.full((2,), 1.5, dtype=torch.float64), 6.0, "euler",
                                 [3, 3000], label="quintic")
    assert res.rows[0]["error"] == math.inf
    assert math.isfinite(res.rows[1]["error"])
    assert res.rows[0]["label"] == "quintic"
    json.dumps(res.to_dict(), allow_nan=False)  # inf is written as "inf"
    assert res.to_dict()["rows"][0]["error"] == "inf"
    assert res.plot() is not None


def test_reversibility_refuses_imex_and_bad_input():
    y = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ArgumentError, match="IMEX method"):
        analysis.reversibility(lambda t, x: -x, y, 1.0, "ars222", [2])
    with pytest.raises(ArgumentError, match="T: expected a finite positive"):
        analysis.reversibility(lambda t, x: -x, y, -1.0, "rk4", [2])
    with pytest.raises(ArgumentTypeError, match="y0: expected a Tensor"):
        analysis.reversibility(lambda t, x: -x, [1.0], 1.0, "rk4", [2])
    with pytest.raises(ArgumentTypeError, match="func"):
        analysis.reversibility(3, y, 1.0, "rk4", [2])


def test_matrix_operator_solve():
    M = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    L = MatrixOperator(M)
    r = torch.tensor([1.0, -2.0], dtype=torch.float64)
    x = L.solve(r, 0.5)
    torch.testing.assert_close(x + 0.5 * L(x), r)
    np.testing.assert_allclose(L.to_numpy(), M.numpy())
