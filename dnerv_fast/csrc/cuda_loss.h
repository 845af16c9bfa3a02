// Host-callable launchers of the fused training loss's CUDA kernels (csrc/cuda_loss.cu). Raw
// pointers, sizes and a stream only, so the kernels compile with plain nvcc, no torch headers.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "cuda_launchers.h"

namespace dnerv_cuda {

struct LossShape {
  int64_t P, C, H, W;  // planes (frames * channels), channels, height, width
  int w;               // window side (<= 11)
  int64_t Wp;          // row stride of the saved maps (window columns rounded up)
};

// Blocks (partial-sum rows) ssim_loss_forward writes for this shape.
int64_t ssim_loss_blocks(DType dtype, LossShape shape);

// Largest plane count one launch takes (grid z).
constexpr int64_t kMaxLossPlanes = 65535;

// Partial sums [ssim_loss_blocks(shape), 4] in the accumulator type (pixel error, 1 - SSIM,
// visible values, whole windows; the caller adds the rows) and, where maps is not null,
// the three derivative maps [3, P, H - w + 1, Wp] (accumulator type; padding left as is).
// x, y [P, H, W] and visible [P / C, H, W] (nullable) of storage type dtype; taps: w
// accumulator-type values on the host.
cudaError_t ssim_loss_forward(DType dtype, const void* x, const void* y, const void* visible,
                              const double* taps, int power, void* partials, void* maps,
                              LossShape shape, cudaStream_t stream);

// grad_x [P, H, W] = ge * error'(x - y) * visible - gd * (G^T m0 + x G^T m1 + y G^T m2), with
// ge, gd the first two values of grad_sums (4 doubles on the device).
cudaError_t ssim_loss_backward(DType dtype, const double* grad_sums, const void* x, const void* y,
                               const void* visible, const void* maps, const double* taps,
                               int power, void* grad_x, LossShape shape, cudaStream_t stream);

}  // namespace dnerv_cuda
