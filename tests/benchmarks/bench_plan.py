"""The memory-budgeted gradient plan against the best single strategy that meets the budget.

An ODE-ResNet with 4 ODE blocks (two stages of two blocks, dense 3x3 operators, rk4, Nt = 8,
float32) on a batch of 8 images. The budget is a fraction of the peak memory of one
forward+backward with every block on backprop (measured first). The plan is made
(:func:`odenet.analysis.plan_gradients`, exact strategies only), then the network is
measured with the plan and with every single exact strategy on all blocks (backprop, anode,
revolve:1, revolve:2, revolve:3), each peak with the plan's probe, the times in interleaved
rounds. Printed: each
configuration's peak and median time, whether it meets the budget, and the ratio of the
plan's time to the fastest single strategy meeting the budget (target: at most 1, within
the spread of the rounds).

Run: ``python tests/benchmarks/bench_plan.py [--size 16] [--fraction 0.5] [--rounds 5]``
(``--size 32``: the 8x3x32x32 configuration of the issue that motivated the plan).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import odenet
from odenet.analysis import plan_gradients
from odenet.analysis._plan import measure_network
from odenet.analysis._user_model import find_blocks, network_loss, set_strategies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = odenet.models.ODEResNet(3, 10, widths=(16, 32), blocks=2, op="dense", steps=8,
                                  method="rk4", gradient="anode", norm=None)
    x = torch.randn(8, 3, args.size, args.size)
    y = torch.randint(0, 10, (8,))
    blocks = [m for _, m in find_blocks(net)]
    loss = network_loss(None, y)
    singles = ["backprop", "anode", "revolve:1", "revolve:2", "revolve:3"]
    bp = measure_network(net, x, blocks, "backprop", loss=loss, repeats=1)
    budget = args.fraction * bp["peak_bytes"]
    t0 = time.perf_counter()
    plan = plan_gradients(net, x, budget, targets=y, repeats=3)
    made = time.perf_counter() - t0
    print(plan)
    print(f"plan made in {made:.1f} s\n")
    configs = {s: s for s in singles}
    configs["plan"] = [plan.assignment[n] for n, _ in find_blocks(net)]
    peaks = {k: measure_network(net, x, blocks, v, loss=loss, repeats=1)["peak_bytes"]
             for k, v in configs.items()}
    times: dict[str, list[float]] = {k: [] for k in configs}
    params = [p for p in net.parameters() if p.requires_grad]
    net.eval()
    for r in range(args.rounds):
        names = list(configs)
        for k in names[r % len(names):] + names[: r % len(names)]:
            undo = set_strategies(blocks, configs[k])
            try:
                t1 = time.perf_counter()
                torch.autograd.grad(loss(net(x)), params)
                times[k].append(time.perf_counter() - t1)
            finally:
                undo()
    print(f"budget {budget / 2**20:.1f} MB ({args.fraction:g} x the all-backprop peak "
          f"{bp['peak_bytes'] / 2**20:.1f} MB); input {tuple(x.shape)}; {args.rounds} "
          f"interleaved rounds; probe {bp['probe']}")
    print(f"{'configuration':<48} {'peak MB':>9} {'median s':>9}  meets budget")
    for k in configs:
        name = k if k != "plan" else "plan: " + ", ".join(configs["plan"])
        print(f"{name:<48} {peaks[k] / 2**20:9.1f} {statistics.median(times[k]):9.3f}  "
              f"{'yes' if peaks[k] <= budget else 'no'}")
    ok = [k for k in singles if peaks[k] <= budget]
    if ok:
        best = min(ok, key=lambda k: statistics.median(times[k]))
        ratios = [a / b for a, b in zip(times["plan"], times[best])]
        print(f"plan time / fastest single strategy within the budget ({best}): median "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f} .. {max(ratios):.3f} "
              "over the rounds)")
    else:
        print("no single strategy meets the budget")
    print(f"plan's measured peak within the budget: {'yes' if peaks['plan'] <= budget else 'NO'}")


if __name__ == "__main__":
    main()
