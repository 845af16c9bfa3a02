// Fused D-NeRV head for float on the CPU: 1x1 conv (C -> hidden), exact GELU, 3x3 conv pad 1
// (hidden -> O = 3 or 4), per frame, without the hidden map going to memory. No torch headers.
//
// A task owns a band of kBandRows output rows of one frame and walks it top to bottom,
// keeping the hidden rows h-1, h, h+1 (GELU applied, zero columns either side for the
// padding) in a three-row ring in L1/L2: each hidden row is computed once per band (plus two
// halo rows) by a register-blocked GEMM over the input's channels, and each output row is
// summed from the ring. The input may come in two channel parts (the RGB head's
// cat([x, fused_rgb]) is never built).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_gelu.h"
#include "cpu_simd.h"

namespace dnerv::heads {

using simd::kLanes;
using simd::vf;

// Hidden channels per GEMM micro-kernel call: 2 x kHidRows accumulators, as many as the
// registers hold beside the operands (32 AVX-512 registers, 16 AVX2 ones).
constexpr int kHidRows = kLanes == 16 ? 8 : 6;
constexpr int kCols = 2 * kLanes;        // pixels per GEMM micro-kernel call
constexpr int64_t kBandRows = 32;        // output rows per task

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

struct HeadShape {
  int64_t B, T, H, W;
  int64_t c0, c1;     // channels of the two input parts (c1 = 0: one part)
  int64_t hidden;     // 1x1 output channels
};

// One channel part of the input: channel k of the current frame's row at base + k * stride.
struct Part {
  const float* base;
  int64_t channels, stride;
};

// c[kHidRows][kCols] (row stride ldc) = a[kHidRows][k0 + k1] (row stride lda) x [part0; part1],
// each part a [k][kCols] block with its own row stride.
inline void pointwise_kernel(const float* a, int64_t lda, const Part (&parts)[2], int64_t col, float* c,
                             int64_t ldc) {
  vf acc[kHidRows][2] = {};
  int64_t k0 = 0;
  for (const Part& part : parts) {
    for (int64_t k = 0; k < part.channels; ++k) {
      const float* b = part.base + k * part.stride + col;
      const vf b0 = simd::load(b), b1 = simd::load(b + kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < kHidRows; ++r) {
        const vf ar = simd::splat(a[r * lda + k0 + k]);
        acc[r][0] = simd::fma(ar, b0, acc[r][0]);
        acc[r][1] = simd::fma(ar, b1, acc[r][1]);
      }
    }
    k0 += part.channels;
  }
  for (int r = 0; r < kHidRows; ++r) {
    simd::store(c + r * ldc, acc[r][0]);
    simd::store(c + r * ldc + kLanes, acc[r][1]);
  }
}

// Per-thread scratch of a band.
struct Scratch {
  std::vector<float> ring;   // [3][hidden_pad][pitch]
  std::vector<float> block;      // one column block of the input, packed: [c0 + c1][kCols]
  std::vector<float> block_out;  // a partial block's GEMM result: [kHidRows][kCols]
};

template <int O> class Head {
 public:
  // w1 [hidden, c0 + c1], b1 [hidden], w2 [O, hidden, 3, 3], b2 [O] (all contiguous).
  Head(const HeadShape& s, const float* w1, const float* b1, const float* w2, const float* b2)
      : s_(s), b1_(b1), w2_(w2), b2_(b2) {
    hidden_pad_ = round_up(s.hidden, kHidRows);
    pitch_ = round_up(s.W + 2, kLanes) + kLanes;
    const int64_t C = s.c0 + s.c1;
    w1_.assign(hidden_pad_ * C, 0.0f);
    std::copy(w1, w1 + s.hidden * C, w1_.begin());
  }

  int64_t bands() const { return (s_.H + kBandRows - 1) / kBandRows; }
  int64_t tasks() const { return s_.B * s_.T * bands(); }

  // Output rows of one band of one frame: x0 [B, c0, T, H, W], x1 [B, c1, T, H, W] -> y [B, O, T, H, W].
  void run(const float* x0, const float* x1, float* y, int64_t task, Scratch& sc) const {
    const int64_t frame = task / bands(), h0 = (task % bands()) * kBandRows;
    const int64_t h1 = std::min(s_.H, h0 + kBandRows);
    const int64_t b = frame / s_.T, t = frame % s_.T, HW = s_.H * s_.W, THW = s_.T * HW;
    const float* f0 = x0 + (b * s_.c0 * s_.T + t) * HW;
    const float* f1 = x1 ? x1 + (b * s_.c1 * s_.T + t) * HW : nullptr;
    float* out = y + (b * O * s_.T + t) * HW;
    const int64_t slot = hidden_pad_ * pitch_;
    sc.ring.assign(3 * slot, 0.0f);
    sc.block.resize((s_.c0 + s_.c1) * kCols);
    sc.block_out.resize(kHidRows * kCols);
    auto ring = [&](int64_t h) { return sc.ring.data() + ((h + 3) % 3) * slot; };
    hidden_row(f0, f1, THW, h0 - 1, ring(h0 - 1), sc);
    hidden_row(f0, f1, THW, h0, ring(h0), sc);
    for (int64_t h = h0; h < h1; ++h) {
      hidden_row(f0, f1, THW, h + 1, ring(h + 1), sc);
      output_row(ring(h - 1), ring(h), ring(h + 1), out + h * s_.W, THW);
    }
  }

 private:
  // GELU(W1 x + b1) of input row h into dst [hidden_pad][pitch] (columns 1..W); zero outside the frame.
  void hidden_row(const float* f0, const float* f1, int64_t THW, int64_t h, float* dst, Scratch& sc) const {
    const int64_t W = s_.W, C = s_.c0 + s_.c1;
    if (h < 0 || h >= s_.H) {
      std::fill(dst, dst + hidden_pad_ * pitch_, 0.0f);
      return;
    }
    const Part parts[2] = {{f0 + h * W, s_.c0, THW}, {f1 ? f1 + h * W : nullptr, s_.c1, THW}};
    // Each block of kCols columns is first packed contiguous ([C][kCols], zero-padded past W):
    // the input's channel rows lie T*H*W floats apart, which maps them onto few L1 sets.
    float* packed = sc.block.data();
    const Part block[2] = {{packed, C, kCols}, {nullptr, 0, 0}};
    for (int64_t col = 0; col < W; col += kCols) {
      const int64_t n = std::min<int64_t>(kCols, W - col);
      int64_t k = 0;
      for (const Part& part : parts)
        for (int64_t c = 0; c < part.channels; ++c, ++k) {
          std::copy_n(part.base + c * part.stride + col, n, packed + k * kCols);
          std::fill(packed + k * kCols + n, packed + (k + 1) * kCols, 0.0f);
        }
      for (int64_t r = 0; r < hidden_pad_; r += kHidRows) {
        if (n == kCols) {
          pointwise_kernel(w1_.data() + r * C, C, block, 0, dst + r * pitch_ + 1 + col, pitch_);
        } else {
          pointwise_kernel(w1_.data() + r * C, C, block, 0, sc.block_out.data(), kCols);
          for (int q = 0; q < kHidRows; ++q)
            std::copy_n(sc.block_out.data() + q * kCols, n, dst + (r + q) * pitch_ + 1 + col);
        }
      }
    }
    for (int64_t c = 0; c < s_.hidden; ++c) simd::gelu_inplace(dst + c * pitch_ + 1, W, b1_ ? b1_[c] : 0.0f);
  }

  // y[o][h][:] = b2[o] + sum over hidden channels and the 3x3 window of the ring rows.
  void output_row(const float* up, const float* mid, const float* down, float* y, int64_t THW) const {
    const float* rows[3] = {up, mid, down};
    for (int64_t w0 = 0; w0 < s_.W; w0 += kLanes) {
      vf acc[O];
      for (int o = 0; o < O; ++o) acc[o] = simd::splat(b2_ ? b2_[o] : 0.0f);
      for (int64_t c = 0; c < s_.hidden; ++c)
        for (int ky = 0; ky < 3; ++ky) {
          const float* src = rows[ky] + c * pitch_ + w0;  // column w0 - 1 of the padded row
#pragma GCC unroll 3
          for (int kx = 0; kx < 3; ++kx) {
            const vf v = simd::load(src + kx);
#pragma GCC unroll 4
            for (int o = 0; o < O; ++o)
              acc[o] = simd::fma(simd::splat(w2_[((o * s_.hidden + c) * 3 + ky) * 3 + kx]), v, acc[o]);
          }
        }
      const int64_t n = std::min<int64_t>(kLanes, s_.W - w0);
      for (int o = 0; o < O; ++o) {
        if (n == kLanes) {
          simd::store(y + o * THW + w0, acc[o]);
        } else {
          simd::store_part(y + o * THW + w0, acc[o], n);
        }
      }
    }
  }

  HeadShape s_;
  const float *b1_, *w2_, *b2_;
  int64_t hidden_pad_, pitch_;
  std::vector<float> w1_;  // [hidden_pad, c0 + c1], rows past hidden zero
};

// y [B, O, T, H, W] = head(cat([x0, x1], 1)); parallel_for(n, body) runs body(begin, end).
template <int O, typename ParallelFor>
void head_forward(const float* x0, const float* x1, const float* w1, const float* b1, const float* w2,
                  const float* b2, float* y, const HeadShape& s, const ParallelFor& parallel_for) {
  const Head<O> head(s, w1, b1, w2, b2);
  parallel_for(head.tasks(), [&](int64_t begin, int64_t end) {
    thread_local Scratch scratch;
    for (int64_t task = begin; task < end; ++task) head.run(x0, x1, y, task, scratch);
  });
}

}  // namespace dnerv::heads
