// CPU emulation of the CUDA device side the dnerv_fast kernels use, for g++ host builds of the
// unmodified csrc/cuda_*.cu files (test code; see docs/kernels-cuda-harness.md).
//
// Every GPU thread of a block runs as a fiber (runtime.cpp); fibers switch at __syncthreads
// and at warp intrinsics, and between two such points the threads run in an order drawn from
// $CUDA_HARNESS_SEED, so a missing barrier or a race gives a seed-dependent result. The build
// (rewrite.py) turns `k<<<cfg>>>(args)` into cuda_harness::launch(...) and every
// `__shared__ T name[N]...;` into a reference to a per-block heap allocation, so that ASan sees
// the bounds of each shared array and a kernel never sees another block's shared memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

// Host compilers see nvcc's execution-space keywords as nothing; keep it so, and drop the
// launch-bound annotation (g++ would warn about an unknown attribute).
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace cuda_harness {

// The running fiber's coordinates, set by the scheduler at every switch.
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

struct LaunchConfig {
  dim3 grid, block;
  size_t dynamic_shared;
  cudaStream_t stream;
  LaunchConfig(dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr)
      : grid(g), block(b), dynamic_shared(smem), stream(s) {}
};

// Runs body(ctx) as every thread of every block of the launch (or records why a GPU would
// refuse the launch, for cudaGetLastError).
void run_kernel(const LaunchConfig& cfg, void (*body)(void*), void* ctx);

template <typename... P, typename... A>
void launch(void (*kernel)(P...), const LaunchConfig& cfg, A&&... args) {
  // The arguments convert to the parameter types on the host, as a real launch copies them.
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  struct Ctx {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...>* params;
  } ctx{kernel, &params};
  run_kernel(cfg, [](void* p) {
    auto* c = static_cast<Ctx*>(p);
    std::apply(c->kernel, *c->params);
  }, &ctx);
}

// Block-wide barrier; every live thread of the block must reach it.
void syncthreads();
// Warp rendezvous of the lanes in `mask`: each lane gives `size` bytes at `value` and receives
// in `result` the bytes lane `src_lane` gave (its own when src_lane is out of the warp).
void warp_exchange(unsigned mask, const void* value, size_t size, int src_lane, void* result);
int lane_id();
// Storage of one `__shared__` declaration for the running block: the i-th declaration a
// thread executes maps to the block's i-th allocation (allocated by the first thread there,
// filled with 0xff bytes: NaN for float / double, so a read before a write shows).
void* shared_storage(size_t size, size_t align);

template <typename T> T& shared() {
  return *static_cast<T*>(shared_storage(sizeof(T), alignof(T)));
}

template <typename T> T shuffle(unsigned mask, T v, int src) {
  static_assert(std::is_trivially_copyable<T>::value, "shuffled values are plain data");
  T out;
  warp_exchange(mask, static_cast<const void*>(&v), sizeof(T), src, static_cast<void*>(&out));
  return out;
}

// CAS loop over the value's bits: atomic for real OS threads and visible as an atomic to
// ThreadSanitizer (a plain `+=` in a kernel is not).
template <typename T, typename U> T atomic_update(T* address, T v) {
  static_assert(sizeof(T) == sizeof(U), "bit carrier of the same size");
  U old_bits = __atomic_load_n(reinterpret_cast<U*>(address), __ATOMIC_RELAXED);
  for (;;) {
    T old;
    std::memcpy(static_cast<void*>(&old), &old_bits, sizeof old);
    const T updated = static_cast<T>(old + v);
    U new_bits;
    std::memcpy(&new_bits, static_cast<const void*>(&updated), sizeof new_bits);
    if (__atomic_compare_exchange_n(reinterpret_cast<U*>(address), &old_bits, new_bits, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return old;
  }
}

}  // namespace cuda_harness

#define threadIdx (static_cast<const uint3&>(::cuda_harness::g_thread_idx))
#define blockIdx (static_cast<const uint3&>(::cuda_harness::g_block_idx))
#define blockDim (static_cast<const dim3&>(::cuda_harness::g_block_dim))
#define gridDim (static_cast<const dim3&>(::cuda_harness::g_grid_dim))
#ifndef warpSize
#define warpSize 32
#endif

inline void __syncthreads() { ::cuda_harness::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  char none = 0, out;
  ::cuda_harness::warp_exchange(mask, &none, 1, ::cuda_harness::lane_id(), &out);
}

template <typename T> T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ::cuda_harness::lane_id();
  return ::cuda_harness::shuffle(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::cuda_harness::lane_id();
  const int in_segment = lane & (width - 1);
  return ::cuda_harness::shuffle(mask, v, in_segment + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane);
}
template <typename T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::cuda_harness::lane_id();
  const int in_segment = lane & (width - 1);
  return ::cuda_harness::shuffle(mask, v, in_segment >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : lane);
}
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::cuda_harness::lane_id();
  const int src = lane ^ lane_mask;
  return ::cuda_harness::shuffle(mask, v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}

inline float atomicAdd(float* p, float v) { return ::cuda_harness::atomic_update<float, uint32_t>(p, v); }
inline double atomicAdd(double* p, double v) { return ::cuda_harness::atomic_update<double, uint64_t>(p, v); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline __half atomicAdd(__half* p, __half v) {
  return ::cuda_harness::atomic_update<__half, uint16_t>(p, v);
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* p, __nv_bfloat16 v) {
  return ::cuda_harness::atomic_update<__nv_bfloat16, uint16_t>(p, v);
}
