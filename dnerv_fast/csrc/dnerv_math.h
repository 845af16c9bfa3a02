// Per-element math of the fused D-NeRV ops, shared by the CPU (C++) and CUDA kernels.
//
// No torch headers: the CUDA translation units include this with plain nvcc. Scalars are
// loaded with static_cast<A>(...) into an accumulator type A (float for float/half/bfloat16,
// double for double), so every function here is templated on A only.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define DNERV_HD __host__ __device__ __forceinline__
#else
#define DNERV_HD inline
#endif

namespace dnerv {

// Storage -> accumulator conversion. Explicit intrinsics for the CUDA half types, because
// torch's nvcc flags (-D__CUDA_NO_HALF_CONVERSIONS__ etc.) remove their implicit casts.
template <typename A, typename T> DNERV_HD A to_acc(T v) { return static_cast<A>(v); }
#if defined(__CUDACC__)
template <> DNERV_HD float to_acc<float, __half>(__half v) { return __half2float(v); }
template <> DNERV_HD float to_acc<float, __nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

// Accumulator type: float for every storage type but double.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

// ---------------------------------------------------------------------------------------
// Bilinear sampling with border padding, align_corners=True (grid_sample semantics).
// ---------------------------------------------------------------------------------------

// The four in-plane offsets of a sample, its fractional position, and whether the sample
// coordinate was inside the frame (grid_sample's border mode clamps the coordinate, so the
// gradient wrt the coordinate is zero where it was clamped, including exactly on the edge).
template <typename A> struct Taps {
  int32_t i00, i01, i10, i11;  // (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  A wx, wy;                    // fractional offsets in [0, 1)
  A mx, my;                    // 1 where the x / y coordinate gradient passes, else 0
};

// Clamp a pixel coordinate to [0, size-1]; `pass` is 1 strictly inside, 0 where clamped.
// A 1-pixel axis always clamps to 0 (the reference's normaliser max(size-1, 1) makes the
// unnormalised coordinate 0 there too).
template <typename A> DNERV_HD A border_clamp(A coord, int size, A& pass) {
  const A hi = static_cast<A>(size - 1);
  if (coord > A(0) && coord < hi) {
    pass = A(1);
    return coord;
  }
  pass = A(0);
  return coord < hi ? A(0) : hi;
}

// Taps of the sample at pixel coordinate (cx, cy) in an H x W plane.
template <typename A> DNERV_HD Taps<A> bilinear_taps(A cx, A cy, int H, int W) {
  Taps<A> k;
  cx = border_clamp(cx, W, k.mx);
  cy = border_clamp(cy, H, k.my);
  const int x0 = static_cast<int>(cx);  // cx >= 0, so truncation is floor
  const int y0 = static_cast<int>(cy);
  // x0 == W-1 only when clamped to the edge, where wx == 0: the +1 tap is then unused.
  const int x1 = x0 + 1 < W ? x0 + 1 : x0;
  const int y1 = y0 + 1 < H ? y0 + 1 : y0;
  k.wx = cx - static_cast<A>(x0);
  k.wy = cy - static_cast<A>(y0);
  k.i00 = y0 * W + x0;
  k.i01 = y0 * W + x1;
  k.i10 = y1 * W + x0;
  k.i11 = y1 * W + x1;
  return k;
}

// Taps of output pixel (x, y) displaced by flow (dx, dy), in pixels.
template <typename A> DNERV_HD Taps<A> flow_taps(int x, int y, A dx, A dy, int H, int W) {
  return bilinear_taps(static_cast<A>(x) + dx, static_cast<A>(y) + dy, H, W);
}

// Taps toward start and end of pixel p (flattened over T*H*W) of one batch item, from its
// flow [4, T, H, W] (channels dx, dy toward start, then dx, dy toward end).
template <typename A, typename T>
DNERV_HD void warp_taps(const T* flow_b, int64_t THW, int64_t p, int H, int W, Taps<A>& ts,
                        Taps<A>& te) {
  const int64_t q = p % (static_cast<int64_t>(H) * W);
  const int x = static_cast<int>(q % W), y = static_cast<int>(q / W);
  ts = flow_taps<A>(x, y, to_acc<A>(flow_b[p]), to_acc<A>(flow_b[THW + p]), H, W);
  te = flow_taps<A>(x, y, to_acc<A>(flow_b[2 * THW + p]), to_acc<A>(flow_b[3 * THW + p]), H, W);
}

// The four bilinear weights in tap order (w00, w01, w10, w11).
template <typename A> DNERV_HD void bilinear_weights(const Taps<A>& k, A w[4]) {
  const A ax = A(1) - k.wx, ay = A(1) - k.wy;
  w[0] = ax * ay;
  w[1] = k.wx * ay;
  w[2] = ax * k.wy;
  w[3] = k.wx * k.wy;
}

// Bilinear blend of the four tap values (v00, v01, v10, v11) at fractional offsets (wx, wy).
template <typename A> DNERV_HD A bilinear_blend(A v00, A v01, A v10, A v11, A wx, A wy) {
  const A top = v00 + wx * (v01 - v00);
  const A bot = v10 + wx * (v11 - v10);
  return top + wy * (bot - top);
}

template <typename A, typename T> DNERV_HD A bilinear_sample(const T* plane, const Taps<A>& k) {
  return bilinear_blend(to_acc<A>(plane[k.i00]), to_acc<A>(plane[k.i01]), to_acc<A>(plane[k.i10]),
                        to_acc<A>(plane[k.i11]), k.wx, k.wy);
}

// Sample value and its gradient wrt the (unclamped) sample coordinate (masked by mx / my).
template <typename A, typename T>
DNERV_HD A bilinear_sample_grad(const T* plane, const Taps<A>& k, A& gx, A& gy) {
  const A v00 = to_acc<A>(plane[k.i00]), v01 = to_acc<A>(plane[k.i01]);
  const A v10 = to_acc<A>(plane[k.i10]), v11 = to_acc<A>(plane[k.i11]);
  const A dtop = v01 - v00, dbot = v11 - v10;
  const A top = v00 + k.wx * dtop;
  const A bot = v10 + k.wx * dbot;
  gx = k.mx * (dtop + k.wy * (dbot - dtop));
  gy = k.my * (bot - top);
  return top + k.wy * (bot - top);
}

// ---------------------------------------------------------------------------------------
// Exact (erf) GELU and its derivative.
// ---------------------------------------------------------------------------------------

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

#if !defined(__CUDACC__)
// Host float path: branch-free, libm-free, so loops over pixels auto-vectorise.

// exp(x) for float: Cody-Waite range reduction + degree-7 Taylor polynomial (rel. err < 2e-7).
inline float exp_vec(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by truncating a half-offset value (vectorises, unlike std::floor).
  const float t = x * 1.44269504088896341f;
  const int32_t ni = static_cast<int32_t>(t + (t < 0.0f ? -0.5f : 0.5f));
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);  // 2^n
  return p * scale;
}

// erf(x) for float, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7, i.e. about one
// float ulp of 1): accurate to float rounding for GELU, and vectorisable.
inline float erf_vec(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * exp_vec(-ax * ax);
  return x < 0.0f ? -y : y;
}
#endif

DNERV_HD float erf_a(float x) {
#if defined(__CUDACC__)
  return erff(x);
#else
  return erf_vec(x);
#endif
}
DNERV_HD double erf_a(double x) { return erf(x); }

DNERV_HD float exp_a(float x) {
#if defined(__CUDACC__)
  return expf(x);
#else
  return exp_vec(x);
#endif
}
DNERV_HD double exp_a(double x) { return exp(x); }

// GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
template <typename A> DNERV_HD A gelu(A x) {
  return A(0.5) * x * (A(1) + erf_a(x * static_cast<A>(kSqrtHalf)));
}

// d GELU / dx = Phi(x) + x phi(x).
template <typename A> DNERV_HD A gelu_grad(A x) {
  const A cdf = A(0.5) * (A(1) + erf_a(x * static_cast<A>(kSqrtHalf)));
  return cdf + x * static_cast<A>(kInvSqrt2Pi) * exp_a(A(-0.5) * x * x);
}

// ---------------------------------------------------------------------------------------
// PixelShuffle (nn.PixelShuffle order): input channel c*s*s + i*s + j holds output channel c
// at sub-pixel (i, j), i.e. output pixel (h*s + i, w*s + j).
// ---------------------------------------------------------------------------------------
DNERV_HD int64_t shuffle_in_channel(int64_t c, int i, int j, int s) {
  return (c * s + i) * s + j;
}

}  // namespace dnerv
