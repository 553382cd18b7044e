"""The memory-budgeted gradient plan: the choice, the budget met when measured, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

import odenet
from odenet.analysis import Plan, plan_gradients
from odenet.analysis._plan import _choose, _predict, candidate_strategies
from odenet.analysis._user_model import find_blocks, strategy_label
from odenet.errors import ArgumentError, ArgumentTypeError


def _opt(strategy, held, peak, time_s):
    return {"block": "b", "strategy": strategy, "held": held, "peak": peak, "time_s": time_s,
            "grad_error": 0.0}


def test_predicted_peak_follows_the_backward_order():
    # in backward, block 2 runs (peak 5) while blocks 1 and 2 hold 10 + 1; then block 1 (peak 3)
    assert _predict([10, 1], [3, 5], 100) == 100 + max(11, 0 + 3, 10 + 5)


def test_choice_is_the_fastest_within_the_budget():
    options = [[_opt("backprop", 50, 60, 1.0), _opt("anode", 5, 60, 1.3),
                _opt("revolve:2", 2, 20, 1.8)] for _ in range(3)]
    for budget in (40, 80, 130, 200):
        chosen, feasible = _choose(options, budget, 0.0)
        best = min((c for c in itertools.product(*options)
                    if _predict([o["held"] for o in c], [o["peak"] for o in c], 0) <= budget),
                   key=lambda c: sum(o["time_s"] for o in c))
        assert feasible
        assert sum(o["time_s"] for o in chosen) == pytest.approx(sum(o["time_s"] for o in best))
    chosen, feasible = _choose(options, 10, 0.0)  # nothing fits: the least memory
    assert not feasible and {c["strategy"] for c in chosen} == {"revolve:2"}


def test_candidates_include_reversible_only_when_registered():
    names = candidate_strategies(9)
    assert names[:2] == ["backprop", "anode"] and "revolve:3" in names
    assert ("reversible" in names) == ("reversible" in odenet.gradients.STRATEGIES)


def test_plan_meets_a_budget_that_backprop_everywhere_exceeds():
    torch.manual_seed(0)
    net = odenet.models.ODEResNet(1, 3, widths=(8,), blocks=3, op="dense", steps=4,
                                  gradient="anode", norm=None).double()
    x = torch.randn(8, 1, 16, 16, dtype=torch.float64)
    strategies = ["backprop", "anode", "adjoint"]
    loose = plan_gradients(net, x, 2**34, strategies=strategies, repeats=1)
    assert all(not c["strategy"] == "adjoint" for c in loose.candidates)  # inexact: dropped
    assert any("adjoint" in d and "allow_inexact" in d for d in loose.dropped)
    by = {(c["block"], c["strategy"]): c for c in loose.candidates}
    blocks = [n for n, _ in find_blocks(net)]
    held_bp = sum(by[(b, "backprop")]["held"] for b in blocks)
    held_anode = sum(by[(b, "anode")]["held"] for b in blocks)
    assert held_bp > 4 * held_anode  # backprop keeps every step's activations
    budget = loose.other_bytes + held_bp * 0.5 + max(by[(b, "anode")]["peak"] for b in blocks)
    plan = plan_gradients(net, x, budget, strategies=strategies, repeats=1)
    assert isinstance(plan, Plan) and plan.feasible
    assert plan.meets_budget and plan.measured_peak_bytes <= budget
    assert set(plan.assignment.values()) != {"backprop"}
    assert "adjoint" not in plan.assignment.values()
    assert all(r["grad_error"] < 1e-10 for r in plan.rows)
    undo = plan.apply(net)
    assert [strategy_label(m.gradient) for _, m in find_blocks(net)] == list(
        plan.assignment.values())
    undo()
    assert all(isinstance(m.gradient, odenet.ANODE) for _, m in find_blocks(net))
    text = str(plan)
    assert "gradient plan within" in text and "measured" in text


def test_allow_inexact_admits_the_adjoint():
    net = odenet.models.ODEResNet(1, 2, widths=(2,), blocks=1, steps=2).double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    plan = plan_gradients(net, x, 2**34, allow_inexact=True, strategies=["adjoint"], repeats=1)
    assert {c["strategy"] for c in plan.candidates} == {"backprop", "adjoint"}
    adj = next(c for c in plan.candidates if c["strategy"] == "adjoint")
    assert adj["grad_error"] > 1e-8  # measured and shown, not hidden


@pytest.mark.parametrize("args, kwargs, error, pattern", [
    ((0,), {}, ArgumentError, r"^budget_bytes: expected a finite positive number"),
    ((float("inf"),), {}, ArgumentError, r"^budget_bytes"),
    ((1e9, "yes"), {}, ArgumentTypeError, r"^allow_inexact: expected a bool"),
    ((1e9,), {"strategies": ["magic"]}, ArgumentError, r"^strategies: unknown strategy"),
    ((1e9,), {"repeats": 0}, ArgumentError, r"^repeats: expected a positive integer"),
])
def test_bad_arguments(args, kwargs, error, pattern):
    net = odenet.models.ODEResNet(1, 2, widths=(2,), blocks=1, steps=2)
    with pytest.raises(error, match=pattern):
        plan_gradients(net, torch.randn(1, 1, 4, 4), *args, **kwargs)


def test_apply_to_another_network_names_the_missing_block():
    net = odenet.models.ODEResNet(1, 2, widths=(2,), blocks=1, steps=2)
    plan = Plan([{"block": "elsewhere", "strategy": "anode"}], budget_bytes=1.0)
    with pytest.raises(ArgumentError, match=r"no ODE block named 'elsewhere'"):
        plan.apply(net)
