// CUDA kernels of the fused training loss (pixel error + 1 - SSIM), forward and backward.
//
// Forward: one block per tile of kTileW x TileH window positions of one plane. The input
// tile (plus the w - 1 pixel apron) goes to shared memory once; the horizontal 11-tap pass of
// the five statistics (x, y, xx, yy, xy) writes a shared buffer, the vertical pass reads it
// into registers and feeds the SSIM formula (ssim_math.h). No blurred map reaches global
// memory; the derivative maps the backward needs are written when asked for. Per-block
// partial sums (fixed-order block reduction) are added by the caller: deterministic.
//
// Backward: one block per tile of input pixels; the derivative maps of every window that
// covers the tile go to shared memory, then the adjoint blur (the blur of the zero-padded
// map) runs horizontally then vertically, and the pixel-error derivative is added.
#include "cuda_common.cuh"
#include "cuda_loss.h"
#include "ssim_math.h"

namespace dnerv_cuda {
namespace {

namespace ssim = dnerv::ssim;

constexpr int kTileW = 32;    // window positions (forward) / pixels (backward) per block row
constexpr int kRowsPerPass = 8;  // threadIdx.y
constexpr int kThreads = kTileW * kRowsPerPass;
constexpr int kApron = ssim::kMaxWindow - 1;

// Tile height: 16 rows in float, 8 in double (shared memory stays under 48 KB).
template <typename A> struct Tile { static constexpr int h = 16; };
template <> struct Tile<double> { static constexpr int h = 8; };

template <typename A> struct Taps {
  A g[ssim::kMaxWindow];
  int w;
};

template <typename A> Taps<A> make_taps(const double* taps, int w) {
  Taps<A> t{};
  for (int k = 0; k < w; ++k) t.g[k] = static_cast<A>(taps[k]);
  t.w = w;
  return t;
}

// Sum of v over the block (every thread passes a value; thread 0 gets the result).
template <typename A> __device__ A block_sum(A v, A* scratch) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  if ((tid & 31) == 0) scratch[tid >> 5] = v;
  __syncthreads();
  A total = A(0);
  if (tid == 0)
    for (int i = 0; i < kThreads / 32; ++i) total += scratch[i];
  __syncthreads();
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
loss_forward_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ vis,
                    Taps<acc_t<T>> taps, int power, acc_t<T>* __restrict__ partials,
                    acc_t<T>* __restrict__ maps, int64_t C, int64_t H, int64_t W, int64_t Wp) {
  using A = acc_t<T>;
  constexpr int TH = Tile<A>::h;
  constexpr int RH = TH + kApron, RW = kTileW + kApron;
  __shared__ A xs[RH][RW + 1];
  __shared__ A ys[RH][RW + 1];
  __shared__ float vs[RH][RW + 1];
  __shared__ A hs[5][RH][kTileW];
  __shared__ float hv[RH][kTileW];
  __shared__ A scratch[kThreads / 32];
  const int w = taps.w;
  const int64_t Ho = H - w + 1, Wo = W - w + 1;
  const int64_t plane = blockIdx.z;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * TH, j0 = static_cast<int64_t>(blockIdx.x) * kTileW;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTileW + tx;
  const T* xp = x + plane * H * W;
  const T* yp = y + plane * H * W;
  const T* vp = vis ? vis + (plane / C) * H * W : nullptr;
  // Rows / columns of input this block counts the pixel error of: its own TH x kTileW, and
  // everything up to the edge in the last block of a row or column of blocks.
  const int own_h = blockIdx.y + 1 == gridDim.y ? RH : TH;
  const int own_w = blockIdx.x + 1 == gridDim.x ? RW : kTileW;
  A err = A(0), seen = A(0);
  for (int idx = tid; idx < RH * RW; idx += kThreads) {
    const int r = idx / RW, c = idx % RW;
    const int64_t gr = i0 + r, gc = j0 + c;
    const bool in = gr < H && gc < W;
    const A xv = in ? load(xp, gr * W + gc) : A(0);
    const A yv = in ? load(yp, gr * W + gc) : A(0);
    const float vv = in && vp ? static_cast<float>(load(vp, gr * W + gc)) : 1.0f;
    xs[r][c] = xv;
    ys[r][c] = yv;
    vs[r][c] = vv;
    if (in && r < own_h && c < own_w) {
      err += ssim::pixel_error<A, A>(xv - yv, power) * static_cast<A>(vv);
      seen += static_cast<A>(vv);
    }
  }
  __syncthreads();
  // Horizontal pass over every apron row.
  for (int idx = tid; idx < RH * kTileW; idx += kThreads) {
    const int r = idx / kTileW, c = idx % kTileW;
    A s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    float vm = 1.0f;
#pragma unroll
    for (int k = 0; k < ssim::kMaxWindow; ++k) {
      if (k >= w) break;  // static tap indices: the taps stay in registers
      const A g = taps.g[k], xv = xs[r][c + k], yv = ys[r][c + k];
      s0 += g * xv;
      s1 += g * yv;
      s2 += g * xv * xv;
      s3 += g * yv * yv;
      s4 += g * xv * yv;
      vm = fminf(vm, vs[r][c + k]);
    }
    hs[0][r][c] = s0;
    hs[1][r][c] = s1;
    hs[2][r][c] = s2;
    hs[3][r][c] = s3;
    hs[4][r][c] = s4;
    hv[r][c] = vm;
  }
  __syncthreads();
  A dis = A(0), windows = A(0);
  const int64_t P = gridDim.z;
  for (int r = ty; r < TH; r += kRowsPerPass) {
    const int64_t i = i0 + r, j = j0 + tx;
    if (i >= Ho || j >= Wo) continue;
    A mx = 0, my = 0, exx = 0, eyy = 0, exy = 0;
    float vm = 1.0f;
#pragma unroll
    for (int k = 0; k < ssim::kMaxWindow; ++k) {
      if (k >= w) break;  // static tap indices: the taps stay in registers
      const A g = taps.g[k];
      mx += g * hs[0][r + k][tx];
      my += g * hs[1][r + k][tx];
      exx += g * hs[2][r + k][tx];
      eyy += g * hs[3][r + k][tx];
      exy += g * hs[4][r + k][tx];
      vm = fminf(vm, hv[r + k][tx]);
    }
    const A weight = static_cast<A>(vm);
    A d0, d1, d2;
    const A s = ssim::ssim_and_grads<A, A>(mx, my, exx, eyy, exy, weight, d0, d1, d2);
    dis += weight * (A(1) - s);
    windows += weight;
    if (maps) {
      const int64_t off = (plane * Ho + i) * Wp + j, stride = P * Ho * Wp;
      maps[off] = d0;
      maps[stride + off] = d1;
      maps[2 * stride + off] = d2;
    }
  }
  const A sums[4] = {err, dis, seen, windows};
  const int64_t block = (plane * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const A total = block_sum(sums[k], scratch);
    if (tid == 0) partials[block * 4 + k] = total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
loss_backward_kernel(const double* __restrict__ grad_sums, const T* __restrict__ x,
                     const T* __restrict__ y, const T* __restrict__ vis,
                     const acc_t<T>* __restrict__ maps, Taps<acc_t<T>> taps, int power,
                     T* __restrict__ grad_x, int64_t C, int64_t H, int64_t W, int64_t Wp) {
  using A = acc_t<T>;
  constexpr int TH = Tile<A>::h;
  constexpr int RH = TH + kApron, RW = kTileW + kApron;
  __shared__ A ms[3][RH][RW + 1];
  __shared__ A hs[3][RH][kTileW];
  const int w = taps.w, pad = w - 1;
  const int64_t Ho = H - w + 1, Wo = W - w + 1;
  const int64_t plane = blockIdx.z, P = gridDim.z;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * TH, c0 = static_cast<int64_t>(blockIdx.x) * kTileW;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTileW + tx;
  const int64_t stride = P * Ho * Wp;
  // Map rows r0 - pad + r and columns c0 - pad + c: every window covering this tile.
  for (int idx = tid; idx < RH * RW; idx += kThreads) {
    const int r = idx / RW, c = idx % RW;
    const int64_t mr = r0 - pad + r, mc = c0 - pad + c;
    const bool in = r < TH + pad && c < kTileW + pad && mr >= 0 && mr < Ho && mc >= 0 && mc < Wo;
    const int64_t off = (plane * Ho + mr) * Wp + mc;
    ms[0][r][c] = in ? maps[off] : A(0);
    ms[1][r][c] = in ? maps[stride + off] : A(0);
    ms[2][r][c] = in ? maps[2 * stride + off] : A(0);
  }
  __syncthreads();
  for (int idx = tid; idx < RH * kTileW; idx += kThreads) {
    const int r = idx / kTileW, c = idx % kTileW;
    A a = 0, b = 0, d = 0;
#pragma unroll
    for (int k = 0; k < ssim::kMaxWindow; ++k) {
      if (k >= w) break;  // static tap indices: the taps stay in registers
      const A g = taps.g[k];
      a += g * ms[0][r][c + pad - k];
      b += g * ms[1][r][c + pad - k];
      d += g * ms[2][r][c + pad - k];
    }
    hs[0][r][c] = a;
    hs[1][r][c] = b;
    hs[2][r][c] = d;
  }
  __syncthreads();
  const A ge = static_cast<A>(grad_sums[0]), gd = static_cast<A>(grad_sums[1]);
  const int64_t base = plane * H * W;
  const T* vp = vis ? vis + (plane / C) * H * W : nullptr;
  for (int r = ty; r < TH; r += kRowsPerPass) {
    const int64_t gr = r0 + r, gc = c0 + tx;
    if (gr >= H || gc >= W) continue;
    A a = 0, b = 0, d = 0;
#pragma unroll
    for (int k = 0; k < ssim::kMaxWindow; ++k) {
      if (k >= w) break;  // static tap indices: the taps stay in registers
      const A g = taps.g[k];
      a += g * hs[0][r + pad - k][tx];
      b += g * hs[1][r + pad - k][tx];
      d += g * hs[2][r + pad - k][tx];
    }
    const int64_t i = base + gr * W + gc;
    const A xv = load(x, i), yv = load(y, i);
    A pix = ge * ssim::pixel_error_grad<A, A>(xv - yv, power);
    if (vp) pix *= load(vp, gr * W + gc);
    store(grad_x, i, pix - gd * (a + xv * b + yv * d));
  }
}

template <typename A> dim3 forward_grid(LossShape s) {
  const int64_t Ho = s.H - s.w + 1, Wo = s.W - s.w + 1;
  return dim3(blocks_for(Wo, kTileW), blocks_for(Ho, Tile<A>::h), static_cast<unsigned int>(s.P));
}

}  // namespace

int64_t ssim_loss_blocks(DType dtype, LossShape shape) {
  const dim3 g = dtype == DType::kF64 ? forward_grid<double>(shape) : forward_grid<float>(shape);
  return static_cast<int64_t>(g.x) * g.y * g.z;
}

cudaError_t ssim_loss_forward(DType dtype, const void* x, const void* y, const void* visible,
                              const double* taps, int power, void* partials, void* maps,
                              LossShape shape, cudaStream_t stream) {
  if (shape.P * shape.H * shape.W == 0) return cudaSuccess;
  if (shape.w < 1 || shape.w > ssim::kMaxWindow || shape.P > kMaxLossPlanes) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    loss_forward_kernel<T><<<forward_grid<A>(shape), dim3(kTileW, kRowsPerPass), 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(visible),
        make_taps<A>(taps, shape.w), power, static_cast<A*>(partials), static_cast<A*>(maps),
        shape.C, shape.H, shape.W, shape.Wp);
    return cudaGetLastError();
  });
}

cudaError_t ssim_loss_backward(DType dtype, const double* grad_sums, const void* x, const void* y,
                               const void* visible, const void* maps, const double* taps,
                               int power, void* grad_x, LossShape shape, cudaStream_t stream) {
  if (shape.P * shape.H * shape.W == 0) return cudaSuccess;
  if (shape.w < 1 || shape.w > ssim::kMaxWindow || shape.P > kMaxLossPlanes) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const dim3 grid(blocks_for(shape.W, kTileW), blocks_for(shape.H, Tile<A>::h),
                    static_cast<unsigned int>(shape.P));
    loss_backward_kernel<T><<<grid, dim3(kTileW, kRowsPerPass), 0, stream>>>(
        grad_sums, static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(visible),
        static_cast<const A*>(maps), make_taps<A>(taps, shape.w), power, static_cast<T*>(grad_x),
        shape.C, shape.H, shape.W, shape.Wp);
    return cudaGetLastError();
  });
}

}  // namespace dnerv_cuda
