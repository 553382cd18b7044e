"""The prepared GPU check (tests/benchmarks/gpu_check.py) without a GPU: it must exit 0 with a
clear message, and every measurement section must run (on the CPU, at toy sizes)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_without_cuda_it_skips_cleanly():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "gpu_check: skipped: no CUDA" in proc.stdout


def test_every_section_runs_on_the_cpu(capsys):
    mod = _module()
    assert mod.main(["--device", "cpu", "--quick", "--no-tests"]) == 0
    out = capsys.readouterr().out
    for title in ("peak memory", "ConvFFT", "deformable v2", "time / dense 3x3 conv2d"):
        assert title in out
    assert "FAILED" not in out
    for strategy in ("backprop", "anode", "revolve(2)", "adjoint"):
        assert strategy in out
