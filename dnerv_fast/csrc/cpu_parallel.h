// The parallel-for of the CPU kernels' torch-free cores (warp.h, tail.h): torch's
// at::parallel_for (grain 1) in the extension, installed by cpu_binding.cpp when the module
// loads; serial where nothing is installed (tests/cpu_core, built without torch).
#pragma once

#include <cstdint>
#include <functional>

namespace dnerv {

using ParallelBody = std::function<void(int64_t, int64_t)>;
using ParallelRunner = void (*)(int64_t n, const ParallelBody& body);

inline ParallelRunner& parallel_runner() {
  static ParallelRunner runner = nullptr;
  return runner;
}

// body(begin, end) over chunks of [0, n), on the installed runner's threads.
inline void parallel_for(int64_t n, const ParallelBody& body) {
  if (ParallelRunner runner = parallel_runner()) {
    runner(n, body);
  } else if (n > 0) {
    body(0, n);
  }
}

}  // namespace dnerv
