r"""
A deformable convolution as the right-hand side of an ODE block
===============================================================

A deformable convolution (Dai et al., 2017; v2: Zhu et al., 2019) shifts each of its 3×3 taps by
an offset predicted from the input and samples the input bilinearly there (:doc:`/guide/operators`).
As the operator :math:`K` of an ODE block :math:`y' = \sigma(K(y)\,y + b)` it lets the block move
information along the image's own structures. This example trains an :class:`odenet.nn.ODEBlock`
with a :class:`odenet.nn.DeformConv2d` right-hand side on scikit-learn's digits, checks its
gradient against finite differences, draws the learned sampling positions, and measures the
cost of a deformable layer against a dense convolution at the size DefT measures.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: ``quick`` (seconds;
used by the test suite: one epoch, a smaller timing), unset or ``default`` (the documentation's
run), ``full`` (more timing rounds).
"""

# %%
# The block and a short training run
# ----------------------------------
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from odenet.nn import DeformConv2d, ODEBlock, ResidualRHS

start = time.perf_counter()
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")
# One thread: the training tensors are too small for several to pay, the timing below states its
# conditions, and on a machine whose cores are busy with other work waiting threads cost more
# time than they save.
torch.set_num_threads(1)
torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
labels = torch.tensor(digits.target)
C = 4
deform = DeformConv2d(C, C, kernel_size=3, padding=1, modulated=True)
block = ODEBlock(ResidualRHS(deform), T=1.0, steps=2, method="midpoint", gradient="anode")
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, C, 3, padding=1), block, torch.nn.Flatten(), torch.nn.Linear(C * 64, 10)
)
print(f"parameters: {sum(p.numel() for p in net.parameters())} "
      f"(offset and mask predictor: {sum(p.numel() for p in deform.offset_conv.parameters())})")
optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
train, test = slice(0, 800), slice(1400, None)
for epoch in range(1 if SIZE == "quick" else 2):
    for idx in torch.randperm(800).split(50):
        loss = torch.nn.functional.cross_entropy(net(x[train][idx]), labels[train][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        acc = (net(x[test]).argmax(1) == labels[test]).float().mean().item()
    print(f"epoch {epoch + 1}: test accuracy {acc:.3f}")

# %%
# The gradient through the bilinear sampling
# ------------------------------------------
# ANODE's gradient of the block (offsets, mask and weights all depend on the state) against a
# central finite difference in float64, along a random direction of the weights.
blk = ODEBlock(ResidualRHS(DeformConv2d(2, 2)), T=1.0, steps=2, method="midpoint",
               gradient="anode").double()
y0 = torch.randn(1, 2, 6, 6, dtype=torch.float64)
w = blk.rhs.op.weight
direction = torch.randn_like(w)
(g,) = torch.autograd.grad(blk(y0).square().sum(), w)
with torch.no_grad():
    eps = 1e-6
    w += eps * direction
    up = blk(y0).square().sum().item()
    w -= 2 * eps * direction
    down = blk(y0).square().sum().item()
    w += eps * direction
fd = (up - down) / (2 * eps)
ad = (g * direction).sum().item()
print(f"directional derivative: ANODE {ad:.10f}, finite difference {fd:.10f}, "
      f"relative difference {abs(ad - fd) / abs(fd):.1e}")

# %%
# The learned sampling positions
# ------------------------------
# For one test digit, the 9 taps of the deformable kernel at a few output pixels: the regular 3×3
# grid (grey) and where the trained block samples instead (red), from its offsets at the block
# input.
with torch.no_grad():
    y_in = net[0](x[test][:1])
    offset, mask = deform.sampling(y_in)
off = offset[0].view(9, 2, 8, 8)
fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
ax.imshow(x[test][0, 0], cmap="gray_r")
for i, j in [(2, 2), (2, 5), (5, 2), (5, 5), (4, 4)]:
    for tap in range(9):
        di, dj = tap // 3 - 1, tap % 3 - 1
        ax.plot(j + dj, i + di, "s", color="0.6", ms=3)
        ax.plot(j + dj + off[tap, 1, i, j], i + di + off[tap, 0, i, j], "o", color="C3", ms=3)
    ax.plot(j, i, "+", color="C0", ms=12)
ax.set_title("regular taps (grey) and learned sampling points (red)")
ax.set_xlim(-1.5, 8.5)
ax.set_ylim(8.5, -1.5)
ax.set_xlabel("column x (pixels of the 8×8 digit)")
ax.set_ylabel("row y (pixels)")
print(f"mean |offset| {offset.abs().mean().item():.3f} px, mask mean {mask.mean().item():.3f}")

# %%
# Cost against a dense convolution
# --------------------------------
# DefT (Hanson et al., 2023) measures a realistic deformable layer — 64 input and output channels
# on a 64×64 image — at about 4× the time of a dense 3×3 convolution on a GPU, because of the
# input-dependent bilinear gather. The same layer here: :class:`odenet.nn.DeformConv2d` (offset
# and mask prediction, bilinear sampling and the weighted sum; modulated, as DCN v2) against
# ``torch.nn.functional.conv2d`` with the same 3×3 weight, one image, float32, on one thread of
# this machine's CPU; forward, and forward + backward. Each round times every operator
# once (interleaved, after a warm-up); the ratio is the median over the rounds of the per-round
# ratio, with its range, and the ratio of the fastest times (the least disturbed by other work
# on the machine).
CH, HW, ROUNDS = {"quick": (16, 32, 3), "default": (64, 64, 20), "full": (64, 64, 60)}[SIZE]
layer = DeformConv2d(CH, CH, kernel_size=3, padding=1, modulated=True)
dense_weight = layer.weight.detach().clone().requires_grad_(True)
image = torch.randn(1, CH, HW, HW, requires_grad=True)


def deform_fwd():
    with torch.no_grad():
        layer(image)


def dense_fwd():
    with torch.no_grad():
        torch.nn.functional.conv2d(image, dense_weight, padding=1)


def deform_both():
    layer(image).square().sum().backward()


def dense_both():
    torch.nn.functional.conv2d(image, dense_weight, padding=1).square().sum().backward()


def clock(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


timings = {}
for what, deform_fn, dense_fn in [("forward", deform_fwd, dense_fwd),
                                  ("forward + backward", deform_both, dense_both)]:
    deform_fn(), dense_fn()  # warm-up
    ratios, times = [], []
    for _ in range(ROUNDS):
        td, tc = clock(deform_fn), clock(dense_fn)
        ratios.append(td / tc)
        times.append((td, tc))
    ratios = np.array(ratios)
    timings[what] = ratios
    med, best = np.median(np.array(times), axis=0), np.min(np.array(times), axis=0)
    print(f"{what:>18s}, {CH} channels, {HW}x{HW}, batch 1, float32, CPU "
          f"({torch.get_num_threads()} thread): deformable {1e3 * med[0]:.1f} ms, dense "
          f"{1e3 * med[1]:.1f} ms; ratio {np.median(ratios):.1f}x "
          f"[{ratios.min():.1f}, {ratios.max():.1f}] over {ROUNDS} rounds, "
          f"of the fastest times {best[0] / best[1]:.1f}x")
print(f"DefT (GPU): about 4x; odenet on this CPU, forward: {np.median(timings['forward']):.1f}x")
print(f"total time {time.perf_counter() - start:.1f} s")

# %%
# The printed ratio is odenet's counterpart to DefT's figure under the stated conditions (CPU,
# not GPU: a gather and a dense convolution scale differently on the two, so the ratios need not
# agree). Inside an ODE block the cost is paid at every stage of every step; ANODE keeps the
# memory of the block at one step's graph.
