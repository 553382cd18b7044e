"""Lean convolution vs a dense 3×3 conv2d at 1, 2 and all threads, idle and under load.

Run ``python tests/benchmarks/bench_lean_threads.py`` (``--help`` for options).
Forward + backward, float32, batch 16, 32×32, C in {64, 128}. For every thread count
(1, 2 and ``os.cpu_count()``) the script times each engine of
:class:`odenet.nn.LeanConv2d` (``fused``: the compiled kernel, one parallel region per
call with dynamic scheduling; ``chunked``: batched matrix products and shifted
multiply-adds; ``conv``: a 1×1 and a depthwise vendor convolution) and the dense
convolution, first on an otherwise idle process, then with one competing busy-loop
process started by the script (so that one of our threads is descheduled now and
then, as on a shared machine). Timings of one row are interleaved round-robin in one
run; the table gives the dense median and each engine's median ratio to it.

Target: lean <= 0.35× dense at C >= 64 at every thread count measured.

``--wait-policy passive`` reruns the script with ``OMP_WAIT_POLICY=passive`` (OpenMP
threads that wait for work sleep instead of spinning; the default spins a while, which
on an oversubscribed machine takes the core from a thread that has work). It applies
to every contender alike, the dense convolution included.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from bench_ops import forward_backward, race

from odenet.nn import LeanConv2d, _fused


def bench(c: int, batch: int, size: int, repeats: int, engines) -> dict[str, float]:
    g = torch.Generator().manual_seed(c)
    x = torch.randn(batch, c, size, size, generator=g).requires_grad_()
    grad = torch.randn(batch, c, size, size, generator=g)
    w9 = torch.randn(c, c, 3, 3, generator=g).requires_grad_()
    contenders = {"dense": forward_backward(lambda: F.conv2d(x, w9, padding=1), [x, w9], grad)}
    for e in engines:
        op = LeanConv2d(c, c, engine=e)
        contenders[e] = forward_backward(lambda op=op: op(x), [x, *op.parameters()], grad)
    return race(contenders, repeats)


class Competitor:
    """A busy-loop process (a competing job on the same cores) while the block runs."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Competitor:
        if self.active:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15, help="timed calls per contender")
    p.add_argument("--channels", type=int, nargs="+", default=[64, 128])
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts (default: 1, 2 and os.cpu_count())")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--wait-policy", choices=["active", "passive"], default=None,
                   help="rerun with OMP_WAIT_POLICY set (default: as the environment has it)")
    args = p.parse_args(argv)
    if args.wait_policy and os.environ.get("OMP_WAIT_POLICY", "").lower() != args.wait_policy:
        env = {**os.environ, "OMP_WAIT_POLICY": args.wait_policy}
        cmd = [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]
        sys.exit(subprocess.run(cmd, env=env).returncode)
    threads = args.threads or sorted({1, 2, os.cpu_count() or 1})
    engines = ["fused", "chunked", "conv"]
    if not _fused.available():
        print("fused kernel unavailable (no compiler, or ODENET_FUSED=0): timing the others")
        engines.remove("fused")
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    print(f"OMP_WAIT_POLICY {policy}; torch {torch.__version__}, {os.cpu_count()} logical CPUs; "
          "forward + backward, "
          f"float32, B {args.batch}, {args.size}x{args.size}; ratio of each lean engine's "
          "median to the dense 3x3 conv2d's")
    print(f"{'threads':>7} {'load':>11} {'C':>5} {'dense ms':>9} "
          + " ".join(f"{'lean ' + e:>13}" for e in engines))
    for n in threads:
        torch.set_num_threads(n)
        for busy in (False, True):
            with Competitor(busy):
                for c in args.channels:
                    res = bench(c, args.batch, args.size, args.repeats, engines)
                    d = res["dense"]
                    load = "+1 busy" if busy else "as found"
                    print(f"{n:>7} {load:>11} {c:>5} {d * 1e3:9.2f} "
                          + " ".join(f"{res[e] / d:>13.3f}" for e in engines), flush=True)


if __name__ == "__main__":
    main()
