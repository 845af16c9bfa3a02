// CPU kernels of the fused training loss (pixel error + 1 - SSIM), forward and backward,
// bound with pybind11.
//
// One plane (frame, channel) per task. The forward walks the plane's window rows once: the
// vertical 11-tap pass of the five statistics (x, y, xx, yy, xy) over one row of windows in
// registers, the horizontal pass straight into the SSIM formula (ssim_math.h), so no blurred
// map is ever stored. What the backward needs is saved: the three derivative maps of the SSIM
// sum (d/dmx, 2 d/dexx, d/dexy, each already times the window weight), [3, P, Ho, Wp] in the
// accumulator type (Wp: Wo rounded up to whole vectors; padding lanes hold zeros). The
// backward applies the adjoint blur (a blur of the zero-padded map, separable the same way)
// and the pixel-error derivative, one input row at a time.
//
// Values compute in float for float/half/bfloat16 (vectors of cpu_simd.h) and in double for
// double (one lane). Deterministic: each plane is one task; per-plane sums are added in order.
#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_simd.h"
#include "ssim_math.h"

namespace {

namespace simd = dnerv::simd;
namespace ssim = dnerv::ssim;

// Lanes<A>: the vector type the kernels use for accumulator type A.
template <typename A> struct Lanes;

template <> struct Lanes<float> {
  using V = simd::vf;
  static constexpr int n = simd::kLanes;
  static V load(const float* p) { return simd::load(p); }
  static void store(float* p, V v) { simd::store(p, v); }
  static V splat(float s) { return simd::splat(s); }
  static V fma(V a, V b, V c) { return simd::fma(a, b, c); }
  static V min(V a, V b) { return simd::vmin(a, b); }
  static double sum(V v) { return static_cast<double>(simd::hsum(v)); }
};

template <> struct Lanes<double> {
  using V = double;
  static constexpr int n = 1;
  static V load(const double* p) { return *p; }
  static void store(double* p, V v) { *p = v; }
  static V splat(double s) { return s; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V min(V a, V b) { return a < b ? a : b; }
  static double sum(V v) { return v; }
};

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

struct Dims {
  int64_t P, C, H, W;  // planes (frames * channels), channels, height, width
  int w;               // window side
  int64_t Ho, Wo;      // window positions
  int64_t Wp;          // Wo rounded up to whole vectors: row stride of the saved maps
  int64_t Wr;          // W rounded up to whole vectors, plus one vector of zeros
};

template <typename A> Dims make_dims(const at::Tensor& x, int64_t w) {
  const int64_t L = Lanes<A>::n;
  Dims d{x.size(0) * x.size(1), x.size(1), x.size(2), x.size(3), static_cast<int>(w), 0, 0, 0, 0};
  d.Ho = d.H - w + 1;
  d.Wo = d.W - w + 1;
  d.Wp = round_up(d.Wo, dnerv::ssim::kMapAlign);
  d.Wr = round_up(std::max(d.W, d.Wp + w - 1), L) + L;
  return d;
}

// Row r of a plane, converted to A, zero-padded to d.Wr values.
template <typename T, typename A> void load_row(const T* src, int64_t W, A* dst, int64_t Wr) {
  for (int64_t j = 0; j < W; ++j) dst[j] = static_cast<A>(src[j]);
  std::fill(dst + W, dst + Wr, A(0));
}

// Per-plane sums: pixel error, dissimilarity, visible pixels, whole windows.
struct PlaneSums {
  double error = 0, dissimilarity = 0, pixels = 0, windows = 0;
};

template <typename T, typename A>
PlaneSums forward_plane(const T* x, const T* y, const T* vis, const A* g, const Dims& d, int power,
                        A* m_mx, A* m_xx, A* m_xy) {
  using L = Lanes<A>;
  using V = typename L::V;
  constexpr int n = L::n;
  const int w = d.w;
  const int64_t H = d.H, W = d.W, Wr = d.Wr;
  // The plane converted and padded (x, y, visibility), then one row of vertical sums per
  // statistic; all in this task's cache.
  std::vector<A> xs(H * Wr), ys(H * Wr), vs(vis ? H * Wr : 0), col(5 * Wr, A(0)), vmin(vis ? Wr : 0);
  PlaneSums sums;
  V err_acc = L::splat(0), seen_acc = L::splat(0);
  for (int64_t r = 0; r < H; ++r) {
    A* xr = xs.data() + r * Wr;
    A* yr = ys.data() + r * Wr;
    load_row(x + r * W, W, xr, Wr);
    load_row(y + r * W, W, yr, Wr);
    if (vis) load_row(vis + r * W, W, vs.data() + r * Wr, Wr);
    for (int64_t j = 0; j < Wr; j += n) {  // padding: d = 0, no error
      V e = ssim::pixel_error<V, A>(L::load(xr + j) - L::load(yr + j), power);
      if (vis) {
        const V v = L::load(vs.data() + r * Wr + j);
        e = e * v;
        seen_acc = seen_acc + v;
      }
      err_acc = err_acc + e;
    }
  }
  sums.error = L::sum(err_acc);
  sums.pixels = vis ? L::sum(seen_acc) : static_cast<double>(H * W);
  A* cm = col.data();
  A* cxx = cm + Wr;
  A* cyy = cm + 2 * Wr;
  A* cxy = cm + 3 * Wr;
  A* cmy = cm + 4 * Wr;
  // Lanes j >= Wo weigh nothing: they lie outside the map (their stats are finite).
  std::vector<A> in_map(d.Wp + n, A(0));
  std::fill(in_map.begin(), in_map.begin() + d.Wo, A(1));
  double dis = 0, windows = 0;
  for (int64_t i = 0; i < d.Ho; ++i) {
    // Vertical pass over rows i .. i + w - 1, five statistics in registers.
    for (int64_t j = 0; j < Wr; j += n) {
      V sx = L::splat(0), sy = sx, sxx = sx, syy = sx, sxy = sx, vm = L::splat(1);
      for (int k = 0; k < w; ++k) {
        const V gk = L::splat(g[k]);
        const V xv = L::load(xs.data() + (i + k) * Wr + j);
        const V yv = L::load(ys.data() + (i + k) * Wr + j);
        sx = L::fma(gk, xv, sx);
        sy = L::fma(gk, yv, sy);
        sxx = L::fma(gk, xv * xv, sxx);
        syy = L::fma(gk, yv * yv, syy);
        sxy = L::fma(gk, xv * yv, sxy);
        if (vis) vm = L::min(vm, L::load(vs.data() + (i + k) * Wr + j));
      }
      L::store(cm + j, sx);
      L::store(cmy + j, sy);
      L::store(cxx + j, sxx);
      L::store(cyy + j, syy);
      L::store(cxy + j, sxy);
      if (vis) L::store(vmin.data() + j, vm);
    }
    // Horizontal pass into the SSIM formula.
    V dis_acc = L::splat(0), win_acc = L::splat(0);
    for (int64_t j = 0; j < d.Wp; j += n) {
      V mx = L::splat(0), my = mx, exx = mx, eyy = mx, exy = mx, weight = L::load(in_map.data() + j);
      for (int k = 0; k < w; ++k) {
        const V gk = L::splat(g[k]);
        mx = L::fma(gk, L::load(cm + j + k), mx);
        my = L::fma(gk, L::load(cmy + j + k), my);
        exx = L::fma(gk, L::load(cxx + j + k), exx);
        eyy = L::fma(gk, L::load(cyy + j + k), eyy);
        exy = L::fma(gk, L::load(cxy + j + k), exy);
        if (vis) weight = L::min(weight, L::load(vmin.data() + j + k));
      }
      V s;
      if (m_mx) {
        V a, b, c;
        s = ssim::ssim_and_grads<V, A>(mx, my, exx, eyy, exy, weight, a, b, c);
        L::store(m_mx + i * d.Wp + j, a);
        L::store(m_xx + i * d.Wp + j, b);
        L::store(m_xy + i * d.Wp + j, c);
      } else {
        s = ssim::ssim_value<V, A>(mx, my, exx, eyy, exy);
      }
      dis_acc = dis_acc + weight * (A(1) - s);
      win_acc = win_acc + weight;
    }
    dis += L::sum(dis_acc);
    windows += L::sum(win_acc);
  }
  sums.dissimilarity = dis;
  sums.windows = windows;
  return sums;
}

// grad_x of one plane: ge * error'(x - y) * visible - gd * (G^T m_mx + x G^T m_xx + y G^T m_xy).
template <typename T, typename A>
void backward_plane(const T* x, const T* y, const T* vis, const A* g, const Dims& d, int power,
                    const A* m_mx, const A* m_xx, const A* m_xy, A ge, A gd, T* gx) {
  using L = Lanes<A>;
  using V = typename L::V;
  constexpr int n = L::n;
  const int w = d.w;
  const int64_t W = d.W, Wr = d.Wr, Wp = d.Wp, pad = w - 1;
  // Rows of the three maps after the vertical adjoint, stored from `pad` on so that the
  // horizontal adjoint reads zeros left of the map; zeros right of it too (length Wb).
  const int64_t Wb = round_up(pad + std::max(Wp, round_up(W, n)) + n, n);
  std::vector<A> rows(3 * Wb, A(0)), xr(Wr), yr(Wr), vr(vis ? Wr : 0), out(Wr);
  A* ra = rows.data();
  A* rb = ra + Wb;
  A* rc = ra + 2 * Wb;
  const V vge = L::splat(ge), vgd = L::splat(-gd);
  for (int64_t r = 0; r < d.H; ++r) {
    const int64_t i0 = std::max<int64_t>(0, r - pad), i1 = std::min<int64_t>(d.Ho - 1, r);
    for (int64_t j = 0; j < Wp; j += n) {
      V a = L::splat(0), b = a, c = a;
      for (int64_t i = i0; i <= i1; ++i) {
        const V gk = L::splat(g[r - i]);
        a = L::fma(gk, L::load(m_mx + i * Wp + j), a);
        b = L::fma(gk, L::load(m_xx + i * Wp + j), b);
        c = L::fma(gk, L::load(m_xy + i * Wp + j), c);
      }
      L::store(ra + pad + j, a);
      L::store(rb + pad + j, b);
      L::store(rc + pad + j, c);
    }
    load_row(x + r * W, W, xr.data(), Wr);
    load_row(y + r * W, W, yr.data(), Wr);
    if (vis) load_row(vis + r * W, W, vr.data(), Wr);
    for (int64_t j = 0; j < W; j += n) {
      V a = L::splat(0), b = a, c = a;
      for (int k = 0; k < w; ++k) {
        const V gk = L::splat(g[k]);
        a = L::fma(gk, L::load(ra + pad + j - k), a);
        b = L::fma(gk, L::load(rb + pad + j - k), b);
        c = L::fma(gk, L::load(rc + pad + j - k), c);
      }
      const V xv = L::load(xr.data() + j), yv = L::load(yr.data() + j);
      V pix = vge * ssim::pixel_error_grad<V, A>(xv - yv, power);
      if (vis) pix = pix * L::load(vr.data() + j);
      L::store(out.data() + j, pix + vgd * (a + xv * b + yv * c));
    }
    T* dst = gx + r * W;
    for (int64_t j = 0; j < W; ++j) dst[j] = static_cast<T>(out[j]);
  }
}

at::ScalarType acc_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_inputs(const at::Tensor& x, const at::Tensor& y, const c10::optional<at::Tensor>& vis,
                  const at::Tensor& g) {
  TORCH_CHECK(x.dim() == 4 && x.sizes() == y.sizes(), "ssim_loss: x, y must be [N, C, H, W] alike");
  TORCH_CHECK(x.is_contiguous() && y.is_contiguous(), "ssim_loss: x, y must be contiguous");
  TORCH_CHECK(y.scalar_type() == x.scalar_type(), "ssim_loss: x, y must share a dtype");
  TORCH_CHECK(g.dim() == 1 && g.size(0) >= 1 && g.size(0) <= dnerv::ssim::kMaxWindow &&
                  g.size(0) <= x.size(2) && g.size(0) <= x.size(3) &&
                  g.scalar_type() == acc_type(x.scalar_type()) && g.is_contiguous(),
              "ssim_loss: bad window taps");
  if (vis.has_value() && vis->defined()) {
    TORCH_CHECK(vis->dim() == 4 && vis->size(0) == x.size(0) && vis->size(1) == 1 &&
                    vis->size(2) == x.size(2) && vis->size(3) == x.size(3) && vis->is_contiguous() &&
                    vis->scalar_type() == x.scalar_type(),
                "ssim_loss: visible must be contiguous [N, 1, H, W] in x's dtype");
  }
}

// (sums [4] double: error, dissimilarity, visible pixels per channel, whole windows per
// channel, each summed over planes; saved maps [3, P, Ho, Wp] in the accumulator type, empty
// without need_grad).
std::vector<at::Tensor> ssim_loss_forward(const at::Tensor& x, const at::Tensor& y,
                                          const c10::optional<at::Tensor>& visible,
                                          const at::Tensor& g, int64_t power, bool need_grad) {
  check_inputs(x, y, visible, g);
  const bool has_vis = visible.has_value() && visible->defined();
  const auto acc = acc_type(x.scalar_type());
  auto sums = at::zeros({4}, x.options().dtype(at::kDouble));
  at::Tensor saved = at::empty({0}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ssim_loss_forward", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Dims d = make_dims<A>(x, g.size(0));
    if (need_grad) saved = at::empty({3, d.P, d.Ho, d.Wp}, x.options().dtype(acc));
    A* sv = need_grad ? saved.data_ptr<A>() : nullptr;
    const int64_t map = d.Ho * d.Wp;
    std::vector<PlaneSums> per(d.P);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* vp = has_vis ? visible->data_ptr<scalar_t>() : nullptr;
    const A* gp = g.data_ptr<A>();
    at::parallel_for(0, d.P, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t off = p * d.H * d.W;
        per[p] = forward_plane<scalar_t, A>(
            xp + off, yp + off, vp ? vp + (p / d.C) * d.H * d.W : nullptr, gp, d,
            static_cast<int>(power), sv ? sv + p * map : nullptr,
            sv ? sv + (d.P + p) * map : nullptr, sv ? sv + (2 * d.P + p) * map : nullptr);
      }
    });
    double* s = sums.data_ptr<double>();
    for (const PlaneSums& ps : per) {
      s[0] += ps.error;
      s[1] += ps.dissimilarity;
      s[2] += ps.pixels;
      s[3] += ps.windows;
    }
    // Per channel: the counts of one channel of each frame (the caller multiplies by C).
    s[2] /= static_cast<double>(d.C);
    s[3] /= static_cast<double>(d.C);
  });
  return {sums, saved};
}

// grad_sums: [4] double, the gradients of the forward's sums (only the first two are used).
at::Tensor ssim_loss_backward(const at::Tensor& grad_sums, const at::Tensor& x,
                              const at::Tensor& y, const c10::optional<at::Tensor>& visible,
                              const at::Tensor& saved, const at::Tensor& g, int64_t power) {
  check_inputs(x, y, visible, g);
  const bool has_vis = visible.has_value() && visible->defined();
  const auto gs = grad_sums.to(at::kDouble).contiguous();
  const double grad_error = gs.data_ptr<double>()[0], grad_dissimilarity = gs.data_ptr<double>()[1];
  auto gx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ssim_loss_backward", [&] {
    using A = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Dims d = make_dims<A>(x, g.size(0));
    TORCH_CHECK(saved.is_contiguous() && saved.scalar_type() == acc_type(x.scalar_type()) &&
                    saved.numel() == 3 * d.P * d.Ho * d.Wp,
                "ssim_loss_backward: saved maps do not match x");
    const int64_t map = d.Ho * d.Wp;
    const A* sv = saved.data_ptr<A>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* vp = has_vis ? visible->data_ptr<scalar_t>() : nullptr;
    scalar_t* gp = gx.data_ptr<scalar_t>();
    at::parallel_for(0, d.P, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t off = p * d.H * d.W;
        backward_plane<scalar_t, A>(xp + off, yp + off, vp ? vp + (p / d.C) * d.H * d.W : nullptr,
                                    g.data_ptr<A>(), d, static_cast<int>(power), sv + p * map,
                                    sv + (d.P + p) * map, sv + (2 * d.P + p) * map,
                                    static_cast<A>(grad_error), static_cast<A>(grad_dissimilarity),
                                    gp + off);
      }
    });
  });
  return gx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "dnerv_fast CPU kernels of the fused training loss";
  m.def("ssim_loss_forward", &ssim_loss_forward);
  m.def("ssim_loss_backward", &ssim_loss_backward);
  m.attr("simd_lanes") = dnerv::simd::kLanes;
}
