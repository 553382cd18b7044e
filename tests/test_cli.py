"""The odenet-analysis command end to end: report, subcommands, errors, resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import odenet.analysis._gradients as G
from odenet.analysis._cli import main
from odenet.analysis._models import build_case, check_spec
from odenet.errors import ArgumentError

TINY = ["--channels", "2", "--batch", "2", "--no-progress"]


def test_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["report", "--quick", "--output", str(out), *TINY])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"report: {out.resolve() / 'index.html'}" in printed
    assert "Key numbers" in printed
    names = {p.name for p in out.iterdir()}
    pngs = {"gradients.png", "adaptive.png", "reversibility.png", "stability.png",
            "regions.png", "order.png", "cost.png", "reconstruction.png"}
    assert pngs | {"index.html", "results.json", "sweeps"} <= names
    html = (out / "index.html").read_text()
    assert set(re.findall(r'<img src="([^"]+)"', html)) == pngs  # every figure is shown
    for p in pngs:
        assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert {"meta", "gradients", "adaptive", "reversibility", "stability", "order", "cost",
            "reconstruction"} <= set(data)
    assert data["meta"]["spec"]["model"] == "lean"
    assert data["meta"]["key_numbers"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    anode = [r for r in data["gradients"]["rows"] if r["strategy"] == "anode"]
    assert anode and all(r["grad_error"] <= 1e-12 for r in anode)


def test_subcommands_write_their_files(tmp_path, capsys):
    out = tmp_path / "o"
    common = ["--output", str(out), *TINY]
    assert main(["gradients", "--methods", "euler", "--steps", "2", "--strategies", "anode",
                 "--fd-directions", "1", *common]) == 0
    assert main(["reversibility", "--methods", "rk4", "--steps", "2,4", "--activation", "relu",
                 *common]) == 0
    assert main(["stability", "--k", "2", "--model", "imex", *common]) == 0
    assert main(["order", "--methods", "euler,ars222", "--problems", "linear,vanderpol",
                 "--steps", "8,16", *common]) == 0
    printed = capsys.readouterr().out
    assert "gradient consistency" in printed and "implicit operator spectrum" in printed
    for name in ("gradients", "reversibility", "stability", "order"):
        assert (out / f"{name}.json").exists() and (out / f"{name}.png").exists()
    order = json.loads((out / "order.json").read_text())
    assert [r["problem"] for r in order] == ["linear", "vanderpol"]
    assert "ars222" not in order[1]["observed"]  # IMEX only where there is an implicit part


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["gradients", "--methods", "rk5"], r"argument --methods: unknown method 'rk5'"),
        (["cost", "--strategies", "anode,magic"], r"unknown strategy 'magic'"),
        (["report", "--model", "resnet"], r"argument --model: invalid choice: 'resnet'"),
        (["order", "--steps", "8,0"], r"argument --steps: expected positive integers"),
        (["reversibility", "--steps", "two"], r"expected comma-separated positive integers"),
        (["stability", "--step-size", "-1"], r"expected a finite positive number"),
        (["report", "--block-method", "ars222"], r"method: 'ars222' is an IMEX method"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, pattern, capsys, tmp_path):
    rc = main([*argv, "--output", str(tmp_path / "x")] if argv[0] != "frobnicate" else argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), err


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = main(["order", "--methods", "euler", "--problems", "linear", "--steps", "4,8",
               "--output", str(blocker / "sub"), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "output:" in err


def test_rerun_after_interrupt_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    argv = ["gradients", "--methods", "euler", "--steps", "2,4,8", "--strategies", "anode",
            "--fd-directions", "0", "--output", str(out), *TINY]
    original = G.solve_with
    calls = {"n": 0}

    def interrupted(*args, **kwargs):  # Ctrl-C during the third case (Nt = 8)
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(G, "solve_with", interrupted)
    assert main(argv) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    store = out / "sweeps" / "gradients-tanh.jsonl"
    assert len(store.read_text().splitlines()) == 2  # Nt = 2 and 4 kept

    calls["n"] = 0
    monkeypatch.setattr(G, "solve_with", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1),
                                                           original(*a, **k))[1])
    assert main(argv) == 0
    assert calls["n"] == 2  # only Nt = 8: backprop and anode
    rows = json.loads((out / "gradients.json").read_text())["rows"]
    assert sorted({r["steps"] for r in rows}) == [2, 4, 8]
    # --fresh recomputes everything
    calls["n"] = 0
    assert main([*argv, "--fresh"]) == 0
    assert calls["n"] == 6


def test_python_dash_m_and_help(capsys):
    assert main(["report", "--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--activations" in text and "--quick" in text
    proc = subprocess.run([sys.executable, "-m", "odenet.analysis", "order", "--steps", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_model_specifications():
    for model in ("lean", "sparse", "deform", "dense", "imex"):
        case = build_case({"model": model, "channels": 2, "batch": 2, "data": "synthetic"})
        assert tuple(case.y0.shape) == (2, 2, 8, 8)
        assert case.func(0.0, case.y0).shape == case.y0.shape
        assert (case.implicit is not None) == (model == "imex")
        assert case.params and all(p.requires_grad for p in case.params)
        assert float(case.loss(case.y0[None])) > 0
    normed = build_case({"model": "sparse", "norm": "group", "form": "residual",
                         "channels": 2, "batch": 2, "activation": "relu"})
    assert "group normalisation" in normed.description
    a = build_case({"model": "lean", "channels": 2, "batch": 2, "seed": 3})
    b = build_case({"model": "lean", "channels": 2, "batch": 2, "seed": 3})
    assert all((p == q).all() for p, q in zip(a.params, b.params))  # deterministic in the seed
    with pytest.raises(ArgumentError, match="spec: unknown setting 'depth'"):
        check_spec(depth=3)
    with pytest.raises(ArgumentError, match="channels: expected a positive integer"):
        check_spec(channels=0)


def test_imex_report_uses_imex_methods(tmp_path, capsys):
    out = tmp_path / "imex"
    rc = main(["report", "--quick", "--model", "imex", "--sections", "gradients,stability",
               "--output", str(out), *TINY])
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in data["gradients"]["rows"]} <= {"imex_euler", "ars222"}
    assert data["stability"]["implicit_range"] is not None
    rc = main(["gradients", "--model", "imex", "--methods", "rk4", "--output", str(out), *TINY])
    assert rc == 2 and "needs IMEX methods" in capsys.readouterr().err


def test_weights_file_is_loaded_without_unpickling(tmp_path, capsys):
    import torch

    from odenet.analysis._models import build_network

    net, _, _ = build_network({"model": "lean", "channels": 2, "batch": 2, "seed": 7})
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    case = build_case({"model": "lean", "channels": 2, "batch": 2, "seed": 1,
                       "weights": str(path)})
    trained = dict(net.named_parameters())
    for name, p in case.block.named_parameters():
        assert torch.equal(p, trained[f"stages.0.0.{name}"].to(p))
    assert main(["order", "--methods", "euler", "--problems", "model", "--steps", "4,8",
                 "--channels", "2", "--weights", str(path), "--output", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a tensor file")
    assert main(["stability", "--weights", str(bad), "--output", str(tmp_path / "o"),
                 *TINY]) == 2
    assert "argument --weights:" in (err := capsys.readouterr().err)
    assert "is not a torch state dict" in err
    assert main(["stability", "--channels", "3", "--weights", str(path),
                 "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "does not fit the network" in capsys.readouterr().err
    assert main(["stability", "--weights", str(tmp_path), "--output", str(tmp_path / "o"),
                 *TINY]) == 2
    assert "is a folder" in capsys.readouterr().err
