// Winograd F(m x m, 3 x 3) convolution for the decoder's block convolutions (inference):
// the torch-facing side of winograd.h. Float32 only; channels-last input and output.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "cpu_binding.h"
#include "winograd.h"

namespace {

namespace wino = dnerv::wino;

void check_tile(int64_t tile) { TORCH_CHECK(tile == 2 || tile == 4, "winograd: tile must be 2 or 4, got ", tile); }

int64_t packed_numel(int64_t tile, int64_t cout, int64_t cin) {
  return tile == 4 ? wino::packed_size<4>(cout, cin) : wino::packed_size<2>(cout, cin);
}

// weight [cout, cin, 3, 3] (a [cout, cin, 1, 3, 3] Conv3d weight is accepted) -> the packed
// transformed weights, a flat float32 tensor.
at::Tensor winograd_pack(const at::Tensor& weight, int64_t tile) {
  check_tile(tile);
  const auto w = weight.detach().reshape({weight.size(0), weight.size(1), -1}).contiguous();
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.size(2) == 9, "winograd_pack: float32 3x3 kernels only");
  const int64_t cout = w.size(0), cin = w.size(1);
  auto u = at::zeros({packed_numel(tile, cout, cin)}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = u.data_ptr<float>();
  at::parallel_for(0, cout, 16, [&](int64_t o0, int64_t o1) {
    if (tile == 4) {
      wino::pack_weights<4>(src, cout, cin, o0, o1, dst);
    } else {
      wino::pack_weights<2>(src, cout, cin, o0, o1, dst);
    }
  });
  return u;
}

// x: [N, C, H, W] channels_last or [B, C, T, H, W] channels_last_3d (the frames' pixels are
// rows of C floats either way). Returns the convolution (stride 1, padding 1) in the same
// rank and memory format.
at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& packed, int64_t cout, int64_t tile,
                            const c10::optional<at::Tensor>& bias) {
  check_tile(tile);
  TORCH_CHECK(x.scalar_type() == at::kFloat && packed.scalar_type() == at::kFloat,
              "winograd_conv3x3: float32 only");
  const bool five = x.dim() == 5;
  TORCH_CHECK(five || x.dim() == 4, "winograd_conv3x3: x must be [N, C, H, W] or [B, C, T, H, W]");
  const auto format = five ? at::MemoryFormat::ChannelsLast3d : at::MemoryFormat::ChannelsLast;
  TORCH_CHECK(x.is_contiguous(format), "winograd_conv3x3: x must be channels-last");
  const int64_t cin = x.size(1), H = x.size(-2), W = x.size(-1);
  const int64_t N = five ? x.size(0) * x.size(2) : x.size(0);
  TORCH_CHECK(packed.is_contiguous() && packed.numel() == packed_numel(tile, cout, cin),
              "winograd_conv3x3: packed weights do not match ", cout, " x ", cin, " channels");
  const float* b = nullptr;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->is_contiguous() && bias->numel() == cout && bias->scalar_type() == at::kFloat,
                "winograd_conv3x3: bias must be float32 [cout]");
    b = bias->data_ptr<float>();
  }
  auto sizes = x.sizes().vec();
  sizes[1] = cout;
  auto y = at::empty(sizes, x.options().memory_format(format));
  const wino::ConvShape shape{N, H, W, cin, cout};
  const auto parallel = [](int64_t n, const auto& body) { at::parallel_for(0, n, 1, body); };
  const int threads = at::get_num_threads();
  if (tile == 4) {
    wino::conv3x3<4>(x.data_ptr<float>(), packed.data_ptr<float>(), b, y.data_ptr<float>(), shape, threads, parallel);
  } else {
    wino::conv3x3<2>(x.data_ptr<float>(), packed.data_ptr<float>(), b, y.data_ptr<float>(), shape, threads, parallel);
  }
  return y;
}

}  // namespace

void dnerv_cpu::bind_winograd(pybind11::module_& m) {
  m.def("winograd_pack", &winograd_pack, "packed Winograd-transformed 3x3 weights");
  m.def("winograd_conv3x3", &winograd_conv3x3, "Winograd 3x3 convolution, channels-last, stride 1, pad 1");
  m.attr("winograd_lanes") = dnerv::wino::kLanes;
}
