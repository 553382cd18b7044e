r"""
Watching the ODE blocks while a network trains: adjoint against ANODE
=====================================================================

Gholami, Keutzer & Biros (ANODE, 2019) showed that the optimize-then-discretize adjoint of a
neural ODE does not give the gradient of the network being trained, and that the error depends
on the step size and on the weights, so it can appear *during* training rather than on the
network one starts from. :class:`odenet.analysis.Monitor` measures exactly this, every ``k``
optimiser steps, on a small probe batch: for each ODE block, the spectral radius of
:math:`h J` (a few Arnoldi steps) against the stability region of the block's method, the
relative error of the block's gradient strategy against backprop (the exact gradient of the
discrete network), and the error of reconstructing the block's input by a reverse-time solve
(what the adjoint relies on).

Two copies of one ODE-ResNet, from the same initial weights, train on scikit-learn's bundled
8×8 digits with the same batches: one with ``gradient="adjoint"``, one with
``gradient="anode"``. Every number below is printed by the run.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: ``quick`` (seconds),
unset or ``default`` (the documentation's run).
"""

# %%
# The network, the data and the monitors
# --------------------------------------
# Two stages of widths 8 and 16 with one ODE block each: the residual right-hand side
# :math:`f(y) = \mathrm{ReLU}(K y + b)` with a lean operator :math:`K`, two steps of forward
# Euler on :math:`[0, 1]` (a coarse step, where the two gradients differ most). The monitors
# record every 10 optimiser steps on 16 held-out images.
import copy
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

import odenet
from odenet.analysis import Monitor, MonitorWarning

start = time.perf_counter()
torch.set_num_threads(1)  # small tensors: one thread is the fastest on a busy machine
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick' or 'default', got {SIZE!r}")
STEPS = {"quick": 40, "default": 400}[SIZE]
EVERY = 10

digits = load_digits()
x_all = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
y_all = torch.tensor(digits.target)
perm = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
train_idx, test_idx = perm[:1400], perm[1400:]
probe_x, probe_y = x_all[test_idx[:16]], y_all[test_idx[:16]]

torch.manual_seed(0)
base = odenet.models.ODEResNet(1, 10, widths=(8, 16), blocks=1, op="lean", form="residual",
                               method="euler", steps=2, activation="relu", norm=None,
                               gradient="anode")
nets = {"adjoint": copy.deepcopy(base), "anode": copy.deepcopy(base)}
for name, net in nets.items():
    for _, block in odenet.analysis.find_blocks(net):
        block.gradient = odenet.gradients.resolve_gradient(name)
monitors = {name: Monitor(net, probe_x, targets=probe_y, every=EVERY, tensorboard=False)
            for name, net in nets.items()}
print(f"{len(train_idx)} training and {len(test_idx)} test images; {STEPS} Adam steps of "
      f"batches of 64; monitors every {EVERY} steps on {len(probe_y)} test images")

# %%
# Training both, side by side
# ---------------------------
# The same batches in the same order for both copies; the monitors' warnings (a threshold
# crossed, once per block and quantity) are collected and printed.
opts = {k: torch.optim.Adam(n.parameters(), lr=5e-3) for k, n in nets.items()}
losses = {k: [] for k in nets}
gen = torch.Generator().manual_seed(1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", MonitorWarning)
    for step in range(STEPS):
        idx = train_idx[torch.randint(0, len(train_idx), (64,), generator=gen)]
        for name, net in nets.items():
            opts[name].zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x_all[idx]), y_all[idx])
            loss.backward()
            opts[name].step()
            losses[name].append(float(loss))
            monitors[name].step()
for w in caught:
    if issubclass(w.category, MonitorWarning):
        print("warning:", w.message)


def accuracy(net):
    with torch.no_grad():
        return float((net(x_all[test_idx]).argmax(1) == y_all[test_idx]).float().mean())


for name, net in nets.items():
    print(f"{name:8s}: final training loss (mean of the last 20 steps) "
          f"{np.mean(losses[name][-20:]):.3f}, test accuracy {100 * accuracy(net):.1f} %, "
          f"monitor time {monitors[name].seconds:.1f} s over {len(monitors[name].history)} "
          "records")

# %%
# The monitored quantities over training
# --------------------------------------
# Left to right: the step against the stability region (``step_ratio``: the step over the
# largest stable step along the estimated damped spectrum; above 1 a damped mode leaves the
# region), the gradient error of the block's strategy against backprop, and the reverse-time
# reconstruction error of the block input. Solid lines: the first block, dashed: the second.
QUANTS = [("step_ratio", "h / largest stable step"),
          ("gradient_error", "relative ∂L/∂θ error vs backprop"),
          ("reconstruction_error", "relative reconstruction error of y0")]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
for ax, (key, label) in zip(axes, QUANTS):
    for ci, (name, mon) in enumerate(monitors.items()):
        for bi, block in enumerate(mon.history[0]["blocks"]):
            steps = [r["step"] for r in mon.history]
            vals = np.array([r["blocks"][block][key] for r in mon.history], dtype=float)
            if key == "gradient_error":
                vals = np.maximum(vals, 1e-17)  # exact agreement drawn on the floor
            ax.plot(steps, vals, ["-", "--"][bi % 2], color=f"C{ci}", marker="o", ms=3,
                    label=f"{name}, {block}")
    ax.set_xlabel("optimiser step")
    ax.set_title(label, fontsize=10)
    if key != "step_ratio":
        ax.set_yscale("log")
    else:
        ax.axhline(1.0, color="0.5", lw=0.8)
axes[0].legend(fontsize=8)
for ax, key in zip(axes[1:], ("gradient_error", "reconstruction_error")):
    ax.axhline(monitors["adjoint"].thresholds[key], color="0.5", lw=0.8, ls=":")  # warnings
plt.show()

# %%
# What the records say
# --------------------
# The first and the last record of each run, per block (the numbers drawn above).
for name, mon in monitors.items():
    for rec in (mon.history[0], mon.history[-1]):
        for block, v in rec["blocks"].items():
            print(f"{name:8s} step {rec['step']:4d} {block}: h·rho {v['h_rho']:.3f}, "
                  f"step ratio {v['step_ratio']:.3f}, max |R(h lambda)| {v['max_abs_R']:.3f}, "
                  f"gradient error {v['gradient_error']:.2e}, reconstruction error "
                  f"{v['reconstruction_error']:.2e}")
adj = [r["blocks"][b]["gradient_error"] for r in monitors["adjoint"].history
       for b in r["blocks"]]
ano = [r["blocks"][b]["gradient_error"] for r in monitors["anode"].history
       for b in r["blocks"]]
print(f"adjoint's gradient error over training: {min(adj):.2e} .. {max(adj):.2e}; "
      f"ANODE's: {min(ano):.2e} .. {max(ano):.2e}")
print(f"example ran in {time.perf_counter() - start:.0f} s")

# %%
# ANODE's gradient is the gradient of the discrete network at every record (its error is
# round-off); the adjoint's is not, by the amounts printed above, and how far it is changes
# as the weights change. The monitor reports it while training, at a cost measured in
# ``tests/benchmarks/bench_monitor.py``.
