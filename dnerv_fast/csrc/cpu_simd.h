// Portable SIMD vectors for the CPU kernels (GCC/Clang vector extensions, no torch headers).
//
// One vector holds kLanes floats: 16 where the build targets AVX-512 (-march=native on such a
// CPU), else 8 (AVX2). Loads and stores go through memcpy, so pointers need no alignment; the
// compiler emits plain vmovups. Arithmetic between a vector and a float broadcasts the float.
//
// The only file of the CPU kernels with ISA-specific code: x86 intrinsics under the build's
// -march macros, and portable GCC/Clang vector code elsewhere (aarch64 compiles it to NEON,
// 8-lane vectors as pairs of 4-lane registers). Everything else uses these functions.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DNERV_X86 1
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace dnerv::simd {

#if defined(DNERV_X86) && defined(__AVX512F__)
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
#if defined(DNERV_X86) && defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(DNERV_X86) && defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// p[idx[k]] in lane k.
inline vf gather(const float* p, vi idx) {
#if defined(DNERV_X86) && defined(__AVX512F__)
  return _mm512_i32gather_ps(reinterpret_cast<__m512i>(idx), p, 4);
#elif defined(DNERV_X86) && defined(__AVX2__)
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

// table[idx] per lane (idx in [0, kLanes)).
inline vf lookup(vf table, vi idx) {
#if defined(DNERV_X86) && defined(__AVX512F__)
  return _mm512_permutexvar_ps(reinterpret_cast<__m512i>(idx), table);
#elif defined(DNERV_X86) && defined(__AVX2__)
  return _mm256_permutevar8x32_ps(table, reinterpret_cast<__m256i>(idx));
#else
  vf out;
  for (int k = 0; k < kLanes; ++k) out[k] = table[idx[k] & (kLanes - 1)];
  return out;
#endif
}

// Four floats (one pixel's four channels, say) and a 4 x 4 transpose of four of them.
typedef float vf4 __attribute__((vector_size(4 * sizeof(float))));

inline vf4 load4(const float* p) {
  vf4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store4(float* p, vf4 v) { std::memcpy(p, &v, sizeof v); }

inline void transpose4(vf4 r[4]) {
  const vf4 t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
  const vf4 t1 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
  const vf4 t2 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
  const vf4 t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
  r[0] = __builtin_shufflevector(t0, t1, 0, 1, 4, 5);
  r[1] = __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
  r[2] = __builtin_shufflevector(t2, t3, 0, 1, 4, 5);
  r[3] = __builtin_shufflevector(t2, t3, 2, 3, 6, 7);
}

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols: a transpose into
// runs of rows. In float, whole vectors of rows are gathered from src (as scalar copies, this
// was half of the channels-last warp).
template <typename S, typename D>
void transpose_block(const S* src, int64_t src_stride, int64_t rows, int64_t cols, D* dst,
                     int64_t dst_stride) {
    int64_t r0 = 0;
  if constexpr (std::is_same_v<S, float> && std::is_same_v<D, float>) {
    if (src_stride * kLanes <= INT32_MAX) {
      vi idx;
      for (int k = 0; k < kLanes; ++k) idx[k] = static_cast<int32_t>(k * src_stride);
      for (; r0 + kLanes <= rows; r0 += kLanes)
        for (int64_t c = 0; c < cols; ++c)
          store(dst + c * dst_stride + r0, gather(src + r0 * src_stride + c, idx));
    }
  }
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = r0; r < rows; ++r) dst[c * dst_stride + r] = static_cast<D>(src[r * src_stride + c]);
}


}  // namespace dnerv::simd
