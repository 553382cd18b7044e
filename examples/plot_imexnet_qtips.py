r"""
IMEXnet on the Q-tips data: field of view and stability
=======================================================

Haber, Lensink, Treister & Ruthotto (2019) split each layer of a network into an explicit
nonlinear step and an implicit linear step :math:`(I + hL)^{-1}`, solved by FFT
(:doc:`/guide/imex`, :doc:`/theory/imex`). Their synthetic "Q-tips" segmentation task needs a wide
field of view: a rod's class is set by markers at *both* of its ends, and every rod pixel carries
the class. This example generates the data as described in the paper, then compares two networks
with the **same ODE and the same parameters** — :math:`y' = f(y) - Ly` with a learned parabolic
:math:`f` and a learned depthwise :math:`L = K_L^\top K_L` — integrated by forward Euler
(explicit, a ResNet) or by IMEX Euler (:class:`odenet.nn.IMEXBlock`): their receptive fields,
their accuracy after a short training run, and their stability at large steps.
"""

# %%
# The Q-tips data
# ---------------
# 64×64 grey images, background 112, a rod of value 128 and width 2 whose length is uniform in
# :math:`[32, 60)` and whose direction is uniform over 180°; 2×2 end markers set the class: both
# ends 255 → class 1, one end 255 and the other 1 → class 2, both ends 1 → class 3. Rod pixels
# carry the class, the background 0. The generator takes the image size as a parameter and scales
# the rods with it.
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import odenet
from odenet.linear import ConvFFT
from odenet.nn import IMEXBlock

start = time.perf_counter()
torch.manual_seed(0)


def qtips(n, size=64, seed=0):
    """``n`` Q-tips images of ``size``×``size`` and their label maps (4 classes)."""
    rng = np.random.default_rng(seed)
    scale = size / 64
    images = np.full((n, size, size), 112.0)
    labels = np.zeros((n, size, size), dtype=np.int64)
    for k in range(n):
        cls = int(rng.integers(1, 4))
        length = rng.uniform(32, 60) * scale
        angle = rng.uniform(0.0, math.pi)
        d = np.array([math.cos(angle), math.sin(angle)])
        normal = np.array([-d[1], d[0]])
        centre = size / 2 + rng.uniform(-4, 4, 2) * scale
        p0, p1 = centre - d * length / 2, centre + d * length / 2
        width = max(1, round(2 * scale))
        for s in np.linspace(0.0, 1.0, int(4 * length)):
            for w in range(width):
                i, j = np.round(p0 + s * (p1 - p0) + (w - (width - 1) / 2) * normal).astype(int)
                if 0 <= i < size and 0 <= j < size:
                    images[k, i, j], labels[k, i, j] = 128.0, cls
        ends = {1: (255, 255), 2: (255, 1), 3: (1, 1)}[cls]
        if rng.random() < 0.5:
            ends = ends[::-1]
        for p, value in zip((p0, p1), ends):
            i, j = np.clip(np.round(p).astype(int), 1, size - 1)
            images[k, i - 1 : i + 1, j - 1 : j + 1] = value
            labels[k, i - 1 : i + 1, j - 1 : j + 1] = cls
    x = torch.tensor((images - 112.0) / 64.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(labels)


x64, y64 = qtips(6, size=64, seed=1)
fig, axes = plt.subplots(2, 6, figsize=(12, 4.3), layout="constrained")
for k in range(6):
    axes[0, k].imshow(x64[k, 0], cmap="gray")
    axes[1, k].imshow(y64[k], cmap="viridis", vmin=0, vmax=3, interpolation="nearest")
    axes[0, k].set_title(f"class {int(y64[k].max())}")
for ax in axes.flat:
    ax.axis("off")

# %%
# Two networks, one ODE
# ---------------------
# Each network lifts the image to :math:`C = 8` channels, applies 4 layers of
# :math:`y' = f_\ell(y) - L_\ell y` with one step of size :math:`h = 1`, and classifies every pixel
# with a 1×1 convolution. :math:`f_\ell(y) = -K_\ell^\top \mathrm{ReLU}(\mathrm{BN}(K_\ell y))` with
# :math:`K_\ell` a 3×3 convolution; :math:`L_\ell` starts as a small 5-point Laplacian on every
# channel and is learned. The explicit network takes a forward-Euler step of the whole right-hand
# side; the IMEX network (``IMEXBlock``, ``imex_euler``) takes the explicit step of :math:`f` and
# then solves :math:`(I + hL)^{-1}`. Parameters are identical.
C, LAYERS, H = 8, 4, 1.0
LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])


class Parabolic(torch.nn.Module):
    """f(y) = -K^T relu(BN(K y))."""

    def __init__(self, c):
        super().__init__()
        self.K = torch.nn.Parameter(0.3 * torch.randn(c, c, 3, 3))
        self.norm = torch.nn.BatchNorm2d(c)

    def forward(self, t, y):
        z = torch.relu(self.norm(torch.nn.functional.conv2d(y, self.K, padding=1)))
        return -torch.nn.functional.conv_transpose2d(z, self.K, padding=1)


class ExplicitLayer(torch.nn.Module):
    """One forward-Euler step of y' = f(y) - L y."""

    def __init__(self, rhs, implicit, h):
        super().__init__()
        self.rhs, self.implicit, self.h = rhs, implicit, h

    def forward(self, y):
        def total(t, y):
            return self.rhs(t, y) - self.implicit(y)

        t = torch.tensor([0.0, self.h])
        return odenet.odeint(total, y, t, method="euler", step_size=self.h)[-1]


class Net(torch.nn.Module):
    def __init__(self, imex, h=H):
        super().__init__()
        self.opening = torch.nn.Conv2d(1, C, 3, padding=1)
        layers = []
        for _ in range(LAYERS):
            L = ConvFFT(torch.nn.Parameter(0.15 * LAPLACIAN.expand(C, 1, 3, 3).clone()))
            if imex:
                layers.append(IMEXBlock(Parabolic(C), implicit=L, T=h, steps=1))
            else:
                layers.append(ExplicitLayer(Parabolic(C), L, h))
        self.layers = torch.nn.ModuleList(layers)
        self.head = torch.nn.Conv2d(C, 4, 1)

    def set_step(self, h):
        for layer in self.layers:
            if isinstance(layer, IMEXBlock):
                layer.T = h
            else:
                layer.h = h

    def forward(self, x):
        y = self.opening(x)
        for layer in self.layers:
            y = layer(y)
        return self.head(y)


torch.manual_seed(0)
nets = {"explicit": Net(imex=False), "IMEX": Net(imex=True)}
for name, net in nets.items():
    print(f"{name:8s} network: {sum(p.numel() for p in net.parameters())} parameters")

# %%
# Receptive field
# ---------------
# How strongly each pixel of a 64×64 input influences the prediction at the centre pixel: the
# magnitude of the gradient of the centre logits with respect to the input, on a log scale. The
# four explicit layers of :math:`K^\top(\cdot)K` and :math:`L^\top L` reach a fixed window (outside
# it the gradient is FFT round-off, :math:`\sim 10^{-7}`); the implicit solves spread the
# influence over the whole image, decaying smoothly with distance.
fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
for ax, (name, net) in zip(axes, nets.items()):
    net.eval()
    x = torch.zeros(1, 1, 64, 64, requires_grad=True)
    net(x)[0, :, 32, 32].sum().backward()
    g = (x.grad[0, 0].abs() / x.grad.abs().max()).clamp_min(1e-10).log10()
    image = ax.imshow(g, vmin=-8, vmax=0, cmap="magma")
    reach = {e: int((g > -e).any(0).sum()) for e in (3, 6)}
    ax.set_title(f"{name}: width {reach[3]} px at 1e-3, {reach[6]} px at 1e-6")
    print(f"{name:8s} influence on the centre pixel above 1e-3 of the maximum: {reach[3]} px "
          f"wide; above 1e-6: {reach[6]} px wide")
    net.train()
fig.colorbar(image, ax=axes, label="log10 relative influence", shrink=0.8)

# %%
# A short training run
# --------------------
# The paper trains 12 layers of up to 256 channels for 100 epochs on 1,024 images at 64×64. To stay
# within a two-minute CPU budget we train both small networks for 2 epochs on 128 images at half
# resolution (32×32, rods of length 16–30: still longer than the explicit network's field of view)
# with Adam and class-weighted cross-entropy, and report the accuracy on the rod pixels of 64
# validation images.
x_train, y_train = qtips(128, size=32, seed=2)
x_val, y_val = qtips(64, size=32, seed=3)
rod = y_val > 0
class_weight = torch.tensor([0.1, 1.0, 1.0, 1.0])
EPOCHS = 2
history = {}
for name, net in nets.items():
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    history[name] = []
    for epoch in range(EPOCHS):
        net.train()
        for idx in torch.randperm(128).split(16):
            loss = torch.nn.functional.cross_entropy(net(x_train[idx]), y_train[idx],
                                                     weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            pred = net(x_val).argmax(1)
        history[name].append((pred[rod] == y_val[rod]).float().mean().item())
    print(f"{name:8s} rod-pixel accuracy per epoch: "
          + " ".join(f"{a:.3f}" for a in history[name]))

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for name, acc in history.items():
    ax.plot(range(1, EPOCHS + 1), acc, "o-", label=name)
ax.axhline(1 / 3, color="0.6", ls=":", label="chance on rod pixels")
ax.set_xlabel("epoch")
ax.set_ylabel("validation accuracy on rod pixels")
ax.legend()

# %%
# Stability at large steps
# ------------------------
# The same trained weights, run with larger steps :math:`h`. The implicit solve multiplies every
# Fourier mode by :math:`1/(1 + h|\hat k|^2) \in (0, 1]` for every :math:`h > 0`; forward Euler
# multiplies the diffusion modes by :math:`1 - h|\hat k|^2`, which leaves :math:`[-1, 1]` once
# :math:`h\,\rho(L) > 2`. The explicit part :math:`f` is stepped explicitly in both networks, so
# both outputs grow with :math:`h`; the question is how fast.
print(f"{'h':>5s} {'explicit |logits|':>18s} {'IMEX |logits|':>14s}")
for h in (1.0, 2.0, 4.0, 8.0, 16.0):
    norms = []
    for net in nets.values():
        net.set_step(h)
        with torch.no_grad():
            try:
                norms.append(net(x_val[:8]).norm().item())
            except odenet.errors.NonFiniteStateError:
                norms.append(float("inf"))
        net.set_step(H)
    print(f"{h:5.1f} {norms[0]:18.3g} {norms[1]:14.3g}")
rho = [
    (layer.implicit.symbol(32, 32).max().item()) for layer in nets["explicit"].layers
]
print("largest eigenvalue of each learned L:", " ".join(f"{r:.2f}" for r in rho))
print(f"total time {time.perf_counter() - start:.1f} s")

# %%
# Compared with the paper
# -----------------------
# Haber et al. report that the IMEX network segments the Q-tips data while explicit networks of
# the same depth cannot, because the label needs information from both ends of a rod. Two of the
# paper's three claims show here at laptop scale: the IMEX network's field of view covers the
# whole image after four layers while the explicit network's is a fixed window, and with the same
# weights the IMEX network tolerates much larger steps (the explicit network's learned diffusion
# already exceeds :math:`h\,\rho(L) = 2` in some layers at :math:`h = 1`). The accuracy gap needs
# the paper's training budget (100 epochs of a 12-layer, 256-channel network): after two epochs
# of these 4-layer, 8-channel networks on 128 images both are still near chance on the rod
# pixels.
