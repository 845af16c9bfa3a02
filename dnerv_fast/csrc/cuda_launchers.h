// Host-callable launchers of the CUDA kernels (csrc/cuda_*.cu). Raw pointers, sizes and a
// stream only, so the kernels compile with plain nvcc and no torch headers.
//
// Inputs are contiguous, all of one storage type `dtype`. Buffers named *_acc hold the
// accumulator type (double for kF64, float otherwise) and must be zeroed by the caller.
// Every launcher returns the launch status (cudaGetLastError).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace dnerv_cuda {

enum class DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

struct WarpShape {
  int64_t B, C, T, H, W;
};

struct TailShape {
  int64_t B, C, T, H, W, s;  // C output channels; y has C*s*s channels at H x W
};

// Largest T the tail kernels keep in registers.
constexpr int kMaxTailT = 16;

// out [B,C,T,H,W] = (1-t) warp(start) + t warp(end).
cudaError_t flow_warp_forward(DType dtype, const void* start, const void* end, const void* flow,
                              const void* t, void* out, WarpShape shape, cudaStream_t stream);

// Number G of channel groups flow_warp_backward splits the flow / t gradients into.
int warp_flow_groups(WarpShape shape);

// Feature gradients by atomicAdd scatter (nondeterministic summation order) into
// gstart_acc / gend_acc [B,C,H,W]; when need_flow_t, per channel group partial flow
// gradients gflow_part [G,B,4,T,H,W] and per-pixel t contributions gt_part [G,B,T,H*W]
// (G = warp_flow_groups(shape); deterministic, summed over G (and H*W) by the caller).
cudaError_t flow_warp_backward(DType dtype, const void* grad_out, const void* start, const void* end,
                               const void* flow, const void* t, void* gstart_acc, void* gend_acc,
                               void* gflow_part, void* gt_part, bool need_features,
                               bool need_flow_t, WarpShape shape, cudaStream_t stream);

// out = x * (1 + W[:C] f + b[:C]) (+ W[C:] f + b[C:] when with_beta); x [B,C,P], fused
// [B,K,P], weight [2C,K] (or [C,K] without beta), bias nullable.
cudaError_t saf_forward(DType dtype, const void* x, const void* fused, const void* weight,
                        const void* bias, void* out, int64_t B, int64_t C, int64_t K, int64_t P,
                        bool with_beta, cudaStream_t stream);

// out [B,C,T,H*s,W*s] = GTMLP(GELU(PixelShuffle(y + conv_bias))); biases nullable.
cudaError_t upsample_tail_forward(DType dtype, const void* y, const void* conv_bias,
                                  const void* tfc_weight, const void* tfc_bias, void* out,
                                  TailShape shape, cudaStream_t stream);

// grad_y [like y]; conv-bias / tfc-weight / tfc-bias gradients accumulated with atomicAdd
// (nondeterministic order) into zeroed *_acc buffers [C*s*s], [C*T, T], [C*T].
cudaError_t upsample_tail_backward(DType dtype, const void* grad_out, const void* y,
                                   const void* conv_bias, const void* tfc_weight, void* grad_y,
                                   void* gconv_bias_acc, void* gweight_acc, void* gtfc_bias_acc,
                                   TailShape shape, cudaStream_t stream);

}  // namespace dnerv_cuda
