// SMART layer selection (compose/smart_select.h, zebra select) on stories260K: the sensitivities against
// an independent double-precision KL of hand-built swapped models, the placement rules, the assembled
// hybrid against its sources (bit for bit) and through save/load, a synthetic zero-score layer, and the
// CLI's errors for bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "compose/compose.h"
#include "compose/placement.h"
#include "compose/smart_select.h"
#include "core/error.h"
#include "core/log.h"
#include "model/loader.h"
#include "model/save_hybrid.h"
#include "support.h"

using namespace zebra;
using json = nlohmann::json;

namespace {

struct Quiet {
  LogLevel saved = log_level();
  Quiet() { set_log_level(LogLevel::Quiet); }
  ~Quiet() { set_log_level(saved); }
};

constexpr int64_t kRows = 5, kSeq = 48;

// The teacher, its all-MLA and all-Mamba2 students (composed in memory, undistilled) and calibration rows
// from tinystories_valid; built once for the whole file.
struct SmartFixture {
  std::string dir, text, text_path;
  LoadedModel teacher;
  Model mla, mamba;
  std::vector<std::vector<int32_t>> rows;
};

const SmartFixture* setup() {
  static std::unique_ptr<SmartFixture> s;
  if (s) return s.get();
  const std::string dir = test::shared_asset("models/stories260K/stories260K.bin");
  const std::string text = test::shared_asset("text/tinystories_valid.txt");
  if (dir.empty() || text.empty()) return nullptr;
  Quiet q;
  s = std::make_unique<SmartFixture>();
  s->dir = std::filesystem::path(dir).parent_path().string();
  // The first 16 KB (whole lines) are plenty for the rows here and keep tokenisation out of the timings.
  std::string all = test::read_file(text);
  all.resize(all.rfind('\n', 16384) + 1);
  s->text = all;
  s->text_path = test::temp_dir() + "/tinystories_valid_16k.txt";
  test::write_file(s->text_path, all);
  LoadOptions lo;
  lo.tokenizer_path = s->dir + "/tok512.bin";
  s->teacher = load_model(dir, lo);
  ComposeOptions o;
  o.progress = false;
  o.all_mla = true;
  s->mla = compose_hybrid(*s->teacher.model, o);
  o.all_mla = false;
  o.all_mamba = true;
  o.seed = 1;
  s->mamba = compose_hybrid(*s->teacher.model, o);
  s->rows = calibration_rows(*s->teacher.tokenizer, {s->text}, kRows, kSeq);
  return s.get();
}

#define REQUIRE_SETUP(s)                                                                         \
  const SmartFixture* s = setup();                                                                      \
  if (!s) GTEST_SKIP() << "skipped: ../shared/assets/models/stories260K or text/tinystories_valid.txt not found"

// One row, one slot, all logits.
Tensor row_logits(const Model& m, const std::vector<int32_t>& row) {
  Cache c = m.make_cache(1, static_cast<int64_t>(row.size()));
  return m.forward(make_sequence_batch(row, 0, 0, true), c);
}

// Token-averaged KL(teacher || student) by a plain double log-softmax loop, row by row.
double reference_kl(const Model& teacher, const Model& student, const std::vector<std::vector<int32_t>>& rows) {
  const int64_t V = teacher.config.vocab_size;
  double sum = 0;
  int64_t n = 0;
  for (const auto& row : rows) {
    const Tensor lt = row_logits(teacher, row), ls = row_logits(student, row);
    for (size_t j = 0; j < row.size(); ++j) {
      const float* a = lt.ptr() + j * V;
      const float* b = ls.ptr() + j * V;
      double ma = -1e300, mb = -1e300;
      for (int64_t v = 0; v < V; ++v) ma = std::max(ma, (double)a[v]), mb = std::max(mb, (double)b[v]);
      double za = 0, zb = 0;
      for (int64_t v = 0; v < V; ++v) za += std::exp(a[v] - ma), zb += std::exp(b[v] - mb);
      const double la = ma + std::log(za), lb = mb + std::log(zb);
      double kl = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double lpa = a[v] - la, lpb = b[v] - lb;
        kl += std::exp(lpa) * (lpa - lpb);
      }
      sum += kl;
      n += 1;
    }
  }
  return sum / n;
}

// The all-Mamba2 student with the teacher's embedding, final norm and head, and (when layer >= 0) the
// MLA student's whole decoder layer `layer` swapped in: what smart_scores is specified to evaluate.
Model swapped_by_hand(const SmartFixture& s, int64_t layer) {
  Model m = s.mamba;
  const Model& t = *s.teacher.model;
  m.embed = t.embed;
  m.norm = t.norm;
  m.lm_head = t.lm_head;
  if (layer >= 0) m.layers[layer] = s.mla.layers[layer];
  return m;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0;
}

// Every weight tensor of a layer, in a fixed order (empty ones included, so kinds must match too).
std::vector<const Tensor*> layer_tensors(const Layer& l) {
  return {&l.input_norm, &l.post_norm, &l.mlp.gate, &l.mlp.up, &l.mlp.down,
          &l.mla.q_a, &l.mla.q_a_norm, &l.mla.q_b, &l.mla.q_proj, &l.mla.kv_a, &l.mla.kv_a_norm, &l.mla.kv_b,
          &l.mla.out_proj,
          &l.mamba.in_proj, &l.mamba.conv_w, &l.mamba.conv_b, &l.mamba.dt_bias, &l.mamba.A_log, &l.mamba.D,
          &l.mamba.norm, &l.mamba.out_proj};
}

bool same_layer(const Layer& a, const Layer& b) {
  if (a.kind != b.kind) return false;
  const auto ta = layer_tensors(a), tb = layer_tensors(b);
  for (size_t i = 0; i < ta.size(); ++i)
    if (!same_tensor(*ta[i], *tb[i])) return false;
  return true;
}

std::string shell_quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST(SmartSelect, CalibrationRowsStartWithBos) {
  REQUIRE_SETUP(s);
  const Tokenizer& tok = *s->teacher.tokenizer;
  ASSERT_TRUE(tok.adds_bos());
  ASSERT_EQ(static_cast<int64_t>(s->rows.size()), kRows);
  const std::vector<int32_t> ids = tok.encode(s->text, false, false);
  for (int64_t r = 0; r < kRows; ++r) {
    ASSERT_EQ(static_cast<int64_t>(s->rows[r].size()), kSeq);
    EXPECT_EQ(s->rows[r][0], tok.bos_id());
    for (int64_t j = 1; j < kSeq; ++j) ASSERT_EQ(s->rows[r][j], ids[r * (kSeq - 1) + j - 1]) << r << "," << j;
  }
  // Short texts give fewer rows; windows never cross texts.
  std::vector<int64_t> per_text;
  auto few = calibration_rows(tok, std::vector<std::string>{"Once upon a time", s->text}, 3, kSeq, &per_text);
  EXPECT_EQ(few.size(), 3u);
  EXPECT_EQ(per_text, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(calibration_rows(tok, {"tiny"}, 3, kSeq).empty());
}

TEST(SmartSelect, ScoresMatchAnIndependentKl) {
  REQUIRE_SETUP(s);
  Quiet q;
  const Model& t = *s->teacher.model;
  const int64_t L = t.config.num_layers;
  SmartOptions o;
  o.batch_rows = 2;  // 5 rows: batches of 2, 2, 1
  int64_t calls = 0, last_total = 0;
  o.progress = [&](int64_t done, int64_t total) {
    calls += 1;
    last_total = total;
    EXPECT_EQ(done, calls);
  };
  const SmartScores sc = smart_scores(t, s->mla, s->mamba, s->rows, o);
  EXPECT_EQ(last_total, 3 * (L + 2));
  EXPECT_EQ(calls, last_total);
  EXPECT_EQ(sc.tokens, kRows * kSeq);
  ASSERT_EQ(static_cast<int64_t>(sc.scores.size()), L);

  const double d0 = reference_kl(t, swapped_by_hand(*s, -1), s->rows);
  EXPECT_NEAR(sc.d0, d0, 1e-5 * d0);
  EXPECT_GT(d0, 0.1);  // an undistilled all-Mamba2 student is far from the teacher
  for (int64_t l = 0; l < L; ++l) {
    const double dl = reference_kl(t, swapped_by_hand(*s, l), s->rows);
    EXPECT_NEAR(sc.d_l[l], dl, 1e-5 * dl) << "layer " << l;
    EXPECT_NEAR(sc.scores[l], d0 - dl, 2e-5 * d0) << "layer " << l;
    EXPECT_EQ(sc.scores[l], sc.d0 - sc.d_l[l]);
  }
  // Batching does not change the numbers beyond rounding; mean_kl on the assembly is D_l.
  o.batch_rows = 0;
  o.progress = {};
  const SmartScores auto_batch = smart_scores(t, s->mla, s->mamba, s->rows, o);
  for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(auto_batch.d_l[l], sc.d_l[l], 1e-5 * sc.d_l[l]);
  EXPECT_NEAR(mean_kl(t, assemble_hybrid(t, s->mla, s->mamba, {2}), s->rows), sc.d_l[2], 1e-5 * sc.d_l[2]);
  EXPECT_NEAR(mean_kl(t, t, s->rows), 0.0, 1e-6);
}

TEST(SmartSelect, IdenticalTwinLayerScoresExactlyZero) {
  REQUIRE_SETUP(s);
  Quiet q;
  const Model& t = *s->teacher.model;
  const SmartScores base = smart_scores(t, s->mla, s->mamba, s->rows);
  const int64_t k = 2;
  Model twin = s->mla;  // layer k of "A" made identical to M's layer k
  twin.layers[k] = s->mamba.layers[k];
  const SmartScores sc = smart_scores(t, twin, s->mamba, s->rows);
  EXPECT_EQ(sc.scores[k], 0.0);
  EXPECT_EQ(sc.d_l[k], sc.d0);
  EXPECT_EQ(sc.d0, base.d0);
  for (size_t l = 0; l < sc.scores.size(); ++l)
    if (static_cast<int64_t>(l) != k) {
      EXPECT_EQ(sc.d_l[l], base.d_l[l]) << l;
    }
}

TEST(SmartSelect, AssembledHybridCopiesItsSources) {
  REQUIRE_SETUP(s);
  Quiet q;
  const Model& t = *s->teacher.model;
  const int64_t L = t.config.num_layers;
  const std::vector<int64_t> layout = {3, 0};  // unsorted on purpose
  const Model h = assemble_hybrid(t, s->mla, s->mamba, layout);
  EXPECT_EQ(h.hybrid.mla_layers, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(h.is_hybrid);
  for (int64_t i = 0; i < L; ++i) {
    const bool mla = i == 0 || i == 3;
    EXPECT_EQ(h.layers[i].kind, mla ? LayerKind::Mla : LayerKind::Mamba2) << i;
    EXPECT_TRUE(same_layer(h.layers[i], mla ? s->mla.layers[i] : s->mamba.layers[i])) << "layer " << i;
  }
  EXPECT_TRUE(same_tensor(h.embed, t.embed));
  EXPECT_TRUE(same_tensor(h.norm, t.norm));
  EXPECT_TRUE(same_tensor(h.head(), t.head()));
  EXPECT_EQ(h.hybrid.kv_lora_rank, s->mla.hybrid.kv_lora_rank);
  EXPECT_EQ(h.hybrid.q_lora_rank, s->mla.hybrid.q_lora_rank);
  EXPECT_EQ(h.hybrid.d_inner, s->mamba.hybrid.d_inner);
  EXPECT_EQ(h.hybrid.d_state, s->mamba.hybrid.d_state);

  // Save (f32) and load back: same logits.
  const std::string out = test::temp_dir() + "/assembled";
  save_hybrid(h, s->teacher.tokenizer.get(), out, DType::F32);
  LoadOptions lo;
  lo.need_tokenizer = false;
  LoadedModel back = load_model(out, lo);
  EXPECT_EQ(back.model->hybrid.mla_layers, h.hybrid.mla_layers);
  for (int64_t i = 0; i < L; ++i) EXPECT_TRUE(same_layer(back.model->layers[i], h.layers[i])) << "layer " << i;
  const Tensor a = row_logits(h, s->rows[0]), b = row_logits(*back.model, s->rows[0]);
  ASSERT_EQ(a.shape, b.shape);
  double md = 0;
  for (int64_t i = 0; i < a.numel(); ++i) md = std::max(md, (double)std::fabs(a.data[i] - b.data[i]));
  EXPECT_EQ(md, 0.0);
}

// Undistilled students assemble into exactly what compose builds for that layout (the Mamba2 init is
// seeded per layer index, the MLA init is deterministic, and both copy the teacher's MLP and norms).
TEST(SmartSelect, AssemblingUndistilledStudentsIsCompose) {
  REQUIRE_SETUP(s);
  Quiet q;
  ComposeOptions o;
  o.progress = false;
  o.seed = 1;
  o.mla_layers = std::vector<int64_t>{1, 3};
  const Model c = compose_hybrid(*s->teacher.model, o);
  const Model h = assemble_hybrid(*s->teacher.model, s->mla, s->mamba, {1, 3});
  for (size_t i = 0; i < c.layers.size(); ++i) EXPECT_TRUE(same_layer(h.layers[i], c.layers[i])) << "layer " << i;
  EXPECT_TRUE(same_tensor(row_logits(h, s->rows[0]), row_logits(c, s->rows[0])));
}

TEST(SmartSelect, PerLayerRanksFollowTheChosenLayers) {
  REQUIRE_SETUP(s);
  Quiet q;
  ComposeOptions o;
  o.progress = false;
  o.all_mla = true;
  o.kv_energy = 0.9;
  const Model a = compose_hybrid(*s->teacher.model, o);
  ASSERT_FALSE(a.hybrid.layer_ranks.empty());
  const Model h = assemble_hybrid(*s->teacher.model, a, s->mamba, {1, 3});
  ASSERT_EQ(h.hybrid.layer_ranks.size(), 2u);
  for (int64_t l : {1, 3}) {
    EXPECT_EQ(h.hybrid.layer_ranks.at(l).second, a.layers[l].mla_dims.kv_rank);
    EXPECT_EQ(h.hybrid.mla_dims(h.config, l).kv_rank, a.layers[l].mla_dims.kv_rank);
  }
}

TEST(SmartSelect, ModelChecksNameTheProblem) {
  REQUIRE_SETUP(s);
  const Model& t = *s->teacher.model;
  EXPECT_NE(test::error_message([&] { check_smart_models(t, s->mamba, s->mamba, "A", "M"); })
                .find("A must be all MLA (zebra compose --all-mla), but its layer 0 is mamba2"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { check_smart_models(t, s->mla, s->mla, "A", "M"); })
                .find("M must be all Mamba2 (zebra compose --all-mamba), but its layer 0 is mla"),
            std::string::npos);
  Model odd = s->mla;
  odd.layers[3].kind = LayerKind::Mamba2;
  EXPECT_NE(test::error_message([&] { check_smart_models(t, odd, s->mamba, "A", "M"); }).find("its layer 3 is mamba2"),
            std::string::npos);
  Model wide = s->mla;
  wide.config.hidden_size += 8;
  EXPECT_NE(test::error_message([&] { check_smart_models(t, wide, s->mamba, "A", "M"); })
                .find("A has hidden size " + std::to_string(t.config.hidden_size + 8) + " but the teacher has " +
                      std::to_string(t.config.hidden_size)),
            std::string::npos);
  Model vocab = s->mamba;
  vocab.config.vocab_size = 7;
  EXPECT_NE(test::error_message([&] { check_smart_models(t, s->mla, vocab, "A", "M"); })
                .find("M has a vocabulary of 7 tokens but the teacher has"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { check_smart_models(s->mla, s->mla, s->mamba, "A", "M"); }).find("teacher"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { smart_scores(t, s->mla, s->mamba, {}); }).find("no calibration rows"),
            std::string::npos);
}

TEST(SelectCli, Stories260KEndToEnd) {
  REQUIRE_SETUP(s);
  Quiet q;
  const Model& t = *s->teacher.model;
  const int64_t L = t.config.num_layers, N = 2;
  const std::string tmp = test::temp_dir();
  save_hybrid(s->mla, nullptr, tmp + "/A", DType::F32);
  save_hybrid(s->mamba, nullptr, tmp + "/M", DType::F32);
  const std::string base = test::zebra_binary() + " select --teacher " + shell_quote(s->dir + "/stories260K.bin") +
                           " --tokenizer " + shell_quote(s->dir + "/tok512.bin") + " --mla-student " + tmp +
                           "/A --mamba-student " + tmp + "/M --data " + shell_quote(s->text_path);
  std::string so, se;
  ASSERT_EQ(test::run_command(base + " --mla-count 2 --seq-len 48 --rows 5 --dtype f32 -o " + tmp + "/H", &so, &se), 0)
      << se;
  EXPECT_NE(so.find("layer           D_l           s_l  chosen"), std::string::npos) << so;
  EXPECT_NE(so.find("layout:  ["), std::string::npos) << so;

  const json r = json::parse(test::read_file(tmp + "/H/smart_report.json"));
  const std::vector<double> scores = r["scores"].get<std::vector<double>>();
  const std::vector<int64_t> layout = r["layout"].get<std::vector<int64_t>>();
  ASSERT_EQ(static_cast<int64_t>(scores.size()), L);
  EXPECT_EQ(r["mla_count"], N);
  EXPECT_EQ(r["calibration"]["rows"], kRows);
  EXPECT_EQ(r["calibration"]["seq_len"], kSeq);
  EXPECT_EQ(r["calibration"]["tokens"], kRows * kSeq);
  EXPECT_EQ(r["calibration"]["files"][0]["path"], s->text_path);
  // Same rows, same (f32-saved) students: the CLI's scores are the API's.
  const SmartScores api = smart_scores(t, s->mla, s->mamba, s->rows);
  for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(scores[l], api.scores[l], 1e-9 + 1e-6 * std::fabs(api.d0)) << l;
  EXPECT_NEAR(r["d0"].get<double>(), api.d0, 1e-6 * api.d0);
  // Placement: smart_layout of the scores, with the structural rules.
  EXPECT_EQ(layout, smart_layout(scores, L, N));
  ASSERT_EQ(static_cast<int64_t>(layout.size()), N);
  EXPECT_EQ(layout.front(), 0);
  EXPECT_TRUE(layout.back() == L - 2 || layout.back() == L - 1);
  EXPECT_EQ(layout.back(), scores[L - 1] > scores[L - 2] ? L - 1 : L - 2);

  // The hybrid on disk: layers from the students, the rest from the teacher, same logits as in memory.
  LoadOptions lo;
  lo.need_tokenizer = false;
  LoadedModel h = load_model(tmp + "/H", lo);
  EXPECT_EQ(h.model->hybrid.mla_layers, layout);
  for (int64_t i = 0; i < L; ++i) {
    const bool mla = std::find(layout.begin(), layout.end(), i) != layout.end();
    EXPECT_TRUE(same_layer(h.model->layers[i], mla ? s->mla.layers[i] : s->mamba.layers[i])) << "layer " << i;
  }
  EXPECT_TRUE(same_tensor(h.model->embed, t.embed));
  EXPECT_TRUE(same_tensor(h.model->norm, t.norm));
  EXPECT_TRUE(same_tensor(h.model->head(), t.head()));
  const Tensor a = row_logits(*h.model, s->rows[1]);
  const Tensor b = row_logits(assemble_hybrid(t, s->mla, s->mamba, layout), s->rows[1]);
  EXPECT_TRUE(same_tensor(a, b));

  // --json prints the report.
  ASSERT_EQ(test::run_command(base + " --mla-count 1 --seq-len 48 --rows 2 --json -o " + tmp + "/H1", &so, &se), 0)
      << se;
  EXPECT_EQ(json::parse(so)["layout"], json::array({0}));

  // Bad inputs, each with its message.
  auto expect_fail = [&](const std::string& args, const std::string& needle) {
    std::string o2, e2;
    EXPECT_NE(test::run_command(args, &o2, &e2), 0) << args;
    EXPECT_NE(e2.find(needle), std::string::npos) << "stderr: " << e2;
  };
  const std::string ok = " --seq-len 48 --rows 2 -o " + tmp + "/bad";
  expect_fail(base + " --mla-count 0" + ok, "--mla-count must be in [1, 5] (the teacher has 5 layers), got 0");
  expect_fail(base + " --mla-count 6" + ok, "--mla-count must be in [1, 5]");
  expect_fail(base + " --mla-count 2 --seq-len 100000 --rows 2 -o " + tmp + "/bad",
              "--seq-len 100000 exceeds the context length " + std::to_string(t.config.max_position_embeddings) +
                  " of the teacher");
  test::write_file(tmp + "/empty.txt", "");
  test::write_file(tmp + "/short.txt", "Once upon a time");
  const std::string teacher_only = test::zebra_binary() + " select --teacher " + shell_quote(s->dir + "/stories260K.bin") +
                                   " --mla-student " + tmp + "/A --mamba-student " + tmp + "/M --mla-count 2" + ok;
  expect_fail(teacher_only + " --data " + tmp + "/empty.txt " + tmp + "/short.txt",
              "empty calibration data: " + tmp + "/empty.txt, " + tmp + "/short.txt holds no window of 48 tokens");
  expect_fail(teacher_only + " --data " + tmp + "/missing.txt", "missing.txt");
  // Swapped students.
  const std::string swapped = test::zebra_binary() + " select --teacher " + shell_quote(s->dir + "/stories260K.bin") +
                              " --mla-student " + tmp + "/M --mamba-student " + tmp + "/A --mla-count 2 --data " +
                              shell_quote(s->text_path) + ok;
  expect_fail(swapped, "--mla-student " + tmp + "/M must be all MLA (zebra compose --all-mla), but its layer 0 is mamba2");
  // A student with one layer fewer.
  Model short_a = s->mla;
  short_a.layers.pop_back();
  short_a.config.num_layers = L - 1;
  short_a.hybrid.mla_layers.pop_back();
  save_hybrid(short_a, nullptr, tmp + "/A4", DType::F32);
  const std::string bad_layers = test::zebra_binary() + " select --teacher " + shell_quote(s->dir + "/stories260K.bin") +
                                 " --mla-student " + tmp + "/A4 --mamba-student " + tmp + "/M --mla-count 2 --data " +
                                 shell_quote(s->text_path) + ok;
  expect_fail(bad_layers, "--mla-student " + tmp + "/A4 has 4 layers but the teacher has 5");
  EXPECT_FALSE(test::file_exists(tmp + "/bad"));
}
