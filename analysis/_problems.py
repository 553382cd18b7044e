"""Test problems with exact or high-accuracy reference solutions."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.integrate
import scipy.linalg
import torch
from torch import Tensor

from odenet.analysis._common import check_positive, check_str, check_tensor
from odenet.errors import ArgumentError, ArgumentTypeError, FunctionOutputError
from odenet.solvers._problem import _check_output

__all__ = ["BUILTIN_PROBLEMS", "MatrixOperator", "ODEProblem", "builtin_problem"]


class MatrixOperator:
    """A symmetric positive semi-definite matrix as an implicit operator ``L`` for IMEX methods.

    Acts on the flattened state: ``L(y) = (M @ y.reshape(-1)).reshape(y.shape)``
    and ``L.solve(r, gamma) = (I + gamma M)^{-1} r``.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._problems import MatrixOperator
    >>> L = MatrixOperator(torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64)))
    >>> L.solve(torch.tensor([2.0, 4.0], dtype=torch.float64), 1.0).tolist()
    [1.0, 1.0]
    """

    def __init__(self, matrix: Tensor):
        matrix = check_tensor(matrix, "matrix")
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ArgumentError(
                f"matrix: expected a square matrix, got shape {tuple(matrix.shape)}"
            )
        self.matrix = matrix

    def __call__(self, y: Tensor) -> Tensor:
        return (self.matrix.to(y) @ y.reshape(-1)).reshape(y.shape)

    def solve(self, r: Tensor, gamma: float) -> Tensor:
        M = self.matrix.to(r)
        A = torch.eye(M.shape[0], dtype=r.dtype, device=r.device) + gamma * M
        return torch.linalg.solve(A, r.reshape(-1)).reshape(r.shape)

    def to_numpy(self) -> np.ndarray:
        return self.matrix.detach().double().cpu().numpy()


class ODEProblem:
    r"""An initial value problem ``y' = func(t, y) - L y`` on ``[0, T]`` with a reference solution.

    Parameters
    ----------
    func : callable
        ``func(t, y)`` on float64 tensors (the explicit part).
    y0 : Tensor
        Initial state (float64).
    T : float
        Final time.
    exact : callable, optional
        ``exact(T) -> Tensor`` of ``y0``'s shape; otherwise the reference comes from scipy's
        ``solve_ivp`` with DOP853 at ``rtol = atol = 1e-13``.
    implicit : MatrixOperator or linear operator, optional
        ``L`` (``L(y)`` and ``L.solve(r, gamma)``); explicit methods integrate ``func - L``
        as one right-hand side.
    name : str
    description : str

    Raises
    ------
    odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
        A bad argument, named in the message.
    odenet.errors.FunctionOutputError
        From :meth:`reference`: ``exact`` (or ``func``) returns something other than a finite
        tensor of ``y0``'s shape.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._problems import ODEProblem
    >>> p = ODEProblem(lambda t, y: -y, torch.ones(1, dtype=torch.float64), 1.0, name="decay")
    >>> round(p.reference().item(), 10)   # DOP853 reference
    0.3678794412
    """

    def __init__(
        self,
        func: Callable,
        y0: Tensor,
        T: float,
        *,
        exact: Callable[[float], Tensor] | None = None,
        implicit=None,
        name: str = "custom",
        description: str = "",
    ):
        if not callable(func):
            raise ArgumentTypeError(f"func: expected a callable, got {type(func).__name__}")
        y0 = check_tensor(y0, "y0")
        T = check_positive(T, "T")
        if exact is not None and not callable(exact):
            raise ArgumentTypeError(
                f"exact: expected a callable exact(T) -> Tensor or None, got {type(exact).__name__}"
            )
        if implicit is not None and not (
            callable(implicit) and callable(getattr(implicit, "solve", None))
        ):
            raise ArgumentTypeError(
                "implicit: expected a linear operator with L(y) and L.solve(r, gamma) (e.g. "
                f"MatrixOperator or odenet.linear.ConvFFT), got {type(implicit).__name__}"
            )
        if isinstance(implicit, MatrixOperator) and implicit.matrix.shape[0] != y0.numel():
            raise ArgumentError(
                f"implicit: a {tuple(implicit.matrix.shape)} matrix does not act on y0 of "
                f"{y0.numel()} entries"
            )
        name = check_str(name, "name")
        description = check_str(description, "description")
        self.func = func
        self.y0 = y0
        self.T = float(T)
        self.exact = exact
        self.implicit = implicit
        self.name = name
        self.description = description
        self._reference: Tensor | None = None

    def full_func(self) -> Callable:
        """``func - L`` as a single right-hand side (for explicit methods)."""
        if self.implicit is None:
            return self.func
        f, L = self.func, self.implicit
        return lambda t, y: f(t, y) - L(y)

    def reference(self) -> Tensor:
        """The solution at ``T``: exact, or DOP853 at ``rtol = atol = 1e-13`` (cached)."""
        if self._reference is None:
            if self.exact is not None:
                ref = self.exact(self.T)
                if not isinstance(ref, Tensor):
                    raise FunctionOutputError(
                        f"exact: expected a Tensor (the solution at T), got {type(ref).__name__}"
                    )
                if ref.shape != self.y0.shape:
                    raise FunctionOutputError(
                        f"exact: returned shape {tuple(ref.shape)}, expected y0's shape "
                        f"{tuple(self.y0.shape)}"
                    )
                if ref.is_complex() or not bool(torch.isfinite(ref).all()):
                    raise FunctionOutputError(
                        "exact: expected finite real values (the solution at T)"
                    )
                self._reference = ref.detach().to(self.y0)
            else:
                f = self.full_func()
                shape = self.y0.shape
                y64 = self.y0.detach().double().cpu()
                with torch.no_grad():
                    _check_output(f(torch.tensor(0.0, dtype=torch.float64), y64), y64, False)

                def rhs(t: float, y: np.ndarray) -> np.ndarray:
                    yt = torch.as_tensor(y, dtype=torch.float64).reshape(shape)
                    with torch.no_grad():
                        out = f(torch.tensor(t, dtype=torch.float64), yt)
                    return out.reshape(-1).numpy()

                y0 = self.y0.detach().double().cpu().reshape(-1).numpy()
                sol = scipy.integrate.solve_ivp(
                    rhs, (0.0, self.T), y0, method="DOP853", rtol=1e-13, atol=1e-13
                )
                if not sol.success or not np.all(np.isfinite(sol.y[:, -1])):
                    raise FunctionOutputError(
                        f"func: the reference solve of {self.name!r} failed ({sol.message}); "
                        "give exact=, a shorter T, or a problem whose solution stays finite"
                    )
                self._reference = torch.as_tensor(sol.y[:, -1]).reshape(shape).to(self.y0)
        return self._reference

    def __repr__(self) -> str:
        imp = ", implicit part" if self.implicit is not None else ""
        return f"ODEProblem({self.name!r}, size {self.y0.numel()}, T={self.T:g}{imp})"


def _linear() -> ODEProblem:
    A = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)
    M = torch.tensor([[0.5, 0.1], [0.1, 0.3]], dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    B = (A - M).numpy()

    def exact(T: float) -> Tensor:
        return torch.as_tensor(scipy.linalg.expm(B * T) @ y0.numpy())

    return ODEProblem(
        lambda t, y: A @ y, y0, 2.0, exact=exact, implicit=MatrixOperator(M), name="linear",
        description="damped oscillator y' = (A - M) y, M symmetric positive definite; exact expm",
    )


def _vanderpol() -> ODEProblem:
    mu = 1.0

    def f(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    return ODEProblem(
        f, torch.tensor([2.0, 0.0], dtype=torch.float64), 2.0, name="vanderpol",
        description="Van der Pol, mu = 1 (non-stiff); DOP853 reference",
    )


def _lotka_volterra() -> ODEProblem:
    a, b, c, d = 1.5, 1.0, 3.0, 1.0

    def f(t, y):
        return torch.stack([a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - c * y[1]])

    return ODEProblem(
        f, torch.tensor([1.0, 1.0], dtype=torch.float64), 1.0, name="lotka_volterra",
        description="Lotka-Volterra (1.5, 1, 3, 1); DOP853 reference",
    )


def _convnet() -> ODEProblem:
    g = torch.Generator().manual_seed(1234)
    C, H = 2, 6
    W = torch.randn(C, C, 3, 3, generator=g, dtype=torch.float64) / 3.0
    b = 0.1 * torch.randn(C, generator=g, dtype=torch.float64)
    y0 = torch.randn(1, C, H, H, generator=g, dtype=torch.float64)
    n = C * H * H
    # a discrete Laplacian-like SPD matrix for the implicit part
    R = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    M = 0.5 * (R @ R.T)

    def f(t, y):
        z = torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 1, 1, 1), "circular"), W)
        return torch.tanh(z + b[:, None, None])

    return ODEProblem(
        f, y0, 1.0, implicit=MatrixOperator(M), name="convnet",
        description="y' = tanh(conv3x3(y) + b) - M y on a 2x6x6 state; DOP853 reference",
    )


#: Built-in problems by name (constructors).
BUILTIN_PROBLEMS: dict[str, Callable[[], ODEProblem]] = {
    "linear": _linear,
    "vanderpol": _vanderpol,
    "lotka_volterra": _lotka_volterra,
    "convnet": _convnet,
}


def builtin_problem(name: str) -> ODEProblem:
    """A fresh built-in test problem: ``linear``, ``vanderpol``, ``lotka_volterra`` or ``convnet``.

    Examples
    --------
    >>> from odenet.analysis._problems import builtin_problem
    >>> builtin_problem("vanderpol")
    ODEProblem('vanderpol', size 2, T=2)
    """
    if not isinstance(name, str):
        raise ArgumentTypeError(
            f"problem: expected a problem name or an analysis.ODEProblem, got {type(name).__name__}"
        )
    try:
        return BUILTIN_PROBLEMS[name]()
    except KeyError:
        raise ArgumentError(
            f"problem: unknown problem {name!r}; valid problems are "
            + ", ".join(repr(k) for k in BUILTIN_PROBLEMS)
            + " (or pass an analysis.ODEProblem)"
        ) from None
