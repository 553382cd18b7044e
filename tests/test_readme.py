"""The README's example runs as printed."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert float(capsys.readouterr().out.split()[-1]) == pytest.approx(2.785, abs=1e-3)


def test_readme_starts_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    first = "\n".join(lines[:6])
    assert "odenet-analysis report" in first and "pytest" in first
