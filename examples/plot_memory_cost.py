r"""
Memory cost of the gradient strategies
======================================

Every gradient strategy of :func:`odenet.odeint` except the continuous adjoint computes the same
gradient — the exact gradient of the discrete network — and they differ in what they keep in
memory (:doc:`/guide/gradients`, :doc:`/theory/anode`, :doc:`/theory/revolve`). This example
measures peak memory and time of forward + backward with :func:`odenet.analysis.cost` and prints the
ratios to plain backpropagation, with torchdiffeq's ``odeint`` and ``odeint_adjoint`` beside.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: ``quick`` (seconds;
used by the test suite: fewer strategies, blocks and rounds), unset or ``default`` (the
documentation's run), ``full`` (more rounds and blocks).
"""

# %%
# One convolutional block
# -----------------------
# The block of the ``odenet-analysis`` command's ``dense`` model: an opening convolution lifts
# 128 of scikit-learn's 8×8 digits to 16 channels, and the ODE block
# :math:`y' = \sigma(K y + b)` (a 3×3 convolution) takes 16 steps of ``rk4_38`` (torchdiffeq's
# "rk4", so that torchdiffeq can be measured on the same numerics). The strategies are measured
# one after another in this process, the peak resident set size reset before each (Linux); the
# ``full`` run passes ``isolate=True``, which rebuilds the model — given as a specification — in
# a fresh Python process per strategy, so that no strategy's allocations can hide another's
# peak, at the price of one Python start per strategy.
import os
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import torch

from odenet import analysis

start = time.perf_counter()
# One thread, as in the measuring processes of analysis.cost: the tensors are small, and on a
# machine whose cores are busy with other work, waiting threads cost more time than they save.
torch.set_num_threads(1)
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")
spec = {"model": "dense", "form": "residual", "channels": 16,
        "batch": {"quick": 32, "default": 128, "full": 256}[SIZE],
        "method": "rk4_38", "steps": 16, "dtype": "float32"}
strategies = (["anode", "revolve:4", "adjoint"] if SIZE == "quick"
              else ["anode", "revolve:4", "adjoint", "torchdiffeq", "torchdiffeq-adjoint"])
result = analysis.cost(spec, None, strategies, repeats={"quick": 1, "default": 2, "full": 5}[SIZE],
                       isolate=SIZE == "full")
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
# (ANODE stores the state at each output time and recomputes one interval at a time). The number
# is the growth of the peak resident memory over a forward solve without gradients. All
# configurations run in one fresh process (Linux: the peak is reset before each one, and glibc's
# ``MALLOC_MMAP_THRESHOLD_`` is fixed so that every freed tensor returns to the system and each
# measurement starts from the same state; the result does not depend on their order);
# elsewhere, each configuration runs in a process of its own.
CHILD = """
import resource, sys, torch, odenet


def rss_kib(field):
    try:  # Linux: current (VmRSS) and peak (VmHWM) resident set size
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))
    except OSError:  # elsewhere: the peak only
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.Tanh())
f = lambda t, y: net(y)
batch = int(sys.argv[1])
for job in sys.argv[2:]:
    L, gradient = int(job.split(":")[0]), job.split(":")[1]
    y0 = torch.randn(batch, 32, 32, 32, requires_grad=True)
    t = torch.linspace(0.0, float(L), L + 1)
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
    print(job, (rss_kib("VmHWM:") - base) / 1024)
    del y, y0
    net.zero_grad(set_to_none=True)
"""

blocks = {"quick": [1, 2, 4], "default": [1, 2, 4, 8], "full": [1, 2, 4, 8, 16]}[SIZE]
BATCH = 4 if SIZE == "quick" else 8  # states of BATCH x 32 channels x 32 x 32
memory = {"backprop": [], "anode": []}
jobs = [f"{L}:{gradient}" for gradient in memory for L in blocks]
batches = [jobs] if sys.platform.startswith("linux") else [[job] for job in jobs]
env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
measured = {}
for batch in batches:
    out = subprocess.run([sys.executable, "-c", CHILD, str(BATCH), *batch], capture_output=True,
                         text=True, check=True, env=env)
    measured.update(line.split() for line in out.stdout.splitlines() if ":" in line)
for gradient in memory:
    memory[gradient] = [float(measured[f"{L}:{gradient}"]) for L in blocks]
print(f"{'blocks L':>8s} {'backprop MB':>12s} {'anode MB':>9s} {'ratio':>6s}")
for i, L in enumerate(blocks):
    b, a = memory["backprop"][i], memory["anode"][i]
    print(f"{L:8d} {b:12.1f} {a:9.1f} {a / max(b, 1e-9):6.2f}")
state_mb = BATCH * 32 * 32 * 32 * 4 / 2**20  # one state of the sweep, float32
slope = {k: (v[-1] - v[0]) / (blocks[-1] - blocks[0]) for k, v in memory.items()}
print(f"growth per block from L = {blocks[0]} to {blocks[-1]}: "
      f"backprop {slope['backprop']:.1f} MB ({slope['backprop'] / state_mb:.1f} states), "
      f"anode {slope['anode']:.1f} MB ({slope['anode'] / state_mb:.1f} states); "
      f"one state of the sweep is {state_mb:.1f} MB")

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
# linearly in L and ANODE's by a few states per block against backprop's tens (the growth per
# block, in MB and in states, printed under the table); the ratio column is ANODE's share of
# backprop at each L. The cost table of the single block above gives, from the
# same run, the peak memory and time of revolve with 4 checkpoints and of the adjoint relative to
# backprop — the adjoint with the inconsistent gradient shown in :doc:`plot_anode_reproduction`.
