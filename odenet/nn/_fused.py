"""Fused CPU kernels for the sparse (pSConv) and lean convolutions, compiled at first use.

The kernels live in ``_csrc/sparse3x3.cpp``: plain C++ with OpenMP and no torch
headers, so that compiling takes a few seconds. :func:`library` builds it with
:func:`torch.utils.cpp_extension.load` on first use (cached under
``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``; the build is
specific to the CPU, ``-march=native``, and the cache name says which) and opens it
with :mod:`ctypes`. When no compiler is available or the build fails, the operators
fall back to their pure-PyTorch engines after one warning; ``ODENET_FUSED=0`` in the
environment turns the compiled kernels off.

Every operator ``K`` here is a sum over *entries* (input channel, tap) of a weight
times the input shifted by the tap, for blocks of output channels that share one
support (see the C++ file). Forward and transpose are the same kernel with different
plans; the weight gradient is a second kernel, and the backward pass runs the transpose
and the weight gradient image by image in one parallel region. The autograd functions below compute
first derivatives with these kernels; higher derivatives (``create_graph=True``) go
through the differentiable pure-PyTorch engines, forward-mode derivatives through the
fused functions themselves (the operators are bilinear).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import platform
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.autograd import Function

from odenet._functorch import grad_levels, under_vmap
from odenet.nn.functional._lean import adjoint_by_convs, by_convs
from odenet.nn.functional._sparse import _masked, _masked_t, _reference_vjp

__all__ = [
    "ENV",
    "LeanPlans",
    "SparsePlans",
    "available",
    "enabled",
    "fused_lean_conv2d",
    "fused_lean_conv2d_adjoint",
    "fused_sparse_conv2d",
    "fused_sparse_conv2d_adjoint",
    "library",
    "supports",
]

#: Environment variable: ``0``, ``off``, ``false`` or ``no`` turn the compiled kernels off.
ENV = "ODENET_FUSED"

SOURCE = pathlib.Path(__file__).with_name("_csrc") / "sparse3x3.cpp"
#: Compiler flags tried in turn (extra C flags, extra linker flags): the first that builds wins.
#: Compilers without OpenMP (Apple's clang) get a single-threaded kernel; without
#: ``-march=native`` a portable one.
_FLAG_SETS = (
    (["-O3", "-march=native", "-fopenmp", "-std=c++17"], ["-fopenmp"]),
    (["-O3", "-march=native", "-std=c++17"], []),
    (["-O3", "-std=c++17"], []),
)

_lock = threading.Lock()
_state: dict = {"lib": None, "tried": False, "error": None, "warned": False}


def enabled() -> bool:
    """False when ``ODENET_FUSED`` turns the compiled kernels off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _build_tag(flags: list[str]) -> str:
    """A short hash of the source, the flags and what ``-march=native`` depends on (the CPU's
    feature flags): one cache entry per kernel version, flags and processor."""
    text = SOURCE.read_text() + " ".join(flags) + platform.machine() + platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                text += line
                break
    except OSError:
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _build() -> ctypes.CDLL:
    from torch.utils import cpp_extension

    errors = []
    for cflags, ldflags in _FLAG_SETS:
        try:
            path = cpp_extension.load(
                name=f"odenet_sparse3x3_{_build_tag(cflags + ldflags)}",
                sources=[str(SOURCE)],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                is_python_module=False,
                verbose=False,
            )
            break
        except Exception as exc:  # try the next, more portable flags
            errors.append(exc)
    else:
        raise errors[0]
    lib = ctypes.CDLL(path)
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    plan = [i32, p, p, p, p, p, i32, p]
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"odenet_apply_{suffix}")
        fn.argtypes = [p, p, p, p, p, i64, i64, i64, i64, i64, *plan, i32]
        fn.restype = None
        fn = getattr(lib, f"odenet_wgrad_{suffix}")
        fn.argtypes = [p, p, p, p, i64, i64, i64, i64, i64, *plan, i32]
        fn.restype = None
        fn = getattr(lib, f"odenet_backward_{suffix}")
        fn.argtypes = [p, p, p, p, p, p, p, i64, i64, i64, i64, i64, *plan, *plan, i32]
        fn.restype = None
    lib.odenet_kmax.restype = i32
    lib.odenet_vector_bytes.restype = i32
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first use; None where they cannot be built.

    The first failure (no compiler, no ninja, a failed build) is reported once as a
    :class:`RuntimeWarning`; the operators then use their pure-PyTorch engines.

    Examples
    --------
    >>> from odenet.nn import _fused
    >>> lib = _fused.library()
    >>> lib is None or lib.odenet_kmax() in (4, 8)
    True
    """
    if not enabled():
        return None
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["lib"] = _build()
            except Exception as exc:  # no compiler, no ninja, a build error: fall back
                _state["error"] = f"{type(exc).__name__}: {str(exc).strip()[:400]}"
        lib, error = _state["lib"], _state["error"]
        if lib is None and error is not None and not _state["warned"]:
            _state["warned"] = True
            warnings.warn(
                "odenet: the fused sparse/lean convolution kernels could not be built "
                f"({error}); using the pure-PyTorch engines (slower). Set {ENV}=0 to "
                "silence this.",
                RuntimeWarning,
                stacklevel=3,
            )
    return lib


def available() -> bool:
    """Whether the compiled kernels can be used (building them on first call).

    Examples
    --------
    >>> from odenet.nn import _fused
    >>> isinstance(_fused.available(), bool)
    True
    """
    return library() is not None


def supports(x: Tensor, params: Sequence[Tensor | None] = ()) -> bool:
    """Whether the fused kernels handle ``x`` (with the operator's ``params``): a CPU
    float32/float64 image, no autocast, not inside :func:`torch.compile` (a ctypes call
    cannot be traced; the compiled graph uses the pure-PyTorch engines, which inductor fuses
    itself), and under :func:`torch.func.vmap` only where no reverse-mode gradient flows.

    Under ``vmap`` the kernels' Functions fold the vmapped dimension into the image batch, but
    a backward pass under ``vmap`` (per-sample gradients, ``jacrev``) goes through the vendor
    reference, recomputing its forward pass: the vendor convolutions outright are cheaper then.
    """
    if not (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    ):
        return False
    if under_vmap() and torch.is_grad_enabled():
        tensors = (x, *(p for p in params if p is not None))
        return grad_levels() == 0 and not any(t.requires_grad for t in tensors)
    return True


# --------------------------------------------------------------------------- plans


@dataclass
class _Plan:
    """Blocks of output channels sharing one support, their entries and weight layout.

    Held as numpy arrays: a plan may be built inside a :mod:`torch.func` transform, where
    every tensor created is a wrapper without storage.
    """

    nblocks: int
    blk_start: np.ndarray  # int32 (nblocks + 1,)
    blk_k: np.ndarray  # int32 (nblocks,)
    blk_oc: np.ndarray  # int32 (nblocks * kmax,)
    ent_c: np.ndarray  # int32 (entries,)
    ent_t: np.ndarray  # int32 (entries,)
    index: np.ndarray  # int64 (entries * kmax,): position in the extended weight vector
    gather: np.ndarray  # int64 (weights,): where each weight sits in the packed layout
    st_t: np.ndarray  # int32 (nst,): diagonal stencil taps (lean), empty otherwise
    cout: int
    kmax: int

    @property
    def nst(self) -> int:
        return int(self.st_t.size)

    def args(self) -> list:
        ptr = ctypes.c_void_p
        return [
            self.nblocks,
            ptr(self.blk_start.ctypes.data),
            ptr(self.blk_k.ctypes.data),
            ptr(self.blk_oc.ctypes.data),
            ptr(self.ent_c.ctypes.data),
            ptr(self.ent_t.ctypes.data),
            self.nst,
            ptr(self.st_t.ctypes.data),
        ]

    def pack(self, weight: Tensor) -> Tensor:
        """``weight`` (1-D, in the plan's numbering) into the kernel's layout."""
        ext = torch.cat([weight.reshape(-1), weight.new_zeros(1)])
        return ext[torch.from_numpy(self.index)].contiguous()

    def unpack(self, packed: Tensor) -> Tensor:
        """The inverse of :meth:`pack` (dropping the padding)."""
        return packed[torch.from_numpy(self.gather)]


def _make_plan(mask: np.ndarray, pos: np.ndarray, kmax: int, st_t: tuple[int, ...] = ()) -> _Plan:
    """A plan for the support ``mask`` (out, in, 3, 3); ``pos`` numbers its weights."""
    cout, cin = mask.shape[:2]
    nnz = int(mask.sum())
    rows = mask.reshape(cout, cin * 9)
    pos = pos.reshape(cout, cin * 9)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups = sorted(
        (np.flatnonzero(inverse == u).tolist() for u in range(first.size)), key=lambda g: g[0]
    )
    starts, ks, ocs, ent_c, ent_t, index = [0], [], [], [], [], []
    for chans in groups:
        flat = np.flatnonzero(rows[chans[0]])
        for i in range(0, len(chans), kmax):
            block = chans[i : i + kmax]
            ks.append(len(block))
            ocs.extend(block + [block[0]] * (kmax - len(block)))
            ent_c.append(flat // 9)
            ent_t.append(flat % 9)
            idx = np.full((flat.size, kmax), nnz, dtype=np.int64)
            idx[:, : len(block)] = pos[block][:, flat].T
            index.append(idx.reshape(-1))
            starts.append(starts[-1] + flat.size)
    index_a = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    valid = np.flatnonzero(index_a < nnz)
    gather = np.empty(nnz, dtype=np.int64)
    gather[index_a[valid]] = valid

    def i32(v) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(v, dtype=np.int32).reshape(-1))

    return _Plan(
        nblocks=len(ks),
        blk_start=i32(starts),
        blk_k=i32(ks),
        blk_oc=i32(ocs),
        ent_c=i32(np.concatenate(ent_c) if ent_c else []),
        ent_t=i32(np.concatenate(ent_t) if ent_t else []),
        index=np.ascontiguousarray(index_a),
        gather=gather,
        st_t=i32(list(st_t)),
        cout=cout,
        kmax=kmax,
    )


@dataclass
class SparsePlans:
    """Forward and transpose plans of a sparse 3×3 support (``mask.nonzero()`` order)."""

    forward: _Plan
    transpose: _Plan
    cin: int
    cout: int

    @classmethod
    def from_mask(cls, mask: np.ndarray, kmax: int) -> SparsePlans:
        m = np.asarray(mask, dtype=bool)
        cout, cin = m.shape[:2]
        pos = np.full(m.shape, -1, dtype=np.int64)
        pos[m] = np.arange(int(m.sum()))  # row-major order of mask.nonzero()
        m_t = np.ascontiguousarray(m.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        pos_t = np.ascontiguousarray(pos.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
        return cls(_make_plan(m, pos, kmax), _make_plan(m_t, pos_t, kmax), cin, cout)


#: Off-centre taps (row-major index in the 3×3 kernel) of each lean stencil, and the centre's
#: column in the stencil weight (None for the 4-point stencil).
_LEAN_TAPS = {4: ((1, 3, 5, 7), None), 5: ((1, 3, 5, 7), 2), 9: ((0, 1, 2, 3, 5, 6, 7, 8), 4)}


@dataclass
class LeanPlans:
    """Forward and transpose plans of a lean operator (1×1 matrix + depthwise stencil)."""

    forward: _Plan
    transpose: _Plan
    channels: int
    stencil: int

    @classmethod
    def build(cls, channels: int, stencil: int, kmax: int) -> LeanPlans:
        c = channels
        mask = np.zeros((c, c, 3, 3), dtype=bool)
        mask[:, :, 1, 1] = True
        pos = np.zeros((c, c, 3, 3), dtype=np.int64)
        pos[:, :, 1, 1] = np.arange(c * c).reshape(c, c)
        off, _ = _LEAN_TAPS[stencil]
        fwd = _make_plan(mask, pos, kmax, off)
        pos_t = np.ascontiguousarray(pos.transpose(1, 0, 2, 3))
        tr = _make_plan(mask, pos_t, kmax, tuple(8 - t for t in off))
        return cls(fwd, tr, c, stencil)

    def split(self, stencil_weight: Tensor) -> tuple[Tensor, Tensor | None]:
        """The off-centre stencil columns ``(C, nst)`` and the centre column (or None)."""
        _, centre = _LEAN_TAPS[self.stencil]
        cols = [k for k in range(self.stencil) if k != centre]
        off = stencil_weight[:, cols].contiguous()
        return off, (None if centre is None else stencil_weight[:, centre])


# --------------------------------------------------------------------------- raw calls


def _ptr(t: Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _suffix(x: Tensor) -> str:
    return "f32" if x.dtype == torch.float32 else "f64"


def _padded_width(lib: ctypes.CDLL, x: Tensor) -> int:
    vl = lib.odenet_vector_bytes() // x.element_size()
    w = x.shape[-1]
    return (w + vl - 1) // vl * vl


def _apply(
    x: Tensor, packed: Tensor, plan: _Plan, bias: Tensor | None = None,
    sten: Tensor | None = None,
) -> Tensor:
    lib = library()
    assert lib is not None
    x = x.contiguous()
    bias = None if bias is None else bias.contiguous()
    b, cin, h, w = x.shape
    wv = _padded_width(lib, x)
    out = x.new_empty(b, plan.cout, h, wv)
    if out.numel():
        fn = getattr(lib, f"odenet_apply_{_suffix(x)}")
        fn(_ptr(x), _ptr(out), _ptr(packed), _ptr(bias), _ptr(sten), b, cin, plan.cout, h, w,
           *plan.args(), torch.get_num_threads())
    return out if wv == w else out[..., :w].contiguous()


def _wgrad(g: Tensor, x: Tensor, plan: _Plan, want_sten: bool) -> tuple[Tensor, Tensor | None]:
    """Packed weight gradient (and the diagonal stencil's) of ``<g, K x>``."""
    lib = library()
    assert lib is not None
    x, g = x.contiguous(), g.contiguous()
    b, cin, h, w = x.shape
    gw = x.new_empty(plan.index.size)
    gs = x.new_empty(plan.cout, plan.nst) if want_sten and plan.nst else None
    if x.numel() and g.numel():
        fn = getattr(lib, f"odenet_wgrad_{_suffix(x)}")
        fn(_ptr(g), _ptr(x), _ptr(gw), _ptr(gs), b, cin, plan.cout, h, w, *plan.args(),
           torch.get_num_threads())
    else:
        gw.zero_()
        if gs is not None:
            gs.zero_()
    return gw, gs


def _backward(
    g: Tensor, x: Tensor, packed_t: Tensor, plan_t: _Plan, sten_t: Tensor | None,
    plan: _Plan, want_sten: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``Kᵀ g`` and the packed weight gradient of ``<g, K x>`` in one parallel region."""
    lib = library()
    assert lib is not None
    x, g = x.contiguous(), g.contiguous()
    b, cin, h, w = x.shape
    if not (x.numel() and g.numel()):
        gw, gs = _wgrad(g, x, plan, want_sten)
        return _apply(g, packed_t, plan_t, None, sten_t), gw, gs
    wv = _padded_width(lib, x)
    gx = x.new_empty(b, cin, h, wv)
    gw = x.new_empty(plan.index.size)
    gs = x.new_empty(plan.cout, plan.nst) if want_sten and plan.nst else None
    fn = getattr(lib, f"odenet_backward_{_suffix(x)}")
    fn(_ptr(g), _ptr(x), _ptr(gx), _ptr(packed_t), _ptr(sten_t), _ptr(gw), _ptr(gs), b, cin,
       plan.cout, h, w, *plan_t.args(), *plan.args(), torch.get_num_threads())
    return (gx if wv == w else gx[..., :w].contiguous()), gw, gs


def _vmap_rule(fn: Callable, reference: Callable, in_dims, x: Tensor, *args):
    """The vmap rule of a fused Function: with only the image batched, the vmapped dimension
    joins the image batch (one kernel call); with batched parameters (an ensemble) the vendor
    reference, batched by :func:`torch.vmap`. ``args`` are the Function's other tensor inputs
    (None allowed), ``in_dims`` theirs after the image's."""
    xd, dims = in_dims[0], tuple(in_dims[1 : 1 + len(args)])
    if xd is not None and all(d is None for d in dims):
        x = x.movedim(xd, 0)
        n, b = x.shape[:2]
        out = fn(x.reshape(n * b, *x.shape[2:]), *args)
        return out.reshape(n, b, *out.shape[1:]), 0
    return torch.vmap(reference, in_dims=(xd, *dims))(x, *args), 0


# --------------------------------------------------------------------------- sparse


class _Sparse(Function):
    @staticmethod
    def forward(x, weight, bias, mask, plans):
        return _apply(x, plans.forward.pack(weight), plans.forward, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, mask, plans = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.save_for_forward(x, weight, bias)
        ctx.mask, ctx.plans = mask, plans

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            gx, gw, gb = _reference_vjp(
                lambda x, w, b: _masked(x, w, ctx.mask, b), [x, weight, bias], need, g
            )
            return gx, gw, gb, None, None
        plans = ctx.plans
        gx = gw = None
        if need[0] and need[1]:
            gx, packed, _ = _backward(g, x, plans.transpose.pack(weight), plans.transpose, None,
                                      plans.forward, False)
            gw = plans.forward.unpack(packed)
        elif need[0]:
            gx = _apply(g, plans.transpose.pack(weight), plans.transpose)
        elif need[1]:
            packed, _ = _wgrad(g, x, plans.forward, False)
            gw = plans.forward.unpack(packed)
        gb = g.sum((0, 2, 3)) if bias is not None and need[2] else None
        return gx, gw, gb, None, None

    @staticmethod
    def jvp(ctx, dx, dw, db, _mask, _plans):
        x, weight, _ = ctx.saved_tensors
        out = None
        if dx is not None:
            out = _Sparse.apply(dx, weight, None, ctx.mask, ctx.plans)
        if dw is not None:
            term = _Sparse.apply(x, dw, None, ctx.mask, ctx.plans)
            out = term if out is None else out + term
        if db is not None:
            db = db.view(1, -1, 1, 1)
            shape = (x.shape[0], ctx.plans.cout, *x.shape[2:])
            out = db.expand(shape).clone() if out is None else out + db
        return out if out is not None else x.new_zeros(x.shape[0], ctx.plans.cout, *x.shape[2:])

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, mask, plans):
        return _vmap_rule(lambda x, w, b, m: _Sparse.apply(x, w, b, m, plans),
                          lambda x, w, b, m: _masked(x, w, m, b), in_dims, x, weight, bias, mask)


class _SparseT(Function):
    @staticmethod
    def forward(z, weight, mask, plans):
        return _apply(z, plans.transpose.pack(weight), plans.transpose)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, weight, mask, plans = inputs
        ctx.save_for_backward(z, weight)
        ctx.save_for_forward(z, weight)
        ctx.mask, ctx.plans = mask, plans

    @staticmethod
    def backward(ctx, g):
        z, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            gz, gw = _reference_vjp(lambda z, w: _masked_t(z, w, ctx.mask), [z, weight], need, g)
            return gz, gw, None, None
        plans = ctx.plans
        gz = _apply(g, plans.forward.pack(weight), plans.forward) if need[0] else None
        gw = None
        if need[1]:  # <g, Kᵀ z> = <K g, z>
            packed, _ = _wgrad(z, g, plans.forward, False)
            gw = plans.forward.unpack(packed)
        return gz, gw, None, None

    @staticmethod
    def jvp(ctx, dz, dw, _mask, _plans):
        z, weight = ctx.saved_tensors
        out = None
        if dz is not None:
            out = _SparseT.apply(dz, weight, ctx.mask, ctx.plans)
        if dw is not None:
            term = _SparseT.apply(z, dw, ctx.mask, ctx.plans)
            out = term if out is None else out + term
        return out if out is not None else z.new_zeros(z.shape[0], ctx.plans.cin, *z.shape[2:])

    @staticmethod
    def vmap(info, in_dims, z, weight, mask, plans):
        return _vmap_rule(lambda z, w, m: _SparseT.apply(z, w, m, plans),
                          lambda z, w, m: _masked_t(z, w, m), in_dims, z, weight, mask)


def fused_sparse_conv2d(
    x: Tensor, weight: Tensor, mask: Tensor, bias: Tensor | None, plans: SparsePlans
) -> Tensor:
    """``K x (+ bias)`` for a checked input, by the fused kernel (see ``sparse_conv2d``)."""
    return _Sparse.apply(x, weight, bias, mask, plans)


def fused_sparse_conv2d_adjoint(
    z: Tensor, weight: Tensor, mask: Tensor, plans: SparsePlans
) -> Tensor:
    """``Kᵀ z`` for a checked input, by the fused kernel."""
    return _SparseT.apply(z, weight, mask, plans)


# --------------------------------------------------------------------------- lean


def _lean_matrix(w: Tensor, centre: Tensor | None) -> Tensor:
    return w if centre is None else w + torch.diag(centre)


def _lean_apply(x, w, s, bias, plans: LeanPlans, transpose: bool) -> Tensor:
    off, centre = plans.split(s)
    mat = _lean_matrix(w, centre)
    plan = plans.transpose if transpose else plans.forward
    return _apply(x, plan.pack(mat), plan, bias, off)


def _lean_wgrad(g, x, plans: LeanPlans, need_w: bool, need_s: bool, done=None):
    """Gradients of ``<g, K x>`` in W and in the stencil weight (from ``done``, the packed
    results of :func:`_backward`, when given)."""
    packed, gsten = _wgrad(g, x, plans.forward, need_s) if done is None else done
    gmat = plans.forward.unpack(packed).view(plans.channels, plans.channels)
    gs = None
    if need_s:
        _, centre = _LEAN_TAPS[plans.stencil]
        cols = []
        j = 0
        for k in range(plans.stencil):
            if k == centre:
                cols.append(torch.diagonal(gmat))
            else:
                cols.append(gsten[:, j])
                j += 1
        gs = torch.stack(cols, 1)
    return (gmat if need_w else None), gs


class _Lean(Function):
    @staticmethod
    def forward(x, w, s, bias, plans):
        return _lean_apply(x, w, s, bias, plans, transpose=False)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, s, bias, plans = inputs
        ctx.save_for_backward(x, w, s, bias)
        ctx.save_for_forward(x, w, s, bias)
        ctx.plans = plans

    @staticmethod
    def backward(ctx, g):
        x, w, s, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            return (*_reference_vjp(by_convs, [x, w, s, bias], need, g), None)
        plans = ctx.plans
        gx = gw = gs = None
        if need[0] and (need[1] or need[2]):
            off, centre = plans.split(s)
            packed_t = plans.transpose.pack(_lean_matrix(w, centre))
            gx, packed, gsten = _backward(g, x, packed_t, plans.transpose, off, plans.forward,
                                          need[2])
            gw, gs = _lean_wgrad(g, x, plans, need[1], need[2], done=(packed, gsten))
        elif need[0]:
            gx = _lean_apply(g, w, s, None, plans, transpose=True)
        elif need[1] or need[2]:
            gw, gs = _lean_wgrad(g, x, plans, need[1], need[2])
        gb = g.sum((0, 2, 3)) if bias is not None and need[3] else None
        return gx, gw, gs, gb, None

    @staticmethod
    def jvp(ctx, dx, dw, ds, db, _plans):
        x, w, s, _ = ctx.saved_tensors
        out = None
        if dx is not None:
            out = _Lean.apply(dx, w, s, None, ctx.plans)
        if dw is not None or ds is not None:
            dw = torch.zeros_like(w) if dw is None else dw
            ds = torch.zeros_like(s) if ds is None else ds
            term = _Lean.apply(x, dw, ds, None, ctx.plans)
            out = term if out is None else out + term
        if db is not None:
            db = db.view(1, -1, 1, 1)
            out = db.expand(x.shape).clone() if out is None else out + db
        return out if out is not None else torch.zeros_like(x)

    @staticmethod
    def vmap(info, in_dims, x, w, s, bias, plans):
        return _vmap_rule(lambda x, w, s, b: _Lean.apply(x, w, s, b, plans), by_convs,
                          in_dims, x, w, s, bias)


class _LeanT(Function):
    @staticmethod
    def forward(z, w, s, plans):
        return _lean_apply(z, w, s, None, plans, transpose=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, w, s, plans = inputs
        ctx.save_for_backward(z, w, s)
        ctx.save_for_forward(z, w, s)
        ctx.plans = plans

    @staticmethod
    def backward(ctx, g):
        z, w, s = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled() or under_vmap():  # differentiable, batchable
            return (*_reference_vjp(adjoint_by_convs, [z, w, s], need, g), None)
        gz = _lean_apply(g, w, s, None, ctx.plans, transpose=False) if need[0] else None
        gw = gs = None
        if need[1] or need[2]:  # <g, Kᵀ z> = <K g, z>
            gw, gs = _lean_wgrad(z, g, ctx.plans, need[1], need[2])
        return gz, gw, gs, None

    @staticmethod
    def jvp(ctx, dz, dw, ds, _plans):
        z, w, s = ctx.saved_tensors
        out = None
        if dz is not None:
            out = _LeanT.apply(dz, w, s, ctx.plans)
        if dw is not None or ds is not None:
            dw = torch.zeros_like(w) if dw is None else dw
            ds = torch.zeros_like(s) if ds is None else ds
            term = _LeanT.apply(z, dw, ds, ctx.plans)
            out = term if out is None else out + term
        return out if out is not None else torch.zeros_like(z)

    @staticmethod
    def vmap(info, in_dims, z, w, s, plans):
        return _vmap_rule(lambda z, w, s: _LeanT.apply(z, w, s, plans), adjoint_by_convs,
                          in_dims, z, w, s)


def fused_lean_conv2d(
    x: Tensor, weight: Tensor, stencil_weight: Tensor, bias: Tensor | None, plans: LeanPlans
) -> Tensor:
    """``W x + S x (+ bias)`` for a checked input, by the fused kernel (see ``lean_conv2d``)."""
    return _Lean.apply(x, weight, stencil_weight, bias, plans)


def fused_lean_conv2d_adjoint(
    z: Tensor, weight: Tensor, stencil_weight: Tensor, plans: LeanPlans
) -> Tensor:
    """``Wᵀ z + Sᵀ z`` for a checked input, by the fused kernel."""
    return _LeanT.apply(z, weight, stencil_weight, plans)
