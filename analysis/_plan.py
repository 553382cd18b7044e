"""A memory-budgeted gradient plan: one gradient strategy per ODE block, fastest within a budget.

:func:`plan_gradients` measures, for every ODE block of a network on its real input
(captured with forward hooks), each candidate strategy's memory (what the block holds
from its forward until its backward, and the transient peak of its backward), its
forward+backward time and its gradient error against backprop; then it chooses per block
the strategy that minimises the network's time under the byte budget, keeping gradients
exact unless ``allow_inexact``, and checks the choice by measuring the whole network's
peak with the plan applied (re-planning with the measured calibration when the
prediction was low). Memory: on CUDA the allocator's peak; on CPU the bytes glibc's malloc
has handed out (``mallinfo2``, exact; the peak sampled every 0.1 ms), or, without glibc, the
resident set size as :mod:`odenet.analysis._cost` reads it (Linux kernels from 6.2 on keep
approximate per-CPU resident-set counters, too coarse for small networks, hence malloc's own
count first).
"""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import odenet
from odenet.analysis._cost import (
    _peak_rss_bytes,
    _reset_peak,
    _rss_bytes,
    _track_live_memory,
)
from odenet.analysis._gradients import gradient_consistency, parse_strategy
from odenet.analysis._results import Result, format_table
from odenet.analysis._user_model import (
    BlockCapture,
    capture_blocks,
    check_inputs,
    find_blocks,
    network_loss,
    set_strategies,
)
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["Plan", "candidate_strategies", "measure_network", "plan_gradients"]


# -- memory probes ---------------------------------------------------------------------------------
def _mallinfo():
    """glibc's ``mallinfo2`` as a function returning the bytes in use, or ``None``."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Info

    def used() -> int:
        info = fn()
        return int(info.uordblks + info.hblkhd)

    return used


_MALLINFO = _mallinfo()


class _Probe:
    """Memory in use and its peak since :meth:`start`, in bytes.

    CUDA: the caching allocator's ``memory_allocated`` and ``max_memory_allocated``. CPU
    with glibc: the bytes malloc has handed out (``mallinfo2``: exact, every CPU tensor is
    a malloc block), the peak sampled by a thread every 0.1 ms while a measurement runs
    (the switch interval of the interpreter lowered meanwhile). Elsewhere: the resident
    set size and its high-water mark, as :mod:`odenet.analysis._cost` reads them.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.exact = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._peak = 0
        if not self.cuda and _MALLINFO is None:
            _track_live_memory()

    @property
    def name(self) -> str:
        if self.cuda:
            return "cuda.max_memory_allocated"
        if _MALLINFO is not None:
            return "mallinfo2 (sampled peak)"
        return "VmHWM" if self.exact else "ru_maxrss"

    def start(self) -> int:
        self.stop()
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return torch.cuda.memory_allocated(self.device)
        if _MALLINFO is not None:
            base = self._peak = _MALLINFO()
            self._stop.clear()
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(1e-4)
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
            return base
        base = _rss_bytes()
        self.exact = _reset_peak()
        return base if self.exact else _peak_rss_bytes()

    def _sample(self) -> None:
        assert _MALLINFO is not None
        while not self._stop.wait(1e-4):
            v = _MALLINFO()
            if v > self._peak:
                self._peak = v

    def now(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.memory_allocated(self.device)
        if _MALLINFO is not None:
            v = _MALLINFO()
            self._peak = max(self._peak, v)
            return v
        return _rss_bytes()

    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        if _MALLINFO is not None:
            return max(self._peak, self.now())
        return _peak_rss_bytes()

    def stop(self) -> None:
        """End the sampling thread (if any)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            sys.setswitchinterval(self._switch)


def _device(inputs) -> torch.device:
    t = inputs[0] if isinstance(inputs, tuple) else inputs
    return t.device


def measure_network(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    blocks: Sequence[nn.Module] | None = None,
    strategies: object = None,
    *,
    loss: Callable[[Any], Tensor] | None = None,
    repeats: int = 3,
    memory: bool = True,
) -> dict[str, Any]:
    """Peak memory and forward+backward time of the whole network with the given strategies.

    ``strategies``: one strategy (name or instance) for every block, one per block, or ``None``
    for the blocks' own. After a warm-up run, ``repeats`` runs are timed (median ``time_s``,
    each in ``times_s``) and the memory peak above the memory in use before them is
    ``peak_bytes`` (``probe`` names how it was read; ``None`` with ``memory=False``). Gradients
    are taken for the parameters that require grad (their ``.grad`` is not touched); the model
    runs in evaluation mode (restored afterwards). The memory comes from one more run after the
    timed ones (see :class:`_Probe`), so that sampling the peak does not slow the timed runs.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._plan import measure_network
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=2, steps=2)
    >>> m = measure_network(net, torch.randn(2, 1, 8, 8), strategies="anode", repeats=1)
    >>> m["time_s"] > 0 and m["peak_bytes"] >= 0
    True
    """
    from odenet.analysis._user_model import _run_model

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ArgumentError(f"repeats: expected a positive integer, got {repeats!r}")
    inputs = check_inputs(inputs)
    if blocks is None:
        blocks = [m for _, m in find_blocks(model)]
    loss_of = loss or network_loss(None, None)
    params = [p for p in model.parameters() if p.requires_grad]
    undo = set_strategies(blocks, strategies) if strategies is not None else (lambda: None)
    was = model.training
    model.eval()
    probe = _Probe(_device(inputs))

    def run() -> None:
        value = loss_of(_run_model(model, inputs))
        grads = torch.autograd.grad(value, params, allow_unused=True)
        del grads, value

    try:
        run()  # warm-up
        times = []
        for _ in range(repeats):
            if probe.cuda:
                torch.cuda.synchronize(probe.device)
            t0 = time.perf_counter()
            run()
            if probe.cuda:
                torch.cuda.synchronize(probe.device)
            times.append(time.perf_counter() - t0)
        peak = None
        if memory:
            base = probe.start()  # memory: one more run, with the peak sampled
            try:
                run()
                peak = probe.peak() - base
            finally:
                probe.stop()
    finally:
        undo()
        model.train(was)
    return {"time_s": statistics.median(times), "times_s": times,
            "peak_bytes": None if peak is None else max(peak, 0), "probe": probe.name}


# -- per block -------------------------------------------------------------------------------------
def candidate_strategies(steps: int, *, allow_inexact: bool = False) -> list[str]:
    """The strategies a plan considers for a block of ``steps`` steps: backprop, anode,
    revolve with 1, 2 and about √Nt checkpoints (fewer than Nt), adjoint, and ``"reversible"``
    when :data:`odenet.gradients.STRATEGIES` has it (each is measured; one that fails on the
    block, or whose gradient is not exact without ``allow_inexact``, is dropped).

    Examples
    --------
    >>> from odenet.analysis._plan import candidate_strategies
    >>> candidate_strategies(16)[:5]
    ['backprop', 'anode', 'revolve:1', 'revolve:2', 'revolve:4']
    """
    ks = sorted({1, 2, max(1, round(math.sqrt(steps)))})
    out = ["backprop", "anode", *(f"revolve:{k}" for k in ks if k < steps), "adjoint"]
    if "reversible" in odenet.gradients.STRATEGIES:
        out.append("reversible")
    return out


def _block_run(cap: BlockCapture, strategy: object):
    """``(forward, backward)`` of one block alone with ``strategy`` on its captured input."""
    _, strat = parse_strategy(strategy) if isinstance(strategy, str) else ("", strategy)
    t = torch.tensor([0.0, cap.T], dtype=cap.input.dtype, device=cap.input.device)
    loss = cap.loss()
    params = list(cap.params)

    def forward():
        x = cap.input.detach().clone().requires_grad_(True)
        y = odenet.odeint(cap.rhs, x, t, method=cap.tableau, step_size=cap.step_size,
                          gradient=strat, implicit=cap.implicit, params=params)
        return x, y

    def backward(state) -> None:
        x, y = state
        value = loss(y)
        grads = torch.autograd.grad(value, [x, *params], allow_unused=True)
        del grads, value

    return forward, backward


def _block_memory(cap: BlockCapture, strategy: object, probe: _Probe, repeats: int = 2
                  ) -> tuple[int, int]:
    """``(held, peak)`` bytes of one block: memory its forward keeps until the backward, and
    the peak of forward+backward, above the memory in use before (largest of ``repeats``)."""
    forward, backward = _block_run(cap, strategy)
    backward(forward())  # warm-up
    held = peak = 0
    for _ in range(repeats):
        base = probe.start()
        try:
            state = forward()
            held = max(held, probe.now() - base)
            backward(state)
            del state
            peak = max(peak, probe.peak() - base)
        finally:
            probe.stop()
    return max(held, 0), max(peak, held, 0)


def _block_times(cap: BlockCapture, names: Sequence[str], rounds: int) -> dict[str, float]:
    """Fastest forward+backward seconds per strategy over ``rounds`` interleaved rounds (the
    least disturbed by other work on the machine: what the strategy itself costs)."""
    runs = {n: _block_run(cap, n) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up
        f, b = runs[n]
        b(f())
    for r in range(rounds):
        order = list(names[r % len(names):]) + list(names[: r % len(names)])
        for n in order:
            f, b = runs[n]
            t0 = time.perf_counter()
            b(f())
            times[n].append(time.perf_counter() - t0)
    return {n: min(v) for n, v in times.items()}


# -- the plan --------------------------------------------------------------------------------------
class Plan(Result):
    """A gradient strategy per ODE block, chosen by :func:`plan_gradients`.

    Rows (one per block): ``block``, ``strategy``, ``memory_mb`` (the block's held memory
    and backward peak), ``time_s`` (the block's forward+backward), ``grad_error`` (relative
    ∂L/∂θ error against backprop on the block). ``candidates`` holds every measured option.
    Summary: ``budget_bytes``, ``predicted_peak_bytes``, ``measured_peak_bytes`` (the whole
    network with the plan applied), ``meets_budget``, ``feasible`` (some assignment fits the
    budget by the measurements; if not, the plan is the one with the least memory),
    ``measured_time_s``, ``single_strategy`` (the race against the fastest single strategy
    predicted to fit, when it differs from the per-block choice).

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis import plan_gradients
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=2, steps=4)
    >>> plan = plan_gradients(net, torch.randn(4, 1, 8, 8), budget_bytes=2**30, repeats=1)
    >>> sorted(plan.assignment)
    ['stages.0.0', 'stages.0.1']
    >>> undo = plan.apply(net)
    >>> from odenet.analysis._user_model import strategy_label
    >>> strategy_label(net.stages[0][0].gradient) == plan.assignment["stages.0.0"]
    True
    >>> undo()
    >>> net.stages[0][0].gradient
    ANODE()
    """

    kind = "gradient_plan"
    columns = ("block", "strategy", "held_mb", "peak_mb", "time_s", "grad_error")

    def title(self) -> str:
        return f"gradient plan within {self.budget_bytes / 2**20:.1f} MB"

    def notes(self) -> list[str]:
        s = self.summary
        out = [f"predicted peak {s['predicted_peak_bytes'] / 2**20:.1f} MB, measured "
               f"{s['measured_peak_bytes'] / 2**20:.1f} MB ({s['probe']}) with the plan "
               f"applied: {'within' if s['meets_budget'] else 'OVER'} the budget; measured "
               f"network forward+backward {s['measured_time_s']:.3g} s"]
        v = s.get("single_strategy")
        if v:
            out.append(f"raced on the network against {v['strategy']} on every block "
                       f"({v['peak_bytes'] / 2**20:.1f} MB): {v['time_s']:.3g} s against the "
                       f"per-block choice's {v['plan_time_s']:.3g} s (fastest of the rounds)")
        if not s["feasible"]:
            out.append("no assignment of the measured strategies fits the budget: the plan "
                       "uses the least memory")
        if s.get("dropped"):
            out.append("not considered: " + "; ".join(s["dropped"]))
        return out

    @property
    def assignment(self) -> dict[str, str]:
        """Block name → strategy name."""
        return {r["block"]: r["strategy"] for r in self.rows}

    def apply(self, model: nn.Module) -> Callable[[], None]:
        """Set each block of ``model`` to its planned strategy (blocks matched by name);
        returns a function that restores the previous strategies.

        Raises
        ------
        odenet.errors.ArgumentError
            ``model`` lacks a block of the plan.
        """
        blocks = dict(find_blocks(model))
        missing = [n for n in self.assignment if n not in blocks]
        if missing:
            raise ArgumentError(f"model: has no ODE block named {missing[0]!r} (the plan's "
                                f"blocks: {', '.join(self.assignment)})")
        names = list(self.assignment)
        return set_strategies([blocks[n] for n in names], [self.assignment[n] for n in names])

    def table(self) -> str:
        rows = [[r["block"], r["strategy"], r["held_mb"], r["peak_mb"], r["time_s"],
                 r["grad_error"]] for r in self.rows]
        body = format_table(["block", "strategy", "memory held (MB)", "backward peak (MB)",
                             "time (s)", "gradient error"], rows, self.title())
        return body + "\n" + "\n".join(self.notes())


def _predict(held: Sequence[int], peak: Sequence[int], other: float) -> float:
    """Network peak: in backward, block i runs while blocks 1..i still hold their memory."""
    acc, worst = 0, 0
    for h, p in zip(held, peak):
        worst = max(worst, acc + p)
        acc += h
    return other + max(worst, acc)


def _choose(options: list[list[dict[str, Any]]], budget: float, other: float
            ) -> tuple[list[dict[str, Any]], bool]:
    """The fastest assignment within the budget (exhaustive when small, else greedy); the
    least-memory one when none fits."""
    sizes = [len(o) for o in options]
    best, best_t = None, math.inf
    if math.prod(sizes) <= 200_000:
        for combo in itertools.product(*options):
            mem = _predict([c["held"] for c in combo], [c["peak"] for c in combo], other)
            t = sum(c["time_s"] for c in combo)
            if mem <= budget and t < best_t:
                best, best_t = list(combo), t
    else:  # greedy: from the fastest, trade time for memory where it buys the most
        cur = [min(o, key=lambda c: c["time_s"]) for o in options]

        def mem_of(a):
            return _predict([c["held"] for c in a], [c["peak"] for c in a], other)

        while mem_of(cur) > budget:
            moves = []
            for i, o in enumerate(options):
                for c in o:
                    trial = [*cur[:i], c, *cur[i + 1:]]
                    dm = mem_of(cur) - mem_of(trial)
                    if dm > 0:
                        moves.append((max(c["time_s"] - cur[i]["time_s"], 1e-12) / dm, i, c))
            if not moves:
                break
            _, i, c = min(moves, key=lambda m: m[0])
            cur[i] = c
        if mem_of(cur) <= budget:
            best = cur
    if best is not None:
        return best, True
    least = [min(o, key=lambda c: (c["held"] + c["peak"], c["time_s"])) for o in options]
    return least, False


def _best_single(options: list[list[dict[str, Any]]], budget: float, other: float
                 ) -> list[dict[str, Any]] | None:
    """The one strategy on every block that is predicted fastest within the budget."""
    names = set.intersection(*({c["strategy"] for c in o} for o in options))
    best, best_t = None, math.inf
    for n in names:
        combo = [next(c for c in o if c["strategy"] == n) for o in options]
        mem = _predict([c["held"] for c in combo], [c["peak"] for c in combo], other)
        t = sum(c["time_s"] for c in combo)
        if mem <= budget and t < best_t:
            best, best_t = combo, t
    return best


def _race(model: nn.Module, inputs, blocks, loss_of, assignments: Sequence[Sequence[str]],
          rounds: int) -> list[float]:
    """Fastest forward+backward seconds of the network under each assignment, interleaved."""
    times: list[list[float]] = [[] for _ in assignments]
    for r in range(rounds + 1):  # the first round warms up
        for i in (range(len(assignments)) if r % 2 else reversed(range(len(assignments)))):
            m = measure_network(model, inputs, blocks, assignments[i], loss=loss_of, repeats=1,
                                memory=False)
            if r:
                times[i].append(m["time_s"])
    return [min(t) for t in times]


def plan_gradients(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    budget_bytes: int | float,
    allow_inexact: bool = False,
    *,
    targets: Tensor | None = None,
    loss: Callable | None = None,
    strategies: Sequence[str] | None = None,
    tolerance: float | None = None,
    repeats: int = 3,
) -> Plan:
    """Choose a gradient strategy per ODE block to minimise training time within a memory budget.

    Every block's real input is captured from ``inputs`` (forward hooks). For each block and
    candidate strategy (:func:`candidate_strategies`, or ``strategies``) the plan measures the
    memory the block holds from its forward until its backward, the peak of its
    forward+backward, the forward+backward time (the fastest of interleaved rounds), and the
    relative error of ∂L/∂θ against backprop (L: the network's loss linearised at the block
    output). A strategy whose error exceeds ``tolerance`` (default: the dtype's machine epsilon
    to the power 2/3, 2.4e-5 in float32, 3.7e-11 in float64) is used only with ``allow_inexact``
    (the adjoint's error is :math:`O(h^p)`); a strategy that fails on the block (e.g.
    ``"reversible"`` with a method that is not reversible) is dropped. The network's peak is
    predicted as the memory outside the blocks (measured with every block on backprop) plus, in
    backward order, the blocks' held memory and the running block's peak; the fastest assignment
    within ``budget_bytes`` is chosen (exhaustively for small networks). The plan is then
    applied and the whole network's peak measured; if it exceeds the budget, the prediction is
    rescaled by the measured ratio and the plan chosen again (up to three times). The per-block
    times are a model of the network's time: the plan is finally raced on the whole network
    against the single strategy predicted fastest within the budget (interleaved runs, the
    fastest of each), and the faster of the two that fits is kept (``single_strategy`` records
    the race).

    Parameters
    ----------
    model : nn.Module
        A network containing ODE blocks (see :mod:`odenet.analysis._user_model` for the
        block protocol).
    inputs : Tensor or tuple of Tensor
        A batch of the size you train with.
    budget_bytes : int or float
        The memory budget of one forward+backward of the network, in bytes (above what is
        in use before it).
    allow_inexact : bool, default False
        Also use strategies whose gradient is not the exact gradient of the discrete
        network (the optimize-then-discretize adjoint).
    targets, loss :
        The network's loss (see :func:`odenet.analysis.report`).
    strategies : sequence of str, optional
        The candidates (default :func:`candidate_strategies` of each block).
    tolerance : float, optional
        Largest relative gradient error counted as exact.
    repeats : int, default 3
        Timed rounds per block and runs of the whole network.

    Returns
    -------
    Plan
        ``print(plan)`` shows the table; ``plan.apply(model)`` sets the strategies.

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument (a non-positive budget, a model without ODE blocks, unknown
        strategies, ...), named in the message.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis import plan_gradients
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=2, steps=4)
    >>> plan = plan_gradients(net, torch.randn(4, 1, 8, 8), 2**30, repeats=1)
    >>> plan.meets_budget, plan.feasible
    (True, True)
    >>> "adjoint" in plan.assignment.values()  # inexact: not without allow_inexact=True
    False
    """
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, float)) or not (
            math.isfinite(budget_bytes) and budget_bytes > 0):
        raise ArgumentError(f"budget_bytes: expected a finite positive number of bytes, got "
                            f"{budget_bytes!r}")
    if not isinstance(allow_inexact, bool):
        raise ArgumentTypeError(f"allow_inexact: expected a bool, got "
                                f"{type(allow_inexact).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ArgumentError(f"repeats: expected a positive integer, got {repeats!r}")
    if strategies is not None:
        from odenet.analysis._report import strategy_error

        if isinstance(strategies, str) or not isinstance(strategies, (list, tuple)):
            raise ArgumentTypeError("strategies: expected a list of strategy names, got "
                                    f"{type(strategies).__name__}")
        for s in strategies:
            msg = strategy_error(s)
            if msg:
                raise ArgumentError(f"strategies: {msg}")
    caps, _ = capture_blocks(model, inputs, targets=targets, loss=loss)
    for c in caps:
        if not hasattr(c.module, "gradient"):
            raise ArgumentError(f"model: the block {c.name!r} has no writable 'gradient' "
                                "attribute; a plan sets each block's strategy")
    gc.collect()
    dtype = caps[0].input.dtype
    tol = torch.finfo(dtype).eps ** (2 / 3) if tolerance is None else float(tolerance)
    probe = _Probe(caps[0].input.device)
    options: list[list[dict[str, Any]]] = []
    dropped: dict[tuple[str, str], list[str]] = {}
    for cap in caps:
        names = list(strategies) if strategies is not None else candidate_strategies(
            cap.steps, allow_inexact=allow_inexact)
        names = ["backprop", *(n for n in dict.fromkeys(names) if n != "backprop")]
        g = gradient_consistency(cap.rhs, cap.input, cap.T, [cap.tableau], [cap.steps],
                                 [n for n in names if n != "backprop"] or ["anode"],
                                 loss=cap.loss(), params=cap.params, implicit=cap.implicit,
                                 fd_directions=0)
        errs = {r["strategy"]: r for r in g.rows}
        usable = []
        for n in names:
            r = errs.get(n)
            if r is None or r.get("error"):
                dropped.setdefault((n, r["error"] if r else "not measured"), []).append(
                    cap.name)
                continue
            e = r["grad_error"]
            if e > tol and not allow_inexact:
                dropped.setdefault((n, f"gradient error above {tol:.1e}; allow_inexact=True "
                                       "to use it"), []).append(f"{cap.name} ({e:.1e})")
                continue
            usable.append(n)
        times = _block_times(cap, usable, repeats)
        opts = []
        for n in usable:
            held, peak = _block_memory(cap, n, probe)
            opts.append({"block": cap.name, "strategy": n, "held": held, "peak": peak,
                         "time_s": times[n], "grad_error": errs[n]["grad_error"]})
        options.append(opts)
    blocks = [c.module for c in caps]
    loss_of = network_loss(loss, targets)
    base = measure_network(model, inputs, blocks, "backprop", loss=loss_of, repeats=1)
    bp = [next(o for o in opts if o["strategy"] == "backprop") for opts in options]
    other = max(base["peak_bytes"] - _predict([o["held"] for o in bp],
                                              [o["peak"] for o in bp], 0.0), 0.0)
    scale = 1.0
    for _ in range(3):
        chosen, feasible = _choose(options, budget_bytes / scale, other)
        predicted = _predict([c["held"] for c in chosen], [c["peak"] for c in chosen], other)
        m = measure_network(model, inputs, blocks, [c["strategy"] for c in chosen],
                            loss=loss_of, repeats=repeats)
        if m["peak_bytes"] <= budget_bytes or not feasible:
            break
        scale = max(scale * 1.05, m["peak_bytes"] / max(predicted, 1.0) * scale)
    single = _best_single(options, budget_bytes / scale, other)
    versus = None
    if feasible and single is not None and [c["strategy"] for c in chosen] != [
            c["strategy"] for c in single]:
        # the per-block times are a model: race the plan against the fastest single strategy
        # predicted to fit, on the whole network, and keep the faster one that fits
        s_m = measure_network(model, inputs, blocks, [c["strategy"] for c in single],
                              loss=loss_of, repeats=1)
        times = _race(model, inputs, blocks, loss_of,
                      [[c["strategy"] for c in chosen], [c["strategy"] for c in single]],
                      rounds=repeats)
        versus = {"strategy": single[0]["strategy"], "time_s": times[1],
                  "peak_bytes": s_m["peak_bytes"], "plan_time_s": times[0]}
        if s_m["peak_bytes"] <= budget_bytes and times[1] < times[0]:
            chosen, predicted = single, _predict([c["held"] for c in single],
                                                 [c["peak"] for c in single], other)
            m = {**s_m, "time_s": times[1]}
        else:
            m = {**m, "time_s": times[0]}
    rows = [{"block": c["block"], "strategy": c["strategy"], "held_mb": c["held"] / 2**20,
             "peak_mb": c["peak"] / 2**20, "time_s": c["time_s"],
             "grad_error": c["grad_error"]} for c in chosen]
    return Plan(rows, budget_bytes=float(budget_bytes), predicted_peak_bytes=predicted * scale,
                measured_peak_bytes=m["peak_bytes"], measured_time_s=m["time_s"],
                meets_budget=m["peak_bytes"] <= budget_bytes, feasible=feasible,
                probe=m["probe"], other_bytes=other, calibration=scale, tolerance=tol,
                allow_inexact=allow_inexact, single_strategy=versus,
                dropped=[f"{n} on {', '.join(b)}: {why}" for (n, why), b in dropped.items()],
                candidates=[{**o, "held_mb": o["held"] / 2**20, "peak_mb": o["peak"] / 2**20}
                            for opts in options for o in opts])
