// zebra distill --stage ild|kd: the distillation stages of Zebra-Llama (spec §4.2, §4.3) on packed text.
//   ild: every layer of an all-MLA or all-Mamba2 student learns, on its own, to map the teacher's input of
//        that layer to the teacher's output of it.
//   kd:  the assembled hybrid learns the teacher's next-token distribution end to end.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "core/log.h"
#include "model/parameters.h"
#include "train/ild.h"
#include "train/kd.h"
#include "train/packing.h"
#include "train/token_shard.h"
#include "train_flags.h"

namespace zebra::cli {

struct DistillOptions {
  std::string stage;
  ModelOptions teacher, student;
  std::vector<std::string> data;
  std::string data_dir;  // where the packed shards are cached (default OUT/data)
  int64_t seq_len = 256;
  double holdout = 0.05;
  int64_t eval_rows = 16;
  bool mixer_term = false;
  float temperature = 1.0f, kl_weight = 1.0f, ce_weight = 0.0f;
  std::string reduction = "token";
  bool recompute = false;
  TrainOptions train;
};

// Both models must tokenise identically: the student learns from the teacher's distribution over the same ids.
// Compared directly (not by fingerprint): a GGUF vocabulary and its tokenizer.json export differ in how they
// label special tokens, yet give the same ids.
static void check_same_tokenizer(const LoadedModel& teacher, const LoadedModel& student) {
  if (!teacher.tokenizer || !student.tokenizer) return;
  const Tokenizer& a = *teacher.tokenizer;
  const Tokenizer& b = *student.tokenizer;
  std::string why;
  if (a.vocab_size() != b.vocab_size()) why = cat("vocabularies of ", a.vocab_size(), " and ", b.vocab_size(), " pieces");
  for (int32_t id = 0; why.empty() && id < a.vocab_size(); ++id)
    if (!a.is_special(id) && !b.is_special(id) && a.token_bytes(id) != b.token_bytes(id)) why = cat("token ", id, " differs");
  static const char* kProbe = "Once upon a time, a little girl named Lily found 3 shiny stones.\n\"Look!\" she said. "
                              "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd 12345";
  if (why.empty() && a.encode(kProbe, true, false) != b.encode(kProbe, true, false)) why = "a probe text encodes differently";
  ZEBRA_CHECK(why.empty(), "the teacher (", teacher.model->path, ") and the student (", student.model->path,
              ") use different tokenizers (", why, "); distillation needs the same one");
}

static int64_t context_limit(const Model& m) {
  int64_t limit = m.config.max_position_embeddings;
  if (m.is_hybrid) limit = std::max(limit, m.hybrid.max_position_embeddings);
  return limit;
}

static std::vector<int32_t> gather_rows(const TokenShard& shard, const std::vector<int64_t>& rows) {
  std::vector<int32_t> tokens;
  tokens.reserve(rows.size() * shard.row_len());
  for (int64_t r : rows) {
    const uint32_t* p = shard.row(r);
    tokens.insert(tokens.end(), p, p + shard.row_len());
  }
  return tokens;
}

// Forward FLOPs per token of a model's matrix products (2 per weight; embeddings are lookups).
static double forward_flops_per_token(const Model& m, bool layers_only) {
  double f = 0;
  for (const Layer& l : m.layers) f += 2.0 * (m.layer_parameter_count(l) - l.input_norm.numel() - l.post_norm.numel());
  if (!layers_only) f += 2.0 * m.head().numel();
  return f;
}

static void run_distill(DistillOptions& o) {
  ZEBRA_CHECK(o.stage == "ild" || o.stage == "kd", "--stage must be ild or kd, got '", o.stage, "'");
  ZEBRA_CHECK(!o.data.empty(), "--data: give at least one text or JSONL file");
  ZEBRA_CHECK(o.seq_len >= 2, "--seq-len must be at least 2, got ", o.seq_len);
  ZEBRA_CHECK(o.reduction == "token" || o.reduction == "batch", "--reduction must be token or batch, got '",
              o.reduction, "'");
  o.student.threads = o.teacher.threads;
  LoadedModel teacher = open_model(o.teacher, true);
  if (o.student.tokenizer.empty()) o.student.tokenizer = o.teacher.tokenizer;
  LoadedModel student = open_model(o.student, false);
  Model& s = *student.model;
  const Model& t = *teacher.model;
  ZEBRA_CHECK(s.is_hybrid, "--student ", s.path, " is not a Zebra hybrid (make one with zebra compose)");
  if (o.stage == "ild") check_ild_pair(t, s);
  else check_kd_pair(t, s);
  check_same_tokenizer(teacher, student);
  for (const Model* m : {&t, static_cast<const Model*>(&s)})
    ZEBRA_CHECK(o.seq_len <= context_limit(*m), "--seq-len ", o.seq_len, " exceeds the context of ", m->path, " (",
                context_limit(*m), " positions)");

  // Data: tokenised once with the teacher's tokenizer into memory-mapped shards, reused by later runs.
  PackOptions po;
  po.holdout_fraction = o.holdout;
  po.seed = o.train.seed;
  const std::string data_dir = o.data_dir.empty() ? o.train.out_dir + "/data" : o.data_dir;
  PackedData data = prepare_data(*teacher.tokenizer, o.data, o.seq_len, data_dir, po);
  log_info("data: ", data.train.rows(), " training rows and ", data.holdout.rows(), " held-out rows of ", o.seq_len,
           " tokens", data.reused ? " (reused the packed shards)" : "");
  const int64_t eval_rows = std::min<int64_t>(o.eval_rows, data.holdout.rows());
  std::vector<int64_t> eval_ids(eval_rows);
  for (int64_t i = 0; i < eval_rows; ++i) eval_ids[i] = i;

  Stage st;
  st.name = o.stage;
  st.model = &s;
  st.tokenizer = student.tokenizer ? student.tokenizer.get() : teacher.tokenizer.get();
  st.n_samples = data.train.rows();
  const int64_t T = o.seq_len;
  nlohmann::json opts_json = nlohmann::json::parse(train_options_json(o.train));
  opts_json["seq_len"] = T;
  Arena arena, layer_arena;

  IldOptions ild;
  ild.mixer_term = o.mixer_term;
  KdOptions kd;
  kd.temperature = o.temperature, kd.kl_weight = o.kl_weight, kd.ce_weight = o.ce_weight;
  kd.reduction = o.reduction == "batch" ? KdOptions::BatchMean : KdOptions::TokenMean;

  if (o.stage == "ild") {
    opts_json["mixer_term"] = o.mixer_term;
    // Embeddings and head get no gradient in ILD (layer 0 reads the teacher's embeddings; no logits).
    st.trainable = [](const std::string& name) { return name != "model.embed_tokens.weight" && name != "lm_head.weight"; };
    st.micro_step = [&](const std::vector<int64_t>& rows, Model& grad, double scale) {
      const std::vector<int32_t> tokens = gather_rows(data.train, rows);
      const int64_t B = static_cast<int64_t>(rows.size());
      MicroResult r;
      r.loss = ild_step(t, s, tokens, B, T, ild, &grad, scale, arena).total;
      r.tokens = B * T;
      return r;
    };
    st.evaluate = [&]() -> Metrics {
      if (eval_rows == 0) return {};
      const IldLoss l = ild_step(t, s, gather_rows(data.holdout, eval_ids), eval_rows, T, ild, nullptr, 1.0, arena);
      return {{"loss", l.total}};
    };
    st.flops_per_token = 3 * forward_flops_per_token(s, true) + forward_flops_per_token(t, true);
  } else {
    opts_json["temperature"] = o.temperature, opts_json["kl_weight"] = o.kl_weight;
    opts_json["ce_weight"] = o.ce_weight, opts_json["reduction"] = o.reduction;
    st.micro_step = [&](const std::vector<int64_t>& rows, Model& grad, double scale) {
      const std::vector<int32_t> tokens = gather_rows(data.train, rows);
      const int64_t B = static_cast<int64_t>(rows.size());
      MicroResult r;
      r.loss = kd_step(t, s, tokens, B, T, kd, o.recompute, &grad, scale, arena, layer_arena).loss;
      r.tokens = B * T;
      return r;
    };
    st.evaluate = [&]() -> Metrics {
      if (eval_rows == 0) return {};
      Metrics m = {{"loss", 0.0}, {"ppl", 0.0}};
      double nll = 0;
      for (int64_t i = 0; i < eval_rows; ++i) {  // one row at a time: the teacher's logits stay small
        const KdStats k = kd_step(t, s, gather_rows(data.holdout, {i}), 1, T, kd, false, nullptr, 1.0, arena,
                                  layer_arena);
        m[0].second += k.loss / eval_rows;
        nll += k.nll / eval_rows;
      }
      m[1].second = std::exp(nll);
      return m;
    };
    st.flops_per_token = 3 * forward_flops_per_token(s, false) + forward_flops_per_token(t, false);
  }
  st.options_json = opts_json.dump();

  const TrainSummary sum = train(st, o.train);
  copy_llama2c_tokenizer(student.llama2c_tokenizer_file.empty() ? teacher.llama2c_tokenizer_file
                                                                 : student.llama2c_tokenizer_file,
                         o.train.out_dir + "/model");
  std::printf("%s: %lld steps, final loss %.5f", o.stage.c_str(), (long long)sum.steps, sum.last_loss);
  for (const auto& [k, v] : sum.last_eval) std::printf(", eval %s %.5f", k.c_str(), v);
  std::printf(", %.0f tokens/s, %.2f GFLOP/s (MFU %.1f%%)\nmodel: %s/model\n", sum.tokens_per_second, sum.gflops,
              100 * sum.mfu, o.train.out_dir.c_str());
}

void register_distill(CLI::App& app) {
  auto* cmd = app.add_subcommand("distill", "distil a hybrid from its teacher: --stage ild (layer by layer) or kd "
                                            "(end to end)");
  auto o = std::make_shared<DistillOptions>();
  cmd->add_option("--stage", o->stage, "ild or kd")->required();
  cmd->add_option("--teacher", o->teacher.model, "teacher model (HF dir, GGUF, llama2.c .bin)")->required();
  cmd->add_option("--student", o->student.model, "student hybrid directory (zebra compose / select output)")->required();
  cmd->add_option("--tokenizer", o->teacher.tokenizer, "llama2.c tokenizer.bin (for llama2.c models)");
  cmd->add_option("-t,--threads", o->teacher.threads, "threads (0 = all cores)");
  cmd->add_option("--data", o->data, "training text (.txt) or JSONL ({\"text\"} or chat {\"messages\"}) files")
      ->required();
  cmd->add_option("--data-cache", o->data_dir, "directory of the packed token shards (default OUT/data)");
  cmd->add_option("--seq-len", o->seq_len, "tokens per packed row")->capture_default_str();
  cmd->add_option("--holdout", o->holdout, "share of rows held out for evaluation")->capture_default_str();
  cmd->add_option("--eval-rows", o->eval_rows, "held-out rows scored at each evaluation")->capture_default_str();
  cmd->add_flag("--mixer-term", o->mixer_term, "ild: add the mixer-output distance (Aug 2025 'refined ILD'); off = "
                                               "hidden states only, as for the released checkpoints");
  cmd->add_option("--temperature", o->temperature, "kd: softmax temperature (loss scaled by T^2)")->capture_default_str();
  cmd->add_option("--kl-weight", o->kl_weight, "kd: weight of KL(teacher || student)")->capture_default_str();
  cmd->add_option("--ce-weight", o->ce_weight, "kd: weight of the next-token cross-entropy")->capture_default_str();
  cmd->add_option("--reduction", o->reduction, "kd: token (per-token mean) or batch (the reference's batchmean)")
      ->capture_default_str();
  cmd->add_flag("--recompute", o->recompute, "kd: keep only layer inputs, recompute activations in the backward");
  add_train_flags(cmd, o->train);
  cmd->callback([o] { run_distill(*o); });
}

}  // namespace zebra::cli
