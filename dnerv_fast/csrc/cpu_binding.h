// What the torch side of the CPU kernels shares: one extension module, bound op by op
// (cpu_warp.cpp, cpu_saf.cpp, cpu_tail.cpp, cpu_winograd.cpp, cpu_heads.cpp; module in
// cpu_binding.cpp), and small tensor helpers.
#pragma once

#include <torch/extension.h>

namespace dnerv_cpu {

void bind_warp(pybind11::module_& m);      // cpu_warp.cpp
void bind_saf(pybind11::module_& m);       // cpu_saf.cpp
void bind_tail(pybind11::module_& m);      // cpu_tail.cpp
void bind_winograd(pybind11::module_& m);  // cpu_winograd.cpp
void bind_heads(pybind11::module_& m);     // cpu_heads.cpp

// The accumulator type of a storage type: float for every one but double.
inline at::ScalarType acc_scalar_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// The data of an optional tensor, nullptr where absent.
template <typename T> const T* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

}  // namespace dnerv_cpu
