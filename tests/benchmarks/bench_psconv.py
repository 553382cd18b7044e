"""pSConv (psc4) forward + backward time relative to a dense 3×3 conv2d, per engine.

Run ``python tests/benchmarks/bench_psconv.py`` (``--help`` for options). Float32,
CPU, batch 16, 32×32, C in {32, 64, 128}; one thread by default (``--threads``).
All timings of one table come from one run, interleaved round-robin (every repeat
times each contender once, in turn), so that load from other processes hits all of
them alike; the table gives the median time of the dense
``torch.nn.functional.conv2d`` and the ratio of each engine's median to it, with the
multiply-add ratio in brackets (psc4 has 37/8 of 9 taps per channel pair; the taps
engine computes 5.25 of 9; masked computes all 9).

Target: the fused engine <= 0.6× dense at C >= 64, one thread. The fused engine is
the compiled kernel of :mod:`odenet.nn._fused` (built on first use); where it cannot
be built the script says so and times the other engines.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from bench_ops import forward_backward, forward_only, race

from odenet.nn import SparseConv2d, _fused

ENGINES = ("fused", "taps", "masked")
MACS = {"fused": 37 / 72, "taps": 5.25 / 9, "masked": 1.0}


def bench(c: int, batch: int, size: int, repeats: int, engines, backward: bool = True):
    g = torch.Generator().manual_seed(c)
    x = torch.randn(batch, c, size, size, generator=g).requires_grad_()
    grad = torch.randn(batch, c, size, size, generator=g)
    w9 = torch.randn(c, c, 3, 3, generator=g).requires_grad_()
    ops = {e: SparseConv2d(c, c, engine=e) for e in engines}
    contenders = {}
    if backward:
        contenders["dense"] = forward_backward(lambda: F.conv2d(x, w9, padding=1), [x, w9], grad)
        for e, op in ops.items():
            contenders[e] = forward_backward(lambda op=op: op(x), [x, op.weight], grad)
    else:
        contenders["dense"] = forward_only(lambda: F.conv2d(x, w9, padding=1))
        for e, op in ops.items():
            contenders[e] = forward_only(lambda op=op: op(x))
    return race(contenders, repeats)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="timed calls per contender")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    engines = list(ENGINES)
    if not _fused.available():
        print("fused kernel unavailable (no compiler, or ODENET_FUSED=0): timing the others")
        engines.remove("fused")
    lib = _fused.library()
    simd = f", {lib.odenet_vector_bytes() * 8}-bit vectors" if lib is not None else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s){simd}; float32, "
          f"B {args.batch}, {args.size}x{args.size}")
    for backward in (True, False):
        what = "forward + backward" if backward else "forward only"
        print(f"\n{what}: time ratio to dense 3x3 conv2d (multiply-add ratio in brackets)")
        print(f"{'C':>5} {'dense ms':>9} " + " ".join(f"{'psc4 ' + e:>16}" for e in engines))
        for c in args.channels:
            res = bench(c, args.batch, args.size, args.repeats, engines, backward)
            d = res["dense"]
            cells = [f"{res[e] / d:6.3f} [{MACS[e]:.2f}]" for e in engines]
            print(f"{c:>5} {d * 1e3:9.2f} " + " ".join(f"{x:>16}" for x in cells))


if __name__ == "__main__":
    main()
