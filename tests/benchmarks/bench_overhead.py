"""Loop overhead of ``odenet.odeint`` against a hand-written loop of the same method.

Small MLP right-hand side (batch 32, width 16), 100 steps, forward + backward (and forward
only under ``torch.no_grad()``). Every variant runs interleaved in one process; the table gives
the median time of each and its ratio to the hand-written loop of the same scheme.
torchdiffeq's ``rk4`` is Kutta's 3/8 rule, so it is compared with the 3/8 hand loop (and, for
reference, with the classic one).

Run: ``python tests/benchmarks/bench_overhead.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchdiffeq

import odenet

STEPS, T = 100, 1.0
H = T / STEPS


def make_mlp(width: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(width, width), torch.nn.Tanh(), torch.nn.Linear(width, width)
    )


def hand_rk4(f, y):
    t, h = 0.0, H
    for _ in range(STEPS):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
    return y


def hand_rk4_38(f, y):
    t, h = 0.0, H
    for _ in range(STEPS):
        k1 = f(t, y)
        k2 = f(t + h / 3, y + h * k1 / 3)
        k3 = f(t + 2 * h / 3, y + h * (k2 - k1 / 3))
        k4 = f(t + h, y + h * (k1 - k2 + k3))
        y = y + h / 8 * (k1 + 3 * (k2 + k3) + k4)
        t += h
    return y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = make_mlp()

    def f(t, y):
        return net(y)

    y0 = torch.randn(32, 16)
    tt = torch.tensor([0.0, T])
    variants = {
        "hand rk4 (classic)": lambda y: hand_rk4(f, y),
        "hand rk4_38": lambda y: hand_rk4_38(f, y),
        "odenet rk4": lambda y: odenet.odeint(f, y, tt, method="rk4", step_size=H)[-1],
        "odenet rk4_38": lambda y: odenet.odeint(f, y, tt, method="rk4_38", step_size=H)[-1],
        "torchdiffeq rk4 (3/8)": lambda y: torchdiffeq.odeint(
            f, y, tt, method="rk4", options={"step_size": H}
        )[-1],
    }
    results: dict[str, dict[str, list[float]]] = {"fwd+bwd": {}, "no_grad fwd": {}}
    for _ in range(3):  # warm-up
        for fn in variants.values():
            fn(y0).sum().backward()
    for _ in range(args.repeats):
        for name, fn in variants.items():
            net.zero_grad()
            t0 = time.perf_counter()
            fn(y0).pow(2).sum().backward()
            results["fwd+bwd"].setdefault(name, []).append(time.perf_counter() - t0)
            with torch.no_grad():
                t0 = time.perf_counter()
                fn(y0)
                results["no_grad fwd"].setdefault(name, []).append(time.perf_counter() - t0)
    reference = {
        "hand rk4 (classic)": "hand rk4 (classic)",
        "hand rk4_38": "hand rk4_38",
        "odenet rk4": "hand rk4 (classic)",
        "odenet rk4_38": "hand rk4_38",
        "torchdiffeq rk4 (3/8)": "hand rk4_38",
    }
    print(f"MLP 32x16, {STEPS} steps, median of {args.repeats} interleaved runs, 1 thread")
    print(f"{'variant':24s} {'mode':12s} {'median ms':>10s} {'ratio':>8s}  vs")
    for mode, table in results.items():
        med = {k: statistics.median(v) for k, v in table.items()}
        for name in variants:
            ref = reference[name]
            print(
                f"{name:24s} {mode:12s} {1e3 * med[name]:10.3f} {med[name] / med[ref]:8.3f}  {ref}"
            )
        ratio = med["torchdiffeq rk4 (3/8)"] / med["hand rk4 (classic)"]
        print(f"{'torchdiffeq rk4 (3/8)':24s} {mode:12s} {'':10s} {ratio:8.3f}  hand rk4 (classic)")


if __name__ == "__main__":
    main()
