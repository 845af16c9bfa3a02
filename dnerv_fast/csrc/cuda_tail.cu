// CUDA kernels of upsample_tail: one thread per output pixel of one (b, c) plane keeps the
// T pre-activations in registers, so y is read once and the output written once.
// Backward recomputes GELU from y and reduces the weight / bias gradients per block
// (warp shuffles + shared-memory atomics), then adds them with atomicAdd: the summation order
// is nondeterministic.
#include "cuda_common.cuh"

namespace dnerv_cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSlots = 64;  // s*s conv-bias slots a block reduces (scale <= 8)
constexpr int kSmallT = 8;     // clips of up to 8 frames (D-NeRV's) take the T <= 8 backward

struct TailPixel {
  int64_t q, h, w, ch;  // output pixel in the plane, input row / column / channel
  bool valid;
};

__device__ __forceinline__ TailPixel tail_pixel(const TailShape& d, int64_t c) {
  TailPixel px;
  const int64_t Wo = d.W * d.s;
  px.q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  px.valid = px.q < d.H * d.s * Wo;
  const int64_t q = px.valid ? px.q : 0;
  const int64_t oy = q / Wo, ox = q % Wo;
  px.h = oy / d.s;
  px.w = ox / d.s;
  px.ch = dnerv::shuffle_in_channel(c, static_cast<int>(oy % d.s), static_cast<int>(ox % d.s),
                                    static_cast<int>(d.s));
  return px;
}

// pre[t] = y[b, ch, t, h, w] + conv_bias[ch] for t < T (0 for T <= t < TM).
template <typename T, int TM>
__device__ __forceinline__ void load_pre(const T* y, const T* conv_bias, const TailShape& d,
                                         int64_t b, const TailPixel& px, acc_t<T> (&pre)[TM]) {
  using A = acc_t<T>;
  const int64_t HW = d.H * d.W;
  const A bias = conv_bias ? load(conv_bias, px.ch) : A(0);
  const T* src = y + (b * d.C * d.s * d.s + px.ch) * d.T * HW + px.h * d.W + px.w;
#pragma unroll
  for (int t = 0; t < TM; ++t) pre[t] = t < d.T ? load(src, t * HW) + bias : A(0);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
tail_forward_kernel(const T* __restrict__ y, const T* __restrict__ conv_bias,
                    const T* __restrict__ weight, const T* __restrict__ tfc_bias,
                    T* __restrict__ out, TailShape d) {
  using A = acc_t<T>;
  __shared__ A sw[kMaxTailT * kMaxTailT];
  const int64_t b = blockIdx.y / d.C, c = blockIdx.y % d.C;
  for (int k = threadIdx.x; k < d.T * d.T; k += blockDim.x) sw[k] = load(weight, c * d.T * d.T + k);
  __syncthreads();
  const TailPixel px = tail_pixel(d, c);
  if (!px.valid) return;
  A g[kMaxTailT];
  load_pre<T, kMaxTailT>(y, conv_bias, d, b, px, g);
#pragma unroll
  for (int t = 0; t < kMaxTailT; ++t) g[t] = dnerv::gelu(g[t]);
  const int64_t plane = d.H * d.s * d.W * d.s;
  T* dst = out + (b * d.C + c) * d.T * plane + px.q;
#pragma unroll
  for (int tp = 0; tp < kMaxTailT; ++tp) {
    if (tp >= d.T) break;
    A acc = g[tp] + (tfc_bias ? load(tfc_bias, c * d.T + tp) : A(0));
#pragma unroll
    for (int t = 0; t < kMaxTailT; ++t)
      if (t < d.T) acc += sw[tp * d.T + t] * g[t];
    store(dst, tp * plane, acc);
  }
}

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

// Adds v (one per thread) over the warp into the shared *dst (lane 0 adds): no barrier.
template <typename A> __device__ __forceinline__ void warp_add(A v, A* dst) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) atomicAdd(dst, v);
}

// TM: compile-time bound on T (8 or kMaxTailT), so the per-thread arrays hold TM values, not
// kMaxTailT: at T = 8 the kernel keeps g, go and GELU' of its pixel in registers without
// spilling. The T*T + T weight / bias sums go warp shuffle -> shared atomicAdd -> one global
// atomicAdd per block and entry (no block-wide barrier per entry).
template <typename T, int TM>
__global__ void __launch_bounds__(kThreads)
tail_backward_kernel(const T* __restrict__ gout, const T* __restrict__ y,
                     const T* __restrict__ conv_bias, const T* __restrict__ weight,
                     T* __restrict__ grad_y, acc_t<T>* gconv_bias, acc_t<T>* gweight,
                     acc_t<T>* gtfc_bias, TailShape d) {
  using A = acc_t<T>;
  __shared__ A sw[TM * TM];
  __shared__ A sbc[kMaxSlots];
  __shared__ A sgw[TM * TM + TM];  // weight gradients [tp][t], then bias gradients [tp]
  const int64_t b = blockIdx.y / d.C, c = blockIdx.y % d.C;
  const int slots = static_cast<int>(d.s * d.s);
  const int TT = static_cast<int>(d.T * d.T);
  for (int k = threadIdx.x; k < TT; k += blockDim.x) sw[k] = load(weight, c * TT + k);
  for (int k = threadIdx.x; k < slots; k += blockDim.x) sbc[k] = A(0);
  for (int k = threadIdx.x; k < TT + d.T; k += blockDim.x) sgw[k] = A(0);
  __syncthreads();
  const TailPixel px = tail_pixel(d, c);
  A g[TM], go[TM], dgelu[TM];
  {
    A pre[TM];
    load_pre<T, TM>(y, conv_bias, d, b, px, pre);
#pragma unroll
    for (int t = 0; t < TM; ++t) {
      g[t] = dnerv::gelu(pre[t]);
      dgelu[t] = dnerv::gelu_grad(pre[t]);
    }
  }
  const int64_t plane = d.H * d.s * d.W * d.s;
  const T* src = gout + (b * d.C + c) * d.T * plane + px.q;
#pragma unroll
  for (int t = 0; t < TM; ++t) go[t] = px.valid && t < d.T ? load(src, t * plane) : A(0);
  // grad_y and the conv-bias slot of this pixel's input channel
  const int64_t HW = d.H * d.W;
  T* dst = grad_y + (b * d.C * slots + px.ch) * d.T * HW + px.h * d.W + px.w;
  A gsum = 0;
#pragma unroll
  for (int t = 0; t < TM; ++t) {
    if (t >= d.T) break;
    A gg = go[t];
#pragma unroll
    for (int tp = 0; tp < TM; ++tp)
      if (tp < d.T) gg += sw[tp * d.T + t] * go[tp];
    gg *= dgelu[t];
    gsum += gg;
    if (px.valid) store(dst, t * HW, gg);
  }
  if (px.valid) atomicAdd(&sbc[px.ch - c * slots], gsum);
  // Every lane takes part in the shuffles (threads past the plane carry go = 0).
#pragma unroll
  for (int tp = 0; tp < TM; ++tp) {
    if (tp >= d.T) break;
    warp_add(go[tp], &sgw[TT + tp]);
#pragma unroll
    for (int t = 0; t < TM; ++t) {
      if (t >= d.T) break;
      warp_add(go[tp] * g[t], &sgw[tp * d.T + t]);
    }
  }
  __syncthreads();  // every shared partial sum is in
  for (int k = threadIdx.x; k < slots; k += blockDim.x) atomicAdd(gconv_bias + c * slots + k, sbc[k]);
  for (int k = threadIdx.x; k < TT; k += blockDim.x) atomicAdd(gweight + c * TT + k, sgw[k]);
  for (int k = threadIdx.x; k < d.T; k += blockDim.x) atomicAdd(gtfc_bias + c * d.T + k, sgw[TT + k]);
}

dim3 tail_grid(const TailShape& d) {
  return dim3(blocks_for(d.H * d.s * d.W * d.s, kThreads), static_cast<unsigned int>(d.B * d.C));
}

bool tail_shape_ok(const TailShape& d) {
  return d.T <= kMaxTailT && d.s * d.s <= kMaxSlots && d.B * d.C <= 65535;
}

}  // namespace

cudaError_t upsample_tail_forward(DType dtype, const void* y, const void* conv_bias,
                                  const void* tfc_weight, const void* tfc_bias, void* out,
                                  TailShape d, cudaStream_t stream) {
  if (!tail_shape_ok(d)) return cudaErrorInvalidValue;
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    tail_forward_kernel<T><<<tail_grid(d), kThreads, 0, stream>>>(
        static_cast<const T*>(y), static_cast<const T*>(conv_bias), static_cast<const T*>(tfc_weight),
        static_cast<const T*>(tfc_bias), static_cast<T*>(out), d);
    return cudaGetLastError();
  });
}

cudaError_t upsample_tail_backward(DType dtype, const void* grad_out, const void* y,
                                   const void* conv_bias, const void* tfc_weight, void* grad_y,
                                   void* gconv_bias_acc, void* gweight_acc, void* gtfc_bias_acc,
                                   TailShape d, cudaStream_t stream) {
  if (!tail_shape_ok(d)) return cudaErrorInvalidValue;
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    auto kernel = d.T <= kSmallT ? tail_backward_kernel<T, kSmallT> : tail_backward_kernel<T, kMaxTailT>;
    kernel<<<tail_grid(d), kThreads, 0, stream>>>(
        static_cast<const T*>(grad_out), static_cast<const T*>(y), static_cast<const T*>(conv_bias),
        static_cast<const T*>(tfc_weight), static_cast<T*>(grad_y), static_cast<A*>(gconv_bias_acc),
        static_cast<A*>(gweight_acc), static_cast<A*>(gtfc_bias_acc), d);
    return cudaGetLastError();
  });
}

}  // namespace dnerv_cuda
