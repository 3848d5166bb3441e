// Backward ops (kernels/cpu/grad_ops.h) and the SwiGLU MLP training backward (model/mlp.h) against central finite differences of double-precision reference
// forwards, at several shapes. Each test differentiates the scalar L = sum(dy * f(inputs)) with a random dy,
// so the FD gradient of L is exactly what the backward should produce. Every gradient buffer starts with
// random "earlier" contents to check that the ops accumulate (+=) instead of overwriting, and each reference
// forward is first compared with the fp32 op in ops.h so the gradient is that of the forward actually used.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"
#include "model/mlp.h"

namespace zebra {
namespace {

using Vec = std::vector<double>;
using Fn = std::function<double(const Vec&)>;

std::vector<float> randn(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h, all in double: truncation error O(h^2), rounding ~1e-16/h.
Vec fd_grad(const Fn& L, Vec x, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double up = L(x);
    x[i] = x0 - h;
    const double down = L(x);
    x[i] = x0;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// got - before == want, elementwise, to |err| <= tol * (1 + |want|) (the fp32 op vs the exact gradient).
void expect_grad(const std::vector<float>& got, const std::vector<float>& before, const Vec& want, double tol,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(((double)got[i] - before[i]) - want[i]) / (1.0 + std::abs(want[i]));
    worst = std::max(worst, err);
  }
  EXPECT_LE(worst, tol) << what << ": worst scaled error of the accumulated gradient";
}

void expect_forward(const std::vector<float>& got, const Vec& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << what << " [" << i << "]";
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---- reference forwards (double) ----

// y[T, out] = x[T, in] W[out, in]^T
Vec ref_linear(const Vec& x, const Vec& w, int64_t T, int64_t in, int64_t out) {
  Vec y(T * out, 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[t * out + o] += x[t * in + i] * w[o * in + i];
  return y;
}

// y[M, N] = a[M, K] b[K, N]
Vec ref_matmul(const Vec& a, const Vec& b, int64_t M, int64_t K, int64_t N) {
  Vec y(M * N, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += a[m * K + k] * b[k * N + n];
  return y;
}

Vec ref_rmsnorm(const Vec& x, const Vec& w, int64_t T, int64_t n, double eps) {
  Vec y(T * n);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += x[t * n + i] * x[t * n + i];
    const double r = 1.0 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) y[t * n + i] = w[i] * x[t * n + i] * r;
  }
  return y;
}

Vec ref_silu_mul(const Vec& gate, const Vec& up) {
  Vec y(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) y[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return y;
}

Vec ref_softmax(const Vec& x) {
  double mx = x[0];
  for (double v : x) mx = std::max(mx, v);
  Vec y(x.size());
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += (y[i] = std::exp(x[i] - mx));
  for (double& v : y) v /= s;
  return y;
}

Vec ref_rope(const Vec& x, const Vec& cos, const Vec& sin) {
  const size_t h = x.size() / 2;
  Vec y(x.size());
  for (size_t i = 0; i < h; ++i) {
    y[i] = x[i] * cos[i] - x[i + h] * sin[i];
    y[i + h] = x[i + h] * cos[i] + x[i] * sin[i];
  }
  return y;
}

// ---- tests ----

struct Dims3 {
  int64_t a, b, c;
};

TEST(GradOps, LinearBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(1);
  for (Dims3 s : {Dims3{1, 1, 1}, Dims3{3, 5, 4}, Dims3{7, 16, 9}, Dims3{2, 33, 1}}) {
    const int64_t T = s.a, in = s.b, out = s.c;
    SCOPED_TRACE(testing::Message() << "T=" << T << " in=" << in << " out=" << out);
    auto x = randn(T * in, rng), w = randn(out * in, rng), dy = randn(T * out, rng);
    std::vector<float> y(T * out);
    cpu::matmul_wt(x.data(), w.data(), y.data(), T, in, out);
    expect_forward(y, ref_linear(to_double(x), to_double(w), T, in, out), 1e-5, "linear forward");

    const auto dx0 = randn(T * in, rng), dw0 = randn(out * in, rng);
    auto dx = dx0, dw = dw0;
    cpu::linear_backward(x.data(), w.data(), dy.data(), T, in, out, dx.data(), dw.data());
    const Vec X = to_double(x), W = to_double(w), DY = to_double(dy);
    expect_grad(dx, dx0, fd_grad([&](const Vec& v) { return dot(DY, ref_linear(v, W, T, in, out)); }, X), 1e-5, "dx");
    expect_grad(dw, dw0, fd_grad([&](const Vec& v) { return dot(DY, ref_linear(X, v, T, in, out)); }, W), 1e-5, "dw");

    // A null gradient is skipped and the other is unchanged.
    auto dw_only = dw0;
    cpu::linear_backward(x.data(), w.data(), dy.data(), T, in, out, nullptr, dw_only.data());
    EXPECT_EQ(dw_only, dw);
    auto dx_only = dx0;
    cpu::linear_backward(x.data(), w.data(), dy.data(), T, in, out, dx_only.data(), nullptr);
    EXPECT_EQ(dx_only, dx);
  }
}

TEST(GradOps, MatmulBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(2);
  for (Dims3 s : {Dims3{1, 1, 1}, Dims3{4, 3, 5}, Dims3{9, 12, 7}, Dims3{1, 20, 3}}) {
    const int64_t M = s.a, K = s.b, N = s.c;
    SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K << " N=" << N);
    auto a = randn(M * K, rng), b = randn(K * N, rng), dy = randn(M * N, rng);
    std::vector<float> y(M * N);
    cpu::matmul(a.data(), b.data(), y.data(), M, K, N);
    expect_forward(y, ref_matmul(to_double(a), to_double(b), M, K, N), 1e-5, "matmul forward");

    const auto da0 = randn(M * K, rng), db0 = randn(K * N, rng);
    auto da = da0, db = db0;
    cpu::matmul_backward(a.data(), b.data(), dy.data(), M, K, N, da.data(), db.data());
    const Vec A = to_double(a), B = to_double(b), DY = to_double(dy);
    expect_grad(da, da0, fd_grad([&](const Vec& v) { return dot(DY, ref_matmul(v, B, M, K, N)); }, A), 1e-5, "da");
    expect_grad(db, db0, fd_grad([&](const Vec& v) { return dot(DY, ref_matmul(A, v, M, K, N)); }, B), 1e-5, "db");

    auto db_only = db0;
    cpu::matmul_backward(a.data(), b.data(), dy.data(), M, K, N, nullptr, db_only.data());
    EXPECT_EQ(db_only, db);
  }
}

TEST(GradOps, RmsnormBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(3);
  const float eps = 1e-5f;
  for (auto [T, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 8}, {6, 33}, {2, 128}}) {
    SCOPED_TRACE(testing::Message() << "T=" << T << " n=" << n);
    auto x = randn(T * n, rng), dy = randn(T * n, rng);
    std::vector<float> w(n);
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (float& v : w) v = u(rng);
    std::vector<float> y(T * n);
    cpu::rmsnorm(x.data(), w.data(), y.data(), T, n, eps);
    expect_forward(y, ref_rmsnorm(to_double(x), to_double(w), T, n, eps), 1e-5, "rmsnorm forward");

    const auto dx0 = randn(T * n, rng), dw0 = randn(n, rng);
    auto dx = dx0, dw = dw0;
    cpu::rmsnorm_backward(x.data(), w.data(), dy.data(), T, n, eps, dx.data(), dw.data());
    const Vec X = to_double(x), W = to_double(w), DY = to_double(dy);
    expect_grad(dx, dx0, fd_grad([&](const Vec& v) { return dot(DY, ref_rmsnorm(v, W, T, n, eps)); }, X), 1e-4, "dx");
    expect_grad(dw, dw0, fd_grad([&](const Vec& v) { return dot(DY, ref_rmsnorm(X, v, T, n, eps)); }, W), 1e-5, "dw");

    auto dw_only = dw0;
    cpu::rmsnorm_backward(x.data(), w.data(), dy.data(), T, n, eps, nullptr, dw_only.data());
    EXPECT_EQ(dw_only, dw);
    auto dx_only = dx0;
    cpu::rmsnorm_backward(x.data(), w.data(), dy.data(), T, n, eps, dx_only.data(), nullptr);
    EXPECT_EQ(dx_only, dx);
  }
}

TEST(GradOps, SiluMulBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(4);
  for (int64_t n : {1, 17, 256}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    auto gate = randn(n, rng, 3.0f), up = randn(n, rng), dout = randn(n, rng);
    std::vector<float> y(n);
    cpu::silu_mul(gate.data(), up.data(), y.data(), n);
    expect_forward(y, ref_silu_mul(to_double(gate), to_double(up)), 1e-5, "silu_mul forward");

    const auto dg0 = randn(n, rng), du0 = randn(n, rng);
    auto dg = dg0, du = du0;
    cpu::silu_mul_backward(gate.data(), up.data(), dout.data(), n, dg.data(), du.data());
    const Vec G = to_double(gate), U = to_double(up), D = to_double(dout);
    expect_grad(dg, dg0, fd_grad([&](const Vec& v) { return dot(D, ref_silu_mul(v, U)); }, G), 1e-5, "dgate");
    expect_grad(du, du0, fd_grad([&](const Vec& v) { return dot(D, ref_silu_mul(G, v)); }, U), 1e-5, "dup");

    auto du_only = du0;
    cpu::silu_mul_backward(gate.data(), up.data(), dout.data(), n, nullptr, du_only.data());
    EXPECT_EQ(du_only, du);
  }
}

TEST(GradOps, SiluMulBackwardIsFiniteForSaturatedGates) {
  // exp(-gate) overflows fp32 for gate < -88: the sigmoid is then 0 and so is the gradient, not NaN.
  const std::vector<float> gate = {-1000.0f, -100.0f, -88.0f, 0.0f, 88.0f, 100.0f, 1000.0f};
  const std::vector<float> up(gate.size(), 2.0f), dout(gate.size(), 1.0f);
  std::vector<float> dg(gate.size(), 0.0f), du(gate.size(), 0.0f);
  cpu::silu_mul_backward(gate.data(), up.data(), dout.data(), (int64_t)gate.size(), dg.data(), du.data());
  for (size_t i = 0; i < gate.size(); ++i) {
    EXPECT_TRUE(std::isfinite(dg[i]) && std::isfinite(du[i])) << "gate " << gate[i];
    const double s = 1.0 / (1.0 + std::exp(-(double)gate[i]));
    EXPECT_NEAR(dg[i], 2.0 * s * (1.0 + gate[i] * (1.0 - s)), 1e-5) << "gate " << gate[i];
  }
}

TEST(GradOps, SoftmaxBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(5);
  for (int64_t n : {1, 5, 64}) {
    SCOPED_TRACE(testing::Message() << "n=" << n);
    auto x = randn(n, rng, 2.0f), dy = randn(n, rng);
    auto y = x;
    cpu::softmax_inplace(y.data(), n);
    expect_forward(y, ref_softmax(to_double(x)), 1e-5, "softmax forward");

    const auto dx0 = randn(n, rng);
    auto dx = dx0;
    cpu::softmax_backward(y.data(), dy.data(), n, dx.data());
    const Vec DY = to_double(dy);
    expect_grad(dx, dx0, fd_grad([&](const Vec& v) { return dot(DY, ref_softmax(v)); }, to_double(x)), 1e-5, "dx");
  }
}

TEST(GradOps, EmbeddingBackwardSumsRepeatedTokens) {
  std::mt19937 rng(6);
  for (auto [vocab, dim] : {std::pair<int64_t, int64_t>{1, 1}, {6, 4}, {50, 17}}) {
    SCOPED_TRACE(testing::Message() << "vocab=" << vocab << " dim=" << dim);
    std::uniform_int_distribution<int32_t> pick(0, (int32_t)vocab - 1);
    std::vector<int32_t> tokens(9);
    for (int32_t& t : tokens) t = pick(rng);
    tokens[3] = tokens[7] = tokens[1];  // a token used several times sums its rows' gradients
    const int64_t T = (int64_t)tokens.size();
    auto E = randn(vocab * dim, rng), dx = randn(T * dim, rng);
    const Vec DX = to_double(dx);
    auto lookup = [&](const Vec& e) {
      Vec x(T * dim);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < dim; ++i) x[t * dim + i] = e[tokens[t] * dim + i];
      return x;
    };
    const auto dE0 = randn(vocab * dim, rng);
    auto dE = dE0;
    cpu::embedding_backward(tokens.data(), dx.data(), T, dim, dE.data());
    expect_grad(dE, dE0, fd_grad([&](const Vec& e) { return dot(DX, lookup(e)); }, to_double(E)), 1e-5, "dE");
  }
}

TEST(GradOps, RopeRotateHalfBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> angle(-10.0f, 10.0f);
  for (int64_t d : {2, 8, 64}) {
    SCOPED_TRACE(testing::Message() << "d=" << d);
    std::vector<float> cos(d / 2), sin(d / 2);
    for (int64_t i = 0; i < d / 2; ++i) {
      const float a = angle(rng);
      cos[i] = std::cos(a);
      sin[i] = std::sin(a);
    }
    auto x = randn(d, rng), dy = randn(d, rng);
    auto y = x;
    cpu::rope_rotate_half(y.data(), cos.data(), sin.data(), d);
    const Vec C = to_double(cos), S = to_double(sin), DY = to_double(dy);
    expect_forward(y, ref_rope(to_double(x), C, S), 1e-5, "rope forward");

    // In place, not accumulating: dy becomes dx.
    auto dx = dy;
    cpu::rope_rotate_half_backward(dx.data(), cos.data(), sin.data(), d);
    const std::vector<float> zero(d, 0.0f);
    expect_grad(dx, zero, fd_grad([&](const Vec& v) { return dot(DY, ref_rope(v, C, S)); }, to_double(x)), 1e-5, "dx");

    // Orthogonal: the backward of the forward is the identity.
    cpu::rope_rotate_half_backward(y.data(), cos.data(), sin.data(), d);
    for (int64_t i = 0; i < d; ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
  }
}

// out = down( silu(x gate^T) * (x up^T) ) in double, for the MLP's FD check.
Vec ref_mlp(const Vec& x, const Vec& gate, const Vec& up, const Vec& down, int64_t n, int64_t hidden, int64_t inter) {
  const Vec h = ref_silu_mul(ref_linear(x, gate, n, hidden, inter), ref_linear(x, up, n, hidden, inter));
  return ref_linear(h, down, n, inter, hidden);
}

Tensor tensor_of(std::vector<int64_t> shape, const std::vector<float>& v) {
  Tensor t(std::move(shape));
  t.data = v;
  return t;
}

TEST(Mlp, TrainForwardAndBackwardMatchFiniteDifferences) {
  std::mt19937 rng(8);
  for (Dims3 s : {Dims3{1, 2, 3}, Dims3{5, 8, 12}, Dims3{3, 16, 40}}) {
    const int64_t n = s.a, hidden = s.b, inter = s.c;
    SCOPED_TRACE(testing::Message() << "n=" << n << " hidden=" << hidden << " inter=" << inter);
    MlpWeights w;
    w.gate = tensor_of({inter, hidden}, randn(inter * hidden, rng, 1.0f / std::sqrt((float)hidden)));
    w.up = tensor_of({inter, hidden}, randn(inter * hidden, rng, 1.0f / std::sqrt((float)hidden)));
    w.down = tensor_of({hidden, inter}, randn(hidden * inter, rng, 1.0f / std::sqrt((float)inter)));
    auto x = randn(n * hidden, rng), dout = randn(n * hidden, rng);

    // The training forward equals the inference forward and saves exactly mlp_activation_floats floats.
    ASSERT_EQ(mlp_activation_floats(n, inter), 2 * n * inter);
    std::vector<float> act(mlp_activation_floats(n, inter)), out(n * hidden), out_inf(n * hidden);
    float* gate_act = act.data();
    float* up_act = act.data() + n * inter;
    mlp_train_forward(w, x.data(), out.data(), n, hidden, inter, gate_act, up_act);
    mlp_forward(w, x.data(), out_inf.data(), n, hidden, inter);
    EXPECT_EQ(out, out_inf);
    const Vec X = to_double(x), G = to_double(w.gate.data), U = to_double(w.up.data), D = to_double(w.down.data);
    expect_forward(out, ref_mlp(X, G, U, D, n, hidden, inter), 1e-5, "mlp forward");

    const auto dx0 = randn(n * hidden, rng);
    MlpWeights grad0;
    grad0.gate = tensor_of({inter, hidden}, randn(inter * hidden, rng));
    grad0.up = tensor_of({inter, hidden}, randn(inter * hidden, rng));
    grad0.down = tensor_of({hidden, inter}, randn(hidden * inter, rng));
    auto dx = dx0;
    MlpWeights grad = grad0;
    mlp_backward(w, x.data(), gate_act, up_act, dout.data(), n, hidden, inter, dx.data(), grad);

    const Vec DO = to_double(dout);
    expect_grad(dx, dx0, fd_grad([&](const Vec& v) { return dot(DO, ref_mlp(v, G, U, D, n, hidden, inter)); }, X),
                1e-5, "dx");
    expect_grad(grad.gate.data, grad0.gate.data,
                fd_grad([&](const Vec& v) { return dot(DO, ref_mlp(X, v, U, D, n, hidden, inter)); }, G), 1e-5,
                "dgate");
    expect_grad(grad.up.data, grad0.up.data,
                fd_grad([&](const Vec& v) { return dot(DO, ref_mlp(X, G, v, D, n, hidden, inter)); }, U), 1e-5, "dup");
    expect_grad(grad.down.data, grad0.down.data,
                fd_grad([&](const Vec& v) { return dot(DO, ref_mlp(X, G, U, v, n, hidden, inter)); }, D), 1e-5,
                "ddown");

    // dx may be skipped; the weight gradients are the same.
    MlpWeights grad_only = grad0;
    mlp_backward(w, x.data(), gate_act, up_act, dout.data(), n, hidden, inter, nullptr, grad_only);
    EXPECT_EQ(grad_only.gate.data, grad.gate.data);
    EXPECT_EQ(grad_only.down.data, grad.down.data);
  }
}

TEST(Mlp, BackwardRejectsMisshapedGradients) {
  MlpWeights w;
  w.gate = Tensor({6, 4});
  w.up = Tensor({6, 4});
  w.down = Tensor({4, 6});
  MlpWeights grad = w;
  grad.down = Tensor({6, 4});  // transposed by mistake
  std::vector<float> x(2 * 4), act(2 * 2 * 6), dout(2 * 4);
  try {
    mlp_backward(w, x.data(), act.data(), act.data() + 12, dout.data(), 2, 4, 6, nullptr, grad);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gradient down"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace zebra
