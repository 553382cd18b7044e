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
"""

# %%
# One lean-convolution block
# --------------------------
# :math:`y' = \tanh(K y + b)` with :class:`odenet.nn.LeanConv2d` (1×1 convolution plus a
# 5-point depthwise stencil), 16 channels, 16×16 pixels, batch 2, on :math:`[0, 1]`, in float64
# so that the gradient errors show the methods rather than float32 round-off; one thread.
# The classical strategies step with ``heun`` (order 2, two evaluations per step), the
# reversible strategy with ``reversible_heun`` (order 2, one evaluation per step). Every
# gradient (input and parameters) is compared with backprop through the same scheme: the
# exact gradient of the discrete network each strategy claims to compute.
#
# Peak memory is measured in this process on Linux: the growth of the peak resident set size
# over the resident size before the pass (reset through ``/proc/self/clear_refs``), with glibc
# told to serve every block over 16 KiB with ``mmap`` and to return it at once when freed, so
# that the resident size follows the live tensors.
import ctypes
import time

import matplotlib.pyplot as plt
import torch

import odenet

start = time.perf_counter()
try:  # glibc: serve and free blocks over 16 KiB with mmap (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)
    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallopt(-3, 16 * 1024)
    _libc.mallopt(-1, 16 * 1024)
except OSError:
    _libc = None
torch.set_num_threads(1)


def _rss_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return None


def measure(run):
    """(peak memory growth in MiB or None, seconds, result) of ``run()``."""
    if _libc is not None:
        _libc.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # the peak (VmHWM) restarts from the current resident size
    except OSError:
        pass
    base = _rss_mib("VmRSS:")
    t0 = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - t0
    peak = _rss_mib("VmHWM:")
    return (None if base is None or peak is None else peak - base), seconds, out


torch.manual_seed(0)
rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(16, 16), activation="tanh").double()
x = torch.randn(2, 16, 16, 16, dtype=torch.float64)
t = torch.tensor([0.0, 1.0], dtype=torch.float64)
params = list(rhs.parameters())
w = torch.randn_like(x)


def gradient_of(gradient, method, nt):
    def run():
        y0 = x.clone().requires_grad_()
        y = odenet.odeint(rhs, y0, t, method=method, step_size=1.0 / nt, gradient=gradient)
        return torch.autograd.grad((y[-1] * w).sum(), [y0, *params])

    return run


def rel_error(g, ref):
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g, ref))


cases = [  # (label, gradient, method)
    ("backprop", "backprop", "heun"),
    ("anode", "anode", "heun"),
    ("revolve(4)", odenet.Revolve(checkpoints=4), "heun"),
    ("adjoint", "adjoint", "heun"),
    ("reversible", "reversible", "reversible_heun"),
]
steps = [10, 100, 1000]
for label, gradient, method in cases:  # warm-up
    gradient_of(gradient, method, 10)()
results = {}
for nt in steps:
    refs = {m: measure(gradient_of("backprop", m, nt)) for m in ("heun", "reversible_heun")}
    for label, gradient, method in cases:
        if label == "backprop":  # the reference itself
            peak, seconds, g = refs[method]
        else:
            peak, seconds, g = measure(gradient_of(gradient, method, nt))
        results[label, nt] = (peak, seconds, rel_error(g, refs[method][2]))
    results["backprop (reversible_heun)", nt] = (*refs["reversible_heun"][:2], 0.0)

print(f"{'strategy':<27}{'method':<17}{'Nt':>5}{'peak MiB':>10}{'time s':>8}"
      f"{'grad rel. error':>17}")
for label, gradient, method in [*cases, ("backprop (reversible_heun)", None, "reversible_heun")]:
    for nt in steps:
        peak, seconds, err = results[label, nt]
        shown = "n/a" if peak is None else f"{peak:.1f}"
        print(f"{label:<27}{method:<17}{nt:>5}{shown:>10}{seconds:>8.3f}{err:>17.2e}")

# %%
# The growth with ``Nt`` in the same run: the peak at ``Nt = 1000`` minus the peak at
# ``Nt = 10`` for each strategy, and the time of the reversible strategy over backprop through
# the same scheme (``reversible_heun``).
for label, _, _ in cases:
    p10, p1000 = results[label, 10][0], results[label, 1000][0]
    if p10 is not None and p1000 is not None:
        print(f"{label:<12} peak(Nt=1000) - peak(Nt=10) = {p1000 - p10:8.1f} MiB")
for nt in steps:
    ratio = results["reversible", nt][1] / results["backprop (reversible_heun)", nt][1]
    print(f"Nt = {nt:4d}: reversible time / backprop time (reversible_heun) = {ratio:.2f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
for label, _, _ in cases:
    peaks = [results[label, nt][0] for nt in steps]
    if all(p is not None for p in peaks):
        ax1.loglog(steps, [max(p, 0.01) for p in peaks], "o-", label=label)
    ax2.loglog(steps, [results[label, nt][1] for nt in steps], "o-", label=label)
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
# scale: the printed differences between the peaks at ``Nt = 1000`` and ``Nt = 10`` compare
# them with backprop's growth. The error column separates the flat ones: revolve and the
# reversible strategy return backprop's gradient of their scheme to round-off, the adjoint's
# differs from it by its discretisation error, which shrinks as ``Nt`` grows
# (:doc:`/theory/dto_otd`). The price of the reversible strategy is time — one inverse step and
# one step with graph per step of the backward pass, the printed time ratios against backprop
# through ``reversible_heun`` — and the conditions under which its reconstruction holds
# (:doc:`/theory/reversible`; :func:`odenet.analysis.reconstruction` checks them for a given
# network).
