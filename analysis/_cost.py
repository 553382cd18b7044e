"""Memory and time of each gradient strategy, each measurement in a fresh process."""

from __future__ import annotations

import gc
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from odenet import ButcherTableau, GradientStrategy, IMEXTableau
from odenet.analysis._common import (
    block_settings,
    check_positive,
    check_steps,
    check_tensor,
    fingerprint,
    unwrap_func,
)
from odenet.analysis._gradients import parse_strategy, solve_with
from odenet.analysis._region import resolve_method
from odenet.analysis._results import Result, new_figure
from odenet.analysis._sweep import CaseStore, run_cases
from odenet.analysis._torchdiffeq import Torchdiffeq, torchdiffeq_method
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = ["CostResult", "cost", "count_evaluations", "measure", "measure_times", "ode_blocks"]

_MARK = "ODENET-COST-RESULT "


# -- memory probes ---------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the peak resident set size to the current one (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _track_live_memory() -> bool:
    """Make glibc return freed blocks of 64 KiB and more to the OS at once.

    Sets ``M_MMAP_THRESHOLD`` (which also stops glibc from raising it after
    frees), so that the resident set size follows the live tensors and a peak
    above a baseline measures what a run allocates. Returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _peak_rss_bytes() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024


def _rss_bytes() -> int:
    rss = _status_kb("VmRSS")
    return rss * 1024 if rss is not None else _peak_rss_bytes()


# -- one measurement -------------------------------------------------------------------------------
def _make_run(
    func,
    y0: Tensor,
    strategy: str | GradientStrategy,
    method: str | ButcherTableau | IMEXTableau,
    steps: int,
    T: float = 1.0,
    *,
    implicit=None,
    params: Sequence[Tensor] | None = None,
) -> tuple[Callable[[], None], Callable[[], list]]:
    """``(run, apply)``: one forward+backward with ``strategy``, and what sets it up.

    ``apply()`` puts the strategy on a network's blocks and returns the undos
    (nothing for a single solve); ``run()`` must be called between the two.
    """
    from odenet.analysis._common import collect_params

    _, strat = parse_strategy(strategy)
    blocks = ode_blocks(func)
    if blocks and not callable(getattr(func, "rhs", None)):  # a whole network
        net = func
        params = [p for p in net.parameters() if p.requires_grad] if params is None else params

        def run() -> None:
            x = y0.detach().clone().requires_grad_(True)
            out = net(x)
            loss = 0.5 * out.square().sum()
            grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
            del grads, out, loss, x

        return run, lambda: _use_strategy(blocks, strat)
    f, _ = unwrap_func(func)
    tab = resolve_method(method)
    params = collect_params(f, implicit, params)
    t = torch.tensor([0.0, float(T)], dtype=y0.dtype, device=y0.device)
    h = float(T) / steps

    def run_solve() -> None:
        x = y0.detach().clone().requires_grad_(True)
        out = solve_with(strat, f, x, t, tab, h, implicit, params)
        loss = 0.5 * out[-1].square().sum()
        grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
        del grads, out, loss, x

    return run_solve, list


def measure(
    func,
    y0: Tensor,
    strategy: str,
    method: str | ButcherTableau | IMEXTableau,
    steps: int,
    T: float = 1.0,
    *,
    implicit=None,
    params: Sequence[Tensor] | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Peak memory and forward+backward time of one strategy, in this process.

    The loss is :math:`\\tfrac12\\|y(T)\\|^2`; gradients are taken for ``y0`` and
    the parameters. After one warm-up run (lazy initialisations, caches), the
    memory is the peak over ``repeats`` timed runs above the memory in use
    before them: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak
    resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``;
    ``getrusage`` elsewhere), with glibc set to return freed tensors to the
    system at once (``M_MMAP_THRESHOLD`` = 64 KiB, process-wide) so that the
    resident set follows the live tensors. Time is the median of the timed runs
    (``times_s``: each of them).

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._cost import measure
    >>> lin = torch.nn.Linear(8, 8)
    >>> m = measure(lambda t, y: torch.tanh(lin(y)), torch.randn(4, 8), "anode", "rk4", 8,
    ...             params=list(lin.parameters()), repeats=1)
    >>> m["time_s"] > 0 and m["peak_bytes"] >= 0
    True
    """
    run, apply = _make_run(func, y0, strategy, method, steps, T, implicit=implicit,
                           params=params)
    restore = apply()
    try:
        return _timed(run, y0.device, repeats)
    finally:
        for undo in restore:
            undo()


def measure_times(
    func,
    y0: Tensor,
    strategies: Sequence[str | GradientStrategy] | Mapping[str, str | GradientStrategy],
    method: str | ButcherTableau | IMEXTableau,
    steps: int,
    T: float = 1.0,
    *,
    implicit=None,
    params: Sequence[Tensor] | None = None,
    rounds: int = 5,
) -> dict[str, Any]:
    """Forward+backward times of several strategies, interleaved, in this process.

    Every strategy runs once as a warm-up; then each of ``rounds`` rounds runs
    every strategy once, in an order rotated from round to round, so that a
    change of the machine's load (another process, frequency scaling) reaches
    all strategies of a round alike. The ratio of two strategies is then taken
    per round, and its spread over the rounds is the spread of the ratio.

    ``strategies`` are names or instances, or a mapping from the names to use
    in the result to names or instances.

    Returns
    -------
    dict
        ``{"times_s": {name: [seconds per round]}, "errors": {name: message}}``
        (a strategy that fails in the warm-up is left out of the rounds).

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._cost import measure_times
    >>> lin = torch.nn.Linear(8, 8)
    >>> m = measure_times(lambda t, y: torch.tanh(lin(y)), torch.randn(4, 8),
    ...                   ["backprop", "anode"], "rk4", 4, params=list(lin.parameters()),
    ...                   rounds=3)
    >>> [len(v) for v in m["times_s"].values()]
    [3, 3]
    """
    cuda = y0.device.type == "cuda"
    runs: dict[str, tuple[Callable[[], None], Callable[[], list]]] = {}
    errors: dict[str, str] = {}
    named = (dict(strategies) if isinstance(strategies, Mapping)
             else {parse_strategy(s)[0]: s for s in strategies})
    for name, s in named.items():
        try:
            run, apply = _make_run(func, y0, s, method, steps, T, implicit=implicit,
                                   params=params)
            _once(run, apply, y0.device)  # warm-up
            runs[name] = (run, apply)
        except (RuntimeError, ValueError, TypeError) as err:
            errors[name] = _first_line(err)
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    for r in range(rounds):
        k = r % max(len(names), 1)
        for name in names[k:] + names[:k]:
            run, apply = runs[name]
            times[name].append(_once(run, apply, y0.device, cuda))
    return {"times_s": times, "errors": errors}


def count_evaluations(
    func,
    y0: Tensor,
    strategy: str | GradientStrategy,
    method: str | ButcherTableau | IMEXTableau,
    steps: int,
    T: float = 1.0,
    *,
    implicit=None,
) -> tuple[int, int]:
    r"""Evaluations of the right-hand side in one forward and in one backward pass.

    The same forward+backward as :func:`cost` measures (loss :math:`\tfrac12\|y(T)\|^2`,
    gradients for the input and the parameters), with every call of ``func`` (of every ODE
    block's ``rhs`` for a network) counted: forward-pass calls up to the loss, backward-pass
    calls during the gradient (recomputations, the adjoint's reverse solve).

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._cost import count_evaluations
    >>> class F(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(3, 3)
    ...     def forward(self, t, y):
    ...         return torch.tanh(self.lin(y))
    >>> y0 = torch.ones(2, 3)
    >>> count_evaluations(F(), y0, "backprop", "rk4", 5)  # 4 stages x 5 steps
    (20, 0)
    >>> count_evaluations(F(), y0, "anode", "rk4", 5)  # the steps recomputed in backward
    (20, 20)
    """
    calls = [0]

    def counted(fn):
        def g(t, y):
            calls[0] += 1
            return fn(t, y)

        return g

    def hook(*_):
        calls[0] += 1

    blocks = ode_blocks(func)
    network = bool(blocks) and not callable(getattr(func, "rhs", None))
    handles, undo = [], []
    if network:
        for b in blocks:
            if isinstance(b.rhs, torch.nn.Module):
                handles.append(b.rhs.register_forward_pre_hook(hook))
            else:
                old = b.rhs
                b.rhs = counted(old)
                undo.append(lambda b=b, old=old: setattr(b, "rhs", old))
        run_func = func
    else:
        f, _ = unwrap_func(func)
        if isinstance(f, torch.nn.Module):
            handles.append(f.register_forward_pre_hook(hook))
            run_func = f
        else:
            from odenet.analysis._common import collect_params

            params = collect_params(f, implicit, None)
            run_func = counted(f)
    try:
        if network:
            _, strat = parse_strategy(strategy)
            undo += _use_strategy(blocks, strat)
            x = y0.detach().clone().requires_grad_(True)
            out = run_func(x)
            params = [p for p in run_func.parameters() if p.requires_grad]
        else:
            _, strat = parse_strategy(strategy)
            tab = resolve_method(method)
            if isinstance(run_func, torch.nn.Module):
                from odenet.analysis._common import collect_params

                params = collect_params(run_func, implicit, None)
            t = torch.tensor([0.0, float(T)], dtype=y0.dtype, device=y0.device)
            x = y0.detach().clone().requires_grad_(True)
            out = solve_with(strat, run_func, x, t, tab, float(T) / steps, implicit,
                             params)[-1]
        forward = calls[0]
        torch.autograd.grad(0.5 * out.square().sum(), [x, *params], allow_unused=True)
        return forward, calls[0] - forward
    finally:
        for h in handles:
            h.remove()
        for u in undo:
            u()


def _once(run: Callable[[], None], apply: Callable[[], list], device: torch.device,
          cuda: bool | None = None) -> float:
    """Seconds of one ``run()`` with the strategy applied (the set-up is not timed)."""
    cuda = device.type == "cuda" if cuda is None else cuda
    restore = apply()
    try:
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0
    finally:
        for undo in restore:
            undo()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def ode_blocks(model: object) -> list:
    """The ODE blocks of a network (modules with ``rhs``, ``T``, ``steps`` and ``gradient``).

    Examples
    --------
    >>> import odenet
    >>> from odenet.analysis._cost import ode_blocks
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=3, steps=2)
    >>> len(ode_blocks(net))
    3
    """
    if not isinstance(model, torch.nn.Module):
        return []
    return [m for m in model.modules()
            if all(hasattr(m, a) for a in ("rhs", "T", "steps", "gradient", "method"))]


def _use_strategy(blocks: Sequence, strat) -> list:
    """Set the strategy ``strat`` (a name or an instance) on every block; return the undos.

    torchdiffeq's baselines are strategies too (:mod:`odenet.analysis._torchdiffeq`): the
    blocks keep their own forward; a block whose method torchdiffeq lacks is refused here,
    before anything is changed.
    """
    from odenet.gradients import resolve_gradient

    strategy = resolve_gradient(strat)
    if isinstance(strategy, Torchdiffeq):
        for b in blocks:
            if (torchdiffeq_method(resolve_method(b.method)) is None
                    or getattr(b, "implicit", None) is not None):
                raise ArgumentError(
                    f"strategy: torchdiffeq has no fixed-grid equivalent of the block's method "
                    f"{getattr(b.method, 'name', b.method)!r}"
                )
    undo = []
    for b in blocks:
        old = b.gradient
        b.gradient = strategy
        undo.append(lambda b=b, old=old: setattr(b, "gradient", old))
    return undo


def _timed(run, device: torch.device, repeats: int) -> dict[str, Any]:
    cuda = device.type == "cuda"
    if not cuda:
        _track_live_memory()
    run()  # warm-up: lazy initialisations are not part of the measurement
    gc.collect()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes()
        exact = _reset_peak()
        if not exact:
            base = _peak_rss_bytes()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
        probe = "cuda.max_memory_allocated"
    else:
        peak = _peak_rss_bytes() - base
        probe = "VmHWM" if exact else "ru_maxrss"
    return {"time_s": statistics.median(times), "times_s": times,
            "peak_bytes": int(max(peak, 0)), "probe": probe}


def _worker_main() -> None:  # pragma: no cover - runs in the child process
    payload = pickle.loads(sys.stdin.buffer.read())
    torch.set_num_threads(payload.pop("threads"))
    spec = payload.pop("spec", None)
    if spec is not None:
        from odenet.analysis._models import build_network

        net, x, _ = build_network(spec)
        payload.update(func=net, y0=x)
    if payload.pop("mode", "memory") == "time":
        result = measure_times(**payload)
    else:
        result = measure(**payload)
    sys.stdout.write(_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def _run_isolated(payload: dict, timeout: float) -> dict[str, Any]:
    data = pickle.dumps(payload)
    env = dict(os.environ)
    # the child imports what this process can import (the model's module included)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [here] + [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    proc = subprocess.run(
        [sys.executable, "-c", "from analysis._cost import _worker_main; _worker_main()"],
        input=data, capture_output=True, timeout=timeout, env=env, check=False,
    )
    out = proc.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    raise RuntimeError(err[-1] if err else f"measurement process exited with {proc.returncode}")


class CostResult(Result):
    """Peak memory and forward+backward time per strategy, with ratios to backprop.

    Returned by :func:`cost`. Every row comes from the same run: the memory of
    each strategy is measured in its own fresh process (or one after another in
    this process), the times of all strategies in one process, interleaved
    round by round. ``time_ratio`` is the median over the rounds of the
    per-round ratio to backprop, ``time_ratio_min`` and ``time_ratio_max`` its
    range; ``times_s`` holds every round's time.

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> class F(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(8, 8)
    ...     def forward(self, t, y):
    ...         return torch.tanh(self.lin(y))
    >>> res = analysis.cost(F(), torch.randn(4, 8), ["anode"], steps=4, repeats=1,
    ...                     isolate=False)
    >>> [(r["strategy"], r["status"]) for r in res.rows]
    [('backprop', 'ok'), ('anode', 'ok')]
    """

    kind = "cost"
    columns = ("strategy", "time_s", "time_ratio", "time_ratio_min", "time_ratio_max",
               "peak_mb", "memory_ratio", "nfe_forward", "nfe_backward", "status")

    def title(self) -> str:
        where = ("memory in a fresh process per strategy, times interleaved in one process"
                 if self.isolated else "in process")
        what = f"a network of {self.blocks} ODE block(s)" if self.network else "one solve"
        return (f"cost of the gradient strategies on {what} ({self.method}, Nt = {self.steps}, "
                f"{self.dtype}, device {self.device}; {where}; {self.repeats} round(s))")

    def notes(self) -> list[str]:
        """The rounds behind the time ratios and the strategies left out."""
        out = [f"time ratio: median over {self.repeats} round(s) of the per-round ratio to "
               "backprop (min and max beside); each round runs every strategy once",
               "nfe_forward, nfe_backward: evaluations of the right-hand side (of every block's "
               "for a network) in the forward and in the backward pass of one run, counted in "
               "one more run in this process"]
        out += [f"skipped: {s}" for s in self.skipped]
        return out

    def plot(self, ax=None):
        """Bar charts of the time and memory ratios to backprop (time: median, min–max bars).

        Examples
        --------
        >>> import torch
        >>> from odenet import analysis
        >>> A = torch.randn(8, 8)
        >>> res = analysis.cost(lambda t, y: y @ A, torch.randn(4, 8), ["anode"], steps=2,
        ...                     repeats=2, isolate=False)
        >>> len(res.plot().axes)
        2
        """
        fig, (a0, a1) = new_figure(1, 2, width=5.2, height=4.0)
        rows = [r for r in self.rows
                if r.get("time_ratio") is not None or r.get("memory_ratio") is not None]
        names = [r["strategy"] for r in rows]
        x = np.arange(len(rows))
        colors = [f"C{i}" for i in range(len(rows))]
        for ax, key, title in ((a0, "time_ratio", "time (forward + backward)"),
                               (a1, "memory_ratio", "peak memory")):
            vals = np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)
            bars = ax.bar(x, vals, color=colors)
            if key == "time_ratio":
                lo = np.array([np.nan if r.get("time_ratio_min") is None
                               else r["time_ratio_min"] for r in rows], float)
                hi = np.array([np.nan if r.get("time_ratio_max") is None
                               else r["time_ratio_max"] for r in rows], float)
                ax.errorbar(x, vals, yerr=[vals - lo, hi - vals], fmt="none", ecolor="k",
                            capsize=4, lw=1.0)
                for xi, v, a, b in zip(x, vals, lo, hi):
                    if not np.isfinite(v):
                        continue
                    spread = "" if not np.isfinite(a) or a == b else f"\n{a:.2f}–{b:.2f}"
                    top = b if np.isfinite(b) else v
                    ax.annotate(f"{v:.2f}{spread}", (xi, top), xytext=(0, 3),
                                textcoords="offset points", ha="center", va="bottom",
                                fontsize=9)
                ax.margins(y=0.18)
                ax.set_title(f"{title}\nmedian, min–max over {self.repeats} round(s)",
                             fontsize=10)
            else:
                ax.bar_label(bars, fmt="%.2f", fontsize=9)
                ax.set_title(title, fontsize=10)
            ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=9)
            ax.set_ylabel("ratio to backprop")
            ax.set_ylim(bottom=0)
        what = f"{self.blocks} ODE blocks, " if self.network else ""
        fig.suptitle(f"{what}{self.method}, Nt = {self.steps}, input {self.state_shape}, "
                     f"{self.dtype}", fontsize=10)
        return fig


def _check_callable_model(model: object, f, y0: Tensor, implicit) -> None:
    """Call ``f(t, y0)`` once, so that a model of the wrong kind fails here, with its name."""
    kind = (f"{type(model).__name__} has no ODE blocks and"
            if isinstance(model, torch.nn.Module) and model is f else
            f"{type(model).__name__}")
    hint = ("cost needs a network with ODE blocks (e.g. odenet.models.ODEResNet), an ODE block, "
            "a right-hand side func(t, y) or a model specification (dict)")
    try:
        with torch.no_grad():
            out = f(torch.zeros((), dtype=y0.dtype, device=y0.device), y0)
    except Exception as err:  # any failure of the trial call is the model's
        raise ArgumentTypeError(
            f"model: {kind} cannot be called as func(t, y) ({type(err).__name__}: "
            f"{_first_line(err)}); {hint}"
        ) from None
    if not isinstance(out, Tensor) or out.shape != y0.shape:
        got = (f"shape {tuple(out.shape)}" if isinstance(out, Tensor)
               else type(out).__name__)
        raise ArgumentTypeError(
            f"model: func(t, y) returned {got} for a state of shape {tuple(y0.shape)}; {hint}"
        )


def cost(
    model,
    input: Tensor | None = None,
    strategies: Sequence[str | GradientStrategy] = (
        "anode", "revolve", "adjoint", "torchdiffeq", "torchdiffeq-adjoint",
    ),
    *,
    method: str | ButcherTableau | IMEXTableau | None = None,
    steps: int | None = None,
    T: float | None = None,
    implicit=None,
    repeats: int = 5,
    isolate: bool = True,
    threads: int = 1,
    timeout: float = 600.0,
    store=None,
    progress: bool | None = False,
) -> CostResult:
    """Peak memory and time of forward+backward for each gradient strategy, as ratios to backprop.

    Each strategy (backprop first, as the reference) solves ``y' = f(t, y)``
    from ``input`` over ``[0, T]`` with ``steps`` steps and is differentiated
    for ``input`` and the parameters (loss :math:`\\tfrac12\\|y(T)\\|^2`); for a
    network, every ODE block uses the strategy (torchdiffeq's solvers replace
    the blocks' solves) and the loss is half the squared output. With
    ``isolate`` the peak memory of every strategy is measured in a fresh Python
    process (so that one strategy's allocations cannot hide another's peak):
    peak resident set size on CPU, ``torch.cuda.max_memory_allocated`` on
    CUDA. The times are measured in one more process, interleaved: each of
    ``repeats`` rounds runs every strategy once (in a rotated order), and each
    time ratio is the median over the rounds of that round's ratio to
    backprop, with its min–max range. torchdiffeq's ``odeint`` and
    ``odeint_adjoint`` are measured beside odenet's strategies when the method
    has a torchdiffeq equivalent (``euler``, ``midpoint``, ``rk4_38``).

    Parameters
    ----------
    model : callable, ODE block, network, or dict
        ``func(t, y)`` (an ``nn.Module`` or another picklable callable when
        ``isolate``), an ODE block (its ``rhs``, ``T``, ``steps``, ``method`` and
        ``implicit`` are the defaults), a network containing ODE blocks (e.g.
        :class:`odenet.models.ODEResNet`; the blocks keep their method and
        steps), or a model specification of the ``odenet-analysis`` command (a
        dict; its network is built in the child process). A module without ODE
        blocks must be callable as ``func(t, y)``; it is called once up front.
    input : Tensor
        The initial state, or the network's input (not needed for a specification).
    strategies : sequence
        ``"backprop"``, ``"anode"``, ``"revolve"`` (``"revolve:k"``), ``"adjoint"``,
        ``"torchdiffeq"``, ``"torchdiffeq-adjoint"``, or strategy instances.
    method : str or tableau, optional
        Default: the block's, else ``"rk4_38"``.
    steps : int, optional
        Number of steps (default: the block's, else 16).
    T : float, optional
        Final time (default: the block's, else 1).
    implicit : linear operator, optional
    repeats : int
        Timed rounds (after one warm-up run of every strategy); each round runs
        every strategy once.
    isolate : bool
        Measure in fresh processes (default). ``False`` measures in this
        process (for models that cannot be pickled).
    threads : int
        ``torch.set_num_threads`` in the measuring processes.
    timeout : float
        Seconds allowed per measuring process.
    store : path, optional
        JSON-lines file recording the finished measurement; rerunning the same
        measurement reads it back. The whole measurement is one record: an
        interrupted run is measured again from the start, so that every row
        comes from one run.
    progress : bool, optional
        Progress bar (``None``: on a terminal).

    Returns
    -------
    CostResult

    Raises
    ------
    odenet.errors.ArgumentTypeError
        ``model`` is not one of the kinds above (e.g. an ``nn.Module`` without
        ODE blocks whose ``forward`` does not take ``(t, y)``).
    odenet.errors.ArgumentError
        Invalid settings (non-positive ``repeats``, unknown strategies, ...).

    Examples
    --------
    >>> import torch
    >>> from odenet import analysis
    >>> block = analysis._models.build_case({"model": "dense", "channels": 2}).block
    >>> res = analysis.cost(block, torch.randn(4, 2, 8, 8, dtype=torch.float64),
    ...                     ["anode", "adjoint"], steps=8, repeats=3, isolate=False)
    >>> res.rows[0]["time_ratio"]
    1.0
    >>> r = res.rows[1]
    >>> r["time_ratio_min"] <= r["time_ratio"] <= r["time_ratio_max"]
    True
    """
    spec, f, y0, implicit, network, block = _resolve_model(model, input, method, steps, T,
                                                           implicit)
    if network:
        if spec is None and any(v is not None for v in (method, steps, T)):
            raise ArgumentError(
                "method, steps, T: a network's blocks carry their own; set them on the blocks"
            )
        blocks = ode_blocks(f)
        first = blocks[0]
        tab = resolve_method(first.method)
        steps = int(first.steps)
        T = float(first.T)
        n_blocks = len(blocks)
        tdq_ok = all(torchdiffeq_method(resolve_method(b.method)) is not None
                     and getattr(b, "implicit", None) is None for b in blocks)
    else:
        tab = resolve_method(method if method is not None else block.get("method", "rk4_38"))
        steps = check_steps(steps if steps is not None else block.get("steps", 16), "steps")[0]
        T = check_positive(T if T is not None else block.get("T", 1.0), "T")
        n_blocks = 1
        tdq_ok = torchdiffeq_method(tab) is not None and implicit is None
    for value, name in ((repeats, "repeats"), (threads, "threads")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ArgumentError(f"{name}: expected a positive integer, got {value!r}")
    names, objs, skipped = _check_strategies(strategies, tdq_ok)
    if isolate and spec is None:
        try:
            pickle.dumps((f, y0, implicit))
        except Exception as err:
            raise ArgumentError(
                "model: cannot be sent to a fresh process for measurement "
                f"({type(err).__name__}: {err}); define it as an nn.Module in an importable "
                "module, or pass isolate=False to measure in this process"
            ) from None
    weights = b"" if spec is None or spec.get("weights") is None else open(
        spec["weights"], "rb").read()
    cs = CaseStore(store, fingerprint("cost-v2", spec if spec is not None else f, y0, tab, steps,
                                      T, names, repeats, isolate, threads, n_blocks, weights))
    run = _Measurement(f, y0, implicit, tab, steps, T, spec, {n: objs[n] for n in names},
                       repeats=repeats, isolate=isolate, threads=threads, timeout=timeout,
                       progress=progress)
    record = run_cases(["run"], run.measure_all, cs, progress=False, desc="cost")[0]
    rows = _rows(names, record)
    for row in rows:
        row["nfe_forward"], row["nfe_backward"] = _nfe(f, y0, objs[row["strategy"]], tab,
                                                       steps, T, implicit)
    why = (f"torchdiffeq has no fixed-grid equivalent of {tab.name!r}" if implicit is None
           else "the solve is IMEX (y' = f - L y), which torchdiffeq cannot solve")
    if network and implicit is None:
        why = ("torchdiffeq has no fixed-grid equivalent of a block's method, or a block is "
               "IMEX")
    for n in skipped:  # a row that says why, in its place (after backprop, in order)
        rows.append({"strategy": n, **dict.fromkeys(
            ("time_s", "times_s", "time_ratio", "time_ratio_min", "time_ratio_max",
             "peak_bytes", "probe", "peak_mb", "memory_ratio", "nfe_forward", "nfe_backward")),
            "status": f"skipped: {why}"})
    order = {n: i for i, n in enumerate(["backprop", *(k for k in objs if k != "backprop")])}
    rows.sort(key=lambda r: order.get(r["strategy"], len(order)))
    return CostResult(
        rows, method=tab.name, steps=steps, T=T, blocks=n_blocks,
        network=network, device=str(y0.device),
        state_shape=list(y0.shape), dtype=str(y0.dtype).replace("torch.", ""),
        isolated=bool(isolate), repeats=repeats,
        skipped=[f"{n}: {why}" for n in skipped],
    )


def _nfe(f, y0, strategy, tab, steps, T, implicit) -> tuple[int | None, int | None]:
    """:func:`count_evaluations`, ``(None, None)`` when the run fails (its row says why)."""
    try:
        return count_evaluations(f, y0, strategy, tab, steps, T, implicit=implicit)
    except Exception:  # the timed and memory runs report the failure in the row's status
        return None, None


def _resolve_model(model, input, method, steps, T, implicit):
    """``(spec, f, y0, implicit, network, block settings)`` of :func:`cost`'s model: a
    specification's network, a network with ODE blocks, an ODE block or a ``func(t, y)``."""
    spec = model if isinstance(model, dict) else None
    block: dict[str, Any] = {}
    if spec is not None:
        from odenet.analysis._models import build_network, check_spec

        if spec.get("weights") is not None:
            from odenet.analysis._report import check_weights

            check_weights(spec["weights"])
        spec = check_spec(spec, **{k: v for k, v in (("method", method), ("steps", steps),
                                                      ("T", T)) if v is not None})
        net, y0, _ = build_network(spec)
        return spec, net, y0, None, True, block
    if model is None or not (callable(model) or block_settings(model)):
        raise ArgumentTypeError(
            f"model: expected a network with ODE blocks, an ODE block, a right-hand side "
            f"func(t, y) or a model specification (dict), got {type(model).__name__}"
        )
    network = bool(ode_blocks(model)) and not callable(getattr(model, "rhs", None))
    if input is None:
        raise ArgumentError("input: required (the initial state, or the network's input)")
    y0 = check_tensor(input, "input").detach()
    if network:
        return spec, model, y0, implicit, network, block
    f, block = unwrap_func(model, "model")
    if implicit is None:
        implicit = block.get("implicit")
    _check_callable_model(model, f, y0, implicit)
    return spec, f, y0, implicit, network, block


def _check_strategies(strategies, tdq_ok: bool):
    """``(names, name -> strategy, skipped names)``: backprop first, torchdiffeq's baselines
    skipped where they have no equivalent (``tdq_ok`` false)."""
    if isinstance(strategies, (str, GradientStrategy)):
        strategies = [strategies]
    if not isinstance(strategies, (list, tuple)):
        raise ArgumentTypeError(
            f"strategies: expected a list of strategy names or instances, got "
            f"{type(strategies).__name__}"
        )
    for s in strategies:
        if isinstance(s, str):
            from odenet.analysis._report import strategy_error

            msg = strategy_error(s)
            if msg:
                raise ArgumentError(f"strategies: {msg}")
    parsed = [parse_strategy(s) for s in strategies]
    names = ["backprop"] + [n for n, _ in parsed if n != "backprop"]
    objs = {"backprop": "backprop", **{n: s for n, s in parsed}}
    skipped = [n for n in names if isinstance(objs[n], Torchdiffeq) and not tdq_ok]
    return [n for n in names if n not in skipped], objs, skipped


class _Measurement:
    """:func:`cost`'s one measurement: each strategy's peak memory, then the interleaved times,
    in fresh processes (``isolate``) or in this one."""

    def __init__(self, f, y0: Tensor, implicit, tab, steps: int, T: float,
                 spec: dict[str, Any] | None, strategies: dict[str, Any], *, repeats: int,
                 isolate: bool, threads: int, timeout: float, progress: bool | None):
        self.f, self.y0, self.implicit, self.tab, self.steps, self.T = (f, y0, implicit, tab,
                                                                        steps, T)
        self.spec, self.strategies, self.names = spec, strategies, list(strategies)
        self.repeats, self.isolate, self.threads = repeats, isolate, threads
        self.timeout, self.progress = timeout, progress

    def payload(self, **extra: Any) -> dict[str, Any]:
        """What a measuring process needs (the specification, or the function and state)."""
        p: dict[str, Any] = {"method": self.tab, "steps": self.steps, "T": self.T,
                             "threads": self.threads, **extra}
        if self.spec is not None:
            p["spec"] = self.spec
        else:
            p.update(func=self.f, y0=self.y0, implicit=self.implicit)
        return p

    def memory(self, name: str) -> dict[str, Any]:
        try:
            if self.isolate:
                m = _run_isolated(self.payload(strategy=self.strategies[name], repeats=1),
                                  self.timeout)
            else:
                m = measure(self.f, self.y0, self.strategies[name], self.tab, self.steps,
                            self.T, implicit=self.implicit, repeats=1)
            return {"peak_bytes": m["peak_bytes"], "probe": m["probe"]}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, TypeError) as err:
            return {"peak_bytes": None, "probe": None, "error": _first_line(err)}

    def times(self) -> dict[str, Any]:
        strats = dict(self.strategies)
        try:
            if self.isolate:
                return _run_isolated(self.payload(mode="time", strategies=strats,
                                                  rounds=self.repeats), self.timeout)
            return measure_times(self.f, self.y0, strats, self.tab, self.steps, self.T,
                                 implicit=self.implicit, rounds=self.repeats)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, TypeError) as err:
            return {"times_s": {}, "errors": dict.fromkeys(self.names, _first_line(err))}

    def measure_all(self, _key: str) -> dict[str, Any]:
        names, progress = self.names, self.progress
        bar = tqdm(total=len(names) + 1, desc="cost", file=sys.stderr, leave=False,
                   disable=(not progress) if progress is not None else None, dynamic_ncols=True)
        try:
            mem: dict[str, Any] = {}
            if self.isolate and len(names) > 1:
                # memory is per process: measure several at once (times are measured after)
                workers = max(1, min(len(names), os.cpu_count() or 1, 4))
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = {pool.submit(self.memory, n): n for n in names}
                    for fut in as_completed(futures):
                        mem[futures[fut]] = fut.result()
                        bar.update(1)
            else:
                for n in names:
                    bar.set_postfix_str(f"memory {n}", refresh=False)
                    mem[n] = self.memory(n)
                    bar.update(1)
            bar.set_postfix_str("times, interleaved", refresh=False)
            t = self.times()
            bar.update(1)
        finally:
            bar.close()
        return {"memory": {n: mem[n] for n in names}, "times": t}


def _rows(names: Sequence[str], record: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a :class:`CostResult` from one run's memory and interleaved times."""
    mem = record["memory"]
    per_round = record["times"].get("times_s", {})
    errors = record["times"].get("errors", {})
    base_t = per_round.get("backprop")
    base_m = mem["backprop"]["peak_bytes"]
    rows = []
    for n in names:
        m = mem[n]
        ts = per_round.get(n)
        row: dict[str, Any] = {"strategy": n}
        row["time_s"] = statistics.median(ts) if ts else None
        row["times_s"] = list(ts) if ts else None
        if ts and base_t and len(ts) == len(base_t) and all(b > 0 for b in base_t):
            ratios = [a / b for a, b in zip(ts, base_t)]
            row["time_ratio"] = 1.0 if n == "backprop" else statistics.median(ratios)
            row["time_ratio_min"] = 1.0 if n == "backprop" else min(ratios)
            row["time_ratio_max"] = 1.0 if n == "backprop" else max(ratios)
        else:
            row["time_ratio"] = row["time_ratio_min"] = row["time_ratio_max"] = None
        row["peak_bytes"] = m["peak_bytes"]
        row["probe"] = m["probe"]
        row["peak_mb"] = None if m["peak_bytes"] is None else m["peak_bytes"] / 2**20
        row["memory_ratio"] = (m["peak_bytes"] / base_m
                               if m["peak_bytes"] is not None and base_m else None)
        problems = [e for e in (m.get("error"), errors.get(n)) if e]
        row["status"] = "ok" if not problems else f"failed: {problems[0]}"
        rows.append(row)
    return rows
