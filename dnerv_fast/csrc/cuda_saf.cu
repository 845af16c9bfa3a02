// CUDA kernel of saf_modulate: a shared-memory tiled GEMM (style = W f) whose epilogue applies
// the modulation x * (1 + gamma) + beta, so gamma / beta never reach global memory.
#include "cuda_common.cuh"

namespace dnerv_cuda {
namespace {

constexpr int kPix = 32;      // pixels per block (threadIdx.x)
constexpr int kRows = 8;      // threadIdx.y
constexpr int kPerThread = 4; // channels per thread
constexpr int kChan = kRows * kPerThread;  // channels per block
constexpr int kK = 32;        // K per shared-memory tile

template <typename T>
__global__ void __launch_bounds__(kPix * kRows)
saf_kernel(const T* __restrict__ x, const T* __restrict__ fused, const T* __restrict__ weight,
           const T* __restrict__ bias, T* __restrict__ out, int64_t C, int64_t K, int64_t P,
           bool with_beta) {
  using A = acc_t<T>;
  __shared__ A fs[kK][kPix];
  __shared__ A wg[kChan][kK + 1];
  __shared__ A wb[kChan][kK + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kPix + tx;
  const int64_t b = blockIdx.z;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kPix, c0 = static_cast<int64_t>(blockIdx.y) * kChan;
  const T* f = fused + b * K * P;
  A gam[kPerThread] = {}, bet[kPerThread] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kK) {
    for (int idx = tid; idx < kK * kPix; idx += kPix * kRows) {
      const int k = idx / kPix, px = idx % kPix;
      fs[k][px] = (k0 + k < K && p0 + px < P) ? load(f, (k0 + k) * P + p0 + px) : A(0);
    }
    for (int idx = tid; idx < kChan * kK; idx += kPix * kRows) {
      const int ch = idx / kK, k = idx % kK;
      const bool ok = c0 + ch < C && k0 + k < K;
      wg[ch][k] = ok ? load(weight, (c0 + ch) * K + k0 + k) : A(0);
      wb[ch][k] = ok && with_beta ? load(weight, (C + c0 + ch) * K + k0 + k) : A(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kK; ++k) {
      const A fv = fs[k][tx];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) {
        gam[r] += wg[ty * kPerThread + r][k] * fv;
        bet[r] += wb[ty * kPerThread + r][k] * fv;
      }
    }
    __syncthreads();
  }
  const int64_t p = p0 + tx;
  if (p >= P) return;
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
    const int64_t c = c0 + ty * kPerThread + r;
    if (c >= C) break;
    const A bg = bias ? load(bias, c) : A(0);
    const A bb = bias && with_beta ? load(bias, C + c) : A(0);
    const int64_t i = (b * C + c) * P + p;
    const A xv = load(x, i);
    store(out, i, with_beta ? xv * (A(1) + gam[r] + bg) + bet[r] + bb : xv * (A(1) + gam[r] + bg));
  }
}

}  // namespace

cudaError_t saf_forward(DType dtype, const void* x, const void* fused, const void* weight,
                        const void* bias, void* out, int64_t B, int64_t C, int64_t K, int64_t P,
                        bool with_beta, cudaStream_t stream) {
  if (B * C * P == 0) return cudaSuccess;
  const dim3 grid(blocks_for(P, kPix), blocks_for(C, kChan), static_cast<unsigned int>(B));
  const dim3 block(kPix, kRows);
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    saf_kernel<T><<<grid, block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(fused), static_cast<const T*>(weight),
        static_cast<const T*>(bias), static_cast<T*>(out), C, K, P, with_beta);
    return cudaGetLastError();
  });
}

}  // namespace dnerv_cuda
