"""Numbers and formulas the documentation states, checked against the code that they describe."""

from __future__ import annotations

import pytest

import odenet
from odenet import analysis


@pytest.mark.parametrize("method, stated", [("euler", 2.0), ("midpoint", 2.0),
                                            ("ssprk3", 2.51), ("rk4", 2.785), ("rk4_38", 2.785)])
def test_real_axis_limits_in_theory_stability(method, stated):
    """docs/theory/stability.rst: the stated interval [-stated, 0] lies in the region and
    reaches its end to the printed digits."""
    limit = -analysis.stability_region(method).real_axis_limit
    assert stated <= limit < stated + 0.005


@pytest.mark.parametrize("steps", [4, 16, 64])
def test_revolve_recomputation_bounds_in_guide_gradients(steps):
    """docs/guide/gradients.rst: none for k >= Nt - 1, (Nt - 1)(Nt - 2)/2 for k = 1."""
    assert odenet.Revolve(steps - 1).recomputations(steps) == 0
    assert odenet.Revolve(1).recomputations(steps) == (steps - 1) * (steps - 2) // 2
