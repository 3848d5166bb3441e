// Optimiser (train/optimizer.h) against PyTorch and transformers (scripts/reference/make_optimizer_fixtures.py
// -> tests/fixtures/train/optimizer.json): AdamW steps with and without weight decay, clip_grad_norm_, the
// cosine schedule with warmup, HF's warmup rounding; plus decay exclusions, state round trip, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "support.h"
#include "train/optimizer.h"

namespace zebra {
namespace {

using json = nlohmann::json;

const json& fixtures() {
  static const json j = json::parse(test::read_file(test::fixture("train/optimizer.json")));
  return j;
}

// The fixture's parameters as tensors (values and gradients) and their ParamRefs via make_param.
struct Params {
  std::vector<Tensor> value, grad;
  std::vector<ParamRef> refs;

  explicit Params(const json& init) {
    const json& spec = fixtures()["params"];
    for (size_t i = 0; i < spec.size(); ++i) {
      value.emplace_back(spec[i]["shape"].get<std::vector<int64_t>>());
      grad.emplace_back(spec[i]["shape"].get<std::vector<int64_t>>());
      if (!init.is_null()) value[i].data = init[i].get<std::vector<float>>();
    }
    for (size_t i = 0; i < spec.size(); ++i) refs.push_back(make_param(spec[i]["name"], value[i], grad[i]));
  }
  void set_grads(const json& grads) {
    // Copied into the existing buffers: the ParamRefs point at them.
    for (size_t i = 0; i < grad.size(); ++i) {
      const auto g = grads[i].get<std::vector<float>>();
      ASSERT_EQ(g.size(), grad[i].data.size());
      std::copy(g.begin(), g.end(), grad[i].data.begin());
    }
  }
};

void expect_close(const std::vector<float>& got, const json& want, double atol, double rtol, const std::string& what) {
  const auto w = want.get<std::vector<double>>();
  ASSERT_EQ(got.size(), w.size()) << what;
  for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(got[i], w[i], atol + rtol * std::abs(w[i])) << what << " [" << i << "]";
}

AdamWOptions adamw_options(const json& c) {
  AdamWOptions o;
  o.beta1 = c["beta1"];
  o.beta2 = c["beta2"];
  o.eps = c["eps"];
  o.weight_decay = c["weight_decay"];
  return o;
}

TEST(AdamW, DecayGroupsFollowTheFixture) {
  Params p(json(nullptr));
  const json& spec = fixtures()["params"];
  for (size_t i = 0; i < spec.size(); ++i) EXPECT_EQ(p.refs[i].decay, spec[i]["decay"].get<bool>()) << p.refs[i].name;
}

TEST(AdamW, StepsMatchTorchOptimAdamW) {
  for (const json& c : fixtures()["adamw"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    Params p(c["init"]);
    AdamW opt(p.refs, adamw_options(c));
    int step = 0;
    for (const json& s : c["steps"]) {
      p.set_grads(s["grads"]);
      opt.step(s["lr"].get<double>());
      ++step;
      EXPECT_EQ(opt.step_count(), step);
      // fp32 on both sides; the difference is the order of a few roundings per step.
      for (size_t i = 0; i < p.value.size(); ++i)
        expect_close(p.value[i].data, s["params"][i], 1e-7, 1e-6,
                     name + " step " + std::to_string(step) + " " + p.refs[i].name);
    }
    for (size_t i = 0; i < p.value.size(); ++i) {
      expect_close(opt.m(i), c["exp_avg"][i], 1e-7, 1e-5, name + " exp_avg " + p.refs[i].name);
      expect_close(opt.v(i), c["exp_avg_sq"][i], 1e-10, 1e-5, name + " exp_avg_sq " + p.refs[i].name);
    }
  }
}

TEST(AdamW, IsDeterministicAndResumesFromSavedState) {
  const json& c = fixtures()["adamw"][0];
  const json& steps = c["steps"];
  auto run = [&](Params& p, AdamW& opt, size_t from, size_t to) {
    for (size_t k = from; k < to; ++k) {
      p.set_grads(steps[k]["grads"]);
      opt.step(steps[k]["lr"].get<double>());
    }
  };
  Params a(c["init"]), b(c["init"]);
  AdamW oa(a.refs, adamw_options(c)), ob(b.refs, adamw_options(c));
  run(a, oa, 0, steps.size());
  run(b, ob, 0, steps.size());
  for (size_t i = 0; i < a.value.size(); ++i) EXPECT_EQ(a.value[i].data, b.value[i].data);  // bit-identical
  EXPECT_EQ(oa.save_state(), ob.save_state());

  // Stop after 2 steps, save, restore into a fresh optimiser over copied params, continue: same result.
  Params c1(c["init"]);
  AdamW o1(c1.refs, adamw_options(c));
  run(c1, o1, 0, 2);
  const std::vector<float> state = o1.save_state();
  EXPECT_EQ((int64_t)state.size(), o1.state_floats());
  Params c2(c["init"]);
  for (size_t i = 0; i < c2.value.size(); ++i)
    std::copy(c1.value[i].data.begin(), c1.value[i].data.end(), c2.value[i].data.begin());
  AdamW o2(c2.refs, adamw_options(c));
  o2.load_state(state, o1.step_count());
  run(c2, o2, 2, steps.size());
  for (size_t i = 0; i < a.value.size(); ++i) EXPECT_EQ(c2.value[i].data, a.value[i].data);
  EXPECT_EQ(o2.step_count(), oa.step_count());

  EXPECT_NE(test::error_message([&] { o2.load_state(std::vector<float>(3), 1); }).find("expected"), std::string::npos);
}

TEST(AdamW, DecoupledDecayWithZeroGradient) {
  // With g = 0 the moments stay 0 and only the decay acts: p <- p (1 - lr wd), and not on decay = false params.
  Tensor w({2, 2}), gw({2, 2}), n({2}), gn({2});
  w.data = {1, -2, 3, -4};
  n.data = {1, 2};
  std::vector<ParamRef> refs = {make_param("proj.weight", w, gw), make_param("norm.weight", n, gn)};
  AdamWOptions o;
  o.weight_decay = 0.5;
  AdamW opt(refs, o);
  opt.step(0.1);
  const float keep = 1.0f - 0.05f;
  EXPECT_EQ(w.data, (std::vector<float>{1 * keep, -2 * keep, 3 * keep, -4 * keep}));
  EXPECT_EQ(n.data, (std::vector<float>{1, 2}));
}

TEST(DefaultDecay, ExcludesNormsBiasesAndSsmConstants) {
  for (const char* no : {"model.layers.0.input_layernorm.weight", "model.layers.3.post_attention_layernorm.weight",
                         "model.norm.weight", "model.layers.1.self_attn.kv_a_layernorm.weight",
                         "model.layers.2.mamba.norm.weight", "model.layers.2.mamba.A_log", "model.layers.2.mamba.D",
                         "model.layers.2.mamba.dt_bias", "model.layers.2.mamba.conv1d.bias", "lm_head.bias", "D"})
    EXPECT_FALSE(default_decay(no)) << no;
  for (const char* yes : {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.down_proj.weight",
                          "model.layers.1.self_attn.q_a_proj.weight", "model.layers.2.mamba.in_proj.weight",
                          "model.layers.2.mamba.conv1d.weight", "model.layers.2.mamba.Dense"})
    EXPECT_TRUE(default_decay(yes)) << yes;
  // 1-D tensors never decay, whatever the name.
  Tensor v({7}), g({7});
  EXPECT_FALSE(make_param("some.scale", v, g).decay);
  Tensor g_bad({1, 7});
  EXPECT_NE(test::error_message([&] { make_param("some.scale", v, g_bad); }).find("some.scale"), std::string::npos);
}

TEST(ClipGradNorm, MatchesTorchClipGradNorm) {
  for (const json& c : fixtures()["clip"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    Params p(json(nullptr));
    p.set_grads(c["grads"]);
    const double total = clip_grad_norm(p.refs, c["max_norm"].get<double>());
    EXPECT_NEAR(total, c["total_norm"].get<double>(), 1e-6 * total);
    for (size_t i = 0; i < p.grad.size(); ++i) expect_close(p.grad[i].data, c["clipped"][i], 1e-8, 1e-6, name);
    if (c["max_norm"].get<double>() > total) {  // not clipped: untouched, bit for bit
      for (size_t i = 0; i < p.grad.size(); ++i) EXPECT_EQ(p.grad[i].data, c["grads"][i].get<std::vector<float>>());
    }
  }
}

TEST(ClipGradNorm, ClippedNormIsMaxNorm) {
  Tensor a({3}), ga({3}), b({2, 2}), gb({2, 2});
  ga.data = {3, 0, 0};
  gb.data = {0, 4, 0, 0};
  std::vector<ParamRef> refs = {make_param("a", a, ga), make_param("b", b, gb)};
  EXPECT_DOUBLE_EQ(clip_grad_norm(refs, 1.0), 5.0);
  EXPECT_NEAR(ga.data[0], 0.6f, 1e-6);
  EXPECT_NEAR(gb.data[1], 0.8f, 1e-6);
  zero_grad(refs);
  EXPECT_EQ(clip_grad_norm(refs, 1.0), 0.0);
  EXPECT_EQ(gb.data, std::vector<float>(4, 0.0f));
}

TEST(CosineLr, MatchesTransformersSchedulers) {
  for (const json& c : fixtures()["cosine"]) {
    const int64_t total = c["total"], warmup = c["warmup"];
    const double peak = c["peak"], min_lr = c["min_lr"];
    SCOPED_TRACE(testing::Message() << "total " << total << " warmup " << warmup << " min_lr " << min_lr);
    const auto lrs = c["lrs"].get<std::vector<double>>();
    for (int64_t step = 0; step <= total; ++step)
      ASSERT_NEAR(cosine_lr(step, total, warmup, peak, min_lr), lrs[step], 1e-15 * peak)
          << "step " << step << " of " << total << ", warmup " << warmup;
  }
  EXPECT_EQ(cosine_lr(0, 100, 1, 2e-4), 0.0);  // HF's first update has lr 0 when there is warmup
  EXPECT_NE(test::error_message([] { cosine_lr(101, 100, 1, 1.0); }).find("step 101"), std::string::npos);
}

TEST(WarmupSteps, MatchesTrainingArguments) {
  for (const json& c : fixtures()["warmup"])
    EXPECT_EQ(warmup_steps(c["ratio"].get<double>(), c["total"].get<int64_t>()), c["warmup"].get<int64_t>())
        << c.dump();
}

}  // namespace
}  // namespace zebra
