// zebra dpo: preference optimisation of a hybrid (spec §4.4): TRL's sigmoid DPO loss against a frozen copy of
// the input model, on (prompt, chosen, rejected) pairs.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "common.h"
#include "core/log.h"
#include "train/dpo.h"
#include "train/preference_data.h"
#include "train_flags.h"

namespace zebra::cli {

struct DpoOptions {
  ModelOptions model;
  std::string data;
  double beta = 0.01;
  int64_t max_length = -1, max_prompt_length = -1;  // -1: min(1024 (spec), the model's context)
  TrainOptions train;
};

static void run_dpo(DpoOptions& o) {
  LoadedModel policy = open_model(o.model, true);
  Model& m = *policy.model;
  ZEBRA_CHECK(o.beta > 0 && std::isfinite(o.beta), "--beta must be positive, got ", o.beta);
  if (o.max_length < 0) o.max_length = std::min<int64_t>(1024, m.config.max_position_embeddings);
  if (o.max_prompt_length < 0) o.max_prompt_length = o.max_length / 2;  // the spec's 512 of 1024
  ZEBRA_CHECK(o.max_length <= m.config.max_position_embeddings, "--max-length ", o.max_length,
              " exceeds the model's context (", m.config.max_position_embeddings, " positions)");
  const Model reference = m;  // frozen copy of the starting point
  const std::vector<PreferencePair> pairs =
      load_preferences(*policy.tokenizer, o.data, o.max_length, o.max_prompt_length);
  ZEBRA_CHECK(!pairs.empty(), "--data ", o.data, ": no preference pairs");
  log_info("dpo: ", pairs.size(), " preference pairs from ", o.data, ", beta ", o.beta);

  Stage st;
  st.name = "dpo";
  st.model = &m;
  st.tokenizer = policy.tokenizer.get();
  st.n_samples = static_cast<int64_t>(pairs.size());
  st.micro_step = [&](const std::vector<int64_t>& ids, Model& grad, double scale) {
    std::vector<const PreferencePair*> batch;
    for (int64_t i : ids) batch.push_back(&pairs[i]);
    const DpoStats d = dpo_step(m, reference, batch, o.beta, &grad, scale);
    MicroResult r;
    r.loss = d.loss, r.tokens = d.tokens;
    r.extra = {{"margin", d.margin}, {"accuracy", d.accuracy}};
    return r;
  };
  // Evaluation: the preference margin over every pair (a smoke run's data are its own held-out set).
  st.evaluate = [&]() -> Metrics {
    std::vector<const PreferencePair*> all;
    for (const PreferencePair& p : pairs) all.push_back(&p);
    const DpoStats d = dpo_step(m, reference, all, o.beta, nullptr, 1.0);
    return {{"loss", d.loss}, {"margin", d.margin}, {"accuracy", d.accuracy}};
  };
  double f = 0;
  for (const Layer& l : m.layers) f += 2.0 * m.layer_parameter_count(l);
  st.flops_per_token = 3 * (f + 2.0 * m.head().numel()) + (f + 2.0 * m.head().numel());  // + reference forward
  nlohmann::json j = nlohmann::json::parse(train_options_json(o.train));
  j["beta"] = o.beta, j["max_length"] = o.max_length, j["max_prompt_length"] = o.max_prompt_length;
  st.options_json = j.dump();

  const TrainSummary sum = train(st, o.train);
  copy_llama2c_tokenizer(policy.llama2c_tokenizer_file, o.train.out_dir + "/model");
  std::printf("dpo: %lld steps, final loss %.5f", (long long)sum.steps, sum.last_loss);
  for (const auto& [k, v] : sum.last_eval) std::printf(", eval %s %.5f", k.c_str(), v);
  std::printf("\nmodel: %s/model\n", o.train.out_dir.c_str());
}

void register_dpo(CLI::App& app) {
  auto* cmd = app.add_subcommand("dpo", "direct preference optimisation against a frozen copy of the model");
  auto o = std::make_shared<DpoOptions>();
  add_model_options(cmd, o->model, false);
  cmd->add_option("--data", o->data, "preference JSONL: prompt, chosen, rejected (plain strings or chat)")->required();
  cmd->add_option("--beta", o->beta, "DPO beta (spec: 0.01)")->capture_default_str();
  cmd->add_option("--max-length", o->max_length, "prompt + response tokens (default: 1024, at most the model's context)");
  cmd->add_option("--max-prompt-length", o->max_prompt_length, "prompt tokens, truncated from the left (default: half of --max-length)");
  o->train.lr = 5e-7;
  o->train.warmup_ratio = 0.1;
  o->train.batch = 4;
  add_train_flags(cmd, o->train);
  cmd->callback([o] { run_dpo(*o); });
}

}  // namespace zebra::cli
