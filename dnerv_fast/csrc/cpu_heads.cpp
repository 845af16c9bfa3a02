// Fused flow / RGB heads (heads.h) and the vectorised erf / GELU (cpu_gelu.h), bound for torch.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "cpu_binding.h"
#include "cpu_gelu.h"
#include "heads.h"

namespace {

namespace heads = dnerv::heads;

// Head of cat([x0, x1], 1) (x1 optional) for float32 [B, C, T, H, W] inputs: w1 [hidden, C]
// (or [hidden, C, 1, 1, 1]), w2 [O, hidden, (1,) 3, 3] with O = 3 or 4. Returns [B, O, T, H, W].
at::Tensor fused_head(const at::Tensor& x0, const c10::optional<at::Tensor>& x1, const at::Tensor& w1,
                      const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
                      const c10::optional<at::Tensor>& b2) {
  TORCH_CHECK(x0.dim() == 5 && x0.scalar_type() == at::kFloat && x0.is_contiguous(),
              "fused_head: x0 must be contiguous float32 [B, C, T, H, W]");
  const bool two = x1.has_value() && x1->defined();
  const int64_t B = x0.size(0), T = x0.size(2), H = x0.size(3), W = x0.size(4);
  if (two) {
    TORCH_CHECK(x1->dim() == 5 && x1->scalar_type() == at::kFloat && x1->is_contiguous() &&
                    x1->size(0) == B && x1->size(2) == T && x1->size(3) == H && x1->size(4) == W,
                "fused_head: x1 must be contiguous float32 [B, C1, T, H, W] like x0");
  }
  const int64_t c0 = x0.size(1), c1 = two ? x1->size(1) : 0;
  const auto w1c = w1.detach().reshape({w1.size(0), -1}).contiguous();
  const auto w2c = w2.detach().reshape({w2.size(0), w2.size(1), -1}).contiguous();
  const int64_t hidden = w1c.size(0), O = w2c.size(0);
  TORCH_CHECK(w1c.size(1) == c0 + c1 && w2c.size(1) == hidden && w2c.size(2) == 9 && (O == 3 || O == 4) &&
                  w1c.scalar_type() == at::kFloat && w2c.scalar_type() == at::kFloat,
              "fused_head: weights must be float32 [hidden, C] and [3 or 4, hidden, 3, 3]");
  auto bias = [](const c10::optional<at::Tensor>& b, int64_t n) -> const float* {
    if (!b.has_value() || !b->defined()) return nullptr;
    TORCH_CHECK(b->numel() == n && b->is_contiguous() && b->scalar_type() == at::kFloat,
                "fused_head: biases must be contiguous float32");
    return b->data_ptr<float>();
  };
  const float* b1p = bias(b1, hidden);
  const float* b2p = bias(b2, O);
  auto y = at::empty({B, O, T, H, W}, x0.options());
  const heads::HeadShape s{B, T, H, W, c0, c1, hidden};
  const auto parallel = [](int64_t n, const auto& body) { at::parallel_for(0, n, 1, body); };
  const float* x1p = two ? x1->data_ptr<float>() : nullptr;
  if (O == 4) {
    heads::head_forward<4>(x0.data_ptr<float>(), x1p, w1c.data_ptr<float>(), b1p, w2c.data_ptr<float>(), b2p,
                           y.data_ptr<float>(), s, parallel);
  } else {
    heads::head_forward<3>(x0.data_ptr<float>(), x1p, w1c.data_ptr<float>(), b1p, w2c.data_ptr<float>(), b2p,
                           y.data_ptr<float>(), s, parallel);
  }
  return y;
}

enum class Unary { kErf, kGelu, kGeluGrad };

// The vectorised erf, GELU or GELU derivative of a float32 tensor (what the fused kernels
// use; for tests).
at::Tensor simd_unary(const at::Tensor& x, Unary fn) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "simd_erf / simd_gelu / simd_gelu_grad: float32 only");
  auto in = x.contiguous();
  auto out = at::empty_like(in);
  const auto& tab = dnerv::simd::erf_table();
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, in.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    using namespace dnerv::simd;
    if (fn == Unary::kGelu) {
      gelu_to(src + begin, dst + begin, end - begin);
    } else if (fn == Unary::kGeluGrad) {
      gelu_grad_to(src + begin, dst + begin, end - begin);
    } else {
      int64_t i = begin;
      for (; i + kLanes <= end; i += kLanes) store(dst + i, dnerv::simd::erf(load(src + i), tab));
      if (i < end) store_part(dst + i, dnerv::simd::erf(load_part(src + i, end - i), tab), end - i);
    }
  });
  return out;
}

}  // namespace

void dnerv_cpu::bind_heads(pybind11::module_& m) {
  m.def("fused_head", &fused_head, "1x1 conv, GELU, 3x3 conv to 3 or 4 channels, one pass");
  m.def("simd_erf", [](const at::Tensor& x) { return simd_unary(x, Unary::kErf); });
  m.def("simd_gelu", [](const at::Tensor& x) { return simd_unary(x, Unary::kGelu); });
  m.def("simd_gelu_grad", [](const at::Tensor& x) { return simd_unary(x, Unary::kGeluGrad); });
}
