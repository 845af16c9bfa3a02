// Torch binding of the fused loss's CUDA launchers (csrc/cuda_loss.h): checks, allocation,
// streams. Compiled only where torch has CUDA; tensors arrive contiguous (the Python wrapper
// makes them so), x, y and visible of one dtype.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

#include "cuda_loss.h"
#include "ssim_math.h"

namespace {

using dnerv_cuda::DType;

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    default: TORCH_CHECK(false, "dnerv_fast cuda ssim_loss: unsupported dtype ", t.scalar_type());
  }
}

void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "dnerv_fast cuda ", what, ": ", cudaGetErrorString(err));
}

const void* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr() : nullptr;
}

dnerv_cuda::LossShape loss_shape(const at::Tensor& x, const at::Tensor& taps) {
  TORCH_CHECK(x.dim() == 4 && taps.dim() == 1 && taps.size(0) >= 1 &&
                  taps.size(0) <= dnerv::ssim::kMaxWindow,
              "dnerv_fast cuda ssim_loss: bad frames or taps");
  const int w = static_cast<int>(taps.size(0));
  const int64_t Wo = x.size(3) - w + 1;
  const int64_t align = dnerv::ssim::kMapAlign;
  return {x.size(0) * x.size(1), x.size(1), x.size(2), x.size(3), w, (Wo + align - 1) / align * align};
}

std::vector<double> host_taps(const at::Tensor& taps) {
  const auto t = taps.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

// (sums [4] double, saved maps [3, P, Ho, Wp] or empty).
std::vector<at::Tensor> ssim_loss_forward(const at::Tensor& x, const at::Tensor& y,
                                          const c10::optional<at::Tensor>& visible,
                                          const at::Tensor& taps, int64_t power, bool need_grad) {
  const c10::cuda::CUDAGuard guard(x.device());
  const auto s = loss_shape(x, taps);
  const auto acc = x.options().dtype(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  const DType dtype = dtype_of(x);
  auto partials = at::empty({dnerv_cuda::ssim_loss_blocks(dtype, s), 4}, acc);
  auto saved = need_grad ? at::empty({3, s.P, s.H - s.w + 1, s.Wp}, acc) : at::empty({0}, acc);
  const auto g = host_taps(taps);
  check(dnerv_cuda::ssim_loss_forward(dtype, x.data_ptr(), y.data_ptr(), opt_ptr(visible), g.data(),
                                      static_cast<int>(power), partials.data_ptr(),
                                      need_grad ? saved.data_ptr() : nullptr, s,
                                      c10::cuda::getCurrentCUDAStream()),
        "ssim_loss_forward");
  auto sums = partials.to(at::kDouble).sum(0);
  sums.slice(0, 2, 4).div_(static_cast<double>(s.C));
  return {sums, saved};
}

at::Tensor ssim_loss_backward(const at::Tensor& grad_sums, const at::Tensor& x, const at::Tensor& y,
                              const c10::optional<at::Tensor>& visible, const at::Tensor& saved,
                              const at::Tensor& taps, int64_t power) {
  const c10::cuda::CUDAGuard guard(x.device());
  const auto s = loss_shape(x, taps);
  TORCH_CHECK(saved.numel() == 3 * s.P * (s.H - s.w + 1) * s.Wp,
              "dnerv_fast cuda ssim_loss_backward: saved maps do not match x");
  const auto gs = grad_sums.to(at::kDouble).contiguous();
  auto gx = at::empty_like(x);
  const auto g = host_taps(taps);
  check(dnerv_cuda::ssim_loss_backward(dtype_of(x), gs.data_ptr<double>(), x.data_ptr(), y.data_ptr(),
                                       opt_ptr(visible), saved.data_ptr(), g.data(),
                                       static_cast<int>(power), gx.data_ptr(), s,
                                       c10::cuda::getCurrentCUDAStream()),
        "ssim_loss_backward");
  return gx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dnerv_fast CUDA kernels of the fused training loss";
  m.def("ssim_loss_forward", &ssim_loss_forward);
  m.def("ssim_loss_backward", &ssim_loss_backward);
}
