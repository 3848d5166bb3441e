// zebra select: SMART layer selection (spec §3, our reconstruction; see compose/smart_select.h) from an
// all-MLA and an all-Mamba2 student of a teacher, then the hybrid assembled from the two (spec §2.3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compose/placement.h"
#include "compose/smart_select.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/atomic_write.h"
#include "model/save_hybrid.h"

namespace zebra::cli {

struct SelectOptions {
  ModelOptions teacher;  // model = --teacher, tokenizer, threads, json
  std::string mla_student, mamba_student, output;
  int64_t mla_count = -1;
  std::vector<std::string> data;
  int64_t seq_len = 256, rows = 32, batch_rows = 0;
  std::string dtype = "bf16";
};

static std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

static void run_select(const SelectOptions& o) {
  DType dtype;
  if (o.dtype == "f32") dtype = DType::F32;
  else if (o.dtype == "bf16") dtype = DType::BF16;
  else if (o.dtype == "f16") dtype = DType::F16;
  else fail("--dtype must be f32, bf16 or f16, got '", o.dtype, "'");
  ZEBRA_CHECK(o.rows > 0, "--rows must be positive, got ", o.rows);
  ZEBRA_CHECK(o.seq_len > 0, "--seq-len must be positive, got ", o.seq_len);
  ZEBRA_CHECK(o.batch_rows >= 0, "--batch-rows must be >= 0 (0 = automatic), got ", o.batch_rows);
  // Read the data first: a missing file should not cost three model loads.
  std::vector<std::string> texts;
  for (const std::string& f : o.data) texts.push_back(read_text_file(f, true));

  LoadedModel tl = open_model(o.teacher, /*need_tokenizer=*/true);
  ModelOptions so = o.teacher;
  so.tokenizer.clear();
  so.model = o.mla_student;
  LoadedModel al = open_model(so, /*need_tokenizer=*/false);
  so.model = o.mamba_student;
  LoadedModel ml = open_model(so, /*need_tokenizer=*/false);
  const Model &t = *tl.model, &a = *al.model, &m = *ml.model;
  check_smart_models(t, a, m, "--mla-student " + o.mla_student, "--mamba-student " + o.mamba_student);
  const int64_t L = static_cast<int64_t>(t.layers.size());
  ZEBRA_CHECK(o.mla_count >= 1 && o.mla_count <= L, "--mla-count must be in [1, ", L, "] (the teacher has ", L,
              " layers), got ", o.mla_count);
  for (const auto& [name, model] : {std::pair<std::string, const Model*>{"the teacher", &t},
                                    {"--mla-student", &a}, {"--mamba-student", &m}})
    ZEBRA_CHECK(o.seq_len <= model->config.max_position_embeddings, "--seq-len ", o.seq_len,
                " exceeds the context length ", model->config.max_position_embeddings, " of ", name);

  std::vector<int64_t> rows_per_file;
  const std::vector<std::vector<int32_t>> rows = calibration_rows(*tl.tokenizer, texts, o.rows, o.seq_len, &rows_per_file);
  if (rows.empty()) {
    std::string files;
    for (const std::string& f : o.data) files += (files.empty() ? "" : ", ") + f;
    fail("empty calibration data: ", files, " holds no window of ", o.seq_len,
         " tokens (give more text or a smaller --seq-len)");
  }
  if (static_cast<int64_t>(rows.size()) < o.rows)
    log_warn("the calibration data holds only ", rows.size(), " windows of ", o.seq_len, " tokens (asked for ", o.rows,
             " with --rows); using those");
  log_info("calibration: ", rows.size(), " rows x ", o.seq_len, " tokens; ", L + 1, " student variants");

  auto t0 = std::chrono::steady_clock::now();
  SmartOptions sopt;
  sopt.batch_rows = o.batch_rows;
  std::unique_ptr<Progress> bar;  // forward passes: per batch of rows, the teacher's and L+1 students'
  sopt.progress = [&](int64_t done, int64_t total) {
    if (!bar) bar = std::make_unique<Progress>("smart", total, "passes");
    bar->update(done);
  };
  const SmartScores s = smart_scores(t, a, m, rows, sopt);
  if (bar) bar->finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("scored ", L, " layers in ", secs, " s");

  const std::vector<int64_t> layout = smart_layout(s.scores, L, o.mla_count);
  const std::vector<int64_t> regular = default_mla_layout(L, o.mla_count);
  Model h = assemble_hybrid(t, a, m, layout);
  save_hybrid(h, tl.tokenizer.get(), o.output, dtype);

  nlohmann::json files = nlohmann::json::array();
  for (size_t f = 0; f < o.data.size(); ++f) files.push_back({{"path", o.data[f]}, {"rows", rows_per_file[f]}});
  nlohmann::json report = {
      {"method", "SMART, zebra's reconstruction of spec 3: s_l = D0 - D_l, D = token-averaged KL(teacher || student)"},
      {"teacher", o.teacher.model},
      {"mla_student", o.mla_student},
      {"mamba_student", o.mamba_student},
      {"d0", s.d0},
      {"d_l", s.d_l},
      {"scores", s.scores},
      {"layout", layout},
      {"default_layout", regular},
      {"mla_count", o.mla_count},
      {"calibration",
       {{"rows", rows.size()}, {"seq_len", o.seq_len}, {"tokens", s.tokens}, {"files", files}}},
      {"seconds", secs}};
  write_file_atomic(o.output + "/smart_report.json", report.dump(2) + "\n");

  if (o.teacher.json) {
    std::printf("%s\n", report.dump(2).c_str());
    return;
  }
  std::printf("SMART sensitivities (KL nats/token over %lld tokens; D0 = %.6f with every layer Mamba2)\n",
              (long long)s.tokens, s.d0);
  std::printf("%5s  %12s  %12s  %s\n", "layer", "D_l", "s_l", "chosen");
  for (int64_t l = 0; l < L; ++l) {
    const bool chosen = std::find(layout.begin(), layout.end(), l) != layout.end();
    std::printf("%5lld  %12.6f  %12.6f  %s\n", (long long)l, s.d_l[l], s.scores[l], chosen ? "MLA" : "-");
  }
  std::printf("layout:  [%s] (%lld MLA + %lld Mamba2)\n", join(layout).c_str(), (long long)layout.size(),
              (long long)(L - static_cast<int64_t>(layout.size())));
  std::printf("regular: [%s] (default_mla_layout, for comparison)\n", join(regular).c_str());
  std::printf("hybrid:  %s (report: %s/smart_report.json)\n", o.output.c_str(), o.output.c_str());
}

void register_select(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "select", "SMART: choose the MLA layers by sensitivity (all-MLA vs all-Mamba2 students) and assemble the hybrid");
  auto o = std::make_shared<SelectOptions>();
  cmd->add_option("--teacher", o->teacher.model, "the original Llama: Hugging Face directory, .gguf or llama2.c .bin")
      ->required();
  cmd->add_option("--tokenizer", o->teacher.tokenizer, "tokenizer file for a llama2.c teacher");
  cmd->add_option("--mla-student", o->mla_student, "all-MLA hybrid of the teacher (zebra compose --all-mla, after ILD)")
      ->required();
  cmd->add_option("--mamba-student", o->mamba_student,
                  "all-Mamba2 hybrid of the teacher (zebra compose --all-mamba, after ILD)")
      ->required();
  cmd->add_option("--mla-count", o->mla_count, "number of MLA layers to choose")->required();
  cmd->add_option("--data", o->data, "calibration text file(s), tokenised with the teacher's tokenizer")
      ->required()
      ->expected(1, -1);
  cmd->add_option("--seq-len", o->seq_len, "tokens per calibration row (BOS first when the tokenizer uses one)")
      ->capture_default_str();
  cmd->add_option("--rows", o->rows, "calibration rows")->capture_default_str();
  cmd->add_option("--batch-rows", o->batch_rows, "rows per forward pass (0 = automatic)");
  cmd->add_option("-o,--output", o->output, "output directory for the hybrid (AMD's layout) and smart_report.json")
      ->required();
  cmd->add_option("--dtype", o->dtype, "stored tensor type: f32, bf16 (default) or f16");
  cmd->add_option("-t,--threads", o->teacher.threads, "CPU threads (default: all cores)");
  cmd->add_flag("--json", o->teacher.json, "print the report as JSON on stdout");
  cmd->callback([o] { run_select(*o); });
}

}  // namespace zebra::cli
