"""Overhead of the training monitor at its default frequency.

An ODE-ResNet (widths 8, 16; one lean ODE block per stage, rk4, 4 steps, ANODE) trains with
Adam on batches of 64 of scikit-learn's digits. Each round trains ``every`` steps without
the monitor and ``every`` steps calling ``Monitor.step()`` after each optimiser step (the
monitor records once per round: stability, gradient error and reconstruction error of both
blocks on a probe batch of 8), interleaved in chunks of 10 steps so that a change of the
machine's load reaches both alike. The overhead is the total monitored time over the total
plain time minus one (and, per round, its range), beside the monitor's own measured share of
the monitored time. Target: at most 5 %.

Run: ``python tests/benchmarks/bench_monitor.py [--rounds 5] [--every 100] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from sklearn.datasets import load_digits

import odenet
from odenet.analysis import Monitor, MonitorWarning


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--every", type=int, default=None,
                    help="monitor frequency (default: the Monitor's default)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    every = args.every or Monitor.__init__.__kwdefaults__["every"]
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    net = odenet.models.ODEResNet(1, 10, widths=(8, 16), blocks=1, op="lean", steps=4,
                                  gradient="anode", activation="relu")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    mon = Monitor(net, x[:8], targets=y[:8], every=every, tensorboard=False)
    g = torch.Generator().manual_seed(1)

    def train(n: int, monitor: Monitor | None) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            idx = torch.randint(0, len(y), (64,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            if monitor is not None:
                monitor.step()
        return time.perf_counter() - t0

    train(10, None)  # warm-up
    warnings.simplefilter("ignore", MonitorWarning)  # thresholds are not what is measured
    plain, monitored, share = [], [], []
    chunk = min(10, every)
    for _ in range(args.rounds):
        tp = tm = 0.0
        before = mon.seconds
        for i in range(0, every, chunk):
            n = min(chunk, every - i)
            tp += train(n, None)
            tm += train(n, mon)
        plain.append(tp)
        monitored.append(tm)
        share.append((mon.seconds - before) / tm)
    ratios = [m / p - 1 for m, p in zip(monitored, plain)]
    total = sum(monitored) / sum(plain) - 1
    last = mon.history[-1]
    print(f"monitor every {every} steps, {args.rounds} rounds of {every} steps each way, "
          f"{args.threads} thread(s)")
    print(f"training time per round: plain median {statistics.median(plain):.3f} s, "
          f"monitored median {statistics.median(monitored):.3f} s")
    print(f"overhead (monitored / plain - 1): {100 * total:.2f} % over all rounds; per round "
          f"median {100 * statistics.median(ratios):.2f} %, range {100 * min(ratios):.2f} .. "
          f"{100 * max(ratios):.2f} %")
    print(f"monitor's own time per round: median {100 * statistics.median(share):.2f} % of the "
          f"monitored time; {len(mon.history)} records, "
          f"{statistics.median(r['seconds'] for r in mon.history):.3f} s each")
    print("last record:", {k: {q: round(v, 4) if isinstance(v, float) else v
                               for q, v in b.items()} for k, b in last["blocks"].items()})
    print("target <= 5 %:", "met" if total <= 0.05 else "NOT met")


if __name__ == "__main__":
    main()
