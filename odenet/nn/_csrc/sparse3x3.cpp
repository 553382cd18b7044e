// Fused CPU kernels for 3x3 convolutions with a sparse or structured support
// (pSConv, lean 1x1 + depthwise stencil), zero padding, stride 1.
//
// Plain C++ with an extern "C" interface (no torch headers: it compiles in seconds);
// loaded by odenet/nn/_fused.py through torch.utils.cpp_extension.load and ctypes.
//
// Layout. Images are NCHW. A task pads one image into a per-thread buffer of
// C x (H + 2) x (Wv + 2) (Wv = W rounded up to the vector length; borders zero), so
// that every tap is a fixed flat offset. Output rows have stride Wv (the caller
// drops the columns >= W when Wv > W).
//
// Plan. Output channels come in blocks of at most KMAX channels that share one
// support (for pSConv the channels of one residue class modulo the period); a
// block lists its entries (input channel c, tap t) and, per entry, KMAX weights.
// The forward micro-kernel keeps KMAX x NV vectors of outputs in registers and
// adds, for each entry, one broadcast weight times NV shifted input vectors: the
// taps are gathered by offset, never materialised. Lean operators add per-channel
// "diagonal" stencil entries. The weight gradient reduces over pixels (vectors of
// KH channels x EH entries, summed horizontally once per image).

#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define ODENET_VBYTES 64
#define ODENET_KMAX 8
#elif defined(__AVX__)
#define ODENET_VBYTES 32
#define ODENET_KMAX 4
#else
#define ODENET_VBYTES 16
#define ODENET_KMAX 4
#endif
#define ODENET_NV 3  // output vectors per channel in a tile
#ifndef ODENET_KH
#define ODENET_KH 4  // channels per weight-gradient micro-kernel
#endif
#ifndef ODENET_EH
#define ODENET_EH 6  // entries per weight-gradient micro-kernel
#endif

namespace {

template <typename T>
struct Vec {
    typedef T type __attribute__((vector_size(ODENET_VBYTES)));
};

template <typename T>
constexpr int vlen() {
    return ODENET_VBYTES / static_cast<int>(sizeof(T));
}

template <typename T>
inline typename Vec<T>::type loadu(const T* p) {
    typename Vec<T>::type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

template <typename T>
inline void storeu(T* p, const typename Vec<T>::type& v) {
    std::memcpy(p, &v, sizeof(v));
}

// Horizontal sum by halving (log2 of the vector length additions of half-vectors).
template <typename T, int N>
struct Halves {
    typedef T type __attribute__((vector_size(N * sizeof(T))));
};

template <typename T, int N>
inline T hsum_n(const typename Halves<T, N>::type& v) {
    if constexpr (N == 1) {
        return v[0];
    } else {
        typename Halves<T, N / 2>::type lo, hi;
        std::memcpy(&lo, &v, sizeof(lo));
        std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(lo), sizeof(hi));
        return hsum_n<T, N / 2>(lo + hi);
    }
}

template <typename T>
inline T hsum(const typename Vec<T>::type& v) {
    return hsum_n<T, vlen<T>()>(v);
}

struct Geometry {
    int64_t H, W, Wv, Wp, plane, oplane;
    int64_t nvr, npos, ntile;
    int64_t tap[9];
    std::vector<int64_t> inpos, outpos;  // per vector position (tail padded to NV)

    Geometry(int64_t h, int64_t w, int vl) : H(h), W(w) {
        Wv = (W + vl - 1) / vl * vl;
        Wp = Wv + 2;
        plane = (H + 2) * Wp;
        oplane = H * Wv;
        for (int t = 0; t < 9; ++t) tap[t] = (t / 3 - 1) * Wp + (t % 3 - 1);
        nvr = Wv / vl;
        npos = H * nvr;
        ntile = (npos + ODENET_NV - 1) / ODENET_NV;
        inpos.resize(ntile * ODENET_NV);
        outpos.resize(ntile * ODENET_NV);
        for (int64_t p = 0; p < ntile * ODENET_NV; ++p) {
            int64_t q = p < npos ? p : npos - 1;  // repeat the last position: same value stored twice
            int64_t y = q / nvr, xv = q % nvr;
            inpos[p] = (y + 1) * Wp + 1 + xv * vl;
            outpos[p] = y * Wv + xv * vl;
        }
    }
};

template <typename T>
inline void pad_image(const T* x, T* pad, int64_t C, const Geometry& g) {
    for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < g.H; ++y)
            std::memcpy(pad + c * g.plane + (y + 1) * g.Wp + 1, x + (c * g.H + y) * g.W,
                        sizeof(T) * g.W);
}

struct Plan {
    int nblocks;
    const int32_t* blk_start;  // nblocks + 1, into the entries
    const int32_t* blk_k;      // nblocks, channels in the block
    const int32_t* blk_oc;     // nblocks * KMAX, output channels
    const int32_t* ent_c;      // entries: input channel
    const int32_t* ent_t;      // entries: tap 0..8 (row-major in the 3x3 kernel)
    int nst;                   // diagonal stencil taps (lean), 0 if none
    const int32_t* st_t;       // nst taps
};

template <typename T, int K>
void tile_apply(const T* pad, T* out, const int64_t* off, const T* w, int ne, const int32_t* oc,
                const T* bias, const int64_t* inpos, const int64_t* outpos, int64_t oplane,
                const T* sten, const int64_t* stoff, int nst, int64_t plane, bool first) {
    typedef typename Vec<T>::type V;
    constexpr int NV = ODENET_NV;
    V acc[K][NV];
    for (int k = 0; k < K; ++k) {
        if (first) {
            const T b = bias ? bias[oc[k]] : T(0);
            for (int v = 0; v < NV; ++v) acc[k][v] = V{} + b;
        } else {  // a later chunk of input channels: add to the partial sums
            for (int v = 0; v < NV; ++v) acc[k][v] = loadu(out + oc[k] * oplane + outpos[v]);
        }
    }
    const T* p0 = pad + inpos[0];
    const T* p1 = pad + inpos[1];
    const T* p2 = pad + inpos[2];
    for (int e = 0; e < ne; ++e) {
        const int64_t o = off[e];
        const V x0 = loadu(p0 + o), x1 = loadu(p1 + o), x2 = loadu(p2 + o);
        const T* we = w + e * ODENET_KMAX;
        for (int k = 0; k < K; ++k) {
            const T wk = we[k];
            acc[k][0] += wk * x0;
            acc[k][1] += wk * x1;
            acc[k][2] += wk * x2;
        }
    }
    for (int s = 0; s < nst; ++s) {
        for (int k = 0; k < K; ++k) {
            const int64_t c = oc[k];
            const T wk = sten[c * nst + s];
            const int64_t o = c * plane + stoff[s];
            acc[k][0] += wk * loadu(p0 + o);
            acc[k][1] += wk * loadu(p1 + o);
            acc[k][2] += wk * loadu(p2 + o);
        }
    }
    for (int k = 0; k < K; ++k)
        for (int v = 0; v < NV; ++v) storeu(out + oc[k] * oplane + outpos[v], acc[k][v]);
}
static_assert(ODENET_NV == 3, "tile_apply is written for three vectors per channel");

template <typename T>
using TileFn = void (*)(const T*, T*, const int64_t*, const T*, int, const int32_t*, const T*,
                        const int64_t*, const int64_t*, int64_t, const T*, const int64_t*, int,
                        int64_t, bool);

template <typename T>
TileFn<T> tile_fn(int k) {
    switch (k) {
        case 1: return tile_apply<T, 1>;
        case 2: return tile_apply<T, 2>;
        case 3: return tile_apply<T, 3>;
#if ODENET_KMAX > 4
        case 4: return tile_apply<T, 4>;
        case 5: return tile_apply<T, 5>;
        case 6: return tile_apply<T, 6>;
        case 7: return tile_apply<T, 7>;
        default: return tile_apply<T, 8>;
#else
        default: return tile_apply<T, 4>;
#endif
    }
}

int thread_count(int nthreads) {
#ifdef _OPENMP
    return nthreads > 0 ? nthreads : omp_get_max_threads();
#else
    (void)nthreads;
    return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

struct Offsets {
    std::vector<int64_t> off, stoff;  // entry and diagonal-stencil offsets in a padded image
    // The forward kernel takes the input channels in chunks whose rows around one tile stay in
    // the L1 cache; split[blk * (nchunk + 1) + j] is the block's first entry of chunk j.
    int64_t nchunk = 1;
    std::vector<int32_t> split;

    Offsets(const Plan& pl, const Geometry& g, int64_t cin = 0, int64_t elem = 4) {
        const int ne = pl.blk_start[pl.nblocks];
        off.resize(ne > 0 ? ne : 1);
        for (int e = 0; e < ne; ++e) off[e] = pl.ent_c[e] * g.plane + g.tap[pl.ent_t[e]];
        stoff.resize(pl.nst > 0 ? pl.nst : 1);
        for (int s = 0; s < pl.nst; ++s) stoff[s] = g.tap[pl.st_t[s]];
        // about four padded rows per channel are live around a tile; keep them in 36 KiB
        int64_t cch = (36 << 10) / (4 * g.Wp * elem);
        if (cch < 8) cch = 8;
        nchunk = cin > cch ? (cin + cch - 1) / cch : 1;
        cch = (cin + nchunk - 1) / nchunk;  // even chunks
        split.resize(pl.nblocks * (nchunk + 1));
        for (int blk = 0; blk < pl.nblocks; ++blk) {
            int e = pl.blk_start[blk];
            const int end = pl.blk_start[blk + 1];
            for (int64_t j = 0; j < nchunk; ++j) {
                split[blk * (nchunk + 1) + j] = e;
                while (e < end && pl.ent_c[e] < (j + 1) * cch) ++e;  // entries sorted by channel
            }
            split[blk * (nchunk + 1) + nchunk] = end;
        }
    }
};

// One image: out (Cout, H, Wv) = blocks [b0, b1) of the plan applied to a padded image.
template <typename T>
void apply_image(const T* pad, T* ob, const T* w, const T* bias, const T* sten, const Plan& pl,
                 const Geometry& g, const Offsets& o, int64_t b0, int64_t b1) {
    for (int64_t j = 0; j < o.nchunk; ++j) {
        for (int64_t blk = b0; blk < b1; ++blk) {
            const int32_t* sp = o.split.data() + blk * (o.nchunk + 1);
            const int e0 = sp[j], ne = sp[j + 1] - e0;
            if (j > 0 && ne == 0) continue;
            const int32_t* oc = pl.blk_oc + blk * ODENET_KMAX;
            const TileFn<T> fn = tile_fn<T>(pl.blk_k[blk]);
            for (int64_t t = 0; t < g.ntile; ++t)
                fn(pad, ob, o.off.data() + e0, w + int64_t(e0) * ODENET_KMAX, ne, oc, bias,
                   g.inpos.data() + t * ODENET_NV, g.outpos.data() + t * ODENET_NV, g.oplane,
                   sten, o.stoff.data(), j == 0 ? pl.nst : 0, g.plane, j == 0);
        }
    }
}

// acc[k][e] = sum over the pixels of nimg images of g[oc[k]] * shifted x, for KH channels and
// EH entries (one horizontal sum per task); g's channel c of image i starts at
// gb + i * gis + c * gcs, its pixel p at gpos[p] from there; image i's padded copy at pad + i * pis.
template <typename T, int KH, int EH>
void tile_wgrad(const T* gb, int64_t gcs, int64_t gis, const int64_t* gpos, const T* pad,
                int64_t pis, int nimg, const int64_t* off, const int32_t* oc, const Geometry& g,
                T* dst /* entries x KMAX */) {
    typedef typename Vec<T>::type V;
    V acc[KH][EH];
    for (int k = 0; k < KH; ++k)
        for (int e = 0; e < EH; ++e) acc[k][e] = V{};
    for (int i = 0; i < nimg; ++i) {
        const T* gk[KH];
        for (int k = 0; k < KH; ++k) gk[k] = gb + i * gis + oc[k] * gcs;
        const T* pe[EH];
        for (int e = 0; e < EH; ++e) pe[e] = pad + i * pis + off[e];
        // two pixels per iteration: measured 7-10 % faster than one (and than four)
#pragma GCC unroll 2
        for (int64_t p = 0; p < g.npos; ++p) {
            const int64_t ip = g.inpos[p], op = gpos[p];
            V gv[KH];
            for (int k = 0; k < KH; ++k) gv[k] = loadu(gk[k] + op);
            for (int e = 0; e < EH; ++e) {
                const V xv = loadu(pe[e] + ip);
                for (int k = 0; k < KH; ++k) acc[k][e] += gv[k] * xv;
            }
        }
    }
    for (int e = 0; e < EH; ++e)
        for (int k = 0; k < KH; ++k) dst[e * ODENET_KMAX + k] += hsum<T>(acc[k][e]);
}

template <typename T, int KH>
void wgrad_entries(const T* gb, int64_t gcs, int64_t gis, const int64_t* gpos, const T* pad,
                   int64_t pis, int nimg, const int64_t* off, int ne, const int32_t* oc,
                   const Geometry& g, T* dst) {
    int e = 0;
#define ODENET_WG(EH) \
    tile_wgrad<T, KH, EH>(gb, gcs, gis, gpos, pad, pis, nimg, off + e, oc, g, \
                          dst + e * ODENET_KMAX)
    for (; e + ODENET_EH <= ne; e += ODENET_EH) ODENET_WG(ODENET_EH);
    switch (ne - e) {
        case 1: ODENET_WG(1); break;
        case 2: ODENET_WG(2); break;
        case 3: ODENET_WG(3); break;
        case 4: ODENET_WG(4); break;
        case 5: ODENET_WG(5); break;
        case 6: ODENET_WG(6); break;
        case 7: ODENET_WG(7); break;
        default: break;
    }
#undef ODENET_WG
}
static_assert(ODENET_EH <= 8, "wgrad_entries handles tails of up to seven entries");

// One image's contribution to the packed weight gradient (entries x KMAX) and to the diagonal
// stencil's (Cout x nst): sums over pixels of g times the shifted padded image.
template <typename T>
void wgrad_image(const T* gb, int64_t gcs, int64_t gis, const int64_t* gpos, const T* pad,
                 int64_t pis, int nimg, const Plan& pl, const Geometry& g, const Offsets& o,
                 int64_t Cout, T* gw, T* gsten) {
    for (int blk = 0; blk < pl.nblocks; ++blk) {
        const int e0 = pl.blk_start[blk], ne = pl.blk_start[blk + 1] - e0;
        const int32_t* oc = pl.blk_oc + blk * ODENET_KMAX;
        const int64_t* of = o.off.data() + e0;
        const int kb = pl.blk_k[blk];
        for (int k0 = 0; k0 < kb; k0 += ODENET_KH) {
            T* dst = gw + int64_t(e0) * ODENET_KMAX + k0;
            const int32_t* ok = oc + k0;
            const int kh = kb - k0 >= ODENET_KH ? ODENET_KH : kb - k0;
#define ODENET_WK(K)                                                       \
    case K:                                                                \
        wgrad_entries<T, K>(gb, gcs, gis, gpos, pad, pis, nimg, of, ne, ok, g, dst); \
        break
            switch (kh) {
                ODENET_WK(1);
                ODENET_WK(2);
                ODENET_WK(3);
#if ODENET_KH >= 4
                ODENET_WK(4);
#endif
#if ODENET_KH >= 8
                ODENET_WK(5);
                ODENET_WK(6);
                ODENET_WK(7);
                ODENET_WK(8);
#endif
                default: break;
            }
#undef ODENET_WK
        }
    }
    if (gsten) {
        typedef typename Vec<T>::type V;
        for (int64_t c = 0; c < Cout; ++c) {
            for (int s = 0; s < pl.nst; ++s) {
                V acc = V{};
                for (int i = 0; i < nimg; ++i) {
                    const T* gc = gb + i * gis + c * gcs;
                    const T* xc = pad + i * pis + c * g.plane + o.stoff[s];
                    for (int64_t p = 0; p < g.npos; ++p)
                        acc += loadu(gc + gpos[p]) * loadu(xc + g.inpos[p]);
                }
                gsten[c * pl.nst + s] += hsum<T>(acc);
            }
        }
    }
}

// out (B, Cout, H, Wv) = sum over entries of w * shifted x (+ diagonal stencil) (+ bias)
template <typename T>
void apply_impl(const T* x, T* out, const T* w, const T* bias, const T* sten, int64_t B,
                int64_t Cin, int64_t Cout, int64_t H, int64_t W, const Plan& pl, int nthreads) {
    const Geometry g(H, W, vlen<T>());
    const Offsets o(pl, g, Cin, sizeof(T));
    const int nt = thread_count(nthreads);
    // split the blocks of one image when there are fewer images than threads
    int64_t nsplit = 1;
    if (B < 2 * nt) nsplit = (2 * nt + B - 1) / B;
    if (nsplit > pl.nblocks) nsplit = pl.nblocks > 0 ? pl.nblocks : 1;
    const int64_t ntasks = B * nsplit;
#pragma omp parallel num_threads(nt)
    {
        std::vector<T> pad(Cin * g.plane, T(0));
        int64_t last = -1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; ++task) {
            const int64_t b = task / nsplit, s = task % nsplit;
            if (b != last) {
                pad_image(x + b * Cin * H * W, pad.data(), Cin, g);
                last = b;
            }
            apply_image(pad.data(), out + b * Cout * g.oplane, w, bias, sten, pl, g, o,
                        s * pl.nblocks / nsplit, (s + 1) * pl.nblocks / nsplit);
        }
    }
}

// Per-thread partial sums, added up after the parallel region.
template <typename T>
struct Partials {
    int64_t nw, ns;
    std::vector<T> data;
    Partials(int nt, int64_t nw_, int64_t ns_)
        : nw(nw_), ns(ns_), data(static_cast<size_t>(nt) * (nw_ + ns_), T(0)) {}
    T* mine() { return data.data() + thread_id() * (nw + ns); }
    void reduce(int nt, T* gw, T* gsten) const {
        for (int64_t i = 0; i < nw + ns; ++i) {
            T s = 0;
            for (int t = 0; t < nt; ++t) s += data[t * (nw + ns) + i];
            if (i < nw) gw[i] = s; else gsten[i - nw] = s;
        }
    }
};

// Images per task of the weight gradient: a few padded images (up to 1.5 MiB, in the L2
// cache) share one horizontal sum; at least two tasks per thread.
#ifndef ODENET_GMAX
#define ODENET_GMAX 1  // measured: grouping images gains nothing here
#endif
inline int64_t image_group(int64_t B, int nt, int64_t bytes_per_image) {
    int64_t group = (int64_t(3) << 19) / (bytes_per_image > 0 ? bytes_per_image : 1);
    const int64_t fair = (B + 2 * nt - 1) / (2 * nt);
    if (group > fair) group = fair;
    if (group > ODENET_GMAX) group = ODENET_GMAX;
    return group < 1 ? 1 : group;
}

// gw (entries x KMAX) = sum over the batch and pixels of g * shifted x; gsten (Cout x nst) the
// diagonal stencil's gradient. g is NCHW (B, Cout, H, W).
template <typename T>
void wgrad_impl(const T* gout, const T* x, T* gw, T* gsten, int64_t B, int64_t Cin, int64_t Cout,
                int64_t H, int64_t W, const Plan& pl, int nthreads) {
    const Geometry g(H, W, vlen<T>());
    const Offsets o(pl, g);
    const int nt = thread_count(nthreads);
    const bool direct = g.Wv == W;  // g's rows are whole vectors: read it in place
    const int64_t ps = Cin * g.plane, gps = direct ? 0 : Cout * g.plane;
    const int64_t group = image_group(B, nt, (ps + gps) * int64_t(sizeof(T)));
    const int64_t ntasks = (B + group - 1) / group;
    Partials<T> part(nt, int64_t(pl.blk_start[pl.nblocks]) * ODENET_KMAX,
                     gsten ? Cout * pl.nst : 0);
#pragma omp parallel num_threads(nt)
    {
        std::vector<T> pad(group * ps, T(0));
        std::vector<T> gpad(group * gps, T(0));
        T* mine = part.mine();
        T* mst = gsten ? mine + part.nw : nullptr;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; ++task) {
            const int64_t b0 = task * group;
            const int nimg = static_cast<int>(b0 + group <= B ? group : B - b0);
            for (int i = 0; i < nimg; ++i) {
                pad_image(x + (b0 + i) * Cin * H * W, pad.data() + i * ps, Cin, g);
                if (!direct)
                    pad_image(gout + (b0 + i) * Cout * H * W, gpad.data() + i * gps, Cout, g);
            }
            if (direct)
                wgrad_image(gout + b0 * Cout * g.oplane, g.oplane, Cout * g.oplane,
                            g.outpos.data(), pad.data(), ps, nimg, pl, g, o, Cout, mine, mst);
            else
                wgrad_image(gpad.data(), g.plane, gps, g.inpos.data(), pad.data(), ps, nimg, pl,
                            g, o, Cout, mine, mst);
        }
    }
    part.reduce(nt, gw, gsten);
}

// The backward pass of out = K x in one parallel region: gx (B, Cin, H, Wv) = Kᵀ g by the
// transposed plan pt (weights wt, stencil stt), and the weight gradients by the forward plan pf.
template <typename T>
void backward_impl(const T* gout, const T* x, T* gx, const T* wt, const T* stt, T* gw, T* gsten,
                   int64_t B, int64_t Cin, int64_t Cout, int64_t H, int64_t W, const Plan& pt,
                   const Plan& pf, int nthreads) {
    const Geometry g(H, W, vlen<T>());
    const Offsets ot(pt, g, Cout, sizeof(T)), of(pf, g);
    const int nt = thread_count(nthreads);
    const bool direct = g.Wv == W;
    const int64_t ps = Cin * g.plane, gps = Cout * g.plane;
    const int64_t group = image_group(B, nt, (ps + gps) * int64_t(sizeof(T)));
    const int64_t ntasks = (B + group - 1) / group;
    Partials<T> part(nt, int64_t(pf.blk_start[pf.nblocks]) * ODENET_KMAX,
                     gsten ? Cout * pf.nst : 0);
#pragma omp parallel num_threads(nt)
    {
        std::vector<T> pad(group * ps, T(0));
        std::vector<T> gpad(group * gps, T(0));
        T* mine = part.mine();
        T* mst = gsten ? mine + part.nw : nullptr;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; ++task) {
            const int64_t b0 = task * group;
            const int nimg = static_cast<int>(b0 + group <= B ? group : B - b0);
            for (int i = 0; i < nimg; ++i) {
                const int64_t b = b0 + i;
                T* gp = gpad.data() + i * gps;
                pad_image(gout + b * Cout * H * W, gp, Cout, g);
                apply_image(static_cast<const T*>(gp), gx + b * Cin * g.oplane, wt,
                            static_cast<const T*>(nullptr), stt, pt, g, ot, 0, pt.nblocks);
                pad_image(x + b * Cin * H * W, pad.data() + i * ps, Cin, g);
            }
            if (direct)
                wgrad_image(gout + b0 * Cout * g.oplane, g.oplane, Cout * g.oplane,
                            g.outpos.data(), pad.data(), ps, nimg, pf, g, of, Cout, mine, mst);
            else
                wgrad_image(gpad.data(), g.plane, gps, g.inpos.data(), pad.data(), ps, nimg, pf,
                            g, of, Cout, mine, mst);
        }
    }
    part.reduce(nt, gw, gsten);
}

}  // namespace

extern "C" {

int odenet_kmax() { return ODENET_KMAX; }
int odenet_vector_bytes() { return ODENET_VBYTES; }

#define ODENET_PLAN(P) \
    Plan P{P##_nblocks, P##_start, P##_k, P##_oc, P##_c, P##_t, P##_nst, P##_st};

#define ODENET_PLAN_ARGS(P)                                                              \
    int P##_nblocks, const int32_t *P##_start, const int32_t *P##_k, const int32_t *P##_oc, \
        const int32_t *P##_c, const int32_t *P##_t, int P##_nst, const int32_t *P##_st

#define ODENET_EXPORT(SUFFIX, T)                                                              \
    void odenet_apply_##SUFFIX(const T* x, T* out, const T* w, const T* bias, const T* sten,   \
                               int64_t B, int64_t Cin, int64_t Cout, int64_t H, int64_t W,     \
                               ODENET_PLAN_ARGS(pl), int nthreads) {                           \
        ODENET_PLAN(pl)                                                                        \
        apply_impl<T>(x, out, w, bias, sten, B, Cin, Cout, H, W, pl, nthreads);                \
    }                                                                                          \
    void odenet_wgrad_##SUFFIX(const T* g, const T* x, T* gw, T* gsten, int64_t B,             \
                               int64_t Cin, int64_t Cout, int64_t H, int64_t W,                \
                               ODENET_PLAN_ARGS(pl), int nthreads) {                           \
        ODENET_PLAN(pl)                                                                        \
        wgrad_impl<T>(g, x, gw, gsten, B, Cin, Cout, H, W, pl, nthreads);                      \
    }                                                                                          \
    void odenet_backward_##SUFFIX(const T* g, const T* x, T* gx, const T* wt, const T* stt,    \
                                  T* gw, T* gsten, int64_t B, int64_t Cin, int64_t Cout,       \
                                  int64_t H, int64_t W, ODENET_PLAN_ARGS(pt),                  \
                                  ODENET_PLAN_ARGS(pf), int nthreads) {                        \
        ODENET_PLAN(pt)                                                                        \
        ODENET_PLAN(pf)                                                                        \
        backward_impl<T>(g, x, gx, wt, stt, gw, gsten, B, Cin, Cout, H, W, pt, pf, nthreads);  \
    }

ODENET_EXPORT(f32, float)
ODENET_EXPORT(f64, double)

}  // extern "C"
