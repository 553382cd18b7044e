"""The training monitor: Krylov spectra, JSON lines, TensorBoard scalars, thresholds once."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import odenet
from odenet import analysis
from odenet.analysis import Monitor, MonitorWarning
from odenet.analysis._monitor import krylov_eigenvalues
from odenet.errors import ArgumentError, ArgumentTypeError


class Decay(nn.Module):
    """y' = -rate * y, a user block (odenet_block protocol)."""

    def __init__(self, rate: float, steps: int, method: str = "euler", gradient="adjoint"):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate, dtype=torch.float64))
        self.n, self.how = steps, method
        self.gradient = odenet.gradients.resolve_gradient(gradient)

    def f(self, t, y):
        return -self.rate * y

    def odenet_block(self):
        return {"rhs": self.f, "T": 1.0, "steps": self.n, "method": self.how}

    def forward(self, y):
        t = torch.tensor([0.0, 1.0], dtype=y.dtype)
        return odenet.odeint(self.f, y, t, method=self.how, step_size=1.0 / self.n,
                             gradient=self.gradient)[-1]


class Net(nn.Module):
    def __init__(self, rate=10.0, steps=2, method="euler"):
        super().__init__()
        self.lin = nn.Linear(3, 3).double()
        self.block = Decay(rate, steps, method)

    def forward(self, x):
        return self.block(self.lin(x)).sum(-1)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 1000))
def test_krylov_with_n_steps_is_the_whole_spectrum(n, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    ritz = krylov_eigenvalues(lambda y: A @ y, torch.zeros(n, dtype=torch.float64), n)
    exact = np.linalg.eigvals(A.numpy())
    assert len(ritz) == n
    for lam in exact:  # every eigenvalue is found
        assert np.abs(ritz - lam).min() < 1e-6 * max(np.abs(exact).max(), 1.0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000))
def test_krylov_radius_of_a_symmetric_jacobian_is_a_close_lower_bound(seed):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    lam = -torch.linspace(0.01, 1.0, 40, dtype=torch.float64)
    lam[-1] = -5.0  # an outlier, as stiff modes are
    A = Q @ torch.diag(lam) @ Q.T
    ritz = krylov_eigenvalues(lambda y: A @ y, torch.zeros(40, dtype=torch.float64), 8)
    rho = float(np.abs(ritz).max())
    assert rho <= 5.0 + 1e-9
    assert rho > 5.0 * (1 - 1e-6)


def test_thresholds_fire_once_per_block_and_quantity(tmp_path):
    net = Net(rate=10.0, steps=2)  # euler, h = 0.5, h*lambda = -5: largest stable step 0.2
    x = torch.randn(4, 3, dtype=torch.float64)

    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = Writer()
    mon = Monitor(net, x, every=1, path=tmp_path / "m.jsonl", tensorboard=writer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            mon.step()
    mine = [w for w in caught if issubclass(w.category, MonitorWarning)]
    assert len(mine) == 3, [str(w.message) for w in caught]  # once per quantity, not per record
    assert not [w for w in caught if not issubclass(w.category, MonitorWarning)]
    text = " | ".join(str(w.message) for w in mine)
    for key in ("step_ratio", "gradient_error", "reconstruction_error"):
        assert f"{key} = " in text
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2]
    rec = lines[0]["blocks"]["block"]
    assert rec["spectral_radius"] == pytest.approx(10.0)
    assert rec["h_rho"] == pytest.approx(5.0)
    assert rec["max_abs_R"] == pytest.approx(4.0)  # |1 - 5|
    assert rec["step_ratio"] == pytest.approx(2.5)
    assert rec["gradient_error"] > 1e-3 and rec["reconstruction_error"] > 1e-2
    assert ("block/step_ratio", pytest.approx(2.5), 0) in writer.scalars


def test_a_stable_exact_block_stays_quiet_and_training_state_is_untouched():
    net = Net(rate=1.0, steps=8, method="rk4")
    net.block.gradient = odenet.ANODE()
    x = torch.randn(4, 3, dtype=torch.float64)
    net(x).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.train()
    mon = Monitor(net, x, every=2, tensorboard=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)
        records = [mon.step() for _ in range(5)]
    assert [r is not None for r in records] == [True, False, True, False, True]
    rec = mon.history[-1]["blocks"]["block"]
    limit = -analysis.stability_region("rk4").real_axis_limit  # 2.785...
    assert rec["step_ratio"] == pytest.approx(0.125 / limit)  # h = 1/8, lambda = -1
    assert rec["gradient_error"] < 1e-12
    assert net.training
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_thresholds_are_configurable():
    mon = Monitor(Net(), torch.randn(2, 3, dtype=torch.float64), every=1, tensorboard=False,
                  thresholds={"step_ratio": 3.0, "gradient_error": 1e3,
                              "reconstruction_error": 1e9})
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)
        mon.step()


def test_imex_blocks_have_no_reverse_solve():
    block = odenet.nn.IMEXBlock(odenet.nn.LeanConv2d(2, 2), activation="tanh", steps=2,
                                method="ars222")
    mon = Monitor(nn.Sequential(block), torch.randn(2, 2, 6, 6), tensorboard=False)
    rec = mon.record()["blocks"]["0"]
    assert rec["reconstruction_error"] is None
    assert rec["step_ratio"] < 1 and rec["max_abs_R"] <= 1 + 1e-9


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"every": 0}, ArgumentError, r"^every: expected a positive integer"),
    ({"thresholds": {"speed": 1.0}}, ArgumentError, r"^thresholds: unknown quantity 'speed'"),
    ({"thresholds": {"step_ratio": -1}}, ArgumentError, r"thresholds\['step_ratio'\]"),
    ({"quantities": ["colour"]}, ArgumentError, r"^quantities: expected some of"),
    ({"tensorboard": 3}, ArgumentTypeError, r"^tensorboard: expected a folder"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        Monitor(Net(), torch.randn(2, 3, dtype=torch.float64), **kwargs)


def test_a_model_without_blocks_is_refused():
    with pytest.raises(ArgumentError, match=r"contains no ODE block"):
        Monitor(nn.Linear(2, 2), torch.randn(1, 2))


def test_the_gallery_example_shows_the_adjoint_parting_from_backprop(monkeypatch, capsys):
    """examples/plot_training_monitor.py (quick size): ANODE's monitored gradient error is
    round-off at every record, the adjoint's is not, as the example's closing text says."""
    import pathlib
    import runpy

    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("ODENET_EXAMPLE_SIZE", "quick")
    threads = torch.get_num_threads()
    path = pathlib.Path(__file__).parents[1] / "examples" / "plot_training_monitor.py"
    try:
        ns = runpy.run_path(str(path), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    mons = ns["monitors"]
    assert [r["step"] for r in mons["anode"].history] == [0, 10, 20, 30]

    def errors(name):
        return [b["gradient_error"] for r in mons[name].history for b in r["blocks"].values()]

    assert max(errors("anode")) < 1e-12
    assert min(errors("adjoint")) > 1e-3
    printed = capsys.readouterr().out
    assert "adjoint's gradient error over training:" in printed
