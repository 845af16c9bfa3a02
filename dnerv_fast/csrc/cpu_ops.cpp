// CPU kernels of the fused D-NeRV ops (forward and backward), bound with pybind11.
//
// Every kernel takes contiguous tensors (the Python wrapper makes them so), computes in
// float for float/half/bfloat16 and in double for double, and is deterministic: reductions
// are owned by one thread each and summed in a fixed order.
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_extra.h"
#include "cpu_gelu.h"
#include "cpu_simd.h"
#include "dnerv_math.h"

namespace {

using dnerv::acc_t;
using dnerv::Taps;

// Pixels (over T*H*W) handled per task: the taps of a chunk stay in L1 while every channel
// reuses them.
constexpr int64_t kWarpChunk = 512;
// Pixels per transposed block of the channels-last forward.
constexpr int64_t kWarpBlock = 16;

at::ScalarType acc_scalar_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

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
  at::parallel_for(0, d.B * chunks, 1, [&](int64_t begin, int64_t stop) {
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

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols: a transpose into
// runs of rows. In float, whole vectors of rows are gathered from src (as scalar copies, this
// was half of the channels-last warp).
template <typename S, typename D>
void transpose_block(const S* src, int64_t src_stride, int64_t rows, int64_t cols, D* dst,
                     int64_t dst_stride) {
  namespace v = dnerv::simd;
  int64_t r0 = 0;
  if constexpr (std::is_same_v<S, float> && std::is_same_v<D, float>) {
    if (src_stride * v::kLanes <= INT32_MAX) {
      v::vi idx;
      for (int k = 0; k < v::kLanes; ++k) idx[k] = static_cast<int32_t>(k * src_stride);
      for (; r0 + v::kLanes <= rows; r0 += v::kLanes)
        for (int64_t c = 0; c < cols; ++c)
          v::store(dst + c * dst_stride + r0, v::gather(src + r0 * src_stride + c, idx));
    }
  }
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = r0; r < rows; ++r) dst[c * dst_stride + r] = static_cast<D>(src[r * src_stride + c]);
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
      transpose_block(block, C, nb, C, out + b * C * THW + p0 + i0, THW);
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
  at::parallel_for(0, d.B * d.C, 1, [&](int64_t begin, int64_t stop) {
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
void warp_backward_features_cl(const float* gout, const float* flow, const float* tt, float* gs,
                               float* ge, const WarpDims& d) {
  namespace v = dnerv::simd;
  const int64_t THW = d.THW(), HW = d.HW(), C = d.C;
  const int64_t groups = (C + v::kLanes - 1) / v::kLanes;
  at::parallel_for(0, d.B * groups, 1, [&](int64_t begin, int64_t stop) {
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
        transpose_block(gout + (b * C + c0) * THW + p0, THW, nc, n, block.data(), v::kLanes);
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
void warp_backward_flow_cl(const float* gout, const float* start, const float* end, const float* flow,
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
      transpose_block(gout + b * C * THW + p0 + i0, THW, C, nb, block, C);
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

WarpDims warp_dims(const at::Tensor& start, const at::Tensor& flow) {
  return {start.size(0), start.size(1), flow.size(2), start.size(2), start.size(3)};
}

at::Tensor flow_warp_forward(const at::Tensor& start, const at::Tensor& end, const at::Tensor& flow,
                             const at::Tensor& t) {
  const WarpDims d = warp_dims(start, flow);
  // start and end: both contiguous, or both channels-last (read in place).
  const bool channels_last = !start.is_contiguous();
  TORCH_CHECK(channels_last ? start.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                                  end.is_contiguous(at::MemoryFormat::ChannelsLast) && !end.is_contiguous()
                            : end.is_contiguous(),
              "flow_warp_forward: start and end must be both contiguous or both channels-last");
  auto out = at::empty({d.B, d.C, d.T, d.H, d.W}, start.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, start.scalar_type(), "flow_warp_forward", [&] {
    const auto kernel = channels_last ? warp_forward_channels_last<scalar_t> : warp_forward_impl<scalar_t>;
    kernel(start.data_ptr<scalar_t>(), end.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
           t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

// Returns (grad_start, grad_end, grad_flow, grad_t); undefined tensors where not needed.
std::vector<at::Tensor> flow_warp_backward(const at::Tensor& gout, const at::Tensor& start,
                                           const at::Tensor& end, const at::Tensor& flow,
                                           const at::Tensor& t, bool need_features,
                                           bool need_flow_t) {
  const WarpDims d = warp_dims(start, flow);
  const auto acc_opts = start.options().dtype(acc_scalar_type(start.scalar_type()));
  at::Tensor gs, ge, gf, gt;
  // start and end: both contiguous, or both channels-last float32 (read in place; the
  // feature gradients come back channels-last).
  if (!start.is_contiguous()) {
    TORCH_CHECK(start.scalar_type() == at::kFloat && start.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                    end.is_contiguous(at::MemoryFormat::ChannelsLast) && !end.is_contiguous(),
                "flow_warp_backward: channels-last start and end must both be channels-last float32");
    if (need_features) {
      // (at::zeros would ignore a memory format in the options)
      gs = at::empty({d.B, d.C, d.H, d.W}, acc_opts, at::MemoryFormat::ChannelsLast).zero_();
      ge = at::empty({d.B, d.C, d.H, d.W}, acc_opts, at::MemoryFormat::ChannelsLast).zero_();
      warp_backward_features_cl(gout.data_ptr<float>(), flow.data_ptr<float>(), t.data_ptr<float>(),
                                gs.data_ptr<float>(), ge.data_ptr<float>(), d);
    }
    if (need_flow_t) {
      gf = at::empty({d.B, 4, d.T, d.H, d.W}, acc_opts);
      auto gt_pix = at::empty({d.B, d.T, d.H * d.W}, acc_opts);
      warp_backward_flow_cl(gout.data_ptr<float>(), start.data_ptr<float>(), end.data_ptr<float>(),
                            flow.data_ptr<float>(), t.data_ptr<float>(), gf.data_ptr<float>(),
                            gt_pix.data_ptr<float>(), d);
      gt = gt_pix.sum(-1);
    }
    return {gs, ge, gf, gt};
  }
  TORCH_CHECK(end.is_contiguous(), "flow_warp_backward: start and end must be both contiguous or both channels-last");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, start.scalar_type(), "flow_warp_backward", [&] {
    using A = acc_t<scalar_t>;
    if (need_features) {
      gs = at::zeros({d.B, d.C, d.H, d.W}, acc_opts);
      ge = at::zeros({d.B, d.C, d.H, d.W}, acc_opts);
      warp_backward_features<scalar_t>(gout.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                       t.data_ptr<scalar_t>(), gs.data_ptr<A>(), ge.data_ptr<A>(), d);
    }
    if (need_flow_t) {
      gf = at::empty({d.B, 4, d.T, d.H, d.W}, acc_opts);
      auto gt_pix = at::empty({d.B, d.T, d.H * d.W}, acc_opts);
      warp_backward_flow<scalar_t>(gout.data_ptr<scalar_t>(), start.data_ptr<scalar_t>(),
                                   end.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                   t.data_ptr<scalar_t>(), gf.data_ptr<A>(), gt_pix.data_ptr<A>(), d);
      gt = gt_pix.sum(-1);
    }
  });
  const auto dtype = start.scalar_type();
  auto cast = [dtype](const at::Tensor& x) { return x.defined() ? x.to(dtype) : x; };
  return {cast(gs), cast(ge), cast(gf), cast(gt)};
}

// ---------------------------------------------------------------------------------------
// saf_modulate: out = x * (1 + W_g f + b_g) [+ W_b f + b_b], a tiled GEMM (BLAS on an
// L2-sized tile) with the modulation applied from the tile, so gamma/beta never reach memory.
// ---------------------------------------------------------------------------------------

constexpr int64_t kSafPixels = 512;    // pixels per tile
constexpr int64_t kSafChannels = 128;  // output channels per tile

// Float and double only (the Python wrapper runs half types in float32). The output is
// written contiguous, or channels-last ([B, T, H, W, C] in memory) when channels_last is set.
template <typename T>
void saf_impl(const at::Tensor& x_t, const at::Tensor& fused_t, const at::Tensor& weight,
              const T* bias, at::Tensor& out_t, bool with_beta, bool channels_last) {
  const int64_t B = x_t.size(0), C = x_t.size(1), K = fused_t.size(1);
  const int64_t P = x_t.numel() / std::max<int64_t>(B * C, 1);
  const T* x = x_t.data_ptr<T>();
  T* out = out_t.data_ptr<T>();
  const auto fused = fused_t.reshape({B, K, P});
  const int64_t tiles = (P + kSafPixels - 1) / kSafPixels;
  at::parallel_for(0, B * tiles, 1, [&](int64_t begin, int64_t stop) {
    at::Tensor gamma_buf = at::empty({kSafChannels * kSafPixels}, x_t.options());
    at::Tensor beta_buf = at::empty({kSafChannels * kSafPixels}, x_t.options());
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t b = task / tiles, p0 = (task % tiles) * kSafPixels;
      const int64_t n = std::min(kSafPixels, P - p0);
      const auto f = fused.select(0, b).narrow(1, p0, n);
      for (int64_t c0 = 0; c0 < C; c0 += kSafChannels) {
        const int64_t m = std::min(kSafChannels, C - c0);
        auto gamma = gamma_buf.narrow(0, 0, m * n).view({m, n});
        auto beta = beta_buf.narrow(0, 0, m * n).view({m, n});
        at::mm_out(gamma, weight.narrow(0, c0, m), f);
        if (with_beta) at::mm_out(beta, weight.narrow(0, C + c0, m), f);
        // Channels-last output: the tile is finished in place in the gamma buffer, then
        // transposed out, so each output pixel's channels are written in one run.
        T* dst = channels_last ? gamma.data_ptr<T>() : out + (b * C + c0) * P + p0;
        const int64_t ld = channels_last ? n : P;
        for (int64_t r = 0; r < m; ++r) {
          const int64_t c = c0 + r;
          const T bg = bias ? bias[c] : T(0);
          const T bb = (bias && with_beta) ? bias[C + c] : T(0);
          const T* xi = x + (b * C + c) * P + p0;
          const T* g = gamma.data_ptr<T>() + r * n;
          T* o = dst + r * ld;
          if (with_beta) {
            const T* be = beta.data_ptr<T>() + r * n;
            for (int64_t i = 0; i < n; ++i) o[i] = xi[i] * (T(1) + g[i] + bg) + be[i] + bb;
          } else {
            for (int64_t i = 0; i < n; ++i) o[i] = xi[i] * (T(1) + g[i] + bg);
          }
        }
        if (channels_last) transpose_block(dst, n, m, n, out + (b * P + p0) * C + c0, C);
      }
    }
  });
}

// with_beta: weight [2C, K], bias [2C]; else only the gamma half is used: x * (1 + gamma),
// which is also the gradient wrt x given grad_out as x. channels_last: return the output in
// channels_last_3d memory format (same values), the layout oneDNN's 3x3 conv is fastest in.
at::Tensor saf_forward(const at::Tensor& x, const at::Tensor& fused, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, bool with_beta, bool channels_last) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "saf_forward: float32/float64 only");
  TORCH_CHECK(!channels_last || x.dim() == 5, "saf_forward: channels_last needs [B, C, T, H, W]");
  auto out = at::empty_like(
      x, channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "saf_forward", [&] {
    const scalar_t* bptr = bias.has_value() && bias->defined() ? bias->data_ptr<scalar_t>() : nullptr;
    // Detached: OpenMP workers do not inherit the caller's no-grad mode, and mm_out refuses
    // tensors that require grad.
    saf_impl<scalar_t>(x, fused.detach(), weight.detach(), bptr, out, with_beta, channels_last);
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// upsample_tail: +bias, PixelShuffle(s), GELU, GTMLP (+residual) in one pass per
// (b, c, h): the T x s x W pre-activations of s output rows are gathered from y, and the
// T output rows of each of the s rows are written once.
// ---------------------------------------------------------------------------------------

struct TailDims {
  int64_t B, C, T, H, W, s;
  // Element strides of y's channel, frame, row and column: y is contiguous [B, C*s*s, T, H, W]
  // or channels_last_3d ([B, T, H, W, C*s*s] in memory); its batch stride is numel / B.
  int64_t sc, st, sh, sw;
  int64_t in_plane() const { return H * W; }
  int64_t out_plane() const { return H * s * W * s; }
  int64_t in_batch() const { return C * s * s * T * H * W; }
  bool channels_last() const { return sc == 1 && C * s * s > 1; }
};

// pre[t][j][w] = y[b, shuffle(c,i,j), t, h, w] + bias  (as A), for one output row i.
template <typename T, typename A>
void gather_row(const T* y, const T* conv_bias, const TailDims& d, int64_t b, int64_t c, int64_t h,
                int i, A* pre) {
  const int64_t W = d.W, sw = d.sw;
  for (int64_t t = 0; t < d.T; ++t)
    for (int j = 0; j < d.s; ++j) {
      const int64_t ch = dnerv::shuffle_in_channel(c, i, j, static_cast<int>(d.s));
      const T* src = y + b * d.in_batch() + ch * d.sc + t * d.st + h * d.sh;
      const A bias = conv_bias ? static_cast<A>(conv_bias[ch]) : A(0);
      A* dst = pre + (t * d.s + j) * W;
      if (sw == 1) {
        for (int64_t w = 0; w < W; ++w) dst[w] = static_cast<A>(src[w]) + bias;
      } else {
        for (int64_t w = 0; w < W; ++w) dst[w] = static_cast<A>(src[w * sw]) + bias;
      }
    }
}

// gather_row of both output rows i = 0, 1 for channels-last y and s = 2: the four input
// channels of (c, i, j) are adjacent, so each pixel is one 16-byte load, and a 4 x 4
// transpose of four pixels gives four rows (i, j) of the de-interleaved [t][j][w] layouts
// pre0 (i = 0) and pre1 (i = 1). Gathered row by row, two channels at a time, each value was
// a scalar load: the UVG-M last-stage tail took 50 ms from channels-last y, 23 ms from
// contiguous y.
template <typename T, typename A>
void gather_rows_quad(const T* y, const T* conv_bias, const TailDims& d, int64_t b, int64_t c,
                      int64_t h, A* pre0, A* pre1) {
  const int64_t W = d.W, sw = d.sw;
  const int64_t ch = dnerv::shuffle_in_channel(c, 0, 0, 2);
  A bias[4];
  for (int k = 0; k < 4; ++k) bias[k] = conv_bias ? static_cast<A>(conv_bias[ch + k]) : A(0);
  for (int64_t t = 0; t < d.T; ++t) {
    const T* src = y + b * d.in_batch() + ch + t * d.st + h * d.sh;
    A* rows[4] = {pre0 + 2 * t * W, pre0 + (2 * t + 1) * W, pre1 + 2 * t * W, pre1 + (2 * t + 1) * W};
    int64_t w = 0;
    if constexpr (std::is_same_v<T, float> && std::is_same_v<A, float>) {
      const __m128 vb = _mm_loadu_ps(bias);
      for (; w + 4 <= W; w += 4) {
        __m128 r0 = _mm_add_ps(_mm_loadu_ps(src + w * sw), vb);
        __m128 r1 = _mm_add_ps(_mm_loadu_ps(src + (w + 1) * sw), vb);
        __m128 r2 = _mm_add_ps(_mm_loadu_ps(src + (w + 2) * sw), vb);
        __m128 r3 = _mm_add_ps(_mm_loadu_ps(src + (w + 3) * sw), vb);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(rows[0] + w, r0);
        _mm_storeu_ps(rows[1] + w, r1);
        _mm_storeu_ps(rows[2] + w, r2);
        _mm_storeu_ps(rows[3] + w, r3);
      }
    }
    for (; w < W; ++w)
      for (int k = 0; k < 4; ++k) rows[k][w] = static_cast<A>(src[w * sw + k]) + bias[k];
  }
}

// o[w * s + j] = row[j * W + w]: the s de-interleaved sub-columns of an output row, woven
// back. s = 2 (every D-NeRV stage but the first) has its own loop, which vectorises.
template <typename A, typename T> void interleave_row(const A* row, int64_t s, int64_t W, T* o) {
  if (s == 2) {
    const A* even = row;
    const A* odd = row + W;
    for (int64_t w = 0; w < W; ++w) {
      o[2 * w] = static_cast<T>(even[w]);
      o[2 * w + 1] = static_cast<T>(odd[w]);
    }
    return;
  }
  for (int64_t j = 0; j < s; ++j)
    for (int64_t w = 0; w < W; ++w) o[w * s + j] = static_cast<T>(row[j * W + w]);
}

// dst[k] = GELU(src[k]) for k < n: float through the vectorised erf of cpu_gelu.h (exp-free
// and division-free), double through the scalar definition.
template <typename A> void gelu_row(const A* src, A* dst, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
    dnerv::simd::gelu_to(src, dst, n);
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k] = dnerv::gelu(src[k]);
  }
}

// mix[tp][k] = g[tp][k] + bias[tp] + sum_t w[tp][t] g[t][k] for k < n (g and mix [TT][n]):
// the GTMLP with its residual. A lane block's TT frames stay in registers for all TT outputs
// (streaming mix through L1 once per frame was a load, an FMA and a store per weight).
template <int TT>
void temporal_mix_f32(const float* g, int64_t n, const float* w, const float* bias, float* mix) {
  namespace v = dnerv::simd;
  int64_t k = 0;
  for (; k + v::kLanes <= n; k += v::kLanes) {
    v::vf x[TT];
    for (int t = 0; t < TT; ++t) x[t] = v::load(g + t * n + k);
    for (int tp = 0; tp < TT; ++tp) {
      v::vf acc = x[tp] + bias[tp];
      for (int t = 0; t < TT; ++t) acc = v::fma(v::splat(w[tp * TT + t]), x[t], acc);
      v::store(mix + tp * n + k, acc);
    }
  }
  for (; k < n; ++k)
    for (int tp = 0; tp < TT; ++tp) {
      float acc = g[tp * n + k] + bias[tp];
      for (int t = 0; t < TT; ++t) acc = std::fma(w[tp * TT + t], g[t * n + k], acc);
      mix[tp * n + k] = acc;
    }
}

// Whether the GTMLP loops of T frames take the register-blocked float kernels.
template <typename A> bool register_blocked(int64_t T) { return std::is_same_v<A, float> && T == 8; }

// temporal_mix_f32 for any T and accumulator type; one output frame at a time where not
// register_blocked.
template <typename A>
void temporal_mix(const A* g, int64_t T, int64_t n, const A* w, const A* bias, A* mix) {
  if constexpr (std::is_same_v<A, float>) {
    if (register_blocked<A>(T)) return temporal_mix_f32<8>(g, n, w, bias, mix);
  }
  for (int64_t tp = 0; tp < T; ++tp) {
    A* m = mix + tp * n;
    const A* gt = g + tp * n;
    for (int64_t k = 0; k < n; ++k) m[k] = gt[k] + bias[tp];
    for (int64_t t = 0; t < T; ++t) {
      const A wv = w[tp * T + t];
      const A* src = g + t * n;
      for (int64_t k = 0; k < n; ++k) m[k] += wv * src[k];
    }
  }
}

// dst[k] = GELU'(src[k]) for k < n (float vectorised, double scalar).
template <typename A> void gelu_grad_row(const A* src, A* dst, int64_t n) {
  if constexpr (std::is_same_v<A, float>) {
    dnerv::simd::gelu_grad_to(src, dst, n);
  } else {
    for (int64_t k = 0; k < n; ++k) dst[k] = dnerv::gelu_grad(src[k]);
  }
}

template <typename T>
void tail_forward_impl(const T* y, const T* conv_bias, const T* weight, const T* tfc_bias, T* out,
                       const TailDims& d) {
  using A = acc_t<T>;
  const int64_t row = d.s * d.W;  // one output row, de-interleaved as [j][w]
  // Channels-last input: neighbouring channels share cache lines, so c varies fastest
  // across tasks and each line of y is read from memory once.
  const bool c_fastest = d.channels_last();
  at::parallel_for(0, d.B * d.C * d.H, 1, [&](int64_t begin, int64_t stop) {
    std::vector<A> pre(d.s * d.T * row), mix(d.T * row), w(d.T * d.T), bt(d.T);
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t b = task / (d.H * d.C), rest = task % (d.H * d.C);
      const int64_t c = c_fastest ? rest % d.C : rest / d.H, h = c_fastest ? rest / d.C : rest % d.H;
      for (int64_t k = 0; k < d.T * d.T; ++k) w[k] = static_cast<A>(weight[c * d.T * d.T + k]);
      for (int64_t tp = 0; tp < d.T; ++tp) bt[tp] = tfc_bias ? static_cast<A>(tfc_bias[c * d.T + tp]) : A(0);
      const bool quad = c_fastest && d.s == 2;
      if (quad) gather_rows_quad(y, conv_bias, d, b, c, h, pre.data(), pre.data() + d.T * row);
      for (int i = 0; i < d.s; ++i) {
        A* g = pre.data() + i * d.T * row;
        if (!quad) gather_row(y, conv_bias, d, b, c, h, i, g);
        gelu_row(g, g, d.T * row);
        temporal_mix(g, d.T, row, w.data(), bt.data(), mix.data());
        const int64_t oy = h * d.s + i;
        for (int64_t tp = 0; tp < d.T; ++tp) {
          T* o = out + ((b * d.C + c) * d.T + tp) * d.out_plane() + oy * d.W * d.s;
          interleave_row(mix.data() + tp * row, d.s, d.W, o);
        }
      }
    }
  });
}

// Sum each length-n row of `rows` [m, n] into out[m] (+=).
template <typename A> void add_row_sums(const A* rows, int64_t m, int64_t n, A* out) {
  for (int64_t r = 0; r < m; ++r) {
    A sum = 0;
    for (int64_t k = 0; k < n; ++k) sum += rows[r * n + k];
    out[r] += sum;
  }
}

// lanes[(tp * TT + t) * kLanes + l] += the sum over k = l (mod kLanes), k < n, of
// go[tp][k] * g[t][k] (go and g [TT][n]): one row's share of the GTMLP weight gradient,
// accumulated in registers two output frames at a time (as TT * TT streams through L1, it was
// two loads, an FMA and a store per product).
template <int TT>
void weight_grad_lanes_f32(const float* go, const float* g, int64_t n, float* lanes) {
  namespace v = dnerv::simd;
  for (int tp0 = 0; tp0 < TT; tp0 += 2) {
    v::vf acc[2][TT] = {};
    auto step = [&](int64_t k, int64_t m) {
      v::vf x[TT];
      for (int t = 0; t < TT; ++t) x[t] = m == v::kLanes ? v::load(g + t * n + k) : v::load_part(g + t * n + k, m);
      for (int a = 0; a < 2; ++a) {
        const float* src = go + (tp0 + a) * n + k;
        const v::vf o = m == v::kLanes ? v::load(src) : v::load_part(src, m);
        for (int t = 0; t < TT; ++t) acc[a][t] = v::fma(o, x[t], acc[a][t]);
      }
    };
    int64_t k = 0;
    for (; k + v::kLanes <= n; k += v::kLanes) step(k, v::kLanes);
    if (k < n) step(k, n - k);
    for (int a = 0; a < 2; ++a)
      for (int t = 0; t < TT; ++t) {
        float* l = lanes + ((tp0 + a) * TT + t) * v::kLanes;
        v::store(l, v::load(l) + acc[a][t]);
      }
  }
}

// weight_grad_lanes_f32 for any T and accumulator type: lanes [T][T][n] (one per column)
// where not register_blocked, [T][T][kLanes] where it is.
template <typename A>
void weight_grad_lanes(const A* go, const A* g, int64_t T, int64_t n, A* lanes) {
  if constexpr (std::is_same_v<A, float>) {
    if (register_blocked<A>(T)) return weight_grad_lanes_f32<8>(go, g, n, lanes);
  }
  for (int64_t tp = 0; tp < T; ++tp)
    for (int64_t t = 0; t < T; ++t) {
      const A* gop = go + tp * n;
      const A* gt = g + t * n;
      A* lw = lanes + (tp * T + t) * n;
      for (int64_t k = 0; k < n; ++k) lw[k] += gop[k] * gt[k];
    }
}

// One task per output channel c, so the weight / bias gradients of c are owned by one
// thread (deterministic). They are accumulated lane-wise (vectorises: no reduction inside
// the hot loops) and reduced once per channel. The gradient through the temporal mix is the
// forward's mix with the weights transposed.
template <typename T>
void tail_backward_impl(const T* gout, const T* y, const T* conv_bias, const T* weight, T* gy,
                        acc_t<T>* gbias_conv, acc_t<T>* gweight, acc_t<T>* gbias_tfc,
                        const TailDims& d) {
  using A = acc_t<T>;
  const int64_t row = d.s * d.W, T_ = d.T, s = d.s;
  const int64_t CSS = d.C * s * s;
  const int64_t w_lanes = register_blocked<A>(T_) ? dnerv::simd::kLanes : row;  // per weight
  at::parallel_for(0, d.C, 1, [&](int64_t begin, int64_t stop) {
    std::vector<A> pre(T_ * row), g(T_ * row), go(T_ * row), gg(T_ * row), dg(row);
    std::vector<A> w_t(T_ * T_), no_bias(T_, A(0));
    std::vector<A> lane_w(T_ * T_ * w_lanes), lane_bt(T_ * row), lane_bc(s * row);
    for (int64_t c = begin; c < stop; ++c) {
      const T* wc = weight + c * T_ * T_;
      for (int64_t tp = 0; tp < T_; ++tp)
        for (int64_t t = 0; t < T_; ++t) w_t[t * T_ + tp] = static_cast<A>(wc[tp * T_ + t]);
      std::fill(lane_w.begin(), lane_w.end(), A(0));
      std::fill(lane_bt.begin(), lane_bt.end(), A(0));
      std::fill(lane_bc.begin(), lane_bc.end(), A(0));
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t h = 0; h < d.H; ++h)
          for (int i = 0; i < s; ++i) {
            gather_row(y, conv_bias, d, b, c, h, i, pre.data());
            gelu_row(pre.data(), g.data(), T_ * row);
            const int64_t oy = h * s + i;
            for (int64_t tp = 0; tp < T_; ++tp) {
              const T* src = gout + ((b * d.C + c) * T_ + tp) * d.out_plane() + oy * d.W * s;
              A* dst = go.data() + tp * row;
              for (int64_t j = 0; j < s; ++j)
                for (int64_t w = 0; w < d.W; ++w) dst[j * d.W + w] = static_cast<A>(src[w * s + j]);
              A* lb = lane_bt.data() + tp * row;
              for (int64_t k = 0; k < row; ++k) lb[k] += dst[k];
            }
            weight_grad_lanes(go.data(), g.data(), T_, row, lane_w.data());
            // gg[t] = go[t] + sum_tp W[tp][t] go[tp]: the gradient through the GTMLP.
            temporal_mix(go.data(), T_, row, w_t.data(), no_bias.data(), gg.data());
            A* lbc = lane_bc.data() + i * row;  // [i][j][w]: input channel (c, i, j)
            for (int64_t t = 0; t < T_; ++t) {
              A* ggt = gg.data() + t * row;
              gelu_grad_row(pre.data() + t * row, dg.data(), row);
              for (int64_t k = 0; k < row; ++k) {
                ggt[k] *= dg[k];
                lbc[k] += ggt[k];
              }
              for (int j = 0; j < s; ++j) {
                const int64_t ch = dnerv::shuffle_in_channel(c, i, j, static_cast<int>(s));
                T* dst = gy + ((b * CSS + ch) * T_ + t) * d.in_plane() + h * d.W;
                const A* src = ggt + j * d.W;
                for (int64_t w = 0; w < d.W; ++w) dst[w] = static_cast<T>(src[w]);
              }
            }
          }
      add_row_sums(lane_w.data(), T_ * T_, w_lanes, gweight + c * T_ * T_);
      add_row_sums(lane_bt.data(), T_, row, gbias_tfc + c * T_);
      add_row_sums(lane_bc.data(), s * s, d.W, gbias_conv + c * s * s);
    }
  });
}

// y: contiguous or channels_last_3d.
TailDims tail_dims(const at::Tensor& y, int64_t s) {
  TORCH_CHECK(y.is_contiguous() || y.is_contiguous(at::MemoryFormat::ChannelsLast3d),
              "upsample_tail: y must be contiguous or channels_last_3d");
  return {y.size(0), y.size(1) / (s * s), y.size(2), y.size(3), y.size(4), s,
          y.stride(1), y.stride(2), y.stride(3), y.stride(4)};
}

template <typename T> const T* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

at::Tensor upsample_tail_forward(const at::Tensor& y, const c10::optional<at::Tensor>& conv_bias,
                                 int64_t s, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& tfc_bias) {
  const TailDims d = tail_dims(y, s);
  auto out = at::empty({d.B, d.C, d.T, d.H * s, d.W * s}, y.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_tail_forward", [&] {
    tail_forward_impl<scalar_t>(y.data_ptr<scalar_t>(), opt_ptr<scalar_t>(conv_bias),
                                weight.data_ptr<scalar_t>(), opt_ptr<scalar_t>(tfc_bias),
                                out.data_ptr<scalar_t>(), d);
  });
  return out;
}

// Returns (grad_y, grad_conv_bias [C*s*s], grad_tfc_weight [C*T, T], grad_tfc_bias [C*T]).
std::vector<at::Tensor> upsample_tail_backward(const at::Tensor& gout, const at::Tensor& y,
                                               const c10::optional<at::Tensor>& conv_bias, int64_t s,
                                               const at::Tensor& weight) {
  const TailDims d = tail_dims(y, s);
  const auto acc_opts = y.options().dtype(acc_scalar_type(y.scalar_type()));
  auto gy = at::empty_like(y, at::MemoryFormat::Contiguous);
  auto gbc = at::zeros({d.C * s * s}, acc_opts);
  auto gw = at::zeros({d.C * d.T, d.T}, acc_opts);
  auto gbt = at::zeros({d.C * d.T}, acc_opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_tail_backward", [&] {
    using A = acc_t<scalar_t>;
    tail_backward_impl<scalar_t>(gout.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                 opt_ptr<scalar_t>(conv_bias), weight.data_ptr<scalar_t>(),
                                 gy.data_ptr<scalar_t>(), gbc.data_ptr<A>(), gw.data_ptr<A>(),
                                 gbt.data_ptr<A>(), d);
  });
  const auto dtype = y.scalar_type();
  return {gy, gbc.to(dtype), gw.to(dtype), gbt.to(dtype)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dnerv_fast CPU kernels";
  m.def("flow_warp_forward", &flow_warp_forward);
  m.def("flow_warp_backward", &flow_warp_backward);
  m.def("saf_forward", &saf_forward);
  m.def("upsample_tail_forward", &upsample_tail_forward);
  m.def("upsample_tail_backward", &upsample_tail_backward);
  // Floats per SIMD vector this build uses (16: AVX-512, 8: AVX2), for tests and reports.
  m.attr("simd_lanes") = dnerv::simd::kLanes;
  dnerv_cpu::bind_winograd(m);
  dnerv_cpu::bind_heads(m);
}
