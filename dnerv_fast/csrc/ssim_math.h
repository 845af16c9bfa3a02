// Per-position math of the fused training loss (pixel error + 1 - SSIM), shared by the CPU
// (C++) and CUDA kernels.
//
// No torch headers: the CUDA translation unit includes this with plain nvcc. Every function
// is templated on the value type V and its scalar type S: V = S = float or double for scalar
// code and CUDA; V = a GCC vector of floats (cpu_simd.h) with S = float on the CPU, where
// arithmetic between a vector and a scalar broadcasts the scalar.
//
// SSIM (Wang et al. 2004) from the five Gaussian-blurred statistics of a window: the means
// mx, my and the raw second moments exx = G*(x x), eyy = G*(y y), exy = G*(x y):
//   A1 = 2 mx my + C1,  B1 = mx^2 + my^2 + C1,
//   A2 = 2 (exy - mx my) + C2,  B2 = (exx - mx^2) + (eyy - my^2) + C2,
//   S = A1 A2 / (B1 B2).
// The gradient with respect to x of a sum of S over windows is, with the derivatives below
// written as maps over window positions, G^T d_mx + 2 x G^T d_exx + y G^T d_exy, G^T the
// adjoint of the 'valid' blur (a blur of the zero-padded map).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DNERV_SSIM_HD __host__ __device__ __forceinline__
#else
#define DNERV_SSIM_HD inline
#endif

namespace dnerv::ssim {

// Stabilising constants for data range 1: C1 = (0.01)^2, C2 = (0.03)^2.
constexpr double kC1 = 0.01 * 0.01;
constexpr double kC2 = 0.03 * 0.03;
// Largest window side (11x11 Gaussian, sigma 1.5); smaller frames use a smaller window.
constexpr int kMaxWindow = 11;
// Row stride of the saved derivative maps: the map width rounded up to a multiple of this
// (whole SIMD vectors on the CPU; one shape for every backend).
constexpr int kMapAlign = 16;

// A vector (or scalar) with every lane s.
template <typename V, typename S> DNERV_SSIM_HD V splat(S s) { return V{} + s; }

// SSIM of one window and, in d_mx, d_exx2 and d_exy, its derivatives with respect to mx,
// exx (times 2, the factor of d(x x)/dx) and exy, each multiplied by `weight` (the window's
// weight in the loss: 0 for a window that holds a hidden pixel or lies outside the map).
template <typename V, typename S>
DNERV_SSIM_HD V ssim_and_grads(V mx, V my, V exx, V eyy, V exy, V weight, V& d_mx, V& d_exx2,
                               V& d_exy) {
  const S c1 = static_cast<S>(kC1), c2 = static_cast<S>(kC2), two = 2, one = 1;
  const V mxx = mx * mx, myy = my * my, mxy = mx * my;
  const V a1 = two * mxy + c1;
  const V b1 = mxx + myy + c1;
  const V a2 = two * (exy - mxy) + c2;
  const V b2 = (exx - mxx) + (eyy - myy) + c2;
  const V inv = one / (b1 * b2);
  const V s = a1 * a2 * inv;
  const V w_inv = weight * inv;
  d_mx = two * w_inv * (my * (a2 - a1) - mx * s * (b2 - b1));
  d_exx2 = -two * weight * s / b2;
  d_exy = two * w_inv * a1;
  return s;
}

// SSIM of one window only (forward without gradient).
template <typename V, typename S> DNERV_SSIM_HD V ssim_value(V mx, V my, V exx, V eyy, V exy) {
  const S c1 = static_cast<S>(kC1), c2 = static_cast<S>(kC2), two = 2;
  const V mxx = mx * mx, myy = my * my, mxy = mx * my;
  return (two * mxy + c1) * (two * (exy - mxy) + c2) /
         ((mxx + myy + c1) * ((exx - mxx) + (eyy - myy) + c2));
}

// |d| (power 1) or d^2 (power 2) of a pixel difference d = x - y.
template <typename V, typename S> DNERV_SSIM_HD V pixel_error(V d, int power) {
  if (power == 2) return d * d;
  return d < S(0) ? -d : d;
}

// Its derivative with respect to x: sign(d) (0 at d = 0, as torch's abs) or 2 d.
template <typename V, typename S> DNERV_SSIM_HD V pixel_error_grad(V d, int power) {
  if (power == 2) return S(2) * d;
  const V one = splat<V, S>(S(1)), zero = splat<V, S>(S(0));
  return d > S(0) ? one : (d < S(0) ? -one : zero);
}

}  // namespace dnerv::ssim
