r"""
Gradients of adaptive solves: steps held fixed, the continuous adjoint, and the full solve
==========================================================================================

An adaptive solver (``dopri5`` here) chooses its own steps: a step is accepted when the
embedded error estimate is below ``atol + rtol·|y|``, and the next step size follows from
that estimate. What is "the gradient" of such a solve? Three answers are in use:

* **discretize-then-optimize (DTO)**: differentiate the accepted steps that were computed,
  holding the controller's step sizes fixed. ``gradient="backprop"`` does it by autograd;
  ``"anode"`` and ``"revolve"`` recompute the same steps with less memory and must give the
  same numbers to round-off;
* **optimize-then-discretize (OTD)**: ``gradient="adjoint"`` (torchdiffeq's
  ``odeint_adjoint``) solves the continuous adjoint equation backward in time with its own
  adaptive grid; it is the gradient of the exact ODE solution up to the tolerance, not the
  gradient of the computed network;
* **the full solve**: a finite difference of the loss re-runs the controller at the perturbed
  input, so its step sizes move with the input. The DTO gradient leaves that dependence out.

:func:`odenet.analysis.adaptive_consistency` measures all three against each other for a range
of tolerances, with the step counts of both directions and the time and memory per strategy.
Every number in the text below is computed by this script.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: unset,
``default`` (five tolerances) or ``quick`` (three; the test suite's), ``full`` (seven).
"""

# %%
# A small convolutional right-hand side
# -------------------------------------
# The state is a batch of 8×8 digits of scikit-learn (32; 8 in quick mode), lifted to 4
# channels by a fixed random convolution. The right-hand side is the parabolic form
# :math:`f(y) = -K^\top \tanh(K y + b)` with a 3×3 convolution :math:`K` (its weights drawn
# at random and scaled so that the solve needs a few dozen steps at tight tolerances). The
# analysis runs in float64 (the module is copied and cast; the model is left as it is).
import os
import time

import torch
from sklearn.datasets import load_digits

from odenet import analysis

torch.manual_seed(0)
start = time.perf_counter()
torch.set_num_threads(1)  # tiny tensors: more threads cost more than they save
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")
RTOLS = {"quick": (1e-3, 1e-5, 1e-7),
         "default": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7),
         "full": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)}[SIZE]
C, T = 4, 1.0
BATCH = {"quick": 8, "default": 32, "full": 64}[SIZE]


class RHS(torch.nn.Module):
    def __init__(self, c, scale=3.0):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.mul_(scale)

    def forward(self, t, y):
        z = torch.tanh(self.conv(y))
        return -torch.nn.functional.conv_transpose2d(z, self.conv.weight, padding=1)


rhs = RHS(C)
images = torch.tensor(load_digits().images[:BATCH], dtype=torch.float32).unsqueeze(1) / 16.0
with torch.no_grad():
    y0 = torch.nn.Conv2d(1, C, 3, padding=1)(images)
print(f"state {tuple(y0.shape)}, {sum(p.numel() for p in rhs.parameters())} parameters")

# %%
# Every strategy at every tolerance
# ---------------------------------
# ``atol = 0.01·rtol`` (torchdiffeq's default ratio), the adjoint's reverse solve with the same
# tolerances. The loss is :math:`\tfrac12\|y(T)\|^2`; errors are relative, of
# :math:`\partial L/\partial\theta` (``grad_error``, ``fd_error``) and
# :math:`\partial L/\partial y_0` (``y0_error``).
res = analysis.adaptive_consistency(rhs, y0, T, "dopri5", RTOLS,
                                    ["anode", "revolve", "revolve:3", "adjoint"], repeats=1)
print(res.table())

# %%
# DTO strategies are backprop; the adjoint is something else
# ----------------------------------------------------------
rows = [r for r in res.rows if r.get("error") is None]
dto = max(max(r["grad_error"], r["y0_error"]) for r in rows
          if r["strategy"] in ("anode", "revolve", "revolve:3"))
print(f"ANODE and Revolve vs backprop of the same solve: largest relative error {dto:.1e} "
      f"over {len(RTOLS)} tolerances")
for rtol in RTOLS:
    adj = res.row(rtol, "adjoint")
    print(f"rtol {rtol:.0e}: adjoint vs backprop {adj['grad_error']:.2e} (θ), "
          f"{adj['y0_error']:.2e} (y0); error / rtol = {adj['grad_error'] / rtol:.2g}")

# %%
# The full solve: the step sizes' own dependence
# ----------------------------------------------
# Central differences of the loss of the full adaptive solve, along two random unit directions
# :math:`v`, with step :math:`\varepsilon = \varepsilon_{mach}^{1/3}`. Their own truncation and
# round-off error is about :math:`10^{-10}`; what is left is the difference between the
# steps-held-fixed gradient and the derivative of the full solve (controller included), which is
# of the order of the tolerance.
print(f"finite-difference step {res.fd_eps:.1e}")
for rtol in RTOLS:
    bp, adj = res.row(rtol, "backprop"), res.row(rtol, "adjoint")
    print(f"rtol {rtol:.0e}: backprop vs FD of the full solve {bp['fd_error']:.2e} "
          f"(/ rtol = {bp['fd_error'] / rtol:.2g}); adjoint vs FD {adj['fd_error']:.2e}")

# %%
# To check that this gap is not the finite difference's own error, the loosest and the
# tightest tolerance again with three FD steps: a gap that does not move with
# :math:`\varepsilon` belongs to the solve.
for rtol in (RTOLS[0], RTOLS[-1]):
    gaps = []
    for eps in (1e-4, 1e-5, 1e-6):
        r = analysis.adaptive_consistency(rhs, y0, T, "dopri5", [rtol], ["anode"],
                                          fd_eps=eps, measure=False)
        gaps.append(r.error(rtol, "backprop", "fd"))
    spread = max(gaps) / min(gaps)
    verdict = ("steady: the solve's own gap" if spread < 1.5 else
               "moves with eps: at this level the finite difference's own error shows")
    print(f"rtol {rtol:.0e}: backprop vs FD at eps = 1e-4, 1e-5, 1e-6: "
          + ", ".join(f"{g:.2e}" for g in gaps) + f" ({verdict})")

# %%
# Steps, time and memory
# ----------------------
# The forward solve is the same for every strategy. The adjoint's reverse solve controls the
# error of the augmented state (state, adjoint, parameter adjoints) and takes more steps than the
# forward one; ANODE replays the accepted steps once, one output interval at a time (with a
# single interval, as here, it holds the graph of all its steps, as backprop does: its saving is
# across the blocks of a network); Revolve with 3 checkpoints stores at most 3 states and one
# step's graph, and recomputes more steps instead.
for rtol in RTOLS:
    bp, adj, rev = (res.row(rtol, s) for s in ("backprop", "adjoint", "revolve:3"))
    print(f"rtol {rtol:.0e}: forward {bp['steps']} accepted, {bp['rejected']} rejected, "
          f"{bp['nfe']} evaluations; adjoint backward {adj['bwd_steps']} accepted, "
          f"{adj['bwd_rejected']} rejected; revolve:3 recomputes {rev['recomputed']} steps")
tight = RTOLS[-1]
print(f"time of one gradient at rtol {tight:.0e}: " + ", ".join(
    f"{s} {res.row(tight, s)['time_s'] * 1e3:.1f} ms" for s in res.strategies_run()))
print(f"peak memory above the baseline at rtol {tight:.0e} ({res.memory_probe}): " + ", ".join(
    f"{s} {res.row(tight, s)['peak_mb']:.2f} MiB" for s in res.strategies_run()))
mem = {s: res.row(tight, s)["peak_mb"] for s in res.strategies_run()}
if mem["backprop"] > 0:
    print("memory relative to backprop: " + ", ".join(
        f"{s} {mem[s] / mem['backprop']:.2f}" for s in mem if s != "backprop"))

# %%
# The picture: errors (top left; solid against backprop, dashed against FD of the full solve,
# dotted the line error = rtol), step counts (top right), time and memory per strategy.
fig = res.plot()

# %%
# In short: for an adaptive solve, ``"anode"`` and ``"revolve"`` give backprop's gradient of the
# computed steps exactly (Revolve at a memory cost that does not grow with the number of steps);
# the continuous adjoint converges to the same gradient only as the tolerance tightens, and
# costs a reverse solve with more steps than the forward one. Neither is the derivative of the
# full adaptive solve, whose step sizes depend on the input; that difference is of the order of
# the tolerance — usually harmless, but it is why a finite-difference check of an adaptive
# network agrees only to about ``rtol``. When that derivative is wanted,
# ``options={"differentiate_steps": True}`` with ``gradient="backprop"`` lets autograd follow the
# controller's step sizes as well (:doc:`/guide/adaptive`).
print(f"total time {time.perf_counter() - start:.1f} s")
