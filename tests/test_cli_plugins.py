"""A user's strategy and operator, defined in their own module, by name on the command line."""

from __future__ import annotations

import json
import textwrap

from odenet.analysis._cli import main

TINY = ["--channels", "2", "--batch", "2", "--no-progress"]

PLUGIN = textwrap.dedent('''
    import torch
    import odenet
    from odenet.models import register_operator


    class CountingBackprop(odenet.Backprop):
        name = "test-plugin-backprop"
        calls = 0

        def solve(self, problem, y0):
            type(self).calls += 1
            return super().solve(problem, y0)


    register_operator("test-plugin-op", lambda c: odenet.nn.DenseConv2d(c, c, 5), replace=True)
''')


def test_imported_strategy_and_operator_are_valid_names(tmp_path, monkeypatch, capsys):
    (tmp_path / "odenet_test_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    code = main(["gradients", "--import", "odenet_test_plugin", "--model", "test-plugin-op",
                 "--methods", "euler", "--steps", "2", "--strategies", "test-plugin-backprop",
                 "--fd-directions", "1", "--output", str(out), *TINY])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "gradients.json").read_text())
    assert data["n_params"] == 2 * 2 * 5 * 5 + 2  # the plugin's 5x5 operator, not a built-in
    rows = data["rows"]
    mine = [r for r in rows if r["strategy"] == "test-plugin-backprop"]
    assert mine and mine[0]["error"] is None and mine[0]["grad_error"] < 1e-12


def test_an_unknown_plugin_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["order", "--import", "no_such_module_here", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --import: cannot import 'no_such_module_here'" in err[0]
