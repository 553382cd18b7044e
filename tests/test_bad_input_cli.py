"""Bad input to ``odenet-analysis`` and to ``analysis.report`` / ``analysis.cost``: one table.

Every row is ``(id, argv or callable, expected, pattern)``:

- ``argv``: a command line run in-process through :func:`odenet.analysis._cli.main`; ``expected``
  is the exit status (2: a bad argument, 1: a folder in use, a full disk, permissions) and
  ``pattern`` a regular expression the single line on stderr must match (it names the option);
- a callable ``fn(paths)``: a call of the Python API; ``expected`` is the exception class and
  ``pattern`` must match the start of its message (which names the argument).

``{name}`` in an argv is replaced by a prepared path (see ``paths``). Every command line starts
with a tiny configuration (two channels, one quick section), so that a row that wrongly passed
its checks would still end in seconds; the row's own options come after and win.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

import odenet.analysis._report as R
from odenet import analysis
from odenet.analysis._cli import main
from odenet.errors import ArgumentError, ArgumentTypeError

GUARD = {
    "report": ["--quick", "--sections", "order", "--channels", "2", "--batch", "2"],
    "gradients": ["--steps", "2", "--methods", "euler", "--channels", "2", "--batch", "2"],
    "reversibility": ["--steps", "2", "--methods", "euler", "--channels", "2", "--batch", "2"],
    "stability": ["--k", "2", "--channels", "2", "--batch", "2"],
    "order": ["--steps", "4,8", "--methods", "euler", "--problems", "linear"],
    "cost": ["--repeats", "1", "--blocks", "1", "--steps", "2", "--strategies", "anode",
             "--channels", "2", "--batch", "2"],
}


def _block(paths):
    return analysis._models.build_case({"model": "dense", "channels": 2, "batch": 2}).block


def _x():
    return torch.randn(2, 2, 8, 8, dtype=torch.float64)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

CASES = [
    # -- commands and unknown flags
    ("unknown-command", ["frobnicate"], 2, r"argument COMMAND: invalid choice: 'frobnicate'"),
    ("unknown-flag", ["report", "--colour", "red"], 2, r"unrecognized arguments: --colour red"),
    ("stray-positional", ["order", "extra"], 2, r"unrecognized arguments: extra"),
    ("missing-value", ["report", "--steps"], 2, r"argument --steps: expected one argument"),
    # -- lists of names
    ("methods-unknown", ["report", "--methods", "rk5"], 2,
     r"argument --methods: unknown method 'rk5'; valid: euler"),
    ("methods-empty", ["gradients", "--methods", ","], 2,
     r"argument --methods: expected at least one method"),
    ("strategies-revolve-0", ["report", "--strategies", "anode,revolve:0"], 2,
     r"argument --strategies: 'revolve:0': the number of checkpoints k in 'revolve:k' must be "
     r"an integer k >= 1"),
    ("strategies-revolve-x", ["gradients", "--strategies", "revolve:x"], 2,
     r"argument --strategies: 'revolve:x': .*'revolve:k' must be an integer k >= 1, got 'x'"),
    ("strategies-unknown", ["cost", "--strategies", "anode,magic"], 2,
     r"argument --strategies: unknown strategy 'magic'; valid strategies are .*revolve:k with "
     r"k >= 1"),
    ("activations-unknown", ["report", "--activations", "tanh,swish"], 2,
     r"argument --activations: unknown activation 'swish'"),
    ("sections-unknown", ["report", "--sections", "gradients,plots"], 2,
     r"argument --sections: unknown section 'plots'"),
    ("problems-unknown", ["order", "--problems", "heat"], 2,
     r"argument --problems: unknown problem 'heat'"),
    # -- integers and numbers
    ("steps-zero", ["report", "--steps", "2,0"], 2,
     r"argument --steps: expected positive integers, got 0"),
    ("steps-word", ["reversibility", "--steps", "2,x"], 2,
     r"argument --steps: expected comma-separated positive integers, got '2,x'"),
    ("steps-negative", ["order", "--steps=-4"], 2, r"argument --steps: expected positive"),
    ("cost-steps-list", ["cost", "--steps", "4,8"], 2,
     r"argument --steps: expected one positive integer, got '4,8'"),
    ("channels-zero", ["report", "--channels", "0"], 2,
     r"argument --channels: expected a positive integer, got 0"),
    ("batch-word", ["stability", "--batch", "many"], 2,
     r"argument --batch: expected a positive integer, got 'many'"),
    ("block-steps-zero", ["report", "--block-steps", "0"], 2, r"argument --block-steps:"),
    ("T-zero", ["report", "--T", "0"], 2, r"argument --T: expected a finite positive number"),
    ("T-nan", ["report", "--T", "nan"], 2, r"argument --T: expected a finite positive number"),
    ("weight-scale-inf", ["report", "--weight-scale", "inf"], 2,
     r"argument --weight-scale: expected a finite positive number, got 'inf'"),
    ("train-steps-negative", ["report", "--train-steps=-1"], 2,
     r"argument --train-steps: expected a non-negative integer, got -1"),
    ("seed-word", ["report", "--seed", "abc"], 2, r"argument --seed: invalid int value: 'abc'"),
    ("threads-zero", ["report", "--threads", "0"], 2,
     r"argument --threads: expected a positive integer, got 0"),
    ("fd-directions-negative", ["gradients", "--fd-directions=-1"], 2,
     r"argument --fd-directions: expected a non-negative integer"),
    ("step-size-negative", ["stability", "--step-size=-1"], 2,
     r"argument --step-size: expected a finite positive number"),
    ("k-zero", ["stability", "--k", "0"], 2, r"argument --k: expected a positive integer, got 0"),
    ("repeats-zero", ["cost", "--repeats", "0"], 2,
     r"argument --repeats: expected a positive integer, got 0"),
    ("blocks-zero", ["cost", "--blocks", "0"], 2,
     r"argument --blocks: expected a positive integer, got 0"),
    # -- choices and their combinations
    ("model-unknown", ["report", "--model", "resnet"], 2,
     r"argument --model: invalid choice: 'resnet'"),
    ("form-unknown", ["report", "--form", "hyperbolic"], 2, r"argument --form: invalid choice"),
    ("norm-unknown", ["report", "--norm", "batch"], 2, r"argument --norm: invalid choice"),
    ("data-unknown", ["report", "--data", "imagenet"], 2, r"argument --data: invalid choice"),
    ("dtype-unknown", ["cost", "--dtype", "float16"], 2, r"argument --dtype: invalid choice"),
    ("block-method-unknown", ["report", "--block-method", "rk5"], 2,
     r"argument --block-method: invalid choice: 'rk5'"),
    ("block-method-imex-on-explicit", ["report", "--block-method", "ars222"], 2,
     r"argument --block-method: 'ars222' is an IMEX method; it needs the 'imex' model"),
    ("stability-method-unknown", ["stability", "--method", "rk5"], 2,
     r"argument --method: invalid choice: 'rk5'"),
    ("cost-method-unknown", ["cost", "--method", "rk5"], 2, r"argument --method: invalid choice"),
    ("imex-model-explicit-methods", ["gradients", "--model", "imex", "--methods", "rk4"], 2,
     r"argument --methods: the IMEX model needs IMEX methods"),
    ("device-unknown", ["report", "--device", "tpu"], 2, r"argument --device: not a device: 'tpu'"),
    pytest.param("device-cuda-missing", ["report", "--device", "cuda"], 2,
                 r"argument --device: CUDA was requested but is not available", marks=NO_CUDA,
                 id="device-cuda-missing"),
    # -- weights files
    ("weights-missing", ["report", "--weights", "{tmp}/missing.pt"], 2,
     r"argument --weights: no such file '.*missing\.pt'"),
    ("weights-folder", ["report", "--weights", "{tmp}"], 2,
     r"argument --weights: '.*' is a folder; expected a state-dict file"),
    ("weights-text", ["stability", "--weights", "{text}"], 2,
     r"argument --weights: '.*notes\.txt' is not a torch state dict"),
    ("weights-nan", ["report", "--weights", "{nan}"], 2,
     r"argument --weights: '.*nan\.pt' contains non-finite values in tensor "
     r"'stages\.0\.0\.rhs\.op\.weight'"),
    ("weights-list", ["report", "--weights", "{list}"], 2,
     r"argument --weights: '.*list\.pt' holds a list, not a state dict"),
    ("weights-checkpoint", ["report", "--weights", "{ckpt}"], 2,
     r"argument --weights: '.*ckpt\.pt' is not a state dict: entry 'epoch' is a int"),
    ("weights-other-network", ["stability", "--channels", "3", "--weights", "{good}"], 2,
     r"argument --weights: '.*good\.pt' does not fit the network"),
    ("weights-empty", ["report", "--weights", ""], 2, r"argument --weights: empty path"),
    # -- output folders
    ("output-empty", ["report", "-o", ""], 2, r"argument --output: empty path"),
    ("output-is-file", ["report", "-o", "{text}"], 2,
     r"argument --output: .*notes\.txt exists and is not a folder"),
    ("output-under-file", ["order", "-o", "{text}/sub"], 2,
     r"argument --output: cannot create .*: a part of the path is a file"),
    ("output-foreign", ["report", "-o", "{foreign}"], 2,
     r"argument --output: .* is not empty \(index\.html, results\.json\) and was not made by "
     r"odenet-analysis; .*--force"),
    ("output-in-use", ["gradients", "-o", "{locked}"], 1,
     r"argument --output: .* is in use by another odenet-analysis run \(pid \d+\)"),
    # -- the Python API
    ("api-report-None", lambda p: analysis.report(None), ArgumentTypeError,
     r"output: expected a folder path \(str or os\.PathLike\), got NoneType"),
    ("api-report-int", lambda p: analysis.report(3), ArgumentTypeError,
     r"output: expected a folder path .* got int"),
    ("api-report-empty", lambda p: analysis.report(""), ArgumentError, r"output: empty path"),
    ("api-report-foreign", lambda p: analysis.report(p["foreign"], quiet=True), ArgumentError,
     r"output: .* is not empty"),
    ("api-report-sections", lambda p: analysis.report(p["out"], sections=["plots"]),
     ArgumentError, r"sections: unknown section 'plots'"),
    ("api-report-sections-type", lambda p: analysis.report(p["out"], sections=3),
     ArgumentTypeError, r"sections: expected a list of section names, got int"),
    ("api-report-settings-key", lambda p: analysis.report(p["out"], settings={"depth": 3}),
     ArgumentError, r"settings: unknown setting 'depth'"),
    ("api-report-settings-type", lambda p: analysis.report(p["out"], settings="fast"),
     ArgumentTypeError, r"settings: expected a dict"),
    ("api-report-revolve-0",
     lambda p: analysis.report(p["out"], settings={"strategies": ["revolve:0"]}), ArgumentError,
     r"settings\['strategies'\]: 'revolve:0': the number of checkpoints k"),
    ("api-report-steps-0",
     lambda p: analysis.report(p["out"], settings={"gradient_steps": [0, 2]}), ArgumentError,
     r"settings\['gradient_steps'\]: expected positive step counts"),
    ("api-report-repeats-0", lambda p: analysis.report(p["out"], settings={"cost_repeats": 0}),
     ArgumentError, r"settings\['cost_repeats'\]: expected a positive integer, got 0"),
    ("api-report-method", lambda p: analysis.report(p["out"], settings={"cost_method": "rk5"}),
     ArgumentError, r"settings\['cost_method'\]: unknown method 'rk5'"),
    ("api-report-spec-type", lambda p: analysis.report(p["out"], "lean"), ArgumentTypeError,
     r"spec: expected a dict"),
    ("api-report-spec-channels", lambda p: analysis.report(p["out"], {"channels": 0}),
     ArgumentError, r"channels: expected a positive integer, got 0"),
    ("api-report-weights-text", lambda p: analysis.report(p["out"], {"weights": p["text"]}),
     ArgumentError, r"weights: '.*notes\.txt' is not a torch state dict"),
    ("api-cost-linear", lambda p: analysis.cost(torch.nn.Linear(2, 2), torch.randn(3, 2)),
     ArgumentTypeError,
     r"model: Linear has no ODE blocks and cannot be called as func\(t, y\) \(TypeError: .*\); "
     r"cost needs a network with ODE blocks"),
    ("api-cost-None", lambda p: analysis.cost(None, _x()), ArgumentTypeError,
     r"model: expected a network with ODE blocks, .* got NoneType"),
    ("api-cost-string", lambda p: analysis.cost("lean", _x()), ArgumentTypeError,
     r"model: expected a network with ODE blocks, .* got str"),
    ("api-cost-no-input", lambda p: analysis.cost(_block(p), None), ArgumentError,
     r"input: required"),
    ("api-cost-input-type", lambda p: analysis.cost(_block(p), [1.0, 2.0]), ArgumentTypeError,
     r"input: expected a Tensor, got list"),
    ("api-cost-one-argument", lambda p: analysis.cost(lambda t: t, _x()), ArgumentTypeError,
     r"model: function cannot be called as func\(t, y\)"),
    ("api-cost-wrong-shape", lambda p: analysis.cost(lambda t, y: y.sum(), _x()),
     ArgumentTypeError, r"model: func\(t, y\) returned shape \(\) for a state of shape"),
    ("api-cost-revolve-0", lambda p: analysis.cost(_block(p), _x(), ["revolve:0"]),
     ArgumentError, r"strategies: 'revolve:0': the number of checkpoints k"),
    ("api-cost-strategies-type", lambda p: analysis.cost(_block(p), _x(), 3), ArgumentTypeError,
     r"strategies: expected a list of strategy names"),
    ("api-cost-repeats-0", lambda p: analysis.cost(_block(p), _x(), ["anode"], repeats=0,
                                                   isolate=False),
     ArgumentError, r"repeats: expected a positive integer, got 0"),
    ("api-cost-threads", lambda p: analysis.cost(_block(p), _x(), ["anode"], threads=0),
     ArgumentError, r"threads: expected a positive integer, got 0"),
    ("api-cost-spec-weights-nan",
     lambda p: analysis.cost({"channels": 2, "weights": p["nan"]}, None, ["anode"]),
     ArgumentError, r"weights: '.*nan\.pt' contains non-finite values in tensor"),
]


@pytest.fixture
def paths(tmp_path):
    """Prepared files and folders for the rows, as ``{name: path}``."""
    from odenet.analysis._models import build_network

    net, _, _ = build_network({"model": "lean", "channels": 2, "batch": 2})
    state = net.state_dict()
    out = {"tmp": tmp_path, "out": tmp_path / "out"}
    out["text"] = tmp_path / "notes.txt"
    out["text"].write_text("hello, not weights\n")
    out["good"] = tmp_path / "good.pt"
    torch.save(state, out["good"])
    bad = {k: v.clone() for k, v in state.items()}
    bad["stages.0.0.rhs.op.weight"][0] = float("nan")
    out["nan"] = tmp_path / "nan.pt"
    torch.save(bad, out["nan"])
    out["list"] = tmp_path / "list.pt"
    torch.save([1.0, 2.0], out["list"])
    out["ckpt"] = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": state}, out["ckpt"])
    out["foreign"] = tmp_path / "foreign"
    out["foreign"].mkdir()
    (out["foreign"] / "index.html").write_text("mine")
    (out["foreign"] / "results.json").write_text("{}")
    out["locked"] = tmp_path / "locked"
    return {k: str(v) for k, v in out.items()}


def _ids(case) -> str:
    return case.id if hasattr(case, "id") else case[0]


def test_table_is_large_and_distinct():
    ids = [_ids(c) for c in CASES]
    assert len(ids) >= 35 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case_id, what, expected, pattern", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input(case_id, what, expected, pattern, paths, capsys):
    if callable(what):
        with pytest.raises(expected) as info:
            what(paths)
        message = str(info.value)
        assert len(message.splitlines()) == 1, message
        assert re.match(pattern, message), message
        assert not (paths["tmp"] and any(p.startswith(".staging") for p in _listing(paths)))
        return
    argv = [a.format(**paths) for a in what]
    if argv[0] in GUARD:
        argv = [argv[0], *GUARD[argv[0]], "-o", paths["out"], "--no-progress", *argv[1:]]
    if "{locked}" in " ".join(what):
        with R.claim_output(paths["locked"]):  # another run holds the folder
            rc = main(argv)
    else:
        rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert rc == expected, (rc, err, captured.out[-500:])
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert re.search(pattern, err), err


def _listing(paths) -> list[str]:
    from pathlib import Path

    return [p.name for p in Path(paths["tmp"]).rglob(".staging*")]


def test_entry_point_prints_one_line_for_bad_weights(paths):
    proc = subprocess.run(
        [sys.executable, "-m", "odenet.analysis", "report", "--weights", paths["nan"],
         "-o", paths["out"]],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "argument --weights:" in proc.stderr and "contains non-finite values" in proc.stderr
