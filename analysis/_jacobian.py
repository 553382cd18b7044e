"""Matrix-free Jacobians: Jacobian–vector products behind a scipy ``LinearOperator``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from scipy.sparse.linalg import LinearOperator
from torch import Tensor

from odenet.errors import FunctionOutputError

__all__ = ["JacobianOperator"]


class JacobianOperator:
    """The Jacobian of ``fn`` at ``x`` as products ``J v`` (forward mode) and ``J^T u`` (reverse).

    Forward-mode products use dual tensors (:mod:`torch.autograd.forward_ad`);
    if an operation of ``fn`` has no forward-mode rule they fall back to the
    double-backward identity ``J v = d/du <J^T u, v>``. Reverse products reuse
    one recorded graph of ``fn(x)``. Vectors cross to scipy as float64 arrays.

    Parameters
    ----------
    fn : callable
        ``fn(x) -> Tensor``.
    x : Tensor
        The point of linearisation.
    name : str, default "fn"
        How errors name ``fn`` (e.g. ``"func"``): a non-Tensor output, or a non-finite
        output or Jacobian product, raises :class:`~odenet.errors.FunctionOutputError`
        instead of feeding NaN to scipy.

    Examples
    --------
    >>> import torch
    >>> from odenet.analysis._jacobian import JacobianOperator
    >>> A = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    >>> J = JacobianOperator(lambda x: A @ x, torch.zeros(2, dtype=torch.float64))
    >>> J.matvec(torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()
    [1.0, 3.0]
    >>> J.rmatvec(torch.tensor([1.0, 0.0], dtype=torch.float64)).tolist()
    [1.0, 2.0]
    >>> J.dense().tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, name: str = "fn"):
        self.fn = fn
        self.name = name
        self.x = x.detach()
        self._graph: tuple[Tensor, Tensor] | None = None
        self._forward_ok = True
        self.calls = 0

    @property
    def n(self) -> int:
        """Input size."""
        return self.x.numel()

    def _recorded(self) -> tuple[Tensor, Tensor]:
        if self._graph is None:
            with torch.enable_grad():
                x = self.x.clone().requires_grad_(True)
                out = self.fn(x)
            if not isinstance(out, Tensor):
                raise FunctionOutputError(
                    f"{self.name}: expected a Tensor, got {type(out).__name__}"
                )
            if not bool(torch.isfinite(out.detach()).all()):
                raise FunctionOutputError(
                    f"{self.name}: returned non-finite values (NaN or inf) at the point of "
                    "linearisation; its Jacobian there is undefined"
                )
            self._graph = (x, out)
        return self._graph

    def rmatvec(self, u: Tensor) -> Tensor:
        """``J^T u``."""
        x, out = self._recorded()
        self.calls += 1
        u = u.reshape(out.shape).to(out.dtype)
        if not out.requires_grad:  # fn does not depend on x
            return torch.zeros_like(x)
        (g,) = torch.autograd.grad(out, x, u, retain_graph=True, allow_unused=True)
        return torch.zeros_like(x) if g is None else self._finite(g)

    def matvec(self, v: Tensor) -> Tensor:
        """``J v``."""
        v = v.reshape(self.x.shape).to(self.x.dtype)
        self.calls += 1
        if self._forward_ok:
            try:
                with fwAD.dual_level():
                    out = self.fn(fwAD.make_dual(self.x, v))
                    tangent = fwAD.unpack_dual(out).tangent
                    tangent = None if tangent is None else tangent.detach().clone()
            except (RuntimeError, NotImplementedError):
                self._forward_ok = False
            else:
                return torch.zeros_like(out) if tangent is None else self._finite(tangent)
        x, out = self._recorded()
        if not out.requires_grad:
            return torch.zeros_like(out)
        with torch.enable_grad():
            u = torch.zeros_like(out, requires_grad=True)
            (g,) = torch.autograd.grad(out, x, u, create_graph=True, retain_graph=True)
            (jv,) = torch.autograd.grad(g, u, v, retain_graph=True)
        return self._finite(jv.detach())

    def _finite(self, product: Tensor) -> Tensor:
        if not bool(torch.isfinite(product).all()):
            raise FunctionOutputError(
                f"{self.name}: its Jacobian at the point of linearisation is not finite (a "
                "Jacobian-vector product has NaN or inf entries)"
            )
        return product

    def linear_operator(self, *, normal: bool = False) -> LinearOperator:
        """A float64 :class:`scipy.sparse.linalg.LinearOperator` of ``J`` (of ``J^T J``
        if ``normal``)."""
        n = self.n
        dev = self.x.device

        def mv(v: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(v).ravel(), device=dev)
            out = self.matvec(t)
            if normal:
                out = self.rmatvec(out)
            return out.reshape(-1).double().cpu().numpy()

        def rmv(u: np.ndarray) -> np.ndarray:
            t = torch.as_tensor(np.ascontiguousarray(u).ravel(), device=dev)
            if normal:
                return mv(u)
            return self.rmatvec(t).reshape(-1).double().cpu().numpy()

        return LinearOperator((n, n), matvec=mv, rmatvec=rmv, dtype=np.float64)

    def dense(self) -> np.ndarray:
        """The Jacobian as a dense float64 matrix (rows by reverse mode, batched when possible)."""
        x, out = self._recorded()
        m, n = out.numel(), self.n
        if not out.requires_grad:
            return np.zeros((m, n))
        eye = torch.eye(m, dtype=out.dtype, device=out.device).reshape(m, *out.shape)
        try:
            (jac,) = torch.autograd.grad(out, x, eye, retain_graph=True, is_grads_batched=True)
        except (RuntimeError, NotImplementedError):
            jac = torch.stack([self.rmatvec(eye[i]) for i in range(m)])
        return self._finite(jac).reshape(m, n).double().cpu().numpy()
