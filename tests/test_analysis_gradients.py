"""Gradient consistency of the strategies, resumable sweeps and the cost measurements."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import odenet.analysis._gradients as G
from odenet import analysis
from odenet.analysis._sweep import CaseStore, atomic_write, run_cases
from odenet.errors import ArgumentError, ArgumentTypeError


class ConvRHS(torch.nn.Module):
    """A small convolutional right-hand side (module level: picklable for the cost test)."""

    def __init__(self, channels: int = 3, activation: str = "tanh", scale: float = 3.0,
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(scale * torch.randn(self.conv.weight.shape, generator=g) / 9)
            self.conv.bias.copy_(0.1 * torch.randn(channels, generator=g))
        self.act = torch.tanh if activation == "tanh" else torch.relu

    def forward(self, t, y):
        return self.act(self.conv(y))


def _y0(channels=3, size=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, channels, size, size, generator=g, dtype=torch.float64)


def test_dto_strategies_agree_with_backprop_and_finite_differences():
    f = ConvRHS().double()
    res = analysis.gradient_consistency(
        f, _y0(), 1.0, ["euler", "rk4", "ssprk3"], [3, 8],
        ["anode", "revolve", "revolve:2", "torchdiffeq"], fd_directions=3)
    for r in res.rows:
        if r["strategy"] in ("backprop", "anode", "revolve", "revolve:2"):
            assert r["grad_error"] <= 1e-12 and r["y0_error"] <= 1e-12, r
            assert r["fd_error"] < 1e-7, r  # central differences in float64
        if r["strategy"] == "torchdiffeq":  # its fixed-grid euler: the same discrete network
            assert r["method"] == "euler" and r["grad_error"] <= 1e-12
    assert any("torchdiffeq for rk4" in s for s in res.skipped)
    assert res.n_params == sum(p.numel() for p in f.parameters())


def test_otd_error_decreases_with_steps_for_tanh_and_matches_torchdiffeq():
    f = ConvRHS(activation="tanh").double()
    res = analysis.gradient_consistency(f, _y0(), 1.0, "rk4_38", [4, 16, 64],
                                        ["adjoint", "torchdiffeq-adjoint"], fd_directions=1)
    ours = [res.error("rk4_38", n, "adjoint") for n in (4, 16, 64)]
    theirs = [res.error("rk4_38", n, "torchdiffeq-adjoint") for n in (4, 16, 64)]
    assert ours[0] > ours[1] > ours[2] > 0
    assert ours[0] > 1e-8  # a visible O(h^4) discrepancy at Nt = 4
    for a, b in zip(ours, theirs):  # the same continuous adjoint, the same scheme
        assert a == pytest.approx(b, rel=1e-6, abs=1e-13)
    # the OTD gradient is not the gradient of the network: finite differences side with backprop
    rows = {(r["steps"], r["strategy"]): r for r in res.rows}
    assert rows[(4, "adjoint")]["fd_error"] > 100 * rows[(4, "backprop")]["fd_error"]


def test_relu_otd_error_is_larger_than_tanh():
    errs = {}
    for act in ("tanh", "relu"):
        f = ConvRHS(activation=act).double()
        res = analysis.gradient_consistency(f, _y0(), 1.0, "rk4_38", [4], ["adjoint"],
                                            fd_directions=0, label=act)
        errs[act] = res.error("rk4_38", 4, "adjoint", act)
        assert res.rows[0]["fd_error"] is None
    assert errs["relu"] > errs["tanh"]


def test_closures_custom_loss_and_times():
    w = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    res = analysis.gradient_consistency(
        lambda t, y: w * torch.sin(y), torch.ones(3, dtype=torch.float64), t, "midpoint", [4],
        ["anode", "adjoint"], loss=lambda y: y[1:].sum(), params=[w])
    assert res.error("midpoint", 4, "anode") <= 1e-12
    assert all(r["time_s"] > 0 for r in res.rows)
    json.dumps(res.to_dict(), allow_nan=False)
    assert "gradient consistency" in repr(res)
    assert len(res.plot().axes) == 2


def test_failures_are_recorded_not_hidden():
    class Broken(analysis._gradients.odenet.GradientStrategy):
        name = "broken-test"

        def solve(self, problem, y0):
            raise RuntimeError("no gradient for you")

    w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    res = analysis.gradient_consistency(lambda t, y: -w * y, torch.ones(2, dtype=torch.float64),
                                        1.0, "euler", [2], [Broken()], params=[w])
    row = res.rows[1]
    assert row["grad_error"] is None and "no gradient for you" in row["error"]
    assert res.failed and "failed" in repr(res)


def test_bad_arguments():
    y0 = torch.ones(2, dtype=torch.float64)
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ArgumentError, match="strategies: unknown strategy 'magic'"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [2], ["magic"])
    with pytest.raises(ArgumentError, match="revolve:k"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [2], ["revolve:x"])
    with pytest.raises(ArgumentError, match="distinct strategies"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [2], ["backprop"])
    with pytest.raises(ArgumentError, match="steps: expected positive"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [-2], ["anode"])
    with pytest.raises(ArgumentTypeError, match="loss"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [2], ["anode"], loss=3)
    with pytest.raises(ArgumentError, match="reference"):
        analysis.gradient_consistency(f, y0, 1.0, "rk4", [2], ["anode"],
                                      reference="torchdiffeq")
    with pytest.raises(ArgumentTypeError, match="model_or_func"):
        analysis.gradient_consistency(None, y0, 1.0, "rk4", [2], ["anode"])


# -- resumable sweeps ------------------------------------------------------------------------------
def test_interrupted_sweep_resumes_and_loses_nothing(tmp_path):
    store_path = tmp_path / "s.jsonl"
    calls = []

    def compute(key):
        calls.append(key)
        if key == 3 and len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third case runs
        return {"square": key * key, "inf": float("inf")}

    with pytest.raises(KeyboardInterrupt):
        run_cases([1, 2, 3, 4], compute, CaseStore(store_path, "fp"), progress=False)
    assert len(store_path.read_text().splitlines()) == 2
    # a kill in the middle of a write leaves a truncated last line
    with open(store_path, "a") as fh:
        fh.write('{"fingerprint": "fp", "key": 3, "rec')
    calls.clear()
    out = run_cases([1, 2, 3, 4], compute, CaseStore(store_path, "fp"), progress=False)
    assert calls == [3, 4]  # only the unfinished cases ran
    assert [r["square"] for r in out] == [1, 4, 9, 16]
    assert out[0]["inf"] == float("inf")
    # other inputs (another fingerprint) never reuse the records
    calls.clear()
    run_cases([1], compute, CaseStore(store_path, "other"), progress=False)
    assert calls == [1]


def test_gradient_sweep_resumes_from_its_store(tmp_path, monkeypatch):
    f = ConvRHS(channels=2).double()
    y0 = _y0(channels=2, size=4)
    store = tmp_path / "g.jsonl"
    first = analysis.gradient_consistency(f, y0, 1.0, "euler", [2, 4], ["anode"], store=store)
    counter = {"n": 0}
    original = G.solve_with

    def counting(*args, **kwargs):
        counter["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(G, "solve_with", counting)
    again = analysis.gradient_consistency(f, y0, 1.0, "euler", [2, 4], ["anode"], store=store)
    assert counter["n"] == 0 and again.rows == first.rows
    with torch.no_grad():  # other weights: a different fingerprint, everything recomputed
        f.conv.weight.mul_(1.1)
    analysis.gradient_consistency(f, y0, 1.0, "euler", [2, 4], ["anode"], store=store)
    assert counter["n"] == 4


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left


# -- cost ------------------------------------------------------------------------------------------
def test_cost_in_process_orders_memory():
    f = ConvRHS(channels=8)
    y0 = torch.randn(16, 8, 16, 16)  # 128 KiB per state
    res = analysis.cost(f, y0, ["adjoint", "revolve:2"], method="rk4", steps=48, repeats=1,
                        isolate=False)
    rows = {r["strategy"]: r for r in res.rows}
    assert rows["backprop"]["time_ratio"] == 1.0 and rows["backprop"]["memory_ratio"] == 1.0
    # backprop keeps ~4 stages x 48 steps of activations; the adjoint keeps O(1) states
    assert rows["adjoint"]["memory_ratio"] < 0.5
    assert rows["revolve:2"]["memory_ratio"] < 1.0
    assert "skipped" in res.to_dict()
    json.dumps(res.to_dict(), allow_nan=False)
    assert len(res.plot().axes) == 2


def test_cost_in_fresh_processes():
    f = ConvRHS(channels=2)
    pickle.dumps(f)
    res = analysis.cost(f, torch.randn(2, 2, 6, 6), ["torchdiffeq-adjoint"], method="rk4_38",
                        steps=4, repeats=1)
    assert [r["status"] for r in res.rows] == ["ok", "ok"]
    assert res.isolated and all(r["probe"] in ("VmHWM", "ru_maxrss") for r in res.rows)
    with pytest.raises(ArgumentError, match="isolate=False"):
        analysis.cost(lambda t, y: -y, torch.ones(2), ["anode"], steps=2)
    with pytest.raises(ArgumentError, match="input: required"):
        analysis.cost(f, None, ["anode"])


def test_analysis_on_cuda(cuda):
    from odenet.analysis._cost import measure

    f = ConvRHS(channels=2).double().to(cuda)
    y0 = _y0(channels=2, size=4).to(cuda)
    res = analysis.gradient_consistency(f, y0, 1.0, "rk4_38", [2, 8], ["anode", "adjoint"],
                                        fd_directions=1)
    assert res.error("rk4_38", 2, "anode") <= 1e-12
    assert res.error("rk4_38", 8, "adjoint") < res.error("rk4_38", 2, "adjoint")
    st = analysis.stability(f, y0[:1], "rk4", 0.25, k=2, T=0.5)
    assert st.flow_amplification > 0 and st.arpack_error < 1e-6
    rev = analysis.reversibility(f, y0, 1.0, "rk4", [2, 8])
    assert rev.rows[1]["error"] < rev.rows[0]["error"]
    m = measure(f, y0, "anode", "rk4", 4, repeats=1)
    assert m["probe"] == "cuda.max_memory_allocated" and m["peak_bytes"] > 0


def test_cost_of_a_network_sets_the_strategy_on_every_block():
    import odenet

    torch.manual_seed(0)
    net = odenet.models.ODEResNet(1, 3, widths=(8,), blocks=4, op="lean", method="rk4_38",
                                  steps=12, gradient="backprop", norm=None)
    x = torch.randn(16, 1, 16, 16)
    res = analysis.cost(net, x, ["anode", "torchdiffeq-adjoint"], repeats=1, isolate=False)
    rows = {r["strategy"]: r for r in res.rows}
    assert res.network and res.blocks == 4 and res.method == "rk4_38" and res.steps == 12
    assert all(r["status"] == "ok" for r in res.rows)
    # ANODE keeps one block's graph at a time: O(L) + O(Nt) instead of O(L Nt)
    assert rows["anode"]["memory_ratio"] < 0.6
    assert rows["torchdiffeq-adjoint"]["memory_ratio"] < 0.6
    # the blocks are restored afterwards
    assert all(repr(b.gradient) == "Backprop()" and "forward" not in b.__dict__
               for b in analysis._cost.ode_blocks(net))
    with pytest.raises(ArgumentError, match="set them on the blocks"):
        analysis.cost(net, x, ["anode"], steps=4, isolate=False)
