// Harness stand-in for torch's c10/cuda/CUDAStream.h (CPU torch has no CUDA runtime to link):
// the current stream is the harness's default stream.
#pragma once

#include <cuda_runtime.h>

namespace c10 {
namespace cuda {

inline cudaStream_t getCurrentCUDAStream() { return nullptr; }

}  // namespace cuda
}  // namespace c10
