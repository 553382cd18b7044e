r"""
Memory against the number of steps: reversible integrators
===========================================================

Backprop stores every step of a solve, ANODE recomputes a block's steps from its input (within
one block its peak is backprop's), revolve keeps a few checkpoints and recomputes from them, and
the continuous adjoint stores nothing but computes the gradient of a different problem. The
reversible methods (:doc:`/guide/reversible`) store nothing either, yet their gradient is the
exact gradient of the discrete network: the backward pass rebuilds each state with the method's
inverse step. This example measures peak memory, time and gradient error of each strategy on
one lean-convolution block against the number of steps ``Nt``.

The environment variable ``ODENET_EXAMPLE_SIZE`` sets the size of the run: ``quick`` (seconds;
used by the test suite: ``Nt`` up to 90, batch 1), unset or ``default`` (the documentation's
run: ``Nt`` up to 1000), ``full`` (``Nt`` up to 3000).
"""

# %%
# One lean-convolution block
# --------------------------
# :math:`y' = \tanh(K y + b)` with :class:`odenet.nn.LeanConv2d` (1×1 convolution plus a
# 5-point depthwise stencil), 16 channels, 16×16 pixels, on :math:`[0, 1]`, in float64 so that
# the gradient errors show the methods rather than float32 round-off; one thread. The classical
# strategies step with ``heun`` (order 2, two evaluations per step), the reversible strategy
# with ``reversible_heun`` (order 2, one evaluation per step). Every gradient (input and
# parameters) is compared with backprop through the same scheme: the exact gradient of the
# discrete network each strategy claims to compute.
#
# All measurements run in one fresh process. On Linux the peak resident set size is reset before
# each pass (``/proc/self/clear_refs``) and glibc's ``MALLOC_MMAP_THRESHOLD_`` is fixed below
# the size of one state, so that every freed tensor returns to the system and each measurement
# starts from the same state; the number is the growth of the peak over the resident size
# before the pass.
import json
import os
import subprocess
import sys
import time

import matplotlib.pyplot as plt

start = time.perf_counter()
SIZE = os.environ.get("ODENET_EXAMPLE_SIZE", "default") or "default"
if SIZE not in ("quick", "default", "full"):
    raise ValueError(f"ODENET_EXAMPLE_SIZE: expected 'quick', 'default' or 'full', got {SIZE!r}")
steps = {"quick": [10, 30, 90], "default": [10, 100, 1000], "full": [10, 100, 1000, 3000]}[SIZE]
BATCH = 1 if SIZE == "quick" else 2

CHILD = r"""
import json, sys, time, torch, odenet


def rss_mib(field):
    try:  # Linux: current (VmRSS) and peak (VmHWM) resident set size
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return None


def measure(run):
    try:  # the peak restarts from the current resident size
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    base = rss_mib("VmRSS:")
    t0 = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - t0
    peak = rss_mib("VmHWM:")
    return (None if base is None or peak is None else peak - base), seconds, out


torch.set_num_threads(1)
steps, batch = json.loads(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(16, 16), activation="tanh").double()
x = torch.randn(batch, 16, 16, 16, dtype=torch.float64)
w = torch.randn_like(x)
t = torch.tensor([0.0, 1.0], dtype=torch.float64)
params = list(rhs.parameters())


def gradient_of(gradient, method, nt):
    def run():
        y0 = x.clone().requires_grad_()
        y = odenet.odeint(rhs, y0, t, method=method, step_size=1.0 / nt, gradient=gradient)
        return torch.autograd.grad((y[-1] * w).sum(), [y0, *params])
    return run


def rel_error(g, ref):
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g, ref))


cases = [("anode", "anode", "heun"), ("revolve(4)", odenet.Revolve(checkpoints=4), "heun"),
         ("adjoint", "adjoint", "heun"), ("reversible", "reversible", "reversible_heun")]
for label, gradient, method in cases:  # warm-up
    gradient_of(gradient, method, 10)()
results = {}
for nt in steps:
    refs = {m: measure(gradient_of("backprop", m, nt)) for m in ("heun", "reversible_heun")}
    results.setdefault("backprop", {})[nt] = (*refs["heun"][:2], 0.0)
    results.setdefault("backprop (reversible_heun)", {})[nt] = (*refs["reversible_heun"][:2], 0.0)
    for label, gradient, method in cases:
        peak, seconds, g = measure(gradient_of(gradient, method, nt))
        results.setdefault(label, {})[nt] = (peak, seconds, rel_error(g, refs[method][2]))
print(json.dumps(results))
"""

env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384"}  # one state is 32 KiB per sample
out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(steps), str(BATCH)],
                     capture_output=True, text=True, check=True, env=env)
results = {label: {int(nt): tuple(v) for nt, v in rows.items()}
           for label, rows in json.loads(out.stdout.splitlines()[-1]).items()}
methods = {"backprop (reversible_heun)": "reversible_heun", "reversible": "reversible_heun"}
order = ["backprop", "anode", "revolve(4)", "adjoint", "reversible", "backprop (reversible_heun)"]

print(f"{'strategy':<27}{'method':<17}{'Nt':>5}{'peak MiB':>10}{'time s':>8}"
      f"{'grad rel. error':>17}")
for label in order:
    for nt in steps:
        peak, seconds, err = results[label][nt]
        shown = "n/a" if peak is None else f"{peak:.1f}"
        print(f"{label:<27}{methods.get(label, 'heun'):<17}{nt:>5}{shown:>10}{seconds:>8.3f}"
              f"{err:>17.2e}")

# %%
# The growth with ``Nt`` in the same run: the peak at the largest ``Nt`` minus the peak at the
# smallest, for each strategy, and the time of the reversible strategy over backprop through
# the same scheme (``reversible_heun``).
lo, hi = steps[0], steps[-1]
growth = {}
for label in order:
    p_lo, p_hi = results[label][lo][0], results[label][hi][0]
    if p_lo is not None and p_hi is not None:
        growth[label] = p_hi - p_lo
        print(f"{label:<27} peak(Nt={hi}) - peak(Nt={lo}) = {growth[label]:8.1f} MiB")
time_ratio = {nt: results["reversible"][nt][1] / results["backprop (reversible_heun)"][nt][1]
              for nt in steps}
for nt, ratio in time_ratio.items():
    print(f"Nt = {nt:4d}: reversible time / backprop time (reversible_heun) = {ratio:.2f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
for label in order[:-1]:
    peaks = [results[label][nt][0] for nt in steps]
    if all(p is not None for p in peaks):
        ax1.loglog(steps, [max(p, 0.01) for p in peaks], "o-", label=label)
    ax2.loglog(steps, [results[label][nt][1] for nt in steps], "o-", label=label)
ax1.set_xlabel("steps Nt")
ax1.set_ylabel("peak memory growth [MiB] (floor 0.01)")
ax1.set_title("memory of forward + backward")
ax2.set_xlabel("steps Nt")
ax2.set_ylabel("time [s]")
ax2.set_title("time of forward + backward")
ax1.legend(fontsize=8)
print(f"total time {time.perf_counter() - start:.1f} s")

# %%
# Reading the tables
# ------------------
# Backprop's peak grows in proportion to ``Nt``, and within a single block so does ANODE's: it
# recomputes the whole block with graph in the backward pass (its saving is across blocks,
# :doc:`plot_memory_cost`). Revolve, the adjoint and the reversible strategy stay flat on that
# scale: the printed differences between the peaks at the largest and the smallest ``Nt``
# compare them with backprop's growth. The error column separates the flat ones: revolve and
# the reversible strategy return backprop's gradient of their scheme to round-off, the
# adjoint's differs from it by its discretisation error, which shrinks as ``Nt`` grows
# (:doc:`/theory/dto_otd`). The price of the reversible strategy is time — one inverse step and
# one step with graph per step of the backward pass, the printed time ratios against backprop
# through ``reversible_heun`` — and the conditions under which its reconstruction holds
# (:doc:`/theory/reversible`; :func:`odenet.analysis.reconstruction` checks them for a given
# network).
