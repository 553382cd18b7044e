"""The report's page: CSS, escaping and number formatting, tables, sections and page assembly.

:func:`page` assembles ``index.html`` from the report's metadata and the
sections' HTML; each ``*_section`` function writes one section from the
report's results (section name → result) or returns ``None`` when that section
did not run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from odenet.analysis._cost import CostResult
from odenet.analysis._gradients import GradientConsistencyResult
from odenet.analysis._stability import StabilityResult

__all__ = [
    "CSS",
    "adjoint_note",
    "coincide_notes",
    "cost_section",
    "fmt",
    "gradients_section",
    "order_section",
    "page",
    "reversibility_section",
    "section",
    "settings",
    "stability_notes",
    "stability_section",
    "table",
]

CSS = """
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
.settings { background: #fbf8ef; border: 1px solid #eadfbf; padding: .5rem 1rem;
            border-radius: 6px; font-size: .9rem; }
code { background: #f3f3f5; padding: 0 .2rem; border-radius: 3px; }
"""


def fmt(v: Any) -> str:
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
        return f"{fmt(v.real)} {'+' if v.imag >= 0 else '−'} {fmt(abs(v.imag))}i"
    return html.escape(str(v))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(r.get(c) not in (None, "") for r in rows)] or list(columns)
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{html.escape(c)}</th>'
                   for i, c in enumerate(cols))
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="{"l" if isinstance(r.get(c), str) else ""}">{fmt(r.get(c))}</td>'
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def section(title: str, intro: str, figures: Sequence[str], tables: Sequence[str],
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


def settings(meta: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    s = meta["spec"]
    items = [
        f"<b>network</b>: {html.escape(meta['network_state'])}",
        f"<b>dtype</b> {html.escape(s['dtype'])} (every section, cost included)",
        f"<b>block</b>: {html.escape(str(meta.get('block_method') or s['method']))}, "
        f"{s['steps']} steps on [0, {s['T']:g}]",
        f"<b>seed</b> {s['seed']}",
        f"<b>batch</b> {s['batch']}",
        f"<b>device</b> {html.escape(str(s['device']))}",
    ]
    c = results.get("cost")
    if isinstance(c, CostResult):
        items.append(f"<b>cost</b>: {c.blocks} block(s), {html.escape(c.method)}, Nt = "
                     f"{c.steps}, input {tuple(c.state_shape)}, {c.repeats} timed round(s)")
    return "<p class='settings'>" + " · ".join(items) + "</p>"


def adjoint_note(g: GradientConsistencyResult) -> str | None:
    """A note when odenet's and torchdiffeq's adjoints give the same errors (curves coincide)."""
    a = {(r["label"], r["method"], r["steps"]): r for r in g.rows if r["strategy"] == "adjoint"}
    b = {(r["label"], r["method"], r["steps"]): r for r in g.rows
         if r["strategy"] == "torchdiffeq-adjoint"}
    both = [(a[k], b[k]) for k in a if k in b]
    if not both:
        return None
    worst = 0.0
    for ra, rb in both:
        for key in ("grad_error", "y0_error"):
            x, y = ra.get(key), rb.get(key)
            if x is None or y is None:
                continue
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    if worst > 1e-3:
        return None
    return (f"odenet's adjoint and torchdiffeq's odeint_adjoint solve the same continuous "
            f"adjoint with the same steps: their errors agree to {worst:.0e} (relative) in all "
            f"{len(both)} cases, so their curves coincide. In the figure the adjoint is the "
            "wide band with the large hollow markers, torchdiffeq-adjoint the thin line on top.")


def stability_notes(st: StabilityResult) -> list[str]:
    """The stability notes, with ARPACK's convergence flag only where it matters."""
    out = []
    err = st.summary.get("arpack_error")
    for n in st.notes():
        if n.startswith("ARPACK did not converge"):
            if err is not None and err < 1e-8:
                continue  # the dense spectrum is used and ARPACK's values agree with it
            n = ("ARPACK did not converge for every requested eigenvalue and no dense spectrum "
                 "cross-checks it: the eigenvalues shown may be incomplete, and the largest "
                 "stable step may be too optimistic" if err is None else
                 f"ARPACK did not converge for every requested eigenvalue; its values differ "
                 f"from the dense spectrum by up to {err:.1e} (relative); h·λ and the step "
                 "limit use the dense spectrum")
        elif n.startswith("ARPACK vs dense"):
            n += (" (ARPACK's extreme eigenvalues against the dense spectrum; h·λ and the step "
                  "limit use the dense spectrum)")
        out.append(n)
    return out




def coincide_notes(overlaps: Sequence[Sequence[str]]) -> list[str]:
    """A note naming the curves of a section's figures that coincide (``finish_figure``'s groups
    of overlapping lines, ``"name: ..."`` each).

    Examples
    --------
    >>> from odenet.analysis._html import coincide_notes
    >>> coincide_notes([["euler: a", "rk4: b"]])[0].split(": ")[-1]
    'euler and rk4.'
    """
    groups = []
    for group in overlaps:
        names = list(dict.fromkeys(n.split(":")[0] for n in group))
        if len(names) > 1:
            groups.append(" and ".join(names))
    if not groups:
        return []
    return ["Curves that coincide in the figure (each drawn as a pale wide band under a thin "
            "line, with nested hollow markers): " + "; ".join(dict.fromkeys(groups)) + "."]


# -- the sections (results: section name -> result; None where the section did not run) ------------
def gradients_section(results: Mapping[str, Any], figures: Sequence[str],
                      overlaps: Sequence[Sequence[str]]) -> str | None:
    """The gradient-consistency section."""
    g = results.get("gradients")
    if g is None:
        return None
    note = adjoint_note(g)
    notes = [*([note] if note else []), *g.notes()]
    return section(
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
        figures, [table(g.rows, g.columns)], notes)


def reversibility_section(results: Mapping[str, Any], figures: Sequence[str],
                          overlaps: Sequence[Sequence[str]]) -> str | None:
    """The reverse-time reconstruction section."""
    rv = results.get("reversibility")
    if rv is None:
        return None
    return section(
        "Reverse-time reconstruction",
        "The block is solved forward over [0, T], then backward from y(T) with the same "
        "method and steps, as the continuous adjoint does; the relative error of the "
        "reconstructed y₀ (∞: the backward solve blew up).",
        figures, [table(rv.rows, rv.columns)], coincide_notes(overlaps))


def stability_section(results: Mapping[str, Any], figures: Sequence[str],
                      overlaps: Sequence[Sequence[str]]) -> str | None:
    """The stability section."""
    st = results.get("stability")
    if st is None:
        return None
    return section(
        "Stability",
        "Eigenvalues λ of the block's Jacobian at the first sample's block input (ARPACK "
        "extreme eigenvalues, matrix-free, and the dense spectrum as a cross-check), h·λ "
        "against the exact stability region of the method, the largest stable step along "
        "the spectrum, and the amplification of input perturbations by the whole solve. "
        "Where the spectrum is small against the region, the pictures zoom on it (the "
        "whole region in an inset, and on the left of the second figure).",
        figures, [table(st.rows, st.columns)], stability_notes(st))


def order_section(results: Mapping[str, Any], figures: Sequence[str],
                  overlaps: Sequence[Sequence[str]]) -> str | None:
    """The observed-order section (``None`` also when no problem had a method to run)."""
    orders = results.get("order")
    if not orders:
        return None
    rows = [{"problem": r.problem, "method": m, "observed": p, "declared": r.declared[m]}
            for r in orders for m, p in r.observed.items()]
    return section(
        "Observed order of convergence",
        "Relative error at T against an exact solution or scipy's DOP853 at tolerance "
        "1e-13, fitted by least squares in log-log; <code>model</code> is the network's "
        "own block (float64). Non-smooth activations (ReLU) can lower the observed order.",
        figures, [table(rows, ["problem", "method", "observed", "declared"])],
        coincide_notes(overlaps))


def cost_section(results: Mapping[str, Any], figures: Sequence[str],
                 overlaps: Sequence[Sequence[str]]) -> str | None:
    """The cost section."""
    c = results.get("cost")
    if c is None:
        return None
    return section(
        "Cost",
        f"Peak memory and forward+backward time of each strategy on the network with "
        f"{c.blocks} ODE block(s) ({html.escape(c.method)}, Nt = {c.steps} per block, input "
        f"{tuple(c.state_shape)}, {html.escape(c.dtype)}), as ratios to backprop; every row "
        "comes from this run (an interrupted cost measurement is repeated whole). Memory: "
        "the peak of each strategy, each in a fresh process. Time: all strategies in one "
        f"process, in {c.repeats} interleaved round(s) (each round runs every strategy once, "
        "in a rotated order); the ratio is the median over the rounds of that round's ratio "
        "to backprop, with its min–max range. Every block uses the strategy; ANODE keeps "
        "each block's input and recomputes one block at a time in backward (memory O(L) + "
        "O(Nt) instead of O(L·Nt) over L blocks); Revolve and the adjoints trade "
        "recomputation for memory within each block.",
        figures, [table(c.rows, c.columns)], c.skipped)


# -- the page --------------------------------------------------------------------------------------
def page(meta: Mapping[str, Any], results: Mapping[str, Any], sections: Sequence[str]) -> str:
    """``index.html``: the header (model, settings, key numbers), the sections' HTML in order,
    and a link to the raw data.

    Examples
    --------
    >>> from odenet.analysis._html import page
    >>> meta = {"model": "a <net>", "block_parameters": 3, "block_input_shape": [1, 2],
    ...         "created": "today", "seconds": 1.0, "threads": 1,
    ...         "versions": {"odenet": "0", "torch": "0"}, "network_state": "untrained",
    ...         "spec": {"dtype": "float64", "method": "rk4", "steps": 2, "T": 1.0, "seed": 0,
    ...                  "batch": 1, "device": "cpu"}, "key_numbers": [], "command": None}
    >>> text = page(meta, {}, ["<h2>one</h2>"])
    >>> text.startswith("<!DOCTYPE html>"), "a &lt;net&gt;" in text, "<h2>one</h2>" in text
    (True, True, True)
    """
    body = [
        "<h1>odenet diagnostic report</h1>",
        f"<p class='meta'>{html.escape(meta['model'])}<br>{meta['block_parameters']} parameters "
        f"in the block; block input {tuple(meta['block_input_shape'])}; created "
        f"{meta['created']} in {meta['seconds']:.0f} s; odenet {meta['versions']['odenet']}, "
        f"torch {meta['versions']['torch']}, {meta['threads']} thread(s).</p>",
        settings(meta, results),
    ]
    if meta["key_numbers"]:
        body.append("<div class='key'><b>Key numbers</b><ul>"
                    + "".join(f"<li>{html.escape(k)}</li>" for k in meta["key_numbers"])
                    + "</ul></div>")
    body += sections
    made = (f" Generated by <code>{html.escape(meta['command'])}</code>."
            if meta.get("command") else "")
    body.append(f"<p class='meta'>Raw data: <a href='results.json'>results.json</a>.{made}</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>odenet diagnostic report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
