"""Shared test configuration: hypothesis profile, devices, determinism."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "odenet",
    deadline=None,
    max_examples=int(os.environ.get("ODENET_HYPOTHESIS_EXAMPLES", "20")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("odenet")

# The folder analysis/ installs as odenet.analysis. pytest's doctest collection imports its files
# by folder name ("analysis._cost"); point those names at the installed modules, so that the
# doctests run on odenet.analysis itself and nothing is imported twice.
import odenet.analysis  # noqa: E402

sys.modules.setdefault("analysis", odenet.analysis)
for _module in pkgutil.iter_modules(odenet.analysis.__path__):
    if _module.name != "__main__":
        sys.modules.setdefault(
            f"analysis.{_module.name}", importlib.import_module(f"odenet.analysis.{_module.name}")
        )

torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every available device; CUDA cases exist only where CUDA does."""
    return torch.device(request.param)


@pytest.fixture
def cuda() -> torch.device:
    """The CUDA device, skipping cleanly without one."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device("cuda")
