// The CPU Llama engine against transformers (fixtures made by scripts/reference/make_tiny_llama.py and
// scripts/reference/smollm_logits.py): random tiny Llamas in HF format with every RoPE scaling, and the
// real SmolLM2-135M-Instruct GGUF.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/generate.h"
#include "model/loader.h"
#include "support.h"

using namespace zebra;

namespace {

struct Diff {
  float max_abs = 0, max_ref = 0;
  int argmax_mismatch = 0;
};

void check_tiny_llama(const std::string& sub, float tol) {
  const std::string dir = test::fixture("tiny_llama/" + sub);
  LoadOptions lo;
  lo.need_tokenizer = false;
  LoadedModel lm = load_model(dir, lo);
  const Model& m = *lm.model;
  SafetensorsFile ref(dir + "/logits.safetensors");
  const int64_t V = m.config.vocab_size;
  int checked = 0;
  for (int k = 0;; ++k) {
    const TensorView* ids_view = ref.find("seq" + std::to_string(k) + ".input_ids");
    if (!ids_view) break;
    std::vector<int32_t> ids(ids_view->numel());
    const int64_t* raw = reinterpret_cast<const int64_t*>(ids_view->data);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(raw[i]);
    Tensor expected = ref.load("seq" + std::to_string(k) + ".logits", {(int64_t)ids.size(), V});
    Cache cache = m.make_cache(1, static_cast<int64_t>(ids.size()));
    Tensor got = m.forward(make_sequence_batch(ids, 0, 0, true), cache);
    Diff d;
    for (int64_t i = 0; i < got.numel(); ++i) {
      d.max_abs = std::max(d.max_abs, std::fabs(got.data[i] - expected.data[i]));
      d.max_ref = std::max(d.max_ref, std::fabs(expected.data[i]));
    }
    std::printf("tiny_llama/%s seq%d (T=%zu): max |diff| %.3g (max |logit| %.3g)\n", sub.c_str(), k, ids.size(),
                d.max_abs, d.max_ref);
    EXPECT_LT(d.max_abs, tol) << sub << " seq" << k;
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no sequences in " << dir;
}

}  // namespace

TEST(LlamaReference, TinyShardedBf16Llama3RopeMatchesTransformers) { check_tiny_llama("model", 2e-4f); }
TEST(LlamaReference, TinyLinearRopeMatchesTransformers) { check_tiny_llama("linear", 2e-4f); }
TEST(LlamaReference, TinyDynamicNtkRopeMatchesTransformers) { check_tiny_llama("dynamic", 2e-4f); }
TEST(LlamaReference, TinyYarnRopeMatchesTransformers) { check_tiny_llama("yarn", 2e-4f); }

class SmolLM : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string path = test::smollm_gguf();
    if (!path.empty()) model_ = new LoadedModel(load_model(path));
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  static LoadedModel* model_;
};
LoadedModel* SmolLM::model_ = nullptr;

TEST_F(SmolLM, LogitsMatchTransformersOnTheSameGgufWeights) {
  ZEBRA_REQUIRE_SMOLLM(path);
  const Model& m = *model_->model;
  const int64_t V = m.config.vocab_size;
  for (const char* name : {"chat", "plain", "code", "long"}) {
    nlohmann::json j = nlohmann::json::parse(test::read_file(test::fixture(std::string("smollm/logits_") + name + ".json")));
    const auto& p = j["prompt"];
    std::vector<int32_t> ids = p["input_ids"].get<std::vector<int32_t>>();
    // Tokenisation: zebra's tokenizer from the GGUF gives transformers' ids.
    EXPECT_EQ(model_->tokenizer->encode(p["text"].get<std::string>(), false, true), ids) << name;

    Cache cache = m.make_cache(1, static_cast<int64_t>(ids.size()));
    Tensor logits = m.forward(make_sequence_batch(ids, 0, 0, true), cache);
    std::vector<int32_t> fixed = p["fixed_ids"].get<std::vector<int32_t>>();
    float max_abs = 0, max_rel = 0;
    int top1_same = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      const float* row = logits.ptr() + t * V;
      for (size_t k = 0; k < fixed.size(); ++k) {
        float ref = p["fixed_logits"][t][k].get<float>();
        float d = std::fabs(row[fixed[k]] - ref);
        max_abs = std::max(max_abs, d);
        max_rel = std::max(max_rel, d / std::max(std::fabs(ref), 1.0f));
      }
      for (int k = 0; k < 10; ++k) {
        float ref = p["top_logits"][t][k].get<float>();
        max_abs = std::max(max_abs, std::fabs(row[p["top_ids"][t][k].get<int32_t>()] - ref));
      }
      int32_t best = argmax(row, V);
      top1_same += best == p["argmax"][t].get<int32_t>();
    }
    std::printf("smollm %-5s T=%3zu: max |diff| %.2e, max rel %.2e, top-1 agrees at %d/%zu positions\n", name,
                ids.size(), max_abs, max_rel, top1_same, ids.size());
    EXPECT_LT(max_abs, 5e-3f) << name;
    EXPECT_EQ(top1_same, static_cast<int>(ids.size())) << name;
  }
}

TEST_F(SmolLM, GreedyContinuationMatchesTransformersGenerate) {
  ZEBRA_REQUIRE_SMOLLM(path);
  const Model& m = *model_->model;
  for (const char* name : {"chat", "plain"}) {
    nlohmann::json j = nlohmann::json::parse(test::read_file(test::fixture(std::string("smollm/logits_") + name + ".json")));
    std::vector<int32_t> ids = j["prompt"]["input_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> expected = j["prompt"]["greedy_new_ids"].get<std::vector<int32_t>>();
    Cache cache = m.make_cache(1, 128);
    SamplerParams greedy;
    greedy.temperature = 0;
    Sampler s(greedy);
    std::vector<int32_t> got = generate(m, cache, 0, 0, ids, static_cast<int64_t>(expected.size()), s, {}, {});
    EXPECT_EQ(got, expected) << name;
  }
}
