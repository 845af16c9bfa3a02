// saf_modulate on CPU: out = x * (1 + W_g f + b_g) [+ W_b f + b_b], a tiled GEMM (torch's
// BLAS on an L2-sized tile) with the modulation applied from the tile, so gamma and beta never
// reach memory. The backward pass is this kernel (grad_x) and GEMMs (dnerv_fast/ops/reference.py).
#include <torch/extension.h>

#include <ATen/Dispatch.h>

#include <vector>

#include "cpu_binding.h"
#include <ATen/Parallel.h>

#include <algorithm>

#include "cpu_simd.h"

namespace {

// ---------------------------------------------------------------------------------------
// saf_modulate: out = x * (1 + W_g f + b_g) [+ W_b f + b_b], a tiled GEMM (BLAS on an
// L2-sized tile) with the modulation applied from the tile, so gamma/beta never reach memory.
// ---------------------------------------------------------------------------------------

constexpr int64_t kSafPixels = 512;    // pixels per tile
constexpr int64_t kSafChannels = 128;  // output channels per tile

// Float and double only (the Python wrapper runs half types in float32). The output is
// written contiguous, or channels-last ([B, T, H, W, C] in memory) when channels_last is set.
template <typename T>
void saf_impl(const at::Tensor& x_t, const at::Tensor& fused_t, const at::Tensor& weight,
              const T* bias, at::Tensor& out_t, bool with_beta, bool channels_last) {
  const int64_t B = x_t.size(0), C = x_t.size(1), K = fused_t.size(1);
  const int64_t P = x_t.numel() / std::max<int64_t>(B * C, 1);
  const T* x = x_t.data_ptr<T>();
  T* out = out_t.data_ptr<T>();
  const auto fused = fused_t.reshape({B, K, P});
  const int64_t tiles = (P + kSafPixels - 1) / kSafPixels;
  at::parallel_for(0, B * tiles, 1, [&](int64_t begin, int64_t stop) {
    at::Tensor gamma_buf = at::empty({kSafChannels * kSafPixels}, x_t.options());
    at::Tensor beta_buf = at::empty({kSafChannels * kSafPixels}, x_t.options());
    for (int64_t task = begin; task < stop; ++task) {
      const int64_t b = task / tiles, p0 = (task % tiles) * kSafPixels;
      const int64_t n = std::min(kSafPixels, P - p0);
      const auto f = fused.select(0, b).narrow(1, p0, n);
      for (int64_t c0 = 0; c0 < C; c0 += kSafChannels) {
        const int64_t m = std::min(kSafChannels, C - c0);
        auto gamma = gamma_buf.narrow(0, 0, m * n).view({m, n});
        auto beta = beta_buf.narrow(0, 0, m * n).view({m, n});
        at::mm_out(gamma, weight.narrow(0, c0, m), f);
        if (with_beta) at::mm_out(beta, weight.narrow(0, C + c0, m), f);
        // Channels-last output: the tile is finished in place in the gamma buffer, then
        // transposed out, so each output pixel's channels are written in one run.
        T* dst = channels_last ? gamma.data_ptr<T>() : out + (b * C + c0) * P + p0;
        const int64_t ld = channels_last ? n : P;
        for (int64_t r = 0; r < m; ++r) {
          const int64_t c = c0 + r;
          const T bg = bias ? bias[c] : T(0);
          const T bb = (bias && with_beta) ? bias[C + c] : T(0);
          const T* xi = x + (b * C + c) * P + p0;
          const T* g = gamma.data_ptr<T>() + r * n;
          T* o = dst + r * ld;
          if (with_beta) {
            const T* be = beta.data_ptr<T>() + r * n;
            for (int64_t i = 0; i < n; ++i) o[i] = xi[i] * (T(1) + g[i] + bg) + be[i] + bb;
          } else {
            for (int64_t i = 0; i < n; ++i) o[i] = xi[i] * (T(1) + g[i] + bg);
          }
        }
        if (channels_last) dnerv::simd::transpose_block(dst, n, m, n, out + (b * P + p0) * C + c0, C);
      }
    }
  });
}

// with_beta: weight [2C, K], bias [2C]; else only the gamma half is used: x * (1 + gamma),
// which is also the gradient wrt x given grad_out as x. channels_last: return the output in
// channels_last_3d memory format (same values), the layout oneDNN's 3x3 conv is fastest in.
at::Tensor saf_forward(const at::Tensor& x, const at::Tensor& fused, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, bool with_beta, bool channels_last) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "saf_forward: float32/float64 only");
  TORCH_CHECK(!channels_last || x.dim() == 5, "saf_forward: channels_last needs [B, C, T, H, W]");
  auto out = at::empty_like(
      x, channels_last ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "saf_forward", [&] {
    const scalar_t* bptr = bias.has_value() && bias->defined() ? bias->data_ptr<scalar_t>() : nullptr;
    // Detached: OpenMP workers do not inherit the caller's no-grad mode, and mm_out refuses
    // tensors that require grad.
    saf_impl<scalar_t>(x, fused.detach(), weight.detach(), bptr, out, with_beta, channels_last);
  });
  return out;
}

}  // namespace

void dnerv_cpu::bind_saf(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("saf_forward", &saf_forward, py::arg("x"), py::arg("fused"), py::arg("weight"), py::arg("bias"),
        py::kw_only(), py::arg("with_beta"), py::arg("channels_last"));
}
