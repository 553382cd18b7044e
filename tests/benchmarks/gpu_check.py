"""One prepared check of everything device-specific, for when a GPU is available.

Run ``python tests/benchmarks/gpu_check.py`` on a machine with CUDA (about 2–4
minutes on one GPU; ``--help`` for options). It

1. runs the test suite's CUDA tests (``pytest -k cuda``: the tests named for CUDA and
   the CUDA cases of the ``device`` fixture) and prints their summary;
2. prints the device figures, each measured in this run:

   * peak memory (``torch.cuda.max_memory_allocated``) of forward + backward through
     ``L`` stacked :class:`odenet.nn.ODEBlock` s of lean convolutions with each
     gradient strategy (backprop, ANODE, revolve, adjoint), and its ratio to backprop;
   * the cuFFT solve ``(I + γ KᵀK)⁻¹ r`` of :class:`odenet.linear.ConvFFT` against one
     FFT round trip (``rfft2`` + ``irfft2``) of the same tensor;
   * deformable convolution (v2: offsets and mask) against a dense convolution, and
     against ``torchvision.ops.deform_conv2d`` when torchvision is importable (DefT
     reports its kernel 4× faster than torchvision's);
   * lean and pSConv (psc4) convolutions against a dense 3×3 convolution, per engine.

Times are medians of CUDA-event timings, contenders interleaved round-robin in one
run; all figures are ratios to a baseline measured alongside. The solver loop does not
use CUDA graphs, so there is no graph figure. Without CUDA the script prints
``gpu_check: skipped: no CUDA`` and exits 0; ``--device cpu --quick`` runs the
measurements on the CPU at toy sizes (how the test suite checks this script).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUP = 2


def race(contenders: dict, device: torch.device, repeats: int) -> dict:
    """Median seconds per call of each contender, timed round-robin."""
    warmup = WARMUP
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            if device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[name].append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def forward_backward(fn, leaves, grad):
    def run():
        for t in leaves:
            t.grad = None
        fn().backward(grad)

    return run


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


# --------------------------------------------------------------------------- sections


def run_cuda_tests(timeout: int) -> int:
    """``pytest -k cuda`` in a subprocess; prints its summary, returns its exit code."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider",
           "-o", "addopts=", "tests"]
    print("$ " + " ".join(cmd[2:]), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"CUDA tests: timed out after {timeout} s")
        return 1
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-15:]
    print("\n".join(tail))
    if proc.returncode not in (0, 5):  # 5: nothing collected
        print(proc.stderr[-2000:])
    return 0 if proc.returncode in (0, 5) else proc.returncode


def peak_memory(fn, device: torch.device) -> int | None:
    """Peak bytes allocated on ``device`` while ``fn`` runs (None off CUDA)."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def memory_section(device, channels, size, batch, blocks, steps):
    import odenet
    from odenet.nn import LeanConv2d, ODEBlock, ResidualRHS

    strategies = {
        "backprop": "backprop",
        "anode": "anode",
        "revolve(2)": odenet.Revolve(checkpoints=2),
        "adjoint": "adjoint",
    }
    rows, base = [], None
    for name, gradient in strategies.items():
        torch.manual_seed(0)
        net = torch.nn.Sequential(*(
            ODEBlock(ResidualRHS(LeanConv2d(channels, channels)), T=1.0, steps=steps,
                     method="rk4", gradient=gradient)
            for _ in range(blocks)
        )).to(device)
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)

        def step(net=net, x=x):
            net(x).square().mean().backward()

        step()  # warm up (cuDNN/cuBLAS workspaces, kernels)
        peak = peak_memory(step, device)
        if base is None:
            base = peak
        mb = "n/a" if peak is None else f"{peak / 2**20:.1f}"
        ratio = "n/a" if peak is None or not base else f"{peak / base:.2f}"
        rows.append([name, mb, ratio])
        del net, x
    _table(f"peak memory, forward + backward: {blocks} ODE blocks x {steps} rk4 steps, lean "
           f"conv C {channels}, B {batch}, {size}x{size}, float32",
           ["gradient", "peak MB", "/ backprop"], rows)


def fft_section(device, channels, size, batch, repeats):
    from odenet.linear import ConvFFT

    g = torch.Generator().manual_seed(0)
    op = ConvFFT(torch.randn(channels, 1, 3, 3, generator=g)).to(device)
    r = torch.randn(batch, channels, size, size, generator=g).to(device)
    res = race({
        "round trip": lambda: torch.fft.irfft2(torch.fft.rfft2(r), s=r.shape[-2:]),
        "solve": lambda: op.solve(r, 0.5),
        "apply L": lambda: op(r),
    }, device, repeats)
    d = res["round trip"]
    _table(f"ConvFFT (periodic), C {channels}, B {batch}, {size}x{size}, float32: "
           "time / one rfft2+irfft2 round trip",
           ["op", "ms", "ratio"], [[k, f"{v * 1e3:.3f}", f"{v / d:.2f}"] for k, v in res.items()])


def deform_section(device, channels, size, batch, repeats):
    from odenet.nn.functional import deform_conv2d

    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(device).requires_grad_()

    x, w = rand(batch, channels, size, size), rand(channels, channels, 3, 3)
    off = rand(batch, 18, size, size, scale=2.0)
    mask = torch.rand(batch, 9, size, size, generator=g).to(device).requires_grad_()
    grad = torch.randn(batch, channels, size, size, generator=g).to(device)
    leaves = [x, w, off, mask]
    contenders = {
        "dense": forward_backward(lambda: F.conv2d(x, w, padding=1), [x, w], grad),
        "odenet": forward_backward(
            lambda: deform_conv2d(x, off, w, None, 1, 1, 1, mask), leaves, grad),
    }
    try:
        from torchvision.ops import deform_conv2d as tv_deform
    except ImportError:
        tv_deform = None
    if tv_deform is not None:
        contenders["torchvision"] = forward_backward(
            lambda: tv_deform(x, off, w, None, (1, 1), (1, 1), (1, 1), mask), leaves, grad)
    res = race(contenders, device, repeats)
    rows = [[k, f"{v * 1e3:.2f}", f"{v / res['dense']:.2f}"] for k, v in res.items()]
    _table(f"deformable v2 (offsets + mask), forward + backward, C {channels}, B {batch}, "
           f"{size}x{size}, float32: time / dense 3x3", ["op", "ms", "/ dense"], rows)
    if tv_deform is None:
        print("torchvision not importable: no comparison with its kernel")
    else:
        print(f"odenet is {res['torchvision'] / res['odenet']:.2f}x faster than torchvision's "
              "kernel (DefT reports 4x for its own)")


def cheap_section(device, channels_list, size, batch, repeats):
    from odenet.nn import LeanConv2d, SparseConv2d

    rows = []
    names = ["lean chunked", "lean conv", "psc4 taps", "psc4 masked"]
    for c in channels_list:
        g = torch.Generator().manual_seed(c)
        x = torch.randn(batch, c, size, size, generator=g).to(device).requires_grad_()
        grad = torch.randn(batch, c, size, size, generator=g).to(device)
        w9 = torch.randn(c, c, 3, 3, generator=g).to(device).requires_grad_()
        ops = {
            "lean chunked": LeanConv2d(c, c, engine="chunked"),
            "lean conv": LeanConv2d(c, c, engine="conv"),
            "psc4 taps": SparseConv2d(c, c, engine="taps"),
            "psc4 masked": SparseConv2d(c, c, engine="masked"),
        }
        contenders = {"dense": forward_backward(lambda: F.conv2d(x, w9, padding=1), [x, w9],
                                                grad)}
        for name, op in ops.items():
            op.to(device)
            contenders[name] = forward_backward(lambda op=op: op(x), [x, *op.parameters()],
                                                grad)
        res = race(contenders, device, repeats)
        d = res["dense"]
        rows.append([str(c), f"{d * 1e3:.3f}", *(f"{res[n] / d:.3f}" for n in names)])
    _table(f"forward + backward, B {batch}, {size}x{size}, float32: time / dense 3x3 conv2d "
           "(targets: lean <= 0.35, psc4 <= 0.6 at C >= 64)", ["C", "dense ms", *names], rows)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (toy check)")
    p.add_argument("--quick", action="store_true", help="toy sizes, few repeats")
    p.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    p.add_argument("--test-timeout", type=int, default=150, help="seconds for the CUDA tests")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: skipped: no CUDA (torch {torch.__version__}, "
              f"CUDA build {torch.version.cuda})")
        return 0
    t0 = time.perf_counter()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"gpu_check on {props.name} ({props.total_memory / 2**30:.0f} GiB), torch "
              f"{torch.__version__}, CUDA {torch.version.cuda}")
        torch.backends.cudnn.benchmark = True
    else:
        print(f"gpu_check on the CPU ({os.cpu_count()} CPUs): toy figures, not device figures")
    status = 0
    if not args.no_tests:
        status = run_cuda_tests(args.test_timeout)
    q = args.quick
    global WARMUP
    WARMUP = 1 if q else 2
    sections = [
        lambda: memory_section(device, 4 if q else 64, 6 if q else 64, 1 if q else 32,
                               1 if q else 4, 1 if q else 8),
        lambda: fft_section(device, 2 if q else 64, 6 if q else 128, 1 if q else 32,
                            1 if q else 30),
        lambda: deform_section(device, 2 if q else 64, 6 if q else 64, 1 if q else 8,
                               1 if q else 20),
        lambda: cheap_section(device, [8] if q else [64, 128, 256], 6 if q else 32,
                              1 if q else 64, 1 if q else 30),
    ]
    for section in sections:
        try:
            section()
        except Exception as exc:  # report and go on: one broken figure must not hide the rest
            print(f"\nFAILED: {type(exc).__name__}: {exc}")
            status = 1
    print(f"\ngpu_check: done in {time.perf_counter() - t0:.0f} s, status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
