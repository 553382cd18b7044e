"""The diagnostic report: every analysis on one network, written as HTML, PNG figures and JSON."""

from __future__ import annotations

import datetime
import errno
import html
import io
import json
import math
import os
import pickle
import platform
import secrets
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import odenet
from odenet import IMEXTableau
from odenet.analysis._convergence import ConvergenceResult, convergence_order
from odenet.analysis._cost import CostResult, cost
from odenet.analysis._gradients import STRATEGIES, GradientConsistencyResult, gradient_consistency
from odenet.analysis._gradients import combine as combine_gradients
from odenet.analysis._models import Case, build_case, check_spec
from odenet.analysis._problems import BUILTIN_PROBLEMS, ODEProblem
from odenet.analysis._region import StabilityRegion, resolve_method, stability_region
from odenet.analysis._results import Result, finish_figure, jsonable, new_figure
from odenet.analysis._reversibility import ReversibilityResult, reversibility
from odenet.analysis._reversibility import combine as combine_reversibility
from odenet.analysis._stability import StabilityResult, stability
from odenet.analysis._sweep import atomic_write
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.solvers import EXPLICIT_METHODS, IMEX_METHODS, method_names

__all__ = [
    "MARKER",
    "REPORT_DEFAULTS",
    "OutputError",
    "OutputFolder",
    "check_settings",
    "check_weights",
    "claim_output",
    "figure_bytes",
    "output_path",
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
    if key in STRATEGIES:
        return None
    return (f"unknown strategy {name!r}; valid strategies are {', '.join(STRATEGIES)}, or "
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


def _zoom_box(z: np.ndarray, overview: Sequence[float]) -> tuple[float, float, float, float] | None:
    """A square box around the points ``z`` and the imaginary axis, or ``None`` when the points
    already fill the ``overview`` box ``(x0, x1, y0, y1)``."""
    z = np.asarray(z, dtype=complex).ravel()
    z = z[np.isfinite(z)]
    if not z.size:
        return None
    x0, x1 = min(float(z.real.min()), 0.0), max(float(z.real.max()), 0.0)
    y0, y1 = float(z.imag.min()), float(z.imag.max())
    width = float(overview[1] - overview[0])
    span = max(x1 - x0, y1 - y0, 0.02 * width)
    half = 0.5 * 1.3 * span
    if 2 * half > 0.4 * width:
        return None
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    return cx - half, cx + half, cy - half, cy + half


def _draw_regions(ax, regions: Sequence[StabilityRegion], z: np.ndarray,
                  box: Sequence[float], *, ms: float, label: bool) -> None:
    x0, x1, y0, y1 = box
    X, Y = np.meshgrid(np.linspace(x0, x1, 401), np.linspace(y0, y1, 401))
    for i, r in enumerate(regions):
        ax.contour(X, Y, r.abs_R(X + 1j * Y), levels=[1], colors=[f"C{i}"], linewidths=1.5)
        if label:
            ax.plot([], [], color=f"C{i}", label=f"{r.label} (real limit {r.real_axis_limit:.3g})")
    ax.plot(z.real, z.imag, "o", color="k", ms=ms, mew=0, alpha=0.5,
            label="h·λ of the block" if label else None)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")


def plot_regions(regions: Sequence[StabilityRegion], spectra: np.ndarray, title: str):
    """The boundaries of several regions with the points ``spectra`` (h·λ).

    Left: the whole regions; right (when the spectrum is small against them):
    a zoom on the spectrum, marked by a rectangle on the left.

    Examples
    --------
    >>> import numpy as np
    >>> from odenet.analysis._region import stability_region
    >>> from odenet.analysis._report import plot_regions
    >>> fig = plot_regions([stability_region("rk4")], np.array([-0.2, -0.01 + 0.02j]), "demo")
    >>> len(fig.axes)
    2
    """
    from matplotlib.patches import Rectangle

    z = np.asarray(spectra, dtype=complex).ravel()
    box = np.array([r.extent(z) for r in regions])
    full = (box[:, 0].min(), box[:, 1].max(), box[:, 2].min(), box[:, 3].max())
    zoom = _zoom_box(z, full)
    fig, axes = new_figure(1, 2 if zoom else 1, width=5.4, height=5.6)
    _draw_regions(axes[0], regions, z, full, ms=3, label=True)
    axes[0].set_title("the regions" if zoom else title, fontsize=10)
    if zoom:
        axes[0].add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2],
                                    fill=False, ec="k", lw=1.0, ls="--"))
        _draw_regions(axes[1], regions, z, zoom, ms=5, label=False)
        axes[1].set_title("zoom on the spectrum (dashed box on the left)", fontsize=10)
        fig.suptitle(title, fontsize=11)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 3),
               fontsize=9)
    return fig


def _zoom_stability_figure(fig, st: StabilityResult) -> None:
    """Zoom the left panel of ``StabilityResult.plot()`` on the spectrum; the whole region
    goes into an inset."""
    from matplotlib.patches import Rectangle

    ax = fig.axes[0]
    z = st.hlambda_all()
    full = (*ax.get_xlim(), *ax.get_ylim())
    zoom = _zoom_box(z, full)
    for line in ax.get_lines():  # the eigenvalues: small, translucent markers
        if len(np.atleast_1d(line.get_xdata())) > 2 and line.get_marker() not in ("None", ""):
            line.set(markersize=4, alpha=0.5, markeredgewidth=0)
    if zoom is None:
        return
    reg = st.region()
    X, Y = np.meshgrid(np.linspace(zoom[0], zoom[1], 301), np.linspace(zoom[2], zoom[3], 301))
    ax.contour(X, Y, reg.abs_R(X + 1j * Y), levels=[1], colors=["C0"], linewidths=1.6)
    ax.set_xlim(zoom[0], zoom[1])
    ax.set_ylim(zoom[2], zoom[3])
    ax.set_title(f"{st.method}: h·λ at h = {st.step_size:.3g} (zoom; inset: the whole region)",
                 fontsize=10)
    ins = ax.inset_axes([0.6, 0.6, 0.38, 0.38])
    Xf, Yf = np.meshgrid(np.linspace(full[0], full[1], 201), np.linspace(full[2], full[3], 201))
    A = reg.abs_R(Xf + 1j * Yf)
    ins.contourf(Xf, Yf, A, levels=[0, 1], colors=["C0"], alpha=0.25)
    ins.contour(Xf, Yf, A, levels=[1], colors=["C0"], linewidths=1.0)
    ins.plot(z.real, z.imag, "o", color="k", ms=2, mew=0, alpha=0.5)
    ins.add_patch(Rectangle((zoom[0], zoom[2]), zoom[1] - zoom[0], zoom[3] - zoom[2],
                            fill=False, ec="k", lw=0.8, ls="--"))
    ins.set_xlim(full[0], full[1])
    ins.set_ylim(full[2], full[3])
    ins.set_aspect("equal")
    ins.tick_params(labelsize=7)


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


def plot_orders(results: Sequence[ConvergenceResult]):
    """One panel per problem."""
    n = len(results)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = new_figure(rows, cols, width=5.6, height=6.0)
    for ax, r in zip(axes, results):
        r.plot(ax)
        ax.set_title(f"{r.problem} (T = {r.T:g})", fontsize=10)
        ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2,
                  frameon=False)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def _distinct_regions(names: Sequence[str]) -> list[str]:
    """The first of each group of explicit methods that share one stability polynomial
    ``R(z) = 1 + Σ_k b·A^(k-1)·1 z^k`` (heun and midpoint, rk4 and rk4_38 draw one region)."""
    seen, out = set(), []
    for n in names:
        tab = odenet.METHODS[n]
        a, b = np.asarray(tab.a, dtype=float), np.asarray(tab.b, dtype=float)
        v, coeffs = np.ones(len(b)), []
        for _ in range(len(b)):
            coeffs.append(round(float(b @ v), 12))
            v = a @ v
        key = tuple(coeffs)
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


# -- HTML ------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .82rem; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th { background: #f3f3f5; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5rem 0; }
.key { background: #f7f9fc; border: 1px solid #dbe4f0; padding: .6rem 1rem; border-radius: 6px; }
.meta { color: #666; font-size: .85rem; } details { margin: .4rem 0; }
.settings { background: #fbf8ef; border: 1px solid #eadfbf; padding: .5rem 1rem;
            border-radius: 6px; font-size: .9rem; }
code { background: #f3f3f5; padding: 0 .2rem; border-radius: 3px; }
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.2e}"
    if isinstance(v, complex):
        return f"{_fmt(v.real)} {'+' if v.imag >= 0 else '−'} {_fmt(abs(v.imag))}i"
    return html.escape(str(v))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(r.get(c) not in (None, "") for r in rows)] or list(columns)
    head = "".join(f'<th class="{"l" if i == 0 else ""}">{html.escape(c)}</th>'
                   for i, c in enumerate(cols))
    body = []
    for r in rows:
        cells = "".join(
            f'<td class="{"l" if isinstance(r.get(c), str) else ""}">{_fmt(r.get(c))}</td>'
            for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(title: str, intro: str, figures: Sequence[str], tables: Sequence[str],
             notes: Sequence[str] = ()) -> str:
    parts = [f"<h2>{html.escape(title)}</h2>", f"<p>{intro}</p>"]
    parts += [f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figures]
    parts += [f"<p class='meta'>{html.escape(n)}</p>" for n in notes]
    if tables:
        rows = sum(t.count("<tr>") - 1 for t in tables)
        attr = " open" if rows <= 30 else ""
        parts.append(f"<details{attr}><summary>table ({rows} rows)</summary>"
                     + "".join(tables) + "</details>")
    return "\n".join(parts)


# -- key numbers -----------------------------------------------------------------------------------
def key_numbers(results: Mapping[str, Any]) -> list[str]:
    """The report's headline findings, as sentences (also printed by the command)."""
    out: list[str] = []
    g = results.get("gradients")
    if isinstance(g, GradientConsistencyResult):
        labels = list(dict.fromkeys(r["label"] for r in g.rows))
        steps = sorted({r["steps"] for r in g.rows})
        same = _adjoint_note(g) is not None
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
    rv = results.get("reversibility")
    if isinstance(rv, ReversibilityResult):
        parts = []
        for lab in dict.fromkeys(r["label"] for r in rv.rows):
            rows = [r for r in rv.rows if r["label"] == lab]
            m = rows[-1]["method"]
            e = {r["steps"]: r["error"] for r in rows if r["method"] == m}
            lo, hi = min(e), max(e)
            parts.append(f"{lab}: {e[lo]:.2e} (Nt = {lo}) → {e[hi]:.2e} (Nt = {hi})")
        out.append(f"reverse-time reconstruction of y0 with {m}: " + "; ".join(parts))
    st = results.get("stability")
    if isinstance(st, StabilityResult):
        line = (f"stability of {st.method} at h = {st.step_size:.3g}: spectral radius "
                f"{st.spectral_radius:.3g}, max Re λ {st.max_real:.2e}; all hλ in the region: "
                f"{'yes' if st.stable else 'NO'}; largest stable step {st.max_step:.3g}")
        if st.flow_amplification is not None:
            line += f"; flow-map amplification {st.flow_amplification:.3g}"
        out.append(line)
    orders = results.get("order")
    if orders:
        for r in orders:
            if r.problem in ("model", "vanderpol"):
                out.append(f"observed orders on {r.problem}: " + ", ".join(
                    f"{m} {p:.2f}" for m, p in r.observed.items()))
    c = results.get("cost")
    if isinstance(c, CostResult):
        parts = [f"{r['strategy']} time ×{r['time_ratio']:.2f} ({r['time_ratio_min']:.2f}–"
                 f"{r['time_ratio_max']:.2f}) memory ×{r['memory_ratio']:.2f}"
                 for r in c.rows[1:] if r.get("time_ratio") is not None
                 and r.get("memory_ratio") is not None]
        if parts:
            out.append(f"cost vs backprop ({c.method}, Nt = {c.steps}, {c.blocks} blocks, "
                       f"{c.dtype}; time: median and min–max over {c.repeats} interleaved "
                       "rounds): " + "; ".join(parts))
    return out


# -- the report ------------------------------------------------------------------------------------
_SECTIONS = ("gradients", "reversibility", "stability", "order", "cost")


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


def report(
    output: str | os.PathLike = "odenet-report",
    spec: Mapping[str, Any] | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    sections: Sequence[str] = _SECTIONS,
    progress: bool | None = None,
    fresh: bool = False,
    force: bool = False,
    quiet: bool = False,
    command: str | None = None,
) -> Path:
    """Run every analysis on one network and write ``index.html``, PNG figures and ``results.json``.

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
    output : str or path-like
        The report folder (created).
    spec : dict, optional
        The model specification (:data:`odenet.analysis._models.DEFAULT_SPEC` keys).
    settings : dict, optional
        Sweep settings overriding :data:`REPORT_DEFAULTS`.
    sections : sequence of str
        Which analyses to run.
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
    """
    out_path = output_path(output)
    sections = _check_sections(sections)
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
    n_params = sum(p.numel() for p in case.params)
    _say(f"odenet-analysis report: {case.description}", quiet)
    _say(f"  {network_state(spec)}; {spec['dtype']}; {n_params} parameters in the block, block "
         f"input {tuple(case.y0.shape)}, writing to {out.resolve()}", quiet)
    results: dict[str, Any] = {}
    pngs: dict[str, bytes] = {}
    figures: dict[str, list[str]] = {}
    overlaps: dict[str, list[list[str]]] = {}
    timings: dict[str, float] = {}
    steps_total = len(sections)

    def step(i: int, name: str, what: str, fn: Callable[[], Any]) -> None:
        _say(f"[{i}/{steps_total}] {what}", quiet)
        t0 = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - t0

    def figure(section: str, fig, name: str) -> None:
        overlaps.setdefault(section, []).extend(finish_figure(fig))
        pngs[name] = figure_bytes(fig)
        figures.setdefault(section, []).append(name)

    i = 0
    if "gradients" in sections:
        i += 1
        step(i, "gradients", "gradient consistency (strategies vs backprop and finite differences)",
             lambda: run_gradients(spec, cfg["activations"], gradient_methods,
                                   cfg["gradient_steps"], cfg["strategies"],
                                   fd_directions=cfg["fd_directions"], stores=stores,
                                   progress=progress))
        figure("gradients", results["gradients"].plot(), "gradients.png")
    if "reversibility" in sections:
        i += 1
        step(i, "reversibility", "reverse-time reconstruction",
             lambda: run_reversibility(spec, cfg["activations"], cfg["reversibility_methods"],
                                       cfg["reversibility_steps"], stores=stores,
                                       progress=progress))
        figure("reversibility", results["reversibility"].plot(), "reversibility.png")
    if "stability" in sections:
        i += 1

        def stab() -> StabilityResult:
            res, regions = run_stability(spec, k=cfg["stability_k"])
            results["regions"] = regions
            return res

        step(i, "stability", "spectrum of the block's Jacobian and stability regions", stab)
        st = results["stability"]
        fig = st.plot()
        _zoom_stability_figure(fig, st)
        figure("stability", fig, "stability.png")
        figure("stability", plot_regions(results["regions"], st.hlambda_all(),
                                         f"stability regions and h·λ at h = {st.step_size:.3g}"),
               "regions.png")
    if "order" in sections:
        i += 1
        step(i, "order", "observed convergence orders",
             lambda: run_order(spec, cfg["order_methods"], cfg["order_problems"],
                               cfg["order_steps"], stores=stores, progress=progress))
        if results["order"]:
            figure("order", plot_orders(results["order"]), "order.png")
    if "cost" in sections:
        i += 1
        step(i, "cost", "memory (a fresh process per strategy) and time (interleaved rounds) "
                        "per strategy",
             lambda: run_cost(spec, cfg["cost_strategies"], method=cfg["cost_method"],
                              steps=cfg["cost_steps"], batch=cfg["cost_batch"],
                              blocks=cfg["cost_blocks"],
                              repeats=cfg["cost_repeats"], stores=stores, progress=progress))
        figure("cost", results["cost"].plot(), "cost.png")

    keys = key_numbers(results)
    elapsed = time.perf_counter() - started
    meta = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": case.description,
        "network_state": network_state(spec),
        "block_method": getattr(case.method, "name", case.method),
        "trained": bool(spec.get("weights") or spec.get("train_steps")),
        "spec": spec,
        "settings": cfg,
        "block_parameters": n_params,
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
    data: dict[str, Any] = {"meta": meta}
    for name, value in results.items():
        if isinstance(value, Result):
            data[name] = value.to_dict()
        elif isinstance(value, list):
            data[name] = [v.to_dict() for v in value]
    files: dict[str, str | bytes] = dict(pngs)
    files["results.json"] = json.dumps(jsonable(data), indent=1, allow_nan=False)
    files["index.html"] = _html(meta, results, figures, overlaps)
    folder.commit(files)
    index = out / "index.html"
    _say(f"done in {elapsed:.0f} s. Key numbers:", quiet)
    for k in keys:
        _say(f"  - {k}", quiet)
    _say(f"report: {index.resolve()}", quiet)
    return index


def _settings_html(meta: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    s = meta["spec"]
    items = [
        f"<b>network</b>: {html.escape(meta['network_state'])}",
        f"<b>dtype</b> {html.escape(s['dtype'])} (every section, cost included)",
        f"<b>block</b>: {html.escape(str(meta.get('block_method') or s['method']))}, "
        f"{s['steps']} steps on [0, {s['T']:g}]",
        f"<b>seed</b> {s['seed']}",
        f"<b>batch</b> {s['batch']}",
        f"<b>device</b> {html.escape(str(s['device']))}",
    ]
    c = results.get("cost")
    if isinstance(c, CostResult):
        items.append(f"<b>cost</b>: {c.blocks} block(s), {html.escape(c.method)}, Nt = "
                     f"{c.steps}, input {tuple(c.state_shape)}, {c.repeats} timed round(s)")
    return "<p class='settings'>" + " · ".join(items) + "</p>"


def _adjoint_note(g: GradientConsistencyResult) -> str | None:
    """A note when odenet's and torchdiffeq's adjoints give the same errors (curves coincide)."""
    a = {(r["label"], r["method"], r["steps"]): r for r in g.rows if r["strategy"] == "adjoint"}
    b = {(r["label"], r["method"], r["steps"]): r for r in g.rows
         if r["strategy"] == "torchdiffeq-adjoint"}
    both = [(a[k], b[k]) for k in a if k in b]
    if not both:
        return None
    worst = 0.0
    for ra, rb in both:
        for key in ("grad_error", "y0_error"):
            x, y = ra.get(key), rb.get(key)
            if x is None or y is None:
                continue
            worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-300))
    if worst > 1e-3:
        return None
    return (f"odenet's adjoint and torchdiffeq's odeint_adjoint solve the same continuous "
            f"adjoint with the same steps: their errors agree to {worst:.0e} (relative) in all "
            f"{len(both)} cases, so their curves coincide. In the figure the adjoint is the "
            "wide band with the large hollow markers, torchdiffeq-adjoint the thin line on top.")


def _stability_notes(st: StabilityResult) -> list[str]:
    """The stability notes, with ARPACK's convergence flag only where it matters."""
    out = []
    err = st.summary.get("arpack_error")
    for n in st.notes():
        if n.startswith("ARPACK did not converge"):
            if err is not None and err < 1e-8:
                continue  # the dense spectrum is used and ARPACK's values agree with it
            n = ("ARPACK did not converge for every requested eigenvalue and no dense spectrum "
                 "cross-checks it: the eigenvalues shown may be incomplete, and the largest "
                 "stable step may be too optimistic" if err is None else
                 f"ARPACK did not converge for every requested eigenvalue; its values differ "
                 f"from the dense spectrum by up to {err:.1e} (relative); h·λ and the step "
                 "limit use the dense spectrum")
        elif n.startswith("ARPACK vs dense"):
            n += (" (ARPACK's extreme eigenvalues against the dense spectrum; h·λ and the step "
                  "limit use the dense spectrum)")
        out.append(n)
    return out


def _html(meta: Mapping[str, Any], results: Mapping[str, Any], figures: Mapping[str, list],
          overlaps: Mapping[str, list[list[str]]] | None = None) -> str:
    overlaps = overlaps or {}
    body = [
        "<h1>odenet diagnostic report</h1>",
        f"<p class='meta'>{html.escape(meta['model'])}<br>{meta['block_parameters']} parameters "
        f"in the block; block input {tuple(meta['block_input_shape'])}; created "
        f"{meta['created']} in {meta['seconds']:.0f} s; odenet {meta['versions']['odenet']}, "
        f"torch {meta['versions']['torch']}, {meta['threads']} thread(s).</p>",
        _settings_html(meta, results),
    ]
    if meta["key_numbers"]:
        body.append("<div class='key'><b>Key numbers</b><ul>"
                    + "".join(f"<li>{html.escape(k)}</li>" for k in meta["key_numbers"])
                    + "</ul></div>")

    def coincide(section: str) -> list[str]:
        groups = []
        for group in overlaps.get(section, []):
            names = list(dict.fromkeys(n.split(":")[0] for n in group))
            if len(names) > 1:
                groups.append(" and ".join(names))
        if not groups:
            return []
        return ["Curves that coincide in the figure (each drawn as a pale wide band under a thin "
                "line, with nested hollow markers): " + "; ".join(dict.fromkeys(groups)) + "."]

    g = results.get("gradients")
    if g is not None:
        note = _adjoint_note(g)
        notes = [*([note] if note else []), *g.notes()]
        body.append(_section(
            "Gradient consistency",
            "Relative error of ∂L/∂θ and ∂L/∂y₀ (L: the network's classification loss on the "
            "block output) of each strategy against backprop, the exact gradient of the discrete "
            "network; <code>fd_error</code> compares directional derivatives with central finite "
            "differences. Discretize-then-optimize strategies (ANODE, Revolve) must agree to "
            "round-off; the optimize-then-discretize adjoint (odenet's <code>adjoint</code>, "
            "torchdiffeq's <code>odeint_adjoint</code>) is only O(hᵖ)-close, and less for "
            "non-smooth activations. Finite differences check smooth activations to about "
            "1e-7; where ReLU pre-activations sit exactly at the kink (zero background pixels "
            "with zero bias), central differences average the two one-sided derivatives and "
            "deviate from every gradient, backprop included.",
            figures.get("gradients", []),
            [_table(g.rows, g.columns)], notes))
    rv = results.get("reversibility")
    if rv is not None:
        body.append(_section(
            "Reverse-time reconstruction",
            "The block is solved forward over [0, T], then backward from y(T) with the same "
            "method and steps, as the continuous adjoint does; the relative error of the "
            "reconstructed y₀ (∞: the backward solve blew up).",
            figures.get("reversibility", []), [_table(rv.rows, rv.columns)],
            coincide("reversibility")))
    st = results.get("stability")
    if st is not None:
        body.append(_section(
            "Stability",
            "Eigenvalues λ of the block's Jacobian at the first sample's block input (ARPACK "
            "extreme eigenvalues, matrix-free, and the dense spectrum as a cross-check), h·λ "
            "against the exact stability region of the method, the largest stable step along "
            "the spectrum, and the amplification of input perturbations by the whole solve. "
            "Where the spectrum is small against the region, the pictures zoom on it (the "
            "whole region in an inset, and on the left of the second figure).",
            figures.get("stability", []), [_table(st.rows, st.columns)], _stability_notes(st)))
    orders = results.get("order")
    if orders:
        rows = [{"problem": r.problem, "method": m, "observed": p, "declared": r.declared[m]}
                for r in orders for m, p in r.observed.items()]
        body.append(_section(
            "Observed order of convergence",
            "Relative error at T against an exact solution or scipy's DOP853 at tolerance "
            "1e-13, fitted by least squares in log-log; <code>model</code> is the network's "
            "own block (float64). Non-smooth activations (ReLU) can lower the observed order.",
            figures.get("order", []),
            [_table(rows, ["problem", "method", "observed", "declared"])],
            coincide("order")))
    c = results.get("cost")
    if c is not None:
        body.append(_section(
            "Cost",
            f"Peak memory and forward+backward time of each strategy on the network with "
            f"{c.blocks} ODE block(s) ({html.escape(c.method)}, Nt = {c.steps} per block, input "
            f"{tuple(c.state_shape)}, {html.escape(c.dtype)}), as ratios to backprop; every row "
            "comes from this run (an interrupted cost measurement is repeated whole). Memory: "
            "the peak of each strategy, each in a fresh process. Time: all strategies in one "
            f"process, in {c.repeats} interleaved round(s) (each round runs every strategy once, "
            "in a rotated order); the ratio is the median over the rounds of that round's ratio "
            "to backprop, with its min–max range. Every block uses the strategy; ANODE keeps "
            "each block's input and recomputes one block at a time in backward (memory O(L) + "
            "O(Nt) instead of O(L·Nt) over L blocks); Revolve and the adjoints trade "
            "recomputation for memory within each block.",
            figures.get("cost", []), [_table(c.rows, c.columns)], c.skipped))
    made = (f" Generated by <code>{html.escape(meta['command'])}</code>."
            if meta.get("command") else "")
    body.append(f"<p class='meta'>Raw data: <a href='results.json'>results.json</a>.{made}</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<title>odenet diagnostic report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
