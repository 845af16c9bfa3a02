// The CPU extension module: every op's bindings, and torch's thread pool for the torch-free
// kernel cores (cpu_parallel.h).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include "cpu_binding.h"
#include "cpu_parallel.h"
#include "cpu_simd.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dnerv_fast CPU kernels";
  dnerv::parallel_runner() = [](int64_t n, const dnerv::ParallelBody& body) { at::parallel_for(0, n, 1, body); };
  // Floats per SIMD vector this build uses (16: AVX-512, 8: AVX2 and portable), for tests and reports.
  m.attr("simd_lanes") = dnerv::simd::kLanes;
  dnerv_cpu::bind_warp(m);
  dnerv_cpu::bind_saf(m);
  dnerv_cpu::bind_tail(m);
  dnerv_cpu::bind_winograd(m);
  dnerv_cpu::bind_heads(m);
}
