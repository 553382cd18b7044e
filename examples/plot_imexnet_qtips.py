r"""
IMEXnet on the Q-tips data: field of view and stability
=======================================================

Haber, Lensink, Treister & Ruthotto (2019) split each layer of a network into an explicit
nonlinear step and an implicit linear step :math:`(I + hL)^{-1}`, solved by FFT
(:doc:`/guide/imex`, :doc:`/theory/imex`). Their synthetic "Q-tips" segmentation task needs a wide
field of view: a rod's class is set by markers at *both* of its ends, and every rod pixel carries
the class. This example generates the data as described in the paper, then compares networks
with the **same architecture and the same parameters** — :math:`y' = f(y) - Ly` with a learned
parabolic :math:`f` and a learned depthwise :math:`L = K_L^\top K_L` — integrated by forward Euler
(explicit, a ResNet) or by IMEX Euler (:class:`odenet.nn.IMEXBlock`), changing one thing at a
time: the scheme, the step :math:`h`, the strength :math:`s` of :math:`L`. It measures their
receptive fields, their accuracy over several seeds, and their stability at large steps, and how
far one implicit step reaches as the step grows — the reason IMEXnet can take large steps.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: ``quick`` (seconds;
used by the test suite), unset or ``default`` (the documentation's run: 16×16 images, 2 layers),
``full`` (32×32 images, 4 layers, more data, epochs and seeds; tens of minutes).
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
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import odenet
from odenet.linear import ConvFFT
from odenet.nn import IMEXBlock

start = time.perf_counter()
# The networks here are small: their tensors are too small for several threads to pay, and on a
# machine whose cores are busy with other work, waiting threads cost more time than they save.
torch.set_num_threads(1)
torch.manual_seed(0)
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")


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
# How far one implicit step reaches
# ---------------------------------
# The implicit step :math:`(I + hL)^{-1}` couples every pixel of a channel: under periodic
# boundaries it is the convolution with a kernel whose Fourier transform is
# :math:`1/(1 + h\,\hat L(\xi))` — dense, not compactly supported. How far it reaches depends on
# :math:`h` and on the size of :math:`L`. With IMEXnet's form :math:`L = K_L^\top K_L` and
# :math:`K_L = s\,\Delta_5` (the 5-point Laplacian stencil), :math:`\hat L = s^2 |\hat\Delta|^2
# \approx s^2 |\xi|^4` is fourth order, so the kernel decays on the length
# :math:`(h s^2)^{1/4}` (a second-order :math:`L`, a diffusion, would give
# :math:`\sqrt{h}`). We measure the response of one solve to a unit impulse on a 128×128 grid:
# the width of the region where it exceeds :math:`10^{-3}` of its peak.
LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
N = 128
impulse = torch.zeros(1, 1, N, N, dtype=torch.float64)
impulse[0, 0, N // 2, N // 2] = 1.0
steps_h = np.array([1, 4, 16, 64, 256, 1024])
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
print(f"{'s':>5s} {'h':>5s} {'width at 1e-3 (px)':>19s} {'width at 1e-6 (px)':>19s}")
slopes = {}
for s_k in (0.15, 1.0):
    L1 = ConvFFT((s_k * LAPLACIAN).double().expand(1, 1, 3, 3).clone())
    widths = []
    for h in steps_h:
        g = L1.solve(impulse, float(h))[0, 0].abs()
        g = g / g.max()
        widths.append(int((g > 1e-3).any(0).sum()))
        print(f"{s_k:5.2f} {h:5d} {widths[-1]:19d} {int((g > 1e-6).any(0).sum()):19d}")
        if s_k == 1.0 and h in (1, 16, 256):
            axes[0].semilogy(np.arange(N) - N // 2, g[N // 2].clamp_min(1e-12), label=f"h = {h}")
    slope = slopes[s_k] = np.polyfit(np.log(steps_h[:-1]), np.log(widths[:-1]), 1)[0]
    print(f"s = {s_k}: width ~ h^{slope:.2f} (fit over h = 1 ... 256)")
    axes[1].loglog(steps_h, widths, "o-", label=f"$K_L = {s_k}\\,\\Delta_5$ (slope {slope:.2f})")
axes[0].set_xlabel("pixel offset from the impulse")
axes[0].set_ylabel("response / peak")
axes[0].set_ylim(1e-12, 2)
axes[0].set_title(r"one solve $(I + hL)^{-1}$, $K_L = \Delta_5$")
axes[0].legend()
axes[1].set_xlabel("step h")
axes[1].set_ylabel("width above 1e-3 of the peak (px)")
axes[1].legend()

# %%
# Five networks with the same parameters
# --------------------------------------
# Each network lifts the image to :math:`C = 8` channels, applies a few layers of
# :math:`y' = f_\ell(y) - L_\ell y` with one step of size :math:`h`, and classifies every pixel
# with a 1×1 convolution. :math:`f_\ell(y) = -K_\ell^\top \mathrm{ReLU}(\mathrm{BN}(K_\ell y))` with
# :math:`K_\ell` a 3×3 convolution; :math:`L_\ell = K_L^\top K_L` with :math:`K_L` initialised as
# :math:`s\,\Delta_5` on every channel, learned. The explicit network takes a forward-Euler step of
# the whole right-hand side; the IMEX networks (``IMEXBlock``, ``imex_euler``) take the explicit
# step of :math:`f` and then solve :math:`(I + hL)^{-1}`. All have the same parameters and differ
# in one thing from a neighbour:
#
# * ``explicit h=1 s=0.15``: the largest eigenvalue of :math:`L` is :math:`(8s)^2 = 1.44`, inside
#   forward Euler's limit :math:`h\rho(L) \le 2`;
# * ``IMEX h=1 s=0.15``: the same ODE and step, stepped semi-implicitly (the scheme changes);
# * ``IMEX h=16 s=0.15``: the step changes — also the explicit step of :math:`f` is 16 times longer;
# * ``IMEX h=1 s=1``: the strength of :math:`L` changes (:math:`h\rho(L) = 64`);
# * ``IMEX h=16 s=1``: both (:math:`h\rho(L) = 1024`); the last three only an implicit step
#   survives.
#
# The documentation's run trains on 16×16 images (rods of length 8–15) with 2 layers; the
# ``full`` run on 32×32 images with 4 layers. An explicit layer widens the field of view by 2
# pixels on each side (:math:`K^\top(\cdot)K` and :math:`K_L^\top K_L` each reach 2 pixels) and
# the opening 3×3 convolution by one, so the explicit network sees a window of
# :math:`4\cdot\text{layers} + 3` pixels, shorter than the longer rods: the middle of a long rod
# cannot see both of its markers.
RUN = {  # image size, channels, layers, training images, epochs, batch, peak learning rate, seeds
    "quick": (16, 8, 2, 192, 4, 32, 1e-2, [0, 1]),
    "default": (16, 8, 2, 512, 6, 32, 1e-2, [0, 1, 2]),
    "full": (32, 8, 4, 1024, 15, 16, 5e-3, [0, 1, 2, 3, 4]),
}[SIZE]
IMAGE, C, LAYERS, N_TRAIN, EPOCHS, BATCH, LR, SEEDS = RUN
WINDOW = 4 * LAYERS + 3
print(f"run '{SIZE}': {IMAGE}x{IMAGE} images, {C} channels, {LAYERS} layers, {N_TRAIN} training "
      f"images, {EPOCHS} epochs, seeds {SEEDS}; explicit window {WINDOW} px")


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
        return odenet.odeint(total, y, t, method="euler", step_size=self.h,
                             params=list(self.parameters()))[-1]


class Net(torch.nn.Module):
    def __init__(self, imex, h, scale):
        super().__init__()
        self.h = h
        self.opening = torch.nn.Conv2d(1, C, 3, padding=1)
        layers = []
        for _ in range(LAYERS):
            L = ConvFFT(torch.nn.Parameter(scale * LAPLACIAN.expand(C, 1, 3, 3).clone()))
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


CONFIGS = {  # name: (imex, h, s)
    "explicit h=1 s=0.15": (False, 1.0, 0.15),
    "IMEX h=1 s=0.15": (True, 1.0, 0.15),
    "IMEX h=16 s=0.15": (True, 16.0, 0.15),
    "IMEX h=1 s=1": (True, 1.0, 1.0),
    "IMEX h=16 s=1": (True, 16.0, 1.0),
}


def build(name, seed):
    torch.manual_seed(seed)
    return Net(*CONFIGS[name])


for name in CONFIGS:
    print(f"{name:>19s}: {sum(p.numel() for p in build(name, 0).parameters())} parameters")


def receptive_field(net, size=32):
    """log10 of |d(centre logits)/d(input)| relative to its maximum, at a blank image."""
    net.eval()
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    net(x)[0, :, size // 2, size // 2].sum().backward()
    net.train()
    return (x.grad[0, 0].abs() / x.grad.abs().max()).clamp_min(1e-10).log10()


def width(g, decades):
    return int((g > -decades).any(0).sum())


FIELD = 2 * IMAGE  # the receptive fields are measured on images twice the training size
field_init = {}
print(f"{'at initialisation':>19s} {'width at 1e-3':>14s} {'width at 1e-6':>14s}  (of {FIELD} px)")
for name in CONFIGS:
    g = receptive_field(build(name, 0), FIELD)
    field_init[name] = (width(g, 3), width(g, 6))
    print(f"{name:>19s} {width(g, 3):14d} {width(g, 6):14d}")

# %%
# Training over several seeds
# ---------------------------
# The paper trains 12 layers of up to 256 channels for 100 epochs on 1,024 images at 64×64. Here
# each network trains on the data generated at the run's image size (rods scaled with it) with
# Adam (one-cycle schedule) and class-weighted cross-entropy; the score is the accuracy on the rod
# pixels of 64 validation images (chance: 1/3). Each seed sets the initial weights and the data
# order; every network sees the same seeds.
x_train, y_train = qtips(N_TRAIN, size=IMAGE, seed=2)
x_val, y_val = qtips(64, size=IMAGE, seed=3)
rod = y_val > 0
class_weight = torch.tensor([0.1, 1.0, 1.0, 1.0])


def train_once(name, seed):
    net = build(name, seed)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=EPOCHS * (N_TRAIN // BATCH)
    )
    for _ in range(EPOCHS):
        net.train()
        order = torch.randperm(N_TRAIN, generator=gen)[: N_TRAIN // BATCH * BATCH]
        for idx in order.split(BATCH):
            loss = torch.nn.functional.cross_entropy(net(x_train[idx]), y_train[idx],
                                                     weight=class_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        pred = net(x_val).argmax(1)
    return net, (pred[rod] == y_val[rod]).float().mean().item()


nets, accuracy = {}, {}
for name in CONFIGS:
    runs = [train_once(name, seed) for seed in SEEDS]
    nets[name] = runs[0][0]  # the first seed's network, for the figures below
    accuracy[name] = np.array([acc for _, acc in runs])
print(f"rod-pixel validation accuracy after {EPOCHS} epochs, seeds {SEEDS}")
print(f"{'network':>19s} {'mean':>6s} {'std':>6s} {'min':>6s} {'max':>6s}   per seed")
for name, acc in accuracy.items():
    print(f"{name:>19s} {acc.mean():6.3f} {acc.std():6.3f} {acc.min():6.3f} {acc.max():6.3f}   "
          + " ".join(f"{a:.3f}" for a in acc))

# %%
# One change at a time: the per-seed difference of the rod-pixel accuracy (mean ± standard
# deviation over the seeds, each seed trains both networks) and the number of seeds in which the
# second network is ahead.
CHANGES = [
    ("scheme", "explicit h=1 s=0.15", "IMEX h=1 s=0.15"),
    ("step h", "IMEX h=1 s=0.15", "IMEX h=16 s=0.15"),
    ("strength s", "IMEX h=1 s=0.15", "IMEX h=1 s=1"),
    ("step h at s=1", "IMEX h=1 s=1", "IMEX h=16 s=1"),
    ("strength s at h=16", "IMEX h=16 s=0.15", "IMEX h=16 s=1"),
]
changes = {}
for what, a, b in CHANGES:
    d = accuracy[b] - accuracy[a]
    ahead = int((d > 0).sum())
    changes[what] = (d.mean(), d.std(), ahead)
    print(f"{what:>18s}: {a} -> {b}: {d.mean():+.3f} ± {d.std():.3f} "
          f"(ahead in {ahead} of {len(SEEDS)} seeds)")

fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
for i, (name, acc) in enumerate(accuracy.items()):
    ax.plot(np.full(len(acc), i), acc, "o", color=f"C{i}", alpha=0.5)
    ax.errorbar(i, acc.mean(), yerr=acc.std(), fmt="s", color=f"C{i}", capsize=5, ms=8)
ax.axhline(1 / 3, color="0.6", ls=":", label="chance on rod pixels")
ax.set_xticks(range(len(accuracy)), [n.replace(" h", "\nh") for n in accuracy], fontsize=8)
ax.set_ylabel("validation accuracy on rod pixels")
ax.set_title(f"{len(SEEDS)} seeds (dots), mean ± std (squares)")
ax.legend(loc="upper left")

# %%
# Receptive fields of the trained networks
# ----------------------------------------
# How strongly each pixel of an input twice the training size influences the prediction at the
# centre pixel (first seed's networks): the magnitude of the gradient of the centre logits with
# respect to the input, on a log scale. The explicit network's layers reach a fixed window
# (outside it the gradient is FFT round-off); the implicit solves spread the influence over the
# whole image, decaying with distance at a rate set by :math:`h` and the learned :math:`L`.
fig, axes = plt.subplots(1, len(nets), figsize=(3 * len(nets), 3.4), layout="constrained")
field_trained = {}
print(f"{'trained':>19s} {'width at 1e-3':>14s} {'width at 1e-6':>14s}  (of {FIELD} px)")
for ax, (name, net) in zip(axes, nets.items()):
    g = receptive_field(net, FIELD)
    field_trained[name] = (width(g, 3), width(g, 6))
    image = ax.imshow(g, vmin=-8, vmax=0, cmap="magma")
    ax.set_title(f"{name}\n{width(g, 3)} px at 1e-3, {width(g, 6)} px at 1e-6", fontsize=9)
    ax.axis("off")
    print(f"{name:>19s} {width(g, 3):14d} {width(g, 6):14d}")
fig.colorbar(image, ax=axes, label="log10 relative influence", shrink=0.8)

# %%
# Stability at large steps
# ------------------------
# The two :math:`h = 1`, :math:`s = 0.15` networks (first seed), trained, run with larger steps
# :math:`h`. The implicit solve multiplies every Fourier mode by :math:`1/(1 + h\hat L) \in (0, 1]`
# for every :math:`h > 0`; forward Euler multiplies the diffusion modes by :math:`1 - h\hat L`,
# which leaves :math:`[-1, 1]` once :math:`h\,\rho(L) > 2`. The explicit part :math:`f` is stepped
# explicitly in both networks, so both outputs grow with :math:`h`; the question is how fast.
print(f"{'h':>5s} {'explicit |logits|':>18s} {'IMEX |logits|':>14s}")
pair = [nets["explicit h=1 s=0.15"], nets["IMEX h=1 s=0.15"]]
growth = {0: [], 1: []}
for h in (1.0, 2.0, 4.0, 8.0, 16.0):
    for k, net in enumerate(pair):
        net.set_step(h)
        with torch.no_grad():
            try:
                growth[k].append(net(x_val[:8]).norm().item())
            except odenet.errors.NonFiniteStateError:
                growth[k].append(float("inf"))
        net.set_step(net.h)
    print(f"{h:5.1f} {growth[0][-1]:18.3g} {growth[1][-1]:14.3g}")
rho = [layer.implicit.symbol(IMAGE, IMAGE).max().item() for layer in pair[0].layers]
print("largest eigenvalue of each learned L (explicit network): "
      + " ".join(f"{r:.2f}" for r in rho)
      + "; forward Euler at h = 1 needs h*rho(L) <= 2: "
      + ("every layer inside" if max(rho) <= 2 else "beyond it in "
         + f"{sum(r > 2 for r in rho)} of {len(rho)} layers"))
print(f"logits from h = 1 to h = 16: explicit x{growth[0][-1] / growth[0][0]:.3g}, "
      f"IMEX x{growth[1][-1] / growth[1][0]:.3g}")
print(f"total time {time.perf_counter() - start:.1f} s")

# %%
# Compared with the paper
# -----------------------
# Haber et al. report that the IMEX network segments the Q-tips data while explicit networks of
# the same depth cannot, because the label needs information from both ends of a rod, and that
# the implicit step is stable for every :math:`h`. What this laptop-scale run shows, in the
# printed tables:
#
# * **Field of view.** One implicit solve reaches every pixel, but how far it reaches *usefully*
#   depends on :math:`h` and :math:`L`: with :math:`L = K_L^\top K_L` the width grows only like
#   :math:`h^{1/4}` (the fitted slopes of the impulse table). The explicit network sees exactly
#   its window; with the weak :math:`L` that forward Euler tolerates at :math:`h = 1`, the IMEX
#   network's field of view above :math:`10^{-3}` is only a few pixels wider (wider mainly in
#   its faint tail); the strong :math:`L` (:math:`s = 1`) widens it, and at :math:`h = 16` it
#   covers the whole image — networks the explicit scheme cannot run (the receptive-field
#   tables).
# * **Accuracy, one change at a time.** The seed table and the change lines give, for each single
#   change, the mean difference in rod-pixel accuracy ± its spread over seeds and in how many
#   seeds the change helped. Changing the scheme alone (explicit → IMEX at the same :math:`h` and
#   :math:`L`) moves the accuracy by a point or two, far less than a stronger :math:`L` at the
#   same step, which helps in every seed: the scheme by itself buys no field of view, the
#   implicit operator does. A longer step with the weak :math:`L` — which also makes the
#   explicit step of :math:`f` 16 times longer — does not help; with the strong :math:`L`, the
#   network with both the longer step and :math:`s = 1` has the best mean accuracy. These are
#   short runs of small networks (the best well above chance, none near a segmentation: pixels
#   near a marker are easy, the middle of a long rod is not), consistent with the paper's claim
#   that a wide field of view helps, not its result; the paper's segmentation needs its
#   12-layer, 256-channel network and 100 epochs.
# * **Stability.** The last lines say whether training moved the explicit network's :math:`L`
#   past forward Euler's limit and how much the two :math:`h = 1` networks' logits grow from
#   :math:`h = 1` to :math:`h = 16`: the explicit network's grow several times faster. Neither
#   stays bounded: the explicit part :math:`f` is still stepped explicitly.
