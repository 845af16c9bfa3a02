// flow_warp on CPU, forward and backward: the torch-free core (bound in cpu_warp.cpp, run
// without torch by tests/cpu_core). Computes in float for float/half/bfloat16, in double for
// double; deterministic: every scatter is owned by one thread and summed in a fixed order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_parallel.h"
#include "cpu_simd.h"
#include "dnerv_math.h"

namespace dnerv::warp {

using dnerv::acc_t;
using dnerv::Taps;

// Pixels (over T*H*W) handled per task: the taps of a chunk stay in L1 while every channel
// reuses them.
constexpr int64_t kWarpChunk = 512;
// Pixels per transposed block of the channels-last forward.
constexpr int64_t kWarpBlock = 16;

// ---------------------------------------------------------------------------------------
// flow_warp
// ---------------------------------------------------------------------------------------

struct WarpDims {
  int64_t B, C, T, H, W;
  int64_t HW() const { return H * W; }
  int64_t THW() const { return T * H * W; }
};

// Taps toward start and end, and the blend weight t, for pixels [p0, p0 + n) of batch b.
template <typename T, typename A>
void chunk_taps(const T* flow, const T* tt, const WarpDims& d, int64_t b, int64_t p0, int64_t n,
                Taps<A>* ts, Taps<A>* te, A* wt) {
  const int64_t THW = d.THW(), HW = d.HW();
  const T* f = flow + b * 4 * THW;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = p0 + i;
    dnerv::warp_taps(f, THW, p, static_cast<int>(d.H), static_cast<int>(d.W), ts[i], te[i]);
    wt[i] = static_cast<A>(tt[b * d.T + p / HW]);
  }
}

// Runs body(b, p0, n, ts, te, wt, scratch) in parallel for every chunk of kWarpChunk pixels
// (over T*H*W) of every batch item: ts, te and wt are the chunk's taps toward start and end
// and its blend weights; scratch is scratch_size accumulator values owned by the thread.
template <typename T, typename Body>
void for_each_warp_chunk(const T* flow, const T* tt, const WarpDims& d, int64_t scratch_size,
                         const Body& body) {
  using A = acc_t<T>;
  const int64_t THW = d.THW();
  const int64_t chunks = (THW + kWarpChunk - 1) / kWarpChunk;
  dnerv::parallel_for(d.B * chunks, [&](int64_t begin, int64_t stop) {
    std::vector<Taps<A>> ts(kWarpChunk), te(kWarpChunk);
    std::vector<A> wt(kWarpChunk), scratch(scratch_size);
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t b = task / chunks, p0 = (task % chunks) * kWarpChunk;
      const int64_t n = std::min(kWarpChunk, THW - p0);
      chunk_taps(flow, tt, d, b, p0, n, ts.data(), te.data(), wt.data());
      body(b, p0, n, ts.data(), te.data(), wt.data(), scratch.data());
    }
  });
}

template <typename T>
void warp_forward_impl(const T* start, const T* end, const T* flow, const T* tt, T* out,
                       const WarpDims& d) {
  using A = acc_t<T>;
  const int64_t THW = d.THW(), HW = d.HW();
  for_each_warp_chunk(flow, tt, d, 0, [&](int64_t b, int64_t p0, int64_t n, const Taps<A>* ts,
                                          const Taps<A>* te, const A* wt, A*) {
    for (int64_t c = 0; c < d.C; ++c) {
      const T* s = start + (b * d.C + c) * HW;
      const T* e = end + (b * d.C + c) * HW;
      T* o = out + (b * d.C + c) * THW + p0;
      for (int64_t i = 0; i < n; ++i) {
        const A vs = dnerv::bilinear_sample(s, ts[i]);
        const A ve = dnerv::bilinear_sample(e, te[i]);
        o[i] = static_cast<T>(vs + wt[i] * (ve - vs));
      }
    }
  });
}


// Features in channels-last memory ([B, H, W, C], what the CPU keyframe encoder gives): the C
// values of each tap are contiguous, so the blend vectorises over channels. Results go through
// an L1 block of kWarpBlock pixels and are written out as runs of pixels per channel.
template <typename T>
void warp_forward_channels_last(const T* start, const T* end, const T* flow, const T* tt, T* out,
                                const WarpDims& d) {
  using A = acc_t<T>;
  const int64_t THW = d.THW(), HW = d.HW(), C = d.C;
  for_each_warp_chunk(flow, tt, d, kWarpBlock * C, [&](int64_t b, int64_t p0, int64_t n,
                                                       const Taps<A>* ts, const Taps<A>* te,
                                                       const A* wt, A* block) {
    const T* sb = start + b * HW * C;
    const T* eb = end + b * HW * C;
    for (int64_t i0 = 0; i0 < n; i0 += kWarpBlock) {
      const int64_t nb = std::min(kWarpBlock, n - i0);
      for (int64_t k = 0; k < nb; ++k) {
        const Taps<A>& s = ts[i0 + k];
        const Taps<A>& e = te[i0 + k];
        const A w = wt[i0 + k];
        const T *s00 = sb + s.i00 * C, *s01 = sb + s.i01 * C, *s10 = sb + s.i10 * C, *s11 = sb + s.i11 * C;
        const T *e00 = eb + e.i00 * C, *e01 = eb + e.i01 * C, *e10 = eb + e.i10 * C, *e11 = eb + e.i11 * C;
        A* dst = block + k * C;
        for (int64_t c = 0; c < C; ++c) {
          const A vs = dnerv::bilinear_blend<A>(s00[c], s01[c], s10[c], s11[c], s.wx, s.wy);
          const A ve = dnerv::bilinear_blend<A>(e00[c], e01[c], e10[c], e11[c], e.wx, e.wy);
          dst[c] = vs + w * (ve - vs);
        }
      }
      dnerv::simd::transpose_block(block, C, nb, C, out + b * C * THW + p0 + i0, THW);
    }
  });
}

// Gradients of start and end: each task owns whole (b, c) planes, so the scatter-adds are
// race-free and run in a fixed order (deterministic). Accumulates into A-typed planes.
template <typename T>
void warp_backward_features(const T* gout, const T* flow, const T* tt, acc_t<T>* gstart,
                            acc_t<T>* gend, const WarpDims& d) {
  using A = acc_t<T>;
  const int64_t THW = d.THW(), HW = d.HW();
  dnerv::parallel_for(d.B * d.C, [&](int64_t begin, int64_t stop) {
    std::vector<Taps<A>> ts(kWarpChunk), te(kWarpChunk);
    std::vector<A> wt(kWarpChunk);
    for (int64_t bc0 = begin; bc0 < stop;) {
      // Channels of this range that share one batch item reuse each chunk's taps.
      const int64_t b = bc0 / d.C;
      const int64_t bc1 = std::min(stop, (b + 1) * d.C);
      for (int64_t p0 = 0; p0 < THW; p0 += kWarpChunk) {
        const int64_t n = std::min(kWarpChunk, THW - p0);
        chunk_taps(flow, tt, d, b, p0, n, ts.data(), te.data(), wt.data());
        for (int64_t bc = bc0; bc < bc1; ++bc) {
          const T* g = gout + bc * THW + p0;
          A* gs = gstart + bc * HW;
          A* ge = gend + bc * HW;
          for (int64_t i = 0; i < n; ++i) {
            const A go = static_cast<A>(g[i]);
            A w[4];
            dnerv::bilinear_weights(ts[i], w);
            const A a = (A(1) - wt[i]) * go;
            gs[ts[i].i00] += a * w[0];
            gs[ts[i].i01] += a * w[1];
            gs[ts[i].i10] += a * w[2];
            gs[ts[i].i11] += a * w[3];
            dnerv::bilinear_weights(te[i], w);
            const A e = wt[i] * go;
            ge[te[i].i00] += e * w[0];
            ge[te[i].i01] += e * w[1];
            ge[te[i].i10] += e * w[2];
            ge[te[i].i11] += e * w[3];
          }
        }
      }
      bc0 = bc1;
    }
  });
}

// Gradients of flow and (per pixel) of t: each task owns a chunk of pixels and sums over
// channels in order. gt_pix [B, T*H*W] is reduced over H*W by the caller.
template <typename T>
void warp_backward_flow(const T* gout, const T* start, const T* end, const T* flow, const T* tt,
                        acc_t<T>* gflow, acc_t<T>* gt_pix, const WarpDims& d) {
  using A = acc_t<T>;
  const int64_t THW = d.THW(), HW = d.HW();
  for_each_warp_chunk(flow, tt, d, 5 * kWarpChunk, [&](int64_t b, int64_t p0, int64_t n,
                                                       const Taps<A>* ts, const Taps<A>* te,
                                                       const A* wt, A* acc) {
    std::fill(acc, acc + 5 * kWarpChunk, A(0));
    A* sx = acc;
    A* sy = sx + kWarpChunk;
    A* ex = sy + kWarpChunk;
    A* ey = ex + kWarpChunk;
    A* gtt = ey + kWarpChunk;
    for (int64_t c = 0; c < d.C; ++c) {
      const T* s = start + (b * d.C + c) * HW;
      const T* e = end + (b * d.C + c) * HW;
      const T* g = gout + (b * d.C + c) * THW + p0;
      for (int64_t i = 0; i < n; ++i) {
        const A go = static_cast<A>(g[i]);
        A gsx, gsy, gex, gey;
        const A vs = dnerv::bilinear_sample_grad(s, ts[i], gsx, gsy);
        const A ve = dnerv::bilinear_sample_grad(e, te[i], gex, gey);
        sx[i] += go * gsx;
        sy[i] += go * gsy;
        ex[i] += go * gex;
        ey[i] += go * gey;
        gtt[i] += go * (ve - vs);
      }
    }
    A* gf = gflow + b * 4 * THW + p0;
    for (int64_t i = 0; i < n; ++i) {
      const A ws = A(1) - wt[i];
      gf[i] = ws * sx[i];
      gf[THW + i] = ws * sy[i];
      gf[2 * THW + i] = wt[i] * ex[i];
      gf[3 * THW + i] = wt[i] * ey[i];
      gt_pix[b * THW + p0 + i] = gtt[i];
    }
  });
}

// The backward for float features in channels-last memory ([B, H, W, C], what the CPU
// keyframe encoder gives): a tap's C values are contiguous, so the scatter-adds into the
// feature gradients and the sums over channels of the flow gradient vectorise over C (the
// contiguous kernels above are scalar, one plane at a time). gout stays [B, C, T, H, W];
// blocks of it are transposed to [pixel][C].

// dst[0, n) += x[0, n) for n <= kLanes.
inline void add_lanes(float* dst, dnerv::simd::vf x, int64_t n) {
  namespace v = dnerv::simd;
  if (n == v::kLanes) {
    v::store(dst, v::load(dst) + x);
  } else {
    v::store_part(dst, v::load_part(dst, n) + x, n);
  }
}

// gs, ge [B, H, W, C], zeroed. One task per batch item and group of kLanes channels, which
// owns those values of gs and ge: the adds run in pixel order, as in the contiguous kernel.
inline void warp_backward_features_cl(const float* gout, const float* flow, const float* tt, float* gs,
                               float* ge, const WarpDims& d) {
  namespace v = dnerv::simd;
  const int64_t THW = d.THW(), HW = d.HW(), C = d.C;
  const int64_t groups = (C + v::kLanes - 1) / v::kLanes;
  dnerv::parallel_for(d.B * groups, [&](int64_t begin, int64_t stop) {
    std::vector<Taps<float>> ts(kWarpChunk), te(kWarpChunk);
    std::vector<float> wt(kWarpChunk), block(kWarpChunk * v::kLanes, 0.0f);
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t b = task / groups, c0 = (task % groups) * v::kLanes;
      const int64_t nc = std::min<int64_t>(v::kLanes, C - c0);
      float* gsb = gs + b * HW * C + c0;
      float* geb = ge + b * HW * C + c0;
      for (int64_t p0 = 0; p0 < THW; p0 += kWarpChunk) {
        const int64_t n = std::min(kWarpChunk, THW - p0);
        chunk_taps(flow, tt, d, b, p0, n, ts.data(), te.data(), wt.data());
        dnerv::simd::transpose_block(gout + (b * C + c0) * THW + p0, THW, nc, n, block.data(), v::kLanes);
        for (int64_t i = 0; i < n; ++i) {
          const v::vf go = v::load(block.data() + i * v::kLanes);  // lanes past nc unused
          float w[4];
          for (int side = 0; side < 2; ++side) {
            const Taps<float>& k = side == 0 ? ts[i] : te[i];
            float* g = side == 0 ? gsb : geb;
            const v::vf a = go * (side == 0 ? 1.0f - wt[i] : wt[i]);
            dnerv::bilinear_weights(k, w);
            add_lanes(g + k.i00 * C, a * w[0], nc);
            add_lanes(g + k.i01 * C, a * w[1], nc);
            add_lanes(g + k.i10 * C, a * w[2], nc);
            add_lanes(g + k.i11 * C, a * w[3], nc);
          }
        }
      }
    }
  });
}

// The flow gradient and the per-pixel t gradient (as warp_backward_flow), summed over
// channels in lanes, then across lanes in order.
inline void warp_backward_flow_cl(const float* gout, const float* start, const float* end, const float* flow,
                           const float* tt, float* gflow, float* gt_pix, const WarpDims& d) {
  namespace v = dnerv::simd;
  const int64_t THW = d.THW(), HW = d.HW(), C = d.C;
  for_each_warp_chunk(flow, tt, d, kWarpBlock * C, [&](int64_t b, int64_t p0, int64_t n,
                                                       const Taps<float>* ts, const Taps<float>* te,
                                                       const float* wt, float* block) {
    const float* feat[2] = {start + b * HW * C, end + b * HW * C};
    float* gf = gflow + b * 4 * THW + p0;
    for (int64_t i0 = 0; i0 < n; i0 += kWarpBlock) {
      const int64_t nb = std::min(kWarpBlock, n - i0);
      dnerv::simd::transpose_block(gout + b * C * THW + p0 + i0, THW, C, nb, block, C);
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t i = i0 + k;
        const Taps<float>* taps[2] = {&ts[i], &te[i]};
        v::vf gx[2] = {}, gy[2] = {}, val[2] = {}, dt = {};
        for (int64_t c = 0; c < C; c += v::kLanes) {
          const int64_t m = std::min<int64_t>(v::kLanes, C - c);
          auto ld = [m](const float* p) { return m == v::kLanes ? v::load(p) : v::load_part(p, m); };
          const v::vf go = ld(block + k * C + c);
          for (int side = 0; side < 2; ++side) {
            const Taps<float>& tp = *taps[side];
            const float* f = feat[side] + c;
            const v::vf v00 = ld(f + tp.i00 * C), v01 = ld(f + tp.i01 * C);
            const v::vf v10 = ld(f + tp.i10 * C), v11 = ld(f + tp.i11 * C);
            const v::vf dtop = v01 - v00, dbot = v11 - v10;
            const v::vf top = v00 + tp.wx * dtop, bot = v10 + tp.wx * dbot;
            gx[side] += go * (dtop + tp.wy * (dbot - dtop));
            gy[side] += go * (bot - top);
            val[side] = top + tp.wy * (bot - top);
          }
          dt += go * (val[1] - val[0]);
        }
        const float ws = 1.0f - wt[i], we = wt[i];
        gf[i] = ws * ts[i].mx * v::hsum(gx[0]);
        gf[THW + i] = ws * ts[i].my * v::hsum(gy[0]);
        gf[2 * THW + i] = we * te[i].mx * v::hsum(gx[1]);
        gf[3 * THW + i] = we * te[i].my * v::hsum(gy[1]);
        gt_pix[b * THW + p0 + i] = v::hsum(dt);
      }
    }
  });
}

}  // namespace dnerv::warp
