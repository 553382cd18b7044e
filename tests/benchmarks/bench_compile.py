"""torch.compile of fixed-step solves: graph breaks, recompiles, compile time, speed-up.

Right-hand side: an MLP 16 -> 32 -> 16 (tanh) on a batch of 32 states, classic RK4,
forward and backward (``backprop``; ``anode`` for the graph checks). Printed, all from
one run:

1. dynamo only (``backend="eager"``): graphs and graph breaks of ``odeint`` over
   ``--steps`` steps with ``fullgraph=True``, and the number of graphs after three step
   sizes (the grid is ``t = linspace(0, T, steps + 1)`` for three ``T``: one graph means
   no recompile);
2. inductor, whole solve in one graph (the loop unrolled) over ``--full-steps`` steps:
   compile time of forward + backward and steady-state time against eager;
3. inductor, one compiled RK4 step (``make_step_h``: the step size is a tensor) called
   ``--steps`` times: compile time and steady-state time against eager ``odeint``;
4. ``ODEBlock(compile=--chunk)`` over ``--steps`` steps: one compiled chunk of ``--chunk``
   steps called ``steps / chunk`` times, compile time, graphs, steady state against the eager
   block.

Usage: ``python tests/benchmarks/bench_compile.py [--steps 100] [--full-steps 10]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo
from torch._dynamo.utils import counters

import odenet
from odenet.solvers._stepper import make_step_h


class RHS(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16)
        )

    def forward(self, t, y):
        return self.net(y)


def _steady(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--full-steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=10, help="steps per compiled chunk (section 4)")
    args = ap.parse_args()
    torch.manual_seed(0)
    rhs = RHS()
    y0 = torch.randn(32, 16, requires_grad=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP 16-32-16, "
          f"batch 32, rk4")

    def solve(y, t, gradient="backprop"):
        return odenet.odeint(rhs, y, t, method="rk4", gradient=gradient)[-1]

    def fwd_bwd(fn, n, T=1.0, **kw):
        out = fn(y0, torch.linspace(0.0, T, n + 1), **kw)
        out.square().sum().backward()

    # 1. graph breaks and recompiles (dynamo only)
    for gradient in ("backprop", "anode"):
        torch._dynamo.reset()
        counters.clear()
        ex = torch._dynamo.explain(solve)(y0, torch.linspace(0.0, 1.0, args.steps + 1),
                                          gradient)
        torch._dynamo.reset()
        counters.clear()
        c = torch.compile(solve, fullgraph=True, backend="eager")
        t0 = time.perf_counter()
        for T in (0.5, 1.0, 2.0):
            fwd_bwd(c, args.steps, T, gradient=gradient)
        dt = time.perf_counter() - t0
        print(f"[dynamo] {gradient:8s} {args.steps} steps: graphs {ex.graph_count}, graph breaks "
              f"{ex.graph_break_count}; after three step sizes: "
              f"{counters['stats']['unique_graphs']} graph(s), tracing {dt:.1f} s")

    # 2. inductor, the whole solve as one graph
    torch._dynamo.reset()
    n = args.full_steps
    c = torch.compile(solve, fullgraph=True)
    t0 = time.perf_counter()
    fwd_bwd(c, n)
    t_compile = time.perf_counter() - t0
    te = _steady(lambda: fwd_bwd(solve, n), args.repeats)
    tc = _steady(lambda: fwd_bwd(c, n), args.repeats)
    print(f"[inductor, one graph] {n} steps fwd+bwd: compile {t_compile:.1f} s; eager "
          f"{te * 1e3:.2f} ms, compiled {tc * 1e3:.2f} ms, speed-up {te / tc:.2f}x")

    # 3. inductor, one compiled step in a Python loop
    torch._dynamo.reset()
    step = make_step_h(odenet.METHODS["rk4"])

    def one(f, t0, t1, y):
        h = t1 - t0
        mid = t0 + 0.5 * h
        return step(f, (t0, mid, mid, t1), y, h)

    cstep = torch.compile(one, fullgraph=True)

    def stepped(stepfn, y, t):
        for k in range(len(t) - 1):
            y = stepfn(rhs, t[k], t[k + 1], y)
        return y

    n = args.steps
    t0 = time.perf_counter()
    fwd_bwd(lambda y, t: stepped(cstep, y, t), n)
    t_compile = time.perf_counter() - t0
    te = _steady(lambda: fwd_bwd(solve, n), args.repeats)
    tc = _steady(lambda: fwd_bwd(lambda y, t: stepped(cstep, y, t), n), args.repeats)
    print(f"[inductor, compiled step] {n} steps fwd+bwd: compile {t_compile:.1f} s; eager "
          f"odeint {te * 1e3:.2f} ms, compiled steps {tc * 1e3:.2f} ms, speed-up "
          f"{te / tc:.2f}x")

    # 4. ODEBlock(compile=k): one compiled chunk of k steps, called steps / k times
    torch._dynamo.reset()
    counters.clear()
    eager_block = odenet.nn.ODEBlock(rhs, steps=n, method="rk4", gradient="backprop")
    block = odenet.nn.ODEBlock(rhs, steps=n, method="rk4", gradient="backprop",
                               compile=args.chunk)

    def run_block(b):
        b(y0).square().sum().backward()

    t0 = time.perf_counter()
    run_block(block)
    t_compile = time.perf_counter() - t0
    te = _steady(lambda: run_block(eager_block), args.repeats)
    tc = _steady(lambda: run_block(block), args.repeats)
    print(f"[ODEBlock(compile={args.chunk})] {n} steps fwd+bwd: compile {t_compile:.1f} s, "
          f"{counters['stats']['unique_graphs']} graph(s); eager block {te * 1e3:.2f} ms, "
          f"compiled chunks {tc * 1e3:.2f} ms, speed-up {te / tc:.2f}x")


if __name__ == "__main__":
    main()
