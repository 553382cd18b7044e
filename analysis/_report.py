"""The diagnostic report: every analysis on one network, written as HTML, PNG figures and JSON."""

from __future__ import annotations

import datetime
import html
import io
import json
import math
import platform
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import odenet
from analysis._convergence import ConvergenceResult, convergence_order
from analysis._cost import CostResult, cost
from analysis._gradients import GradientConsistencyResult, gradient_consistency
from analysis._gradients import combine as combine_gradients
from analysis._models import Case, build_case, check_spec
from analysis._problems import BUILTIN_PROBLEMS, ODEProblem
from analysis._region import StabilityRegion, resolve_method, stability_region
from analysis._results import Result, jsonable, new_figure
from analysis._reversibility import ReversibilityResult, reversibility
from analysis._reversibility import combine as combine_reversibility
from analysis._stability import StabilityResult, stability
from analysis._sweep import atomic_write
from odenet import IMEXTableau
from odenet.errors import ArgumentError

__all__ = [
    "REPORT_DEFAULTS",
    "report",
    "run_cost",
    "run_gradients",
    "run_order",
    "run_reversibility",
    "run_stability",
    "write_figure",
]

#: Settings of the sweeps in ``odenet-analysis report`` (each overridable).
REPORT_DEFAULTS: dict[str, Any] = {
    "activations": ("tanh", "relu"),
    "gradient_methods": ("euler", "midpoint", "rk4_38"),
    "imex_gradient_methods": ("imex_euler", "ars222", "ars443"),
    "gradient_steps": (2, 4, 8, 16, 32, 64),
    "strategies": ("anode", "revolve", "adjoint", "torchdiffeq-adjoint"),
    "fd_directions": 2,
    "reversibility_methods": ("euler", "midpoint", "rk4"),
    "reversibility_steps": (2, 4, 8, 16, 32, 64),
    "order_methods": ("euler", "midpoint", "heun", "ssprk3", "rk4", "rk4_38",
                      "imex_euler", "ars222", "ars443"),
    "order_problems": ("linear", "vanderpol", "lotka_volterra", "convnet", "model"),
    "order_steps": (8, 16, 32, 64, 128),
    "cost_strategies": ("anode", "revolve", "adjoint", "torchdiffeq", "torchdiffeq-adjoint"),
    "cost_method": "rk4_38",
    "cost_steps": 16,
    "cost_batch": 32,
    "cost_blocks": 4,
    "cost_repeats": 3,
    "stability_k": 6,
}


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def write_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from analysis._results import new_figure
    >>> from analysis._report import write_figure
    >>> fig, (ax,) = new_figure()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_figure(fig, pathlib.Path(d) / "f.png")
    ...     p.read_bytes()[:4]
    b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write(path, buf.getvalue())


def _cases(spec: Mapping[str, Any], activations: Sequence[str]) -> list[tuple[str, Case]]:
    return [(a, build_case({**spec, "activation": a})) for a in activations]


def _store(stores: Path | None, name: str) -> Path | None:
    return None if stores is None else stores / f"{name}.jsonl"


# -- the sections ----------------------------------------------------------------------------------
def run_gradients(
    spec: Mapping[str, Any],
    activations: Sequence[str],
    methods: Sequence[str],
    steps: Sequence[int],
    strategies: Sequence[str],
    *,
    fd_directions: int = 2,
    stores: Path | None = None,
    progress: bool | None = None,
) -> GradientConsistencyResult:
    """Gradient consistency of the specification's ODE block, for each activation.

    The loss is the network's classification loss on the block output.

    Examples
    --------
    >>> from analysis._report import run_gradients
    >>> res = run_gradients({"model": "dense", "channels": 2, "batch": 2}, ["tanh"], ["euler"],
    ...                     [2], ["anode"], progress=False)
    >>> [r["strategy"] for r in res.rows]
    ['backprop', 'anode']
    """
    results = []
    for act, case in _cases(spec, activations):
        if case.implicit is not None:
            explicit = [m for m in methods if not isinstance(resolve_method(m), IMEXTableau)]
            if explicit:
                raise ArgumentError(
                    f"methods: the IMEX model needs IMEX methods (imex_euler, ars222, ars443), "
                    f"got {explicit[0]!r}"
                )
        results.append(
            gradient_consistency(
                case.func, case.y0, case.T, methods, steps, strategies, loss=case.loss,
                params=case.params, implicit=case.implicit, fd_directions=fd_directions,
                label=act, store=_store(stores, f"gradients-{act}"), progress=progress,
            )
        )
    return combine_gradients(results)


def run_reversibility(
    spec: Mapping[str, Any],
    activations: Sequence[str],
    methods: Sequence[str],
    steps: Sequence[int],
    *,
    stores: Path | None = None,
    progress: bool | None = None,
) -> ReversibilityResult:
    """Reverse-time reconstruction of the block input, for each activation.

    IMEX models are analysed through their explicit part ``f - L`` (an IMEX step
    cannot run backward in time).

    Examples
    --------
    >>> from analysis._report import run_reversibility
    >>> res = run_reversibility({"model": "dense", "channels": 2, "batch": 2}, ["tanh"],
    ...                         ["euler"], [2, 4], progress=False)
    >>> len(res.rows)
    2
    """
    results = []
    for act, case in _cases(spec, activations):
        f = case.func
        if case.implicit is not None:
            L, g = case.implicit, case.func
            f = _Minus(g, L)
        results.append(
            reversibility(f, case.y0, case.T, methods, steps, label=act,
                          store=_store(stores, f"reversibility-{act}"), progress=progress)
        )
    return combine_reversibility(results)


class _Minus(torch.nn.Module):
    """``f(t, y) - L y`` as one right-hand side."""

    def __init__(self, f, L):
        super().__init__()
        self.f = f
        self.L = L

    def forward(self, t, y):
        return self.f(t, y) - self.L(y)


def run_stability(
    spec: Mapping[str, Any],
    *,
    method: str | None = None,
    step_size: float | None = None,
    k: int = 6,
    which: Sequence[str] = ("LM", "LR"),
    T: float | None = None,
) -> tuple[StabilityResult, list[StabilityRegion]]:
    """Spectrum of the block's Jacobian at the first sample, and the regions of the methods."""
    case = build_case(spec)
    m = method or case.method
    h = step_size or case.step_size
    y = case.y0[:1]
    res = stability(case.func, y, m, h, implicit=case.implicit, k=k, which=which,
                    T=case.T if T is None else T)
    z = res.hlambda_all()
    tab = resolve_method(m)
    if isinstance(tab, IMEXTableau):
        mus = res._mu * h
        ws = [float(w) for w in np.unique(np.quantile(mus, [0.0, 0.5, 1.0]))]
        regions = [stability_region(n, implicit_values=ws, spectra=z)
                   for n in ("imex_euler", "ars222", "ars443")]
    else:
        regions = [stability_region(n, spectra=z) for n in ("euler", "midpoint", "ssprk3", "rk4")]
    return res, regions


def plot_regions(regions: Sequence[StabilityRegion], spectra: np.ndarray, title: str):
    """The boundaries of several regions on one axes, with the points ``spectra`` (h·λ)."""
    fig, (ax,) = new_figure(width=6.4, height=5.4)
    box = np.array([r.extent(spectra) for r in regions])
    x0, x1, y0, y1 = box[:, 0].min(), box[:, 1].max(), box[:, 2].min(), box[:, 3].max()
    X, Y = np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401))
    for i, r in enumerate(regions):
        ax.contour(X, Y, r.abs_R(X + 1j * Y), levels=[1], colors=[f"C{i}"], linewidths=1.5)
        ax.plot([], [], color=f"C{i}", label=f"{r.label} (real limit {r.real_axis_limit:.3g})")
    z = np.asarray(spectra)
    ax.plot(z.real, z.imag, ".", color="k", ms=3, label="h·λ of the block")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _model_problem(spec: Mapping[str, Any]) -> ODEProblem:
    case = build_case({**spec, "dtype": "float64", "batch": 1})
    return ODEProblem(case.func, case.y0, case.T, implicit=case.implicit, name="model",
                      description="the network's ODE block on one sample; DOP853 reference")


def run_order(
    spec: Mapping[str, Any] | None,
    methods: Sequence[str],
    problems: Sequence[str],
    steps: Sequence[int],
    *,
    stores: Path | None = None,
    progress: bool | None = None,
) -> list[ConvergenceResult]:
    """Observed orders on each problem (``"model"``: the specification's block, float64).

    IMEX methods run only on problems with an implicit part.

    Examples
    --------
    >>> from analysis._report import run_order
    >>> [r.problem for r in run_order(None, ["euler"], ["linear"], [8, 16], progress=False)]
    ['linear']
    """
    out = []
    for name in problems:
        if name == "model":
            if spec is None:
                raise ArgumentError("problems: 'model' needs a model specification")
            prob: ODEProblem | str = _model_problem(spec)
            has_implicit = prob.implicit is not None
        else:
            if name not in BUILTIN_PROBLEMS:
                raise ArgumentError(
                    f"problems: unknown problem {name!r}; valid problems are "
                    + ", ".join(repr(p) for p in (*BUILTIN_PROBLEMS, "model"))
                )
            prob = name
            has_implicit = name in ("linear", "convnet")
        ms = [m for m in methods
              if has_implicit or not isinstance(resolve_method(m), IMEXTableau)]
        if not ms:
            continue
        out.append(convergence_order(ms, prob, steps, store=_store(stores, f"order-{name}"),
                                     progress=progress))
    return out


def plot_orders(results: Sequence[ConvergenceResult]):
    """One panel per problem."""
    n = len(results)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, width=5.2, height=4.2)
    for ax, r in zip(axes, results):
        r.plot(ax)
        ax.set_title(f"{r.problem} (T = {r.T:g})", fontsize=10)
        ax.legend(fontsize=6)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def run_cost(
    spec: Mapping[str, Any],
    strategies: Sequence[str],
    *,
    method: str = "rk4_38",
    steps: int = 16,
    batch: int = 32,
    blocks: int = 4,
    repeats: int = 3,
    stores: Path | None = None,
    progress: bool | None = None,
) -> CostResult:
    """Cost of the strategies on the specification's network with ``blocks`` ODE blocks."""
    s = check_spec({**spec, "batch": batch, "steps": steps, "method": method,
                    "blocks": blocks})
    if s["model"] == "imex":
        s["method"] = "ars222"
    return cost(s, strategies=strategies, repeats=repeats, store=_store(stores, "cost"),
                progress=progress)


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .82rem; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th { background: #f3f3f5; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5rem 0; }
.key { background: #f7f9fc; border: 1px solid #dbe4f0; padding: .6rem 1rem; border-radius: 6px; }
.meta { color: #666; font-size: .85rem; } details { margin: .4rem 0; }
code { background: #f3f3f5; padding: 0 .2rem; border-radius: 3px; }
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.2e}"
    if isinstance(v, complex):
        return f"{_fmt(v.real)} {'+' if v.imag >= 0 else '−'} {_fmt(abs(v.imag))}i"
    return html.escape(str(v))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(r.get(c) not in (None, "") for r in rows)] or list(columns)
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{html.escape(c)}</th>'
                   for i, c in enumerate(cols))
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="{"l" if isinstance(r.get(c), str) else ""}">{_fmt(r.get(c))}</td>'
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(title: str, intro: str, figures: Sequence[str], tables: Sequence[str],
             notes: Sequence[str] = ()) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{intro}</p>"]
    parts += [f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figures]
    parts += [f"<p class='meta'>{html.escape(n)}</p>" for n in notes]
    if tables:
        rows = sum(t.count("<tr>") - 1 for t in tables)
        attr = " open" if rows <= 30 else ""
        parts.append(f"<details{attr}><summary>table ({rows} rows)</summary>"
                     + "".join(tables) + "</details>")
    return "\n".join(parts)


# -- key numbers -----------------------------------------------------------------------------------
def key_numbers(results: Mapping[str, Any]) -> list[str]:
    """The report's headline findings, as sentences (also printed by the command)."""
    out: list[str] = []
    g = results.get("gradients")
    if isinstance(g, GradientConsistencyResult):
        labels = list(dict.fromkeys(r["label"] for r in g.rows))
        steps = sorted({r["steps"] for r in g.rows})
        for strat in ("adjoint", "torchdiffeq-adjoint"):
            rows = [r for r in g.rows if r["strategy"] == strat and r["grad_error"] is not None]
            if not rows:
                continue
            meth = rows[-1]["method"]
            parts = []
            for lab in labels:
                e = {r["steps"]: r["grad_error"] for r in rows
                     if r["label"] == lab and r["method"] == meth}
                if e:
                    lo, hi = min(e), max(e)
                    parts.append(f"{lab or 'model'}: {e[lo]:.2e} at Nt = {lo}, {e[hi]:.2e} at "
                                 f"Nt = {hi}")
            out.append(f"{strat} (optimize-then-discretize) vs backprop, {meth}, relative "
                       f"∂L/∂θ error — " + "; ".join(parts))
        dto = [r["grad_error"] for r in g.rows if r["strategy"] in ("anode", "revolve")
               or r["strategy"].startswith("revolve:")]
        dto = [e for e in dto if e is not None]
        if dto:
            out.append(f"ANODE / Revolve vs backprop: largest relative error {max(dto):.1e} "
                       f"over {len(dto)} cases (Nt = {steps[0]}…{steps[-1]})")
        parts = []
        for lab in labels:
            fd = [r["fd_error"] for r in g.rows if r["strategy"] == g.reference
                  and r["label"] == lab and r["fd_error"] is not None]
            if fd:
                parts.append(f"{lab or 'model'} {max(fd):.1e}")
        if parts:
            out.append("backprop vs central finite differences, largest relative deviation: "
                       + "; ".join(parts))
    rv = results.get("reversibility")
    if isinstance(rv, ReversibilityResult):
        parts = []
        for lab in dict.fromkeys(r["label"] for r in rv.rows):
            rows = [r for r in rv.rows if r["label"] == lab]
            m = rows[-1]["method"]
            e = {r["steps"]: r["error"] for r in rows if r["method"] == m}
            lo, hi = min(e), max(e)
            parts.append(f"{lab}: {e[lo]:.2e} (Nt = {lo}) → {e[hi]:.2e} (Nt = {hi})")
        out.append(f"reverse-time reconstruction of y0 with {m}: " + "; ".join(parts))
    st = results.get("stability")
    if isinstance(st, StabilityResult):
        line = (f"stability of {st.method} at h = {st.step_size:.3g}: spectral radius "
                f"{st.spectral_radius:.3g}, max Re λ {st.max_real:.2e}; all hλ in the region: "
                f"{'yes' if st.stable else 'NO'}; largest stable step {st.max_step:.3g}")
        if st.flow_amplification is not None:
            line += f"; flow-map amplification {st.flow_amplification:.3g}"
        out.append(line)
    orders = results.get("order")
    if orders:
        for r in orders:
            if r.problem in ("model", "vanderpol"):
                out.append(f"observed orders on {r.problem}: " + ", ".join(
                    f"{m} {p:.2f}" for m, p in r.observed.items()))
    c = results.get("cost")
    if isinstance(c, CostResult):
        parts = [f"{r['strategy']} time ×{r['time_ratio']:.2f} memory ×{r['memory_ratio']:.2f}"
                 for r in c.rows[1:] if r.get("time_ratio") is not None
                 and r.get("memory_ratio") is not None]
        if parts:
            out.append(f"cost vs backprop ({c.method}, Nt = {c.steps}): " + "; ".join(parts))
    return out


# -- the report ------------------------------------------------------------------------------------
def check_output(output: str | Path) -> Path:
    """Create ``output`` if needed and check that files can be written there.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from analysis._report import check_output
    >>> with tempfile.TemporaryDirectory() as d:
    ...     check_output(pathlib.Path(d) / "r").is_dir()
    True
    """
    out = Path(output)
    try:
        if out.exists() and not out.is_dir():
            raise ArgumentError(f"output: {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{id(out)}"
        probe.write_bytes(b"")
        probe.unlink()
    except PermissionError:
        raise ArgumentError(f"output: no permission to write in {out}") from None
    except OSError as err:
        raise ArgumentError(f"output: cannot use {out}: {err.strerror or err}") from None
    return out


def report(
    output: str | Path = "odenet-report",
    spec: Mapping[str, Any] | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    sections: Sequence[str] = ("gradients", "reversibility", "stability", "order", "cost"),
    progress: bool | None = None,
    fresh: bool = False,
    quiet: bool = False,
    command: str | None = None,
) -> Path:
    """Run every analysis on one network and write ``index.html``, PNG figures and ``results.json``.

    Each sweep records its finished cases in ``output/sweeps/*.jsonl``; running
    the same report again after an interruption resumes where it stopped (and a
    finished report is rebuilt from the records at once; ``fresh`` discards
    them). Every file is written atomically (temporary file, then rename).

    Parameters
    ----------
    output : path
        The report folder (created).
    spec : dict, optional
        The model specification (:data:`analysis._models.DEFAULT_SPEC` keys).
    settings : dict, optional
        Sweep settings overriding :data:`REPORT_DEFAULTS`.
    sections : sequence of str
        Which analyses to run.
    progress : bool, optional
        Progress bars (``None``: on a terminal).
    fresh : bool
        Discard recorded cases first.
    quiet : bool
        Print nothing.
    command : str, optional
        The command line that made the report (shown in the HTML).

    Returns
    -------
    Path
        The path of ``index.html``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from analysis import report
    >>> with tempfile.TemporaryDirectory() as d:
    ...     index = report(pathlib.Path(d) / "r", {"model": "dense", "channels": 2, "batch": 2},
    ...                    settings={"activations": ["tanh"], "order_problems": ["linear"],
    ...                              "order_methods": ["euler"], "order_steps": [4, 8]},
    ...                    sections=["order"], quiet=True)
    ...     sorted(p.name for p in index.parent.glob("*.*"))
    ['index.html', 'order.png', 'results.json']
    """
    valid_sections = ("gradients", "reversibility", "stability", "order", "cost")
    for s in sections:
        if s not in valid_sections:
            raise ArgumentError(
                f"sections: unknown section {s!r}; valid sections are "
                + ", ".join(repr(v) for v in valid_sections)
            )
    cfg = dict(REPORT_DEFAULTS)
    for k, v in (settings or {}).items():
        if k not in REPORT_DEFAULTS:
            raise ArgumentError(
                f"settings: unknown setting {k!r}; valid settings are "
                + ", ".join(repr(s) for s in REPORT_DEFAULTS)
            )
        cfg[k] = v
    spec = check_spec(spec)
    gradient_methods = cfg["gradient_methods"]
    if spec["model"] == "imex" and "gradient_methods" not in (settings or {}):
        gradient_methods = cfg["imex_gradient_methods"]
    out = check_output(output)
    stores = out / "sweeps"
    if fresh and stores.exists():
        shutil.rmtree(stores)
    stores.mkdir(exist_ok=True)
    started = time.perf_counter()
    case = build_case(spec)
    n_params = sum(p.numel() for p in case.params)
    _say(f"odenet-analysis report: {case.description}", quiet)
    _say(f"  {n_params} parameters in the block, block input {tuple(case.y0.shape)}, "
         f"writing to {out.resolve()}", quiet)
    results: dict[str, Any] = {}
    figures: dict[str, list[str]] = {}
    timings: dict[str, float] = {}
    steps_total = len(sections)

    def step(i: int, name: str, what: str, fn: Callable[[], Any]) -> None:
        _say(f"[{i}/{steps_total}] {what}", quiet)
        t0 = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - t0

    i = 0
    if "gradients" in sections:
        i += 1
        step(i, "gradients", "gradient consistency (strategies vs backprop and finite differences)",
             lambda: run_gradients(spec, cfg["activations"], gradient_methods,
                                   cfg["gradient_steps"], cfg["strategies"],
                                   fd_directions=cfg["fd_directions"], stores=stores,
                                   progress=progress))
        figures["gradients"] = [str(write_figure(results["gradients"].plot(),
                                                 out / "gradients.png").name)]
    if "reversibility" in sections:
        i += 1
        step(i, "reversibility", "reverse-time reconstruction",
             lambda: run_reversibility(spec, cfg["activations"], cfg["reversibility_methods"],
                                       cfg["reversibility_steps"], stores=stores,
                                       progress=progress))
        figures["reversibility"] = [write_figure(results["reversibility"].plot(),
                                                 out / "reversibility.png").name]
    if "stability" in sections:
        i += 1

        def stab():
            res, regions = run_stability(spec, k=cfg["stability_k"])
            results["regions"] = regions
            return res

        step(i, "stability", "spectrum of the block's Jacobian and stability regions", stab)
        st = results["stability"]
        figures["stability"] = [
            write_figure(st.plot(), out / "stability.png").name,
            write_figure(plot_regions(results["regions"], st.hlambda_all(),
                                      f"stability regions and h·λ at h = {st.step_size:.3g}"),
                         out / "regions.png").name,
        ]
    if "order" in sections:
        i += 1
        step(i, "order", "observed convergence orders",
             lambda: run_order(spec, cfg["order_methods"], cfg["order_problems"],
                               cfg["order_steps"], stores=stores, progress=progress))
        if results["order"]:
            figures["order"] = [write_figure(plot_orders(results["order"]),
                                             out / "order.png").name]
    if "cost" in sections:
        i += 1
        step(i, "cost", "memory and time per strategy (one fresh process per measurement)",
             lambda: run_cost(spec, cfg["cost_strategies"], method=cfg["cost_method"],
                              steps=cfg["cost_steps"], batch=cfg["cost_batch"],
                              blocks=cfg["cost_blocks"],
                              repeats=cfg["cost_repeats"], stores=stores, progress=progress))
        figures["cost"] = [write_figure(results["cost"].plot(), out / "cost.png").name]

    keys = key_numbers(results)
    elapsed = time.perf_counter() - started
    meta = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": case.description,
        "spec": spec,
        "settings": cfg,
        "block_parameters": n_params,
        "block_input_shape": list(case.y0.shape),
        "seconds": elapsed,
        "section_seconds": timings,
        "versions": {"odenet": odenet.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "key_numbers": keys,
        "command": command,
    }
    data: dict[str, Any] = {"meta": meta}
    for name, value in results.items():
        if isinstance(value, Result):
            data[name] = value.to_dict()
        elif isinstance(value, list):
            data[name] = [v.to_dict() for v in value]
    atomic_write(out / "results.json", json.dumps(jsonable(data), indent=1, allow_nan=False))
    index = atomic_write(out / "index.html", _html(meta, results, figures))
    _say(f"done in {elapsed:.0f} s. Key numbers:", quiet)
    for k in keys:
        _say(f"  - {k}", quiet)
    _say(f"report: {index.resolve()}", quiet)
    return index


def _html(meta: Mapping[str, Any], results: Mapping[str, Any], figures: Mapping[str, list]) -> str:
    body = [
        "<h1>odenet diagnostic report</h1>",
        f"<p class='meta'>{html.escape(meta['model'])}<br>{meta['block_parameters']} parameters "
        f"in the block; block input {tuple(meta['block_input_shape'])}; created "
        f"{meta['created']} in {meta['seconds']:.0f} s; odenet {meta['versions']['odenet']}, "
        f"torch {meta['versions']['torch']}, {meta['threads']} thread(s).</p>",
    ]
    if meta["key_numbers"]:
        body.append("<div class='key'><b>Key numbers</b><ul>"
                    + "".join(f"<li>{html.escape(k)}</li>" for k in meta["key_numbers"])
                    + "</ul></div>")
    g = results.get("gradients")
    if g is not None:
        body.append(_section(
            "Gradient consistency",
            "Relative error of ∂L/∂θ and ∂L/∂y₀ (L: the network's classification loss on the "
            "block output) of each strategy against backprop, the exact gradient of the discrete "
            "network; <code>fd_error</code> compares directional derivatives with central finite "
            "differences. Discretize-then-optimize strategies (ANODE, Revolve) must agree to "
            "round-off; the optimize-then-discretize adjoint (odenet's <code>adjoint</code>, "
            "torchdiffeq's <code>odeint_adjoint</code>) is only O(hᵖ)-close, and less for "
            "non-smooth activations. Finite differences check smooth activations to about "
            "1e-7; where ReLU pre-activations sit exactly at the kink (zero background pixels "
            "with zero bias), central differences average the two one-sided derivatives and "
            "deviate from every gradient, backprop included.",
            figures.get("gradients", []),
            [_table(g.rows, g.columns)], g.notes()))
    rv = results.get("reversibility")
    if rv is not None:
        body.append(_section(
            "Reverse-time reconstruction",
            "The block is solved forward over [0, T], then backward from y(T) with the same "
            "method and steps, as the continuous adjoint does; the relative error of the "
            "reconstructed y₀ (∞: the backward solve blew up).",
            figures.get("reversibility", []), [_table(rv.rows, rv.columns)]))
    st = results.get("stability")
    if st is not None:
        body.append(_section(
            "Stability",
            "Eigenvalues λ of the block's Jacobian at the first sample's block input (ARPACK "
            "extreme eigenvalues, matrix-free, and the dense spectrum as a cross-check), h·λ "
            "against the exact stability region of the method, the largest stable step along "
            "the spectrum, and the amplification of input perturbations by the whole solve.",
            figures.get("stability", []), [_table(st.rows, st.columns)], st.notes()))
    orders = results.get("order")
    if orders:
        rows = [{"problem": r.problem, "method": m, "observed": p, "declared": r.declared[m]}
                for r in orders for m, p in r.observed.items()]
        body.append(_section(
            "Observed order of convergence",
            "Relative error at T against an exact solution or scipy's DOP853 at tolerance "
            "1e-13, fitted by least squares in log-log; <code>model</code> is the network's "
            "own block (float64). Non-smooth activations (ReLU) can lower the observed order.",
            figures.get("order", []),
            [_table(rows, ["problem", "method", "observed", "declared"])]))
    c = results.get("cost")
    if c is not None:
        body.append(_section(
            "Cost",
            f"Peak memory and forward+backward time of each strategy on the network with "
            f"{c.blocks} ODE block(s) ({html.escape(c.method)}, Nt = {c.steps} per block, input "
            f"{tuple(c.state_shape)}, "
            f"{html.escape(c.dtype)}), each measured in a fresh process, as ratios to backprop "
            "measured in the same run. Every block uses the strategy; ANODE keeps each block's "
            "input and recomputes one block at a time in backward (memory O(L) + O(Nt) instead "
            "of O(L·Nt) over L blocks); Revolve and the adjoints trade recomputation for memory "
            "within each block.",
            figures.get("cost", []), [_table(c.rows, c.columns)], c.skipped))
    made = (f" Generated by <code>{html.escape(meta['command'])}</code>."
            if meta.get("command") else "")
    body.append(f"<p class='meta'>Raw data: <a href='results.json'>results.json</a>.{made}</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>odenet diagnostic report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
