"""Benchmark: ``ConvFFT.solve`` against a bare FFT round trip and conjugate gradients.

For B 8, C 32, 32x32 and B 8, C 64, 128x128 in float64 and float32, with 3x3 ``randn`` kernels
and gamma 1, times measured in interleaved rounds (every case once per round, ratios taken within
a round, medians over rounds; one thread unless ``--threads``):

* ``round trip``: ``irfft2(rfft2(r))``, the floor any FFT solve pays;
* ``solve``: ``L.solve(r, gamma)`` with the cached symbol (what every IMEX stage calls);
* ``naive``: the same solve written out with the symbol recomputed on every call;
* ``reflect``: ``L.solve`` with ``boundary="reflect"`` (DCT-II) on a symmetric kernel;
* ``fwd+bwd``: ``L.solve`` forward and backward (gradients for ``r`` and the weight);
* ``CG``: conjugate gradients on ``(I + γKᵀK) x = r`` with ``K`` applied by circular
  ``conv2d`` (``Kᵀ``: the flipped kernel), to a relative residual of 1e-10 (float64) or 1e-5
  (float32, whose round-off floor is above 1e-10), with its iteration count.

Ratios are to the round trip; the target is ``solve / round trip <= 1.3``.

Run: ``python tests/benchmarks/bench_linear.py [--threads N] [--rounds R] [--no-cg]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from odenet.linear import ConvFFT

GAMMA = 1.0


def _k(y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``K y``: depthwise cross-correlation with circular padding."""
    p = w.shape[-1] // 2
    return F.conv2d(F.pad(y, (p, p, p, p), mode="circular"), w, groups=w.shape[0])


def _kt(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``Kᵀ z``: with periodic boundaries, the cross-correlation with the flipped kernel."""
    return _k(z, w.flip(-2, -1))


def conjugate_gradients(r, w, gamma, rtol, maxiter=2000):
    """Plain CG for ``(I + γKᵀK) x = r`` (batched, one residual norm over the whole batch)."""

    def A(v):
        return v + gamma * _kt(_k(v, w), w)

    x = torch.zeros_like(r)
    res = r.clone()
    p = res.clone()
    rr = (res * res).sum()
    stop = (rtol**2) * rr
    it = 0
    while it < maxiter and rr > stop:
        Ap = A(p)
        alpha = rr / (p * Ap).sum()
        x.add_(p * alpha)
        res.sub_(Ap * alpha)
        rr_new = (res * res).sum()
        p.mul_(rr_new / rr).add_(res)
        rr = rr_new
        it += 1
    return x, it


def naive_solve(r, w, gamma):
    H, W = r.shape[-2:]
    k = w.shape[-1]
    khat = torch.fft.rfft2(F.pad(w[:, 0], (0, W - k, 0, H - k)))
    return torch.fft.irfft2(torch.fft.rfft2(r) / (1 + gamma * khat.abs().square()), s=(H, W))


def _time(fn, number: int) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / number


def interleaved(cases: dict, rounds: int, number: int) -> tuple[float, dict]:
    """Time every case once per round, in turn; return the median round-trip time (s) and the
    median over rounds of each case's time divided by the round trip's of the same round (so a
    load change on the shared machine hits both sides of a ratio alike)."""
    trips, ratios = [], {k: [] for k in cases}
    for _ in range(rounds):
        t = {k: _time(fn, number) for k, fn in cases.items()}
        trips.append(t["trip"])
        for k in cases:
            ratios[k].append(t[k] / t["trip"])
    return statistics.median(trips), {k: statistics.median(v) for k, v in ratios.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per case")
    ap.add_argument("--no-cg", action="store_true", help="skip the (slow) CG column")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {dev}, threads {torch.get_num_threads()}, gamma {GAMMA}, 3x3 randn kernels, "
          f"median of {args.rounds} interleaved rounds")
    head = (
        f"{'case':<24}{'trip ms':>9}{'solve':>8}{'naive':>8}{'reflect':>9}{'fwd+bwd':>9}"
        f"{'CG':>8}{'CG it':>7}{'CG err':>9}"
    )
    print(head)
    print("-" * len(head))
    for B, C, H in [(8, 32, 32), (8, 64, 128)]:
        for dtype in (torch.float64, torch.float32):
            r = torch.randn(B, C, H, H, dtype=dtype, device=dev)
            w = torch.randn(C, 1, 3, 3, dtype=dtype, device=dev)
            L = ConvFFT(w)
            ws = (w + w.flip(-2)) / 2
            ws = (ws + ws.flip(-1)) / 2
            Lr = ConvFFT(ws, boundary="reflect")
            Lg = ConvFFT(torch.nn.Parameter(w.clone()))
            rg = r.clone().requires_grad_()
            cases = {
                "trip": lambda r=r, H=H: torch.fft.irfft2(torch.fft.rfft2(r), s=(H, H)),
                "solve": lambda r=r, L=L: L.solve(r, GAMMA),
                "naive": lambda r=r, w=w: naive_solve(r, w, GAMMA),
                "reflect": lambda r=r, Lr=Lr: Lr.solve(r, GAMMA),
                "fwd+bwd": lambda rg=rg, Lg=Lg: Lg.solve(rg, GAMMA).sum().backward(),
            }
            for fn in cases.values():  # warm up (caches, allocator, FFT plans)
                fn()
            small = H <= 64
            trip, ratio = interleaved(cases, args.rounds if small else 3, 5 if small else 1)
            cg, its, err = float("nan"), 0, float("nan")
            if not args.no_cg:
                rtol = 1e-10 if dtype == torch.float64 else 1e-5
                t0 = time.perf_counter()
                xc, its = conjugate_gradients(r, w, GAMMA, rtol)
                cg = (time.perf_counter() - t0) / trip
                x = L.solve(r, GAMMA)
                err = ((xc - x).norm() / x.norm()).item()
            name = f"B{B} C{C} {H}x{H} {str(dtype)[6:]}"
            print(
                f"{name:<24}{trip * 1e3:>9.3f}{ratio['solve']:>8.2f}{ratio['naive']:>8.2f}"
                f"{ratio['reflect']:>9.2f}{ratio['fwd+bwd']:>9.2f}{cg:>8.0f}{its:>7d}{err:>9.1e}"
            )
    print("columns after 'trip ms' (the bare rfft2 + irfft2 round trip): time / round-trip time")
    print("(target: solve <= 1.3). CG: one run to rtol 1e-10 (float64) / 1e-5 (float32); CG err:")
    print("relative difference between the CG and FFT solutions.")


if __name__ == "__main__":
    main()
