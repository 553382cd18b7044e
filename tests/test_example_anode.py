"""The ANODE-reproduction example's closing claims, checked on its own (reduced) output."""

import itertools
import os
import pathlib
import runpy

import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "plot_anode_reproduction.py"


@pytest.fixture(scope="module")
def run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old = os.environ.get("ODENET_EXAMPLE_SIZE")
    os.environ["ODENET_EXAMPLE_SIZE"] = "quick"
    try:
        ns = runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        if old is None:
            del os.environ["ODENET_EXAMPLE_SIZE"]
        else:
            os.environ["ODENET_EXAMPLE_SIZE"] = old
        plt.close("all")
    return ns


def _cols(ns, sel=lambda r: True):
    rows = [r for r in ns["rows"] if sel(r)]
    return {k: np.array([r[k] for r in rows], dtype=float)
            for k in ("h_rho", "grad_err", "rev_err", "rev_amp")}


def test_quick_grid_spans_the_limit(run):
    assert run["QUICK"]
    limit = run["LIMIT"]
    assert limit == pytest.approx(2.7853, abs=1e-3)
    c = _cols(run)
    assert (c["h_rho"] > limit).sum() >= 3 and (c["h_rho"] < limit).sum() >= 3
    assert np.all(c["h_rho"] > 0) and np.all(c["rev_amp"] >= 1 - 1e-6)


def test_errors_blow_up_beyond_the_stability_limit(run):
    limit = run["LIMIT"]
    c = _cols(run)
    out, inside = c["h_rho"] > limit, c["h_rho"] < limit
    for key in ("grad_err", "rev_err"):
        assert np.median(c[key][out]) > 1e3 * np.median(c[key][inside])
    assert run["median_out"] / run["median_in"] > 1e3


def test_small_errors_inside_the_limit_with_moderate_amplification(run):
    limit = run["LIMIT"]
    c = _cols(run, lambda r: r["h_rho"] < limit and r["rev_amp"] < 1e2)
    assert len(c["grad_err"]) >= 3
    assert np.median(c["grad_err"]) < 1e-2 and np.median(c["rev_err"]) < 1e-2
    # He-initialisation scale: the adjoint is accurate
    he = _cols(run, lambda r: r["scale"] == run["SCALES"][0])
    assert np.all(he["h_rho"] < limit)
    assert he["grad_err"].max() < 5e-2 and he["rev_err"].max() < 5e-2


def test_strong_reverse_amplification_keeps_errors_large_inside_the_limit(run):
    limit = run["LIMIT"]
    c = _cols(run, lambda r: r["h_rho"] < limit and r["rev_amp"] >= 1e4)
    assert len(c["rev_err"]) >= 1
    assert np.median(c["rev_err"]) > 1 and np.median(c["grad_err"]) > 1
    assert {r["activation"] for r in run["rows"]
            if r["h_rho"] < limit and r["rev_amp"] >= 1e4} <= {"ReLU", "leaky ReLU"}


def test_errors_fall_with_steps_at_fixed_weights(run):
    for name, errs in run["convergence"].items():
        assert all(a > b for a, b in itertools.pairwise(errs)), name


def test_activation_spread_is_small_against_the_jump_at_the_limit(run):
    jump = run["median_out"] / run["median_in"]
    bands = {}
    for (lo, _name), (_n, med_g, _med_e) in run["band_table"].items():
        if lo < run["LIMIT"]:
            bands.setdefault(lo, []).append(med_g)
    assert bands
    for meds in bands.values():
        assert max(meds) / min(meds) < 1e-2 * jump


def test_anode_is_the_exact_discrete_gradient(run):
    assert run["anode_err"] < 1e-10
    dto = float((run["g_dto"] * run["direction"]).sum())
    assert run["fd"] == pytest.approx(dto, rel=1e-5)
