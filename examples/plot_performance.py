r"""
Speed of the cheap convolutions
===============================

The lean (LeanResNet) and pre-defined sparse (pSConv) convolutions do a fraction of the
multiply-adds of a dense 3×3 convolution; whether that fraction shows up in the wall-clock
time depends on how they are computed (:doc:`/guide/performance`). This example times forward +
backward of every engine of :class:`odenet.nn.LeanConv2d` and :class:`odenet.nn.SparseConv2d`
against a dense :class:`torch.nn.Conv2d` on this machine, with one thread and with all threads,
and prints each engine's time as a ratio to the dense convolution measured alongside
(contenders interleaved round-robin, medians), next to its ratio of multiply-adds.
"""

# %%
# The measurement
# ---------------
# float32 on the CPU, batch 8, 32×32 images, 64 and 128 channels. ``fused`` is the compiled
# kernel (built at first use; the line below says whether it could be built here).
import os
import statistics
import time

import matplotlib.pyplot as plt
import torch

from odenet.nn import LeanConv2d, SparseConv2d, _fused

start = time.perf_counter()
fused = _fused.available()
print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, fused kernel available: {fused}")

ENGINES = {
    "lean": ["fused", "chunked", "conv"] if fused else ["chunked", "conv"],
    "psc4": ["fused", "taps", "masked"] if fused else ["taps", "masked"],
}


def mac_ratio(kind, engine, c):
    """Multiply-adds of the engine over the dense 3×3 convolution's, per pixel."""
    if kind == "lean":
        return (c * c + 5 * c) / (9 * c * c)
    return {"fused": 37 / 72, "taps": 5.25 / 9, "masked": 1.0}[engine]


def race(contenders, repeats=7):
    for fn in contenders.values():
        fn()
        fn()
    times = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def timed(op, x, grad):
    params = list(op.parameters())

    def run():
        for t in [x, *params]:
            t.grad = None
        op(x).backward(grad)

    return run


rows = []
threads_all = torch.get_num_threads()
for threads in sorted({1, threads_all}):
    torch.set_num_threads(threads)
    for c in (64, 128):
        g = torch.Generator().manual_seed(c)
        x = torch.randn(8, c, 32, 32, generator=g).requires_grad_()
        grad = torch.randn(8, c, 32, 32, generator=g)
        dense = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        contenders = {("dense", ""): timed(dense, x, grad)}
        for kind, engines in ENGINES.items():
            for e in engines:
                op = LeanConv2d(c, c, engine=e) if kind == "lean" else SparseConv2d(c, c, engine=e)
                contenders[(kind, e)] = timed(op, x, grad)
        res = race(contenders)
        d = res[("dense", "")]
        for (kind, e), t in res.items():
            if kind != "dense":
                rows.append((threads, c, kind, e, t / d, mac_ratio(kind, e, c), d))
torch.set_num_threads(threads_all)

print(f"\n{'threads':>7} {'C':>4} {'operator':>14} {'time / dense':>13} {'MACs / dense':>13}")
for threads, c, kind, e, ratio, macs, _ in rows:
    print(f"{threads:>7} {c:>4} {kind + ' ' + e:>14} {ratio:>13.3f} {macs:>13.3f}")

# %%
# Time against work
# -----------------
# Each bar is an engine's time ratio; the black tick is its multiply-add ratio, the ratio a
# perfectly efficient engine would reach if it ran at the dense convolution's speed per
# multiply-add.
fig, axes = plt.subplots(1, len({r[0] for r in rows}), figsize=(10, 3.6), squeeze=False,
                         sharey=True)
for ax, threads in zip(axes[0], sorted({r[0] for r in rows})):
    sub = [r for r in rows if r[0] == threads]
    labels = [f"{r[2]} {r[3]}\nC {r[1]}" for r in sub]
    pos = range(len(sub))
    ax.bar(pos, [r[4] for r in sub], color=["C0" if r[2] == "lean" else "C1" for r in sub])
    ax.scatter(pos, [r[5] for r in sub], marker="_", s=300, color="k", zorder=3)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(list(pos), labels, rotation=90, fontsize=7)
    ax.set_title(f"{threads} thread(s)")
axes[0][0].set_ylabel("time / dense 3×3 (fwd + bwd)")
fig.tight_layout()
plt.show()

print(f"\nexample ran in {time.perf_counter() - start:.0f} s")
