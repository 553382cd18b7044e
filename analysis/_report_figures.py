"""The report's figures: stability regions with the spectrum, zooms, and one figure per section.

Each ``*_figures`` function takes the report's results (section name → result)
and yields ``(file name, matplotlib Figure)`` pairs, one at a time, in the
order the report writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from odenet.analysis._convergence import ConvergenceResult
from odenet.analysis._region import StabilityRegion
from odenet.analysis._results import new_figure
from odenet.analysis._stability import StabilityResult

__all__ = [
    "order_figures",
    "plot_orders",
    "plot_regions",
    "result_figures",
    "stability_figures",
    "zoom_stability_figure",
]


def _zoom_box(z: np.ndarray, overview: Sequence[float]) -> tuple[float, float, float, float] | None:
    """A square box around the points ``z`` and the imaginary axis, or ``None`` when the points
    already fill the ``overview`` box ``(x0, x1, y0, y1)``."""
    z = np.asarray(z, dtype=complex).ravel()
    z = z[np.isfinite(z)]
    if not z.size:
        return None
    x0, x1 = min(float(z.real.min()), 0.0), max(float(z.real.max()), 0.0)
    y0, y1 = float(z.imag.min()), float(z.imag.max())
    width = float(overview[1] - overview[0])
    span = max(x1 - x0, y1 - y0, 0.02 * width)
    half = 0.5 * 1.3 * span
    if 2 * half > 0.4 * width:
        return None
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    return cx - half, cx + half, cy - half, cy + half


def _draw_regions(ax, regions: Sequence[StabilityRegion], z: np.ndarray,
                  box: Sequence[float], *, ms: float, label: bool) -> None:
    x0, x1, y0, y1 = box
    X, Y = np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401))
    for i, r in enumerate(regions):
        ax.contour(X, Y, r.abs_R(X + 1j * Y), levels=[1], colors=[f"C{i}"], linewidths=1.5)
        if label:
            ax.plot([], [], color=f"C{i}", label=f"{r.label} (real limit {r.real_axis_limit:.3g})")
    ax.plot(z.real, z.imag, "o", color="k", ms=ms, mew=0, alpha=0.5,
            label="h·λ of the block" if label else None)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")


def plot_regions(regions: Sequence[StabilityRegion], spectra: np.ndarray, title: str):
    """The boundaries of several regions with the points ``spectra`` (h·λ).

    Left: the whole regions; right (when the spectrum is small against them):
    a zoom on the spectrum, marked by a rectangle on the left.

    Examples
    --------
    >>> import numpy as np
    >>> from odenet.analysis._region import stability_region
    >>> from odenet.analysis._report_figures import plot_regions
    >>> fig = plot_regions([stability_region("rk4")], np.array([-0.2, -0.01 + 0.02j]), "demo")
    >>> len(fig.axes)
    2
    """
    from matplotlib.patches import Rectangle

    z = np.asarray(spectra, dtype=complex).ravel()
    box = np.array([r.extent(z) for r in regions])
    full = (box[:, 0].min(), box[:, 1].max(), box[:, 2].min(), box[:, 3].max())
    zoom = _zoom_box(z, full)
    fig, axes = new_figure(1, 2 if zoom else 1, width=5.4, height=5.6)
    _draw_regions(axes[0], regions, z, full, ms=3, label=True)
    axes[0].set_title("the regions" if zoom else title, fontsize=10)
    if zoom:
        axes[0].add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2],
                                    fill=False, ec="k", lw=1.0, ls="--"))
        _draw_regions(axes[1], regions, z, zoom, ms=5, label=False)
        axes[1].set_title("zoom on the spectrum (dashed box on the left)", fontsize=10)
        fig.suptitle(title, fontsize=11)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3),
               fontsize=9)
    return fig


def zoom_stability_figure(fig, st: StabilityResult) -> None:
    """Zoom the left panel of ``StabilityResult.plot()`` on the spectrum; the whole region
    goes into an inset."""
    from matplotlib.patches import Rectangle

    ax = fig.axes[0]
    z = st.hlambda_all()
    full = (*ax.get_xlim(), *ax.get_ylim())
    zoom = _zoom_box(z, full)
    for line in ax.get_lines():  # the eigenvalues: small, translucent markers
        if len(np.atleast_1d(line.get_xdata())) > 2 and line.get_marker() not in ("None", ""):
            line.set(markersize=4, alpha=0.5, markeredgewidth=0)
    if zoom is None:
        return
    reg = st.region()
    X, Y = np.meshgrid(np.linspace(zoom[0], zoom[1], 301), np.linspace(zoom[2], zoom[3], 301))
    ax.contour(X, Y, reg.abs_R(X + 1j * Y), levels=[1], colors=["C0"], linewidths=1.6)
    ax.set_xlim(zoom[0], zoom[1])
    ax.set_ylim(zoom[2], zoom[3])
    ax.set_title(f"{st.method}: h·λ at h = {st.step_size:.3g} (zoom; inset: the whole region)",
                 fontsize=10)
    ins = ax.inset_axes([0.6, 0.6, 0.38, 0.38])
    Xf, Yf = np.meshgrid(np.linspace(full[0], full[1], 201), np.linspace(full[2], full[3], 201))
    A = reg.abs_R(Xf + 1j * Yf)
    ins.contourf(Xf, Yf, A, levels=[0, 1], colors=["C0"], alpha=0.25)
    ins.contour(Xf, Yf, A, levels=[1], colors=["C0"], linewidths=1.0)
    ins.plot(z.real, z.imag, "o", color="k", ms=2, mew=0, alpha=0.5)
    ins.add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2],
                            fill=False, ec="k", lw=0.8, ls="--"))
    ins.set_xlim(full[0], full[1])
    ins.set_ylim(full[2], full[3])
    ins.set_aspect("equal")
    ins.tick_params(labelsize=7)


def plot_orders(results: Sequence[ConvergenceResult]):
    """One panel per problem."""
    n = len(results)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, width=5.6, height=6.0)
    for ax, r in zip(axes, results):
        r.plot(ax)
        ax.set_title(f"{r.problem} (T = {r.T:g})", fontsize=10)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2,
                  frameon=False)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig




# -- one section's figures -------------------------------------------------------------------------
def result_figures(name: str) -> Callable[[Mapping[str, Any]], Iterator[tuple[str, Any]]]:
    """The figures of a section whose result draws itself: ``results[name].plot()`` as
    ``name.png``.

    Examples
    --------
    >>> from odenet.analysis._report_figures import result_figures
    >>> class Drawn:
    ...     def plot(self):
    ...         return "a figure"
    >>> list(result_figures("cost")({"cost": Drawn()}))
    [('cost.png', 'a figure')]
    """

    def figures(results: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
        yield f"{name}.png", results[name].plot()

    return figures


def stability_figures(results: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """The spectrum against the method's region (zoomed), then every method's region."""
    st: StabilityResult = results["stability"]
    fig = st.plot()
    zoom_stability_figure(fig, st)
    yield "stability.png", fig
    yield "regions.png", plot_regions(results["regions"], st.hlambda_all(),
                                      f"stability regions and h·λ at h = {st.step_size:.3g}")


def order_figures(results: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """One panel per problem (no figure when no problem had a method to run)."""
    if results["order"]:
        yield "order.png", plot_orders(results["order"])
