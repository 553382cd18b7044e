"""A sparse 3×3 convolution whose work is proportional to the kernel support.

The support of a pSConv kernel depends on the channel pair ``(i, j)`` only through
``(i + j + 1) mod period``. Split the output channels into four groups by
``i mod 4`` and the input channels into four classes by ``(-1 - j) mod 4``; for
a period divisible by 4, whether tap ``t`` couples ``i`` and ``j`` then depends
on the output group and the input class only through their difference ``k``
(mod 4). For every tap the engine multiplies each output group with the (few,
cyclically adjacent) input classes that tap needs: a batched matrix product over
the four groups, read straight from a channel-major, zero-padded copy of the
input in which a tap is a column offset (no im2col). The centre tap, which every
pattern contains, is one dense matrix product. Blocks are computed whole, so a
block that is only partly in the support does a little useless work (for psc4
with period 8: 5.25 instead of 4.625 of 9 multiply-adds per channel pair); the
values outside the support read as zero, so any support is computed exactly.

On the CPU the batch is processed in chunks of a few samples so that the
operands of the many matrix products stay in cache.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Plan", "apply", "plan_for", "transpose", "weight_grad"]

_G = 4  # output groups / input classes
_CHUNK_BYTES = 1 << 19


@dataclass
class _Part:
    tap: tuple[int, int]  # (row, col) in the 3×3 kernel
    u0: int  # group s reads input groups s + u0, ..., s + u0 + width - 1
    width: int
    index: Tensor  # (G, Cout/G, width·Cin/G) into the weight vector (nnz = zero slot)


@dataclass
class Plan:
    """Channel orders, the centre product and the per-tap parts of one support."""

    cin: int
    cout: int
    nnz: int
    out_order: Tensor  # natural output channel of each group-major row
    in_order: Tensor  # natural input channel of each class-major row
    center: Tensor  # (Cout, Cin) index of the centre tap, class-major columns
    parts: list[_Part]
    groups_ext: int  # input groups in the extended (wrapped) copy
    macs_per_pixel: int


def _build(mask: Tensor) -> Plan:
    cout, cin = mask.shape[:2]
    g = _G
    dev = mask.device
    nnz = int(mask.sum())
    pos = torch.full((cout, cin, 3, 3), nnz, dtype=torch.long, device=dev)
    pos[mask] = torch.arange(nnz, device=dev)
    i = torch.arange(cout, device=dev)
    j = torch.arange(cin, device=dev)
    out_order = torch.cat([i[i % g == s] for s in range(g)])
    cls = (-1 - j) % g
    in_order = torch.cat([j[cls == c] for c in range(g)])
    mo, mi = cout // g, cin // g
    out_groups = out_order.view(g, mo)
    in_groups = in_order.view(g, mi)
    # class difference k = (s - c) mod 4 of every (group, class) block that has support
    pair_k = (torch.arange(g).view(g, 1) - torch.arange(g).view(1, g)) % g  # [s, c]
    center = pos[out_order][:, in_order, 1, 1]
    parts, groups_ext, macs = [], g, cout * cin
    for r in range(3):
        for q in range(3):
            if (r, q) == (1, 1):
                continue
            sub = mask[:, :, r, q][out_order][:, in_order].view(g, mo, g, mi).any(3).any(1)
            ks = sorted({int(pair_k[s, c]) for s in range(g) for c in range(g) if sub[s, c]})
            for window in _windows(ks, g):
                # group s reads classes s - k for k in window: s - k_hi, ..., s - k_lo
                k_hi = window[-1]
                u0 = (-k_hi) % g
                width = len(window)
                groups_ext = max(groups_ext, u0 + g - 1 + width)
                cols = torch.stack(
                    [
                        torch.cat([in_groups[(s + u0 + t) % g] for t in range(width)])
                        for s in range(g)
                    ]
                )  # (G, width·mi)
                index = pos[out_groups.unsqueeze(2), cols.unsqueeze(1), r, q]  # (G, mo, width·mi)
                parts.append(_Part((r, q), u0, width, index))
                macs += cout * width * mi
    return Plan(cin, cout, nnz, out_order, in_order, center, parts, groups_ext, macs)


def _windows(ks: list[int], g: int) -> list[list[int]]:
    """Split class differences into cyclically contiguous runs, e.g. [0, 1, 3] -> [[3, 0, 1]]."""
    if not ks:
        return []
    if len(ks) == g:
        return [list(range(g))]
    members = set(ks)
    starts = [k for k in ks if (k - 1) % g not in members]
    runs = []
    for k0 in starts:
        run, k = [], k0
        while k in members:
            run.append(k if not run or k > run[-1] else k + g)
            k = (k + 1) % g
        runs.append(run)
    return runs


_PLANS: dict[int, tuple[weakref.ref, int, Plan]] = {}


def plan_for(mask: Tensor) -> Plan | None:
    """The plan of a 3×3 boolean support, cached per mask tensor; None where the engine does
    not apply (channel counts not divisible by 4, or no saving over a dense kernel)."""
    if mask.shape[-2:] != (3, 3) or mask.shape[0] % _G or mask.shape[1] % _G:
        return None
    entry = _PLANS.get(id(mask))
    if entry is not None and entry[0]() is mask and entry[1] == mask._version:
        plan = entry[2]
    else:
        plan = _build(mask)
        key = id(mask)
        _PLANS[key] = (
            weakref.ref(mask, lambda _, key=key: _PLANS.pop(key, None)),
            mask._version,
            plan,
        )
    return plan if plan.macs_per_pixel < 0.8 * 9 * plan.cin * plan.cout else None


def _chunks(b: int, per_sample: int, device: torch.device) -> list[slice]:
    n = b if device.type != "cpu" else max(1, min(b, _CHUNK_BYTES // max(per_sample, 1)))
    return [slice(i, min(b, i + n)) for i in range(0, b, n)]


class _Layout:
    """Channel-major, zero-padded, flattened image columns for a chunk of ``n`` samples."""

    def __init__(self, n: int, h: int, w: int):
        self.n, self.h, self.w = n, h, w
        self.hp, self.wp = h + 2, w + 2
        self.cols = n * self.hp * self.wp
        self.lo = self.wp + 1  # first output column (interior of sample 0)
        self.length = self.cols - 2 * self.wp - 2  # columns [lo, lo + length)

    def shift(self, tap: tuple[int, int]) -> int:
        return (tap[0] - 1) * self.wp + (tap[1] - 1)

    def interior(self, buf: Tensor, n: int) -> Tensor:
        """(rows, n, H, W) view of the interior of a (rows, cols) buffer."""
        return buf[:, : n * self.hp * self.wp].view(-1, n, self.hp, self.wp)[
            :, :, 1 : self.h + 1, 1 : self.w + 1
        ]


def _weights(weight: Tensor, plan: Plan) -> tuple[Tensor, list[Tensor]]:
    ext = torch.cat([weight, weight.new_zeros(1)])
    return ext[plan.center], [ext[p.index] for p in plan.parts]


def _group_view(
    buf: Tensor,
    rows_per_group: int,
    first: int,
    groups: int,
    start: int,
    length: int,
    width: int = 1,
) -> Tensor:
    """(groups, width·rows_per_group, length) view of a class-major buffer: group s starts at
    group first + s."""
    stride = buf.stride(0)
    return buf.as_strided(
        (groups, width * rows_per_group, length),
        (rows_per_group * stride, stride, 1),
        buf.storage_offset() + first * rows_per_group * stride + start,
    )


def _residue_view(buf: Tensor, start: int, length: int) -> Tensor:
    """(G, rows / G, length) view of a buffer in natural channel order: group s holds the
    rows s, s + G, s + 2G, ... (channels i with i mod G = s)."""
    stride = buf.stride(0)
    return buf.as_strided(
        (_G, buf.shape[0] // _G, length), (stride, _G * stride, 1), buf.storage_offset() + start
    )


def _fill_classes(xe: Tensor, x: Tensor, lay: _Layout, n: int, groups_ext: int) -> None:
    """Copy ``x`` (n, C, H, W) into the class-major padded buffer, classes repeated cyclically
    up to ``groups_ext`` groups. Class c holds the channels j with (-1 - j) mod G = c."""
    mi = x.shape[1] // _G
    for c in range(_G):
        rows = xe[c * mi : (c + 1) * mi]
        lay.interior(rows, n).copy_(x[:, (_G - 1 - c) % _G :: _G].transpose(0, 1))
    done = _G
    while done < groups_ext:  # the wrapped groups repeat the first ones: contiguous copies
        k = min(done, groups_ext - done)
        xe[done * mi : (done + k) * mi].copy_(xe[: k * mi])
        done += k


def apply(x: Tensor, weight: Tensor, plan: Plan, bias: Tensor | None) -> Tensor:
    """``K x (+ bias)`` without autograd."""
    b, _, h, w = x.shape
    g, mi = _G, plan.cin // _G
    wc, wp_ = _weights(weight, plan)
    out = x.new_empty(b, plan.cout, h, w)
    chunks = _chunks(b, plan.cin * h * w * x.element_size(), x.device)
    lay = _Layout(chunks[0].stop - chunks[0].start, h, w)
    xe = x.new_zeros(plan.groups_ext * mi, lay.cols)
    o = x.new_empty(plan.cout, lay.cols)
    wc = wc[plan.out_order.argsort()]  # centre product straight into natural output order
    for sl in chunks:
        n = sl.stop - sl.start
        _fill_classes(xe, x[sl], lay, n, plan.groups_ext)
        lo, ln = lay.lo, lay.length - (lay.n - n) * lay.hp * lay.wp
        torch.mm(wc, xe[: plan.cin, lo : lo + ln], out=o[:, lo : lo + ln])
        dst = _residue_view(o, lo, ln)
        for part, wpart in zip(plan.parts, wp_):
            src = _group_view(xe, mi, part.u0, g, lo + lay.shift(part.tap), ln, part.width)
            dst.baddbmm_(wpart, src)
        out[sl].copy_(lay.interior(o, n).transpose(0, 1))
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def transpose(z: Tensor, weight: Tensor, plan: Plan) -> Tensor:
    """``Kᵀ z`` without autograd."""
    b, _, h, w = z.shape
    g, mi = _G, plan.cin // _G
    wc, wp_ = _weights(weight, plan)
    wct = wc[plan.out_order.argsort()].t()  # (Cin class-major, Cout natural)
    out = z.new_empty(b, plan.cin, h, w)
    chunks = _chunks(b, plan.cout * h * w * z.element_size(), z.device)
    lay = _Layout(chunks[0].stop - chunks[0].start, h, w)
    zp = z.new_zeros(plan.cout, lay.cols)
    gx = z.new_empty(plan.groups_ext * mi, lay.cols)
    for sl in chunks:
        n = sl.stop - sl.start
        lay.interior(zp, n).copy_(z[sl].transpose(0, 1))
        gx.zero_()
        lo, ln = lay.lo, lay.length - (lay.n - n) * lay.hp * lay.wp
        gx[: plan.cin, lo : lo + ln].addmm_(wct, zp[:, lo : lo + ln])
        src = _residue_view(zp, lo, ln)
        for part, wpart in zip(plan.parts, wp_):
            for t in range(part.width):
                wt = wpart[:, :, t * mi : (t + 1) * mi].transpose(1, 2)
                dst = _group_view(gx, mi, part.u0 + t, g, lo + lay.shift(part.tap), ln)
                dst.baddbmm_(wt, src)
        folded = gx.view(plan.groups_ext, mi, -1)
        for e in range(g, plan.groups_ext):
            folded[e % g] += folded[e]
        for c in range(g):
            res = lay.interior(folded[c], n).transpose(0, 1)
            out[sl][:, (g - 1 - c) % g :: g].copy_(res)
    return out


def weight_grad(gout: Tensor, x: Tensor, plan: Plan) -> Tensor:
    """``d<gout, K x>/d weight`` (the weight vector), without autograd."""
    b, _, h, w = x.shape
    g, mi = _G, plan.cin // _G
    chunks = _chunks(b, (plan.cin + plan.cout) * h * w * x.element_size(), x.device)
    lay = _Layout(chunks[0].stop - chunks[0].start, h, w)
    xe = x.new_zeros(plan.groups_ext * mi, lay.cols)
    gp = x.new_zeros(plan.cout, lay.cols)
    gc = x.new_zeros(plan.cout, plan.cin)  # natural output rows, class-major input columns
    gparts = [x.new_zeros(p.index.shape) for p in plan.parts]
    for sl in chunks:
        n = sl.stop - sl.start
        _fill_classes(xe, x[sl], lay, n, plan.groups_ext)
        lay.interior(gp, n).copy_(gout[sl].transpose(0, 1))
        lo, ln = lay.lo, lay.length - (lay.n - n) * lay.hp * lay.wp
        gc.addmm_(gp[:, lo : lo + ln], xe[: plan.cin, lo : lo + ln].t())
        gsrc = _residue_view(gp, lo, ln)
        for part, acc in zip(plan.parts, gparts):
            src = _group_view(xe, mi, part.u0, g, lo + lay.shift(part.tap), ln, part.width)
            acc.baddbmm_(gsrc, src.transpose(1, 2))
    grad = x.new_zeros(plan.nnz + 1)
    grad.index_add_(0, plan.center[plan.out_order.argsort()].reshape(-1), gc.reshape(-1))
    for part, acc in zip(plan.parts, gparts):
        grad.index_add_(0, part.index.reshape(-1), acc.reshape(-1))
    return grad[: plan.nnz]
