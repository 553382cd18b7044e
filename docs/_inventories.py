"""Local intersphinx inventories, so the documentation links to Python, PyTorch, NumPy and SciPy
without fetching anything at build time.

Each entry is ``(name, role, uri)`` with ``uri`` relative to the project's documentation root; the
inventories are written in Sphinx's version-2 format. Setting ``ODENET_INTERSPHINX=online`` in
``conf.py`` uses the projects' published inventories instead.
"""

from __future__ import annotations

import zlib
from pathlib import Path

BASE_URLS = {
    "python": "https://docs.python.org/3/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "numpy": "https://numpy.org/doc/stable/",
    "scipy": "https://docs.scipy.org/doc/scipy/",
}


def _gen(prefix: str, names: str, role: str = "py:function") -> list[tuple[str, str, str]]:
    return [(n, role, f"{prefix}{n}.html#{n}") for n in names.split()]


ENTRIES: dict[str, list[tuple[str, ...]]] = {
    "python": [
        ("ValueError", "py:exception", "library/exceptions.html#ValueError"),
        ("TypeError", "py:exception", "library/exceptions.html#TypeError"),
        ("RuntimeError", "py:exception", "library/exceptions.html#RuntimeError"),
        ("Exception", "py:exception", "library/exceptions.html#Exception"),
        ("dict", "py:class", "library/stdtypes.html#dict"),
        ("list", "py:class", "library/stdtypes.html#list"),
        ("tuple", "py:class", "library/stdtypes.html#tuple"),
        ("str", "py:class", "library/stdtypes.html#str"),
        ("int", "py:class", "library/functions.html#int"),
        ("float", "py:class", "library/functions.html#float"),
        ("bool", "py:class", "library/functions.html#bool"),
        ("callable", "py:function", "library/functions.html#callable"),
        ("None", "py:data", "library/constants.html#None"),
        ("collections.abc.Callable", "py:class",
         "library/collections.abc.html#collections.abc.Callable"),
        ("collections.abc.Mapping", "py:class",
         "library/collections.abc.html#collections.abc.Mapping"),
        ("types.MappingProxyType", "py:class", "library/types.html#types.MappingProxyType"),
        ("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path"),
        ("argparse", "py:module", "library/argparse.html#module-argparse"),
        ("True", "py:data", "library/constants.html#True"),
        ("False", "py:data", "library/constants.html#False"),
        ("contextlib.contextmanager", "py:function",
         "library/contextlib.html#contextlib.contextmanager"),
        ("collections.namedtuple", "py:function",
         "library/collections.html#collections.namedtuple"),
        # the glossary terms and labels numpydoc links its standard type words to
        ("iterable", "std:term", "glossary.html#term-iterable"),
        ("sequence", "std:term", "glossary.html#term-sequence"),
        ("generator", "std:term", "glossary.html#term-generator"),
        ("bltin-boolean-values", "std:label", "library/stdtypes.html#bltin-boolean-values",
         "Boolean Values"),
    ],
    "torch": [
        ("torch.Tensor", "py:class", "tensors.html#torch.Tensor"),
        ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype"),
        ("torch.device", "py:class", "tensor_attributes.html#torch.device"),
        ("torch.autograd.Function", "py:class", "autograd.html#torch.autograd.Function"),
        ("torch.utils.checkpoint.checkpoint", "py:function",
         "checkpoint.html#torch.utils.checkpoint.checkpoint"),
        *_gen("generated/", "torch.nn.Module torch.nn.Conv2d torch.nn.Sequential "
              "torch.nn.BatchNorm2d torch.nn.GroupNorm torch.nn.ReLU torch.nn.Tanh "
              "torch.nn.LeakyReLU torch.nn.CrossEntropyLoss torch.optim.SGD torch.optim.Adam "
              "torch.Generator torch.no_grad", "py:class"),
        *_gen("generated/", "torch.autograd.grad torch.autograd.backward "
              "torch.autograd.gradcheck.gradcheck torch.autograd.functional.jacobian "
              "torch.func.jacrev torch.func.vjp torch.func.jvp torch.fft.fft2 torch.fft.ifft2 "
              "torch.fft.fftn torch.fft.ifftn torch.fft.rfft2 torch.fft.irfft2 "
              "torch.nn.functional.conv2d torch.nn.functional.conv_transpose2d "
              "torch.nn.functional.grid_sample torch.nn.functional.relu torch.linalg.eigvals "
              "torch.manual_seed torch.set_default_dtype"),
    ],
    "numpy": [
        ("array_like", "std:term", "glossary.html#term-array_like"),
        ("arrays.scalars", "std:label", "reference/arrays.scalars.html", "Scalars"),
        ("numpy", "py:module", "reference/index.html#module-numpy"),
        ("numpy.inf", "py:data", "reference/constants.html#numpy.inf"),
        ("numpy.nan", "py:data", "reference/constants.html#numpy.nan"),
        ("numpy.random.RandomState", "py:class",
         "reference/random/legacy.html#numpy.random.RandomState"),
        ("numpy.float64", "py:class", "reference/arrays.scalars.html#numpy.float64"),
        *_gen("reference/generated/", "numpy.ndarray", "py:class"),
        *_gen("reference/generated/", "numpy.linalg.eigvals numpy.polyfit numpy.meshgrid "
              "numpy.linspace numpy.asarray"),
    ],
    "scipy": [
        *_gen("reference/generated/", "scipy.sparse.linalg.LinearOperator", "py:class"),
        *_gen("reference/generated/", "scipy.fft.dctn scipy.fft.idctn scipy.fft.fftn "
              "scipy.fft.ifftn scipy.linalg.eigvals scipy.sparse.linalg.eigs "
              "scipy.sparse.linalg.eigsh scipy.integrate.solve_ivp scipy.stats.linregress "
              "scipy.optimize.brentq scipy.special.binom"),
    ],
}

_PROJECTS = {"python": "Python", "torch": "PyTorch", "numpy": "NumPy", "scipy": "SciPy"}


def write_inventories(folder: Path) -> dict[str, Path]:
    """Write one ``objects.inv`` per project into ``folder``; return their paths by key."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, entries in ENTRIES.items():
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {_PROJECTS[key]}\n"
            "# Version: \n"
            "# The remainder of this file is compressed using zlib.\n"
        ).encode()
        lines = []
        for name, role, uri, *display in entries:
            lines.append(f"{name} {role} 1 {uri} {display[0] if display else '-'}\n")
        body = "".join(lines).encode()
        path = folder / f"{key}.inv"
        path.write_bytes(header + zlib.compress(body))
        paths[key] = path
    return paths
