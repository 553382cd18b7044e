r"""
Memory cost of the gradient strategies
======================================

Every gradient strategy of :func:`odenet.odeint` except the continuous adjoint computes the same
gradient — the exact gradient of the discrete network — and they differ in what they keep in
memory (:doc:`/guide/gradients`, :doc:`/theory/anode`, :doc:`/theory/revolve`). This example
measures peak memory and time of forward + backward with :func:`odenet.analysis.cost` and prints the
ratios to plain backpropagation, with torchdiffeq's ``odeint`` and ``odeint_adjoint`` beside.
"""

# %%
# One convolutional block
# -----------------------
# The block of the ``odenet-analysis`` command's ``dense`` model: an opening convolution lifts
# 256 of scikit-learn's 8×8 digits to 16 channels, and the ODE block
# :math:`y' = \sigma(K y + b)` (a 3×3 convolution) takes 16 steps of ``rk4_38`` (torchdiffeq's
# "rk4", so that torchdiffeq can be measured on the same numerics). Given as a specification, the
# model is rebuilt in every measuring process: each strategy runs in a fresh Python process, so
# one strategy's allocations cannot hide another's peak (peak resident set size on CPU).
import subprocess
import sys
import time

import matplotlib.pyplot as plt

from odenet import analysis

start = time.perf_counter()
spec = {"model": "dense", "form": "residual", "channels": 16, "batch": 256,
        "method": "rk4_38", "steps": 16, "dtype": "float32"}
strategies = ["anode", "revolve:4", "adjoint", "torchdiffeq", "torchdiffeq-adjoint"]
result = analysis.cost(spec, None, strategies, repeats=2)
print(result)

# %%
# For a single block, ANODE recomputes the block's steps with graph during backward, so its peak
# is that of backprop plus the stored input: its saving is across blocks. The adjoint stores
# nothing but pays with a reverse-time solve (and a different gradient, see
# :doc:`plot_anode_reproduction`); revolve trades recomputation for memory inside the block.
#
# Memory against the number of blocks
# ------------------------------------
# A network of :math:`L` blocks is one :func:`odenet.odeint` call with :math:`L` output intervals
# (ANODE stores the state at each output time and recomputes one interval at a time). Each
# configuration runs in a fresh process; the number is the growth of the peak resident memory
# over a forward solve without gradients.
CHILD = """
import resource, sys, torch, odenet


def rss_kib(field):
    try:  # Linux: current (VmRSS) and peak (VmHWM) resident set size
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))
    except OSError:  # elsewhere: the peak only
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


torch.manual_seed(0)
L, gradient = int(sys.argv[1]), sys.argv[2]
net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.Tanh())
y0 = torch.randn(16, 32, 32, 32, requires_grad=True)
t = torch.linspace(0.0, float(L), L + 1)
f = lambda t, y: net(y)
with torch.no_grad():
    odenet.odeint(f, y0, t, method="rk4", step_size=0.25, params=list(net.parameters()))
try:  # reset the peak to the current resident set size (Linux)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
except OSError:
    pass
base = rss_kib("VmRSS:")
y = odenet.odeint(f, y0, t, method="rk4", step_size=0.25, gradient=gradient,
                  params=list(net.parameters()))
y[-1].square().sum().backward()
print((rss_kib("VmHWM:") - base) / 1024)
"""

blocks = [1, 2, 4, 8]
memory = {"backprop": [], "anode": []}
for gradient in memory:
    for L in blocks:
        out = subprocess.run([sys.executable, "-c", CHILD, str(L), gradient],
                             capture_output=True, text=True, check=True)
        memory[gradient].append(float(out.stdout.split()[-1]))
print(f"{'blocks L':>8s} {'backprop MB':>12s} {'anode MB':>9s} {'ratio':>6s}")
for i, L in enumerate(blocks):
    b, a = memory["backprop"][i], memory["anode"][i]
    print(f"{L:8d} {b:12.1f} {a:9.1f} {a / max(b, 1e-9):6.2f}")

fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
for name, values in memory.items():
    ax.plot(blocks, values, "o-", label=name)
ax.set_xlabel("ODE blocks $L$ (4 steps of rk4 each)")
ax.set_ylabel("peak memory growth [MB]")
ax.set_title("O(L·Nt) for backprop, O(L) + O(Nt) for ANODE")
ax.legend()
print(f"total time {time.perf_counter() - start:.1f} s")

# %%
# Compared with the paper
# -----------------------
# ANODE (Gholami et al., 2019) claims O(L) + O(Nt) memory for L blocks of Nt steps against
# backprop's O(L·Nt), and exact discrete gradients where the adjoint's are not. The table of the
# sweep (one run, resident set size, 4 steps of ``rk4`` per block) shows backprop's peak growing
# linearly in L and ANODE's by a small amount per block; the ratio column is ANODE's share of
# backprop at each L. The cost table of the single block above gives, from the same run, the
# peak memory and time of revolve with 4 checkpoints and of the adjoint relative to backprop —
# the adjoint with the inconsistent gradient shown in :doc:`plot_anode_reproduction`.
