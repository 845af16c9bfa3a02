// Harness stand-in for torch's c10/cuda/CUDAGuard.h: tensors are on the CPU, so selecting a
// device is a no-op; the guard checks that the tensor is not on a real GPU.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

namespace c10 {
namespace cuda {

struct CUDAGuard {
  explicit CUDAGuard(c10::Device device) {
    TORCH_CHECK(device.is_cpu(), "cuda harness: tensors must be on the CPU, got ", device);
  }
};

}  // namespace cuda
}  // namespace c10
