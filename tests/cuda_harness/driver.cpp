// Runs the CUDA launchers (csrc/cuda_launchers.h) on the harness without torch: built plain,
// under ASan + UBSan, or under TSan by tests/cuda_harness/build.py.
//
//   driver selftest       the harness's own checks (selftest.cu)
//   driver run OUT        every launcher on fixed inputs in every dtype; the outputs, as float64,
//                         appended to OUT (the fault-injection test compares them)
//
// The schedule seed is $CUDA_HARNESS_SEED. Exit status 0 on success, 1 when a launcher
// returns an error, 2 when a selftest check fails.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_launchers.h"

using dnerv_cuda::DType;

int run_selftest(uint64_t (*with_seed)(uint64_t));

namespace {

uint64_t set_seed(uint64_t seed) {
  setenv("CUDA_HARNESS_SEED", std::to_string(seed).c_str(), 1);
  return seed;
}

// Deterministic inputs in [-1, 1) (scaled), independent of the schedule seed.
struct Inputs {
  uint64_t state;
  double next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
  }
};

// A buffer of n values of one storage type, filled from doubles and read back as doubles.
struct Buffer {
  DType dtype;
  size_t n;
  std::vector<unsigned char> bytes;
  Buffer(DType d, size_t count) : dtype(d), n(count), bytes(count * size()) {}
  size_t size() const {
    return dtype == DType::kF64 ? 8 : dtype == DType::kF32 ? 4 : 2;
  }
  void set(size_t i, double v) {
    switch (dtype) {
      case DType::kF64: reinterpret_cast<double*>(bytes.data())[i] = v; break;
      case DType::kF32: reinterpret_cast<float*>(bytes.data())[i] = static_cast<float>(v); break;
      case DType::kF16: reinterpret_cast<__half*>(bytes.data())[i] = __float2half_rn(static_cast<float>(v)); break;
      case DType::kBF16:
        reinterpret_cast<__nv_bfloat16*>(bytes.data())[i] = __float2bfloat16_rn(static_cast<float>(v));
        break;
    }
  }
  double get(size_t i) const {
    switch (dtype) {
      case DType::kF64: return reinterpret_cast<const double*>(bytes.data())[i];
      case DType::kF32: return reinterpret_cast<const float*>(bytes.data())[i];
      case DType::kF16: return __half2float(reinterpret_cast<const __half*>(bytes.data())[i]);
      case DType::kBF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(bytes.data())[i]);
    }
    return 0;
  }
  void* data() { return bytes.data(); }
};

DType acc_of(DType d) { return d == DType::kF64 ? DType::kF64 : DType::kF32; }

Buffer random(DType d, size_t n, Inputs& in, double scale = 1.0) {
  Buffer b(d, n);
  for (size_t i = 0; i < n; ++i) b.set(i, in.next() * scale);
  return b;
}

FILE* g_out = nullptr;
int g_errors = 0;

void emit(const Buffer& b) {
  for (size_t i = 0; i < b.n; ++i) {
    const double v = b.get(i);
    std::fwrite(&v, sizeof v, 1, g_out);
  }
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "driver: %s failed: %s\n", what, cudaGetErrorString(err));
    ++g_errors;
  }
}

void flow_warp(DType d, dnerv_cuda::WarpShape s, uint64_t data_seed) {
  Inputs in{data_seed};
  const size_t feat = s.B * s.C * s.H * s.W, thw = s.T * s.H * s.W;
  Buffer start = random(d, feat, in), end = random(d, feat, in), flow = random(d, s.B * 4 * thw, in, 3.0);
  Buffer t = random(d, s.B * s.T, in);
  for (size_t i = 0; i < t.n; ++i) t.set(i, 0.5 + 0.5 * t.get(i));
  Buffer out(d, s.B * s.C * thw);
  check(dnerv_cuda::flow_warp_forward(d, start.data(), end.data(), flow.data(), t.data(), out.data(), s, nullptr),
        "flow_warp_forward");
  emit(out);
  Buffer gout = random(d, out.n, in);
  const int groups = dnerv_cuda::warp_flow_groups(s);
  Buffer gs(acc_of(d), feat), ge(acc_of(d), feat), gf(acc_of(d), groups * s.B * 4 * thw),
      gt(acc_of(d), groups * s.B * thw);
  check(dnerv_cuda::flow_warp_backward(d, gout.data(), start.data(), end.data(), flow.data(), t.data(),
                                       gs.data(), ge.data(), gf.data(), gt.data(), true, true, s, nullptr),
        "flow_warp_backward");
  emit(gs);
  emit(ge);
  emit(gf);
  emit(gt);
}

void saf(DType d, int64_t B, int64_t C, int64_t K, int64_t P, bool with_beta, bool bias, uint64_t data_seed) {
  Inputs in{data_seed};
  Buffer x = random(d, B * C * P, in), f = random(d, B * K * P, in);
  Buffer w = random(d, (with_beta ? 2 : 1) * C * K, in, 1.0 / std::sqrt(static_cast<double>(K)));
  Buffer b = random(d, 2 * C, in, 0.1);
  Buffer out(d, B * C * P);
  check(dnerv_cuda::saf_forward(d, x.data(), f.data(), w.data(), bias ? b.data() : nullptr, out.data(), B, C, K,
                                P, with_beta, nullptr),
        "saf_forward");
  emit(out);
}

void tail(DType d, dnerv_cuda::TailShape s, uint64_t data_seed) {
  Inputs in{data_seed};
  const size_t ny = s.B * s.C * s.s * s.s * s.T * s.H * s.W;
  Buffer y = random(d, ny, in), cb = random(d, s.C * s.s * s.s, in, 0.1);
  Buffer w = random(d, s.C * s.T * s.T, in, 1.0 / std::sqrt(static_cast<double>(s.T)));
  Buffer tb = random(d, s.C * s.T, in, 0.1);
  Buffer out(d, ny);
  check(dnerv_cuda::upsample_tail_forward(d, y.data(), cb.data(), w.data(), tb.data(), out.data(), s, nullptr),
        "upsample_tail_forward");
  emit(out);
  Buffer gout = random(d, ny, in);
  Buffer gy(d, ny), gcb(acc_of(d), s.C * s.s * s.s), gw(acc_of(d), s.C * s.T * s.T), gtb(acc_of(d), s.C * s.T);
  check(dnerv_cuda::upsample_tail_backward(d, gout.data(), y.data(), cb.data(), w.data(), gy.data(), gcb.data(),
                                           gw.data(), gtb.data(), s, nullptr),
        "upsample_tail_backward");
  emit(gy);
  emit(gcb);
  emit(gw);
  emit(gtb);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "selftest") {
    const int fails = run_selftest(&set_seed);
    return fails ? 2 : 0;
  }
  if (mode != "run" || argc < 3) {
    std::fprintf(stderr, "usage: driver selftest | driver run OUT [f32|all]\n");
    return 64;
  }
  g_out = std::fopen(argv[2], "wb");
  if (!g_out) return 64;
  const bool all = argc < 4 || std::string(argv[3]) == "all";
  std::vector<DType> dtypes = {DType::kF32};
  if (all) dtypes = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};
  for (DType d : dtypes) {
    // Partial pixel blocks, two channel groups, several flow groups.
    flow_warp(d, {2, 13, 3, 7, 9}, 11);
    flow_warp(d, {1, 5, 2, 1, 6}, 12);
    // Partial pixel and channel tiles, K over two shared-memory tiles; with and without beta.
    saf(d, 2, 37, 40, 45, true, true, 13);
    saf(d, 1, 5, 7, 33, false, false, 14);
    // T <= 8 and T <= 16 backward kernels, partial blocks, scales 1..3.
    tail(d, {2, 3, 8, 5, 7, 2}, 15);
    tail(d, {1, 2, 12, 3, 4, 3}, 16);
    tail(d, {1, 3, 5, 13, 21, 1}, 17);
  }
  std::fclose(g_out);
  return g_errors ? 1 : 0;
}
