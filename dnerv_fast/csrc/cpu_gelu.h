// Vectorised erf, exact (erf) GELU and its derivative for float on the CPU, no division; the
// GELU needs no exp, its derivative one (a range-reduced polynomial below).
//
// |x| in [0, 4) is cut into kLanes equal intervals (16 with AVX-512, 8 with AVX2). On each
// interval below |x| = 1, erf(x) / x is a degree-6 polynomial P_i in the interval's local
// coordinate t in [-1, 1], so erf(x) = |x| P_i(t) keeps full relative accuracy down to x = 0;
// from |x| = 1 on, the polynomial is erfc(x) and erf(x) = 1 - P_i(t), so the rounding of the
// polynomial lands on a value below 0.16 and costs a fraction of erf's ulp (with erf(x) / x
// there, the 8-interval AVX2 build rounded to 2.3 ulp near |x| = 3.7). The polynomials
// interpolate std::erf / std::erfc (double) at Chebyshev nodes, built once at start-up; the
// coefficient of t^j of all intervals fills one vector, picked per lane by a permute (a
// register table lookup). Interpolation error: below 1e-8 relative (8 intervals), 1e-10 (16);
// what remains is float rounding (tests/test_fused_heads.py states the measured ulp error,
// for both builds). Beyond |x| = 4, erf rounds to +-1 in float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "cpu_simd.h"

namespace dnerv::simd {

constexpr int kErfDegree = 6;
constexpr float kErfRange = 4.0f;
constexpr float kErfcFrom = 1.0f;  // intervals from here on hold erfc (an interval edge)

struct ErfTable {
  vf c[kErfDegree + 1];  // c[j][i]: coefficient of t^j on interval i

  ErfTable() {
    constexpr int n = kErfDegree + 1;
    const double width = static_cast<double>(kErfRange) / kLanes;
    float coef[n][kLanes];
    for (int i = 0; i < kLanes; ++i) {
      // Solve the Vandermonde system at the Chebyshev nodes (Gaussian elimination with
      // partial pivoting; 7 x 7, well conditioned on [-1, 1]).
      double a[n][n + 1];
      for (int k = 0; k < n; ++k) {
        const double t = std::cos((2 * k + 1) * M_PI / (2 * n));
        const double x = (i + 0.5 + 0.5 * t) * width;
        double p = 1;
        for (int j = 0; j < n; ++j, p *= t) a[k][j] = p;
        a[k][n] = i * width >= kErfcFrom ? std::erfc(x) : std::erf(x) / x;
      }
      for (int col = 0; col < n; ++col) {
        int piv = col;
        for (int r = col + 1; r < n; ++r)
          if (std::fabs(a[r][col]) > std::fabs(a[piv][col])) piv = r;
        for (int j = 0; j <= n; ++j) std::swap(a[col][j], a[piv][j]);
        for (int r = 0; r < n; ++r) {
          if (r == col) continue;
          const double f = a[r][col] / a[col][col];
          for (int j = col; j <= n; ++j) a[r][j] -= f * a[col][j];
        }
      }
      for (int j = 0; j < n; ++j) coef[j][i] = static_cast<float>(a[j][n] / a[j][j]);
    }
    for (int j = 0; j < n; ++j) c[j] = load(coef[j]);
  }
};

inline const ErfTable& erf_table() {
  static const ErfTable table;
  return table;
}

inline vf erf(vf x, const ErfTable& tab) {
  const vf zero{}, one = splat(1.0f), range = splat(kErfRange);
  const vf ax = x < zero ? -x : x;
  const vf cl = ax > range ? range : ax;  // NaN stays NaN
  constexpr float scale = kLanes / kErfRange;  // intervals per unit, a power of 2
  const vi last = vi{} + (kLanes - 1);
  vi idx = __builtin_convertvector(cl * scale, vi);
  idx = idx > last ? last : idx;
  const vf t = cl * (2 * scale) - (__builtin_convertvector(idx, vf) * 2.0f + 1.0f);  // exact
  vf p = lookup(tab.c[kErfDegree], idx);
  for (int j = kErfDegree - 1; j >= 0; --j) p = fma(p, t, lookup(tab.c[j], idx));
  vf y = cl >= splat(kErfcFrom) ? one - p : cl * p;
  y = y > one ? one : y;
  return x < zero ? -y : y;
}

// GELU(x) = x / 2 (1 + erf(x / sqrt 2)).
inline vf gelu(vf x, const ErfTable& tab) {
  return (0.5f * x) * (1.0f + erf(x * 0.70710678118654752440f, tab));
}

// dst[i] = GELU(src[i] + bias) for i < n (dst may be src).
inline void gelu_to(const float* src, float* dst, int64_t n, float bias = 0.0f) {
  const ErfTable& tab = erf_table();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(dst + i, gelu(load(src + i) + bias, tab));
  if (i < n) store_part(dst + i, gelu(load_part(src + i, n - i) + bias, tab), n - i);
}

inline void gelu_inplace(float* v, int64_t n, float bias = 0.0f) { gelu_to(v, v, n, bias); }

// exp(x): x = n ln 2 + r with |r| <= ln 2 / 2 (n rounded by the 1.5 * 2^23 shift), exp(r) by
// its degree-7 Taylor polynomial (truncation below 6e-9 relative, under float's half ulp),
// times 2^n built in the exponent bits. x is clamped to [-87, 88]: no denormals, and
// exp(-87) = 1.6e-38 stands for every smaller value.
inline vf exp(vf x) {
  const vf lo = splat(-87.0f), hi = splat(88.0f), shift = splat(12582912.0f);
  x = x < lo ? lo : (x > hi ? hi : x);  // NaN stays NaN
  const vf n = fma(x, splat(1.44269504088896341f), shift) - shift;
  vf r = fma(n, splat(-0.693145751953125f), x);  // ln 2 in two parts: n * hi is exact
  r = fma(n, splat(-1.42860682030941723212e-6f), r);
  vf p = splat(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = fma(p, r, splat(c));
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// d GELU / dx = Phi(x) + x phi(x), through the erf above and exp.
inline vf gelu_grad(vf x, const ErfTable& tab) {
  const vf cdf = 0.5f * (1.0f + erf(x * 0.70710678118654752440f, tab));
  return cdf + x * (0.39894228040143267794f * exp(-0.5f * x * x));
}

// dst[i] = GELU'(src[i]) for i < n.
inline void gelu_grad_to(const float* src, float* dst, int64_t n) {
  const ErfTable& tab = erf_table();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(dst + i, gelu_grad(load(src + i), tab));
  if (i < n) store_part(dst + i, gelu_grad(load_part(src + i, n - i), tab), n - i);
}

}  // namespace dnerv::simd
