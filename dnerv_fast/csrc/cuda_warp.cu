// CUDA kernels of flow_warp (forward, feature / flow / t gradients).
//
// Layout note: features are [B, C, H, W] and the output [B, C, T, H, W], so threads are laid
// along pixels (coalesced output writes; neighbouring pixels sample neighbouring texels)
// and each thread loops over a group of channels reusing its taps. The grid's y axis splits
// the channels into groups, which keeps the small 4x5..32x40 maps (many channels, few
// pixels) busy; the flow / t gradients, sums over channels, are summed per group into
// partial buffers so they stay deterministic.
#include "cuda_common.cuh"

namespace dnerv_cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kChannelsPerThread = 8;
// The flow-gradient kernel splits the channels into groups until about this many blocks run
// (several per SM on an A100 / H100); large maps have that many pixel blocks with one group.
constexpr int64_t kFlowTargetBlocks = 1024;

// What every warp thread starts from: its pixel p (over T*H*W) of batch b, the bilinear taps
// into both keyframes and the blend weight t of its frame.
template <typename T>
struct WarpPixel {
  int64_t b, p, HW, THW;
  dnerv::Taps<acc_t<T>> ts, te;
  acc_t<T> w;
};

// Fills ``k`` for this thread; false for the threads past the last pixel.
template <typename T>
__device__ __forceinline__ bool warp_pixel(const T* flow, const T* tt, const WarpShape& d,
                                           WarpPixel<T>& k) {
  k.HW = d.H * d.W;
  k.THW = d.T * k.HW;
  k.p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k.p >= k.THW) return false;
  k.b = blockIdx.z;
  dnerv::warp_taps(flow + k.b * 4 * k.THW, k.THW, k.p, static_cast<int>(d.H), static_cast<int>(d.W),
                   k.ts, k.te);
  k.w = load(tt, k.b * d.T + k.p / k.HW);
  return true;
}

// The channels [first, last) of this thread's group (grid y).
__device__ __forceinline__ void channel_group(const WarpShape& d, int64_t& first, int64_t& last) {
  first = static_cast<int64_t>(blockIdx.y) * kChannelsPerThread;
  last = first + kChannelsPerThread < d.C ? first + kChannelsPerThread : d.C;
}

template <typename T>
__global__ void warp_forward_kernel(const T* __restrict__ start, const T* __restrict__ end,
                                    const T* __restrict__ flow, const T* __restrict__ tt,
                                    T* __restrict__ out, WarpShape d) {
  using A = acc_t<T>;
  WarpPixel<T> k;
  if (!warp_pixel(flow, tt, d, k)) return;
  int64_t c0, c1;
  channel_group(d, c0, c1);
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t plane = k.b * d.C + c;
    const A vs = dnerv::bilinear_sample(start + plane * k.HW, k.ts);
    const A ve = dnerv::bilinear_sample(end + plane * k.HW, k.te);
    store(out, plane * k.THW + k.p, vs + k.w * (ve - vs));
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
  WarpPixel<T> k;
  if (!warp_pixel(flow, tt, d, k)) return;
  int64_t c0, c1;
  channel_group(d, c0, c1);
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t plane = k.b * d.C + c;
    const A g = load(gout, plane * k.THW + k.p);
    scatter(gstart + plane * k.HW, k.ts, (A(1) - k.w) * g);
    scatter(gend + plane * k.HW, k.te, k.w * g);
  }
}

// Deterministic: a thread sums its pixel's terms over one channel group (grid y) in order
// and writes them to that group's slice of the partial buffers [G, B, 4, T*H*W] / [G, B, T*H*W];
// the caller sums the G slices. Several groups keep the small maps busy (see
// warp_flow_groups), where one thread per pixel over all channels left most SMs idle.
template <typename T>
__global__ void warp_backward_flow_kernel(const T* __restrict__ gout, const T* __restrict__ start,
                                          const T* __restrict__ end, const T* __restrict__ flow,
                                          const T* __restrict__ tt, acc_t<T>* __restrict__ gflow_part,
                                          acc_t<T>* __restrict__ gt_part, int64_t group_size,
                                          WarpShape d) {
  using A = acc_t<T>;
  WarpPixel<T> k;
  if (!warp_pixel(flow, tt, d, k)) return;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * group_size;
  const int64_t c1 = c0 + group_size < d.C ? c0 + group_size : d.C;
  A sx = 0, sy = 0, ex = 0, ey = 0, gt = 0;
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t plane = k.b * d.C + c;
    const A g = load(gout, plane * k.THW + k.p);
    A gsx, gsy, gex, gey;
    const A vs = dnerv::bilinear_sample_grad(start + plane * k.HW, k.ts, gsx, gsy);
    const A ve = dnerv::bilinear_sample_grad(end + plane * k.HW, k.te, gex, gey);
    sx += g * gsx;
    sy += g * gsy;
    ex += g * gex;
    ey += g * gey;
    gt += g * (ve - vs);
  }
  const int64_t slice = static_cast<int64_t>(blockIdx.y) * d.B;
  acc_t<T>* gf = gflow_part + (slice + k.b) * 4 * k.THW + k.p;
  gf[0] = (A(1) - k.w) * sx;
  gf[k.THW] = (A(1) - k.w) * sy;
  gf[2 * k.THW] = k.w * ex;
  gf[3 * k.THW] = k.w * ey;
  gt_part[(slice + k.b) * k.THW + k.p] = gt;
}

dim3 warp_grid(const WarpShape& d, unsigned int groups) {
  return dim3(blocks_for(d.T * d.H * d.W, kThreads), groups, static_cast<unsigned int>(d.B));
}

int64_t flow_group_size(const WarpShape& d, int groups) { return (d.C + groups - 1) / groups; }

}  // namespace

int warp_flow_groups(WarpShape d) {
  if (d.B * d.C * d.T * d.H * d.W == 0) return 1;
  const int64_t blocks = static_cast<int64_t>(blocks_for(d.T * d.H * d.W, kThreads)) * d.B;
  int64_t groups = (kFlowTargetBlocks + blocks - 1) / blocks;
  groups = groups < 1 ? 1 : (groups > d.C ? d.C : groups);
  // No empty group: as many groups as ceil(C / group size) needs.
  const int64_t size = (d.C + groups - 1) / groups;
  return static_cast<int>((d.C + size - 1) / size);
}

cudaError_t flow_warp_forward(DType dtype, const void* start, const void* end, const void* flow,
                              const void* t, void* out, WarpShape d, cudaStream_t stream) {
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    warp_forward_kernel<T><<<warp_grid(d, blocks_for(d.C, kChannelsPerThread)), kThreads, 0, stream>>>(
        static_cast<const T*>(start), static_cast<const T*>(end), static_cast<const T*>(flow),
        static_cast<const T*>(t), static_cast<T*>(out), d);
    return cudaGetLastError();
  });
}

cudaError_t flow_warp_backward(DType dtype, const void* grad_out, const void* start, const void* end,
                               const void* flow, const void* t, void* gstart_acc, void* gend_acc,
                               void* gflow_part, void* gt_part, bool need_features,
                               bool need_flow_t, WarpShape d, cudaStream_t stream) {
  if (d.B * d.C * d.T * d.H * d.W == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* go = static_cast<const T*>(grad_out);
    if (need_features) {
      warp_backward_features_kernel<T><<<warp_grid(d, blocks_for(d.C, kChannelsPerThread)), kThreads, 0, stream>>>(
          go, static_cast<const T*>(flow), static_cast<const T*>(t), static_cast<A*>(gstart_acc),
          static_cast<A*>(gend_acc), d);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    if (need_flow_t) {
      const int groups = warp_flow_groups(d);
      warp_backward_flow_kernel<T><<<warp_grid(d, groups), kThreads, 0, stream>>>(
          go, static_cast<const T*>(start), static_cast<const T*>(end), static_cast<const T*>(flow),
          static_cast<const T*>(t), static_cast<A*>(gflow_part), static_cast<A*>(gt_part),
          flow_group_size(d, groups), d);
    }
    return cudaGetLastError();
  });
}

}  // namespace dnerv_cuda
