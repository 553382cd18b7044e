"""Helpers sphinx-gallery calls by name (outside conf.py, so the configuration stays picklable)."""

from __future__ import annotations

_SHOWN: dict[str, list] = {}  # per example: the Figures shown by this scraper
_PYPLOT: dict[str, list] = {}  # per example: the Figures seen under pyplot's management


def reset_torch(gallery_conf, fname):
    """Give every example the same starting state: the seed and the default dtype."""
    import torch

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)


def result_figures(block, block_vars, gallery_conf):
    """Scrape the matplotlib Figures an example holds in its global variables.

    The ``plot()`` methods of :mod:`odenet.analysis` return :class:`matplotlib.figure.Figure`
    objects that pyplot does not manage (so that they never leak into a user's pyplot state);
    sphinx-gallery's matplotlib scraper only sees pyplot figures. This scraper shows every Figure
    bound to a global name of the example, once, after the code block that created it. A
    pyplot figure is left to the matplotlib scraper, also after that scraper has closed it (a
    closed pyplot figure loses its manager, which would otherwise make it look unmanaged).
    """
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    src = str(block_vars["src_file"])
    shown = _SHOWN.setdefault(src, [])
    pyplot = _PYPLOT.setdefault(src, [])
    for memo in (_SHOWN, _PYPLOT):  # a new example: forget the previous ones
        for key in [k for k in memo if k != src]:
            del memo[key]
    paths = []
    for value in list(block_vars["example_globals"].values()):
        figs = value if isinstance(value, (list, tuple)) else [value]
        for fig in figs:
            if not isinstance(fig, Figure):
                continue
            if fig.canvas.manager is not None:  # pyplot's: the matplotlib scraper shows it
                if not any(fig is seen for seen in pyplot):
                    pyplot.append(fig)
                continue
            if any(fig is seen for seen in shown) or any(fig is seen for seen in pyplot):
                continue
            shown.append(fig)
            path = next(block_vars["image_path_iterator"])
            fig.savefig(path, dpi=110)
            paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])
