"""analysis.cost counts function evaluations (forward, backward) and keeps skipped rows."""

from __future__ import annotations

import pytest
import torch

import odenet
from odenet import analysis
from odenet.analysis._cost import count_evaluations


class _F(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, t, y):
        return torch.tanh(self.lin(y))


@pytest.mark.parametrize("method,stages", [("euler", 1), ("rk4", 4)])
def test_counts_follow_each_strategy(method, stages):
    y0 = torch.randn(2, 3)
    n = 6
    fwd = stages * n
    assert count_evaluations(_F(), y0, "backprop", method, n) == (fwd, 0)
    assert count_evaluations(_F(), y0, "anode", method, n) == (fwd, fwd)  # recomputed once
    assert count_evaluations(_F(), y0, "adjoint", method, n) == (fwd, fwd)  # reverse solve
    rev = odenet.Revolve(checkpoints=2)
    # every step once with graph, plus the schedule's recomputations without
    assert count_evaluations(_F(), y0, rev, method, n) == (
        fwd, stages * (n + rev.recomputations(n))
    )


def test_cost_reports_evaluations_and_keeps_skipped_rows():
    res = analysis.cost(_F(), torch.randn(2, 3), ["anode", "torchdiffeq-adjoint"],
                        method="rk4", steps=3, repeats=1, isolate=False)
    rows = {r["strategy"]: r for r in res.rows}
    assert list(rows) == ["backprop", "anode", "torchdiffeq-adjoint"]
    assert (rows["backprop"]["nfe_forward"], rows["backprop"]["nfe_backward"]) == (12, 0)
    assert (rows["anode"]["nfe_forward"], rows["anode"]["nfe_backward"]) == (12, 12)
    skipped = rows["torchdiffeq-adjoint"]
    assert skipped["status"].startswith("skipped: torchdiffeq has no fixed-grid equivalent")
    assert skipped["time_ratio"] is None and skipped["nfe_forward"] is None
    assert any("torchdiffeq-adjoint" in s for s in res.skipped)
    assert "nfe_backward" in res.columns
