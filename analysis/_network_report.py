"""The report on a researcher's own network: every analysis per ODE block, with verdicts.

:func:`network_report` (called by :func:`odenet.analysis.report` with a model) captures each
block's real input with forward hooks (:func:`~odenet.analysis._user_model.capture_blocks`),
runs the stability, gradient-consistency, reversibility and cost analyses on every block at
its own method, step size and strategy, checks the whole network's gradient and cost, and
writes ``index.html`` (a summary with one verdict line per block at the top, linking to the
evidence), PNG figures and ``results.json``.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import odenet
from odenet import IMEXTableau
from odenet.analysis import _html as H
from odenet.analysis._gradients import GradientConsistencyResult, gradient_consistency
from odenet.analysis._region import evaluate_R
from odenet.analysis._results import Result, jsonable
from odenet.analysis._reversibility import ReversibilityResult, reversibility
from odenet.analysis._stability import StabilityResult, stability
from odenet.analysis._user_model import (
    BlockCapture,
    as_dtype,
    capture_blocks,
    check_inputs,
    network_loss,
    set_strategies,
    strategy_label,
)
from odenet.errors import ArgumentError, ArgumentTypeError

__all__ = [
    "NETWORK_DEFAULTS",
    "NETWORK_SECTIONS",
    "analyse_block",
    "block_verdict",
    "check_network_settings",
    "network_gradients",
    "network_report",
]

#: Settings of the report on a user's network (each overridable through ``settings``).
NETWORK_DEFAULTS: dict[str, Any] = {
    "dtype": "float64",
    "samples": 8,
    "step_factors": (1, 2, 4),
    "strategies": ("adjoint",),
    "network_strategies": ("anode", "adjoint"),
    "cost_strategies": ("anode", "revolve", "adjoint"),
    "cost_repeats": 3,
    "stability_k": 4,
    "flow_iterations": 20,
    "fd_directions": 1,
    "gradient_tolerance": 1e-4,
    "reconstruction_tolerance": 1e-3,
}

#: The analyses of the report on a user's network (``sections``' choices).
NETWORK_SECTIONS: tuple[str, ...] = ("stability", "gradients", "reversibility", "cost")


def check_network_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`NETWORK_DEFAULTS` updated by ``settings``, every value checked.

    Examples
    --------
    >>> from odenet.analysis._network_report import check_network_settings
    >>> check_network_settings({"samples": 2})["samples"]
    2
    >>> try:
    ...     check_network_settings({"samples": 0})
    ... except ValueError as err:
    ...     print(err)
    settings['samples']: expected a positive integer, got 0
    """
    from odenet.analysis._report import strategy_error

    if settings is not None and not isinstance(settings, Mapping):
        raise ArgumentTypeError(f"settings: expected a dict of report settings, got "
                                f"{type(settings).__name__}")
    cfg = dict(NETWORK_DEFAULTS)
    for k, v in (settings or {}).items():
        if k not in NETWORK_DEFAULTS:
            raise ArgumentError(f"settings: unknown setting {k!r} for a network report; valid "
                                "settings are " + ", ".join(map(repr, NETWORK_DEFAULTS)))
        cfg[k] = v
    if cfg["dtype"] not in (None, "float32", "float64"):
        raise ArgumentError(f"settings['dtype']: expected 'float32', 'float64' or None (the "
                            f"model's own), got {cfg['dtype']!r}")
    for key in ("samples", "cost_repeats", "stability_k", "flow_iterations"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ArgumentError(f"settings[{key!r}]: expected a positive integer, got {v!r}")
    v = cfg["fd_directions"]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ArgumentError(f"settings['fd_directions']: expected an integer >= 0, got {v!r}")
    f = cfg["step_factors"]
    if (not isinstance(f, (list, tuple)) or not f or any(
            isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in f) or f[0] != 1):
        raise ArgumentError(f"settings['step_factors']: expected positive integers starting "
                            f"with 1 (multiples of each block's Nt), got {f!r}")
    cfg["step_factors"] = sorted(set(f))
    for key in ("strategies", "network_strategies", "cost_strategies"):
        v = cfg[key]
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise ArgumentTypeError(f"settings[{key!r}]: expected a list of strategy names, "
                                    f"got {type(v).__name__}")
        for s in v:
            msg = strategy_error(s)
            if msg:
                raise ArgumentError(f"settings[{key!r}]: {msg}")
        cfg[key] = list(v)
    for key in ("gradient_tolerance", "reconstruction_tolerance"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                math.isfinite(v) and v > 0):
            raise ArgumentError(f"settings[{key!r}]: expected a finite positive number, got "
                                f"{v!r}")
        cfg[key] = float(v)
    return cfg


def _check_sections(sections: object) -> list[str]:
    if sections is None:
        return list(NETWORK_SECTIONS)
    if isinstance(sections, str):
        sections = [s.strip() for s in sections.split(",") if s.strip()]
    if not isinstance(sections, (list, tuple)):
        raise ArgumentTypeError(f"sections: expected a list of section names, got "
                                f"{type(sections).__name__}")
    if not sections:
        raise ArgumentError("sections: expected at least one of " + ", ".join(NETWORK_SECTIONS))
    for s in sections:
        if s not in NETWORK_SECTIONS:
            raise ArgumentError(f"sections: {s!r} is not an analysis of the report on a "
                                "network; valid sections are "
                                + ", ".join(map(repr, NETWORK_SECTIONS)))
    return [s for s in NETWORK_SECTIONS if s in sections]


# -- one block -------------------------------------------------------------------------------------
def _own_strategy(cap: BlockCapture) -> tuple[str, object]:
    """``(row name, what gradient_consistency gets)`` of the block's own strategy."""
    from odenet.analysis._gradients import parse_strategy

    label = strategy_label(cap.gradient)
    try:
        name, _ = parse_strategy(label)
        return name, label
    except (ArgumentError, ArgumentTypeError):
        return repr(cap.gradient), cap.gradient


def forward_check(cap: BlockCapture) -> float:
    """Relative difference between the block's output and the declared ODE's solve from the
    captured input (round-off when the block follows the protocol)."""
    t = torch.tensor([0.0, cap.T], dtype=cap.input.dtype, device=cap.input.device)
    with torch.no_grad():
        y = odenet.odeint(cap.rhs, cap.input, t, method=cap.tableau, step_size=cap.step_size,
                          implicit=cap.implicit)[-1]
    ref = float(cap.output.norm()) or 1.0
    return float((y - cap.output).norm()) / ref


def analyse_block(cap: BlockCapture, cfg: Mapping[str, Any], sections: Sequence[str],
                  say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every analysis of ``sections`` on one captured block; a failing analysis is recorded
    (``errors``), not raised.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._user_model import capture_blocks
    >>> from odenet.analysis._network_report import NETWORK_DEFAULTS, analyse_block
    >>> net = odenet.models.ODEResNet(1, 2, widths=(2,), blocks=1, steps=2).double()
    >>> (cap,), _ = capture_blocks(net, torch.randn(2, 1, 4, 4, dtype=torch.float64))
    >>> res = analyse_block(cap, {**NETWORK_DEFAULTS, "samples": 2}, ["gradients"])
    >>> res["verdict"]["gradient"]["ok"]
    True
    """
    n = min(cfg["samples"], cap.input.shape[0]) if cap.input.ndim else 1
    y = cap.input[:n] if cap.input.ndim else cap.input
    Nt = cap.steps
    steps = [Nt * f for f in cfg["step_factors"]]
    out: dict[str, Any] = {"name": cap.name, "type": type(cap.module).__name__,
                           "method": cap.tableau.name, "steps": Nt, "T": cap.T,
                           "step_size": cap.step_size, "strategy": cap.strategy,
                           "calls": cap.calls, "input_shape": list(cap.input.shape),
                           "parameters": sum(p.numel() for p in cap.params),
                           "implicit": cap.implicit is not None, "errors": {}}
    try:
        out["forward_check"] = forward_check(cap)
    except Exception as err:  # a block that does not follow the protocol
        out["forward_check"] = None
        out["errors"]["forward_check"] = _line(err)
    if "stability" in sections:
        say("stability")
        _guard(out, "stability", lambda: stability(
            cap.rhs, cap.input[:1], cap.tableau, cap.step_size, implicit=cap.implicit,
            k=cfg["stability_k"], T=cap.T, power_iterations=cfg["flow_iterations"],
            flow_tol=1e-3))
    if "gradients" in sections:
        say("gradients")
        own_name, own = _own_strategy(cap)
        strategies = [] if own_name == "backprop" else [own]
        strategies += [s for s in cfg["strategies"] if s not in (own_name, "backprop")]
        out["own_strategy_row"] = own_name
        if strategies:
            _guard(out, "gradients", lambda: gradient_consistency(
                cap.rhs, y, cap.T, [cap.tableau], steps, strategies, loss=cap.loss(),
                params=cap.params, implicit=cap.implicit, fd_directions=cfg["fd_directions"],
                label=cap.name))
    if "reversibility" in sections:
        if isinstance(cap.tableau, IMEXTableau):
            out["reversibility"] = None
        else:
            say("reversibility")
            _guard(out, "reversibility", lambda: reversibility(
                cap.rhs, y, cap.T, [cap.tableau], steps, label=cap.name))
    if "cost" in sections:
        say("cost")
        own_name, own = _own_strategy(cap)
        strats = list(dict.fromkeys(
            [*(s for s in cfg["cost_strategies"] if s != "backprop"),
             *([own] if own_name not in ("backprop", *cfg["cost_strategies"]) else [])]))
        _guard(out, "cost", lambda: block_cost(cap, ["backprop", *strats],
                                               repeats=cfg["cost_repeats"]))
    out["verdict"] = block_verdict(out, cfg)
    return out


class BlockCost(Result):
    """Memory and time of one block alone per strategy, on its captured input (the block's
    loss: the network's loss linearised at its output).

    ``held_mb``: what the forward keeps until the backward; ``peak_mb``: the peak of
    forward+backward; both above the memory in use before (see
    :func:`odenet.analysis.plan_gradients` for the probe); ``time_s``: the median of
    interleaved rounds; ratios against backprop.

    Examples
    --------
    >>> from odenet.analysis._network_report import BlockCost
    >>> BlockCost([{"strategy": "backprop", "time_s": 1.0}]).rows[0]["strategy"]
    'backprop'
    """

    kind = "block_cost"
    columns = ("strategy", "held_mb", "peak_mb", "memory_ratio", "time_s", "time_ratio",
               "status")

    def notes(self) -> list[str]:
        return [f"memory probe: {self.summary.get('probe')}; time: median of "
                f"{self.summary.get('repeats')} interleaved round(s)"]


def block_cost(cap: BlockCapture, strategies: Sequence[str], repeats: int = 3) -> BlockCost:
    """:class:`BlockCost` of the strategies (the first is the reference) on one block.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._user_model import capture_blocks
    >>> from odenet.analysis._network_report import block_cost
    >>> net = odenet.models.ODEResNet(1, 2, widths=(4,), blocks=1, steps=4)
    >>> (cap,), _ = capture_blocks(net, torch.randn(4, 1, 8, 8))
    >>> res = block_cost(cap, ["backprop", "anode"], repeats=1)
    >>> [r["strategy"] for r in res.rows], res.rows[1]["held_mb"] < res.rows[0]["held_mb"]
    (['backprop', 'anode'], True)
    """
    from odenet.analysis._plan import _block_memory, _block_times, _Probe

    probe = _Probe(cap.input.device)
    rows, ok = [], []
    for n in dict.fromkeys(strategies):
        try:
            held, peak = _block_memory(cap, n, probe)
            rows.append({"strategy": n, "held_mb": held / 2**20, "peak_mb": peak / 2**20,
                         "status": "ok"})
            ok.append(n)
        except Exception as err:  # a strategy that fails on this block
            rows.append({"strategy": n, "held_mb": None, "peak_mb": None,
                         "status": f"failed: {_line(err)}"})
    times = _block_times(cap, ok, repeats) if ok else {}
    base = rows[0]
    for r in rows:
        r["time_s"] = times.get(r["strategy"])
        r["time_ratio"] = (r["time_s"] / times[base["strategy"]]
                           if r["time_s"] is not None and times.get(base["strategy"]) else None)
        r["memory_ratio"] = (r["peak_mb"] / base["peak_mb"] if r["peak_mb"] is not None
                             and base["peak_mb"] else None)
    return BlockCost(rows, probe=probe.name, repeats=repeats)


def _guard(out: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[key] = fn()
        for w in caught:  # shown beside the analysis on the page
            out.setdefault("warnings", {}).setdefault(key, []).append(str(w.message))
    except Exception as err:  # recorded in the report, the other analyses go on
        out[key] = None
        out["errors"][key] = _line(err)


def _line(err: BaseException) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _max_R(st: StabilityResult) -> float:
    z = st.hlambda_all()
    if not z.size:
        return 0.0
    w = st.step_size * np.asarray(st._mu, dtype=float)
    return float(np.abs(evaluate_R(st.tableau, z[:, None], w[None, :])).max())


def block_verdict(res: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary line's three verdicts of one block: ``stability``, ``gradient``,
    ``reconstruction`` (each ``{"ok": bool or None, "text": str, ...}``; ``ok`` is ``None``
    when the analysis did not run or does not apply).

    Examples
    --------
    >>> from odenet.analysis._network_report import block_verdict
    >>> block_verdict({"errors": {}}, {})["stability"]["ok"] is None
    True
    """
    errors = res.get("errors", {})
    out: dict[str, dict[str, Any]] = {}
    st = res.get("stability")
    h = res.get("step_size")
    if isinstance(st, StabilityResult):
        R = _max_R(st)
        hmax, hdamped = st.max_step, st.max_step_damped
        if st.stable:
            share = f", {100 * h / hmax:.0f}% of the largest stable step {hmax:.3g}" if (
                math.isfinite(hmax) and hmax > 0) else " (stable for every step)"
            out["stability"] = {"ok": True, "text": (
                f"stable at h = {h:.3g}{share}; max |R(hλ)| = {R:.4g}")}
        elif st.n_growing and (not math.isfinite(hdamped) or h <= hdamped):
            out["stability"] = {"ok": True, "text": (
                f"stable at h = {h:.3g} for every damped mode ("
                + (f"up to h = {hdamped:.3g}" if math.isfinite(hdamped) else "at every step")
                + f"); "
                f"{st.n_growing} mode(s) with Re λ > 0 (up to {st.max_real:.3g}) grow, as the "
                f"ODE itself does; max |R(hλ)| = {R:.4g}")}
        else:
            ref = hdamped if math.isfinite(hdamped) and hdamped > 0 else hmax
            by = f"h = {h:.3g} is {h / ref:.2f}× the largest stable step {ref:.3g}" if ref > 0 \
                else f"no step is stable (h = {h:.3g})"
            out["stability"] = {"ok": False, "text": (
                f"UNSTABLE: {by}; max |R(hλ)| = {R:.4g}")}
        out["stability"].update(max_abs_R=R, max_step=hmax, ratio=(h / hmax if hmax else None))
    else:
        out["stability"] = _not_run(errors, "stability")
    g = res.get("gradients")
    own = res.get("own_strategy_row")
    tol = cfg.get("gradient_tolerance", NETWORK_DEFAULTS["gradient_tolerance"])
    Nt = res.get("steps")
    if own == "backprop":
        extra = ""
        if isinstance(g, GradientConsistencyResult):
            adj = [r for r in g.rows if r["strategy"] == "adjoint" and r["steps"] == Nt]
            if adj and adj[0]["grad_error"] is not None:
                extra = f" (the adjoint would err by {adj[0]['grad_error']:.2e} at Nt = {Nt})"
        out["gradient"] = {"ok": True, "error": 0.0, "text": (
            f"backprop: the exact gradient of the discrete block{extra}")}
    elif isinstance(g, GradientConsistencyResult):
        rows = {r["steps"]: r for r in g.rows if r["strategy"] == own}
        r = rows.get(Nt)
        if r is None or r["grad_error"] is None:
            why = r["error"] if r else "no result"
            out["gradient"] = {"ok": False, "error": None,
                               "text": f"{own} failed at Nt = {Nt}: {why}"}
        else:
            e = r["grad_error"]
            ok = e <= tol
            more = [f"{rows[k]['grad_error']:.2e} at Nt = {k}" for k in sorted(rows)
                    if k != Nt and rows[k]["grad_error"] is not None]
            trend = f" ({'; '.join(more)})" if more and not ok else ""
            word = "trustworthy" if ok else "NOT the network's gradient"
            out["gradient"] = {"ok": ok, "error": e, "text": (
                f"{own}: relative ∂L/∂θ error {e:.2e} vs backprop at Nt = {Nt} "
                f"({'≤' if ok else '>'} {tol:g}): {word}{trend}")}
    else:
        out["gradient"] = _not_run(errors, "gradients")
    rv = res.get("reversibility")
    rtol = cfg.get("reconstruction_tolerance", NETWORK_DEFAULTS["reconstruction_tolerance"])
    if isinstance(rv, ReversibilityResult):
        e = {r["steps"]: r["error"] for r in rv.rows}
        e0 = e.get(Nt)
        ok = e0 is not None and math.isfinite(e0) and e0 <= rtol
        more = [f"{e[k]:.2e} at Nt = {k}" for k in sorted(e) if k != Nt]
        word = "usable" if ok else "NOT usable"
        out["reconstruction"] = {"ok": ok, "error": e0, "text": (
            f"reverse solve from y(T) reconstructs y0 to {e0:.2e} at Nt = {Nt} "
            f"({'≤' if ok else '>'} {rtol:g}): {word}"
            + (f" ({'; '.join(more)})" if more else ""))}
    elif "reversibility" in res and res.get("reversibility") is None and not errors.get(
            "reversibility"):
        out["reconstruction"] = {"ok": None, "error": None, "text": (
            "not applicable: an IMEX step cannot run backward in time (odenet's adjoint "
            "recomputes IMEX states forward)")}
    else:
        out["reconstruction"] = _not_run(errors, "reversibility")
    return out


def _not_run(errors: Mapping[str, str], key: str) -> dict[str, Any]:
    if key in errors:
        return {"ok": None, "text": f"failed: {errors[key]}"}
    return {"ok": None, "text": "not run"}


# -- the whole network -----------------------------------------------------------------------------
def _flat_grads(model: nn.Module, inputs, loss_of, params: Sequence[Tensor]
                ) -> tuple[Tensor, float]:
    from odenet.analysis._user_model import _run_model

    t0 = time.perf_counter()
    value = loss_of(_run_model(model, inputs))
    gs = torch.autograd.grad(value, list(params), allow_unused=True)
    dt = time.perf_counter() - t0
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double()
                      for g, p in zip(gs, params)])
    return flat, dt


def network_gradients(model: nn.Module, inputs, caps: Sequence[BlockCapture],
                      loss_of: Callable[[Any], Tensor], strategies: Sequence[str]
                      ) -> list[dict[str, Any]]:
    """Relative error of the whole network's ∂L/∂θ against all blocks on backprop: with the
    blocks' own strategies, then with each of ``strategies`` on every block.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.analysis._user_model import capture_blocks, network_loss
    >>> from odenet.analysis._network_report import network_gradients
    >>> net = odenet.models.ODEResNet(1, 2, widths=(2,), blocks=2, steps=2).double()
    >>> x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    >>> caps, _ = capture_blocks(net, x)
    >>> rows = network_gradients(net, x, caps, network_loss(None, None), ["adjoint"])
    >>> [r["strategies"] for r in rows], rows[0]["grad_error"] < 1e-12
    (['backprop', 'anode, anode', 'adjoint'], True)
    """
    blocks = [c.module for c in caps]
    params = [p for p in model.parameters() if p.requires_grad]
    was = model.training
    model.eval()
    rows = []
    try:
        undo = set_strategies(blocks, "backprop")
        try:
            ref, t_ref = _flat_grads(model, inputs, loss_of, params)
        finally:
            undo()
        rows.append({"strategies": "backprop", "grad_error": 0.0, "time_s": t_ref,
                     "error": None})
        runs: list[tuple[str, object]] = [(", ".join(c.strategy for c in caps), None)]
        runs += [(s, s) for s in strategies if s != "backprop"]
        for name, s in runs:
            try:
                undo = set_strategies(blocks, s) if s is not None else (lambda: None)
                try:
                    g, dt = _flat_grads(model, inputs, loss_of, params)
                finally:
                    undo()
                d = float((g - ref).norm()) / (float(ref.norm()) or 1.0)
                rows.append({"strategies": name, "grad_error": d, "time_s": dt, "error": None})
            except Exception as err:  # recorded, the other rows go on
                rows.append({"strategies": name, "grad_error": None, "time_s": None,
                             "error": _line(err)})
    finally:
        model.train(was)
    return rows


# -- the report ------------------------------------------------------------------------------------
class BlockResults(Result):
    """The network report's per-block verdicts (one row per block) with the analyses' results
    in ``blocks``.

    Examples
    --------
    >>> from odenet.analysis._network_report import BlockResults
    >>> BlockResults([{"block": "b", "stability": "stable"}]).rows[0]["block"]
    'b'
    """

    kind = "network_report"
    columns = ("block", "method", "steps", "h", "strategy", "stability", "gradient",
               "reconstruction")


def _describe(model: nn.Module, caps: Sequence[BlockCapture]) -> str:
    return (f"{type(model).__name__} with {len(caps)} ODE block(s): "
            + "; ".join(f"{c.name} ({type(c.module).__name__}, {c.tableau.name}, Nt = "
                        f"{c.steps}, T = {c.T:g}, {c.strategy})" for c in caps))


def network_report(
    model: nn.Module,
    inputs: Any,
    output: Any = "odenet-report",
    *,
    targets: Tensor | None = None,
    loss: Callable | None = None,
    settings: Mapping[str, Any] | None = None,
    sections: Sequence[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    command: str | None = None,
    source: str | None = None,
) -> Path:
    """Write the report on a user's network (see :func:`odenet.analysis.report`)."""
    from odenet.analysis._report import claim_output, figure_bytes, output_path

    out_path = output_path(output)
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    inputs = check_inputs(inputs)
    cfg = check_network_settings(settings)
    chosen = _check_sections(sections)
    loss_of = network_loss(loss, targets)
    dtype = None if cfg["dtype"] is None else getattr(torch, cfg["dtype"])
    net, x, tg = as_dtype(model, inputs, targets, dtype)
    if tg is not targets or loss is None:
        loss_of = network_loss(loss, tg)

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    with claim_output(out_path, force=force) as folder:
        started = time.perf_counter()
        caps, loss_value = capture_blocks(net, x, targets=tg, loss=loss)
        desc = _describe(model, caps)
        say(f"odenet-analysis report: {desc}")
        say(f"  network loss on the batch {loss_value:.4g}; analyses in "
            f"{cfg['dtype'] or 'the model dtype'}; writing to {out_path.resolve()}")
        timings: dict[str, float] = {}
        blocks = []
        for i, cap in enumerate(caps, 1):
            t0 = time.perf_counter()
            res = analyse_block(cap, cfg, chosen,
                                lambda what, i=i, cap=cap: say(
                                    f"[block {i}/{len(caps)}] {cap.name}: {what}"))
            timings[cap.name] = time.perf_counter() - t0
            blocks.append(res)
        net_rows: list[dict[str, Any]] = []
        net_cost = None
        if "gradients" in chosen:
            say("[network] gradient of the whole network's loss per strategy")
            net_rows = network_gradients(net, x, caps, loss_of, cfg["network_strategies"])
        if "cost" in chosen:
            say("[network] memory and time per strategy")
            net_cost = _network_cost(net, x, caps, loss_of, cfg)
        elapsed = time.perf_counter() - started
        pngs, page = _render(model, caps, blocks, net_rows, net_cost, cfg, chosen, figure_bytes,
                             elapsed, timings, loss_value, desc, command, source)
        summary = BlockResults([_summary_row(b) for b in blocks])
        meta = _meta(model, caps, cfg, chosen, elapsed, timings, loss_value, desc, command,
                     source)
        data = {"meta": meta, "summary": summary.to_dict(),
                "network": {"gradients": net_rows,
                            "cost": None if net_cost is None else net_cost},
                "blocks": [_block_json(b) for b in blocks]}
        files: dict[str, str | bytes] = dict(pngs)
        files["results.json"] = json.dumps(jsonable(data), indent=1, allow_nan=False)
        files["index.html"] = page
        folder.commit(files)
        index = folder.path / "index.html"
        say(f"done in {time.perf_counter() - started:.0f} s ({elapsed:.0f} s of analyses, the "
            "rest drawing and writing).")
        for b in blocks:
            v = b["verdict"]
            say(f"  - {b['name']}: {v['stability']['text']} | {v['gradient']['text']} | "
                f"{v['reconstruction']['text']}")
        say(f"report: {index.resolve()}")
        return index


def _network_cost(net, x, caps, loss_of, cfg) -> dict[str, Any] | None:
    from odenet.analysis._plan import measure_network

    rows = []
    own = [c.gradient for c in caps]
    runs = [("backprop", "backprop"), (", ".join(c.strategy for c in caps), own)]
    runs += [(s, s) for s in cfg["cost_strategies"] if s != "backprop"]
    for name, s in runs:
        try:
            m = measure_network(net, x, [c.module for c in caps], s, loss=loss_of,
                                repeats=cfg["cost_repeats"])
            rows.append({"strategies": name, "time_s": m["time_s"],
                         "peak_mb": m["peak_bytes"] / 2**20, "probe": m["probe"],
                         "status": "ok"})
        except Exception as err:  # recorded in the table
            rows.append({"strategies": name, "time_s": None, "peak_mb": None, "probe": None,
                         "status": f"failed: {_line(err)}"})
    base = rows[0]
    for r in rows:
        r["time_ratio"] = (r["time_s"] / base["time_s"] if r["time_s"] and base["time_s"]
                           else None)
        r["memory_ratio"] = (r["peak_mb"] / base["peak_mb"] if r["peak_mb"] is not None
                             and base["peak_mb"] else None)
    return {"rows": rows, "repeats": cfg["cost_repeats"],
            "input_shape": list(x.shape) if isinstance(x, Tensor) else None}


def _summary_row(b: Mapping[str, Any]) -> dict[str, Any]:
    v = b["verdict"]
    return {"block": b["name"], "method": b["method"], "steps": b["steps"],
            "h": b["step_size"], "strategy": b["strategy"],
            "stability": v["stability"]["text"], "stability_ok": v["stability"]["ok"],
            "gradient": v["gradient"]["text"], "gradient_ok": v["gradient"]["ok"],
            "reconstruction": v["reconstruction"]["text"],
            "reconstruction_ok": v["reconstruction"]["ok"]}


def _block_json(b: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in b.items():
        out[k] = v.to_dict() if isinstance(v, Result) else v
    return out


def _meta(model, caps, cfg, chosen, elapsed, timings, loss_value, desc, command, source):
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": desc, "source": source, "network_class": type(model).__name__,
        "blocks": [c.name for c in caps], "sections": list(chosen), "settings": cfg,
        "loss": loss_value, "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": elapsed, "block_seconds": timings, "command": command,
        "versions": {"odenet": odenet.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }


def _anchor(i: int, what: str) -> str:
    return f"block-{i}-{what}"


def _cell(v: Mapping[str, Any], href: str) -> str:
    ok = v.get("ok")
    cls = {True: "ok", False: "bad", None: "na"}[ok]
    mark = {True: "✔", False: "✘", None: "–"}[ok]
    return (f"<td class='l {cls}'><a href='#{href}'>{mark}</a> {html.escape(v['text'])}</td>")


def _render(model, caps, blocks, net_rows, net_cost, cfg, chosen, figure_bytes, elapsed,
            timings, loss_value, desc, command, source) -> tuple[dict[str, bytes], str]:
    from odenet.analysis._report_figures import zoom_stability_figure

    pngs: dict[str, bytes] = {}
    body = ["<h1>odenet diagnostic report: your network</h1>",
            f"<p class='meta'>{html.escape(desc)}<br>"
            + (f"loaded from <code>{html.escape(source)}</code>; " if source else "")
            + f"{sum(p.numel() for p in model.parameters())} parameters; network loss on the "
              f"batch {loss_value:.4g}; analyses in {html.escape(str(cfg['dtype']))} on the "
              f"first {cfg['samples']} sample(s) of each block's real input (stability: the "
              f"first sample); created in {elapsed:.0f} s; odenet {odenet.__version__}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} thread(s).</p>"]
    head = ("<tr><th class='l'>block</th><th class='l'>ODE</th><th class='l'>strategy</th>"
            "<th class='l'>stable at its step?</th><th class='l'>gradient trustworthy at its "
            "Nt?</th><th class='l'>reverse reconstruction usable?</th></tr>")
    lines = []
    for i, b in enumerate(blocks):
        v = b["verdict"]
        lines.append(
            f"<tr><td class='l'><a href='#{_anchor(i, 'all')}'>{html.escape(b['name'])}</a>"
            f"</td><td class='l'>{html.escape(b['method'])}, Nt = {b['steps']}, T = "
            f"{b['T']:g}, h = {b['step_size']:.3g}</td><td class='l'>"
            f"{html.escape(b['strategy'])}</td>"
            + _cell(v["stability"], _anchor(i, "stability"))
            + _cell(v["gradient"], _anchor(i, "gradients"))
            + _cell(v["reconstruction"], _anchor(i, "reversibility")) + "</tr>")
    body.append("<div class='key'><b>Summary: one line per ODE block</b> (thresholds: "
                f"gradient error ≤ {cfg['gradient_tolerance']:g}, reconstruction error ≤ "
                f"{cfg['reconstruction_tolerance']:g}; each mark links to the evidence)"
                f"<table class='summary'>{head}{''.join(lines)}</table></div>")
    if net_rows or net_cost:
        parts = ["<h2 id='network'>The whole network</h2>"]
        if net_rows:
            parts.append("<p>Relative error of the whole network's ∂L/∂θ (all parameters, the "
                         "network's own loss on the batch) against every block on backprop: "
                         "with the blocks' own strategies, then with one strategy on every "
                         "block.</p>" + H.table(net_rows, ["strategies", "grad_error", "time_s",
                                                           "error"]))
        if net_cost:
            parts.append(
                f"<p>Peak memory and forward+backward time of the whole network (its own loss; "
                f"median of {net_cost['repeats']} run(s) after a warm-up, in this process; "
                "memory: the peak above the memory in use before, read by "
                f"{html.escape(str(net_cost['rows'][0].get('probe')))}).</p>"
                + H.table(net_cost["rows"], ["strategies", "time_s", "time_ratio", "peak_mb",
                                             "memory_ratio", "status"]))
        body.append("\n".join(parts))
    for i, b in enumerate(blocks):
        parts = [f"<h2 id='{_anchor(i, 'all')}'>Block {html.escape(b['name'])} "
                 f"({html.escape(b['type'])})</h2>",
                 f"<p class='meta'>{html.escape(b['method'])}, Nt = {b['steps']} on [0, "
                 f"{b['T']:g}] (h = {b['step_size']:.3g}), strategy {html.escape(b['strategy'])}"
                 f", input {tuple(b['input_shape'])}, {b['parameters']} parameters"
                 + (f", called {b['calls']} times (the first call's input is analysed)"
                    if b["calls"] > 1 else "")
                 + (f"; the block's output matches the declared ODE's solve to "
                    f"{b['forward_check']:.1e} (relative)" if b.get("forward_check") is not None
                    else "")
                 + "</p>"]
        fc = b.get("forward_check")
        if fc is not None and fc > 1e-6:
            parts.append("<p class='bad'>The block's forward does not match the solve of its "
                         f"declared ODE (difference {fc:.2e}): the analyses below describe the "
                         "declared rhs, T, steps and method, not what forward computes.</p>")
        for key, title in (("stability", "stability"), ("gradients", "gradient consistency"),
                           ("reversibility", "reverse-time reconstruction"), ("cost", "cost")):
            if key not in chosen:
                continue
            r = b.get(key)
            anchor = _anchor(i, key)
            verdict = {"stability": b["verdict"]["stability"],
                       "gradients": b["verdict"]["gradient"],
                       "reversibility": b["verdict"]["reconstruction"]}.get(key)
            txt = f"<p><b>{html.escape(verdict['text'])}</b></p>" if verdict else ""
            if r is None:
                err = b["errors"].get(key)
                parts.append(f"<h3 id='{anchor}'>{title}</h3>{txt}"
                             + (f"<p class='bad'>failed: {html.escape(err)}</p>" if err else ""))
                continue
            figs = []
            if key != "cost":
                fig = r.plot()
                if key == "stability":
                    zoom_stability_figure(fig, r)
                name = f"block{i}-{key}.png"
                pngs[name] = figure_bytes(fig)
                figs = [name]
            notes = r.notes() if key != "stability" else H.stability_notes(r)
            notes = [*notes, *(f"warning: {w}" for w in b.get("warnings", {}).get(key, []))]
            parts.append(f"<h3 id='{anchor}'>{title}</h3>{txt}"
                         + "".join(f'<img src="{html.escape(f)}" alt="{html.escape(f)}">'
                                   for f in figs)
                         + "".join(f"<p class='meta'>{html.escape(n)}</p>" for n in notes)
                         + f"<details><summary>table ({len(r.rows)} rows)</summary>"
                         + H.table(r.rows, r.columns) + "</details>")
        body.append("\n".join(parts))
    made = f" Generated by <code>{html.escape(command)}</code>." if command else ""
    body.append(f"<p class='meta'>Raw data: <a href='results.json'>results.json</a>.{made}</p>")
    css = H.CSS + (".ok a, .ok { color: #17692c; } .bad a, .bad { color: #b3261e; } "
                   ".na a { color: #777; } table.summary td { vertical-align: top; }\n")
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>odenet diagnostic report: your network</title>"
            f"<style>{css}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    return pngs, page
