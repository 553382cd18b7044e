"""The reversible-memory gallery example runs in quick mode and its closing claims hold on its
own output (memory growth with Nt, gradient errors against backprop of each scheme)."""

from __future__ import annotations

import os
import pathlib
import runpy

import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "plot_reversible_memory.py"


@pytest.fixture(scope="module")
def run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    old = os.environ.get("ODENET_EXAMPLE_SIZE")
    os.environ["ODENET_EXAMPLE_SIZE"] = "quick"
    try:
        return runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        if old is None:
            del os.environ["ODENET_EXAMPLE_SIZE"]
        else:
            os.environ["ODENET_EXAMPLE_SIZE"] = old
        plt.close("all")


def test_discrete_strategies_return_backprops_gradient_and_the_adjoint_converges(run):
    results, steps = run["results"], run["steps"]
    for label in ("anode", "revolve(4)", "reversible"):
        assert all(results[label][nt][2] < 1e-12 for nt in steps), label
    adjoint = np.array([results["adjoint"][nt][2] for nt in steps])
    assert adjoint[0] > 1e-8 and np.all(np.diff(adjoint) < 0)


def test_memory_grows_with_nt_for_backprop_and_anode_only(run):
    results, steps, growth = run["results"], run["steps"], run["growth"]
    if "backprop" not in growth:
        pytest.skip("peak memory is measured on Linux only")
    peaks = [results["backprop"][nt][0] for nt in steps]
    assert np.all(np.diff(peaks) > 0)
    assert 0.5 * growth["backprop"] < growth["anode"] < 1.5 * growth["backprop"]
    for flat in ("revolve(4)", "adjoint", "reversible"):
        assert abs(growth[flat]) < 0.2 * growth["backprop"], flat
    assert set(run["time_ratio"]) == set(steps)
