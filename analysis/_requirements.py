"""Stop with a clear message when the "analysis" extra is not installed.

The solvers need only torch and numpy; the diagnostics also import torchdiffeq, SciPy,
matplotlib, tqdm, scikit-learn and threadpoolctl. :mod:`odenet.analysis` imports this module
first, so that a missing one is named with the command that installs it, not as the
ImportError of whichever module happened to need it.
"""

from __future__ import annotations

import importlib.util

__all__ = ["NEEDED"]

#: The modules the "analysis" extra provides.
NEEDED = ("torchdiffeq", "scipy", "matplotlib", "tqdm", "sklearn", "threadpoolctl")

_missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(
        "odenet.analysis needs the 'analysis' extra, which is not installed (missing: "
        + ", ".join(_missing)
        + "); install it with: pip install 'odenet[analysis]'"
    )
