// CUDA kernels of flow_warp (forward, feature / flow / t gradients).
//
// Layout note: features are [B, C, H, W] and the output [B, C, T, H, W], so threads are laid
// along pixels (coalesced output writes; neighbouring pixels sample neighbouring texels)
// and each thread loops over a group of channels reusing its taps. The grid's y axis splits
// the channels into groups, which keeps the small 4x5..32x40 maps (many channels, few
// pixels) busy.
#include "cuda_common.cuh"

namespace dnerv_cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kChannelsPerThread = 8;

template <typename T>
__global__ void warp_forward_kernel(const T* __restrict__ start, const T* __restrict__ end,
                                    const T* __restrict__ flow, const T* __restrict__ tt,
                                    T* __restrict__ out, WarpShape d) {
  using A = acc_t<T>;
  const int64_t HW = d.H * d.W, THW = d.T * HW;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= THW) return;
  const int64_t b = blockIdx.z;
  dnerv::Taps<A> ts, te;
  dnerv::warp_taps(flow + b * 4 * THW, THW, p, static_cast<int>(d.H), static_cast<int>(d.W), ts, te);
  const A w = load(tt, b * d.T + p / HW);
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kChannelsPerThread;
  const int64_t c1 = c0 + kChannelsPerThread < d.C ? c0 + kChannelsPerThread : d.C;
  for (int64_t c = c0; c < c1; ++c) {
    const A vs = dnerv::bilinear_sample(start + (b * d.C + c) * HW, ts);
    const A ve = dnerv::bilinear_sample(end + (b * d.C + c) * HW, te);
    store(out, (b * d.C + c) * THW + p, vs + w * (ve - vs));
  }
}

template <typename A> __device__ __forceinline__ void scatter(A* plane, const dnerv::Taps<A>& k, A g) {
  A w[4];
  dnerv::bilinear_weights(k, w);
  atomicAdd(plane + k.i00, g * w[0]);
  atomicAdd(plane + k.i01, g * w[1]);
  atomicAdd(plane + k.i10, g * w[2]);
  atomicAdd(plane + k.i11, g * w[3]);
}

// Nondeterministic: several pixels scatter into one texel with atomicAdd.
template <typename T>
__global__ void warp_backward_features_kernel(const T* __restrict__ gout, const T* __restrict__ flow,
                                              const T* __restrict__ tt, acc_t<T>* gstart,
                                              acc_t<T>* gend, WarpShape d) {
  using A = acc_t<T>;
  const int64_t HW = d.H * d.W, THW = d.T * HW;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= THW) return;
  const int64_t b = blockIdx.z;
  dnerv::Taps<A> ts, te;
  dnerv::warp_taps(flow + b * 4 * THW, THW, p, static_cast<int>(d.H), static_cast<int>(d.W), ts, te);
  const A w = load(tt, b * d.T + p / HW);
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kChannelsPerThread;
  const int64_t c1 = c0 + kChannelsPerThread < d.C ? c0 + kChannelsPerThread : d.C;
  for (int64_t c = c0; c < c1; ++c) {
    const A g = load(gout, (b * d.C + c) * THW + p);
    scatter(gstart + (b * d.C + c) * HW, ts, (A(1) - w) * g);
    scatter(gend + (b * d.C + c) * HW, te, w * g);
  }
}

// Deterministic: one thread per pixel sums over every channel in order.
template <typename T>
__global__ void warp_backward_flow_kernel(const T* __restrict__ gout, const T* __restrict__ start,
                                          const T* __restrict__ end, const T* __restrict__ flow,
                                          const T* __restrict__ tt, acc_t<T>* __restrict__ gflow,
                                          acc_t<T>* __restrict__ gt_pix, WarpShape d) {
  using A = acc_t<T>;
  const int64_t HW = d.H * d.W, THW = d.T * HW;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= THW) return;
  const int64_t b = blockIdx.z;
  dnerv::Taps<A> ts, te;
  dnerv::warp_taps(flow + b * 4 * THW, THW, p, static_cast<int>(d.H), static_cast<int>(d.W), ts, te);
  const A w = load(tt, b * d.T + p / HW);
  A sx = 0, sy = 0, ex = 0, ey = 0, gt = 0;
  for (int64_t c = 0; c < d.C; ++c) {
    const A g = load(gout, (b * d.C + c) * THW + p);
    A gsx, gsy, gex, gey;
    const A vs = dnerv::bilinear_sample_grad(start + (b * d.C + c) * HW, ts, gsx, gsy);
    const A ve = dnerv::bilinear_sample_grad(end + (b * d.C + c) * HW, te, gex, gey);
    sx += g * gsx;
    sy += g * gsy;
    ex += g * gex;
    ey += g * gey;
    gt += g * (ve - vs);
  }
  acc_t<T>* gf = gflow + b * 4 * THW + p;
  gf[0] = (A(1) - w) * sx;
  gf[THW] = (A(1) - w) * sy;
  gf[2 * THW] = w * ex;
  gf[3 * THW] = w * ey;
  gt_pix[b * THW + p] = gt;
}

dim3 warp_grid(const WarpShape& d, bool channel_groups) {
  const unsigned int groups = channel_groups ? blocks_for(d.C, kChannelsPerThread) : 1;
  return dim3(blocks_for(d.T * d.H * d.W, kThreads), groups, static_cast<unsigned int>(d.B));
}

}  // namespace

cudaError_t flow_warp_forward(DType dtype, const void* start, const void* end, const void* flow,
                              const void* t, void* out, WarpShape d, cudaStream_t stream) {
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    warp_forward_kernel<T><<<warp_grid(d, true), kThreads, 0, stream>>>(
        static_cast<const T*>(start), static_cast<const T*>(end), static_cast<const T*>(flow),
        static_cast<const T*>(t), static_cast<T*>(out), d);
    return cudaGetLastError();
  });
}

cudaError_t flow_warp_backward(DType dtype, const void* grad_out, const void* start, const void* end,
                               const void* flow, const void* t, void* gstart_acc, void* gend_acc,
                               void* gflow_acc, void* gt_pix_acc, bool need_features,
                               bool need_flow_t, WarpShape d, cudaStream_t stream) {
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* go = static_cast<const T*>(grad_out);
    if (need_features) {
      warp_backward_features_kernel<T><<<warp_grid(d, true), kThreads, 0, stream>>>(
          go, static_cast<const T*>(flow), static_cast<const T*>(t), static_cast<A*>(gstart_acc),
          static_cast<A*>(gend_acc), d);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    if (need_flow_t) {
      warp_backward_flow_kernel<T><<<warp_grid(d, false), kThreads, 0, stream>>>(
          go, static_cast<const T*>(start), static_cast<const T*>(end), static_cast<const T*>(flow),
          static_cast<const T*>(t), static_cast<A*>(gflow_acc), static_cast<A*>(gt_pix_acc), d);
    }
    return cudaGetLastError();
  });
}

}  // namespace dnerv_cuda
