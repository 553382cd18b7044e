"""The report's files: whose folder it writes into, locking, atomic writes, resumed cost runs.

Measurements are faked where the test is about bookkeeping (no measuring processes), and the
reports that really run use tiny configurations (``--quick``, two channels, one section).
"""

from __future__ import annotations

import errno
import json
import os
import re

import pytest
import torch

import odenet.analysis._cost as C
import odenet.analysis._report as R
from odenet import analysis
from odenet.analysis._cli import main
from odenet.errors import ArgumentError, ArgumentTypeError

TINY = ["--channels", "2", "--batch", "2", "--no-progress"]
ORDER = ["report", "--quick", "--sections", "order", *TINY]  # the fastest real report


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- whose folder ----------------------------------------------------------------------------------
def test_foreign_folder_is_refused_and_left_alone(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "index.html").write_text("mine")
    (d / "results.json").write_text("{}")
    assert main([*ORDER, "-o", str(d)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"argument --output: .* is not empty \(index\.html, results\.json\) and was "
                     r"not made by odenet-analysis.*--force", line)
    assert (d / "index.html").read_text() == "mine" and (d / "results.json").read_text() == "{}"
    assert sorted(p.name for p in d.iterdir()) == ["index.html", "results.json"]
    # --force writes into it (and marks it); a marked folder needs no --force afterwards
    assert main([*ORDER, "-o", str(d), "--force"]) == 0
    assert (d / "index.html").read_text() != "mine"
    assert (d / R.MARKER).exists()
    assert main([*ORDER, "-o", str(d)]) == 0
    capsys.readouterr()


def test_empty_output_path_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*ORDER, "-o", ""]) == 2
    assert "argument --output: empty path" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder
    with pytest.raises(ArgumentError, match="output: empty path"):
        analysis.report("  ")
    with pytest.raises(ArgumentTypeError, match=r"^output: expected a folder path .* NoneType"):
        analysis.report(None)


def test_empty_existing_folder_is_used(tmp_path, capsys):
    d = tmp_path / "empty"
    d.mkdir()
    assert main([*ORDER, "-o", str(d)]) == 0
    capsys.readouterr()
    names = {p.name for p in d.iterdir()}
    assert {"index.html", "order.png", "results.json", "sweeps", R.MARKER} <= names
    assert not [n for n in names if n.startswith(".staging")]


# -- one run at a time -----------------------------------------------------------------------------
def test_second_run_on_a_folder_in_use_stops_at_once(tmp_path, capsys):
    d = tmp_path / "busy"
    with R.claim_output(d):  # another run holds the folder
        assert main([*ORDER, "-o", str(d)]) == 1
        line = _one_line(capsys.readouterr().err)
        assert f"is in use by another odenet-analysis run (pid {os.getpid()})" in line
        with pytest.raises(R.OutputError, match="in use"):
            R.claim_output(d)
    assert not (d / "sweeps").exists()  # the second run wrote nothing
    with R.claim_output(d):  # released: usable again
        pass


def test_stale_staging_folders_are_removed(tmp_path):
    d = tmp_path / "r"
    with R.claim_output(d) as out:
        out.commit({"a.txt": "1"})
    (d / ".staging-99999-dead").mkdir()  # left by a killed run
    with R.claim_output(d) as out:
        out.commit({"a.txt": "2"})
    assert sorted(p.name for p in d.iterdir()) == [R.MARKER, "a.txt"]
    assert (d / "a.txt").read_text() == "2"


# -- nothing half-written --------------------------------------------------------------------------
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_full_disk_or_permission_error_exits_1_and_keeps_the_old_report(tmp_path, capsys,
                                                                       monkeypatch, error):
    d = tmp_path / "r"
    assert main([*ORDER, "-o", str(d)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != R.MARKER}
    real = R._write_file
    calls = {"n": 0}

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the second file of the new report
            raise OSError(error, os.strerror(error), str(path))
        real(path, data)

    monkeypatch.setattr(R, "_write_file", failing)
    assert main([*ORDER, "-o", str(d), "--fresh"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert re.search(rf"error: argument --output: cannot write \S+ in .*: "
                     rf"{os.strerror(error)}; no file of the report was changed", line)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != R.MARKER}
    assert after == before
    assert not [p for p in d.iterdir() if p.name.startswith(".staging")]


def test_full_disk_while_recording_a_case_exits_1(tmp_path, capsys, monkeypatch):
    import odenet.analysis._sweep as S

    def full(self, key, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    monkeypatch.setattr(S.CaseStore, "put", full)
    assert main([*ORDER, "-o", str(tmp_path / "r")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"error: cannot write \S+\.jsonl: No space left on device", line)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_folder_exits_1(tmp_path, capsys):  # pragma: no cover - not as root
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main([*ORDER, "-o", str(ro / "r")]) == 1
        assert "no permission" in _one_line(capsys.readouterr().err)
    finally:
        ro.chmod(0o755)


def test_permission_error_on_creating_the_folder_exits_1(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert main([*ORDER, "-o", str(tmp_path / "new")]) == 1
    assert "argument --output: no permission to create or read" in _one_line(
        capsys.readouterr().err)


# -- the cost section: one run, spreads ------------------------------------------------------------
def _fake_isolated(calls: list, interrupt_time: list):
    """A stand-in for the measuring processes: deterministic numbers, no processes."""
    times = {"backprop": [1.0, 2.0, 1.0], "adjoint": [2.0, 3.0, 1.5]}

    def run(payload, timeout):
        if payload.get("mode") == "time":
            calls.append("time")
            if interrupt_time:
                interrupt_time.pop()
                raise KeyboardInterrupt
            names = list(payload["strategies"])
            return {"times_s": {n: times[n][: payload["rounds"]] for n in names}, "errors": {}}
        s = payload["strategy"]
        name = s if isinstance(s, str) else type(s).__name__.lower()  # Adjoint() -> adjoint
        calls.append(f"memory {name}")
        return {"time_s": 1.0, "times_s": [1.0], "peak_bytes": 1000 if name == "backprop"
                else 250, "probe": "fake"}

    return run


def test_interrupted_cost_section_is_measured_again_whole(tmp_path, capsys, monkeypatch):
    calls: list[str] = []
    interrupt = [True]
    monkeypatch.setattr(C, "_run_isolated", _fake_isolated(calls, interrupt))
    argv = ["report", "--quick", "--sections", "cost", "-o", str(tmp_path / "r"), *TINY]
    assert main(argv) == 130  # Ctrl-C during the interleaved timing
    capsys.readouterr()
    assert calls.count("memory backprop") == 1 and calls[-1] == "time"
    calls.clear()
    assert main(argv) == 0  # the rerun measures backprop again, with the strategies
    assert sorted(calls) == ["memory adjoint", "memory backprop", "time"]
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    rows = {r["strategy"]: r for r in data["cost"]["rows"]}
    # per-round ratios 2, 1.5 (two quick rounds): median 1.75, range 1.5-2
    assert rows["adjoint"]["time_ratio"] == pytest.approx(1.75)
    assert rows["adjoint"]["time_ratio_min"] == pytest.approx(1.5)
    assert rows["adjoint"]["time_ratio_max"] == pytest.approx(2.0)
    assert rows["adjoint"]["times_s"] == [2.0, 3.0]
    assert rows["adjoint"]["memory_ratio"] == pytest.approx(0.25)
    html = (tmp_path / "r" / "index.html").read_text()
    assert "time_ratio_min" in html and "interleaved round" in html
    calls.clear()
    assert main(argv) == 0  # finished: rebuilt from the record, nothing measured
    assert calls == []
    assert "×1.75 (1.50–2.00)" in capsys.readouterr().out


def test_cost_ratios_carry_their_spread_in_process():
    block = analysis._models.build_case({"model": "dense", "channels": 2, "batch": 2}).block
    res = analysis.cost(block, torch.randn(2, 2, 8, 8, dtype=torch.float64), ["anode"],
                        steps=2, repeats=3, isolate=False)
    back, anode = res.rows
    assert back["time_ratio"] == back["time_ratio_min"] == back["time_ratio_max"] == 1.0
    assert anode["time_ratio_min"] <= anode["time_ratio"] <= anode["time_ratio_max"]
    assert len(anode["times_s"]) == 3 and anode["status"] == "ok"
    assert "3 round(s)" in repr(res)


def test_cost_refuses_a_module_without_ode_blocks():
    with pytest.raises(ArgumentTypeError, match=r"^model: Linear has no ODE blocks and cannot be "
                                                r"called as func\(t, y\) \(TypeError: .*network "
                                                r"with ODE blocks"):
        analysis.cost(torch.nn.Linear(2, 2), torch.randn(3, 2), ["anode"], isolate=False)
    with pytest.raises(ArgumentTypeError, match="model: expected a network with ODE blocks"):
        analysis.cost(None, torch.randn(3, 2))


# -- the page --------------------------------------------------------------------------------------
def test_page_states_the_settings_and_explains_coinciding_adjoints(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "--quick", "--sections", "gradients,stability", "--seed", "3",
                 "-o", str(out), *TINY]) == 0
    capsys.readouterr()
    html = (out / "index.html").read_text()
    settings = re.search(r"<p class='settings'>(.*?)</p>", html).group(1)
    assert "untrained: weights drawn at random from seed 3" in settings
    assert "dtype</b> float64" in settings and "rk4, 4 steps" in settings
    assert "their curves coincide" in html  # odenet's and torchdiffeq's adjoints
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["trained"] is False
    st = data["stability"]
    if st["arpack_error"] is not None and st["arpack_error"] < 1e-8:
        assert "ARPACK did not converge" not in html


def test_written_figures_have_legible_legends_and_distinct_overlapping_curves():
    from odenet.analysis._results import finish_figure, new_figure

    fig, (ax,) = new_figure()
    a = ax.plot([1, 2, 3], [1, 2, 3], "-", color="C0", label="adjoint")[0]
    b = ax.plot([1, 2, 3], [1, 2, 3], "-", color="C1", label="torchdiffeq-adjoint")[0]
    ax.plot([1, 3], [2, 2], ":", label="_fit")  # helpers are left alone
    ax.legend(fontsize=6)
    assert finish_figure(fig) == [["adjoint", "torchdiffeq-adjoint"]]
    assert a.get_linewidth() > b.get_linewidth() and a.get_marker() != b.get_marker()
    assert all(t.get_fontsize() >= 9 for t in ax.get_legend().get_texts())


def test_dtype_help_matches_what_runs(capsys):
    assert main(["report", "--help"]) == 0
    assert "dtype of every section, cost included (default float64)" in " ".join(
        capsys.readouterr().out.split())
    assert main(["cost", "--help"]) == 0
    assert "(default float32" in " ".join(capsys.readouterr().out.split())
    from odenet.analysis._cli import build_parser

    assert build_parser().parse_args(["cost"]).dtype == "float32"
    assert build_parser().parse_args(["report"]).dtype == "float64"
