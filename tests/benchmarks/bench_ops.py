"""Forward + backward time of odenet's convolution operators relative to a dense conv2d.

Run ``python tests/benchmarks/bench_ops.py`` (``--help`` for options). All timings
of one table come from one run, interleaved round-robin (every repeat times each
contender once, in turn) so that load from other processes hits all of them
alike; the table reports medians and their ratios to the dense 3×3
``torch.nn.functional.conv2d`` of the same shape. Float32, CPU unless ``--device``.

* lean (1×1 + 5-point stencil) and pSConv psc4 at B 16, 32×32, C in {32, 64, 128};
  targets: lean <= 0.35× dense at C >= 64, psc4 <= 0.6× dense. psc4 is timed with
  both engines: ``taps`` (work proportional to the support, 5.25/9 of the dense
  multiply-adds) and ``masked`` (the vendor's dense kernel on the zero-filled weights).
* deformable v2 (offsets and mask given) at B 8, C 64, 64×64, against dense and,
  when ``torchvision`` is importable, against ``torchvision.ops.deform_conv2d``
  (target: >= 4× faster than torchvision's CPU kernel). torchvision is never a
  dependency; run this script with an interpreter that has it to get that column.

On a machine whose cores are shared with other work, use ``--threads 1``: with more
threads than idle cores every parallel region waits for a descheduled thread, which
distorts operators made of many small kernels far more than one large convolution.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from odenet.nn.functional import deform_conv2d, lean_conv2d, psc_mask, sparse_conv2d


def _timed(fn, leaves, grad):
    def run():
        for t in leaves:
            t.grad = None
        fn().backward(grad)

    return run


def race(contenders: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each contender, timed round-robin."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def forward_backward(fn, leaves, grad):
    """A call that clears the leaves' gradients and runs ``fn()`` forward and backward."""

    def run():
        for t in leaves:
            t.grad = None
        fn().backward(grad)

    return run


def forward_only(fn):
    """A call that runs ``fn()`` without a graph."""

    def run():
        with torch.no_grad():
            fn()

    return run


def bench_cheap(channels, batch, size, repeats, device):
    rows = []
    for c in channels:
        g = torch.Generator().manual_seed(c)

        def rand(*shape):
            return torch.randn(*shape, generator=g).to(device).requires_grad_()

        x = rand(batch, c, size, size)
        grad = torch.randn(batch, c, size, size, generator=g).to(device)
        w9 = rand(c, c, 3, 3)
        w1, s5 = rand(c, c), rand(c, 5)
        mask = psc_mask(c, c).to(device)
        ws = rand(int(mask.sum()))
        res = race(
            {
                "dense": _timed(lambda: F.conv2d(x, w9, padding=1), [x, w9], grad),
                "lean": _timed(lambda: lean_conv2d(x, w1, s5), [x, w1, s5], grad),
                "psc4 taps": _timed(
                    lambda: sparse_conv2d(x, ws, mask, engine="taps"), [x, ws], grad
                ),
                "psc4 masked": _timed(
                    lambda: sparse_conv2d(x, ws, mask, engine="masked"), [x, ws], grad
                ),
            },
            repeats,
        )
        flops = {"lean": (c * c + 5 * c) / (9 * c * c), "psc4 taps": 5.25 / 9, "psc4 masked": 1.0}
        rows.append((c, res, flops))
    return rows


def bench_deform(batch, c, size, repeats, device):
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(device).requires_grad_()

    x, w = rand(batch, c, size, size), rand(c, c, 3, 3)
    off = rand(batch, 18, size, size, scale=2.0)
    mask = torch.rand(batch, 9, size, size, generator=g).to(device).requires_grad_()
    grad = torch.randn(batch, c, size, size, generator=g).to(device)
    leaves = [x, w, off, mask]
    contenders = {
        "dense": _timed(lambda: F.conv2d(x, w, padding=1), [x, w], grad),
        "odenet": _timed(lambda: deform_conv2d(x, off, w, None, 1, 1, 1, mask), leaves, grad),
    }
    try:
        from torchvision.ops import deform_conv2d as tv_deform_conv2d
    except ImportError:
        tv_deform_conv2d = None
    if tv_deform_conv2d is not None:
        contenders["torchvision"] = _timed(
            lambda: tv_deform_conv2d(x, off, w, None, (1, 1), (1, 1), (1, 1), mask), leaves, grad
        )
    return race(contenders, repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="timed calls per contender")
    p.add_argument("--deform-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-deform", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}")
    print("\nforward + backward, float32, B 16, 32x32; time ratio to dense 3x3 conv2d "
          "(FLOP ratio in brackets)")
    names = ("lean", "psc4 taps", "psc4 masked")
    print(f"{'C':>5} {'dense ms':>9} " + " ".join(f"{n:>14}" for n in names))
    for c, res, flops in bench_cheap((32, 64, 128), 16, 32, args.repeats, dev):
        d = res["dense"]
        cells = [f"{res[k] / d:6.3f} [{flops[k]:.2f}]" for k in names]
        print(f"{c:>5} {d * 1e3:9.2f} " + " ".join(f"{x:>14}" for x in cells))
    if not args.skip_deform:
        res = bench_deform(8, 64, 64, args.deform_repeats, dev)
        print("\ndeformable v2 (offsets + mask), forward + backward, float32, B 8, C 64, 64x64")
        line = (f"dense {res['dense'] * 1e3:.1f} ms, odenet {res['odenet'] * 1e3:.1f} ms "
                f"({res['odenet'] / res['dense']:.1f}x dense)")
        if "torchvision" in res:
            line += (f", torchvision {res['torchvision'] * 1e3:.1f} ms "
                     f"(odenet {res['torchvision'] / res['odenet']:.2f}x faster)")
        else:
            line += ", torchvision not importable"
        print(line)


if __name__ == "__main__":
    main()
