// Runs the torch-free cores of the CPU kernels (dnerv_fast/csrc: warp.h, tail.h, heads.h,
// winograd.h, cpu_gelu.h) on fixed pseudo-random inputs and prints every output value, one
// "name index value" line each (%.9g). Built natively and for aarch64 (run under qemu-user);
// tests/test_cpu_core.py compares the two listings and the float64 cases against each other.
// No torch: the cores run serially (cpu_parallel.h without a runner).
#include <cstdint>
#include <cstdio>
#include <vector>

#include "heads.h"
#include "tail.h"
#include "warp.h"
#include "winograd.h"

namespace {

// A fixed linear congruential sequence in [-1, 1): the same inputs on every machine.
struct Lcg {
  uint64_t state;
  double next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / static_cast<double>(1ULL << 53) * 2.0 - 1.0;
  }
};

template <typename T> std::vector<T> random(size_t n, uint64_t seed, double scale = 1.0) {
  Lcg g{seed};
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(g.next() * scale);
  return v;
}

template <typename T> void print(const char* name, const std::vector<T>& v) {
  for (size_t i = 0; i < v.size(); ++i) std::printf("%s %zu %.9g\n", name, i, static_cast<double>(v[i]));
}

template <typename T> void warp(const char* tag) {
  const dnerv::warp::WarpDims d{2, 3, 4, 5, 7};
  const auto start = random<T>(d.B * d.C * d.HW(), 1), end = random<T>(d.B * d.C * d.HW(), 2);
  const auto flow = random<T>(d.B * 4 * d.THW(), 3, 3.0), tt = random<T>(d.B * d.T, 4, 0.5);
  std::vector<T> out(d.B * d.C * d.THW());
  dnerv::warp::warp_forward_impl<T>(start.data(), end.data(), flow.data(), tt.data(), out.data(), d);
  const auto gout = random<T>(out.size(), 5);
  std::vector<dnerv::acc_t<T>> gs(start.size()), ge(end.size()), gf(flow.size()), gt(d.B * d.THW());
  dnerv::warp::warp_backward_features<T>(gout.data(), flow.data(), tt.data(), gs.data(), ge.data(), d);
  dnerv::warp::warp_backward_flow<T>(gout.data(), start.data(), end.data(), flow.data(), tt.data(), gf.data(),
                                     gt.data(), d);
  std::printf("# warp %s\n", tag);
  print("warp_out", out);
  print("warp_gstart", gs);
  print("warp_gend", ge);
  print("warp_gflow", gf);
  print("warp_gt", gt);
}

template <typename T> void tail(const char* tag) {
  const int64_t B = 1, C = 3, T_ = 8, H = 3, W = 5, s = 2, CSS = C * s * s;
  // contiguous y [B, C*s*s, T, H, W]: channel, frame, row, column strides
  const dnerv::tail::TailDims d{B, C, T_, H, W, s, T_ * H * W, H * W, W, 1};
  const auto y = random<T>(B * CSS * T_ * H * W, 11), cb = random<T>(CSS, 12, 0.1);
  const auto w = random<T>(C * T_ * T_, 13, 0.3), tb = random<T>(C * T_, 14, 0.1);
  std::vector<T> out(B * C * T_ * H * s * W * s);
  dnerv::tail::tail_forward_impl<T>(y.data(), cb.data(), w.data(), tb.data(), out.data(), d);
  const auto gout = random<T>(out.size(), 15);
  std::vector<T> gy(y.size());
  std::vector<dnerv::acc_t<T>> gcb(CSS), gw(w.size()), gtb(tb.size());
  dnerv::tail::tail_backward_impl<T>(gout.data(), y.data(), cb.data(), w.data(), gy.data(), gcb.data(), gw.data(),
                                     gtb.data(), d);
  std::printf("# tail %s\n", tag);
  print("tail_out", out);
  print("tail_gy", gy);
  print("tail_gconv_bias", gcb);
  print("tail_gweight", gw);
  print("tail_gtfc_bias", gtb);
}

void serial(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  if (n > 0) body(0, n);
}

void heads_and_winograd() {
  const dnerv::heads::HeadShape s{1, 2, 5, 9, 6, 3, 4};
  const auto x0 = random<float>(s.B * s.c0 * s.T * s.H * s.W, 21), x1 = random<float>(s.B * s.c1 * s.T * s.H * s.W, 22);
  const auto w1 = random<float>(s.hidden * (s.c0 + s.c1), 23, 0.5), b1 = random<float>(s.hidden, 24, 0.1);
  const auto w2 = random<float>(3 * s.hidden * 9, 25, 0.5), b2 = random<float>(3, 26, 0.1);
  std::vector<float> y(s.B * 3 * s.T * s.H * s.W);
  dnerv::heads::head_forward<3>(x0.data(), x1.data(), w1.data(), b1.data(), w2.data(), b2.data(), y.data(), s, serial);
  print("head_out", y);

  const dnerv::wino::ConvShape c{2, 9, 11, 5, 6};
  const auto x = random<float>(c.N * c.H * c.W * c.cin, 31), w = random<float>(c.cout * c.cin * 9, 32, 0.3);
  const auto bias = random<float>(c.cout, 33, 0.1);
  std::vector<float> u(dnerv::wino::packed_size<4>(c.cout, c.cin));
  dnerv::wino::pack_weights<4>(w.data(), c.cout, c.cin, 0, c.cout, u.data());
  std::vector<float> out(c.N * c.H * c.W * c.cout);
  dnerv::wino::conv3x3<4>(x.data(), u.data(), bias.data(), out.data(), c, 1, serial);
  print("winograd_out", out);

  auto g = random<float>(257, 41, 6.0);
  std::vector<float> gelu(g.size());
  dnerv::simd::gelu_to(g.data(), gelu.data(), static_cast<int64_t>(g.size()));
  print("gelu", gelu);
}

}  // namespace

int main() {
  std::printf("# simd lanes %d\n", dnerv::simd::kLanes);
  warp<float>("float");
  tail<float>("float");
  heads_and_winograd();
  warp<double>("double");
  tail<double>("double");
  return 0;
}
