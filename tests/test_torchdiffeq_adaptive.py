"""torchdiffeq's adaptive methods through ``odenet.compat.torchdiffeq``, against torchdiffeq.

The cases follow what torchdiffeq's own suite checks for its adaptive solvers (solver
error on its test problems in both directions, no integration, jump_t, callbacks,
adjoint against backprop), in odenet's words, plus direct comparisons of the accepted
steps and numbers with the installed torchdiffeq (float64).
"""

from __future__ import annotations

import pytest
import torch
import torchdiffeq as real

from odenet.compat import torchdiffeq as tde

F64 = torch.float64
METHODS = ("dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8")


class Net(torch.nn.Module):
    """A small time-dependent network that records torchdiffeq's step callbacks."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=F64))
        self.steps: list[tuple[float, float]] = []
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.tanh(y @ self.w.T) * torch.cos(t)

    def callback_accept_step(self, t0, y0, dt):
        self.steps.append((float(t0), abs(float(dt))))  # torchdiffeq reports |dt|


def same_steps(a: Net, b: Net, tol: float = 1e-9) -> bool:
    """The same accepted steps (times and sizes equal to ``tol``) and evaluations."""
    return a.nfe == b.nfe and len(a.steps) == len(b.steps) and all(
        abs(x - y) <= tol * max(1.0, abs(x)) for p, q in zip(a.steps, b.steps)
        for x, y in zip(p, q)
    )


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_same_accepted_steps_and_numbers(method, reverse):
    t = torch.tensor([0.0, 0.3, 1.0, 2.5], dtype=F64)
    t = t.flip(0) if reverse else t
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    a, b = Net(), Net()
    ref = real.odeint(a, y0, t, method=method, rtol=1e-5, atol=1e-7)
    ours = tde.odeint(b, y0, t, method=method, rtol=1e-5, atol=1e-7)
    assert same_steps(a, b, tol=0.0)  # bit for bit, in both directions of time
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [{"first_step": 0.05}, {"max_step": 0.2}, {"safety": 0.8, "ifactor": 5.0, "dfactor": 0.5},
     {"step_t": torch.tensor([0.77], dtype=F64)}, {"jump_t": torch.tensor([1.3], dtype=F64)},
     {"norm": lambda x: x.abs().max()}],
)
def test_options_give_the_same_steps(options):
    t = torch.tensor([0.0, 2.0], dtype=F64)
    y0 = torch.ones(2, 3, dtype=F64)
    a, b = Net(), Net()
    ref = real.odeint(a, y0, t, rtol=1e-5, atol=1e-7, options=dict(options))
    ours = tde.odeint(b, y0, t, rtol=1e-5, atol=1e-7, options=dict(options))
    assert same_steps(a, b)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_tuple_state_with_tuple_tolerances():
    def f(t, y):
        return (-y[1] * torch.cos(t), y[0])

    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    t = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    ref = real.odeint(f, y0, t, rtol=(1e-6, 1e-3), atol=1e-8)
    ours = tde.odeint(f, y0, t, rtol=(1e-6, 1e-3), atol=1e-8)
    for r, o in zip(ref, ours):
        torch.testing.assert_close(o, r, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seminorm", [False, True])
def test_adjoint_agrees_with_torchdiffeq(seminorm):
    t = torch.tensor([0.0, 0.5, 1.5], dtype=F64, requires_grad=True)
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=F64,
                     requires_grad=True)
    kw = dict(rtol=1e-6, atol=1e-8, adjoint_rtol=1e-7, adjoint_atol=1e-9)
    if seminorm:
        kw["adjoint_options"] = {"norm": "seminorm"}
    out = []
    for mod in (real, tde):
        f = Net()
        ys = mod.odeint_adjoint(f, y0, t, **kw)
        out.append(torch.autograd.grad((ys * ys).sum(), (y0, f.w, t)))
    for r, o in zip(*out):
        torch.testing.assert_close(o, r, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_solver_error_on_the_drift_problem(method):
    """torchdiffeq's 'constant' problem: y' = a + (y - (a t + b))^5, solution a t + b."""
    a, b = 0.2, 3.0
    t = torch.linspace(1, 8, 10, dtype=F64)
    sol = a * t + b
    for tt, ss in ((t, sol), (t.flip(0), sol.flip(0))):
        y = tde.odeint(lambda t, y: a + (y - (a * t + b)) ** 5, ss[0], tt, method=method)
        assert float(((y - ss) / ss).abs().max()) < 3e-4
    assert torch.equal(tde.odeint(lambda t, y: -y, sol[0], t[:1], method=method)[0], sol[0])


def test_backprop_and_adjoint_gradients_agree():
    f = Net()
    y0 = torch.ones(1, 3, dtype=F64, requires_grad=True)
    t = torch.linspace(0, 2, 5, dtype=F64)
    g = []
    for fn in (tde.odeint, tde.odeint_adjoint):
        ys = fn(f, y0, t, rtol=1e-9, atol=1e-12)
        g.append(torch.autograd.grad(ys.sum(), (y0, f.w)))
    for x, y in zip(*g):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-8)
