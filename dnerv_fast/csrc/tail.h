// upsample_tail on CPU, forward and backward: the torch-free core (bound in cpu_tail.cpp, run
// without torch by tests/cpu_core). Computes in float for float/half/bfloat16, in double for
// double; deterministic: every reduction is owned by one thread and summed in a fixed order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_gelu.h"
#include "cpu_parallel.h"
#include "cpu_simd.h"
#include "dnerv_math.h"

namespace dnerv::tail {

using dnerv::acc_t;

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
      namespace v = dnerv::simd;
      const v::vf4 vb = v::load4(bias);
      for (; w + 4 <= W; w += 4) {
        v::vf4 r[4] = {v::load4(src + w * sw) + vb, v::load4(src + (w + 1) * sw) + vb,
                       v::load4(src + (w + 2) * sw) + vb, v::load4(src + (w + 3) * sw) + vb};
        v::transpose4(r);
        for (int k = 0; k < 4; ++k) v::store4(rows[k] + w, r[k]);
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
  dnerv::parallel_for(d.B * d.C * d.H, [&](int64_t begin, int64_t stop) {
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
  dnerv::parallel_for(d.C, [&](int64_t begin, int64_t stop) {
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

}  // namespace dnerv::tail
