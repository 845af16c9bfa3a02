// flow_warp on CPU: the torch side of warp.h (tensor checks, allocation, dtype dispatch).
#include <torch/extension.h>

#include <ATen/Dispatch.h>

#include <vector>

#include "cpu_binding.h"
#include "warp.h"

namespace {

using namespace dnerv::warp;
using dnerv_cpu::acc_scalar_type;

WarpDims warp_dims(const at::Tensor& start, const at::Tensor& flow) {
  return {start.size(0), start.size(1), flow.size(2), start.size(2), start.size(3)};
}

at::Tensor flow_warp_forward(const at::Tensor& start, const at::Tensor& end, const at::Tensor& flow,
                             const at::Tensor& t) {
  const WarpDims d = warp_dims(start, flow);
  // start and end: both contiguous, or both channels-last (read in place).
  const bool channels_last = !start.is_contiguous();
  TORCH_CHECK(channels_last ? start.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                                  end.is_contiguous(at::MemoryFormat::ChannelsLast) && !end.is_contiguous()
                            : end.is_contiguous(),
              "flow_warp_forward: start and end must be both contiguous or both channels-last");
  auto out = at::empty({d.B, d.C, d.T, d.H, d.W}, start.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, start.scalar_type(), "flow_warp_forward", [&] {
    const auto kernel = channels_last ? warp_forward_channels_last<scalar_t> : warp_forward_impl<scalar_t>;
    kernel(start.data_ptr<scalar_t>(), end.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
           t.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d);
  });
  return out;
}

// Returns (grad_start, grad_end, grad_flow, grad_t); undefined tensors where not needed.
std::vector<at::Tensor> flow_warp_backward(const at::Tensor& gout, const at::Tensor& start,
                                           const at::Tensor& end, const at::Tensor& flow,
                                           const at::Tensor& t, bool need_features,
                                           bool need_flow_t) {
  const WarpDims d = warp_dims(start, flow);
  const auto acc_opts = start.options().dtype(acc_scalar_type(start.scalar_type()));
  at::Tensor gs, ge, gf, gt;
  // start and end: both contiguous, or both channels-last float32 (read in place; the
  // feature gradients come back channels-last).
  if (!start.is_contiguous()) {
    TORCH_CHECK(start.scalar_type() == at::kFloat && start.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                    end.is_contiguous(at::MemoryFormat::ChannelsLast) && !end.is_contiguous(),
                "flow_warp_backward: channels-last start and end must both be channels-last float32");
    if (need_features) {
      // (at::zeros would ignore a memory format in the options)
      gs = at::empty({d.B, d.C, d.H, d.W}, acc_opts, at::MemoryFormat::ChannelsLast).zero_();
      ge = at::empty({d.B, d.C, d.H, d.W}, acc_opts, at::MemoryFormat::ChannelsLast).zero_();
      warp_backward_features_cl(gout.data_ptr<float>(), flow.data_ptr<float>(), t.data_ptr<float>(),
                                gs.data_ptr<float>(), ge.data_ptr<float>(), d);
    }
    if (need_flow_t) {
      gf = at::empty({d.B, 4, d.T, d.H, d.W}, acc_opts);
      auto gt_pix = at::empty({d.B, d.T, d.H * d.W}, acc_opts);
      warp_backward_flow_cl(gout.data_ptr<float>(), start.data_ptr<float>(), end.data_ptr<float>(),
                            flow.data_ptr<float>(), t.data_ptr<float>(), gf.data_ptr<float>(),
                            gt_pix.data_ptr<float>(), d);
      gt = gt_pix.sum(-1);
    }
    return {gs, ge, gf, gt};
  }
  TORCH_CHECK(end.is_contiguous(), "flow_warp_backward: start and end must be both contiguous or both channels-last");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, start.scalar_type(), "flow_warp_backward", [&] {
    using A = acc_t<scalar_t>;
    if (need_features) {
      gs = at::zeros({d.B, d.C, d.H, d.W}, acc_opts);
      ge = at::zeros({d.B, d.C, d.H, d.W}, acc_opts);
      warp_backward_features<scalar_t>(gout.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                       t.data_ptr<scalar_t>(), gs.data_ptr<A>(), ge.data_ptr<A>(), d);
    }
    if (need_flow_t) {
      gf = at::empty({d.B, 4, d.T, d.H, d.W}, acc_opts);
      auto gt_pix = at::empty({d.B, d.T, d.H * d.W}, acc_opts);
      warp_backward_flow<scalar_t>(gout.data_ptr<scalar_t>(), start.data_ptr<scalar_t>(),
                                   end.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                   t.data_ptr<scalar_t>(), gf.data_ptr<A>(), gt_pix.data_ptr<A>(), d);
      gt = gt_pix.sum(-1);
    }
  });
  const auto dtype = start.scalar_type();
  auto cast = [dtype](const at::Tensor& x) { return x.defined() ? x.to(dtype) : x; };
  return {cast(gs), cast(ge), cast(gf), cast(gt)};
}

}  // namespace

void dnerv_cpu::bind_warp(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("flow_warp_forward", &flow_warp_forward, py::arg("start"), py::arg("end"), py::arg("flow"), py::arg("t"));
  m.def("flow_warp_backward", &flow_warp_backward, py::arg("grad_out"), py::arg("start"), py::arg("end"),
        py::arg("flow"), py::arg("t"), py::kw_only(), py::arg("need_features"), py::arg("need_flow_t"));
}
