"""odenet.analysis.adaptive_consistency: gradients of adaptive solves per rtol, and its report
section."""

from __future__ import annotations

import io
import itertools
import json
import pathlib
import runpy

import pytest
import torch

import odenet.analysis._report as R
from odenet import analysis
from odenet.analysis import _adaptive as A
from odenet.errors import ArgumentError, ArgumentTypeError

RTOLS = (1e-3, 1e-5, 1e-7)


@pytest.fixture(scope="module")
def result():
    f, y0, T = A.default_problem()
    return analysis.adaptive_consistency(f, y0, T, "dopri5", RTOLS,
                                         ["anode", "revolve", "revolve:2", "adjoint"])


def test_dto_strategies_agree_with_backprop_to_round_off(result):
    for rtol in RTOLS:
        for s in ("anode", "revolve", "revolve:2"):
            r = result.row(rtol, s)
            assert r["grad_error"] <= 1e-10 and r["y0_error"] <= 1e-10, (rtol, s, r)
            assert r["steps"] == result.row(rtol, "backprop")["steps"]
            assert r["bwd_steps"] == r["steps"]  # the accepted steps, replayed
    assert result.dtype == "float64"


def test_the_adjoint_error_shrinks_as_rtol_tightens(result):
    errs = [result.error(r, "adjoint") for r in RTOLS]
    y0errs = [result.error(r, "adjoint", "y0") for r in RTOLS]
    assert errs[0] > errs[1] > errs[2] > 0
    assert y0errs[0] > y0errs[-1] > 0
    assert errs[-1] > 1e3 * max(result.error(r, "anode") for r in RTOLS)  # OTD is not DTO
    for rtol, e in zip(RTOLS, errs):
        assert e < 100 * rtol


def test_finite_differences_of_the_full_solve_agree_to_the_order_of_rtol(result):
    for rtol in RTOLS:
        fd = result.error(rtol, "backprop", "fd")
        assert 0 < fd <= 10 * rtol, (rtol, fd)  # the controller's own dependence: O(rtol)
        assert result.error(rtol, "anode", "fd") == pytest.approx(fd, rel=1e-3, abs=1e-12)
    # the gap is real (far above the FD step's own error, about 1e-10) and shrinks with rtol
    assert result.error(RTOLS[0], "backprop", "fd") > 1e-8
    assert result.error(RTOLS[-1], "backprop", "fd") < result.error(RTOLS[0], "backprop", "fd")
    assert result.fd_eps == pytest.approx(torch.finfo(torch.float64).eps ** (1 / 3))


def test_step_counts_grow_as_rtol_tightens(result):
    steps = [result.row(r, "backprop")["steps"] for r in RTOLS]
    nfe = [result.row(r, "backprop")["nfe"] for r in RTOLS]
    adj = [result.row(r, "adjoint")["bwd_steps"] for r in RTOLS]
    assert steps[0] < steps[1] < steps[2]
    assert nfe[0] < nfe[1] < nfe[2]
    assert adj[0] < adj[2] and all(a >= 1 for a in adj)
    for r in RTOLS:
        assert result.row(r, "adjoint")["bwd_rejected"] is not None
        rev = result.row(r, "revolve:2")
        assert rev["snapshots"] <= 2 and rev["recomputed"] >= 0
        assert result.row(r, "backprop")["time_s"] > 0
        assert result.row(r, "backprop")["peak_mb"] >= 0
    assert result.row(RTOLS[-1], "revolve:2")["recomputed"] > 0


def test_table_plot_and_json(result):
    text = result.table()
    assert text.startswith("adaptive solves (dopri5, atol = 0.01·rtol, float64)")
    for word in ("grad_error", "fd_error", "bwd_steps", "recomputed", "peak_mb", "revolve:2"):
        assert word in text
    fig = result.plot()
    assert len(fig.axes) == 4
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["kind"] == "adaptive_consistency" and len(data["rows"]) == 3 * 5
    assert data["rtols"] == list(RTOLS)


def test_a_module_is_copied_to_float64_and_left_alone():
    class Rhs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, t, y):
            return torch.tanh(self.lin(y))

    f = Rhs()
    res = analysis.adaptive_consistency(f, torch.randn(2, 3), 0.5, "bosh3", [1e-4], ["anode"],
                                        fd_directions=0, measure=False)
    assert f.lin.weight.dtype == torch.float32 and res.dtype == "float64"
    assert res.n_params == 12 and res.error(1e-4, "anode") <= 1e-10
    assert res.row(1e-4, "anode")["fd_error"] is None and res.row(1e-4, "anode")["peak_mb"] is None


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"method": "rk4"}, ArgumentError, r"^method: 'rk4' is not an adaptive method"),
    ({"rtols": []}, ArgumentError, r"^rtols: expected at least one"),
    ({"rtols": [1e-3, 0.0]}, ArgumentError, r"^rtols\[1\]: expected 0 < rtol < 1"),
    ({"rtols": [-1e-3]}, ArgumentError, r"^rtols\[0\]: expected 0 < rtol < 1"),
    ({"rtols": "1e-3"}, ArgumentTypeError, r"^rtols: expected a sequence"),
    ({"strategies": ["anode", "bogus"]}, ArgumentError, r"^strategies: unknown strategy 'bogus'"),
    ({"strategies": ["reversible"]}, ArgumentError,
     r"^strategies: 'reversible' does not support adaptive methods"),
    ({"strategies": []}, ArgumentError, r"^strategies: expected at least one"),
    ({"atol_factor": 0}, ArgumentError, r"^atol_factor"),
    ({"dtype": torch.int32}, ArgumentError, r"^dtype"),
])
def test_bad_input_names_the_argument(kwargs, exc, match):
    w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(exc, match=match):
        analysis.adaptive_consistency(lambda t, y: w * y, torch.ones(2), params=[w],
                                      measure=False, **kwargs)


def test_explicit_params_of_another_dtype_are_refused():
    w = torch.tensor(-1.0, requires_grad=True)
    with pytest.raises(ArgumentError, match=r"^params\[0\]: dtype float32, but the solve runs in "
                                            r"float64"):
        analysis.adaptive_consistency(lambda t, y: w * y, torch.ones(2), params=[w])


def test_the_report_section(tmp_path):
    names = [s.name for s in R.REPORT_SECTIONS]
    assert "adaptive" in names
    out = tmp_path / "r"
    index = analysis.report(out, {"model": "dense", "channels": 2, "batch": 2},
                            sections=["adaptive"], quiet=True)
    page = index.read_text()
    assert "<h2>Gradients of adaptive solves</h2>" in page and 'src="adaptive.png"' in page
    assert (out / "adaptive.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert data["adaptive"]["kind"] == "adaptive_consistency"
    assert data["meta"]["section_seconds"]["adaptive"] < 20
    keys = data["meta"]["key_numbers"]
    assert any(k.startswith("adaptive dopri5: ANODE / Revolve vs backprop") for k in keys)
    assert any("adjoint vs backprop" in k for k in keys)
    assert A.adaptive_section({}, [], []) is None and A.adaptive_keys({}) == []


def test_the_gallery_example_and_its_claims():
    """examples/plot_adaptive_gradients.py (quick size): the claims of its text hold on its
    own output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "plot_adaptive_gradients.py"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODENET_EXAMPLE_SIZE", "quick")
        try:
            g = runpy.run_path(str(path), run_name="__main__")
        finally:
            plt.close("all")
    res, rtols = g["res"], g["RTOLS"]
    assert g["dto"] < 1e-12  # ANODE / Revolve are backprop of the same solve
    adj = [res.error(r, "adjoint") for r in rtols]
    assert all(a > b for a, b in itertools.pairwise(adj)) and adj[-1] > 1e3 * g["dto"]
    for r in rtols:
        bp = res.row(r, "backprop")
        assert 1e-12 < bp["fd_error"] < r  # of the order of the tolerance, below it here
        assert res.row(r, "adjoint")["bwd_steps"] >= bp["steps"]  # "more steps than forward"
        assert res.row(r, "revolve:3")["snapshots"] <= 3
    steps = [res.row(r, "backprop")["steps"] for r in rtols]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert g["fig"] is not None and len(g["fig"].axes) == 4
