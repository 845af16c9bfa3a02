// Winograd F(m x m, 3 x 3) convolution (m = 2 or 4), stride 1, padding 1, fp32, on frames
// in channels-last memory ([N, H, W, C]). No torch headers: the caller passes its parallel-for.
//
// Per block of tiles: input tiles are transformed (B^T d B, vectorised over channels) into
// V[point][tile][c_in]; each of the (m+2)^2 points is a GEMM M[point] = V[point] x U[point]
// over input channels with the weights transformed once (U = G g G^T, packed in panels of
// kPanel output channels); the output transform A^T M A writes channels-last output. The
// block's V and M stay in the core's L2, so the transformed data never goes to memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu_simd.h"

namespace dnerv::wino {

using simd::kLanes;
using simd::vf;

constexpr int kRows = 6;                 // tiles per micro-kernel call (register rows)
constexpr int kPanel = 2 * kLanes;       // output channels per packed weight panel
constexpr int64_t kBlockTiles = 8 * kRows;  // tiles per block
constexpr int64_t kCoutBlock = 64;       // output channels per GEMM block (a multiple of kPanel)

template <int M> constexpr int alpha() { return M + 2; }
template <int M> constexpr int points() { return alpha<M>() * alpha<M>(); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// G of F(m, 3) (alpha x 3), for the weight transform (done in double).
template <int M> constexpr double kG[alpha<M>()][3] = {};
template <> constexpr double kG<2>[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
template <> constexpr double kG<4>[6][3] = {
    {1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

// t = B^T d on alpha values (interpolation points 0, 1, -1 [, 2, -2], infinity).
template <int M> inline void input_1d(const vf* d, vf* t);
template <> inline void input_1d<2>(const vf* d, vf* t) {
  t[0] = d[0] - d[2];
  t[1] = d[1] + d[2];
  t[2] = d[2] - d[1];
  t[3] = d[1] - d[3];
}
template <> inline void input_1d<4>(const vf* d, vf* t) {
  const vf four = simd::splat(4.0f), five = simd::splat(5.0f), two = simd::splat(2.0f);
  t[0] = four * d[0] - five * d[2] + d[4];
  t[1] = (d[3] + d[4]) - four * (d[1] + d[2]);
  t[2] = (d[4] - d[3]) + four * (d[1] - d[2]);
  t[3] = (d[4] - d[2]) - two * (d[1] - d[3]);
  t[4] = (d[4] - d[2]) + two * (d[1] - d[3]);
  t[5] = four * d[1] - five * d[3] + d[5];
}

// o = A^T m: alpha values to m outputs.
template <int M> inline void output_1d(const vf* m, vf* o);
template <> inline void output_1d<2>(const vf* m, vf* o) {
  o[0] = m[0] + m[1] + m[2];
  o[1] = m[1] - m[2] - m[3];
}
template <> inline void output_1d<4>(const vf* m, vf* o) {
  const vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
  o[0] = m[0] + a + c;
  o[1] = b + simd::splat(2.0f) * d;
  o[2] = a + simd::splat(4.0f) * c;
  o[3] = b + simd::splat(8.0f) * d + m[5];
}

// Size in floats of the packed transformed weights of a [cout, cin, 3, 3] kernel.
template <int M> int64_t packed_size(int64_t cout, int64_t cin) {
  return points<M>() * ceil_div(cout, kPanel) * cin * kPanel;
}

// U[point][panel][c_in][kPanel] = (G g G^T)[point] of w [cout, cin, 3, 3] (contiguous) for
// output channels [o0, o1); u must be zero-filled first (lanes past cout stay zero). Computed
// in double, rounded once.
template <int M> void pack_weights(const float* w, int64_t cout, int64_t cin, int64_t o0, int64_t o1, float* u) {
  constexpr int A = alpha<M>();
  const int64_t panels = ceil_div(cout, kPanel);
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t i = 0; i < cin; ++i) {
      const float* g = w + (o * cin + i) * 9;
      double gt[A][3];  // G g
      for (int r = 0; r < A; ++r)
        for (int q = 0; q < 3; ++q)
          gt[r][q] = kG<M>[r][0] * g[q] + kG<M>[r][1] * g[3 + q] + kG<M>[r][2] * g[6 + q];
      for (int r = 0; r < A; ++r)
        for (int q = 0; q < A; ++q) {
          const double v = gt[r][0] * kG<M>[q][0] + gt[r][1] * kG<M>[q][1] + gt[r][2] * kG<M>[q][2];
          const int64_t point = r * A + q;
          u[((point * panels + o / kPanel) * cin + i) * kPanel + o % kPanel] = static_cast<float>(v);
        }
    }
}

// c[kRows][kPanel] (row stride ldc) = a[kRows][k] (row stride lda) x b[k][kPanel].
inline void micro_kernel(const float* a, int64_t lda, const float* b, int64_t k, float* c, int64_t ldc) {
  vf acc[kRows][2] = {};
  for (int64_t p = 0; p < k; ++p) {
    const vf b0 = simd::load(b + p * kPanel), b1 = simd::load(b + p * kPanel + kLanes);
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const vf ar = simd::splat(a[r * lda + p]);
      acc[r][0] = simd::fma(ar, b0, acc[r][0]);
      acc[r][1] = simd::fma(ar, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    simd::store(c + r * ldc, acc[r][0]);
    simd::store(c + r * ldc + kLanes, acc[r][1]);
  }
}

struct ConvShape {
  int64_t N, H, W, cin, cout;  // frames [N, H, W, cin] -> [N, H, W, cout]
};

template <int M> struct Plan {
  ConvShape s;
  int64_t tiles_h, tiles_w, tiles, block, blocks, cin_pad, cout_blocks, groups;

  Plan(const ConvShape& shape, int threads) : s(shape) {
    tiles_h = ceil_div(s.H, M);
    tiles_w = ceil_div(s.W, M);
    tiles = s.N * tiles_h * tiles_w;
    block = std::min<int64_t>(kBlockTiles, round_up(tiles, kRows));
    blocks = ceil_div(tiles, block);
    cin_pad = round_up(s.cin, kLanes);
    cout_blocks = ceil_div(s.cout, kCoutBlock);
    // Few tile blocks (small maps): split the output channels too, so every thread has work.
    groups = std::min(cout_blocks, std::max<int64_t>(1, ceil_div(2 * threads, blocks)));
  }
  int64_t tasks() const { return blocks * groups; }
  int64_t v_size() const { return points<M>() * block * cin_pad; }
  int64_t m_size() const { return points<M>() * block * kCoutBlock; }
};

// V[point][i][c] of the tiles [first, first + block) (rows past the last tile are zero).
template <int M> void input_transform(const float* x, const Plan<M>& p, int64_t first, float* v) {
  constexpr int A = alpha<M>();
  const ConvShape& s = p.s;
  const int64_t plane = p.block * p.cin_pad;
  for (int64_t i = 0; i < p.block; ++i) {
    const int64_t g = first + i;
    if (g >= p.tiles) {
      for (int pt = 0; pt < points<M>(); ++pt) std::fill_n(v + pt * plane + i * p.cin_pad, p.cin_pad, 0.0f);
      continue;
    }
    const int64_t n = g / (p.tiles_h * p.tiles_w), rest = g % (p.tiles_h * p.tiles_w);
    const int64_t h0 = (rest / p.tiles_w) * M - 1, w0 = (rest % p.tiles_w) * M - 1;
    const float* frame = x + n * s.H * s.W * s.cin;
    for (int64_t c0 = 0; c0 < s.cin; c0 += kLanes) {
      const int64_t nc = std::min<int64_t>(kLanes, s.cin - c0);
      vf t[A][A];  // B^T d, column by column
      for (int q = 0; q < A; ++q) {
        const int64_t w = w0 + q;
        vf d[A];
        for (int r = 0; r < A; ++r) {
          const int64_t h = h0 + r;
          if (h < 0 || h >= s.H || w < 0 || w >= s.W) {
            d[r] = vf{};
          } else {
            const float* px = frame + (h * s.W + w) * s.cin + c0;
            d[r] = nc == kLanes ? simd::load(px) : simd::load_part(px, nc);
          }
        }
        vf col[A];
        input_1d<M>(d, col);
        for (int r = 0; r < A; ++r) t[r][q] = col[r];
      }
      for (int r = 0; r < A; ++r) {
        vf row[A];
        input_1d<M>(t[r], row);
        for (int q = 0; q < A; ++q) simd::store(v + (r * A + q) * plane + i * p.cin_pad + c0, row[q]);
      }
    }
  }
}

// y (channels-last) of the block's tiles for output channels [c_first, c_first + kCoutBlock)
// from m[point][i][kCoutBlock].
template <int M>
void output_transform(const float* m, const float* bias, const Plan<M>& p, int64_t first,
                      int64_t c_first, float* y) {
  constexpr int A = alpha<M>();
  const ConvShape& s = p.s;
  const int64_t plane = p.block * kCoutBlock;
  const int64_t c_end = std::min(s.cout, c_first + kCoutBlock);
  for (int64_t i = 0; i < p.block && first + i < p.tiles; ++i) {
    const int64_t g = first + i;
    const int64_t n = g / (p.tiles_h * p.tiles_w), rest = g % (p.tiles_h * p.tiles_w);
    const int64_t h0 = (rest / p.tiles_w) * M, w0 = (rest % p.tiles_w) * M;
    const int64_t rows = std::min<int64_t>(M, s.H - h0), cols = std::min<int64_t>(M, s.W - w0);
    float* frame = y + n * s.H * s.W * s.cout;
    for (int64_t c0 = c_first; c0 < c_end; c0 += kLanes) {
      const int64_t nc = std::min<int64_t>(kLanes, c_end - c0);
      const float* mi = m + i * kCoutBlock + (c0 - c_first);
      vf t[M][A];  // A^T m, column by column
      for (int q = 0; q < A; ++q) {
        vf col[A], out[M];
        for (int r = 0; r < A; ++r) col[r] = simd::load(mi + (r * A + q) * plane);
        output_1d<M>(col, out);
        for (int r = 0; r < M; ++r) t[r][q] = out[r];
      }
      const vf b = bias ? (nc == kLanes ? simd::load(bias + c0) : simd::load_part(bias + c0, nc)) : vf{};
      for (int r = 0; r < rows; ++r) {
        vf out[M];
        output_1d<M>(t[r], out);
        float* dst = frame + ((h0 + r) * s.W + w0) * s.cout + c0;
        for (int q = 0; q < cols; ++q) {
          if (nc == kLanes) {
            simd::store(dst + q * s.cout, out[q] + b);
          } else {
            simd::store_part(dst + q * s.cout, out[q] + b, nc);
          }
        }
      }
    }
  }
}

// One task: a block of tiles and a range of output-channel blocks.
template <int M>
void conv_task(const float* x, const float* u, const float* bias, float* y, const Plan<M>& p,
               int64_t task, std::vector<float>& vbuf, std::vector<float>& mbuf) {
  const int64_t blk = task / p.groups, grp = task % p.groups;
  const int64_t per = ceil_div(p.cout_blocks, p.groups);
  const int64_t cb0 = grp * per, cb1 = std::min(p.cout_blocks, cb0 + per);
  if (cb0 >= cb1) return;
  if (static_cast<int64_t>(vbuf.size()) < p.v_size()) vbuf.resize(p.v_size());
  if (static_cast<int64_t>(mbuf.size()) < p.m_size()) mbuf.resize(p.m_size());
  float* v = vbuf.data();
  float* m = mbuf.data();
  const int64_t first = blk * p.block;
  input_transform<M>(x, p, first, v);
  const int64_t panels = ceil_div(p.s.cout, kPanel);
  const int64_t vplane = p.block * p.cin_pad, mplane = p.block * kCoutBlock;
  const int64_t rows = round_up(std::min(p.block, p.tiles - first), kRows);
  for (int64_t cb = cb0; cb < cb1; ++cb) {
    const int64_t pan0 = cb * (kCoutBlock / kPanel);
    const int64_t pan1 = std::min(panels, pan0 + kCoutBlock / kPanel);
    for (int pt = 0; pt < points<M>(); ++pt)
      for (int64_t pan = pan0; pan < pan1; ++pan) {
        const float* b = u + (pt * panels + pan) * p.s.cin * kPanel;
        for (int64_t r = 0; r < rows; r += kRows)
          micro_kernel(v + pt * vplane + r * p.cin_pad, p.cin_pad, b, p.s.cin,
                       m + pt * mplane + r * kCoutBlock + (pan - pan0) * kPanel, kCoutBlock);
      }
    output_transform<M>(m, bias, p, first, cb * kCoutBlock, y);
  }
}

// y [N, H, W, cout] = conv3x3(x [N, H, W, cin], pad 1) + bias, from weights packed by
// pack_weights<M>. parallel_for(n, body) runs body(begin, end) over [0, n) on the threads.
template <int M, typename ParallelFor>
void conv3x3(const float* x, const float* u, const float* bias, float* y, const ConvShape& s,
             int threads, const ParallelFor& parallel_for) {
  const Plan<M> plan(s, threads);
  parallel_for(plan.tasks(), [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> vbuf, mbuf;
    for (int64_t task = begin; task < end; ++task) conv_task<M>(x, u, bias, y, plan, task, vbuf, mbuf);
  });
}

}  // namespace dnerv::wino
