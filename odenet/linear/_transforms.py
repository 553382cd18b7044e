"""Orthonormal spectral transforms that diagonalise depthwise ``KᵀK`` operators.

Two transforms, both acting on the last two dimensions of a ``(..., C, H, W)`` tensor:

* :class:`PeriodicTransform` — the 2-D real FFT (``torch.fft.rfft2``, orthonormal), which
  diagonalises convolutions with periodic (circular) boundaries;
* :class:`ReflectTransform` — the 2-D orthonormal DCT-II, which diagonalises convolutions with
  doubly symmetric kernels under half-sample symmetric (Neumann) boundaries (Ng, Chan & Tang 1999,
  "A fast algorithm for deblurring models with Neumann boundary conditions"). Up to
  :data:`DCT_MATMUL_MAX` pixels a side it is two products with the dense DCT matrix; above, each
  1-D DCT is one real FFT of the same length (Makhoul 1980: even samples, then odd samples
  reversed, an FFT and a quarter-sample twiddle), so no symmetric extension of twice the size
  is formed.

Each transform also knows the real inner product of two spectra (:meth:`pair`, weighted so that
its sum over frequencies equals the inner product of the signals, Parseval) and the eigenvalues
of ``K`` for a depthwise kernel (:meth:`symbol`).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DCT_MATMUL_MAX", "PeriodicTransform", "ReflectTransform", "dct", "dct_matrix", "idct"]


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@functools.lru_cache(maxsize=64)
def _dct_twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``s_k exp(-iπk/2n)`` for ``k = 0..n//2``, ``s_0 = √(1/n)``, ``s_k = √(2/n)``."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    s = torch.full_like(k, math.sqrt(2.0 / n))
    s[0] = math.sqrt(1.0 / n)
    return torch.polar(s, -math.pi * k / (2 * n)).to(device=device, dtype=_complex_dtype(dtype))


@functools.lru_cache(maxsize=64)
def _idct_twiddle(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``exp(iπk/2n) / s_k`` for ``k = 0..n//2`` (the inverse of :func:`_dct_twiddle`)."""
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    s = torch.full_like(k, math.sqrt(n / 2.0))
    s[0] = math.sqrt(n)
    return torch.polar(s, math.pi * k / (2 * n)).to(device=device, dtype=_complex_dtype(dtype))


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II along the last dimension (``scipy.fft.dct(x, norm="ortho")``).

    One real FFT of length ``n``: the even samples followed by the odd samples reversed are
    transformed and rotated by a quarter-sample twiddle; ``X[k] = Re Z[k]`` and
    ``X[n - k] = -Im Z[k]``.

    Examples
    --------
    >>> import torch
    >>> from odenet.linear._transforms import dct, idct
    >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    >>> dct(x)
    tensor([ 5.0000, -2.2304,  0.0000, -0.1585], dtype=torch.float64)
    >>> torch.allclose(idct(dct(x)), x)
    True
    """
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    z = torch.fft.rfft(v) * _dct_twiddle(n, x.dtype, x.device)
    return torch.cat([z.real, z.imag[..., 1 : (n + 1) // 2].flip(-1).neg()], dim=-1)


def idct(X: Tensor) -> Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III) along the last dimension.

    Examples
    --------
    >>> import torch
    >>> from odenet.linear._transforms import dct, idct
    >>> x = torch.randn(3, 7, dtype=torch.float64)
    >>> torch.allclose(dct(idct(x)), x)
    True
    """
    n = X.shape[-1]
    h = n // 2
    imag = torch.cat([torch.zeros_like(X[..., :1]), X[..., n - h :].flip(-1)], dim=-1)
    V = torch.complex(X[..., : h + 1], imag.neg()) * _idct_twiddle(n, X.dtype, X.device)
    v = torch.fft.irfft(V, n=n)
    x = torch.empty(X.shape, dtype=X.dtype, device=X.device)
    x[..., ::2] = v[..., : (n + 1) // 2]
    x[..., 1::2] = v[..., (n + 1) // 2 :].flip(-1)
    return x


class PeriodicTransform:
    """The orthonormal 2-D real FFT: eigenbasis of depthwise convolutions with periodic boundaries.

    Spectra have shape ``(..., C, H, W // 2 + 1)`` (complex). The column weights of :meth:`pair`
    count every column that stands for two conjugate frequencies twice.
    """

    name = "periodic"

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.fft.rfft2(x, norm="ortho")

    @staticmethod
    def inverse(X: Tensor, height: int, width: int) -> Tensor:
        return torch.fft.irfft2(X, s=(height, width), norm="ortho")

    @staticmethod
    def prepare(m: Tensor) -> Tensor:
        """A real multiplier ``(C, H, W//2+1)`` laid out for :meth:`scale_` (duplicated for the
        real and imaginary parts: a contiguous real product is several times faster than a
        complex-by-real broadcast)."""
        return m.unsqueeze(-1).expand(*m.shape, 2).contiguous()

    @staticmethod
    def scale_(X: Tensor, prepared: Tensor) -> Tensor:
        torch.view_as_real(X).mul_(prepared)
        return X

    @staticmethod
    def pair(G: Tensor, X: Tensor, width: int) -> Tensor:
        """``w_col · Re(conj(G) X)``: summed over frequencies it is ``⟨g, x⟩`` (Parseval)."""
        wcol = _column_weights(width, G.real.dtype, G.device)
        # (add_ of a product, not addcmul_: it has a batching rule under torch.func.vmap)
        return torch.mul(G.real, X.real).add_(torch.mul(G.imag, X.imag)).mul_(wcol)

    @staticmethod
    def symbol(weight: Tensor, height: int, width: int) -> Tensor:
        """``|K̂|²`` of the depthwise kernel ``weight`` (C, 1, kh, kw) on the rfft2 grid.

        The modulus of the eigenvalues does not depend on where the kernel sits in the
        zero-padded image, so the kernel is padded at its top-left corner.
        """
        return PeriodicTransform.symbol_parts(weight, height, width)[0]

    @staticmethod
    def symbol_parts(weight: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """The symbol and ``K̂`` (what :meth:`symbol_vjp` needs)."""
        kh, kw = weight.shape[-2:]
        khat = torch.fft.rfft2(F.pad(weight[:, 0], (0, width - kw, 0, height - kh)))
        return khat.real.square() + khat.imag.square(), khat

    @staticmethod
    def symbol_vjp(khat: Tensor, grad: Tensor, height: int, width: int, kh: int, kw: int):
        """``(∂S/∂w)ᵀ grad`` in closed form: ``∂S_k/∂w[p, q] = 2 Re(conj(K̂_k) e^{-2πi k·(p, q)})``
        for the kernel at the top-left corner, summed over the half grid."""
        eh, ew = _exponentials(height, width, kh, kw, khat.dtype, khat.device)
        a = torch.conj(khat) * grad
        return 2.0 * torch.einsum("ph,chw,qw->cpq", eh, a, ew).real.unsqueeze(1)

    @staticmethod
    def spectrum_shape(height: int, width: int) -> tuple[int, int]:
        return height, width // 2 + 1


@functools.lru_cache(maxsize=64)
def _exponentials(height, width, kh, kw, dtype, device) -> tuple[Tensor, Tensor]:
    """``e^{-2πi k1 p / H}`` (kh x H) and ``e^{-2πi k2 q / W}`` (kw x W//2+1)."""
    k1 = torch.arange(height, dtype=torch.float64)[None, :]
    k2 = torch.arange(width // 2 + 1, dtype=torch.float64)[None, :]
    p = torch.arange(kh, dtype=torch.float64)[:, None]
    q = torch.arange(kw, dtype=torch.float64)[:, None]
    eh = torch.polar(torch.ones(kh, height, dtype=torch.float64), -2 * math.pi * p * k1 / height)
    ew = torch.polar(torch.ones_like(q * k2), -2 * math.pi * q * k2 / width)
    return eh.to(device=device, dtype=dtype), ew.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _column_weights(width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    w = torch.full((width // 2 + 1,), 2.0, dtype=dtype)
    w[0] = 1.0
    if width % 2 == 0:
        w[-1] = 1.0
    return w.to(device)


@functools.lru_cache(maxsize=64)
def _cosines(n: int, k: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``cos(π j m / n)`` for frequencies ``j < n`` and kernel offsets ``m = -(k//2)..k//2``."""
    j = torch.arange(n, dtype=torch.float64)[:, None]
    m = torch.arange(k, dtype=torch.float64)[None, :] - (k // 2)
    return torch.cos(math.pi * j * m / n).to(device=device, dtype=dtype)


#: Up to this image side the 2-D DCT is applied as two products with the dense DCT matrix
#: (BLAS: several times faster than FFT-based DCTs on CPU and GPU at these sizes); above it,
#: by FFT (:func:`dct`, O(log n) per entry instead of O(n)).
DCT_MATMUL_MAX = 256


@functools.lru_cache(maxsize=64)
def dct_matrix(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ x == dct(x)`` for a column ``x``).

    Examples
    --------
    >>> import torch
    >>> from odenet.linear._transforms import dct, dct_matrix
    >>> D = dct_matrix(5, torch.float64, torch.device("cpu"))
    >>> x = torch.randn(5, dtype=torch.float64)
    >>> torch.allclose(D @ x, dct(x)), torch.allclose(D @ D.T, torch.eye(5, dtype=torch.float64))
    (True, True)
    """
    k = torch.arange(n, dtype=torch.float64)[:, None]
    m = torch.arange(n, dtype=torch.float64)[None, :]
    D = torch.cos(math.pi * k * (2 * m + 1) / (2 * n)) * math.sqrt(2.0 / n)
    D[0] /= math.sqrt(2.0)
    return D.to(device=device, dtype=dtype)


class ReflectTransform:
    """The orthonormal 2-D DCT-II: eigenbasis of doubly symmetric depthwise convolutions with
    half-sample symmetric (Neumann) boundaries. Spectra are real, of shape ``(..., C, H, W)``.
    """

    name = "reflect"

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if max(H, W) <= DCT_MATMUL_MAX:
            dh = dct_matrix(H, x.dtype, x.device)
            dw = dct_matrix(W, x.dtype, x.device)
            return torch.matmul(dh, torch.matmul(x, dw.T))
        return dct(dct(x).transpose(-1, -2)).transpose(-1, -2)

    @staticmethod
    def inverse(X: Tensor, height: int, width: int) -> Tensor:
        if max(height, width) <= DCT_MATMUL_MAX:
            dh = dct_matrix(height, X.dtype, X.device)
            dw = dct_matrix(width, X.dtype, X.device)
            return torch.matmul(dh.T, torch.matmul(X, dw))
        return idct(idct(X.transpose(-1, -2)).transpose(-1, -2))

    @staticmethod
    def prepare(m: Tensor) -> Tensor:
        return m

    @staticmethod
    def scale_(X: Tensor, prepared: Tensor) -> Tensor:
        return X.mul_(prepared)

    @staticmethod
    def pair(G: Tensor, X: Tensor, width: int) -> Tensor:
        return G * X

    @staticmethod
    def symbol(weight: Tensor, height: int, width: int) -> Tensor:
        """``λ²`` with ``λ[j1, j2] = Σ w[p, q] cos(π j1 (p - r1) / H) cos(π j2 (q - r2) / W)``.

        The cosines are even in the offsets, so ``λ`` only sees the doubly symmetric part of
        the kernel (which is all of it once :class:`ConvFFT` has checked the symmetry).
        """
        return ReflectTransform.symbol_parts(weight, height, width)[0]

    @staticmethod
    def symbol_parts(weight: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """The symbol and ``λ`` (what :meth:`symbol_vjp` needs)."""
        kh, kw = weight.shape[-2:]
        ch = _cosines(height, kh, weight.dtype, weight.device)
        cw = _cosines(width, kw, weight.dtype, weight.device)
        lam = torch.einsum("hp,cpq,wq->chw", ch, weight[:, 0], cw)
        return lam.square(), lam

    @staticmethod
    def symbol_vjp(lam: Tensor, grad: Tensor, height: int, width: int, kh: int, kw: int):
        """``(∂S/∂w)ᵀ grad = Chᵀ (2 λ grad) Cw`` in closed form."""
        ch = _cosines(height, kh, lam.dtype, lam.device)
        cw = _cosines(width, kw, lam.dtype, lam.device)
        return torch.einsum("hp,chw,wq->cpq", ch, 2.0 * lam * grad, cw).unsqueeze(1)

    @staticmethod
    def spectrum_shape(height: int, width: int) -> tuple[int, int]:
        return height, width
