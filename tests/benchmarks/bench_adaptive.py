"""Peak memory and time of the gradient strategies on an adaptive (dopri5) convolutional solve.

One solve of y' = tanh(K y + b) on [0, T] with dopri5 (rtol 1e-5, atol 1e-6), K a dense 3x3
convolution 32 -> 32 channels with weights N(0, (4 / sqrt(9 C))^2) (a smooth right-hand side with
modest weights: about twenty accepted steps), batch 32, 32 channels, 32x32 pixels, float32;
loss = mean of the squared final state; one forward + backward pass for the input and the
parameters. Strategies: odenet's backprop, anode, Revolve(checkpoints=k) for each k of
--checkpoints, the OTD adjoint, backprop with options["differentiate_steps"] (where the option
exists), and torchdiffeq's odeint (autograd through its solve: steps, controller and
interpolation) and odeint_adjoint with the same tolerances.

The gradients of backprop, anode and revolve are the exact gradient of the accepted steps with
the step sizes held fixed, and agree to round-off; the others (torchdiffeq's backprop
differentiates its controller and its dense output; the adjoints solve another equation on
their own grids; differentiate_steps differentiates the step sizes) differ by O(tolerance).

Memory is measured as in bench_strategies.py (its peak_bytes): each strategy in its own process,
on CPU the growth of the peak resident set size (VmHWM, reset through /proc/self/clear_refs)
over the resident size just before the measured pass, after one warm-up pass, with glibc
serving every block over 128 KiB by mmap (MALLOC_MMAP_THRESHOLD_) so that freed tensors leave
the resident set; on CUDA torch.cuda.max_memory_allocated over memory_allocated. Time: one
more process runs --repeats interleaved rounds in which every strategy makes one pass; median
per strategy, and every ratio is against odenet's backprop in that same process. The step
counts are those of the measured pass (odenet.gradients._adaptive.LAST; for torchdiffeq the
evaluations of func counted in the forward and in the whole pass).

Targets (issue 13): Revolve(k) peak <= 1.5 x torchdiffeq odeint_adjoint's and <= 0.3 x
torchdiffeq backprop's; Revolve(k) time <= 3 x odenet backprop's.

Run: ``python tests/benchmarks/bench_adaptive.py [--quick] [--batch 32] [--checkpoints 2 4]
[--repeats 3] [--threads 1] [--device cpu]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_strategies import measure  # the same measures

FULL = {"batch": 32, "channels": 32, "size": 32, "T": 5.0}
QUICK = {"batch": 4, "channels": 8, "size": 16, "T": 5.0}
RTOL, ATOL, SCALE = 1e-5, 1e-6, 4.0
BASE = ["backprop", "anode", "adjoint", "backprop_steps", "torchdiffeq", "torchdiffeq_adjoint"]


def _names(checkpoints: list[int]) -> list[str]:
    return BASE[:2] + [f"revolve{k}" for k in checkpoints] + BASE[2:]


def worker(names: list[str], mode: str, cfg: dict, repeats: int, threads: int, device: str,
           out: str) -> None:
    import torch
    import torch.nn.functional as F
    import torchdiffeq

    import odenet
    from odenet.gradients._adaptive import LAST

    torch.set_num_threads(threads)
    dev = torch.device(device)
    B, C, S, T = cfg["batch"], cfg["channels"], cfg["size"], cfg["T"]

    class TanhConv(torch.nn.Module):
        """f(t, y) = tanh(K y + b), K a dense 3x3 convolution; counts its calls."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(C, C, 3, 3) * SCALE / (9 * C) ** 0.5)
            self.b = torch.nn.Parameter(0.1 * torch.randn(C))
            self.calls = 0

        def forward(self, t, y):
            self.calls += 1
            return torch.tanh(F.conv2d(y, self.w, self.b, padding=1))

    torch.manual_seed(0)
    f = TanhConv().to(dev)
    x = torch.randn(B, C, S, S, device=dev)
    t = torch.tensor([0.0, T], device=dev)
    tol = {"rtol": RTOL, "atol": ATOL}

    def step(name):
        y0 = x.clone().requires_grad_()
        f.calls = 0
        if name == "torchdiffeq":
            y = torchdiffeq.odeint(f, y0, t, method="dopri5", **tol)
        elif name == "torchdiffeq_adjoint":
            y = torchdiffeq.odeint_adjoint(f, y0, t, method="dopri5", **tol)
        else:
            opts = dict(tol)
            if name == "backprop_steps":
                opts["differentiate_steps"] = True
                gradient = "backprop"
            elif name.startswith("revolve"):
                gradient = odenet.Revolve(checkpoints=int(name[len("revolve"):]))
            else:
                gradient = name
            y = odenet.odeint(f, y0, t, method="dopri5", options=opts, gradient=gradient)
        forward_calls = f.calls
        loss = y[-1].square().mean()
        grads = torch.autograd.grad(loss, [y0, *f.parameters()])
        if name.startswith("torchdiffeq"):
            stats = {"forward_nfe": forward_calls, "total_nfe": f.calls}
        else:
            stats = dict(LAST, total_nfe=f.calls)
        return grads, stats

    measured = measure(step, names, mode, repeats, dev, out)
    if measured is None:
        return
    (grads, stats), peak = measured
    torch.save([g.detach().cpu() for g in grads], out + ".pt")
    with open(out, "w") as fh:
        json.dump({"peak": peak, "stats": stats, "state": x.numel() * x.element_size()}, fh)


def _supported(name: str) -> bool:
    if name != "backprop_steps":
        return True
    from odenet.solvers._controller import ADAPTIVE_OPTIONS

    return "differentiate_steps" in ADAPTIVE_OPTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a small config ({QUICK}) instead of {FULL}")
    parser.add_argument("--batch", type=int, help="override the batch size")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[2, 4],
                        help="the k of each Revolve(checkpoints=k) measured")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="a subset of the strategies")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--cfg", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker.split(","), args.mode, json.loads(args.cfg), args.repeats,
               args.threads, args.device, args.out)
        return

    import torch

    cfg = dict(QUICK if args.quick else FULL)
    if args.batch:
        cfg["batch"] = args.batch
    names = [n for n in (args.only or _names(args.checkpoints)) if _supported(n)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    common = ["--cfg", json.dumps(cfg), "--repeats", str(args.repeats), "--threads",
              str(args.threads), "--device", args.device]
    results: dict[str, dict] = {}
    grads = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # memory: one process per strategy
            out = os.path.join(tmp, f"{name}.json")
            cmd = [sys.executable, __file__, "--worker", name, "--mode", "mem", "--out", out]
            proc = subprocess.run(cmd + common, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                failed[name] = (proc.stderr.strip().splitlines() or ["?"])[-1]
                continue
            with open(out) as fh:
                results[name] = json.load(fh)
            grads[name] = torch.load(out + ".pt")
        out = os.path.join(tmp, "time.json")  # time: one process, strategies interleaved
        cmd = [sys.executable, __file__, "--worker", ",".join(results), "--mode", "time",
               "--out", out]
        subprocess.run(cmd + common, check=True)
        with open(out) as fh:
            for name, value in json.load(fh).items():
                results[name]["time"] = value

    any_r = next(iter(results.values()))
    print(f"\ndopri5 on [0, {cfg['T']:g}], f = tanh(conv3x3(y) + b), rtol {RTOL:g}, atol {ATOL:g}, "
          f"B{cfg['batch']} C{cfg['channels']} {cfg['size']}x{cfg['size']} float32 "
          f"(state {any_r['state'] / 2**20:.2f} MiB), device {args.device}, "
          f"{args.threads} thread(s), time: median of {args.repeats}\n")
    bp = results.get("backprop")
    head = (f"{'strategy':<21}{'peak MiB':>9}{'/state':>8}{'x bp':>7}{'time s':>8}{'x bp':>7}"
            f"{'grad diff':>11}{'steps':>7}{'rej':>5}{'nfe fwd':>8}{'nfe all':>8}"
            f"{'recomp':>8}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        st = r["stats"]
        mem = r["peak"] / bp["peak"] if bp else float("nan")
        tim = r["time"] / bp["time"] if bp else float("nan")
        if "backprop" in grads:
            diff = max(float((a - b).abs().max() / b.abs().max())
                       for a, b in zip(grads[name], grads["backprop"]))
        else:
            diff = float("nan")
        print(f"{name:<21}{r['peak'] / 2**20:>9.1f}{r['peak'] / r['state']:>8.1f}{mem:>7.2f}"
              f"{r['time']:>8.2f}{tim:>7.2f}{diff:>11.2e}{st.get('forward_steps', '-'):>7}"
              f"{st.get('forward_rejected', '-'):>5}{st.get('forward_nfe', '-'):>8}"
              f"{st.get('total_nfe', '-'):>8}{st.get('backward_recomputed', '-'):>8}")
    for name, why in failed.items():
        print(f"{name:<21}failed: {why}")
    print("\n(grad diff: max over the input and the parameters of max|g - g_bp| / max|g_bp|; "
          "steps, rej: accepted and rejected steps of the forward solve; nfe: evaluations of "
          "func in the forward solve and in the whole pass; recomp: steps recomputed without "
          "graph in the backward pass)")
    td, tda = results.get("torchdiffeq"), results.get("torchdiffeq_adjoint")
    revolves = [n for n in results if n.startswith("revolve")]
    if bp and revolves:
        print("\ntargets")
        for n in revolves:
            r = results[n]
            k = n[len("revolve"):]
            if tda:
                print(f"  Revolve({k}) peak / torchdiffeq odeint_adjoint peak   "
                      f"{r['peak'] / tda['peak']:.3f}  (<= 1.5)")
            if td:
                print(f"  Revolve({k}) peak / torchdiffeq backprop peak         "
                      f"{r['peak'] / td['peak']:.3f}  (<= 0.3)")
            print(f"  Revolve({k}) time / odenet backprop time              "
                  f"{r['time'] / bp['time']:.2f}   (<= 3)")


if __name__ == "__main__":
    main()
