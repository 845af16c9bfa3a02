// Shared helpers of the CUDA translation units: storage-type dispatch and launch sizing.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_launchers.h"
#include "dnerv_math.h"

namespace dnerv_cuda {

// Storage type -> accumulator type, extending dnerv::acc_t to the CUDA half types.
template <typename T> using acc_t = dnerv::acc_t<T>;

// Calls f(T{}) with the storage type named by dtype.
template <typename F> cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32: return f(float{});
    case DType::kF64: return f(double{});
    case DType::kF16: return f(__half{});
    case DType::kBF16: return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

template <typename T> __device__ __forceinline__ acc_t<T> load(const T* p, int64_t i) {
  return dnerv::to_acc<acc_t<T>>(p[i]);
}

// Accumulator -> storage, round to nearest (explicit for the half types, see to_acc).
template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T> __device__ __forceinline__ void store(T* p, int64_t i, acc_t<T> v) {
  p[i] = from_acc<T>(v);
}

}  // namespace dnerv_cuda
