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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from analysis._common import check_positive, check_steps, check_tensor, fingerprint, unwrap_func
from analysis._gradients import parse_strategy, solve_with, torchdiffeq_method
from analysis._region import resolve_method
from analysis._results import Result, new_figure
from analysis._sweep import CaseStore, run_cases
from odenet import ButcherTableau, GradientStrategy, IMEXTableau
from odenet.errors import ArgumentError

__all__ = ["CostResult", "cost", "measure"]

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
    resident set follows the live tensors. Time is the median of the timed runs.

    Examples
    --------
    >>> import torch
    >>> from analysis._cost import measure
    >>> lin = torch.nn.Linear(8, 8)
    >>> m = measure(lambda t, y: torch.tanh(lin(y)), torch.randn(4, 8), "anode", "rk4", 8,
    ...             params=list(lin.parameters()), repeats=1)
    >>> m["time_s"] > 0 and m["peak_bytes"] >= 0
    True
    """
    from analysis._common import collect_params

    _, strat = parse_strategy(strategy)
    blocks = ode_blocks(func)
    restore: list = []
    if blocks and not callable(getattr(func, "rhs", None)):  # a whole network
        net = func
        params = [p for p in net.parameters() if p.requires_grad] if params is None else params
        restore = _use_strategy(blocks, strat)

        def run() -> None:
            x = y0.detach().clone().requires_grad_(True)
            out = net(x)
            loss = 0.5 * out.square().sum()
            grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
            del grads, out, loss, x
    else:
        f, _ = unwrap_func(func)
        tab = resolve_method(method)
        params = collect_params(f, implicit, params)
        t = torch.tensor([0.0, float(T)], dtype=y0.dtype, device=y0.device)
        h = float(T) / steps

        def run() -> None:
            x = y0.detach().clone().requires_grad_(True)
            out = solve_with(strat, f, x, t, tab, h, implicit, params)
            loss = 0.5 * out[-1].square().sum()
            grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
            del grads, out, loss, x

    try:
        return _timed(run, y0.device, repeats)
    finally:
        for undo in restore:
            undo()


def ode_blocks(model: object) -> list:
    """The ODE blocks of a network (modules with ``rhs``, ``T``, ``steps`` and ``gradient``).

    Examples
    --------
    >>> import odenet
    >>> from analysis._cost import ode_blocks
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=3, steps=2)
    >>> len(ode_blocks(net))
    3
    """
    if not isinstance(model, torch.nn.Module):
        return []
    return [m for m in model.modules()
            if all(hasattr(m, a) for a in ("rhs", "T", "steps", "gradient", "method"))]


def _use_strategy(blocks: Sequence, strat) -> list:
    """Set ``strat`` on every block (torchdiffeq: swap the block's solve); return the undos."""
    from odenet.gradients import resolve_gradient

    undo = []
    for b in blocks:
        if isinstance(strat, str) and strat.startswith("torchdiffeq"):
            import torchdiffeq

            name = torchdiffeq_method(resolve_method(b.method))
            if name is None or getattr(b, "implicit", None) is not None:
                raise ValueError(
                    f"torchdiffeq has no fixed-grid equivalent of the block's method "
                    f"{getattr(b.method, 'name', b.method)!r}"
                )
            adjoint = strat == "torchdiffeq-adjoint"

            def forward(y, b=b, name=name, adjoint=adjoint):
                t = torch.tensor([0.0, b.T], dtype=y.dtype, device=y.device)
                opts = {"step_size": b.T / b.steps}
                if adjoint:
                    ps = tuple(p for p in b.parameters() if p.requires_grad)
                    return torchdiffeq.odeint_adjoint(b.rhs, y, t, method=name, options=opts,
                                                      adjoint_params=ps)[-1]
                return torchdiffeq.odeint(b.rhs, y, t, method=name, options=opts)[-1]

            b.forward = forward
            undo.append(lambda b=b: b.__dict__.pop("forward", None))
        else:
            old = b.gradient
            b.gradient = resolve_gradient("backprop" if strat == "backprop" else strat)
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
    return {"time_s": statistics.median(times), "peak_bytes": int(max(peak, 0)), "probe": probe}


def _worker_main() -> None:  # pragma: no cover - runs in the child process
    payload = pickle.loads(sys.stdin.buffer.read())
    torch.set_num_threads(payload.pop("threads"))
    spec = payload.pop("spec", None)
    if spec is not None:
        from analysis._models import build_network

        net, x, _ = build_network(spec)
        payload.update(func=net, y0=x)
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

    Returned by :func:`cost`. Ratios compare measurements of the same run
    (same machine state), not against stored figures.

    Examples
    --------
    >>> import torch, analysis
    >>> lin = torch.nn.Linear(8, 8)
    >>> res = analysis.cost(lambda t, y: torch.tanh(lin(y)), torch.randn(4, 8),
    ...                     ["anode"], steps=4, repeats=1, isolate=False)
    >>> [r["strategy"] for r in res.rows]
    ['backprop', 'anode']
    """

    kind = "cost"
    columns = ("strategy", "time_s", "peak_mb", "time_ratio", "memory_ratio", "status")

    def title(self) -> str:
        where = "fresh process per measurement" if self.isolated else "in process"
        what = f"a network of {self.blocks} ODE block(s)" if self.network else "one solve"
        return (f"cost of the gradient strategies on {what} ({self.method}, Nt = {self.steps}, "
                f"device {self.device}; {where})")

    def plot(self, ax=None):
        """Bar charts of the time and memory ratios to backprop.

        Examples
        --------
        >>> import torch, analysis
        >>> lin = torch.nn.Linear(8, 8)
        >>> res = analysis.cost(lambda t, y: lin(y), torch.randn(4, 8), ["anode"], steps=2,
        ...                     repeats=1, isolate=False)
        >>> len(res.plot().axes)
        2
        """
        fig, (a0, a1) = new_figure(1, 2, width=5.0, height=3.8)
        rows = [r for r in self.rows if r.get("time_ratio") is not None]
        names = [r["strategy"] for r in rows]
        x = np.arange(len(rows))
        for ax, key, title in ((a0, "time_ratio", "time (forward + backward)"),
                               (a1, "memory_ratio", "peak memory")):
            vals = [r[key] if r[key] is not None else np.nan for r in rows]
            bars = ax.bar(x, vals, color=[f"C{i}" for i in range(len(rows))])
            ax.bar_label(bars, fmt="%.2f", fontsize=8)
            ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("ratio to backprop")
            ax.set_title(title)
        what = f"{self.blocks} ODE blocks, " if self.network else ""
        fig.suptitle(f"{what}{self.method}, Nt = {self.steps}, input {self.state_shape}",
                     fontsize=9)
        return fig


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
    repeats: int = 3,
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
    ``isolate`` every measurement runs in a fresh Python process (so that one
    strategy's allocations cannot hide another's peak): peak resident set size
    on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. torchdiffeq's ``odeint``
    and ``odeint_adjoint`` are measured beside odenet's strategies when the
    method has a torchdiffeq equivalent (``euler``, ``midpoint``, ``rk4_38``).

    Parameters
    ----------
    model : callable, ODE block, network, or dict
        ``func(t, y)`` (an ``nn.Module`` or another picklable callable when
        ``isolate``), an ODE block (its ``rhs``, ``T``, ``steps``, ``method`` and
        ``implicit`` are the defaults), a network containing ODE blocks (e.g.
        :class:`odenet.models.ODEResNet`; the blocks keep their method and
        steps), or a model specification of the ``odenet-analysis`` command (a
        dict; its network is built in the child process).
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
        Timed runs per strategy (after one warm-up); the median is reported.
    isolate : bool
        Measure each strategy in a fresh process (default). ``False`` measures in
        this process (for models that cannot be pickled).
    threads : int
        ``torch.set_num_threads`` in the measuring processes.
    timeout : float
        Seconds allowed per measurement.
    store : path, optional
        JSON-lines file recording each finished measurement; rerunning resumes.
    progress : bool, optional
        Progress bar (``None``: on a terminal).

    Returns
    -------
    CostResult

    Examples
    --------
    >>> import torch, analysis
    >>> rhs = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh())
    >>> res = analysis.cost(lambda t, y: rhs(y), torch.randn(32, 16), ["anode", "adjoint"],
    ...                     steps=8, repeats=1, isolate=False)
    >>> res.rows[0]["time_ratio"]
    1.0
    """
    spec = model if isinstance(model, dict) else None
    network = False
    if spec is not None:
        from analysis._models import build_network, check_spec

        spec = check_spec(spec, **{k: v for k, v in (("method", method), ("steps", steps),
                                                      ("T", T)) if v is not None})
        net, y0, _ = build_network(spec)
        f, implicit, network = net, None, True
    else:
        network = bool(ode_blocks(model)) and not callable(getattr(model, "rhs", None))
        if input is None:
            raise ArgumentError("input: required (the initial state, or the network's input)")
        y0 = check_tensor(input, "input").detach()
        if network:
            f = model
        else:
            f, block = unwrap_func(model, "model")
            if implicit is None:
                implicit = block.get("implicit")
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
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ArgumentError(f"repeats: expected a positive integer, got {repeats!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ArgumentError(f"threads: expected a positive integer, got {threads!r}")
    parsed = [parse_strategy(s) for s in strategies]
    names = ["backprop"] + [n for n, _ in parsed if n != "backprop"]
    objs = {"backprop": "backprop", **{n: s for n, s in parsed}}
    skipped = [n for n in names if objs[n] in ("torchdiffeq", "torchdiffeq-adjoint")
               and not tdq_ok]
    names = [n for n in names if n not in skipped]
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
    cs = CaseStore(store, fingerprint("cost", spec if spec is not None else f, y0, tab, steps, T,
                                      names, repeats, isolate, threads, n_blocks, weights))

    def compute(name: str) -> dict:
        strat = objs[name]
        sname = strat
        try:
            if isolate:
                payload: dict[str, Any] = {
                    "strategy": sname, "method": tab, "steps": steps, "T": T,
                    "repeats": repeats, "threads": threads,
                }
                if spec is not None:
                    payload["spec"] = spec
                else:
                    payload.update(func=f, y0=y0, implicit=implicit)
                m = _run_isolated(payload, timeout)
            else:
                m = measure(f, y0, sname, tab, steps, T, implicit=implicit, repeats=repeats)
            return {"strategy": name, **m, "status": "ok"}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, TypeError) as err:
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            return {"strategy": name, "time_s": None, "peak_bytes": None, "probe": None,
                    "status": f"failed: {msg}"}

    # parsed instances are not JSON: key the store by display name
    records = run_cases(names, compute, cs, progress=progress, desc="cost")
    base = records[0]
    rows = []
    for r in records:
        row = dict(r)
        row["peak_mb"] = None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20
        ok = r["time_s"] is not None and base["time_s"]
        row["time_ratio"] = r["time_s"] / base["time_s"] if ok else None
        okm = r["peak_bytes"] is not None and base["peak_bytes"]
        row["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"] if okm else None
        rows.append(row)
    return CostResult(
        rows, method=tab.name, steps=steps, T=T, blocks=n_blocks, network=network,
        device=str(y0.device),
        state_shape=list(y0.shape), dtype=str(y0.dtype).replace("torch.", ""),
        isolated=bool(isolate), repeats=repeats,
        skipped=[f"{n} (torchdiffeq has no fixed-grid {tab.name}, or the solve is IMEX)"
                 for n in skipped],
    )
