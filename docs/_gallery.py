"""Helpers of the documentation build: those sphinx-gallery calls by name, and the viewcode link
fix (outside conf.py, so that the configuration stays picklable and the helpers testable)."""

from __future__ import annotations

import posixpath
import re

_SHOWN: dict[str, list] = {}  # per example: the Figures shown by this scraper
_PYPLOT: dict[str, list] = {}  # per example: the Figures seen under pyplot's management


_THREADS: list[int] = []  # torch's intra-op thread count when the first example started


def reset_torch(gallery_conf, fname):
    """Give every example the same starting state: the seed, the default dtype and the thread
    count (an example that sets its own must not change the next one's)."""
    import torch

    if not _THREADS:
        _THREADS.append(torch.get_num_threads())
    torch.set_num_threads(_THREADS[0])
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


_HREF = re.compile(r'href="([^"#:]+\.html)#([^"]+)"')


def fix_viewcode_backlinks(app, pagename, templatename, context, doctree) -> None:
    """Point every ``[docs]`` link of a highlighted-source page at its object's real anchor.

    viewcode builds the anchor of each ``[docs]`` link as ``<prefix>.<name>`` with one prefix per
    source module: the module under which the first object of that file was documented. A private
    module whose objects are documented under different public modules (``GradientStrategy`` as
    ``odenet.GradientStrategy``, ``resolve_gradient`` as ``odenet.gradients.resolve_gradient``)
    gets broken anchors for all but the first. Each link is redirected to the id, on its target
    page, that shares the longest dotted suffix with the anchor viewcode wrote.
    """
    if not pagename.startswith("_modules/") or "body" not in context:
        return
    ids_by_doc: dict[str, set[str]] = {}
    for fullname, entry in app.env.get_domain("py").objects.items():
        ids_by_doc.setdefault(entry.docname, set()).update({fullname, entry.node_id})

    def fix(match: re.Match) -> str:
        uri, anchor = match.group(1), match.group(2)
        target = posixpath.normpath(posixpath.join(posixpath.dirname(pagename), uri))
        ids = ids_by_doc.get(target[: -len(".html")])
        if not ids or anchor in ids:
            return match.group(0)
        parts = anchor.split(".")

        def shared(node_id: str) -> int:
            other, n = node_id.split("."), 0
            while n < min(len(other), len(parts)) and other[-1 - n] == parts[-1 - n]:
                n += 1
            return n

        best = max(ids, key=lambda i: (shared(i), -len(i)))
        if shared(best) == 0:
            return match.group(0)
        return f'href="{uri}#{best}"'

    context["body"] = _HREF.sub(fix, context["body"])
