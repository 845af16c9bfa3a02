// Torch binding of the CUDA launchers (csrc/cuda_launchers.h): checks, allocation, streams.
// Compiled only where torch has CUDA. Tensors arrive contiguous and of one dtype (the Python
// wrapper makes them so).
#include <torch/extension.h>

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include <vector>

#include "cuda_launchers.h"

namespace {

using dnerv_cuda::DType;

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kF32;
    case at::kDouble: return DType::kF64;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    default: TORCH_CHECK(false, "dnerv_fast cuda: unsupported dtype ", t.scalar_type());
  }
}

at::ScalarType acc_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "dnerv_fast cuda ", what, ": ", cudaGetErrorString(err));
}

const void* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr() : nullptr;
}

dnerv_cuda::WarpShape warp_shape(const at::Tensor& start, const at::Tensor& flow) {
  return {start.size(0), start.size(1), flow.size(2), start.size(2), start.size(3)};
}

at::Tensor flow_warp_forward(const at::Tensor& start, const at::Tensor& end, const at::Tensor& flow,
                             const at::Tensor& t) {
  const c10::cuda::CUDAGuard guard(start.device());
  const auto d = warp_shape(start, flow);
  auto out = at::empty({d.B, d.C, d.T, d.H, d.W}, start.options());
  check(dnerv_cuda::flow_warp_forward(dtype_of(start), start.data_ptr(), end.data_ptr(), flow.data_ptr(),
                                      t.data_ptr(), out.data_ptr(), d, c10::cuda::getCurrentCUDAStream()),
        "flow_warp_forward");
  return out;
}

std::vector<at::Tensor> flow_warp_backward(const at::Tensor& gout, const at::Tensor& start,
                                           const at::Tensor& end, const at::Tensor& flow,
                                           const at::Tensor& t, bool need_features, bool need_flow_t) {
  const c10::cuda::CUDAGuard guard(start.device());
  const auto d = warp_shape(start, flow);
  const auto acc = start.options().dtype(acc_type(start));
  at::Tensor gs, ge, gf, gt_pix;
  if (need_features) {
    gs = at::zeros({d.B, d.C, d.H, d.W}, acc);
    ge = at::zeros({d.B, d.C, d.H, d.W}, acc);
  }
  const int groups = dnerv_cuda::warp_flow_groups(d);
  if (need_flow_t) {
    gf = at::empty({groups, d.B, 4, d.T, d.H, d.W}, acc);
    gt_pix = at::empty({groups, d.B, d.T, d.H * d.W}, acc);
  }
  auto ptr = [](const at::Tensor& x) { return x.defined() ? x.data_ptr() : nullptr; };
  check(dnerv_cuda::flow_warp_backward(dtype_of(start), gout.data_ptr(), start.data_ptr(), end.data_ptr(),
                                       flow.data_ptr(), t.data_ptr(), ptr(gs), ptr(ge), ptr(gf), ptr(gt_pix),
                                       need_features, need_flow_t, d, c10::cuda::getCurrentCUDAStream()),
        "flow_warp_backward");
  const auto dtype = start.scalar_type();
  auto cast = [dtype](const at::Tensor& x) { return x.defined() ? x.to(dtype) : x; };
  if (need_flow_t) {  // sums over the channel groups, in a fixed order
    gf = groups == 1 ? gf[0] : gf.sum(0);
    gt_pix = gt_pix.sum(0);
  }
  return {cast(gs), cast(ge), cast(gf), gt_pix.defined() ? gt_pix.sum(-1).to(dtype) : gt_pix};
}

at::Tensor saf_forward(const at::Tensor& x, const at::Tensor& fused, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, bool with_beta, bool channels_last) {
  TORCH_CHECK(!channels_last, "dnerv_fast cuda saf_forward: writes contiguous output only");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), C = x.size(1), K = fused.size(1);
  const int64_t P = B * C == 0 ? 0 : x.numel() / (B * C);
  auto out = at::empty_like(x);
  check(dnerv_cuda::saf_forward(dtype_of(x), x.data_ptr(), fused.data_ptr(), weight.data_ptr(), opt_ptr(bias),
                                out.data_ptr(), B, C, K, P, with_beta, c10::cuda::getCurrentCUDAStream()),
        "saf_forward");
  return out;
}

dnerv_cuda::TailShape tail_shape(const at::Tensor& y, int64_t s) {
  return {y.size(0), y.size(1) / (s * s), y.size(2), y.size(3), y.size(4), s};
}

at::Tensor upsample_tail_forward(const at::Tensor& y, const c10::optional<at::Tensor>& conv_bias, int64_t s,
                                 const at::Tensor& weight, const c10::optional<at::Tensor>& tfc_bias) {
  const c10::cuda::CUDAGuard guard(y.device());
  const auto d = tail_shape(y, s);
  auto out = at::empty({d.B, d.C, d.T, d.H * s, d.W * s}, y.options());
  check(dnerv_cuda::upsample_tail_forward(dtype_of(y), y.data_ptr(), opt_ptr(conv_bias), weight.data_ptr(),
                                          opt_ptr(tfc_bias), out.data_ptr(), d,
                                          c10::cuda::getCurrentCUDAStream()),
        "upsample_tail_forward");
  return out;
}

std::vector<at::Tensor> upsample_tail_backward(const at::Tensor& gout, const at::Tensor& y,
                                               const c10::optional<at::Tensor>& conv_bias, int64_t s,
                                               const at::Tensor& weight) {
  const c10::cuda::CUDAGuard guard(y.device());
  const auto d = tail_shape(y, s);
  const auto acc = y.options().dtype(acc_type(y));
  auto gy = at::empty_like(y);
  auto gbc = at::zeros({d.C * s * s}, acc);
  auto gw = at::zeros({d.C * d.T, d.T}, acc);
  auto gbt = at::zeros({d.C * d.T}, acc);
  check(dnerv_cuda::upsample_tail_backward(dtype_of(y), gout.data_ptr(), y.data_ptr(), opt_ptr(conv_bias),
                                           weight.data_ptr(), gy.data_ptr(), gbc.data_ptr(), gw.data_ptr(),
                                           gbt.data_ptr(), d, c10::cuda::getCurrentCUDAStream()),
        "upsample_tail_backward");
  const auto dtype = y.scalar_type();
  return {gy, gbc.to(dtype), gw.to(dtype), gbt.to(dtype)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dnerv_fast CUDA kernels";
  m.attr("max_tail_t") = dnerv_cuda::kMaxTailT;
  m.def("flow_warp_forward", &flow_warp_forward);
  m.def("flow_warp_backward", &flow_warp_backward, pybind11::arg("grad_out"), pybind11::arg("start"),
        pybind11::arg("end"), pybind11::arg("flow"), pybind11::arg("t"), pybind11::kw_only(),
        pybind11::arg("need_features"), pybind11::arg("need_flow_t"));
  m.def("saf_forward", &saf_forward, pybind11::arg("x"), pybind11::arg("fused"), pybind11::arg("weight"),
        pybind11::arg("bias"), pybind11::kw_only(), pybind11::arg("with_beta"), pybind11::arg("channels_last"));
  m.def("upsample_tail_forward", &upsample_tail_forward);
  m.def("upsample_tail_backward", &upsample_tail_backward);
}
