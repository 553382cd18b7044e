"""``ConvFFT``: ``L = KᵀK`` for a depthwise convolution ``K``, applied and inverted spectrally."""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch._C import _functorch as _functorch_C

from odenet._functorch import batched, forward_mode_active
from odenet._layout import like_layout
from odenet.errors import ArgumentError, ArgumentTypeError
from odenet.linear._transforms import PeriodicTransform, ReflectTransform

__all__ = ["ConvFFT"]

_TRANSFORMS = {"periodic": PeriodicTransform, "reflect": ReflectTransform}
_MAX_SIZES = 32  # spectral data kept for at most this many image sizes
_MAX_GAMMAS = 16  # cached multipliers (1 + γS)⁻¹ per image size


class _Spec:
    """Spectral data of one operator at one image size: the symbol and cached multipliers.

    Everything here is detached from autograd; gradients with respect to the weight are
    formed in the backward passes from the weight itself.
    """

    __slots__ = ("aux", "height", "multipliers", "symbol", "transform", "width")

    def __init__(self, transform, weight: Tensor, height: int, width: int):
        self.transform = transform
        with torch.no_grad():
            self.symbol, self.aux = transform.symbol_parts(weight.detach(), height, width)
        self.height = height
        self.width = width
        self.multipliers: OrderedDict[float | None, Tensor] = OrderedDict()

    def _prepared(self, gamma: float | None) -> Tensor:
        """The symbol (``gamma is None``) or ``(1 + γS)⁻¹``, in the transform's layout, cached."""
        d = self.multipliers.get(gamma)
        if d is None:
            m = self.symbol
            if gamma is not None:
                m = torch.mul(m, gamma).add_(1.0).reciprocal_()
            d = self.transform.prepare(m)
            self.multipliers[gamma] = d
            if len(self.multipliers) > _MAX_GAMMAS:
                self.multipliers.popitem(last=False)
        return d

    def scale_(self, X: Tensor, gamma: float | Tensor) -> Tensor:
        """``X ← (1 + γS)⁻¹ X`` in place on a spectrum ``X``."""
        if isinstance(gamma, Tensor):
            return X.mul_(torch.mul(gamma.detach(), self.symbol).add_(1.0).reciprocal_())
        return self.transform.scale_(X, self._prepared(gamma))

    def solve(self, r: Tensor, gamma: float | Tensor) -> Tensor:
        tr = self.transform
        return tr.inverse(self.scale_(tr.forward(r), gamma), self.height, self.width)

    def apply(self, y: Tensor) -> Tensor:
        tr = self.transform
        return tr.inverse(tr.scale_(tr.forward(y), self._prepared(None)), self.height, self.width)

    def pair(self, G: Tensor, X: Tensor) -> Tensor:
        return self.transform.pair(G, X, self.width)

    def symbol_of(self, weight: Tensor) -> Tensor:
        return self.transform.symbol(weight, self.height, self.width)

    def symbol_jvp(self, weight: Tensor, tangent: Tensor) -> Tensor:
        """``Ṡ`` along ``tangent``: ``2 Re(conj(K̂(w)) K̂(ẇ))`` (the symbol is ``|K̂|²``, with
        ``K̂`` linear in the weight), differentiable in both."""
        _, a = self.transform.symbol_parts(weight, self.height, self.width)
        _, b = self.transform.symbol_parts(tangent, self.height, self.width)
        return 2.0 * (a.real * b.real + a.imag * b.imag) if a.is_complex() else 2.0 * a * b

    def symbol_vjp(self, weight: Tensor, grad_symbol: Tensor, create_graph: bool) -> Tensor:
        """``(∂S/∂w)ᵀ grad_symbol``: in closed form from the cached spectral data, or (double
        backward) by autograd through a recomputed symbol, so that it is differentiable."""
        if not create_graph:
            kh, kw = weight.shape[-2:]
            gw = self.transform.symbol_vjp(
                self.aux, grad_symbol, self.height, self.width, kh, kw
            )
            return gw.to(weight.dtype)
        _, vjp_fn = torch.func.vjp(self.symbol_of, weight)  # differentiable, and under torch.func
        return vjp_fn(grad_symbol)[0]


def _sum_batch(x: Tensor) -> Tensor:
    """Sum over every dimension in front of the last three ``(C, H', W')``."""
    return x.sum(dim=tuple(range(x.ndim - 3))) if x.ndim > 3 else x


def _fold(info, in_dims, r: Tensor, weight: Tensor, gamma):
    """The vmap rule's common part: the batch dimension of ``r`` (and of a tensor ``gamma``)
    moved in front, where the transforms take it as one more leading dimension; a batched
    weight is refused (one spectrum per weight)."""
    rd, wd, gd = in_dims[:3]
    if wd is not None:
        raise ArgumentError(
            "weight: batched by torch.func.vmap; ConvFFT computes one spectrum per weight: "
            "vmap over the inputs, or loop over the weights"
        )
    n = info.batch_size
    r = r.movedim(rd, 0) if rd is not None else r.expand(n, *r.shape)
    if isinstance(gamma, Tensor) and gd is not None:
        gamma = gamma.movedim(gd, 0)
        if gamma.ndim < r.ndim:  # one γ per sample: align it with r's leading dimensions
            gamma = gamma.reshape(n, *([1] * (r.ndim - 1)))
    return r, gamma


def _spectral_apply(spec: _Spec, symbol: Tensor, y: Tensor) -> Tensor:
    """``y`` multiplied by ``symbol`` (a symbol-shaped tensor) in the spectral basis."""
    tr = spec.transform
    return tr.inverse(tr.forward(y) * symbol, spec.height, spec.width)


class _SolveFn(torch.autograd.Function):
    """``x = (I + γL)⁻¹ r``; backward is one solve with the (identical) adjoint symbol.

    For ``ℓ(x)`` with ``g = (I + γL)⁻¹ ∂ℓ/∂x``: ``∂ℓ/∂r = g``,
    ``∂ℓ/∂S_k = -γ Re(conj(ĝ_k) x̂_k)`` (weighted per spectrum, summed over the batch) and
    ``∂ℓ/∂γ = -⟨g, L x⟩``. The output ``x`` is the only activation saved. Forward mode:
    ``ẋ = (I + γL)⁻¹ (ṙ - (γ̇ S + γ Ṡ) x)`` in the spectral basis. Under
    :func:`torch.func.vmap` the batch dimension becomes one more leading dimension.
    """

    @staticmethod
    def forward(r: Tensor, weight: Tensor, gamma, spec: _Spec) -> Tensor:
        return spec.solve(r, gamma)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, weight, gamma, spec = inputs
        ctx.spec = spec
        if isinstance(gamma, Tensor):
            ctx.gamma = None
            ctx.save_for_backward(output, weight, gamma)
            ctx.save_for_forward(output, weight, gamma)
        else:
            ctx.gamma = gamma
            ctx.save_for_backward(output, weight)
            ctx.save_for_forward(output, weight)

    @staticmethod
    def backward(ctx, gx: Tensor):
        spec: _Spec = ctx.spec
        saved = ctx.saved_tensors
        x, weight = saved[0], saved[1]
        gamma = saved[2] if ctx.gamma is None else ctx.gamma
        need_r, need_w, need_gamma = ctx.needs_input_grad[:3]
        tr = spec.transform
        create_graph = torch.is_grad_enabled()
        G = None
        if create_graph:  # double backward: build the gradient from differentiable pieces
            g = _SolveFn.apply(gx, weight, gamma, spec)
            if need_w or need_gamma:
                G = tr.forward(g)
        else:
            G = spec.scale_(tr.forward(gx), gamma)
            g = tr.inverse(G, spec.height, spec.width) if need_r else None
        grad_w = grad_gamma = None
        if need_w or need_gamma:
            P = spec.pair(G, tr.forward(x))
            if need_w:
                grad_w = spec.symbol_vjp(weight, _sum_batch(P * gamma).neg_(), create_graph)
            if need_gamma:
                S = spec.symbol_of(weight) if create_graph else spec.symbol
                grad_gamma = (P * S).sum_to_size(gamma.shape).neg()
        return (g if need_r else None), grad_w, grad_gamma, None

    @staticmethod
    def jvp(ctx, dr, dw, dgamma, _spec):
        spec: _Spec = ctx.spec
        x, weight = ctx.saved_tensors[:2]
        gamma = ctx.saved_tensors[2] if ctx.gamma is None else ctx.gamma
        rhs = torch.zeros_like(x) if dr is None else dr
        dsym = None
        if dgamma is not None:
            dsym = dgamma * spec.symbol_of(weight)
        if dw is not None:
            ds = spec.symbol_jvp(weight, dw) * gamma
            dsym = ds if dsym is None else dsym + ds
        if dsym is not None:
            rhs = rhs - _spectral_apply(spec, dsym, x)
        return _SolveFn.apply(rhs, weight, gamma, spec)

    @staticmethod
    def vmap(info, in_dims, r, weight, gamma, spec):
        r, gamma = _fold(info, in_dims, r, weight, gamma)
        return _SolveFn.apply(r, weight, gamma, spec), 0


class _ApplyFn(torch.autograd.Function):
    """``L y`` spectrally; backward applies ``L`` (self-adjoint) and the symbol's vjp; forward
    mode ``L ẏ + L̇ y``."""

    @staticmethod
    def forward(y: Tensor, weight: Tensor, spec: _Spec) -> Tensor:
        return spec.apply(y)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        y, weight, spec = inputs
        ctx.spec = spec
        ctx.save_for_backward(y, weight)
        ctx.save_for_forward(y, weight)

    @staticmethod
    def backward(ctx, gx: Tensor):
        spec: _Spec = ctx.spec
        y, weight = ctx.saved_tensors
        need_y, need_w = ctx.needs_input_grad[:2]
        tr = spec.transform
        create_graph = torch.is_grad_enabled()
        gy = grad_w = None
        G = tr.forward(gx) if need_w or not create_graph else None
        if need_y:
            if create_graph:
                gy = _ApplyFn.apply(gx, weight, spec)
            else:
                gy = tr.inverse(tr.scale_(G.clone(), spec._prepared(None)), spec.height, spec.width)
        if need_w:
            P = spec.pair(G, tr.forward(y))
            grad_w = spec.symbol_vjp(weight, _sum_batch(P), create_graph)
        return gy, grad_w, None

    @staticmethod
    def jvp(ctx, dy, dw, _spec):
        spec: _Spec = ctx.spec
        y, weight = ctx.saved_tensors
        out = None if dy is None else _ApplyFn.apply(dy, weight, spec)
        if dw is not None:
            ds = spec.symbol_jvp(weight, dw)
            term = _spectral_apply(spec, ds, y)
            out = term if out is None else out + term
        return torch.zeros_like(y) if out is None else out

    @staticmethod
    def vmap(info, in_dims, y, weight, spec):
        y, _ = _fold(info, (in_dims[0], in_dims[1], None), y, weight, None)
        return _ApplyFn.apply(y, weight, spec), 0


_NOT_TRACED = (
    "ConvFFT keeps its spectra on the host and its gradients in a custom Function; measured: "
    "inductor gave wrong weight gradients for a traced spectral solve followed by a convolution"
)


class ConvFFT(nn.Module):
    r"""The implicit operator :math:`L = K^\top K` of IMEXnet, for a depthwise convolution ``K``.

    ``K`` convolves each channel of a ``(..., C, H, W)`` image with its own ``kh x kw`` kernel
    (``weight`` of shape ``(C, 1, kh, kw)``, odd sizes, "same" size output, cross-correlation
    as :func:`torch.nn.functional.conv2d`). ``L`` is symmetric positive semi-definite and
    diagonal in a spectral basis, so :meth:`solve` returns :math:`(I + \gamma L)^{-1} r` exactly
    with one forward and one inverse real transform — every pixel of a channel is coupled at
    the cost of two FFTs (Haber, Lensink, Treister & Ruthotto 2019, IMEXnet):

    * ``boundary="periodic"``: circular boundaries; basis the 2-D real FFT
      (``torch.fft.rfft2``); eigenvalues :math:`|\hat K|^2`. Any kernel.
    * ``boundary="reflect"``: reflective (Neumann) boundaries — the image is mirrored through
      its edges, ``y[-1] = y[0]``, ``y[-2] = y[1]`` (NumPy's ``mode="symmetric"``; for a 3x3
      kernel this is the same as edge replication), with no wrap-around coupling of opposite
      edges; basis the orthonormal 2-D DCT-II (computed with one real FFT per axis).
      Exact for kernels symmetric under up-down and left-right flips; other kernels are
      refused (``K`` then has no DCT eigenbasis).

    The eigenvalues (the *symbol*) are computed once per image size, dtype and device and
    reused until the weight changes (an in-place update, a new tensor, a move or cast — the
    weight's values are compared on every call, so even changes made through ``.data`` are
    seen). They are kept detached: gradients with respect to the weight are formed in the
    backward pass, so a cached symbol never carries a stale or freed graph.

    :meth:`solve` is a custom autograd function whose backward is one solve with the adjoint
    symbol; it is differentiable in ``r``, ``gamma`` and the weight, twice as well, in forward
    mode too, and works under the :mod:`torch.func` transforms (``vmap`` over the inputs and
    ``gamma``, and over the weight too: an ensemble of operators, applied by differentiable
    operations, without the check of a reflect kernel's symmetry).

    Half precision: with a ``float16`` / ``bfloat16`` input or weight (a model cast to half
    precision, or a state produced under :func:`torch.autocast`) the transforms and the solve
    run in ``float32`` (``float64`` when the other side is ``float64``) and the result is cast
    back to the input's dtype: the FFTs have no half-precision kernels on every device, and
    a spectral solve in half precision would lose the accuracy the implicit step relies on.
    The only rounding to half precision is that of the result. Results keep a
    channels-last input's memory format.

    Parameters
    ----------
    weight : Tensor, shape (C, 1, kh, kw)
        Depthwise kernel, ``kh`` and ``kw`` odd, real floating point. An
        :class:`~torch.nn.Parameter` is registered as the module's parameter. A plain tensor
        that does not require grad is wrapped in a frozen Parameter sharing its storage
        (``L.requires_grad_()`` makes it trainable). A tensor that requires grad and is not a
        Parameter (e.g. computed from other parameters) is used as given, so gradients reach
        its sources; strategies other than backprop then need it in ``odeint(..., params=)``.
    boundary : {"periodic", "reflect"}, default "periodic"
        Boundary condition of ``K``.

    Attributes
    ----------
    weight : Tensor
        The kernel.
    boundary : str
        ``"periodic"`` or ``"reflect"``.

    Raises
    ------
    odenet.errors.ArgumentTypeError
        ``weight`` is not a real floating-point tensor.
    odenet.errors.ArgumentError
        ``weight`` is not depthwise ``(C, 1, kh, kw)``, has an even size, non-finite values,
        or (``"reflect"``) is not doubly symmetric; unknown ``boundary``.

    See Also
    --------
    odenet.linear.ImplicitOperator : the contract ``odenet.odeint(..., implicit=L)`` relies on.

    Examples
    --------
    >>> import torch, odenet
    >>> from odenet.linear import ConvFFT
    >>> torch.manual_seed(0)
    <torch._C.Generator object at ...>
    >>> L = ConvFFT(torch.randn(3, 1, 3, 3, dtype=torch.float64))
    >>> r = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    >>> x = L.solve(r, 0.5)                       # (I + 0.5 L)^{-1} r
    >>> torch.allclose(x + 0.5 * L(x), r)
    True

    An IMEX solve of :math:`y' = -y - L y` (the stiff part implicit, any step size):

    >>> y = odenet.odeint(lambda t, y: -y, r, torch.tensor([0.0, 1.0], dtype=torch.float64),
    ...                   method="ars222", step_size=0.25, implicit=L)
    >>> y.shape
    torch.Size([2, 2, 3, 16, 16])
    """

    def __init__(self, weight: Tensor, boundary: str = "periodic"):
        super().__init__()
        _check_weight(weight)
        if not isinstance(boundary, str) or boundary not in _TRANSFORMS:
            raise ArgumentError(
                f"boundary: expected 'periodic' or 'reflect', got {boundary!r}"
            )
        self.boundary = boundary
        self._transform = _TRANSFORMS[boundary]
        if isinstance(weight, nn.Parameter):
            self.weight = weight
        elif weight.requires_grad:
            self.weight = weight  # plain attribute: the graph to its sources is kept
        else:
            self.weight = nn.Parameter(weight, requires_grad=False)
        self._cache: OrderedDict[tuple, _Spec] = OrderedDict()
        self._stamp: tuple | None = None
        self._snapshot: Tensor | None = None
        self._refresh(self.weight)

    # -- properties -----------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return tuple(self.weight.shape[-2:])

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        return f"channels={self.channels}, kernel_size=({kh}, {kw}), boundary={self.boundary!r}"

    # -- cache ----------------------------------------------------------------------------------
    def _check_values(self, wd: Tensor) -> None:
        if not bool(torch.isfinite(wd).all()):
            raise ArgumentError("weight: contains non-finite values (nan or inf)")
        if self.boundary == "reflect":
            _check_symmetric(wd)

    def _refresh(self, w: Tensor) -> None:
        """Validate the (new) weight and drop every cached symbol."""
        _check_weight(w)
        wd = w.detach()
        self._check_values(wd)
        self._cache.clear()
        self._snapshot = wd.clone()
        self._stamp = _stamp(w)

    def clear_cache(self) -> None:
        """Drop the cached symbols (they are rebuilt on the next call).

        Never needed for correctness — a changed weight is detected — but frees the memory.

        Examples
        --------
        >>> import torch
        >>> from odenet.linear import ConvFFT
        >>> L = ConvFFT(torch.ones(1, 1, 3, 3))
        >>> _ = L.solve(torch.randn(1, 1, 8, 8), 1.0)
        >>> L.clear_cache()
        """
        self._cache.clear()

    def _spec(self, x: Tensor, name: str) -> _Spec:
        w = self.weight
        self._check_input(x, name, w)
        height, width = x.shape[-2:]
        cd = _compute_dtype(x.dtype, w.dtype)
        if _functorch_C.is_functorch_wrapped_tensor(w):
            # a weight swapped in by torch.func.functional_call under a transform (its values
            # exist only inside the transform): its spectrum is computed for this call. The
            # value checks need one value per entry, not so for weights batched by vmap (an
            # ensemble of operators), which :meth:`solve` and :meth:`forward` apply by
            # differentiable operations.
            _check_weight(w)
            if not batched(w):
                self._check_values(w.detach())
            return _Spec(self._transform, w.to(cd), height, width)
        if self._stamp != _stamp(w) or not torch.equal(w.detach(), self._snapshot):
            self._refresh(w)
        key = (height, width) if cd == w.dtype else (height, width, cd)
        spec = self._cache.get(key)
        if spec is None:
            spec = _Spec(self._transform, w.to(cd), height, width)
            self._cache[key] = spec
            if len(self._cache) > _MAX_SIZES:
                self._cache.popitem(last=False)
        return spec

    def _check_input(self, x: object, name: str, w: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ArgumentTypeError(
                f"{name}: expected a real floating point tensor, got dtype {x.dtype}"
            )
        if x.ndim < 3:
            raise ArgumentError(
                f"{name}: expected a tensor of shape (..., C, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[-3] != w.shape[0]:
            raise ArgumentError(
                f"{name}: has {x.shape[-3]} channels (dimension -3 of shape {tuple(x.shape)}), "
                f"but the operator has {w.shape[0]} (weight of shape {tuple(w.shape)})"
            )
        kh, kw = w.shape[-2:]
        if x.shape[-2] < kh or x.shape[-1] < kw:
            raise ArgumentError(
                f"{name}: the image ({x.shape[-2]}x{x.shape[-1]}) is smaller than the "
                f"{kh}x{kw} kernel"
            )
        if x.dtype != w.dtype and x.dtype not in _HALF and w.dtype not in _HALF:
            raise ArgumentTypeError(
                f"{name}: dtype {x.dtype} differs from the weight's {w.dtype}; convert the "
                "input or the operator (L.to(dtype))"
            )
        if x.device != w.device:
            raise ArgumentError(
                f"{name}: on device {x.device}, but the weight is on {w.device}; move the "
                "input or the operator (L.to(device))"
            )

    def _gamma(self, gamma: object, r: Tensor) -> float | Tensor:
        if isinstance(gamma, Tensor):
            if not gamma.is_floating_point():
                raise ArgumentTypeError(
                    f"gamma: expected a real floating point tensor, got dtype {gamma.dtype}"
                )
            batch = r.shape[:-3]
            if gamma.ndim != 0 and tuple(gamma.shape) != tuple(batch):
                raise ArgumentError(
                    f"gamma: expected a scalar or a tensor of the batch shape {tuple(batch)} "
                    f"(r.shape[:-3]), got shape {tuple(gamma.shape)}"
                )
            if gamma.device != r.device:
                raise ArgumentError(f"gamma: on device {gamma.device}, but r is on {r.device}")
            gd = gamma.detach()
            if batched(gd):  # per-sample values under torch.func.vmap: no host-side checks
                return gamma.to(r.dtype).reshape(*gamma.shape, 1, 1, 1)
            if not bool(torch.isfinite(gd).all()):
                raise ArgumentError("gamma: contains non-finite values (nan or inf)")
            if bool((gd < 0).any()):
                raise ArgumentError(
                    f"gamma: expected values >= 0, got a minimum of {gd.min().item()}"
                )
            if gamma.ndim == 0 and not (
                (gamma.requires_grad and torch.is_grad_enabled()) or forward_mode_active((gamma,))
            ):
                return float(gd)
            return gamma.to(r.dtype).reshape(*gamma.shape, 1, 1, 1)
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
            raise ArgumentTypeError(
                f"gamma: expected a real number or a tensor, got {type(gamma).__name__}"
            )
        g = float(gamma)
        if not math.isfinite(g):
            raise ArgumentError(f"gamma: expected a finite number, got {g}")
        if g < 0:
            raise ArgumentError(
                f"gamma: expected gamma >= 0 ((I + gamma L) is then invertible), got {g}"
            )
        return g

    # -- the operator ---------------------------------------------------------------------------
    @torch.compiler.disable(reason=_NOT_TRACED)
    def forward(self, y: Tensor) -> Tensor:
        r"""Apply :math:`L = K^\top K` to ``y`` of shape ``(..., C, H, W)``.

        Examples
        --------
        >>> import torch
        >>> from odenet.linear import ConvFFT
        >>> L = ConvFFT(torch.tensor([[[[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]]]))
        >>> y = torch.ones(1, 1, 8, 8)                # constants are in the Laplacian's kernel
        >>> L(y).abs().max() < 1e-5
        tensor(True)
        """
        spec = self._spec(y, "y")
        return self._apply_op(y, spec)

    def _apply_op(self, y: Tensor, spec: _Spec) -> Tensor:
        w = self.weight
        cd = _compute_dtype(y.dtype, w.dtype)
        yc, wc = y.to(cd), w.to(cd)
        if batched(w):
            return _like(_spectral_apply(spec, spec.symbol_of(wc), yc), y)
        if forward_mode_active((y, w)) or (
            torch.is_grad_enabled() and (y.requires_grad or w.requires_grad)
        ):
            return _like(_ApplyFn.apply(yc, wc, spec), y)
        return _like(spec.apply(yc), y)

    @torch.compiler.disable(reason=_NOT_TRACED)
    def adjoint(self, z: Tensor) -> Tensor:
        r"""Apply :math:`L^\top`, which is ``L`` itself (:math:`L = K^\top K` is symmetric).

        Examples
        --------
        >>> import torch
        >>> from odenet.linear import ConvFFT
        >>> L = ConvFFT(torch.randn(2, 1, 3, 3, dtype=torch.float64))
        >>> y, z = torch.randn(2, 2, 2, 8, 8, dtype=torch.float64)
        >>> torch.allclose((L(y) * z).sum(), (y * L.adjoint(z)).sum())
        True
        """
        return self._apply_op(z, self._spec(z, "z"))

    @torch.compiler.disable(reason=_NOT_TRACED)
    def solve(self, r: Tensor, gamma: float | Tensor) -> Tensor:
        r"""Return :math:`(I + \gamma L)^{-1} r` exactly (one forward and one inverse transform).

        Parameters
        ----------
        r : Tensor, shape (..., C, H, W)
            Right-hand side, same dtype and device as the weight, ``H >= kh``, ``W >= kw``.
        gamma : float or Tensor
            :math:`\gamma \ge 0`, finite: a number, a 0-d tensor, or a tensor of the batch
            shape ``r.shape[:-3]`` (one :math:`\gamma` per image). A tensor ``gamma`` that
            requires grad receives its gradient.

        Returns
        -------
        Tensor
            The solution, shaped like ``r``; ``r`` itself when ``gamma == 0``.

        Raises
        ------
        odenet.errors.ArgumentError, odenet.errors.ArgumentTypeError
            Channel mismatch, an image smaller than the kernel, a dtype/device mismatch, a
            negative or non-finite ``gamma``.

        Examples
        --------
        >>> import torch
        >>> from odenet.linear import ConvFFT
        >>> L = ConvFFT(torch.randn(4, 1, 5, 5, dtype=torch.float64))
        >>> r = torch.randn(3, 4, 12, 10, dtype=torch.float64)
        >>> gamma = torch.tensor([0.1, 1.0, 100.0], dtype=torch.float64)  # one per image
        >>> x = L.solve(r, gamma)
        >>> torch.allclose(x + gamma[:, None, None, None] * L(x), r)
        True
        """
        spec = self._spec(r, "r")
        w = self.weight
        cd = _compute_dtype(r.dtype, w.dtype)
        g = self._gamma(gamma, r.to(cd))
        if isinstance(g, float) and g == 0.0:
            return r
        needs = r.requires_grad or w.requires_grad or (isinstance(g, Tensor) and g.requires_grad)
        rc, wc = r.to(cd), w.to(cd)
        if batched(w):
            # a weight batched by vmap: differentiable operations, which vmap takes as they are
            # (the custom Function's vmap rule takes one weight)
            tr = spec.transform
            scale = torch.reciprocal(1.0 + g * spec.symbol_of(wc))
            return _like(tr.inverse(tr.forward(rc) * scale, spec.height, spec.width), r)
        if forward_mode_active((r, w, g)) or (torch.is_grad_enabled() and needs):
            return _like(_SolveFn.apply(rc, wc, g, spec), r)
        return _like(spec.solve(rc, g), r)

    def symbol(self, height: int, width: int) -> Tensor:
        r"""The eigenvalues of ``L`` for ``height x width`` images, per channel.

        Periodic: :math:`|\hat K|^2` on the ``torch.fft.rfft2`` grid, shape
        ``(C, height, width // 2 + 1)``. Reflect: :math:`\lambda^2` on the DCT-II grid, shape
        ``(C, height, width)``. Differentiable in the weight (not cached).

        Examples
        --------
        >>> import torch
        >>> from odenet.linear import ConvFFT
        >>> L = ConvFFT(torch.tensor([[[[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]]]))
        >>> s = L.symbol(8, 8)
        >>> s.shape, s.max().item()                   # |4 - 2cos - 2cos|^2 <= 64
        (torch.Size([1, 8, 5]), 64.0)
        """
        for name, n, k in (("height", height, self.kernel_size[0]),
                           ("width", width, self.kernel_size[1])):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral):
                raise ArgumentTypeError(f"{name}: expected an integer, got {type(n).__name__}")
            if n < k:
                raise ArgumentError(f"{name}: expected at least the kernel size {k}, got {n}")
        return self._transform.symbol(self.weight, int(height), int(width))


_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(x: torch.dtype, w: torch.dtype) -> torch.dtype:
    """The dtype the transforms run in: float32 (float64 with a float64 side) for half inputs
    or weights (the FFTs have no half-precision kernels on every device and would lose the
    solve's accuracy), the common dtype otherwise."""
    if x in _HALF or w in _HALF:
        return torch.float64 if torch.float64 in (x, w) else torch.float32
    return x


def _like(out: Tensor, x: Tensor) -> Tensor:
    """``out`` in ``x``'s dtype and memory format (the transforms return contiguous tensors)."""
    return like_layout(out.to(x.dtype), x)


def _stamp(w: Tensor) -> tuple:
    return (id(w), w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))


def _check_weight(weight: object) -> None:
    if not isinstance(weight, Tensor):
        raise ArgumentTypeError(
            f"weight: expected a Tensor of shape (C, 1, k, k), got {type(weight).__name__}"
        )
    if not weight.is_floating_point():
        raise ArgumentTypeError(
            f"weight: expected a real floating point tensor, got dtype {weight.dtype}"
        )
    if weight.ndim != 4 or weight.shape[1] != 1:
        raise ArgumentError(
            "weight: expected a depthwise kernel of shape (C, 1, k, k) (one k x k kernel per "
            f"channel, no channel coupling), got shape {tuple(weight.shape)}"
        )
    C, _, kh, kw = weight.shape
    if C == 0:
        raise ArgumentError("weight: expected at least one channel, got shape (0, ...)")
    if kh % 2 == 0 or kw % 2 == 0:
        raise ArgumentError(
            f"weight: expected odd kernel sizes (a centred stencil), got {kh}x{kw}"
        )


def _check_symmetric(w: Tensor) -> None:
    scale = w.abs().amax().item()
    asym = max((w - w.flip(-2)).abs().amax().item(), (w - w.flip(-1)).abs().amax().item())
    tol = math.sqrt(torch.finfo(w.dtype).eps) * max(scale, torch.finfo(w.dtype).tiny)
    if asym > tol:
        raise ArgumentError(
            "weight: boundary='reflect' needs kernels symmetric under up-down and left-right "
            f"flips (w == w.flip(-2) == w.flip(-1)); the largest asymmetry is {asym:.3g} "
            f"(kernel scale {scale:.3g}). Symmetrise it, e.g. w = (w + w.flip(-2)) / 2 and "
            "then (w + w.flip(-1)) / 2, or use boundary='periodic'"
        )
