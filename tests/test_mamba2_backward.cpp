// Mamba2 training forward/backward (src/model/mamba2_backward.cpp): the training forward equals the inference
// forward from fresh states (chunk sizes dividing T or not, T < chunk, T = 1) and takes exactly the planned
// arena floats; central finite differences on every weight and the input at several shapes (repeat_group 1
// to 3, d_state 4 and 8, one or two rows); gradients accumulate and do not depend on the chunk size; and
// PyTorch autograd golden gradients (scripts/reference/make_mamba2_grad_fixtures.py, float64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/mamba2.h"
#include "support.h"

namespace zebra {
namespace {

// n_heads heads of head_dim (= d_state), x/B groups of d_xb / head_dim heads' worth.
Mamba2Dims make_dims(int64_t hidden, int64_t n_heads, int64_t head_dim, int64_t d_xb) {
  Mamba2Dims d;
  d.hidden = hidden;
  d.n_heads = n_heads;
  d.head_dim = head_dim;
  d.d_state = head_dim;
  d.d_inner = n_heads * head_dim;
  d.d_xb = d_xb;
  d.d_conv = 4;
  return d;
}

std::string describe(const Mamba2Dims& d, int64_t B, int64_t T, int64_t chunk) {
  return "hidden " + std::to_string(d.hidden) + ", " + std::to_string(d.n_heads) + " heads of " +
         std::to_string(d.head_dim) + ", repeat " + std::to_string(d.repeat_group()) + ", B " + std::to_string(B) +
         ", T " + std::to_string(T) + ", chunk " + std::to_string(chunk);
}

Tensor uniform(std::vector<int64_t> shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : t.data) v = u(rng);
  return t;
}

// As test_mamba2.cpp: dt = softplus(dt_bias + small) in ~[0.05, 0.7], A in [-4, -0.5], so both the carried
// state and new tokens matter across chunks.
Mamba2Weights random_weights(const Mamba2Dims& d, std::mt19937& rng, bool conv_3d = true) {
  Mamba2Weights w;
  const float a = 1.0f / std::sqrt(static_cast<float>(d.hidden));
  w.in_proj = uniform({d.in_proj_rows(), d.hidden}, rng, -a, a);
  w.conv_w = conv_3d ? uniform({d.conv_dim(), 1, d.d_conv}, rng, -0.5f, 0.5f)
                     : uniform({d.conv_dim(), d.d_conv}, rng, -0.5f, 0.5f);
  w.conv_b = uniform({d.conv_dim()}, rng, -0.5f, 0.5f);
  w.dt_bias = uniform({d.n_heads}, rng, -3.0f, 0.0f);
  w.A_log = uniform({d.n_heads}, rng, -0.7f, 1.4f);
  w.D = uniform({d.n_heads}, rng, 0.5f, 1.5f);
  w.norm = uniform({d.d_inner}, rng, 0.5f, 1.5f);
  const float b = 1.0f / std::sqrt(static_cast<float>(d.d_inner));
  w.out_proj = uniform({d.hidden, d.d_inner}, rng, -b, b);
  return w;
}

Mamba2Weights zeros_like(const Mamba2Weights& w) {
  Mamba2Weights g;
  g.in_proj = Tensor(w.in_proj.shape);
  g.conv_w = Tensor(w.conv_w.shape);
  g.conv_b = Tensor(w.conv_b.shape);
  g.dt_bias = Tensor(w.dt_bias.shape);
  g.A_log = Tensor(w.A_log.shape);
  g.D = Tensor(w.D.shape);
  g.norm = Tensor(w.norm.shape);
  g.out_proj = Tensor(w.out_proj.shape);
  return g;
}

// The weight tensors by name, in a fixed order (fixtures name them as the checkpoint does).
std::vector<std::pair<std::string, Tensor*>> named(Mamba2Weights& w) {
  return {{"in_proj.weight", &w.in_proj}, {"conv1d.weight", &w.conv_w}, {"conv1d.bias", &w.conv_b},
          {"dt_bias", &w.dt_bias},        {"A_log", &w.A_log},          {"D", &w.D},
          {"norm.weight", &w.norm},       {"out_proj.weight", &w.out_proj}};
}

std::vector<float> randn(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

// max |a - b| / max(1e-6, max |b|)
double rel_err(const float* a, const float* b, int64_t n) {
  double err = 0.0, scale = 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return err / scale;
}

// The training forward on a fresh arena planned by mamba2_activation_floats.
std::vector<float> train_forward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T,
                                 const std::vector<float>& x, int64_t chunk, Arena& arena, Mamba2Activations& act) {
  arena.reset();
  arena.plan(mamba2_activation_floats(d, B, T, chunk));
  std::vector<float> out(B * T * d.hidden);
  mamba2_train_forward(d, w, B, T, x.data(), out.data(), arena, act, chunk);
  return out;
}

// The inference forward with row b in slot b at positions 0..T-1 (rows interleaved token by token, so the
// runs are not contiguous in the batch either).
std::vector<float> inference_forward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T,
                                     const std::vector<float>& x, int64_t chunk) {
  Batch batch;
  std::vector<float> xb(B * T * d.hidden);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(x.data() + (b * T + t) * d.hidden, d.hidden, xb.data() + batch.size() * d.hidden);
      batch.add(0, static_cast<int32_t>(b), static_cast<int32_t>(t), true);
    }
  Mamba2State st;
  st.allocate(B, d);
  std::vector<float> ob(B * T * d.hidden), out(B * T * d.hidden);
  mamba2_forward(d, w, batch, xb.data(), ob.data(), st, chunk);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(ob.data() + (t * B + b) * d.hidden, d.hidden, out.data() + (b * T + t) * d.hidden);
  return out;
}

TEST(Mamba2Train, ForwardEqualsInferenceAndTakesThePlannedFloats) {
  std::mt19937 rng(7);
  const Mamba2Dims dims[] = {make_dims(16, 4, 4, 16), make_dims(24, 4, 8, 16), make_dims(20, 6, 4, 8)};
  for (const Mamba2Dims& d : dims) {
    const Mamba2Weights w = random_weights(d, rng, d.repeat_group() != 2);
    for (int64_t B : {1, 2})
      for (int64_t T : {1, 2, 5, 16, 37})
        for (int64_t chunk : {1, 4, 8, 64}) {
          SCOPED_TRACE(describe(d, B, T, chunk));
          const std::vector<float> x = randn(B * T * d.hidden, rng);
          Arena arena;
          Mamba2Activations act;
          const std::vector<float> out = train_forward(d, w, B, T, x, chunk, arena, act);
          EXPECT_EQ(arena.used(), mamba2_activation_floats(d, B, T, chunk));
          EXPECT_EQ(arena.used(), arena.capacity());
          const std::vector<float> ref = inference_forward(d, w, B, T, x, chunk);
          EXPECT_LT(rel_err(out.data(), ref.data(), B * T * d.hidden), 1e-5);
        }
  }
}

TEST(Mamba2Train, TooSmallPlanAndMismatchedActivationsThrow) {
  std::mt19937 rng(8);
  const Mamba2Dims d = make_dims(8, 2, 4, 4);
  const Mamba2Weights w = random_weights(d, rng);
  const std::vector<float> x = randn(2 * 9 * d.hidden, rng);
  Arena arena;
  arena.plan(mamba2_activation_floats(d, 2, 9, 4) - 1);
  Mamba2Activations act;
  std::vector<float> out(x.size());
  EXPECT_NE(test::error_message([&] { mamba2_train_forward(d, w, 2, 9, x.data(), out.data(), arena, act, 4); })
                .find("plan is too small"),
            std::string::npos);
  train_forward(d, w, 2, 9, x, 4, arena, act);
  Mamba2Weights g = zeros_like(w);
  EXPECT_NE(test::error_message([&] { mamba2_backward(d, w, 2, 9, x.data(), act, out.data(), nullptr, g, 8); })
                .find("activations are of B 2, T 9, chunk 4"),
            std::string::npos);
  g.norm = Tensor({3});
  EXPECT_NE(test::error_message([&] { mamba2_backward(d, w, 2, 9, x.data(), act, out.data(), nullptr, g, 4); })
                .find("norm.weight"),
            std::string::npos);
}

// Loss = Σ out * R, accumulated in double; *abs_sum = Σ |out * R| (the scale of its fp32 rounding).
double loss(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T, const std::vector<float>& x,
            const std::vector<float>& R, int64_t chunk, double* abs_sum = nullptr) {
  Arena arena;
  Mamba2Activations act;
  const std::vector<float> out = train_forward(d, w, B, T, x, chunk, arena, act);
  double s = 0.0, a = 0.0;
  for (size_t i = 0; i < out.size(); ++i) s += static_cast<double>(out[i]) * R[i], a += std::abs(out[i] * R[i]);
  if (abs_sum) *abs_sum = a;
  return s;
}

// fp32 finite differences, Richardson-extrapolated central differences
//   fd = (4 D(h) - D(2h)) / 3,  D(h) = (L(p + h) - L(p - h)) / 2h,
// whose truncation error is O(h^4) (plain D(h) with h = 1e-2 was off by up to 1e-3 of the largest gradient
// where a head's RMSNorm group is small), so a large step keeps the fp32 rounding noise of the loss
// differences small (seen ~3e-8 Σ|out R| per loss, times (4/3 · 2/2h + 1/3 · 2/4h) = 1.5/h in fd).
constexpr float kStep = 1e-2f;
constexpr double kRelTol = 1e-3;  // of the tensor's largest gradient
// The absolute floor: one fp32 ulp (6e-8) of Σ|out R| through the 1.5/h above, ~2x the noise seen; it
// only matters for tensors whose gradients are all tiny (dt_bias, A_log at T = 1), which the PyTorch
// fixtures check to 1e-4.
double noise_floor(double abs_sum) { return 6e-8 * abs_sum * 1.5 / kStep; }

// Central differences on up to `samples` random elements of `param` against the analytic gradient `an`:
// returns max |fd - an| / (kRelTol max|an| + atol) over the samples (< 1 passes).
double fd_check(const Mamba2Dims& d, Mamba2Weights& w, int64_t B, int64_t T, std::vector<float>& x,
                const std::vector<float>& R, int64_t chunk, float* param, const float* an, int64_t size,
                double atol, std::mt19937& rng, int samples = 20) {
  std::vector<int64_t> idx(size);
  for (int64_t i = 0; i < size; ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(std::min<int64_t>(size, samples));
  double scale = 0.0, err = 0.0;
  for (int64_t i = 0; i < size; ++i) scale = std::max(scale, std::abs(static_cast<double>(an[i])));
  for (int64_t i : idx) {
    const float keep = param[i];
    auto central = [&](float h) {
      param[i] = keep + h;
      const double lp = loss(d, w, B, T, x, R, chunk);
      param[i] = keep - h;
      const double lm = loss(d, w, B, T, x, R, chunk);
      param[i] = keep;
      // the step actually taken in fp32, not h
      return (lp - lm) / (static_cast<double>(keep + h) - static_cast<double>(keep - h));
    };
    const double fd = (4.0 * central(kStep) - central(2.0f * kStep)) / 3.0;
    err = std::max(err, std::abs(fd - an[i]));
  }
  return err / (kRelTol * scale + atol);
}

struct Shape {
  Mamba2Dims d;
  int64_t B, T, chunk;
};

TEST(Mamba2Train, FiniteDifferenceGradients) {
  std::mt19937 rng(11);
  const Shape shapes[] = {
      {make_dims(8, 2, 4, 8), 1, 7, 3},     // repeat 1, d_state 4, chunks 3+3+1
      {make_dims(12, 4, 4, 8), 2, 10, 4},   // repeat 2, d_state 4, chunks 4+4+2
      {make_dims(10, 2, 8, 16), 2, 5, 8},   // repeat 1, d_state 8, T < chunk
      {make_dims(8, 3, 8, 8), 2, 9, 4},     // repeat 3, d_state 8, chunks 4+4+1
      {make_dims(8, 4, 4, 8), 2, 1, 64},    // T = 1
      {make_dims(12, 4, 8, 16), 1, 12, 4},  // repeat 2, d_state 8, chunks dividing T
  };
  for (const Shape& s : shapes) {
    const Mamba2Dims& d = s.d;
    SCOPED_TRACE(describe(d, s.B, s.T, s.chunk));
    Mamba2Weights w = random_weights(d, rng, s.T != 5);
    std::vector<float> x = randn(s.B * s.T * d.hidden, rng);
    const std::vector<float> R = randn(s.B * s.T * d.hidden, rng);
    Arena arena;
    Mamba2Activations act;
    train_forward(d, w, s.B, s.T, x, s.chunk, arena, act);
    Mamba2Weights g = zeros_like(w);
    std::vector<float> dx(x.size(), 0.0f);
    mamba2_backward(d, w, s.B, s.T, x.data(), act, R.data(), dx.data(), g, s.chunk);
    double abs_sum = 0.0;
    loss(d, w, s.B, s.T, x, R, s.chunk, &abs_sum);
    const double atol = noise_floor(abs_sum);
    auto wn = named(w), gn = named(g);
    double worst = 0.0;
    for (size_t k = 0; k < wn.size(); ++k) {
      const double e = fd_check(d, w, s.B, s.T, x, R, s.chunk, wn[k].second->ptr(), gn[k].second->ptr(),
                                wn[k].second->numel(), atol, rng);
      EXPECT_LT(e, 1.0) << wn[k].first;
      worst = std::max(worst, e);
    }
    const double ex = fd_check(d, w, s.B, s.T, x, R, s.chunk, x.data(), dx.data(), x.size(), atol, rng);
    EXPECT_LT(ex, 1.0) << "x";
    std::cout << "[ finite diff ] " << describe(d, s.B, s.T, s.chunk) << ": worst error " << std::max(worst, ex)
              << " of the tolerance (" << kRelTol << " of the largest gradient + " << atol << ")\n";
  }
}

TEST(Mamba2Train, GradientsAccumulateAndDoNotDependOnChunkSize) {
  std::mt19937 rng(12);
  const Mamba2Dims d = make_dims(12, 4, 4, 8);
  const int64_t B = 2, T = 23;
  const Mamba2Weights w = random_weights(d, rng);
  const std::vector<float> x = randn(B * T * d.hidden, rng), R = randn(B * T * d.hidden, rng);
  Mamba2Weights ref = zeros_like(w);
  std::vector<float> dx_ref(x.size(), 0.0f);
  {
    Arena arena;
    Mamba2Activations act;
    train_forward(d, w, B, T, x, 64, arena, act);
    mamba2_backward(d, w, B, T, x.data(), act, R.data(), dx_ref.data(), ref, 64);
  }
  for (int64_t chunk : {1, 5, 23}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    Arena arena;
    Mamba2Activations act;
    train_forward(d, w, B, T, x, chunk, arena, act);
    Mamba2Weights g = zeros_like(w);
    std::vector<float> dx(x.size(), 1.0f);  // dx accumulates onto what is there
    mamba2_backward(d, w, B, T, x.data(), act, R.data(), dx.data(), g, chunk);
    mamba2_backward(d, w, B, T, x.data(), act, R.data(), nullptr, g, chunk);  // dx optional; grads add up
    for (size_t i = 0; i < dx.size(); ++i) dx[i] -= 1.0f;
    EXPECT_LT(rel_err(dx.data(), dx_ref.data(), dx.size()), 1e-5);
    auto gn = named(g), rn = named(ref);
    for (size_t k = 0; k < gn.size(); ++k) {
      std::vector<float> half(gn[k].second->data);
      for (float& v : half) v *= 0.5f;
      EXPECT_LT(rel_err(half.data(), rn[k].second->ptr(), half.size()), 1e-5) << gn[k].first;
    }
  }
}

// PyTorch autograd of zebra_ref.Mamba2 in float64 (scripts/reference/make_mamba2_grad_fixtures.py).
TEST(Mamba2Train, MatchesPytorchAutograd) {
  for (const char* name : {"rep2_b2", "rep3_b1"}) {
    SCOPED_TRACE(name);
    const std::string path = test::fixture(std::string("mamba2_grad/") + name + ".safetensors");
    SafetensorsFile f(path);
    auto meta = [&](const char* key) { return std::stoll(f.metadata().at(key)); };
    auto load = [&](const std::string& n) {
      const TensorView* v = f.find(n);
      if (!v) throw Error("fixture " + path + " lacks " + n);
      return view_to_tensor(*v);
    };
    const Mamba2Dims d = make_dims(meta("hidden"), meta("n_heads"), meta("head_dim"), meta("d_xb"));
    ASSERT_EQ(d.d_inner, meta("d_inner"));
    ASSERT_EQ(d.d_state, meta("d_state"));
    const int64_t B = meta("B"), T = meta("T");
    Mamba2Weights w;
    for (auto& [n, t] : named(w)) *t = load(n);
    const Tensor u = load("u"), dout = load("dout"), out_ref = load("out"), du_ref = load("du");
    const std::vector<float> x(u.data);
    for (int64_t chunk : {static_cast<int64_t>(meta("chunk")), int64_t(64)}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      Arena arena;
      Mamba2Activations act;
      const std::vector<float> out = train_forward(d, w, B, T, x, chunk, arena, act);
      EXPECT_LT(rel_err(out.data(), out_ref.ptr(), out.size()), 1e-5);
      Mamba2Weights g = zeros_like(w);
      std::vector<float> dx(x.size(), 0.0f);
      mamba2_backward(d, w, B, T, x.data(), act, dout.ptr(), dx.data(), g, chunk);
      double worst = rel_err(dx.data(), du_ref.ptr(), dx.size());
      EXPECT_LT(worst, 1e-4) << "dx";
      for (auto& [n, t] : named(g)) {
        const Tensor ref = load("grad." + n);
        ASSERT_EQ(t->shape, ref.shape) << n;
        const double e = rel_err(t->ptr(), ref.ptr(), t->numel());
        EXPECT_LT(e, 1e-4) << n;
        worst = std::max(worst, e);
      }
      std::cout << "[ reference ] " << name << ", chunk " << chunk << ": worst gradient error " << worst
                << " of the tensor's largest value\n";
    }
  }
}

}  // namespace
}  // namespace zebra
