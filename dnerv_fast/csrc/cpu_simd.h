// Portable SIMD vectors for the CPU kernels (GCC/Clang vector extensions, no torch headers).
//
// One vector holds kLanes floats: 16 where the build targets AVX-512 (-march=native on such a
// CPU), else 8 (AVX2). Loads and stores go through memcpy, so pointers need no alignment; the
// compiler emits plain vmovups. Arithmetic between a vector and a float broadcasts the float.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dnerv::simd {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif

typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

// The first n (< kLanes) floats of p, the other lanes zero.
inline vf load_part(const float* p, int64_t n) {
  float buf[kLanes] = {};
  std::memcpy(buf, p, static_cast<size_t>(n) * sizeof(float));
  return load(buf);
}

inline void store_part(float* p, vf v, int64_t n) {
  float buf[kLanes];
  store(buf, v);
  std::memcpy(p, buf, static_cast<size_t>(n) * sizeof(float));
}

inline vf splat(float s) { return vf{} + s; }

// a * b + c in one rounding where the CPU has FMA (the build's ISO C++ mode does not contract
// a * b + c by itself).
inline vf fma(vf a, vf b, vf c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// p[idx[k]] in lane k.
inline vf gather(const float* p, vi idx) {
#if defined(__AVX512F__)
  return _mm512_i32gather_ps(reinterpret_cast<__m512i>(idx), p, 4);
#elif defined(__AVX2__)
  return _mm256_i32gather_ps(p, reinterpret_cast<__m256i>(idx), 4);
#else
  vf out;
  for (int k = 0; k < kLanes; ++k) out[k] = p[idx[k]];
  return out;
#endif
}

// The sum of the lanes, in lane order.
inline float hsum(vf x) {
  float s = 0.0f;
  for (int k = 0; k < kLanes; ++k) s += x[k];
  return s;
}

inline vf vmin(vf a, vf b) { return a < b ? a : b; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }

}  // namespace dnerv::simd
