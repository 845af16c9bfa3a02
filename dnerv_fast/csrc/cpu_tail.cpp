// upsample_tail on CPU: the torch side of tail.h (tensor checks, allocation, dtype dispatch).
#include <torch/extension.h>

#include <ATen/Dispatch.h>

#include <vector>

#include "cpu_binding.h"
#include "tail.h"

namespace {

using namespace dnerv::tail;
using dnerv_cpu::acc_scalar_type;
using dnerv_cpu::opt_ptr;

// y: contiguous or channels_last_3d.
TailDims tail_dims(const at::Tensor& y, int64_t s) {
  TORCH_CHECK(y.is_contiguous() || y.is_contiguous(at::MemoryFormat::ChannelsLast3d),
              "upsample_tail: y must be contiguous or channels_last_3d");
  return {y.size(0), y.size(1) / (s * s), y.size(2), y.size(3), y.size(4), s,
          y.stride(1), y.stride(2), y.stride(3), y.stride(4)};
}


at::Tensor upsample_tail_forward(const at::Tensor& y, const c10::optional<at::Tensor>& conv_bias,
                                 int64_t s, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& tfc_bias) {
  const TailDims d = tail_dims(y, s);
  auto out = at::empty({d.B, d.C, d.T, d.H * s, d.W * s}, y.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_tail_forward", [&] {
    tail_forward_impl<scalar_t>(y.data_ptr<scalar_t>(), opt_ptr<scalar_t>(conv_bias),
                                weight.data_ptr<scalar_t>(), opt_ptr<scalar_t>(tfc_bias),
                                out.data_ptr<scalar_t>(), d);
  });
  return out;
}

// Returns (grad_y, grad_conv_bias [C*s*s], grad_tfc_weight [C*T, T], grad_tfc_bias [C*T]).
std::vector<at::Tensor> upsample_tail_backward(const at::Tensor& gout, const at::Tensor& y,
                                               const c10::optional<at::Tensor>& conv_bias, int64_t s,
                                               const at::Tensor& weight) {
  const TailDims d = tail_dims(y, s);
  const auto acc_opts = y.options().dtype(acc_scalar_type(y.scalar_type()));
  auto gy = at::empty_like(y, at::MemoryFormat::Contiguous);
  auto gbc = at::zeros({d.C * s * s}, acc_opts);
  auto gw = at::zeros({d.C * d.T, d.T}, acc_opts);
  auto gbt = at::zeros({d.C * d.T}, acc_opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "upsample_tail_backward", [&] {
    using A = acc_t<scalar_t>;
    tail_backward_impl<scalar_t>(gout.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                 opt_ptr<scalar_t>(conv_bias), weight.data_ptr<scalar_t>(),
                                 gy.data_ptr<scalar_t>(), gbc.data_ptr<A>(), gw.data_ptr<A>(),
                                 gbt.data_ptr<A>(), d);
  });
  const auto dtype = y.scalar_type();
  return {gy, gbc.to(dtype), gw.to(dtype), gbt.to(dtype)};
}

}  // namespace

void dnerv_cpu::bind_tail(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("upsample_tail_forward", &upsample_tail_forward, py::arg("y"), py::arg("conv_bias"), py::arg("scale"),
        py::arg("tfc_weight"), py::arg("tfc_bias"));
  m.def("upsample_tail_backward", &upsample_tail_backward, py::arg("grad_out"), py::arg("y"),
        py::arg("conv_bias"), py::arg("scale"), py::arg("tfc_weight"));
}
