"""Memory independent of Nt and time of the reversible gradient strategy on one lean-conv block.

One ODE block y' = tanh(K y + b), K = odenet.nn.LeanConv2d(32, 32) (1x1 + 5-point depthwise
stencil), batch 32, 32 channels, 32x32 pixels, float32, integrated over [0, 1] with
``reversible_heun``; loss = mean of the squared output; one forward + backward pass for the
input and the parameters.

Targets (issue: reversible integrators):
  * peak memory of gradient="reversible" at Nt = 1000 <= 1.1 x its peak at Nt = 10;
  * time of gradient="reversible" <= 2.5 x backprop through the same scheme at the same Nt
    (measured at Nt = --time-steps, default 100: backprop at Nt = 1000 would need about
    10 GiB here).

Memory is measured as in bench_strategies.py (imported from there): each (strategy, Nt) in its
own process, the growth of the peak resident set size (VmHWM, reset through
/proc/self/clear_refs) over the resident size just before the measured pass, after a warm-up
pass, with glibc serving every block over 128 KiB by mmap (MALLOC_MMAP_THRESHOLD_) so that freed
tensors leave the resident set; on CUDA torch.cuda.max_memory_allocated over
memory_allocated. Time: one more process runs --repeats interleaved rounds of both strategies;
median per strategy. The gradients of the reversible strategy are compared with backprop's
(max relative difference over the input and the parameters).

Run: ``python tests/benchmarks/bench_reversible.py [--repeats 3] [--threads 1] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_strategies import interleaved_medians, peak_bytes, sync  # the same measures

B, C, H, W = 32, 32, 32, 32
MEMORY_STEPS = (10, 100, 1000)


def _setup(device: str, threads: int):
    import torch

    import odenet

    torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    rhs = odenet.nn.ResidualRHS(odenet.nn.LeanConv2d(C, C), activation="tanh").to(dev)
    x = torch.randn(B, C, H, W, device=dev)
    t = torch.tensor([0.0, 1.0], device=dev)

    def step(gradient: str, nt: int):
        y0 = x.clone().requires_grad_()
        y = odenet.odeint(rhs, y0, t, method="reversible_heun", step_size=1.0 / nt,
                          gradient=gradient)
        loss = y[-1].square().mean()
        return torch.autograd.grad(loss, [y0, *rhs.parameters()])

    return torch, dev, step


def worker(name: str, nt: int, mode: str, repeats: int, threads: int, device: str,
           out: str) -> None:
    torch, dev, step = _setup(device, threads)
    names = name.split(",")
    for n in names:  # warm-up: kernels, thread pools, caches
        step(n, min(nt, 10))
    sync(dev)
    if mode == "time":
        with open(out, "w") as fh:
            json.dump(interleaved_medians(lambda n: step(n, nt), names, repeats, dev), fh)
        return
    grads, peak = peak_bytes(lambda: step(name, nt), dev)
    torch.save([g.detach().cpu() for g in grads], out + ".pt")
    with open(out, "w") as fh:
        json.dump({"peak": peak}, fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--time-steps", type=int, default=100)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--nt", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.nt, args.mode, args.repeats, args.threads, args.device,
               args.out)
        return

    import torch

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads),
              "--device", args.device]
    # the reversible strategy at every Nt of the sweep and of the timing (its gradient is
    # compared with backprop's there), backprop at Nt = 10 and at the timing's Nt
    runs = [("reversible", nt) for nt in sorted({*MEMORY_STEPS, args.time_steps})]
    runs += [("backprop", nt) for nt in sorted({10, args.time_steps})]
    peaks: dict[tuple[str, int], float] = {}
    grads = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, nt in runs:  # memory: one process per (strategy, Nt)
            out = os.path.join(tmp, f"{name}-{nt}.json")
            cmd = [sys.executable, __file__, "--worker", name, "--nt", str(nt), "--mode", "mem",
                   "--out", out]
            subprocess.run(cmd + common, check=True, env=env)
            with open(out) as fh:
                peaks[name, nt] = json.load(fh)["peak"]
            grads[name, nt] = torch.load(out + ".pt")
        out = os.path.join(tmp, "time.json")  # time: one process, interleaved rounds
        cmd = [sys.executable, __file__, "--worker", "reversible,backprop", "--nt",
               str(args.time_steps), "--mode", "time", "--out", out]
        subprocess.run(cmd + common, check=True)
        with open(out) as fh:
            times = json.load(fh)

    print(f"\none block, reversible_heun, B{B} C{C} {H}x{W} float32, device {args.device}, "
          f"{args.threads} thread(s), median of {args.repeats}\n")
    head = f"{'strategy':<12}{'Nt':>6}{'peak MiB':>10}"
    print(head)
    print("-" * len(head))
    for (name, nt), p in peaks.items():
        print(f"{name:<12}{nt:>6}{p / 2**20:>10.1f}")
    nt = args.time_steps
    diff = max(float((a - b).abs().max() / b.abs().max())
               for a, b in zip(grads["reversible", nt], grads["backprop", nt]))
    mem_ratio = peaks["reversible", 1000] / peaks["reversible", 10]
    time_ratio = times["reversible"] / times["backprop"]
    print(f"\ntime at Nt = {nt}: reversible {times['reversible']:.2f} s, backprop "
          f"{times['backprop']:.2f} s")
    print(f"gradient rel. diff reversible vs backprop at Nt = {nt}: {diff:.2e}")
    print("\ntargets")
    print(f"  reversible peak Nt=1000 / Nt=10        {mem_ratio:.3f}  (<= 1.1)")
    print(f"  reversible time / backprop (Nt={nt})   {time_ratio:.2f}   (<= 2.5)")
    print(f"  (backprop peak Nt={nt} / reversible peak Nt={nt}: "
          f"{peaks['backprop', nt] / peaks['reversible', nt]:.1f})")


if __name__ == "__main__":
    main()
