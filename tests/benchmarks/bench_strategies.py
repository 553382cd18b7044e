"""Peak memory and time of the gradient strategies on a convolutional ODE-network.

L = 3 ODE blocks, each Nt = 10 steps of rk4_38 on [0, 1] with the parabolic right-hand side
f(y) = -Kᵀ relu(K y + b), K = 1x1 convolution + depthwise 3x3 convolution (lean operator), batch 32,
32 channels, 32x32 pixels, float32; loss = mean of the squared output; one forward + backward pass.
Strategies: odenet's backprop, anode, revolve (checkpoints=2) and adjoint, and torchdiffeq's odeint
(backprop) and odeint_adjoint on the same network (torchdiffeq's "rk4" is the 3/8 rule = rk4_38).

Memory is measured for each strategy in its own process: on CPU the growth
of the peak resident set size (VmHWM, reset through /proc/self/clear_refs) over the resident size
just before the measured pass, after one warm-up pass; in that process glibc serves every block over
128 KiB by mmap (MALLOC_MMAP_THRESHOLD_), so freed tensors leave the resident set and the figure is
live memory, measured alike for every strategy. On CUDA: torch.cuda.max_memory_allocated over
memory_allocated. Time: one more process, with the default allocator, runs --repeats rounds in which
every strategy makes one pass (interleaved, so all see the same machine load); median per strategy.
Gradients are compared with backprop's (max relative difference over the parameters).

Run: ``python tests/benchmarks/bench_strategies.py [--repeats 3] [--threads 1] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

STRATEGIES = ["backprop", "anode", "revolve2", "adjoint", "torchdiffeq", "torchdiffeq_adjoint"]
B, C, H, W = 32, 32, 32, 32
BLOCKS, STEPS = 3, 10


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def sync(dev) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(run, names: list[str], repeats: int, dev) -> dict[str, float]:
    """Median seconds of ``run(name)`` per name over ``repeats`` interleaved rounds (every
    contender sees the same machine load)."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            sync(dev)
            t0 = time.perf_counter()
            run(name)
            sync(dev)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def peak_bytes(call, dev):
    """``(call(), peak memory growth in bytes during it)``: on CUDA max_memory_allocated over
    memory_allocated; on the CPU the peak resident set (VmHWM, reset through
    /proc/self/clear_refs) over the resident size just before."""
    import torch

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        result = call()
        sync(dev)
        return result, torch.cuda.max_memory_allocated() - base
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    base = _rss_kib("VmRSS")
    result = call()
    return result, (_rss_kib("VmHWM") - base) * 1024


def measure(step, names: list[str], mode: str, repeats: int, dev, out: str):
    """A worker's measurement after one warm-up call per contender: ``mode == "time"``
    writes the interleaved medians of ``step(name)`` to ``out`` and returns None; otherwise
    (one contender) returns ``(step(name), peak bytes)``."""
    for name in names:  # warm-up: kernels, thread pools, caches
        step(name)
    sync(dev)
    if mode == "time":
        with open(out, "w") as fh:
            json.dump(interleaved_medians(step, names, repeats, dev), fh)
        return None
    (name,) = names
    return peak_bytes(lambda: step(name), dev)


def worker(names: list[str], mode: str, repeats: int, threads: int, device: str, out: str) -> None:
    import torch
    import torch.nn.functional as F
    import torchdiffeq

    import odenet

    torch.set_num_threads(threads)
    dev = torch.device(device)

    class Parabolic(torch.nn.Module):
        """f(y) = -Kᵀ relu(K y + b), K = 1x1 conv + depthwise 3x3 conv."""

        def __init__(self):
            super().__init__()
            self.w1 = torch.nn.Parameter(torch.randn(C, C, 1, 1) / C**0.5)
            self.wd = torch.nn.Parameter(torch.randn(C, 1, 3, 3) / 3)
            self.b = torch.nn.Parameter(torch.zeros(C))

        def K(self, y):
            return F.conv2d(y, self.w1) + F.conv2d(y, self.wd, padding=1, groups=C)

        def KT(self, z):
            return F.conv_transpose2d(z, self.w1) + F.conv_transpose2d(
                z, self.wd, padding=1, groups=C
            )

        def forward(self, t, y):
            return -self.KT(torch.relu(self.K(y) + self.b[:, None, None]))

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(Parabolic() for _ in range(BLOCKS)).to(dev)
    x = torch.randn(B, C, H, W, device=dev)
    t = torch.tensor([0.0, 1.0], device=dev)
    h = 1.0 / STEPS

    def block(name, f, y):
        if name == "torchdiffeq":
            return torchdiffeq.odeint(f, y, t, method="rk4", options={"step_size": h})[-1]
        if name == "torchdiffeq_adjoint":
            return torchdiffeq.odeint_adjoint(f, y, t, method="rk4", options={"step_size": h})[-1]
        gradient = odenet.Revolve(checkpoints=2) if name == "revolve2" else name
        return odenet.odeint(f, y, t, method="rk4_38", step_size=h, gradient=gradient)[-1]

    def step(name):
        y = x
        for f in blocks:
            y = block(name, f, y)
        loss = y.square().mean()
        return torch.autograd.grad(loss, list(blocks.parameters()))

    measured = measure(step, names, mode, repeats, dev, out)
    if measured is None:
        return
    grads, peak = measured
    torch.save([g.detach().cpu() for g in grads], out + ".pt")
    with open(out, "w") as fh:
        json.dump({"peak": peak}, fh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=STRATEGIES)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker.split(","), args.mode, args.repeats, args.threads, args.device,
               args.out)
        return

    import torch

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    results: dict[str, dict] = {name: {} for name in args.only}
    grads = {}
    common = ["--repeats", str(args.repeats), "--threads", str(args.threads),
              "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:  # memory: one process per strategy
            out = os.path.join(tmp, f"{name}.json")
            cmd = [sys.executable, __file__, "--worker", name, "--mode", "mem", "--out", out]
            subprocess.run(cmd + common, check=True, env=env)
            with open(out) as fh:
                results[name].update(json.load(fh))
            grads[name] = torch.load(out + ".pt")
        out = os.path.join(tmp, "time.json")  # time: one process, strategies interleaved
        cmd = [sys.executable, __file__, "--worker", ",".join(args.only), "--mode", "time",
               "--out", out]
        subprocess.run(cmd + common, check=True)
        with open(out) as fh:
            for name, value in json.load(fh).items():
                results[name]["time"] = value

    ref = results.get("backprop")
    print(f"\nL={BLOCKS} blocks x Nt={STEPS} rk4_38 steps, B{B} C{C} {H}x{W} float32, "
          f"device {args.device}, {args.threads} thread(s), median of {args.repeats}\n")
    head = f"{'strategy':<22}{'peak MiB':>10}{'x backprop':>12}{'time s':>9}{'x backprop':>12}"
    head += f"{'grad rel. diff':>16}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        mem_ratio = r["peak"] / ref["peak"] if ref else float("nan")
        time_ratio = r["time"] / ref["time"] if ref else float("nan")
        if "backprop" in grads:
            g0 = grads["backprop"]
            diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(grads[name], g0))
        else:
            diff = float("nan")
        print(f"{name:<22}{r['peak'] / 2**20:>10.1f}{mem_ratio:>12.3f}{r['time']:>9.2f}"
              f"{time_ratio:>12.2f}{diff:>16.2e}")
    if {"backprop", "anode", "revolve2", "torchdiffeq_adjoint"} <= results.keys():
        bp, an, rv, ta = (results[k] for k in
                          ("backprop", "anode", "revolve2", "torchdiffeq_adjoint"))
        print("\ntargets")
        print(f"  ANODE peak / backprop peak          {an['peak'] / bp['peak']:.3f}  (<= 0.40)")
        print(f"  ANODE time / backprop time          {an['time'] / bp['time']:.2f}   (<= 1.5)")
        print(f"  Revolve(2) peak / odeint_adjoint    {rv['peak'] / ta['peak']:.3f}  (<= 1.5)")
        print(f"  Revolve(2) time / backprop time     {rv['time'] / bp['time']:.2f}   (<= 3)")


if __name__ == "__main__":
    main()
