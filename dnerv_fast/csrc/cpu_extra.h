// Bindings of the CPU kernels that live outside cpu_ops.cpp (one extension, one module).
#pragma once

#include <torch/extension.h>

namespace dnerv_cpu {

void bind_winograd(pybind11::module_& m);  // cpu_winograd.cpp
void bind_heads(pybind11::module_& m);     // cpu_heads.cpp

}  // namespace dnerv_cpu
