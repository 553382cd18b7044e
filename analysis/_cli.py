"""The ``odenet-analysis`` command (also ``python -m odenet.analysis``)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from odenet.errors import OdenetError

__all__ = ["PROG", "build_parser", "main"]

PROG = "odenet-analysis"

_EXAMPLES = """\
examples:
  odenet-analysis report                          # the whole report on the default network
  odenet-analysis report --model sparse --activations relu --output relu-report
  odenet-analysis gradients --methods euler,rk4_38 --steps 4,16,64 --strategies anode,adjoint
  odenet-analysis reversibility --activation relu --methods rk4 --steps 2,4,8,16,32
  odenet-analysis stability --model imex --block-method ars222
  odenet-analysis order --methods euler,rk4,ars222 --problems linear,vanderpol,model
  odenet-analysis cost --strategies anode,revolve:4,adjoint,torchdiffeq-adjoint --steps 32

Interrupted sweeps resume: run the same command again (finished cases are kept in
OUTPUT/sweeps/*.jsonl; --fresh discards them). Exit status 2: bad arguments.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            v = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated positive integers, got {text!r}"
            ) from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"expected positive integers, got {v}")
        out.append(v)
    return out


def _pos_int(text: str) -> int:
    if "," in text:
        raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
    try:
        v = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def _pos_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return v


def _names(valid: Sequence[str] | None = None, what: str = "name",
           error: Callable[[str], str | None] | None = None) -> Callable[[str], list[str]]:
    """A parser of comma-separated names: each in ``valid``, or accepted by ``error``."""
    def parse(text: str) -> list[str]:
        items = [p.strip() for p in text.split(",") if p.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected at least one {what}, got {text!r}")
        for it in items:
            if error is not None:
                msg = error(it)
                if msg:
                    raise argparse.ArgumentTypeError(msg)
            elif valid is not None and it not in valid:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {it!r}; valid: {', '.join(valid)}"
                )
        return items

    return parse


def _model_choice(text: str) -> str:
    """``--model``: a built-in model name, or ``pkg.module:factory`` / ``path/file.py:factory``."""
    from odenet.analysis._models import model_names

    if ":" in text:
        return text
    if text not in model_names():
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(map(repr, model_names()))}, or "
            "your network as pkg.module:factory or path/to/file.py:factory)"
        )
    return text


def _data_choice(text: str) -> str:
    """``--data``: a built-in data set, or ``pkg.module:loader`` for a network of your own."""
    from odenet.analysis._models import DATA

    if ":" in text:
        return text
    if text not in DATA:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(map(repr, DATA))}, or a loader "
            "pkg.module:loader returning a batch for a network given as module:factory)"
        )
    return text


def _methods() -> list[str]:
    from odenet import METHODS

    return list(METHODS)


_DTYPE_HELP = {
    "report": "dtype of every section, cost included (default %(default)s)",
    "cost": "dtype of the measured network (default %(default)s: the precision networks "
            "train in)",
}


def _model_options(p: argparse.ArgumentParser, command: str = "") -> None:
    from odenet.analysis._models import DATA, DEFAULT_SPEC, FORMS, model_names

    g = p.add_argument_group("network (the ODE block analysed)")
    g.add_argument("--model", type=_model_choice, default=DEFAULT_SPEC["model"],
                   metavar="{" + ",".join(model_names()) + "} or MODULE:FACTORY",
                   help="operators of the ODE-ResNet (lean, sparse, deform, dense) or IMEXnet "
                        "(imex); default %(default)s. Your own network: pkg.module:factory or "
                        "path/to/file.py:factory, a function returning an nn.Module with ODE "
                        "blocks (report only; give a batch with --input or --data)")
    g.add_argument("--form", choices=FORMS, default=DEFAULT_SPEC["form"],
                   help="right-hand side: -K^T s(Ky+b) (parabolic) or s(Ky+b) (residual); "
                        "default %(default)s")
    g.add_argument("--norm", choices=("none", "group", "instance"), default="none",
                   help="normalisation inside the right-hand side (default none)")
    g.add_argument("--channels", type=_pos_int, default=DEFAULT_SPEC["channels"],
                   help="channels of the block (default %(default)s)")
    g.add_argument("--batch", type=_pos_int, default=DEFAULT_SPEC["batch"],
                   help="images in the analysed batch (default %(default)s)")
    from odenet.analysis._models import DEFAULT_METHODS as own

    g.add_argument("--block-method", choices=_methods(), default=DEFAULT_SPEC["method"],
                   help=f"the block's own method (default "
                        f"{DEFAULT_SPEC['method'] or own['lean']}; imex model: {own['imex']})")
    g.add_argument("--block-steps", type=_pos_int, default=DEFAULT_SPEC["steps"],
                   help="the block's own number of steps (default %(default)s)")
    g.add_argument("--T", type=_pos_float, default=DEFAULT_SPEC["T"],
                   help="length of the block's time interval (default %(default)s)")
    g.add_argument("--weight-scale", type=_pos_float, default=DEFAULT_SPEC["weight_scale"],
                   help="multiply the block's convolution weights (default %(default)s)")
    g.add_argument("--train-steps", type=_nonneg_int, default=DEFAULT_SPEC["train_steps"],
                   help="Adam steps on the data before the analysis (default %(default)s)")
    g.add_argument("--weights", default=None, metavar="FILE",
                   help="a state dict of the network (torch.save(net.state_dict(), FILE); "
                        "read with weights_only=True)")
    g.add_argument("--data", type=_data_choice, default=DEFAULT_SPEC["data"],
                   metavar="{" + ",".join(DATA) + "} or MODULE:LOADER",
                   help="scikit-learn's bundled digits (auto, the default, means digits) or "
                        "generated bar images; for --model MODULE:FACTORY, a function "
                        "MODULE:LOADER returning a batch: a tensor, (inputs, targets) or "
                        "{'inputs': ..., 'targets': ...}")
    g.add_argument("--input", default=None, metavar="FILE",
                   help="for --model MODULE:FACTORY: a batch saved with torch.save (a tensor, "
                        "(inputs, targets) or {'inputs': ..., 'targets': ...}; read with "
                        "weights_only=True)")
    g.add_argument("--dtype", choices=("float32", "float64"),
                   default="float32" if command == "cost" else DEFAULT_SPEC["dtype"],
                   help=_DTYPE_HELP.get(command, "dtype of the analysis (default %(default)s)"))
    g.add_argument("--device", default=DEFAULT_SPEC["device"],
                   help="torch device (default %(default)s)")
    g.add_argument("--seed", type=int, default=DEFAULT_SPEC["seed"],
                   help="seed of the weights and the data (default %(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("--output", "-o", default="odenet-report",
                   help="output folder: new, empty, or made by an earlier odenet-analysis run "
                        "(default %(default)s)")
    o.add_argument("--force", action="store_true",
                   help="also write into a non-empty folder that odenet-analysis did not make "
                        "(files of the same names are replaced)")
    o.add_argument("--fresh", action="store_true",
                   help="discard recorded cases instead of resuming")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    o.add_argument("--threads", type=_pos_int, default=1,
                   help="torch / BLAS threads (default %(default)s: best for small states)")
    o.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable; the current folder is searched too): "
                        "the gradient strategies (GradientStrategy subclasses with a name) and "
                        "operators (odenet.models.register_operator) it defines become valid "
                        "names of --strategies and --model")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``odenet-analysis``.

    Examples
    --------
    >>> from odenet.analysis._cli import build_parser
    >>> args = build_parser().parse_args(["gradients", "--steps", "4,8"])
    >>> args.command, args.steps
    ('gradients', [4, 8])
    """
    from odenet.analysis._gradients import strategy_names
    from odenet.analysis._models import ACTIVATIONS
    from odenet.analysis._problems import BUILTIN_PROBLEMS
    from odenet.analysis._report import REPORT_DEFAULTS, strategy_error

    methods = _methods()
    parser = _Parser(
        prog=PROG,
        description="Diagnostics of ODE-networks: gradient consistency of the strategies "
                    "(discretize-then-optimize vs the continuous adjoint), reverse-time "
                    "reconstruction, stability of the step against the Jacobian's spectrum, "
                    "observed convergence order, and memory/time of the gradient strategies.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter
    acts = _names(list(ACTIVATIONS), "activation")
    strategies = _names(list(strategy_names()), "strategy", strategy_error)
    d = REPORT_DEFAULTS

    def csv(v: Sequence) -> str:
        return ",".join(str(x) for x in v)

    rp = sub.add_parser("report", help="write the whole report (index.html, PNGs, results.json)",
                        description="Run every analysis on one network and write OUTPUT/"
                                    "index.html, one PNG per figure and results.json.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    rp.add_argument("--activations", type=acts, default=list(d["activations"]),
                    help=f"activations compared (default {csv(d['activations'])})")
    rp.add_argument("--methods", type=_names(methods, "method"), default=None,
                    help=f"methods of the gradient sweep (default {csv(d['gradient_methods'])}; "
                         f"imex model: {csv(d['imex_gradient_methods'])})")
    rp.add_argument("--steps", type=_ints, default=list(d["gradient_steps"]),
                    help="step counts of the gradient and reversibility sweeps "
                         f"(default {csv(d['gradient_steps'])})")
    rp.add_argument("--strategies", type=strategies, default=list(d["strategies"]),
                    help=f"strategies compared with backprop (default {csv(d['strategies'])})")
    rp.add_argument("--sections", type=_names(
        ["gradients", "adaptive", "reversibility", "stability", "order", "cost",
         "reconstruction"], "section"),
        default=["gradients", "adaptive", "reversibility", "stability", "order", "cost",
                 "reconstruction"],
        help="analyses to run (default: all)")
    rp.add_argument("--quick", action="store_true",
                    help="a tiny configuration (a smoke test in seconds)")
    _model_options(rp, 'report')

    gp = sub.add_parser("gradients", help="gradient consistency of the strategies",
                        description="Relative error of each strategy's gradient against "
                                    "backprop and central finite differences.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    gp.add_argument("--activations", "--activation", type=acts, default=["tanh"],
                    help="activations (comma-separated; default tanh)")
    gp.add_argument("--methods", type=_names(methods, "method"), default=None,
                    help=f"methods (default {csv(d['gradient_methods'])}; imex model: "
                         f"{csv(d['imex_gradient_methods'])})")
    gp.add_argument("--steps", type=_ints, default=list(d["gradient_steps"]),
                    help=f"step counts Nt (default {csv(d['gradient_steps'])})")
    gp.add_argument("--strategies", type=strategies, default=list(d["strategies"]),
                    help=f"strategies (default {csv(d['strategies'])}; revolve:k for k "
                         "checkpoints)")
    gp.add_argument("--fd-directions", type=_nonneg_int, default=d["fd_directions"],
                    help="random directions of the finite-difference check (default %(default)s)")
    _model_options(gp, 'gradients')

    vp = sub.add_parser("reversibility", help="reverse-time reconstruction of the block input",
                        description="Solve forward, then backward from y(T); relative error "
                                    "of the reconstructed y0.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    vp.add_argument("--activations", "--activation", type=acts, default=["tanh"],
                    help="activations (comma-separated; default tanh)")
    vp.add_argument("--methods", type=_names(methods, "method"),
                    default=list(d["reversibility_methods"]),
                    help=f"explicit methods (default {csv(d['reversibility_methods'])})")
    vp.add_argument("--steps", type=_ints, default=list(d["reversibility_steps"]),
                    help=f"step counts (default {csv(d['reversibility_steps'])})")
    _model_options(vp, 'reversibility')

    sp = sub.add_parser("stability", help="Jacobian spectrum against the stability region",
                        description="Extreme eigenvalues of the block's Jacobian (ARPACK, "
                                    "matrix-free), h*lambda in the method's region, the largest "
                                    "stable step, and the flow-map amplification.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    sp.add_argument("--method", choices=methods, default=None,
                    help="method whose region is tested (default: the block's)")
    sp.add_argument("--step-size", type=_pos_float, default=None,
                    help="step h (default: T / block steps)")
    sp.add_argument("--k", type=_pos_int, default=d["stability_k"],
                    help="eigenvalues per ARPACK target (default %(default)s)")
    _model_options(sp, 'stability')

    op = sub.add_parser("order", help="observed order of convergence",
                        description="Error at T against an exact or DOP853 reference; "
                                    "log-log fit of the order.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    op.add_argument("--methods", type=_names(methods, "method"),
                    default=list(d["order_methods"]),
                    help="methods (default: all)")
    op.add_argument("--problems", type=_names([*BUILTIN_PROBLEMS, "model"], "problem"),
                    default=list(d["order_problems"]),
                    help=f"problems (default {csv(d['order_problems'])}; model: the network's "
                         "block)")
    op.add_argument("--steps", type=_ints, default=list(d["order_steps"]),
                    help=f"step counts (default {csv(d['order_steps'])})")
    _model_options(op, 'order')

    cp = sub.add_parser("cost", help="memory and time of the gradient strategies",
                        description="Peak memory (a fresh process per strategy) and "
                                    "forward+backward time (all strategies in one process, "
                                    "interleaved rounds) of each strategy, as ratios to "
                                    "backprop, all from one run.",
                        epilog=_EXAMPLES, formatter_class=fmt)
    cp.add_argument("--strategies", type=strategies, default=list(d["cost_strategies"]),
                    help=f"strategies besides backprop (default {csv(d['cost_strategies'])})")
    cp.add_argument("--method", choices=methods, default=d["cost_method"],
                    help="method (default %(default)s, torchdiffeq's rk4)")
    cp.add_argument("--steps", type=_pos_int, default=d["cost_steps"],
                    help="number of steps (default %(default)s)")
    cp.add_argument("--repeats", type=_pos_int, default=d["cost_repeats"],
                    help="timed rounds, each running every strategy once, interleaved; the "
                         "time ratios are medians over the rounds with their min-max "
                         "(default %(default)s)")
    cp.add_argument("--blocks", type=_pos_int, default=d["cost_blocks"],
                    help="ODE blocks of the measured network (default %(default)s)")
    _model_options(cp, 'cost')
    cp.set_defaults(batch=d["cost_batch"])
    return parser


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    from odenet.analysis._models import check_spec

    return check_spec(
        model=args.model, form=args.form, norm=None if args.norm == "none" else args.norm,
        channels=args.channels, batch=args.batch,
        method=args.block_method, steps=args.block_steps, T=args.T, dtype=args.dtype,
        device=args.device, seed=args.seed, data=args.data, weight_scale=args.weight_scale,
        train_steps=args.train_steps, weights=args.weights,
    )


def _default_gradient_methods(spec: dict[str, Any]) -> list[str]:
    from odenet.analysis._report import REPORT_DEFAULTS

    key = "imex_gradient_methods" if spec["model"] == "imex" else "gradient_methods"
    return list(REPORT_DEFAULTS[key])


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    # BLAS threads (numpy/scipy): oversubscription slows small dense problems badly
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)


def _files(name: str, result: Any, fig=None) -> dict[str, str | bytes]:
    """The files of a sub-command: ``NAME.json`` and ``NAME.png``."""
    from odenet.analysis._report import figure_bytes
    from odenet.analysis._results import jsonable

    files: dict[str, str | bytes] = {
        f"{name}.json": json.dumps(jsonable(result), indent=1, allow_nan=False)}
    if fig is not None:
        files[f"{name}.png"] = figure_bytes(fig)
    return files


#: Options that describe a built-in network (refused with --model MODULE:FACTORY).
_BUILTIN_ONLY = ("--form", "--norm", "--channels", "--block-method", "--block-steps", "--T",
                 "--weight-scale", "--train-steps", "--activations", "--methods", "--steps",
                 "--fresh")


def _given(argv: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def _run_user(args: argparse.Namespace, command_line: str, argv: Sequence[str]) -> int:
    """``report --model MODULE:FACTORY``: the report on the user's own network."""
    import torch

    from odenet.analysis import _report as R
    from odenet.analysis._user_model import load_factory, load_inputs, split_batch
    from odenet.errors import ArgumentError, ArgumentTypeError

    if args.command != "report":
        raise ArgumentError(f"model: a network given as MODULE:FACTORY is analysed by "
                            f"'{PROG} report' (the {args.command} command takes the built-in "
                            "models; from Python, the analysis functions take any block)")
    for opt in _BUILTIN_ONLY:
        if _given(argv, opt):
            raise ArgumentError(f"model: {opt} describes a built-in network; it does not apply "
                                "to a network given as MODULE:FACTORY")
    user_data = ":" in args.data
    if args.input is not None and user_data:
        raise ArgumentError("input: give the batch once: --input FILE or --data MODULE:LOADER")
    if args.input is None and not user_data:
        raise ArgumentError("input: a network given as MODULE:FACTORY needs a batch: --input "
                            "FILE (saved with torch.save) or --data MODULE:LOADER")
    if args.weights is not None:
        R.check_weights(args.weights)
    R.output_path(args.output)
    _set_threads(args.threads)
    torch.manual_seed(args.seed)
    model = load_factory(args.model, "model")
    if not isinstance(model, torch.nn.Module):
        raise ArgumentTypeError(f"model: {args.model}() returned a {type(model).__name__}, not "
                                "a torch.nn.Module")
    from odenet.analysis._user_model import find_blocks

    if not find_blocks(model):
        raise ArgumentError(
            f"model: {args.model}() returned a {type(model).__name__} without ODE blocks (an "
            "odenet.nn.ODEBlock, an IMEXBlock, or a module with an odenet_block description or "
            "rhs, T, steps and method attributes)")
    if args.weights is not None:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = " ".join(line.strip() for line in str(err).splitlines()[:2])
            raise ArgumentError(f"weights: {args.weights!r} does not fit the network of "
                                f"{args.model} ({first})") from None
    if user_data:
        inputs, targets = split_batch(load_factory(args.data, "data"), f"data: {args.data}()")
    else:
        inputs, targets = load_inputs(args.input)
    if _given(argv, "--batch"):
        def head(t):
            return t[: args.batch]
        inputs = tuple(head(t) for t in inputs) if isinstance(inputs, tuple) else head(inputs)
        targets = None if targets is None else head(targets)
    device = torch.device(args.device)
    model = model.to(device)
    inputs = (tuple(t.to(device) for t in inputs) if isinstance(inputs, tuple)
              else inputs.to(device))
    targets = None if targets is None else targets.to(device)
    settings: dict[str, Any] = {"dtype": args.dtype}
    if _given(argv, "--strategies"):
        settings["strategies"] = args.strategies
    if args.quick:
        settings.update(samples=2, step_factors=[1, 2], cost_repeats=1, flow_iterations=8,
                        stability_k=2, cost_strategies=["anode", "adjoint"],
                        network_strategies=["adjoint"])
    sections = args.sections if _given(argv, "--sections") else None
    R.report(model, inputs, output=args.output, targets=targets, settings=settings,
             sections=sections, force=args.force, command=command_line, source=args.model)
    return 0


def _run(args: argparse.Namespace, command_line: str,
         argv: Sequence[str] = ()) -> int:
    import shutil

    from odenet.analysis import _report as R
    from odenet.errors import ArgumentError

    if ":" in args.model:
        return _run_user(args, command_line, argv)
    if args.input is not None:
        raise ArgumentError("input: --input FILE is the batch of a network given as "
                            "--model MODULE:FACTORY; the built-in models use --data")
    if ":" in args.data:
        raise ArgumentError(f"data: {args.data!r} (a loader) gives the batch of a network "
                            "given as --model MODULE:FACTORY; the built-in models take "
                            "auto, digits or synthetic")
    if args.weights is not None:
        R.check_weights(args.weights)
    R.output_path(args.output)
    _set_threads(args.threads)
    progress = False if args.no_progress else None
    spec = _spec(args)
    if args.command == "report":
        settings: dict[str, Any] = {
            "activations": args.activations, "gradient_steps": args.steps,
            "reversibility_steps": args.steps, "strategies": args.strategies,
        }
        if args.methods is not None:
            settings["gradient_methods"] = args.methods
        if args.quick:
            spec = {**spec, "channels": min(spec["channels"], 4), "batch": min(spec["batch"], 4)}
            settings.update(
                activations=args.activations[:1], gradient_steps=[2, 4],
                reversibility_steps=[2, 4], order_steps=[8, 16],
                order_methods=["euler", "rk4", "ars222"], order_problems=["linear", "model"],
                cost_steps=4, cost_batch=8, cost_blocks=2, cost_repeats=2, fd_directions=1,
                cost_strategies=["adjoint"], stability_k=2,
                gradient_methods=(args.methods or _default_gradient_methods(spec))[:2],
            )
        R.report(args.output, spec, settings=settings, sections=args.sections,
                 progress=progress, fresh=args.fresh, force=args.force, command=command_line)
        return 0

    with R.claim_output(args.output, force=args.force) as folder:
        stores = folder.path / "sweeps"
        if args.fresh and stores.exists():
            shutil.rmtree(stores)
        stores.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        if args.command == "gradients":
            res = R.run_gradients(spec, args.activations,
                                  args.methods or _default_gradient_methods(spec), args.steps,
                                  args.strategies, fd_directions=args.fd_directions,
                                  stores=stores, progress=progress)
            print(res)
            files = _files("gradients", res.to_dict(), res.plot())
        elif args.command == "reversibility":
            res = R.run_reversibility(spec, args.activations, args.methods, args.steps,
                                      stores=stores, progress=progress)
            print(res)
            files = _files("reversibility", res.to_dict(), res.plot())
        elif args.command == "stability":
            res, regions = R.run_stability(spec, method=args.method, step_size=args.step_size,
                                           k=args.k)
            print(res)
            fig = res.plot()
            R._zoom_stability_figure(fig, res)
            files = _files("stability", res.to_dict(), fig)
            files["regions.png"] = R.figure_bytes(R.plot_regions(
                regions, res.hlambda_all(),
                f"stability regions and h·λ at h = {res.step_size:.3g}"))
        elif args.command == "order":
            results = R.run_order(spec, args.methods, args.problems, args.steps, stores=stores,
                                  progress=progress)
            for r in results:
                print(r)
                print()
            files = _files("order", [r.to_dict() for r in results],
                           R.plot_orders(results) if results else None)
        elif args.command == "cost":
            res = R.run_cost(spec, args.strategies, method=args.method, steps=args.steps,
                             batch=args.batch, blocks=args.blocks, repeats=args.repeats,
                             stores=stores, progress=progress)
            print(res)
            files = _files("cost", res.to_dict(), res.plot())
        else:  # pragma: no cover - argparse refuses other commands
            raise AssertionError(args.command)
        paths = folder.commit(files)
    print(f"done in {time.perf_counter() - t0:.0f} s; wrote "
          + ", ".join(str(p) for p in paths))
    return 0


#: The command-line option behind each argument name that messages start with.
_OPTIONS = {
    "output": "--output", "weights": "--weights", "channels": "--channels", "batch": "--batch",
    "method": "--block-method", "steps": "--steps", "T": "--T", "dtype": "--dtype",
    "device": "--device", "seed": "--seed", "weight_scale": "--weight-scale",
    "train_steps": "--train-steps", "methods": "--methods", "strategies": "--strategies",
    "problems": "--problems", "activation": "--activations", "activations": "--activations",
    "sections": "--sections", "model": "--model", "data": "--data", "norm": "--norm",
    "form": "--form", "step_size": "--step-size", "k": "--k", "input": "--input",
    "inputs": "--input",
}


def _one_line(err: BaseException) -> str:
    """The first line of an error's message, with the command-line option it concerns."""
    from odenet.analysis._report import OutputError

    text = str(err).strip()
    if isinstance(err, OSError) and not isinstance(err, OutputError) and err.strerror:
        where = f" {err.filename}" if err.filename else ""
        text = f"cannot write{where}: {err.strerror}"
    line = text.splitlines()[0] if text else type(err).__name__
    head, sep, rest = line.partition(":")
    if sep and head in _OPTIONS:
        return f"argument {_OPTIONS[head]}: {rest.strip()}"
    return line


def _import_plugins(argv: Sequence[str]) -> None:
    """Import the modules of every ``--import MODULE`` before the parser lists the valid names
    (their strategy and operator classes register themselves on import)."""
    import importlib

    names = [a.split("=", 1)[1] for a in argv if a.startswith("--import=")]
    names += [b for a, b in itertools.pairwise(argv) if a == "--import"]
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: a module next to the user
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"cannot import {name!r} ({err})") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``odenet-analysis``; returns the exit status.

    Bad arguments (unknown method, strategy or model, non-positive steps, an
    unusable weights file, an output folder holding other files) print one
    line on stderr naming the option and give exit status 2; a folder in use
    by another run, a full disk or missing permissions give 1 (one line,
    nothing half-written); an interrupt gives 130 (rerun the command to
    resume).

    Examples
    --------
    >>> from odenet.analysis._cli import main
    >>> main(["order", "--steps", "0"])
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _import_plugins(argv)
    except ImportError as err:
        sys.stderr.write(f"{PROG}: error: argument --import: {_one_line(err)}\n")
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    command_line = " ".join([PROG, *(shlex.quote(a) for a in argv)])
    try:
        return _run(args, command_line, argv)
    except OdenetError as err:
        sys.stderr.write(f"{PROG} {args.command}: error: {_one_line(err)}\n")
        return 2
    except OSError as err:  # full disk, permissions, a folder in use
        sys.stderr.write(f"{PROG} {args.command}: error: {_one_line(err)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted; run the same command again to resume "
                         "(finished cases are kept)\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
