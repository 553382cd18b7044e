"""The diagnostic report: every analysis on one network, written as HTML, PNG figures and JSON."""

from __future__ import annotations

import datetime
import errno
import io
import json
import os
import pickle
import platform
import secrets
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

import odenet
from odenet import IMEXTableau
from odenet.analysis import _adaptive, _reconstruction
from odenet.analysis import _html as H
from odenet.analysis._convergence import ConvergenceResult, convergence_order
from odenet.analysis._cost import CostResult, cost
from odenet.analysis._gradients import (
    GradientConsistencyResult,
    gradient_consistency,
    strategy_names,
)
from odenet.analysis._gradients import combine as combine_gradients
from odenet.analysis._html import adjoint_note
from odenet.analysis._models import Case, build_case, check_spec
from odenet.analysis._problems import BUILTIN_PROBLEMS, ODEProblem
from odenet.analysis._region import (
    StabilityRegion,
    _ray_polys,
    _trim,
    resolve_method,
    stability_region,
)
from odenet.analysis._report_figures import (
    order_figures,
    plot_orders,
    plot_regions,
    result_figures,
    stability_figures,
)
from odenet.analysis._report_figures import (  # noqa: F401  (the command draws with it)
    zoom_stability_figure as _zoom_stability_figure,
)
from odenet.analysis._results import Result, finish_figure, jsonable
from odenet.analysis._reversibility import ReversibilityResult, reversibility
from odenet.analysis._reversibility import combine as combine_reversibility
from odenet.analysis._stability import StabilityResult, stability
from odenet.analysis._sweep import atomic_write
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers import EXPLICIT_METHODS, IMEX_METHODS, method_names

__all__ = [
    "MARKER",
    "REPORT_DEFAULTS",
    "REPORT_SECTIONS",
    "OutputError",
    "OutputFolder",
    "ReportSection",
    "check_settings",
    "check_weights",
    "claim_output",
    "figure_bytes",
    "key_numbers",
    "network_state",
    "output_path",
    "plot_orders",
    "plot_regions",
    "report",
    "run_cost",
    "run_gradients",
    "run_order",
    "run_reversibility",
    "run_stability",
    "strategy_error",
    "write_figure",
]

#: Settings of the sweeps in ``odenet-analysis report`` (each overridable).
REPORT_DEFAULTS: dict[str, Any] = {
    "activations": ("tanh", "relu"),
    "gradient_methods": ("euler", "midpoint", "rk4_38"),
    "imex_gradient_methods": IMEX_METHODS,
    "gradient_steps": (2, 4, 8, 16, 32, 64),
    "strategies": ("anode", "revolve", "adjoint", "torchdiffeq-adjoint"),
    "fd_directions": 2,
    "reversibility_methods": ("euler", "midpoint", "rk4"),
    "reversibility_steps": (2, 4, 8, 16, 32, 64),
    "order_methods": EXPLICIT_METHODS + IMEX_METHODS,
    "order_problems": ("linear", "vanderpol", "lotka_volterra", "convnet", "model"),
    "order_steps": (8, 16, 32, 64, 128),
    "cost_strategies": ("anode", "revolve", "adjoint", "torchdiffeq", "torchdiffeq-adjoint"),
    "cost_method": "rk4_38",
    "cost_steps": 16,
    "cost_batch": 16,
    "cost_blocks": 4,
    "cost_repeats": 5,
    "stability_k": 6,
}


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


# -- arguments -------------------------------------------------------------------------------------
def strategy_error(name: object) -> str | None:
    """Why ``name`` is not a strategy of the analyses, or ``None`` when it is one.

    Examples
    --------
    >>> from odenet.analysis._report import strategy_error
    >>> strategy_error("revolve:4") is None
    True
    >>> strategy_error("revolve:0")
    "'revolve:0': the number of checkpoints k in 'revolve:k' must be an integer k >= 1, got '0'"
    """
    if not isinstance(name, str):
        return f"expected a strategy name, got {type(name).__name__}"
    key = name.strip().lower()
    if key.startswith("revolve:"):
        k = key.split(":", 1)[1]
        if not (k.isdigit() and int(k) >= 1):
            return (f"{name!r}: the number of checkpoints k in 'revolve:k' must be an integer "
                    f"k >= 1, got {k!r}")
        return None
    if key in strategy_names():
        return None
    return (f"unknown strategy {name!r}; valid strategies are {', '.join(strategy_names())}, or "
            "revolve:k with k >= 1 checkpoints")


def check_weights(path: object) -> str:
    """Check a ``--weights`` file before any work: a readable state dict of finite tensors.

    Returns the path as a string. The messages name what is wrong: a missing
    file, a folder, a file that ``torch.load(weights_only=True)`` cannot read,
    content that is not a state dict, or a tensor with NaN or infinite values.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from odenet.analysis._report import check_weights
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "w.pt"
    ...     torch.save({"w": torch.tensor([1.0, float("nan")])}, p)
    ...     try:
    ...         check_weights(p)
    ...     except ValueError as err:
    ...         print(str(err).split(" (")[0].replace(str(p), "FILE"))
    weights: 'FILE' contains non-finite values in tensor 'w'
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"weights: expected a file path (str or os.PathLike), got {type(path).__name__}"
        )
    p = os.fspath(path)
    if not p.strip():
        raise ArgumentError("weights: empty path; name a file written by "
                            "torch.save(net.state_dict(), FILE)")
    if os.path.isdir(p):
        raise ArgumentError(f"weights: {p!r} is a folder; expected a state-dict file written by "
                            "torch.save(net.state_dict(), FILE)")
    if not os.path.exists(p):
        raise ArgumentError(f"weights: no such file {p!r}")
    try:
        with open(p, "rb"):
            pass
    except OSError as err:
        raise ArgumentError(f"weights: cannot read {p!r}: {err.strerror or err}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(p):
            raise ArgumentError(
                f"weights: {p!r} is not a torch state dict (torch.load cannot read it; expected "
                "a file written by torch.save(net.state_dict(), FILE))"
            ) from None
        raise ArgumentError(
            f"weights: {p!r} is not a plain state dict: it holds objects that "
            "torch.load(weights_only=True) does not unpickle; save net.state_dict(), not the "
            "network"
        ) from None
    except Exception:  # a text file, a truncated archive, ...
        raise ArgumentError(
            f"weights: {p!r} is not a torch state dict (torch.load cannot read it; expected a "
            "file written by torch.save(net.state_dict(), FILE))"
        ) from None
    if not isinstance(state, Mapping):
        raise ArgumentError(f"weights: {p!r} holds a {type(state).__name__}, not a state dict "
                            "(torch.save(net.state_dict(), FILE))")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ArgumentError(
                f"weights: {p!r} is not a state dict: entry {name!r} is a "
                f"{type(value).__name__}, not a tensor (a checkpoint? save net.state_dict())"
            )
        if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()
        ):
            bad = int((~torch.isfinite(value)).sum())
            raise ArgumentError(
                f"weights: {p!r} contains non-finite values in tensor {name!r} ({bad} of "
                f"{value.numel()} entries are NaN or infinite)"
            )
    return p


def _check_names(values: object, key: str, valid: Sequence[str] | None = None,
                 error: Callable[[str], str | None] | None = None) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise ArgumentTypeError(f"settings[{key!r}]: expected a list of names, got "
                                f"{type(values).__name__}")
    if not values:
        raise ArgumentError(f"settings[{key!r}]: expected at least one name")
    for v in values:
        if error is not None:
            msg = error(v)
        elif not isinstance(v, str) or v not in (valid or ()):
            msg = f"unknown name {v!r}; valid: {', '.join(valid or ())}"
        else:
            msg = None
        if msg:
            raise ArgumentError(f"settings[{key!r}]: {msg}")
    return list(values)


def _check_count(value: object, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ArgumentError(f"settings[{key!r}]: expected {what}, got {value!r}")
    return value


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """:data:`REPORT_DEFAULTS` updated by ``settings``, every value checked.

    Examples
    --------
    >>> from odenet.analysis._report import check_settings
    >>> check_settings({"cost_repeats": 2})["cost_repeats"]
    2
    >>> try:
    ...     check_settings({"strategies": ["revolve:0"]})
    ... except ValueError as err:
    ...     print(str(err).split(":")[0])
    settings['strategies']
    """
    from odenet.analysis._common import check_steps
    from odenet.analysis._models import ACTIVATIONS
    from odenet.analysis._problems import BUILTIN_PROBLEMS

    if settings is not None and not isinstance(settings, Mapping):
        raise ArgumentTypeError(
            f"settings: expected a dict of report settings, got {type(settings).__name__}"
        )
    cfg = dict(REPORT_DEFAULTS)
    for k, v in (settings or {}).items():
        if k not in REPORT_DEFAULTS:
            raise ArgumentError(
                f"settings: unknown setting {k!r}; valid settings are "
                + ", ".join(repr(s) for s in REPORT_DEFAULTS)
            )
        cfg[k] = v
    cfg["activations"] = _check_names(cfg["activations"], "activations", list(ACTIVATIONS))
    for key in ("gradient_methods", "imex_gradient_methods", "reversibility_methods",
                "order_methods"):
        cfg[key] = _check_names(cfg[key], key, list(odenet.METHODS))
    if cfg["cost_method"] not in odenet.METHODS:
        raise ArgumentError(f"settings['cost_method']: unknown method {cfg['cost_method']!r}; "
                            f"valid: {', '.join(odenet.METHODS)}")
    for key in ("strategies", "cost_strategies"):
        cfg[key] = _check_names(cfg[key], key, error=strategy_error)
    cfg["order_problems"] = _check_names(cfg["order_problems"], "order_problems",
                                         [*BUILTIN_PROBLEMS, "model"])
    for key in ("gradient_steps", "reversibility_steps", "order_steps"):
        cfg[key] = check_steps(cfg[key], f"settings[{key!r}]")
    for key in ("cost_steps", "cost_batch", "cost_blocks", "cost_repeats", "stability_k"):
        cfg[key] = _check_count(cfg[key], key)
    cfg["fd_directions"] = _check_count(cfg["fd_directions"], "fd_directions", 0)
    return cfg


# -- the output folder -----------------------------------------------------------------------------
#: The file that marks a folder as written by ``odenet-analysis`` (and locks it during a run).
MARKER = ".odenet-analysis"


class OutputError(OSError):
    """The output folder cannot be used now: another run holds it, or writing failed.

    Examples
    --------
    >>> from odenet.analysis._report import OutputError
    >>> isinstance(OutputError("output: busy"), OSError)
    True
    """


def output_path(output: object) -> Path:
    """The output folder as a path; a typed, argument-naming error for anything else.

    Examples
    --------
    >>> from odenet.analysis._report import output_path
    >>> output_path("r").name
    'r'
    >>> try:
    ...     output_path(None)
    ... except TypeError as err:
    ...     print(err)
    output: expected a folder path (str or os.PathLike), got NoneType
    """
    if isinstance(output, bytes) or not isinstance(output, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"output: expected a folder path (str or os.PathLike), got {type(output).__name__}"
        )
    text = os.fspath(output)
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError("output: empty path; name the report folder (e.g. -o odenet-report, "
                            "or -o . for the current folder when it is empty)")
    return Path(text)


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and flush it to disk."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class OutputFolder:
    """An output folder held by this run (see :func:`claim_output`).

    ``commit`` writes a set of files into a per-run temporary folder inside it
    and renames each into place (``index.html`` last), so a reader never sees a
    half-written file and a failed write leaves the folder as it was.
    ``release`` (or leaving the ``with`` block) drops the lock.
    """

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Unlock the folder (the marker file stays: the folder is ours)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def commit(self, files: Mapping[str, str | bytes]) -> list[Path]:
        """Write ``files`` (name → content) into the folder, all or nothing; return their paths.

        Raises
        ------
        OutputError
            A file could not be written (full disk, permissions); the folder's
            files are unchanged.
        """
        staging = self.path / f".staging-{os.getpid()}-{secrets.token_hex(4)}"
        name = ""
        try:
            try:
                staging.mkdir()
                for name, data in files.items():
                    _write_file(staging / name,
                                data.encode("utf-8") if isinstance(data, str) else data)
            except OSError as err:
                raise OutputError(
                    f"output: cannot write {name or staging.name} in {self.path}: "
                    f"{err.strerror or err}; no file of the report was changed"
                ) from None
            order = sorted(files, key=lambda n: n == "index.html")  # the page last
            for name in order:
                try:
                    os.replace(staging / name, self.path / name)
                except OSError as err:
                    raise OutputError(
                        f"output: cannot move {name} into {self.path}: {err.strerror or err}"
                    ) from None
            _fsync_dir(self.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return [self.path / n for n in files]


def claim_output(output: object, *, force: bool = False) -> OutputFolder:
    """Take an output folder for this run: new, empty, or made by ``odenet-analysis``.

    A folder that holds other files is refused unless ``force`` (the report's
    files then replace those of the same names). The folder gets the marker
    file ``.odenet-analysis``, which also serves as its lock: a second run on
    the same folder stops at once with :class:`OutputError`. Temporary folders
    left by killed runs are removed.

    Parameters
    ----------
    output : str or path-like
        The folder (created with its parents if needed).
    force : bool
        Also write into a non-empty folder that was not made by odenet-analysis.

    Returns
    -------
    OutputFolder
        Use it in a ``with`` block (it holds the lock until released).

    Raises
    ------
    odenet.errors.ArgumentTypeError, odenet.errors.ArgumentError
        ``output`` is not a path, is empty, is a file, or is a foreign non-empty folder.
    OutputError
        Another run holds the folder, or it cannot be created or written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from odenet.analysis._report import claim_output
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with claim_output(pathlib.Path(d) / "r") as out:
    ...         _ = out.commit({"a.txt": "hello"})
    ...     sorted(p.name for p in (pathlib.Path(d) / "r").iterdir())
    ['.odenet-analysis', 'a.txt']
    """
    out = output_path(output)
    try:
        if out.exists() and not out.is_dir():
            raise ArgumentError(f"output: {out} exists and is not a folder")
        if out.is_dir():
            entries = sorted(p.name for p in out.iterdir())
            if entries and MARKER not in entries and not force:
                shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise ArgumentError(
                    f"output: {out} is not empty ({shown}) and was not made by odenet-analysis; "
                    "choose a new or empty folder, or pass --force (Python: force=True) to write "
                    "the report's files into it"
                )
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ArgumentError(f"output: cannot create {out}: a part of the path is a file") from None
    except PermissionError:
        raise OutputError(f"output: no permission to create or read {out}") from None
    except OSError as err:
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"output: cannot use {out}: {err.strerror or err}") from None
    marker = out / MARKER
    try:
        fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        raise OutputError(f"output: no permission to write in {out}") from None
    except OSError as err:
        raise OutputError(f"output: cannot write in {out}: {err.strerror or err}") from None
    try:
        _lock(fd)
    except OSError as err:
        try:
            other = json.loads(os.read(fd, 4096) or b"{}").get("pid")
        except (OSError, ValueError, AttributeError):
            other = None
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            who = f" (pid {other})" if other else ""
            raise OutputError(
                f"output: {out} is in use by another odenet-analysis run{who}; wait for it to "
                "finish or choose another folder"
            ) from None
        raise OutputError(f"output: cannot lock {out}: {err.strerror or err}") from None
    try:
        stamp = {"made_by": "odenet-analysis", "odenet": odenet.__version__, "pid": os.getpid(),
                 "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(stamp) + "\n").encode())
        for stale in out.glob(".staging-*"):  # left by a killed run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
    except OSError as err:
        os.close(fd)
        raise OutputError(f"output: cannot write in {out}: {err.strerror or err}") from None
    return OutputFolder(out, fd)


def figure_bytes(fig) -> bytes:
    """The PNG of a figure, after :func:`odenet.analysis._results.finish_figure`.

    Examples
    --------
    >>> from odenet.analysis._results import new_figure
    >>> from odenet.analysis._report import figure_bytes
    >>> figure_bytes(new_figure()[0])[:4]
    b'\\x89PNG'
    """
    finish_figure(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG, atomically (after :func:`figure_bytes`' finishing).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from odenet.analysis._results import new_figure
    >>> from odenet.analysis._report import write_figure
    >>> fig, (ax,) = new_figure()
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_figure(fig, pathlib.Path(d) / "f.png")
    ...     p.read_bytes()[:4]
    b'\\x89PNG'
    """
    return atomic_write(path, figure_bytes(fig))


def _cases(spec: Mapping[str, Any], activations: Sequence[str]) -> list[tuple[str, Case]]:
    return [(a, build_case({**spec, "activation": a})) for a in activations]


def _store(stores: Path | None, name: str) -> Path | None:
    return None if stores is None else stores / f"{name}.jsonl"


# -- the sections ----------------------------------------------------------------------------------
def run_gradients(
    spec: Mapping[str, Any],
    activations: Sequence[str],
    methods: Sequence[str],
    steps: Sequence[int],
    strategies: Sequence[str],
    *,
    fd_directions: int = 2,
    stores: Path | None = None,
    progress: bool | None = None,
) -> GradientConsistencyResult:
    """Gradient consistency of the specification's ODE block, for each activation.

    The loss is the network's classification loss on the block output.

    Examples
    --------
    >>> from odenet.analysis._report import run_gradients
    >>> res = run_gradients({"model": "dense", "channels": 2, "batch": 2}, ["tanh"], ["euler"],
    ...                     [2], ["anode"], progress=False)
    >>> [r["strategy"] for r in res.rows]
    ['backprop', 'anode']
    """
    results = []
    for act, case in _cases(spec, activations):
        if case.implicit is not None:
            explicit = [m for m in methods if not isinstance(resolve_method(m), IMEXTableau)]
            if explicit:
                raise ArgumentError(
                    f"methods: the IMEX model needs IMEX methods ({method_names('imex')}), "
                    f"got {explicit[0]!r}"
                )
        results.append(
            gradient_consistency(
                case.func, case.y0, case.T, methods, steps, strategies, loss=case.loss,
                params=case.params, implicit=case.implicit, fd_directions=fd_directions,
                label=act, store=_store(stores, f"gradients-{act}"), progress=progress,
            )
        )
    return combine_gradients(results)


def run_reversibility(
    spec: Mapping[str, Any],
    activations: Sequence[str],
    methods: Sequence[str],
    steps: Sequence[int],
    *,
    stores: Path | None = None,
    progress: bool | None = None,
) -> ReversibilityResult:
    """Reverse-time reconstruction of the block input, for each activation.

    IMEX models are analysed through their explicit part ``f - L`` (an IMEX step
    cannot run backward in time).

    Examples
    --------
    >>> from odenet.analysis._report import run_reversibility
    >>> res = run_reversibility({"model": "dense", "channels": 2, "batch": 2}, ["tanh"],
    ...                         ["euler"], [2, 4], progress=False)
    >>> len(res.rows)
    2
    """
    results = []
    for act, case in _cases(spec, activations):
        f = case.func
        if case.implicit is not None:
            L, g = case.implicit, case.func
            f = _Minus(g, L)
        results.append(
            reversibility(f, case.y0, case.T, methods, steps, label=act,
                          store=_store(stores, f"reversibility-{act}"), progress=progress)
        )
    return combine_reversibility(results)


class _Minus(torch.nn.Module):
    """``f(t, y) - L y`` as one right-hand side."""

    def __init__(self, f, L):
        super().__init__()
        self.f = f
        self.L = L

    def forward(self, t, y):
        return self.f(t, y) - self.L(y)


def run_stability(
    spec: Mapping[str, Any],
    *,
    method: str | None = None,
    step_size: float | None = None,
    k: int = 6,
    which: Sequence[str] = ("LM", "LR"),
    T: float | None = None,
) -> tuple[StabilityResult, list[StabilityRegion]]:
    """Spectrum of the block's Jacobian at the first sample, and the regions of the methods."""
    case = build_case(spec)
    m = method or case.method
    h = step_size or case.step_size
    y = case.y0[:1]
    res = stability(case.func, y, m, h, implicit=case.implicit, k=k, which=which,
                    T=case.T if T is None else T)
    z = res.hlambda_all()
    tab = resolve_method(m)
    if isinstance(tab, IMEXTableau):
        mus = res._mu * h
        ws = [float(w) for w in np.unique(np.quantile(mus, [0.0, 0.5, 1.0]))]
        regions = [stability_region(n, implicit_values=ws, spectra=z) for n in IMEX_METHODS]
    else:
        regions = [stability_region(n, spectra=z) for n in _distinct_regions(EXPLICIT_METHODS)]
    return res, regions


def _model_problem(spec: Mapping[str, Any]) -> ODEProblem:
    case = build_case({**spec, "dtype": "float64", "batch": 1})
    return ODEProblem(case.func, case.y0, case.T, implicit=case.implicit, name="model",
                      description="the network's ODE block on one sample; DOP853 reference")


def run_order(
    spec: Mapping[str, Any] | None,
    methods: Sequence[str],
    problems: Sequence[str],
    steps: Sequence[int],
    *,
    stores: Path | None = None,
    progress: bool | None = None,
) -> list[ConvergenceResult]:
    """Observed orders on each problem (``"model"``: the specification's block, float64).

    IMEX methods run only on problems with an implicit part.

    Examples
    --------
    >>> from odenet.analysis._report import run_order
    >>> [r.problem for r in run_order(None, ["euler"], ["linear"], [8, 16], progress=False)]
    ['linear']
    """
    out = []
    for name in problems:
        if name == "model":
            if spec is None:
                raise ArgumentError("problems: 'model' needs a model specification")
            prob: ODEProblem | str = _model_problem(spec)
            has_implicit = prob.implicit is not None
        else:
            if name not in BUILTIN_PROBLEMS:
                raise ArgumentError(
                    f"problems: unknown problem {name!r}; valid problems are "
                    + ", ".join(repr(p) for p in (*BUILTIN_PROBLEMS, "model"))
                )
            prob = name
            has_implicit = name in ("linear", "convnet")
        ms = [m for m in methods
              if has_implicit or not isinstance(resolve_method(m), IMEXTableau)]
        if not ms:
            continue
        out.append(convergence_order(ms, prob, steps, store=_store(stores, f"order-{name}"),
                                     progress=progress))
    return out


def _distinct_regions(names: Sequence[str]) -> list[str]:
    """The first of each group of methods that share one stability function ``R = N / D``
    (heun and midpoint, rk4 and rk4_38 draw one region)."""
    seen, out = set(), []
    for n in names:
        num, den = _ray_polys(odenet.METHODS[n], 1.0, 0.0)  # R along z = r, as polynomials in r
        key = tuple(tuple(np.round(_trim(c / den[0]), 12).tolist()) for c in (num, den))
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out


def run_cost(
    spec: Mapping[str, Any],
    strategies: Sequence[str],
    *,
    method: str | None = "rk4_38",
    steps: int = 16,
    batch: int = 32,
    blocks: int = 4,
    repeats: int = 3,
    stores: Path | None = None,
    progress: bool | None = None,
) -> CostResult:
    """Cost of the strategies on the specification's network with ``blocks`` ODE blocks.

    ``method`` steps the explicit models. An IMEX model keeps the IMEX method of ``spec``
    (its own default when that is None) unless ``method`` is itself an IMEX scheme; ``None``
    means the model's method in every case.
    """
    if method is not None and spec.get("model") == "imex" and not isinstance(
        resolve_method(method), IMEXTableau
    ):
        method = spec.get("method")
    s = check_spec({**spec, "batch": batch, "steps": steps, "method": method,
                    "blocks": blocks})
    return cost(s, strategies=strategies, repeats=repeats, store=_store(stores, "cost"),
                progress=progress)


# -- key numbers -----------------------------------------------------------------------------------
def _gradients_keys(results: Mapping[str, Any]) -> list[str]:
    g = results.get("gradients")
    if not isinstance(g, GradientConsistencyResult):
        return []
    out: list[str] = []
    labels = list(dict.fromkeys(r["label"] for r in g.rows))
    steps = sorted({r["steps"] for r in g.rows})
    same = adjoint_note(g) is not None
    for strat in ("adjoint", "torchdiffeq-adjoint"):
        if same and strat == "torchdiffeq-adjoint":
            continue
        rows = [r for r in g.rows if r["strategy"] == strat and r["grad_error"] is not None]
        if not rows:
            continue
        meth = rows[-1]["method"]
        parts = []
        for lab in labels:
            e = {r["steps"]: r["grad_error"] for r in rows
                 if r["label"] == lab and r["method"] == meth}
            if e:
                lo, hi = min(e), max(e)
                parts.append(f"{lab or 'model'}: {e[lo]:.2e} at Nt = {lo}, {e[hi]:.2e} at "
                             f"Nt = {hi}")
        who = ("adjoint and torchdiffeq-adjoint (optimize-then-discretize; the same errors)"
               if same and strat == "adjoint" else f"{strat} (optimize-then-discretize)")
        out.append(f"{who} vs backprop, {meth}, relative "
                   f"∂L/∂θ error — " + "; ".join(parts))
    dto = [r["grad_error"] for r in g.rows if r["strategy"] in ("anode", "revolve")
           or r["strategy"].startswith("revolve:")]
    dto = [e for e in dto if e is not None]
    if dto:
        out.append(f"ANODE / Revolve vs backprop: largest relative error {max(dto):.1e} "
                   f"over {len(dto)} cases (Nt = {steps[0]}…{steps[-1]})")
    parts = []
    for lab in labels:
        fd = [r["fd_error"] for r in g.rows if r["strategy"] == g.reference
              and r["label"] == lab and r["fd_error"] is not None]
        if fd:
            parts.append(f"{lab or 'model'} {max(fd):.1e}")
    if parts:
        out.append("backprop vs central finite differences, largest relative deviation: "
                   + "; ".join(parts))
    return out


def _reversibility_keys(results: Mapping[str, Any]) -> list[str]:
    rv = results.get("reversibility")
    if not isinstance(rv, ReversibilityResult):
        return []
    parts = []
    for lab in dict.fromkeys(r["label"] for r in rv.rows):
        rows = [r for r in rv.rows if r["label"] == lab]
        m = rows[-1]["method"]
        e = {r["steps"]: r["error"] for r in rows if r["method"] == m}
        lo, hi = min(e), max(e)
        parts.append(f"{lab}: {e[lo]:.2e} (Nt = {lo}) → {e[hi]:.2e} (Nt = {hi})")
    return [f"reverse-time reconstruction of y0 with {m}: " + "; ".join(parts)]


def _stability_keys(results: Mapping[str, Any]) -> list[str]:
    st = results.get("stability")
    if not isinstance(st, StabilityResult):
        return []
    line = (f"stability of {st.method} at h = {st.step_size:.3g}: spectral radius "
            f"{st.spectral_radius:.3g}, max Re λ {st.max_real:.2e}; all hλ in the region: "
            f"{'yes' if st.stable else 'NO'}; largest stable step {st.max_step:.3g}")
    if st.flow_amplification is not None:
        line += f"; flow-map amplification {st.flow_amplification:.3g}"
    return [line]


def _order_keys(results: Mapping[str, Any]) -> list[str]:
    return [f"observed orders on {r.problem}: " + ", ".join(
                f"{m} {p:.2f}" for m, p in r.observed.items())
            for r in results.get("order") or () if r.problem in ("model", "vanderpol")]


def _cost_keys(results: Mapping[str, Any]) -> list[str]:
    c = results.get("cost")
    if not isinstance(c, CostResult):
        return []
    parts = [f"{r['strategy']} time ×{r['time_ratio']:.2f} ({r['time_ratio_min']:.2f}–"
             f"{r['time_ratio_max']:.2f}) memory ×{r['memory_ratio']:.2f}"
             for r in c.rows[1:] if r.get("time_ratio") is not None
             and r.get("memory_ratio") is not None]
    if not parts:
        return []
    return [f"cost vs backprop ({c.method}, Nt = {c.steps}, {c.blocks} blocks, "
            f"{c.dtype}; time: median and min–max over {c.repeats} interleaved "
            "rounds): " + "; ".join(parts)]


def key_numbers(results: Mapping[str, Any]) -> list[str]:
    """The report's headline findings, as sentences (also printed by the command), section by
    section in the order of :data:`REPORT_SECTIONS`.

    Examples
    --------
    >>> from odenet.analysis._report import key_numbers
    >>> key_numbers({})
    []
    """
    return [line for s in REPORT_SECTIONS for line in s.key_numbers(results)]


# -- the table of sections -------------------------------------------------------------------------
class _Context(NamedTuple):
    """What every section's runner gets: the checked specification and settings."""

    spec: dict[str, Any]
    cfg: dict[str, Any]
    gradient_methods: Sequence[str]
    stores: Path
    progress: bool | None


def _run_gradients(c: _Context) -> dict[str, Any]:
    return {"gradients": run_gradients(
        c.spec, c.cfg["activations"], c.gradient_methods, c.cfg["gradient_steps"],
        c.cfg["strategies"], fd_directions=c.cfg["fd_directions"], stores=c.stores,
        progress=c.progress)}


def _run_reversibility(c: _Context) -> dict[str, Any]:
    return {"reversibility": run_reversibility(
        c.spec, c.cfg["activations"], c.cfg["reversibility_methods"],
        c.cfg["reversibility_steps"], stores=c.stores, progress=c.progress)}


def _run_stability(c: _Context) -> dict[str, Any]:
    res, regions = run_stability(c.spec, k=c.cfg["stability_k"])
    return {"regions": regions, "stability": res}


def _run_order(c: _Context) -> dict[str, Any]:
    return {"order": run_order(c.spec, c.cfg["order_methods"], c.cfg["order_problems"],
                               c.cfg["order_steps"], stores=c.stores, progress=c.progress)}


def _run_cost(c: _Context) -> dict[str, Any]:
    return {"cost": run_cost(
        c.spec, c.cfg["cost_strategies"], method=c.cfg["cost_method"],
        steps=c.cfg["cost_steps"], batch=c.cfg["cost_batch"], blocks=c.cfg["cost_blocks"],
        repeats=c.cfg["cost_repeats"], stores=c.stores, progress=c.progress)}


@dataclass(frozen=True)
class ReportSection:
    """One section of the report, as :func:`report` runs, draws and writes it.

    Attributes
    ----------
    name : str
        The name in ``sections`` (and ``--sections``), the key of its result in
        ``results.json`` and of its time in ``meta.section_seconds``.
    what : str
        The progress line printed when the section starts.
    run : callable
        ``run(context) -> {key: result}``: the results to store, in order (the
        stability section also stores its ``"regions"``).
    figures : callable
        ``figures(results)`` yields ``(file name, figure)`` pairs (see
        :mod:`odenet.analysis._report_figures`).
    html : callable
        ``html(results, figure files, overlapping curves)`` -> the section's
        HTML, or ``None`` (see :mod:`odenet.analysis._html`).
    key_numbers : callable
        ``key_numbers(results)`` -> the section's headline sentences.
    """

    name: str
    what: str
    run: Callable[[_Context], dict[str, Any]]
    figures: Callable[[Mapping[str, Any]], Iterable[tuple[str, Any]]]
    html: Callable[[Mapping[str, Any], Sequence[str], Sequence[Sequence[str]]], str | None]
    key_numbers: Callable[[Mapping[str, Any]], list[str]]


#: The report's sections, in the order they run and appear (the names are ``sections``' choices).
REPORT_SECTIONS: tuple[ReportSection, ...] = (
    ReportSection("gradients",
                  "gradient consistency (strategies vs backprop and finite differences)",
                  _run_gradients, result_figures("gradients"), H.gradients_section,
                  _gradients_keys),
    ReportSection("adaptive", "gradients of adaptive solves (dopri5 per rtol: strategies vs "
                              "backprop and finite differences of the full solve)",
                  _adaptive.run_section, result_figures("adaptive"), _adaptive.adaptive_section,
                  _adaptive.adaptive_keys),
    ReportSection("reversibility", "reverse-time reconstruction", _run_reversibility,
                  result_figures("reversibility"), H.reversibility_section, _reversibility_keys),
    ReportSection("stability", "spectrum of the block's Jacobian and stability regions",
                  _run_stability, stability_figures, H.stability_section, _stability_keys),
    ReportSection("order", "observed convergence orders", _run_order, order_figures,
                  H.order_section, _order_keys),
    ReportSection("cost", "memory (a fresh process per strategy) and time (interleaved rounds) "
                          "per strategy",
                  _run_cost, result_figures("cost"), H.cost_section, _cost_keys),
    ReportSection("reconstruction", "reconstruction by inverse steps (reversible methods, "
                                    "float32 and float64)",
                  _reconstruction.run_section, result_figures("reconstruction"),
                  _reconstruction.reconstruction_section, _reconstruction.reconstruction_keys),
)


# -- the report ------------------------------------------------------------------------------------
_SECTIONS = tuple(s.name for s in REPORT_SECTIONS)


def _check_sections(sections: object) -> list[str]:
    if isinstance(sections, str):
        sections = [s.strip() for s in sections.split(",") if s.strip()]
    if not isinstance(sections, (list, tuple)):
        raise ArgumentTypeError(
            f"sections: expected a list of section names, got {type(sections).__name__}"
        )
    if not sections:
        raise ArgumentError("sections: expected at least one of " + ", ".join(_SECTIONS))
    for s in sections:
        if s not in _SECTIONS:
            raise ArgumentError(
                f"sections: unknown section {s!r}; valid sections are "
                + ", ".join(repr(v) for v in _SECTIONS)
            )
    return [s for s in _SECTIONS if s in sections]


def network_state(spec: Mapping[str, Any]) -> str:
    """Whether the analysed network is trained, in words (shown at the top of the report).

    Examples
    --------
    >>> from odenet.analysis._report import network_state
    >>> network_state({"weights": None, "train_steps": 0, "seed": 0})
    'untrained: weights drawn at random from seed 0'
    """
    if spec.get("weights"):
        return f"trained weights loaded from {spec['weights']}"
    if spec.get("train_steps"):
        return (f"trained briefly: {spec['train_steps']} Adam steps on the data from random "
                f"weights (seed {spec['seed']})")
    return f"untrained: weights drawn at random from seed {spec['seed']}"


_UNSET: Any = object()


def report(
    target: Any = _UNSET,
    inputs: Any = _UNSET,
    /,
    *,
    output: str | os.PathLike | None = None,
    spec: Mapping[str, Any] | None = None,
    targets: torch.Tensor | None = None,
    loss: Callable | None = None,
    settings: Mapping[str, Any] | None = None,
    sections: Sequence[str] | None = None,
    progress: bool | None = None,
    fresh: bool = False,
    force: bool = False,
    quiet: bool = False,
    command: str | None = None,
    source: str | None = None,
) -> Path:
    """Run every analysis on a network and write ``index.html``, PNG figures and ``results.json``.

    Two forms:

    - ``report(model, inputs, output=..., targets=..., loss=...)``: **your own network**, any
      ``torch.nn.Module`` containing ODE blocks (:class:`odenet.nn.ODEBlock`,
      :class:`odenet.nn.IMEXBlock`, or a module following the block protocol of
      :mod:`odenet.analysis._user_model`: an ``odenet_block`` description, or ``rhs``,
      ``T``, ``steps`` and ``method`` attributes). Each block's real input is captured with
      forward hooks on the batch ``inputs``; every analysis runs per block at the block's
      own method, step size and gradient strategy (stability of ``h·J`` against the
      method's region, the strategy's gradient against backprop at ``Nt`` and its
      multiples, reverse-time reconstruction, memory and time per strategy); the gradient
      and the cost are also measured for the whole network's loss. The page opens with one
      verdict line per block (stable at its step size, and by how much; is the strategy's
      gradient trustworthy at its ``Nt``; is reverse reconstruction usable), each linking
      to its evidence. Settings: :data:`odenet.analysis._network_report.NETWORK_DEFAULTS`;
      ``sections`` among ``"stability"``, ``"gradients"``, ``"reversibility"``, ``"cost"``.
      The analyses run on a float64 copy of the model by default (``settings={"dtype":
      None}`` keeps its dtype); the model itself is not changed.
    - ``report(output, spec)``: a built-in network of the ``odenet-analysis`` command, from a
      specification (below).

    The report goes into a new or empty folder, or one that an earlier
    ``odenet-analysis`` run made (it carries the marker file
    ``.odenet-analysis``); a folder with other files is refused unless
    ``force``. The marker is also a lock: a second run on the same folder stops
    at once. Each sweep records its finished cases in ``output/sweeps/*.jsonl``;
    running the same report again after an interruption resumes where it
    stopped (and a finished report is rebuilt from the records at once;
    ``fresh`` discards them). The cost section is measured in one piece: an
    interrupted cost measurement is repeated whole, so that every ratio
    compares measurements of the same run. The report's files are written
    into a temporary folder first and then renamed into place, the page last,
    so a failure (a full disk) leaves the previous files as they were.

    Parameters
    ----------
    target : nn.Module or str or path-like, optional
        Your network (first form), or the report folder (second form; default
        ``"odenet-report"``).
    inputs : Tensor, tuple of Tensor, or dict, optional
        First form: a batch the network runs on (a tuple: the model's arguments). Second
        form: the model specification (as ``spec``).
    output : str or path-like, optional
        The report folder (created; default ``"odenet-report"``).
    spec : dict, optional
        The model specification (:data:`odenet.analysis._models.DEFAULT_SPEC` keys).
    targets : Tensor, optional
        First form: the batch's targets. The network's loss is ``loss(output, targets)``;
        without ``loss``, cross-entropy for integer targets, mean squared error for
        floating ones, and half the squared norm of the output without targets.
    loss : callable, optional
        First form: ``loss(output, targets)`` (``loss(output)`` without targets).
    settings : dict, optional
        Sweep settings overriding :data:`REPORT_DEFAULTS` (first form:
        :data:`~odenet.analysis._network_report.NETWORK_DEFAULTS`).
    sections : sequence of str, optional
        Which analyses to run (default: all).
    progress : bool, optional
        Progress bars (``None``: on a terminal).
    fresh : bool
        Discard recorded cases first.
    force : bool
        Write into a non-empty folder that odenet-analysis did not make
        (replacing files of the same names).
    quiet : bool
        Print nothing.
    command : str, optional
        The command line that made the report (shown in the HTML).
    source : str, optional
        First form: where the network came from (e.g. ``pkg.module:factory``), shown.

    Returns
    -------
    Path
        The path of ``index.html``.

    Raises
    ------
    odenet.errors.ArgumentTypeError, odenet.errors.ArgumentError
        A bad argument (the message names it), before any work.
    OutputError
        The folder is in use by another run, or cannot be written (an
        :class:`OSError`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from odenet.analysis import report
    >>> with tempfile.TemporaryDirectory() as d:
    ...     index = report(pathlib.Path(d) / "r", {"model": "dense", "channels": 2, "batch": 2},
    ...                    settings={"activations": ["tanh"], "order_problems": ["linear"],
    ...                              "order_methods": ["euler"], "order_steps": [4, 8]},
    ...                    sections=["order"], quiet=True)
    ...     sorted(p.name for p in index.parent.iterdir())
    ['.odenet-analysis', 'index.html', 'order.png', 'results.json', 'sweeps']

    Your own network (here an ODE-ResNet with two blocks; any module with ODE blocks works):

    >>> import torch, odenet
    >>> net = odenet.models.ODEResNet(1, 3, widths=(2,), blocks=2, steps=2)
    >>> x, y = torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     index = report(net, x, targets=y, output=pathlib.Path(d) / "mine",
    ...                    sections=["gradients"], settings={"samples": 2}, quiet=True)
    ...     "Summary: one line per ODE block" in index.read_text()
    True
    """
    if isinstance(target, torch.nn.Module):
        from odenet.analysis._network_report import network_report

        if inputs is _UNSET:
            raise ArgumentError("inputs: required with a model (a batch the network runs on)")
        if spec is not None or fresh or progress is not None:
            bad = "spec" if spec is not None else ("fresh" if fresh else "progress")
            raise ArgumentError(f"{bad}: applies to the built-in networks' report, not to a "
                                "report on a model")
        return network_report(target, inputs, "odenet-report" if output is None else output,
                              targets=targets, loss=loss, settings=settings, sections=sections,
                              force=force, quiet=quiet, command=command, source=source)
    for name, value in (("targets", targets), ("loss", loss), ("source", source)):
        if value is not None:
            raise ArgumentError(f"{name}: applies to a report on a model (report(model, "
                                "inputs, ...)), not to a specification")
    if inputs is not _UNSET:
        if spec is not None:
            raise ArgumentError("spec: given twice (as the second argument and as spec=)")
        spec = inputs
    if target is _UNSET:
        target = "odenet-report" if output is None else output
    elif output is not None:
        raise ArgumentError("output: given twice (as the first argument and as output=)")
    output = target
    out_path = output_path(output)
    sections = _check_sections(_SECTIONS if sections is None else sections)
    cfg = check_settings(settings)
    if spec is not None and not isinstance(spec, Mapping):
        raise ArgumentTypeError(f"spec: expected a dict (a model specification), got "
                                f"{type(spec).__name__}")
    if spec is not None and spec.get("weights") is not None:
        check_weights(spec["weights"])
    spec = check_spec(spec)
    gradient_methods = cfg["gradient_methods"]
    if spec["model"] == "imex" and "gradient_methods" not in (settings or {}):
        gradient_methods = cfg["imex_gradient_methods"]
    with claim_output(out_path, force=force) as folder:
        return _write_report(folder, spec, cfg, gradient_methods, sections, progress=progress,
                             fresh=fresh, quiet=quiet, command=command)


def _write_report(folder: OutputFolder, spec: dict[str, Any], cfg: dict[str, Any],
                  gradient_methods: Sequence[str], sections: Sequence[str], *,
                  progress: bool | None, fresh: bool, quiet: bool, command: str | None) -> Path:
    out = folder.path
    stores = out / "sweeps"
    if fresh and stores.exists():
        shutil.rmtree(stores)
    stores.mkdir(exist_ok=True)
    started = time.perf_counter()
    case = build_case(spec)
    _say(f"odenet-analysis report: {case.description}", quiet)
    _say(f"  {network_state(spec)}; {spec['dtype']}; {_n_params(case)} parameters in the block, "
         f"block input {tuple(case.y0.shape)}, writing to {out.resolve()}", quiet)
    made = _Made()
    chosen = [s for s in REPORT_SECTIONS if s.name in sections]
    context = _Context(spec, cfg, gradient_methods, stores, progress)
    for i, s in enumerate(chosen, 1):
        _say(f"[{i}/{len(chosen)}] {s.what}", quiet)
        made.run(s, context)
    keys = key_numbers(made.results)
    elapsed = time.perf_counter() - started
    meta = _meta(spec, cfg, case, elapsed, made.timings, keys, command)
    folder.commit(made.files(meta))
    index = out / "index.html"
    _say(f"done in {elapsed:.0f} s. Key numbers:", quiet)
    for k in keys:
        _say(f"  - {k}", quiet)
    _say(f"report: {index.resolve()}", quiet)
    return index


def _n_params(case: Case) -> int:
    return sum(p.numel() for p in case.params)


class _Made:
    """What the sections made: their results, times, figures (PNG) and overlapping curves."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.pngs: dict[str, bytes] = {}
        self.figures: dict[str, list[str]] = {}
        self.overlaps: dict[str, list[list[str]]] = {}

    def run(self, section: ReportSection, context: _Context) -> None:
        """Run one section and draw its figures."""
        t0 = time.perf_counter()
        self.results.update(section.run(context))
        self.timings[section.name] = time.perf_counter() - t0
        for name, fig in section.figures(self.results):
            self.overlaps.setdefault(section.name, []).extend(finish_figure(fig))
            self.pngs[name] = figure_bytes(fig)
            self.figures.setdefault(section.name, []).append(name)

    def page(self, meta: Mapping[str, Any]) -> str:
        """``index.html``: every section's HTML, in the table's order."""
        parts = [s.html(self.results, self.figures.get(s.name, []),
                        self.overlaps.get(s.name, [])) for s in REPORT_SECTIONS]
        return H.page(meta, self.results, [p for p in parts if p])

    def files(self, meta: dict[str, Any]) -> dict[str, str | bytes]:
        """The report's files: the figures, ``results.json`` and ``index.html``."""
        data: dict[str, Any] = {"meta": meta}
        for name, value in self.results.items():
            if isinstance(value, Result):
                data[name] = value.to_dict()
            elif isinstance(value, list):
                data[name] = [v.to_dict() for v in value]
        files: dict[str, str | bytes] = dict(self.pngs)
        files["results.json"] = json.dumps(jsonable(data), indent=1, allow_nan=False)
        files["index.html"] = self.page(meta)
        return files


def _meta(spec: dict[str, Any], cfg: dict[str, Any], case: Case, elapsed: float,
          timings: dict[str, float], keys: list[str], command: str | None) -> dict[str, Any]:
    """The report's ``meta`` record (the top of ``results.json`` and of the page)."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": case.description,
        "network_state": network_state(spec),
        "block_method": getattr(case.method, "name", case.method),
        "trained": bool(spec.get("weights") or spec.get("train_steps")),
        "spec": spec,
        "settings": cfg,
        "block_parameters": _n_params(case),
        "block_input_shape": list(case.y0.shape),
        "seconds": elapsed,
        "section_seconds": timings,
        "versions": {"odenet": odenet.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "key_numbers": keys,
        "command": command,
    }
