r"""
Stability tour: a trained block against the regions of euler, rk4 and ars222
============================================================================

A step of a Runge–Kutta method multiplies each eigen-direction of the linearised block by
:math:`R(h\lambda)`; the step is stable when every :math:`h\lambda` lies in the stability region
:math:`|R| \le 1` (see :doc:`/theory/stability`). This example trains a small convolutional ODE
block on scikit-learn's digits, computes the spectrum of its Jacobian at a data point with
:func:`odenet.analysis.stability`, and draws it against the regions of ``euler``, ``rk4`` and
the IMEX pair ``ars222``. It then adds a stiff linear smoothing term :math:`-Ly` and shows that
an explicit method must shrink its step by orders of magnitude, while ``ars222`` — treating
:math:`L` implicitly with FFT solves — keeps the step of the network.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: unset, ``default`` or
``quick`` (the documentation's run, which already takes seconds; the test suite runs it as
``quick``), ``full`` (more epochs).
"""

# %%
# A small ODE-network on the digits
# ---------------------------------
# The block's right-hand side is the parabolic form :math:`f(y) = -K^\top \tanh(K y + b)` of
# Ruthotto & Haber, with :math:`K` a 3×3 convolution on 6 channels and :math:`K^\top` its transpose.
# Its Jacobian :math:`-K^\top D K` (with :math:`D = \operatorname{diag}(\tanh') \succeq 0`) is
# symmetric negative semi-definite, so the continuous block is stable and only the step size can
# make the network unstable. We integrate it with 4 steps of ``rk4`` on :math:`[0, 1]` and train
# the whole network for a few epochs.
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

import odenet
from odenet import analysis
from odenet.linear import ConvFFT

torch.manual_seed(0)
start = time.perf_counter()
# The networks here are small: their tensors are too small for several threads to pay, and on a
# machine whose cores are busy with other work, waiting threads cost more time than they save.
torch.set_num_threads(1)
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")
EPOCHS = {"quick": 5, "default": 5, "full": 20}[SIZE]
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
labels = torch.tensor(digits.target)
C, T, STEPS = 6, 1.0, 4


class RHS(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, t, y):
        z = torch.tanh(self.conv(y))
        return -torch.nn.functional.conv_transpose2d(z, self.conv.weight, padding=1)


rhs = RHS(C)
opening = torch.nn.Conv2d(1, C, 3, padding=1)
head = torch.nn.Linear(C * 64, 10)


def network(images):
    y0 = opening(images)
    y = odenet.odeint(rhs, y0, torch.tensor([0.0, T]), method="rk4", step_size=T / STEPS)
    return head(y[-1].flatten(1)), y0


params = [*rhs.parameters(), *opening.parameters(), *head.parameters()]
optimizer = torch.optim.Adam(params, lr=5e-3)
train, test = slice(0, 1500), slice(1500, None)
for epoch in range(EPOCHS):
    perm = torch.randperm(1500)
    for i in range(0, 1500, 50):
        idx = perm[i : i + 50]
        loss = torch.nn.functional.cross_entropy(network(x[train][idx])[0], labels[train][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
with torch.no_grad():
    accuracy = (network(x[test])[0].argmax(1) == labels[test]).float().mean().item()
print(f"test accuracy after {EPOCHS} epochs: {accuracy:.3f}")

# %%
# The spectrum of the trained block
# ---------------------------------
# :func:`odenet.analysis.stability` linearises the right-hand side at a state (here the block
# input of one test digit, 6×8×8 = 384 unknowns, small enough for the dense spectrum) and tests
# every :math:`h\lambda` against the method's exact stability function.
with torch.no_grad():
    state = network(x[test][:1])[1][0].double()


def f(t, y):
    """The block's right-hand side on one unbatched float64 state (for the Jacobian)."""
    return rhs(t, y.float().unsqueeze(0)).squeeze(0).double()


h = T / STEPS
results = {
    m: analysis.stability(f, state, m, h, T=None, dense=True, which=("LM",))
    for m in ("euler", "rk4")
}
for name, res in results.items():
    print(f"{name:6s} h = {h}: all h*lambda inside: {res.stable}; "
          f"largest stable step {res.max_step:.3f}")
eig = results["rk4"].hlambda_all() / h
print(f"spectral radius {np.abs(eig).max():.3f}, max Re(lambda) {eig.real.max():.3f}")

# %%
# Against the regions
# -------------------
# The three regions with :math:`h\lambda` of the trained block at the network's step
# :math:`h = 1/4` (dots) and at a step :math:`h_2` 20 % beyond Euler's limit (crosses): outside
# Euler's region, still inside the larger region of ``rk4``. ``ars222`` without an implicit part
# is an explicit second-order method; its region is the one of its explicit tableau.
h2 = 1.2 * results["euler"].max_step
for method in ("euler", "rk4"):
    inside = bool(analysis.stability_region(method).contains(h2 * eig).all())
    print(f"h2 = {h2:.3f}: every h2*lambda inside the region of {method}: {inside}")
fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), layout="constrained")
for ax, method in zip(axes, ("euler", "rk4", "ars222")):
    region = analysis.stability_region(method)
    region.plot(ax, spectra=h * eig)
    # under the dots (zorder), so that the hλ of the network's own step stay visible
    ax.plot((h2 * eig).real, (h2 * eig).imag, "x", color="C3", ms=4, alpha=0.7, zorder=1.5,
            label="h₂·λ")
    ax.set_title(f"{method}: real-axis limit {region.real_axis_limit:.2f}")
    ax.legend(fontsize=8, loc="upper left")

# %%
# A stiff linear part: explicit versus IMEX
# -----------------------------------------
# Add a smoothing term :math:`-Ly` with :math:`L = K_L^\top K_L`, :math:`K_L` five times the
# 5-point Laplacian on every channel (depthwise); the eigenvalues of :math:`L` reach
# :math:`(5 \cdot 8)^2 = 1600`. An explicit method needs :math:`h\,\rho(L)` inside its region,
# :math:`h \lesssim 2.8/1600` for ``rk4``; ``ars222`` solves with :math:`I + \gamma h L` by FFT and
# is stable at the network's step.
lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
L = ConvFFT(5.0 * lap.expand(C, 1, 3, 3).clone())


def stiff(t, y):
    return f(t, y) - L(y.unsqueeze(0)).squeeze(0)


explicit = analysis.stability(stiff, state, "rk4", h, T=None, dense=True, which=("LM",))
imex = analysis.stability(f, state, "ars222", h, implicit=L, T=None, dense=True, which=("LM",))
print(f"rk4 on f - Ly at h = {h}: stable {explicit.stable}, largest stable step "
      f"{explicit.max_step:.2e}")
print(f"ars222 (L implicit) at h = {h}: stable {imex.stable}, largest stable step "
      f"{imex.max_step:.3g}")

y0 = state.unsqueeze(0)
tt = torch.tensor([0.0, 2.0], dtype=torch.float64)


def fb(t, y):
    return f(t, y.squeeze(0)).unsqueeze(0)


with torch.no_grad():
    y_imex = odenet.odeint(fb, y0, tt, method="ars222", step_size=h, implicit=L)
    try:
        y_rk4 = odenet.odeint(lambda t, y: fb(t, y) - L(y), y0, tt, method="rk4", step_size=h)
        rk4_norm = y_rk4[-1].norm().item()
    except odenet.errors.NonFiniteStateError as err:
        rk4_norm = float("inf")
        print("rk4:", str(err).split(";")[0])
print(f"|y(2)|: ars222 {y_imex[-1].norm().item():.3f}, rk4 {rk4_norm:.3g} "
      f"(|y(0)| = {y0.norm().item():.3f})")

fig_imex = imex.plot()
print(f"total time {time.perf_counter() - start:.1f} s")
