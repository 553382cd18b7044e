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


def test_operator_counts_in_guide_operators():
    """docs/guide/operators.rst: 36,864 vs 4,416 weights at c = 64; psc4 at period 8 keeps 37/72
    of the dense weights (1.95x fewer), a long period tends to 4/9 (2.25x fewer)."""
    from odenet.models import make_operator

    def weights(op, **options):
        return sum(p.numel() for p in make_operator(op, 64, **options).parameters())

    assert weights("dense") == 36864 and weights("lean") == 4416
    assert weights("sparse") == 36864 * 37 // 72
    assert f"{72 / 37:.2f}" == "1.95" and f"{9 / 4:.2f}" == "2.25"
    long_period = weights("sparse", period=4096)
    assert long_period == pytest.approx(36864 * 4 / 9, rel=1e-3)


@pytest.mark.parametrize("h, stated", [(1, 15), (256, 61)])
def test_implicit_step_reach_in_guide_imex(h, stated):
    """docs/guide/imex.rst: for K_L = the 5-point Laplacian, one solve of (I + hL)^-1 stays above
    1e-3 of its peak over 15 pixels at h = 1 and 61 at h = 256 (128 x 128, periodic)."""
    import torch

    from odenet.linear import ConvFFT

    lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]],
                       dtype=torch.float64)
    impulse = torch.zeros(1, 1, 128, 128, dtype=torch.float64)
    impulse[0, 0, 64, 64] = 1.0
    g = ConvFFT(lap.expand(1, 1, 3, 3).clone()).solve(impulse, float(h))[0, 0].abs()
    assert int((g / g.max() > 1e-3).any(0).sum()) == stated
