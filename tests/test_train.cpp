// The distillation trainer: whole-model gradients against PyTorch autograd (tiny hybrids), recomputation,
// ILD/KD/DPO gradients by finite differences, and the CLI stages end to end (resume, NaN stop, bad input).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "compose/compose.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "model/loader.h"
#include "model/parameters.h"
#include "support.h"
#include "train/dpo.h"
#include "train/ild.h"
#include "train/kd.h"
#include "train/losses.h"
#include "train/model_train.h"

using namespace zebra;
namespace fs = std::filesystem;

namespace {

Model load_fixture_model(const std::string& rel) {
  LoadOptions lo;
  lo.need_tokenizer = false;
  return std::move(*load_model(test::fixture(rel), lo).model);
}

// Gradients of the token-mean KD loss of `m` on rows of `tokens` against fixed teacher logits.
Model kd_gradients(const Model& m, const std::vector<int32_t>& tokens, int64_t B, int64_t T, const float* teacher,
                   bool recompute, double* loss) {
  Arena arena, layer_arena;
  arena.plan(model_activation_floats(m, B, T, recompute));
  layer_arena.plan(max_layer_activation_floats(m, B, T));
  ModelActivations act;
  model_train_forward(m, tokens.data(), B, T, recompute, arena, act);
  const int64_t V = m.config.vocab_size;
  std::vector<float> dlogits(B * T * V, 0.0f);
  *loss = kd_loss(act.logits, teacher, B * T, V, KdOptions{}, dlogits.data());
  Model grad = zeros_like(m);
  model_backward(m, tokens.data(), act, dlogits.data(), grad, layer_arena);
  return grad;
}

void check_against_torch(const std::string& model_rel, const std::string& fixture_rel) {
  Model m = load_fixture_model(model_rel);
  SafetensorsFile fx(test::fixture(fixture_rel));
  const Tensor tok = fx.load("tokens", fx.find("tokens")->shape);
  const int64_t B = tok.dim(0), T = tok.dim(1);
  std::vector<int32_t> tokens(B * T);
  for (int64_t i = 0; i < B * T; ++i) tokens[i] = static_cast<int32_t>(tok.data[i]);
  const Tensor teacher = fx.load("teacher_logits", {B * T, m.config.vocab_size});
  double loss = 0;
  Model grad = kd_gradients(m, tokens, B, T, teacher.ptr(), false, &loss);
  EXPECT_NEAR(loss, fx.load("loss", {1}).data[0], 1e-4 * std::fabs(loss));

  int checked = 0;
  for (const NamedTensor& g : named_parameters(grad)) {
    const TensorView* v = fx.find("grad." + g.name);
    ASSERT_NE(v, nullptr) << "no torch gradient for " << g.name;
    const Tensor ref = view_to_tensor(*v);
    ASSERT_EQ(ref.numel(), g.tensor->numel()) << g.name;
    double max_ref = 0, max_diff = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      max_ref = std::max(max_ref, std::fabs((double)ref.data[i]));
      max_diff = std::max(max_diff, std::fabs((double)ref.data[i] - g.tensor->data[i]));
    }
    EXPECT_LE(max_diff, 2e-4 * max_ref + 1e-6) << g.name << ": max |ours - torch| " << max_diff << ", max |torch| "
                                               << max_ref;
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

}  // namespace

TEST(TrainModel, KdGradientsMatchPyTorchAutograd) {
  check_against_torch("tiny_hybrid/model", "train_model/tiny_hybrid_kd.safetensors");
}

TEST(TrainModel, KdGradientsMatchPyTorchAutogradTiedVariant) {
  check_against_torch("tiny_hybrid/variant/model", "train_model/variant_kd.safetensors");
}

TEST(TrainModel, RecomputeGivesTheSameGradients) {
  Model m = load_fixture_model("tiny_hybrid/model");
  const int64_t B = 2, T = 9, V = m.config.vocab_size;
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(B * T);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % V);
  std::vector<float> teacher(B * T * V);
  std::normal_distribution<float> nd;
  for (float& x : teacher) x = nd(rng);
  double l1 = 0, l2 = 0;
  Model g1 = kd_gradients(m, tokens, B, T, teacher.data(), false, &l1);
  Model g2 = kd_gradients(m, tokens, B, T, teacher.data(), true, &l2);
  EXPECT_EQ(l1, l2);
  auto a = named_parameters(g1), b = named_parameters(g2);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].tensor->data, b[i].tensor->data) << a[i].name;
}

TEST(TrainModel, ForwardLogitsEqualTheInferenceEngine) {
  Model m = load_fixture_model("tiny_hybrid/model");
  const int64_t B = 2, T = 11, V = m.config.vocab_size;
  std::vector<int32_t> tokens(B * T);
  for (int64_t i = 0; i < B * T; ++i) tokens[i] = static_cast<int32_t>((i * 37 + 5) % V);
  Arena arena;
  arena.plan(model_activation_floats(m, B, T, false));
  ModelActivations act;
  model_train_forward(m, tokens.data(), B, T, false, arena, act);
  EXPECT_LE(arena.used(), arena.capacity());
  const Tensor ref = teacher_logits(m, tokens, B, T);
  double md = 0;
  for (int64_t i = 0; i < B * T * V; ++i) md = std::max(md, std::fabs((double)ref.data[i] - act.logits[i]));
  EXPECT_LT(md, 1e-4);
}

// ---- ILD and DPO by finite differences on a stories260K teacher and composed students ------------------

namespace {

struct Stories {
  Model teacher, mla, mamba;
};

const Stories* stories() {
  static std::unique_ptr<Stories> s;
  if (s) return s.get();
  const std::string bin = test::shared_asset("models/stories260K/stories260K.bin");
  if (bin.empty()) return nullptr;
  set_log_level(LogLevel::Quiet);
  LoadOptions lo;
  lo.tokenizer_path = test::shared_asset("models/stories260K/tok512.bin");
  s = std::make_unique<Stories>();
  s->teacher = std::move(*load_model(bin, lo).model);
  ComposeOptions co;
  co.progress = false;
  co.all_mla = true;
  co.q_rank = 16, co.kv_rank = 16;
  s->mla = compose_hybrid(s->teacher, co);
  co.all_mla = false, co.all_mamba = true;
  s->mamba = compose_hybrid(s->teacher, co);
  return s.get();
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = 1 + static_cast<int32_t>(rng() % (vocab - 1));
  return t;
}

// Central differences of f at a few elements of every tensor of `m` named by `pick`, compared with grad.
void finite_difference_check(Model& m, const Model& grad, const std::function<double()>& f,
                             const std::function<bool(const std::string&)>& pick, int per_tensor = 2) {
  std::mt19937 rng(11);
  auto params = named_parameters(m);
  auto grads = named_parameters(const_cast<Model&>(grad));
  int checked = 0;
  for (size_t p = 0; p < params.size(); ++p) {
    if (!pick(params[p].name)) continue;
    Tensor& w = *params[p].tensor;
    // The largest-gradient element plus random ones: FD is meaningful where the gradient is not tiny.
    std::vector<int64_t> idx;
    int64_t best = 0;
    for (int64_t i = 0; i < w.numel(); ++i)
      if (std::fabs(grads[p].tensor->data[i]) > std::fabs(grads[p].tensor->data[best])) best = i;
    idx.push_back(best);
    for (int k = 1; k < per_tensor; ++k) idx.push_back(rng() % w.numel());
    for (int64_t i : idx) {
      const float orig = w.data[i];
      const float h = 2e-3f * std::max(1.0f, std::fabs(orig));
      w.data[i] = orig + h;
      const double up = f();
      w.data[i] = orig - h;
      const double down = f();
      w.data[i] = orig;
      const double fd = (up - down) / (2.0 * h);
      const double g = grads[p].tensor->data[i];
      // fp32 losses of a few nats carry ~1e-6 relative noise: over a step of 2h = 4e-3 that is ~1e-3 of FD
      // noise, the absolute floor here.
      EXPECT_NEAR(g, fd, 3e-2 * std::max(std::fabs(fd), std::fabs(g)) + 1e-3)
          << params[p].name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace

TEST(TrainIld, GradientsMatchFiniteDifferences) {
  const Stories* s = stories();
  if (!s) GTEST_SKIP() << "stories260K not in ../shared/assets";
  // The MLA student with the hidden-state loss only, the Mamba2 student with the mixer-output term too.
  for (const Model* student0 : {&s->mla, &s->mamba}) {
    {
      const bool mixer_term = student0 == &s->mamba;
      Model student = *student0;
      const int64_t B = 2, T = 7;
      const std::vector<int32_t> tokens = some_tokens(B * T, student.config.vocab_size, 5);
      IldOptions o;
      o.mixer_term = mixer_term;
      Arena arena;
      Model grad = zeros_like(student);
      const double scale = 0.5;  // gradients are scaled, the returned loss is not
      ild_step(s->teacher, student, tokens, B, T, o, &grad, scale, arena);
      for (NamedTensor& t : named_parameters(grad))
        for (float& g : t.tensor->data) g /= static_cast<float>(scale);
      auto f = [&] { return ild_step(s->teacher, student, tokens, B, T, o, nullptr, 1.0, arena).total; };
      finite_difference_check(student, grad, f, [](const std::string& n) {
        return n.find("layers.1.") != std::string::npos || n.find("layers.4.") != std::string::npos ||
               n == "model.norm.weight";
      });
      // ILD never touches the embedding or the head.
      for (float g : grad.embed.data) ASSERT_EQ(g, 0.0f);
    }
  }
}

TEST(TrainKd, GradientsMatchFiniteDifferencesWithTemperatureAndCe) {
  const Stories* s = stories();
  if (!s) GTEST_SKIP() << "stories260K not in ../shared/assets";
  Model student = s->mamba;
  const int64_t B = 2, T = 6;
  const std::vector<int32_t> tokens = some_tokens(B * T, student.config.vocab_size, 9);
  KdOptions o;
  o.temperature = 2.0f, o.ce_weight = 0.3f;
  Arena arena, layer_arena;
  Model grad = zeros_like(student);
  kd_step(s->teacher, student, tokens, B, T, o, true, &grad, 1.0, arena, layer_arena);
  auto f = [&] { return kd_step(s->teacher, student, tokens, B, T, o, false, nullptr, 1.0, arena, layer_arena).loss; };
  finite_difference_check(student, grad, f, [](const std::string& n) {
    return n.find("layers.2.") != std::string::npos || n.find("embed") != std::string::npos ||
           n == "model.norm.weight";
  });
}

TEST(TrainDpo, GradientsMatchFiniteDifferences) {
  const Stories* s = stories();
  if (!s) GTEST_SKIP() << "stories260K not in ../shared/assets";
  Model policy = s->mla;
  const Model reference = s->mla;
  // Move the policy away from the reference so the loss is not at its symmetric point.
  for (float& w : policy.layers[0].mlp.up.data) w *= 1.1f;
  const int64_t V = policy.config.vocab_size;
  PreferencePair a{some_tokens(5, V, 1), some_tokens(4, V, 2), some_tokens(3, V, 3)};
  PreferencePair b{some_tokens(3, V, 4), some_tokens(2, V, 5), some_tokens(6, V, 6)};
  const std::vector<const PreferencePair*> pairs = {&a, &b};
  const double beta = 0.5;
  Model grad = zeros_like(policy);
  dpo_step(policy, reference, pairs, beta, &grad, 1.0);
  auto f = [&] { return dpo_step(policy, reference, pairs, beta, nullptr, 1.0).loss; };
  finite_difference_check(policy, grad, f, [](const std::string& n) {
    return n.find("layers.0.") != std::string::npos || n.find("embed") != std::string::npos;
  });
}

// ---- The CLI stages end to end on stories260K ---------------------------------------------------------

namespace {

struct Cli {
  std::string bin, tok, text, dir, mamba;  // teacher, tokenizer, a small training text, scratch, all-Mamba2 student
};

const Cli* cli() {
  static std::unique_ptr<Cli> c;
  static bool tried = false;
  if (tried) return c.get();
  tried = true;
  const std::string bin = test::shared_asset("models/stories260K/stories260K.bin");
  const std::string valid = test::shared_asset("text/tinystories_valid.txt");
  if (bin.empty() || valid.empty()) return nullptr;
  auto x = std::make_unique<Cli>();
  x->bin = bin, x->tok = test::shared_asset("models/stories260K/tok512.bin");
  x->dir = test::temp_dir();
  x->text = x->dir + "/train.txt";
  test::write_file(x->text, test::read_file(valid).substr(0, 60000));
  x->mamba = x->dir + "/all_mamba";
  std::string out, err;
  const int rc = test::run_command(test::zebra_binary() + " -q compose --teacher " + bin + " --tokenizer " + x->tok +
                                       " --all-mamba --dtype f32 -o " + x->mamba, &out, &err);
  EXPECT_EQ(rc, 0) << err;
  c = std::move(x);
  return c.get();
}

std::string ild_command(const Cli& c, const std::string& out_dir, const std::string& extra) {
  return test::zebra_binary() + " distill --stage ild --teacher " + c.bin + " --tokenizer " + c.tok + " --student " +
         c.mamba + " --data " + c.text + " --seq-len 64 -b 2 --steps 6 --lr 2e-3 --eval-every 3 --save-every 2 -t 1 -o " +
         out_dir + " " + extra;
}

// The loss-curve columns (step, loss, lr, grad_norm, eval_loss) of a train_log.csv.
std::vector<std::string> loss_curve(const std::string& csv) {
  std::vector<std::string> rows;
  std::istringstream in(test::read_file(csv));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    if (f.size() == 6) f.push_back("");  // an empty eval_loss at the end of the line
    if (f.size() >= 7) rows.push_back(f[0] + "," + f[1] + "," + f[2] + "," + f[3] + "," + f[6]);
  }
  return rows;
}

}  // namespace

TEST(TrainCli, ResumeAfterAKillReproducesTheUninterruptedRun) {
  const Cli* c = cli();
  if (!c) GTEST_SKIP() << "stories260K or tinystories_valid.txt not in ../shared/assets";
  const std::string a = c->dir + "/ild_a", b = c->dir + "/ild_b";
  std::string out, err;
  ASSERT_EQ(test::run_command(ild_command(*c, a, ""), &out, &err), 0) << err;
  // The same run, killed after step 3 (its last checkpoint is step 2), then resumed.
  EXPECT_NE(test::run_command(ild_command(*c, b, "--halt-after-step 3"), &out, &err), 0);
  EXPECT_EQ(loss_curve(b + "/train_log.csv").size(), 4u);  // header + steps 1..3
  ASSERT_EQ(test::run_command(ild_command(*c, b, "--resume"), &out, &err), 0) << err;
  EXPECT_NE(err.find("resuming ild from step 2"), std::string::npos) << err;

  const auto curve_a = loss_curve(a + "/train_log.csv"), curve_b = loss_curve(b + "/train_log.csv");
  ASSERT_EQ(curve_a.size(), 7u);
  EXPECT_EQ(curve_a, curve_b);
  EXPECT_EQ(test::read_file(a + "/model/model.safetensors"), test::read_file(b + "/model/model.safetensors"));
  // The loss went down.
  EXPECT_LT(std::stod(curve_a.back().substr(curve_a.back().find(',') + 1)),
            std::stod(curve_a[1].substr(curve_a[1].find(',') + 1)));
  // A resume with different options is refused.
  EXPECT_NE(test::run_command(ild_command(*c, b, "--resume --clip 0.5"), &out, &err), 0);
  EXPECT_NE(err.find("options differ"), std::string::npos) << err;
}

TEST(TrainCli, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  const Cli* c = cli();
  if (!c) GTEST_SKIP() << "stories260K or tinystories_valid.txt not in ../shared/assets";
  const std::string d = c->dir + "/ild_nan";
  std::string out, err;
  const std::string cmd = test::zebra_binary() + " distill --stage ild --teacher " + c->bin + " --tokenizer " + c->tok +
                          " --student " + c->mamba + " --data " + c->text +
                          " --seq-len 32 -b 1 --steps 8 --lr 1e30 --clip 0 --save-every 1 -t 1 -o " + d;
  EXPECT_EQ(test::run_command(cmd, &out, &err), 1);
  EXPECT_NE(err.find("stopping without applying the update"), std::string::npos) << err;
  EXPECT_NE(err.find(d + "/checkpoint"), std::string::npos) << err;
  const std::string state = test::read_file(d + "/checkpoint/trainer_state.json");
  EXPECT_NE(state.find("\"step\""), std::string::npos);
  EXPECT_TRUE(fs::exists(d + "/checkpoint/model/model.safetensors"));
}

TEST(TrainCli, BadInputGivesClearErrors) {
  const Cli* c = cli();
  if (!c) GTEST_SKIP() << "stories260K or tinystories_valid.txt not in ../shared/assets";
  std::string out, err;
  const std::string base = test::zebra_binary() + " distill --teacher " + c->bin + " --tokenizer " + c->tok;
  // A sequence longer than the model allows.
  EXPECT_NE(test::run_command(base + " --stage ild --student " + c->mamba + " --data " + c->text +
                                  " --seq-len 4096 -o " + c->dir + "/bad1", &out, &err), 0);
  EXPECT_NE(err.find("exceeds the context"), std::string::npos) << err;
  // Empty data.
  test::write_file(c->dir + "/empty.txt", "");
  EXPECT_NE(test::run_command(base + " --stage ild --student " + c->mamba + " --data " + c->dir + "/empty.txt -o " +
                                  c->dir + "/bad2", &out, &err), 0);
  EXPECT_NE(err.find("no tokens"), std::string::npos) << err;
  // A student of another shape (the 4-layer tiny hybrid against the 5-layer teacher).
  EXPECT_NE(test::run_command(base + " --stage ild --student " + test::fixture("tiny_hybrid/model") + " --data " +
                                  c->text + " -o " + c->dir + "/bad3", &out, &err), 0);
  EXPECT_NE(err.find("has 4 layers but the teacher"), std::string::npos) << err;
  // Unknown stage.
  EXPECT_NE(test::run_command(base + " --stage sft --student " + c->mamba + " --data " + c->text + " -o " + c->dir +
                                  "/bad4", &out, &err), 0);
  EXPECT_NE(err.find("--stage must be ild or kd"), std::string::npos) << err;
}

TEST(TrainCli, MismatchedTokenizersAreRefused) {
  const Cli* c = cli();
  if (!c) GTEST_SKIP() << "stories260K or tinystories_valid.txt not in ../shared/assets";
  ZEBRA_REQUIRE_SMOLLM(smollm);
  std::string out, err;
  EXPECT_NE(test::run_command(test::zebra_binary() + " distill --stage kd --teacher " + smollm + " --student " +
                                  c->mamba + " --data " + c->text + " -o " + c->dir + "/bad5", &out, &err), 0);
  EXPECT_TRUE(err.find("different tokenizers") != std::string::npos || err.find("vocabulary") != std::string::npos)
      << err;
}

TEST(TrainCli, DpoSmokeRunRaisesThePreferenceMargin) {
  const Cli* c = cli();
  if (!c) GTEST_SKIP() << "stories260K or tinystories_valid.txt not in ../shared/assets";
  const std::string prefs = c->dir + "/prefs.jsonl";
  test::write_file(prefs,
                   "{\"prompt\": \"Once upon a time\", \"chosen\": \" there was a little girl.\", \"rejected\": \" the "
                   "the the the.\"}\n"
                   "{\"prompt\": \"The cat\", \"chosen\": \" sat on the mat.\", \"rejected\": \" mat mat mat.\"}\n"
                   "{\"prompt\": \"Lily saw a\", \"chosen\": \" big red ball.\", \"rejected\": \" ball ball big.\"}\n");
  const std::string d = c->dir + "/dpo";
  std::string out, err;
  ASSERT_EQ(test::run_command(test::zebra_binary() + " dpo -m " + c->mamba + " --data " + prefs +
                                  " --beta 0.1 --lr 3e-3 --steps 6 -b 3 --eval-every 1 --warmup-ratio 0 -t 1 -o " + d,
                              &out, &err), 0) << err;
  std::istringstream in(test::read_file(d + "/train_log.jsonl"));
  std::string line;
  std::vector<double> margins;
  while (std::getline(in, line)) {
    auto p = line.find("\"eval_margin\":");
    ASSERT_NE(p, std::string::npos) << line;
    margins.push_back(std::stod(line.substr(p + 14)));
  }
  ASSERT_EQ(margins.size(), 6u);
  EXPECT_GT(margins.back(), margins.front() + 0.05);
}
