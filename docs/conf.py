"""Sphinx configuration of the odenet documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.

Environment variables
---------------------
ODENET_GALLERY
    ``full`` executes every example of the gallery, ``fast`` (the default) only the quick ones
    listed in ``FAST_EXAMPLES``, ``none`` executes none (the gallery is still rendered, without
    outputs).
ODENET_INTERSPHINX
    ``local`` (the default) links to Python / PyTorch / NumPy / SciPy through small inventories
    written at build time (no network); ``online`` fetches the projects' published inventories;
    ``off`` disables the cross-project links.
ODENET_MATHJAX
    Optional path or URL of ``MathJax.js``/``tex-chtml.js`` to use instead of the copy that
    sphinx-mathjax-offline puts into the built site (the default, which needs no network).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

from _gallery import fix_viewcode_backlinks  # noqa: E402
from _inventories import BASE_URLS, write_inventories  # noqa: E402

import odenet  # noqa: E402

# -- project -------------------------------------------------------------------------------------
project = "odenet"
author = "the odenet developers"
copyright = "the odenet developers"
release = odenet.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax copied into _static: the pages render math offline
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/GALLERY_HEADER.rst"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "math"
pygments_style = "sphinx"
nitpicky = False

# -- autodoc / autosummary / numpydoc --------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_inherit_docstrings = False  # torch's forward()/extra_repr() docstrings are not ours
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "Tensor": "torch.Tensor",
    "Module": "torch.nn.Module",
    "nn.Module": "torch.nn.Module",
    "dtype": "torch.dtype",
    "device": "torch.device",
    "ndarray": "numpy.ndarray",
    "callable": "callable",
    "ButcherTableau": "odenet.ButcherTableau",
    "IMEXTableau": "odenet.IMEXTableau",
    "GradientStrategy": "odenet.GradientStrategy",
    "Path": "pathlib.Path",
}
numpydoc_xref_ignore = "all"

# -- intersphinx (no network unless asked) ------------------------------------------------------
_mode = os.environ.get("ODENET_INTERSPHINX", "local").lower()
if _mode == "online":
    intersphinx_mapping = {k: (url, None) for k, url in BASE_URLS.items()}
elif _mode == "off":
    intersphinx_mapping = {}
else:
    _inv = write_inventories(DOCS / "_build" / ".inventories")
    intersphinx_mapping = {k: (url, str(_inv[k])) for k, url in BASE_URLS.items()}
intersphinx_timeout = 5

# -- math ----------------------------------------------------------------------------------------
if os.environ.get("ODENET_MATHJAX"):  # another MathJax (e.g. a CDN address) instead of the copy
    mathjax_path = os.environ["ODENET_MATHJAX"]
mathjax3_config = {
    "tex": {
        "macros": {
            "R": r"\mathbb{R}",
            "dd": r"\mathrm{d}",
        }
    }
}

# -- gallery ---------------------------------------------------------------------------------------
#: Examples executed in ``ODENET_GALLERY=fast`` mode (file stems, without ``.py``).
FAST_EXAMPLES = ("plot_anode_reproduction", "plot_stability_tour", "plot_adaptive_gradients")

_gallery = os.environ.get("ODENET_GALLERY", "fast").lower()
if _gallery not in {"full", "fast", "none"}:
    raise ValueError(f"ODENET_GALLERY: expected 'full', 'fast' or 'none', got {_gallery!r}")
if _gallery == "full":
    _pattern = re.escape(os.sep) + "plot_"
elif _gallery == "fast":
    _pattern = re.escape(os.sep) + "(" + "|".join(FAST_EXAMPLES) + r")\.py$"
else:
    _pattern = r"^$"


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _pattern,
    "plot_gallery": "True",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "api/generated/backreferences",
    "doc_module": ("odenet",),
    "reset_modules": ("matplotlib", "_gallery.reset_torch"),
    "image_scrapers": ("_gallery.result_figures", "matplotlib"),
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 1,
    "abort_on_example_error": False,
    # the return values of matplotlib calls that end a code block (Text, Legend, ...) are not
    # results: show no repr of them
    "ignore_repr_types": r"matplotlib\.",
    # the computation-times pages load their table scripts from a CDN: the built site must read
    # offline; each example page still states its total running time
    "write_computation_times": False,
}

# -- HTML ------------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"odenet {release}"
html_static_path = ["_static"]
html_css_files = ["odenet.css"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "install": []}
html_context = {"default_mode": "light"}


# -- API pages generated from each package's __all__ ------------------------------------------
API_ROOTS = ("odenet", "odenet.analysis")
_GENERATED = DOCS / "api" / "generated"

#: id of each documented object -> the name of its API page (the first module exporting it).
_DOCUMENTED: dict[int, str] = {}

_KIND_TITLES = {
    "class": "Classes",
    "function": "Functions",
    "exception": "Exceptions",
    "data": "Data",
}


def _kind(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "data"


def _attr_doc(module_name: str, name: str, obj: object) -> str:
    """The ``#:`` comment or docstring that documents a module-level constant, wherever it lives."""
    from sphinx.pycode import ModuleAnalyzer

    package = module_name.split(".")[0]
    candidates = [module_name]
    for mod in list(sys.modules.values()):
        mname = getattr(mod, "__name__", "")
        if mname.startswith(package + ".") and getattr(mod, name, None) is obj:
            candidates.append(mname)
    for mname in dict.fromkeys(candidates):
        try:
            docs = ModuleAnalyzer.for_module(mname).find_attr_docs()
        except Exception:
            continue
        if ("", name) in docs:
            return "\n".join(docs[("", name)]).strip()
    return ""


def _data_block(module_name: str, name: str, obj: object) -> list[str]:
    lines = [f".. data:: {name}", ""]
    doc = _attr_doc(module_name, name, obj)
    for line in (doc or f"A module-level ``{type(obj).__name__}``.").splitlines():
        lines.append(f"   {line}".rstrip())
    lines.append("")
    if isinstance(obj, Mapping) and 0 < len(obj) <= 50:
        lines += ["   .. list-table::", "      :header-rows: 1", "",
                  "      * - key", "        - value"]
        for key, value in obj.items():
            lines += [f"      * - ``{key!r}``", f"        - ``{value!r}``"]
        lines.append("")
    return lines


def _write_module_page(module_name: str, written: list[str]) -> None:
    module = importlib.import_module(module_name)
    names = list(getattr(module, "__all__", []))
    groups: dict[str, list[str]] = {k: [] for k in ("module", *_KIND_TITLES)}
    elsewhere: list[tuple[str, str]] = []  # (name, page already documenting the same object)
    for name in names:
        obj = getattr(module, name)
        kind = _kind(obj)
        if kind in ("class", "function", "exception") and id(obj) in _DOCUMENTED:
            elsewhere.append((name, _DOCUMENTED[id(obj)]))
            continue
        if kind in ("class", "function", "exception"):
            _DOCUMENTED[id(obj)] = f"{module_name}.{name}"
        groups[kind].append(name)
    title = f"``{module_name}``"
    lines = [
        ".. This page is generated by docs/conf.py from the module's __all__; do not edit.",
        "",
        title,
        "=" * len(title),
        "",
        f".. automodule:: {module_name}",
        "   :no-members:",
        "",
        f".. currentmodule:: {module_name}",
        "",
    ]
    if not names:
        lines += [".. note::", "", "   This module exports no public names yet.", ""]
    for kind in ("class", "function", "exception"):
        if groups[kind]:
            head = _KIND_TITLES[kind]
            lines += [head, "-" * len(head), "", ".. autosummary::", "   :toctree: .",
                      f"   :template: {kind}.rst", "   :nosignatures:", ""]
            lines += [f"   {n}" for n in groups[kind]]
            lines.append("")
    if elsewhere:
        head = "Also exported here"
        lines += [head, "-" * len(head), "",
                  "Documented under their shorter name:", ""]
        for name, target in elsewhere:
            role = "class" if inspect.isclass(getattr(module, name)) else "func"
            lines.append(f"- ``{module_name}.{name}``: :{role}:`{target}`")
        lines.append("")
    if groups["data"]:
        lines += ["Data", "----", ""]
        for name in groups["data"]:
            lines += _data_block(module_name, name, getattr(module, name))
    if groups["module"]:
        lines += ["Submodules", "----------", "", ".. toctree::", "   :maxdepth: 1", ""]
        for name in groups["module"]:
            sub = getattr(module, name).__name__
            lines.append(f"   {sub}")
        lines.append("")
    text = "\n".join(lines)
    path = _GENERATED / f"{module_name}.rst"
    if not path.exists() or path.read_text() != text:  # keep mtimes for incremental builds
        path.write_text(text)
    written.append(module_name)
    for name in groups["module"]:
        sub = getattr(module, name).__name__
        if sub.startswith(module_name + ".") and sub not in written:
            _write_module_page(sub, written)


def write_api_pages() -> list[str]:
    """Write ``api/generated/<module>.rst`` for every public module reachable from API_ROOTS.

    ``api/index.rst`` links the roots; each page links its public submodules.
    """
    _GENERATED.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for root in API_ROOTS:
        _write_module_page(root, written)
    return written


API_MODULES = write_api_pages()


def _find_new_sources(app) -> None:
    """Let autosummary see API pages written by this file since the last build.

    autosummary generates its stub pages at ``builder-inited`` from the environment's list of
    source files, which an incremental build has not refreshed yet; a module page that appeared
    since (a new public submodule) would otherwise get no stubs until the next build.
    """
    app.env.find_files(app.config, app.builder)


def setup(app):
    app.connect("builder-inited", _find_new_sources, priority=100)
    app.connect("html-page-context", fix_viewcode_backlinks)
