"""The report on a researcher's own network: from Python, and from the command line as
module:factory (a user module written to a temporary folder)."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import odenet
from odenet import analysis
from odenet.analysis._cli import main
from odenet.analysis._network_report import NETWORK_DEFAULTS, analyse_block
from odenet.analysis._user_model import block_view, capture_blocks, find_blocks
from odenet.errors import ArgumentError, ArgumentTypeError, ShapeError

USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn
    import odenet


    class Decay(nn.Module):
        """A user's own block type, described by odenet_block."""

        def __init__(self, rate, steps, method="euler", gradient="anode"):
            super().__init__()
            self.rate = nn.Parameter(torch.tensor(float(rate)))
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
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 2, 3, padding=1)
            self.ode = odenet.nn.ODEBlock(odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(2, 2)),
                                          steps=2, gradient="adjoint")
            self.mine = Decay(10.0, 2)                   # euler, h = 0.5: h*lambda = -5
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))

        def forward(self, x):
            return self.head(self.mine(self.ode(self.stem(x))))


    def make():
        torch.manual_seed(0)
        return Net()


    def no_blocks():
        return nn.Linear(2, 2)


    def broken():
        raise RuntimeError("factory exploded")


    def batch():
        g = torch.Generator().manual_seed(1)
        return torch.randn(4, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0])
''')

QUICK = {"samples": 2, "step_factors": [1, 2], "cost_repeats": 1, "flow_iterations": 6,
         "stability_k": 2, "cost_strategies": ["anode"], "network_strategies": ["adjoint"]}


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "odenet_user_net.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import odenet_user_net

    return importlib.reload(odenet_user_net)


def test_blocks_are_found_by_type_and_by_protocol(user_module):
    net = user_module.make()
    assert [n for n, _ in find_blocks(net)] == ["ode", "mine"]
    view = block_view(net.mine)
    assert (view["steps"], view["T"], view["tableau"].name) == (2, 1.0, "euler")
    x, y = user_module.batch()
    caps, loss = capture_blocks(net, x, targets=y)
    assert [tuple(c.input.shape) for c in caps] == [(4, 2, 4, 4)] * 2
    assert all(c.output_grad is not None for c in caps) and loss > 0
    # the captured input of the second block is the first block's output
    torch.testing.assert_close(caps[1].input, caps[0].output)


def test_report_on_a_model_has_one_verdict_line_per_block(user_module, tmp_path):
    net = user_module.make()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = user_module.batch()
    index = analysis.report(net, x, targets=y, output=tmp_path / "r",
                            settings={**QUICK, "gradient_tolerance": 1e-8}, quiet=True)
    for k, v in net.state_dict().items():  # the user's model is left as it was
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    page = index.read_text()
    data = json.loads((index.parent / "results.json").read_text())
    assert data["meta"]["blocks"] == ["ode", "mine"]
    rows = data["summary"]["rows"]
    assert [r["block"] for r in rows] == ["ode", "mine"]
    # every link of the summary leads to evidence on the page
    links = set(re.findall(r"href='#([^']+)'", page))
    assert links and all(f"id='{a}'" in page for a in links)
    ode, mine = data["blocks"]
    # the adjoint at Nt = 2 is not the network's gradient; its error falls with Nt
    g = {r["steps"]: r["grad_error"] for r in ode["gradients"]["rows"]
         if r["strategy"] == "adjoint"}
    assert ode["verdict"]["gradient"]["ok"] is False
    assert ode["verdict"]["gradient"]["error"] == g[2] > 1e-8
    assert "NOT the network's gradient" in ode["verdict"]["gradient"]["text"]
    assert g[4] < g[2]
    # euler on y' = -10 y with h = 0.5: |1 + h*lambda| = 4, largest stable step 2/10
    st = mine["verdict"]["stability"]
    assert st["ok"] is False and "UNSTABLE" in st["text"]
    assert st["max_abs_R"] == pytest.approx(4.0) and st["ratio"] == pytest.approx(2.5)
    assert "2.50× the largest stable step 0.2" in st["text"]
    # ANODE on the user's block is exact; its reverse solve (euler, unstable backward) is not
    assert mine["verdict"]["gradient"]["ok"] is True
    assert mine["verdict"]["gradient"]["error"] < 1e-12
    assert mine["verdict"]["reconstruction"]["ok"] is False
    # both forward passes follow the declared ODE
    assert ode["forward_check"] < 1e-12 and mine["forward_check"] < 1e-12
    # the whole network: own strategies (adjoint on one block) differ from backprop
    net_rows = {r["strategies"]: r for r in data["network"]["gradients"]}
    assert net_rows["backprop"]["grad_error"] == 0
    assert net_rows["adjoint, anode"]["grad_error"] > 1e-6
    assert {"block0-stability.png", "block1-gradients.png"} <= {p.name for p in
                                                                 index.parent.glob("*.png")}


def test_a_block_that_does_not_follow_its_declaration_is_flagged():
    class Liar(nn.Module):
        gradient = odenet.Backprop()

        def f(self, t, y):
            return -y

        def odenet_block(self):
            return {"rhs": self.f, "T": 1.0, "steps": 2, "method": "rk4"}

        def forward(self, y):
            return 2 * y

    (cap,), _ = capture_blocks(nn.Sequential(Liar()), torch.ones(1, 3, dtype=torch.float64))
    res = analyse_block(cap, {**NETWORK_DEFAULTS, **QUICK}, ["gradients"])
    assert res["forward_check"] > 0.5


def test_protocol_errors_name_the_key():
    class Half(nn.Module):
        def odenet_block(self):
            return {"rhs": lambda t, y: y, "T": 1.0}

    with pytest.raises(ArgumentError, match=r"Half.odenet_block: missing key\(s\) 'steps', "
                                            r"'method'"):
        block_view(Half())

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.odenet_block = {"rhs": lambda t, y: y, "T": 1.0, "steps": 0, "method": "rk4"}

    with pytest.raises(ArgumentError, match=r"steps must be a positive integer, got 0"):
        block_view(Odd())


def test_python_errors(user_module, tmp_path):
    net = user_module.make()
    with pytest.raises(ArgumentError, match=r"^inputs: required with a model"):
        analysis.report(net, output=tmp_path / "a")
    with pytest.raises(ArgumentError, match=r"contains no ODE block"):
        analysis.report(nn.Linear(2, 2), torch.ones(1, 2), output=tmp_path / "b")
    with pytest.raises(ShapeError, match=r"^inputs: the model cannot run on inputs of shape "
                                         r"\(4, 3, 4, 4\)"):
        analysis.report(net, torch.ones(4, 3, 4, 4), output=tmp_path / "c", quiet=True)
    with pytest.raises(ArgumentError, match=r"settings\['samples'\]"):
        analysis.report(net, torch.ones(4, 1, 4, 4), output=tmp_path / "d",
                        settings={"samples": 0})
    with pytest.raises(ArgumentTypeError, match=r"^inputs: expected a Tensor"):
        analysis.report(net, [1, 2], output=tmp_path / "e")
    with pytest.raises(ArgumentError, match=r"^targets: applies to a report on a model"):
        analysis.report(tmp_path / "f", targets=torch.ones(1))


def _cli(argv, capsys):
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_cli_module_factory_and_file_path(user_module, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    x, y = user_module.batch()
    torch.save({"inputs": x, "targets": y}, tmp_path / "batch.pt")
    torch.save(user_module.make().state_dict(), tmp_path / "w.pt")
    code, out, err = _cli(["--model", "odenet_user_net:make", "--input", "batch.pt",
                           "--weights", "w.pt", "--quick", "--sections", "gradients",
                           "-o", "r1"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert data["meta"]["source"] == "odenet_user_net:make"
    assert data["meta"]["blocks"] == ["ode", "mine"]
    assert "report: " in out and "ode: " in out
    code, out, err = _cli(["--model", str(tmp_path / "odenet_user_net.py") + ":make",
                           "--data", "odenet_user_net:batch", "--quick", "--sections",
                           "stability", "-o", "r2"], capsys)
    assert code == 0, err
    page = (tmp_path / "r2" / "index.html").read_text()
    assert "Summary: one line per ODE block" in page and "UNSTABLE" in page


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_mod_xyz:make", "--input", "wrong.pt"],
     "argument --model: cannot import 'no_such_mod_xyz'"),
    (["--model", "odenet_user_net:nope", "--input", "wrong.pt"],
     "argument --model: 'odenet_user_net' has no attribute 'nope'"),
    (["--model", "odenet_user_net:no_blocks", "--input", "wrong.pt"],
     "returned a Linear without ODE blocks"),
    (["--model", "odenet_user_net:broken", "--input", "wrong.pt"],
     "odenet_user_net:broken() failed (RuntimeError: factory exploded)"),
    (["--model", "odenet_user_net:batch", "--input", "wrong.pt"],
     "returned a tuple, not a torch.nn.Module"),
    (["--model", "missing.py:make", "--input", "wrong.pt"],
     "argument --model: no such file 'missing.py'"),
    (["--model", "odenet_user_net:make", "--input", "wrong.pt"],
     "argument --input: the model cannot run on inputs of shape (4, 3, 4, 4)"),
    (["--model", "odenet_user_net:make"], "argument --input: a network given as "
                                          "MODULE:FACTORY needs a batch"),
    (["--model", "odenet_user_net:make", "--input", "wrong.pt", "--channels", "4"],
     "--channels describes a built-in network"),
    (["--model", "odenet_user_net:make", "--input", "wrong.pt", "--weights", "other.pt"],
     "argument --weights: 'other.pt' does not fit the network of odenet_user_net:make"),
    (["--input", "wrong.pt"], "argument --input: --input FILE is the batch of a network"),
])
def test_cli_errors_are_one_line_exit_2(user_module, tmp_path, monkeypatch, capsys, argv,
                                        message):
    monkeypatch.chdir(tmp_path)
    torch.save(torch.ones(4, 3, 4, 4), tmp_path / "wrong.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "other.pt")
    code, out, err = _cli([*argv, "-o", "r"], capsys)
    assert code == 2 and len(err) == 1, err
    assert message in err[0]
    assert not (tmp_path / "r" / "index.html").exists()


@settings(max_examples=10, deadline=None)
@given(rate=st.floats(0.5, 20.0), steps=st.integers(1, 8),
       method=st.sampled_from(["euler", "rk4"]))
def test_stability_verdict_of_a_linear_decay_block(rate, steps, method):
    """y' = -rate * y: stable exactly when h * rate is within the method's real-axis limit, and
    the verdict's ratio is h over the largest stable step."""

    class Decay(nn.Module):
        gradient = odenet.Backprop()

        def f(self, t, y):
            return -rate * y

        def odenet_block(self):
            return {"rhs": self.f, "T": 1.0, "steps": steps, "method": method}

        def forward(self, y):
            return odenet.odeint(self.f, y, torch.tensor([0.0, 1.0], dtype=y.dtype),
                                 method=method, step_size=1.0 / steps)[-1]

    (cap,), _ = capture_blocks(nn.Sequential(Decay()), torch.ones(1, 3, dtype=torch.float64))
    res = analyse_block(cap, {**NETWORK_DEFAULTS, **QUICK}, ["stability"])
    v = res["verdict"]["stability"]
    limit = -analysis.stability_region(method).real_axis_limit
    h = 1.0 / steps
    assert v["ratio"] == pytest.approx(h * rate / limit, rel=1e-6)
    if abs(h * rate - limit) > 1e-6:
        assert v["ok"] == (h * rate < limit)
