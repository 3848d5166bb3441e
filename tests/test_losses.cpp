// Training losses (train/losses.h): values and gradients against PyTorch float64 autograd
// (scripts/reference/make_loss_fixtures.py -> tests/fixtures/train/losses.json), gradients against central
// finite differences, and the identities KL(p||p) = 0 and batchmean = seq_len x token mean.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "support.h"
#include "train/losses.h"

namespace zebra {
namespace {

using json = nlohmann::json;

const json& fixtures() {
  static const json j = json::parse(test::read_file(test::fixture("train/losses.json")));
  return j;
}

std::vector<float> floats(const json& j) { return j.get<std::vector<float>>(); }

std::vector<float> randn(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> g(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

// Central differences of L over float inputs with a power-of-two step, so x +- h is exact for |x| < 2^14
// and the only error is the O(h^2) truncation (L itself is computed in double).
std::vector<double> fd_grad(const std::function<double(const std::vector<float>&)>& L, std::vector<float> x,
                            float h = 1.0f / 1024) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const double up = L(x);
    x[i] = x0 - h;
    const double down = L(x);
    x[i] = x0;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

template <class A, class B>
void expect_all_near(const A& got, const B& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs((double)want[i]))) << what << " [" << i << "]";
}

// ---- KD ----

KdOptions kd_options(const json& c) {
  KdOptions o;
  o.temperature = c["temperature"].get<float>();
  o.kl_weight = c["kl_weight"].get<float>();
  o.ce_weight = c["ce_weight"].get<float>();
  o.reduction = c["reduction"] == "batchmean" ? KdOptions::BatchMean : KdOptions::TokenMean;
  o.batch_rows = c["batch_rows"].get<int64_t>();
  return o;
}

TEST(KdLoss, MatchesPytorchKlDivAndCrossEntropy) {
  for (const json& c : fixtures()["kd"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int64_t n = c["batch_rows"].get<int64_t>() * c["seq"].get<int64_t>(), V = c["vocab"];
    const auto s = floats(c["student"]), t = floats(c["teacher"]);
    const auto targets = c["targets"].get<std::vector<int32_t>>();
    std::vector<float> d(n * V, 123.0f);  // overwritten, not accumulated
    const double loss = kd_loss(s.data(), t.data(), n, V, kd_options(c), d.data(), targets.data());
    EXPECT_NEAR(loss, c["loss"].get<double>(), 1e-10 * (1 + std::abs(c["loss"].get<double>())));
    expect_all_near(d, c["dlogits"].get<std::vector<double>>(), 1e-6, name + " dlogits");
  }
}

TEST(KdLoss, GradientMatchesFiniteDifferences) {
  std::mt19937 rng(11);
  struct Case {
    int64_t B, S, V;
    float T, kl, ce;
    KdOptions::Reduction r;
  };
  for (const Case& k : {Case{1, 3, 5, 1.0f, 1.0f, 0.0f, KdOptions::TokenMean},
                        Case{2, 2, 9, 1.7f, 0.6f, 0.4f, KdOptions::BatchMean},
                        Case{1, 4, 16, 0.5f, 1.0f, 2.0f, KdOptions::TokenMean}}) {
    SCOPED_TRACE(testing::Message() << "V=" << k.V << " T=" << k.T << " ce=" << k.ce);
    const int64_t n = k.B * k.S;
    KdOptions o;
    o.temperature = k.T;
    o.kl_weight = k.kl;
    o.ce_weight = k.ce;
    o.reduction = k.r;
    o.batch_rows = k.B;
    const auto s = randn(n * k.V, rng, 2.0f), t = randn(n * k.V, rng, 2.0f);
    std::vector<int32_t> targets(n);
    for (int64_t i = 0; i < n; ++i) targets[i] = (int32_t)((i * 7 + 3) % k.V);
    targets[0] = kIgnoreIndex;
    std::vector<float> d(n * k.V);
    kd_loss(s.data(), t.data(), n, k.V, o, d.data(), targets.data());
    const auto fd = fd_grad(
        [&](const std::vector<float>& x) { return kd_loss(x.data(), t.data(), n, k.V, o, nullptr, targets.data()); },
        s);
    expect_all_near(d, fd, 2e-5, "dlogits");
  }
}

TEST(KdLoss, KlOfADistributionWithItselfIsZero) {
  std::mt19937 rng(12);
  const int64_t n = 6, V = 50;
  const auto z = randn(n * V, rng, 5.0f);
  for (float T : {0.5f, 1.0f, 3.0f}) {
    KdOptions o;
    o.temperature = T;
    std::vector<float> d(n * V, 1.0f);
    EXPECT_NEAR(kd_loss(z.data(), z.data(), n, V, o, d.data()), 0.0, 1e-12);
    for (float g : d) ASSERT_NEAR(g, 0.0f, 1e-9f);
  }
}

TEST(KdLoss, BatchMeanIsSeqLenTimesTokenMean) {
  // The reference's "batchmean" sums KL over positions and divides by rows only (spec §8 item 14).
  std::mt19937 rng(13);
  const int64_t B = 3, S = 7, V = 20, n = B * S;
  const auto s = randn(n * V, rng), t = randn(n * V, rng);
  KdOptions token, batch;
  token.temperature = batch.temperature = 2.0f;
  batch.reduction = KdOptions::BatchMean;
  batch.batch_rows = B;
  std::vector<float> dt(n * V), db(n * V);
  const double lt = kd_loss(s.data(), t.data(), n, V, token, dt.data());
  const double lb = kd_loss(s.data(), t.data(), n, V, batch, db.data());
  EXPECT_NEAR(lb / lt, (double)S, 1e-12);
  for (int64_t i = 0; i < n * V; ++i) ASSERT_NEAR(db[i], S * dt[i], 1e-6 * (1 + std::abs(db[i])));
}

TEST(KdLoss, TemperatureSquaredScaling) {
  // loss = T^2 * mean KL(softmax(t/T) || softmax(s/T)): with logits that are T x (u, w) the distributions
  // at temperature T equal those of (u, w) at T = 1, so the loss is exactly T^2 times the T = 1 loss.
  std::mt19937 rng(14);
  const int64_t n = 4, V = 10;
  const auto u = randn(n * V, rng), w = randn(n * V, rng);
  const float T = 4.0f;  // a power of two: T * u is exact
  std::vector<float> su(u), sw(w);
  for (float& x : su) x *= T;
  for (float& x : sw) x *= T;
  KdOptions one, hot;
  hot.temperature = T;
  EXPECT_NEAR(kd_loss(su.data(), sw.data(), n, V, hot, nullptr), T * T * kd_loss(u.data(), w.data(), n, V, one, nullptr),
              1e-12);
}

TEST(KdLoss, RejectsBadOptions) {
  std::vector<float> z(4 * 3, 0.0f);
  std::vector<int32_t> targets = {0, 1, 2, 3};
  KdOptions o;
  o.reduction = KdOptions::BatchMean;
  o.batch_rows = 3;
  EXPECT_NE(test::error_message([&] { kd_loss(z.data(), z.data(), 4, 3, o, nullptr); }).find("batch_rows"),
            std::string::npos);
  o = KdOptions{};
  o.ce_weight = 1.0f;
  EXPECT_NE(test::error_message([&] { kd_loss(z.data(), z.data(), 4, 3, o, nullptr); }).find("needs targets"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { kd_loss(z.data(), z.data(), 4, 3, o, nullptr, targets.data()); })
                .find("target 3 at token 3"),
            std::string::npos);
  o = KdOptions{};
  o.temperature = 0.0f;
  EXPECT_NE(test::error_message([&] { kd_loss(z.data(), z.data(), 4, 3, o, nullptr); }).find("temperature"),
            std::string::npos);
}

// ---- ILD L2 distance ----

TEST(L2DistanceLoss, MatchesPytorchNorm) {
  for (const json& c : fixtures()["l2"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int64_t n = c["n_tokens"], dim = c["dim"];
    const auto a = floats(c["a"]), b = floats(c["b"]);
    std::vector<float> da(n * dim, 0.0f);
    EXPECT_NEAR(l2_distance_loss(a.data(), b.data(), n, dim, da.data()), c["loss"].get<double>(), 1e-12);
    expect_all_near(da, c["da"].get<std::vector<double>>(), 1e-7, name + " da");
  }
}

TEST(L2DistanceLoss, GradientMatchesFiniteDifferencesAndAccumulates) {
  std::mt19937 rng(15);
  for (auto [n, dim] : {std::pair<int64_t, int64_t>{1, 1}, {3, 8}, {5, 64}}) {
    SCOPED_TRACE(testing::Message() << "n=" << n << " dim=" << dim);
    const auto a = randn(n * dim, rng), b = randn(n * dim, rng), before = randn(n * dim, rng);
    auto da = before;
    l2_distance_loss(a.data(), b.data(), n, dim, da.data());
    for (size_t i = 0; i < da.size(); ++i) da[i] -= before[i];
    const auto fd =
        fd_grad([&](const std::vector<float>& x) { return l2_distance_loss(x.data(), b.data(), n, dim, nullptr); }, a);
    expect_all_near(da, fd, 1e-4, "da");
  }
}

TEST(L2DistanceLoss, ZeroDistanceHasZeroGradientAndIsNotSquared) {
  const std::vector<float> a = {1, 2, 3, 0, 0, 0}, b = {1, 2, 3, 3, 4, 0};
  std::vector<float> da(6, 0.0f);
  // rows: distance 0 and 5 -> mean 2.5 (a squared or per-dim loss would give something else)
  EXPECT_DOUBLE_EQ(l2_distance_loss(a.data(), b.data(), 2, 3, da.data()), 2.5);
  const std::vector<float> want = {0, 0, 0, -0.3f, -0.4f, 0};  // (a - b)/|a - b| / n_tokens
  expect_all_near(da, want, 1e-7, "da");
}

// ---- DPO ----

TEST(DpoLoss, MatchesPytorchLogsigmoid) {
  for (const json& c : fixtures()["dpo"]) {
    SCOPED_TRACE(c.dump());
    double dc = 0, dr = 0;
    const double pc = c["pc"], pr = c["pr"], rc = c["rc"], rr = c["rr"], beta = c["beta"];
    const double loss = dpo_loss(pc, pr, rc, rr, beta, &dc, &dr);
    EXPECT_NEAR(loss, c["loss"].get<double>(), 1e-12 * (1 + std::abs(loss)));
    EXPECT_NEAR(dc, c["d_chosen"].get<double>(), 1e-12);
    EXPECT_NEAR(dr, c["d_rejected"].get<double>(), 1e-12);
    const DpoRewards r = dpo_rewards(pc, pr, rc, rr, beta);
    EXPECT_NEAR(r.chosen, c["chosen_reward"].get<double>(), 1e-12);
    EXPECT_NEAR(r.rejected, c["rejected_reward"].get<double>(), 1e-12);
    EXPECT_NEAR(r.margin, r.chosen - r.rejected, 1e-12);
    EXPECT_TRUE(std::isfinite(loss));
  }
}

TEST(DpoLoss, DerivativesMatchFiniteDifferences) {
  const double h = 1e-6;
  for (double beta : {0.01, 0.1, 1.0})
    for (double pc : {-30.0, -12.0, -5.0}) {
      const double pr = -11.0, rc = -10.0, rr = -13.0;
      double dc = 0, dr = 0;
      dpo_loss(pc, pr, rc, rr, beta, &dc, &dr);
      auto L = [&](double c, double r) { return dpo_loss(c, r, rc, rr, beta, nullptr, nullptr); };
      EXPECT_NEAR(dc, (L(pc + h, pr) - L(pc - h, pr)) / (2 * h), 1e-8);
      EXPECT_NEAR(dr, (L(pc, pr + h) - L(pc, pr - h)) / (2 * h), 1e-8);
    }
}

// ---- sequence log-probability ----

TEST(SequenceLogprob, MatchesPytorchGather) {
  for (const json& c : fixtures()["seq_logprob"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int64_t n = c["n"], V = c["vocab"];
    const auto logits = floats(c["logits"]);
    const auto targets = c["targets"].get<std::vector<int32_t>>();
    const auto mask = c["mask"].get<std::vector<uint8_t>>();
    std::vector<float> d(n * V, 0.0f);
    const double lp = sequence_logprob(logits.data(), targets.data(), mask.data(), n, V, d.data(), 1.0f);
    EXPECT_NEAR(lp, c["logp"].get<double>(), 1e-10 * (1 + std::abs(lp)));
    expect_all_near(d, c["dlogits"].get<std::vector<double>>(), 1e-6, name + " dlogits");
  }
}

TEST(SequenceLogprob, ScaledGradientAccumulatesAndMatchesFiniteDifferences) {
  std::mt19937 rng(16);
  const int64_t n = 5, V = 12;
  const auto logits = randn(n * V, rng, 2.0f), before = randn(n * V, rng);
  const std::vector<int32_t> targets = {3, 0, 11, 7, 7};
  const std::vector<uint8_t> mask = {0, 1, 1, 0, 1};
  const float scale = -0.25f;
  auto d = before;
  sequence_logprob(logits.data(), targets.data(), mask.data(), n, V, d.data(), scale);
  for (size_t i = 0; i < d.size(); ++i) d[i] -= before[i];
  const auto fd = fd_grad(
      [&](const std::vector<float>& x) {
        return scale * sequence_logprob(x.data(), targets.data(), mask.data(), n, V, nullptr, 0.0f);
      },
      logits);
  expect_all_near(d, fd, 1e-5, "dlogits");
  // No mask = every position; a masked-out position may hold any target (e.g. padding).
  std::vector<int32_t> padded = targets;
  padded[0] = -1;
  double all = 0;
  for (int64_t t = 0; t < n; ++t)
    if (mask[t]) all += sequence_logprob(logits.data() + t * V, targets.data() + t, nullptr, 1, V, nullptr, 1.0f);
  EXPECT_NEAR(sequence_logprob(logits.data(), padded.data(), mask.data(), n, V, nullptr, 1.0f), all, 1e-12);
  EXPECT_NE(test::error_message([&] { sequence_logprob(logits.data(), padded.data(), nullptr, n, V, nullptr, 1.0f); })
                .find("target -1 at position 0"),
            std::string::npos);
}

}  // namespace
}  // namespace zebra
