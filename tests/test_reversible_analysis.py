"""odenet.analysis.reconstruction and reversible_growth: drift of the states rebuilt by inverse
steps, the linear stability of the reversible maps against closed forms, the report section."""

from __future__ import annotations

import cmath
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet import analysis
from odenet.analysis import _reconstruction as RC
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers import ALF

F64 = torch.float64


class Tanh(torch.nn.Module):
    def __init__(self, n: int = 4, seed: int = 0, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(scale * torch.randn(n, n, dtype=F64, generator=g) / n**0.5)

    def forward(self, t, y):
        return torch.tanh(y @ self.W.T)


def test_reconstruction_rows_verdicts_and_json():
    y0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    res = analysis.reconstruction(Tanh(), y0, 1.0, ["reversible_heun", ALF(eta=0.9)],
                                  [10, 200], ["float32", "float64"], gradient_max_steps=10)
    assert len(res.rows) == 8
    by = {(r["method"], r["dtype"], r["steps"]): r for r in res.rows}
    # reversible Heun on a Lipschitz-1 network: round-off only, in both dtypes
    assert by["reversible_heun", "float64", 200]["error"] < 1e-13
    assert by["reversible_heun", "float32", 200]["error"] < 1e-5
    assert res.trusted_steps("reversible_heun", "float32") == 200
    # damped ALF: the inverse multiplies v's error by 1 / |1 - 2 eta| = 1.25 per step
    assert by["alf(eta=0.9)", "float32", 200]["trusted"] is False
    assert res.trusted_steps("alf(eta=0.9)", "float32") == 10
    assert res.first_failure("alf(eta=0.9)", "float32") == 200
    assert res.first_failure("reversible_heun", "float64") is None
    # gradients: reversible = backprop of the same scheme, computed up to gradient_max_steps
    assert by["reversible_heun", "float64", 10]["gradient_error"] < 1e-12
    assert by["reversible_heun", "float64", 200]["gradient_error"] is None
    assert by["reversible_heun", "float64", 10]["fd_error"] < 1e-6  # central differences
    assert by["reversible_heun", "float32", 10]["fd_error"] is None  # float64 only
    text = repr(res)
    assert "trustworthy up to Nt = 10, not beyond Nt = 200" in text
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert data["kind"] == "reconstruction" and len(data["rows"]) == 8
    assert res.plot().axes[0].get_xlabel() == "steps Nt"


def test_reconstruction_of_a_leapfrog_block_and_an_ode_block():
    torch.manual_seed(0)
    f = odenet.nn.HamiltonianRHS(odenet.nn.LeanConv2d(2, 2)).double()
    y0 = (torch.randn(1, 2, 4, 4, dtype=F64), torch.zeros(1, 2, 4, 4, dtype=F64))
    res = analysis.reconstruction(f, y0, 1.0, "leapfrog", [8, 64], ["float64"],
                                  gradient_max_steps=8)
    assert all(r["trusted"] for r in res.rows)
    assert res.rows[0]["gradient_error"] < 1e-12
    block = odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(2, 2)), T=2.0,
                               method="reversible_heun", gradient="reversible")
    res = analysis.reconstruction(block, torch.randn(1, 2, 4, 4), methods="alf", steps=[4],
                                  dtypes=["float32"], gradients=False)
    assert res.T == 2.0 and res.rows[0]["h"] == 0.5


def test_reconstruction_bad_input():
    y0 = torch.ones(2, 4, dtype=F64)
    with pytest.raises(ArgumentError, match="'rk4' is not a reversible method"):
        analysis.reconstruction(Tanh(), y0, methods=["rk4"])
    with pytest.raises(ArgumentError, match="dtypes\\[0\\]: expected 'float32' or 'float64'"):
        analysis.reconstruction(Tanh(), y0, dtypes=["float16"])
    with pytest.raises(ArgumentError, match="expected distinct methods"):
        analysis.reconstruction(Tanh(), y0, methods=["alf", "alf"])
    with pytest.raises(ArgumentError, match="needs a tuple state"):
        analysis.reconstruction(Tanh(), y0, methods=["leapfrog"])
    with pytest.raises(ArgumentTypeError, match="gradients: expected True or False"):
        analysis.reconstruction(Tanh(), y0, gradients=1)


# -- linear stability of the reversible maps ------------------------------------------------------
def _heun_radius(z: complex) -> float:
    # step matrix of (y, ŷ) on y' = λy, z = hλ: [[1 + z, z²/2], [2, z - 1]]
    M = np.array([[1 + z, z * z / 2], [2, z - 1]])
    return float(np.abs(np.linalg.eigvals(M)).max())


def _verlet_radius(z: complex) -> float:
    # kick-drift-kick on y' = λz, z' = λy: μ² - 2(1 + z²/2)μ + 1 = 0
    b = 1 + z * z / 2
    r = cmath.sqrt(b * b - 1)
    return max(abs(b + r), abs(b - r))


@settings(max_examples=15, deadline=None)
@given(re=st.floats(-2.0, 0.5), im=st.floats(-3.0, 3.0))
def test_growth_matches_closed_forms(re, im):
    z = complex(re, im)
    fwd, inv = analysis.reversible_growth("reversible_heun", [z])
    assert fwd[0] == pytest.approx(_heun_radius(z), rel=1e-9)
    assert inv[0] == pytest.approx(_heun_radius(-z), rel=1e-9)  # the inverse is the step of -h
    fwd, inv = analysis.reversible_growth("leapfrog", [z])
    assert fwd[0] == pytest.approx(_verlet_radius(z), rel=1e-9)
    assert inv[0] == pytest.approx(_verlet_radius(-z), rel=1e-9)


def test_growth_limits_of_the_reversible_maps():
    # leapfrog: stable exactly on the imaginary segment |h omega| <= 2
    fwd, inv = analysis.reversible_growth("leapfrog", [1.9j, 2.0j, 2.1j])
    assert fwd[0] == pytest.approx(1.0) and inv[0] == pytest.approx(1.0)
    assert fwd[2] > 1.3 and inv[2] > 1.3
    # reversible Heun: on the unit circle for hλ in [-i, i]; a decaying mode grows both ways
    fwd, inv = analysis.reversible_growth("reversible_heun", [0.9j, -0.5])
    assert fwd[0] == pytest.approx(1.0) and inv[0] == pytest.approx(1.0)
    assert fwd[1] == pytest.approx(0.5 + math.sqrt(1.25)) == inv[1]
    # damped ALF: the inverse amplifies by 1 / |1 - 2 eta| as h -> 0
    for eta in (0.6, 0.9, 1.0):
        fwd, inv = analysis.reversible_growth(ALF(eta=eta), [1e-9])
        assert inv[0] == pytest.approx(1 / abs(1 - 2 * eta), rel=1e-6)
        assert fwd[0] == pytest.approx(1.0, rel=1e-6)


def test_growth_predicts_the_measured_drift():
    # y' = -y with damped ALF at a fixed h: the forward map contracts, the inverse amplifies the
    # round-off of every step by its spectral radius, so the error grows like rho_inv^Nt
    lam, h, m = -1.0, 0.05, ALF(eta=0.8)
    _, inv = analysis.reversible_growth(m, [h * lam])
    errors = []
    for nt in (20, 40):
        res = analysis.reconstruction(lambda t, y: lam * y, torch.ones(3, dtype=F64), nt * h,
                                      m, [nt], ["float64"], gradients=False)
        errors.append(res.rows[0]["aux_error"])
    observed = (errors[1] / errors[0]) ** (1 / 20)
    assert observed == pytest.approx(float(inv[0]), rel=0.1)


# -- the report section --------------------------------------------------------------------------
def test_report_section_runs_and_renders():
    res = RC.run_reconstruction({"model": "dense", "channels": 2, "batch": 2}, [8, 16])
    assert {r["dtype"] for r in res.rows} == {"float32", "float64"}
    page = RC.reconstruction_section({"reconstruction": res}, ["reconstruction.png"], [])
    assert "<h2>Reconstruction by inverse steps</h2>" in page and "reconstruction.png" in page
    (line,) = RC.reconstruction_keys({"reconstruction": res})
    assert line.startswith("reconstruction by inverse steps: reversible_heun in float32")
    assert RC.reconstruction_section({}, [], []) is None
    names = [s.name for s in odenet.analysis._report.REPORT_SECTIONS]
    assert names[-1] == "reconstruction"
