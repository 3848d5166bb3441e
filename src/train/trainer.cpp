#include "train/trainer.h"

#include <cblas.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/log.h"
#include "model/parameters.h"
#include "model/save_hybrid.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace zebra {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double measure_gemm_gflops() {
  const int n = 512;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  };
  run();  // warm-up
  const int reps = 20;
  const auto t0 = Clock::now();
  for (int r = 0; r < reps; ++r) run();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 2.0 * n * n * n * reps / s / 1e9;
}

namespace {

// The per-step log: CSV (header step,loss,lr,grad_norm,tokens_per_s,mfu,eval_loss[,extra...]) and JSONL.
class TrainLog {
 public:
  TrainLog(const std::string& dir, bool resume, int64_t keep_steps) : csv_path_(dir + "/train_log.csv"),
                                                                     jsonl_path_(dir + "/train_log.jsonl") {
    // On resume, keep exactly the lines of the steps the checkpoint holds: the curve continues seamlessly.
    if (resume) {
      truncate_to(csv_path_, keep_steps, true);
      truncate_to(jsonl_path_, keep_steps, false);
    } else {
      fs::remove(csv_path_);
      fs::remove(jsonl_path_);
    }
    has_header_ = fs::exists(csv_path_) && fs::file_size(csv_path_) > 0;
  }

  void write(int64_t step, double loss, double lr, double gnorm, double tps, double mfu, const Metrics& eval,
             const Metrics& extra) {
    std::ofstream csv(csv_path_, std::ios::app), jl(jsonl_path_, std::ios::app);
    if (!has_header_) {
      csv << "step,loss,lr,grad_norm,tokens_per_s,mfu,eval_loss";
      for (const auto& [k, v] : extra) csv << "," << k;
      csv << "\n";
      has_header_ = true;
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "%lld,%.6f,%.6e,%.6f,%.1f,%.5f,", (long long)step, loss, lr, gnorm, tps, mfu);
    csv << buf;
    if (!eval.empty()) csv << eval.front().second;
    for (const auto& [k, v] : extra) csv << "," << v;
    csv << "\n";
    nlohmann::json j = {{"step", step}, {"loss", loss}, {"lr", lr}, {"grad_norm", gnorm}, {"tokens_per_s", tps},
                        {"mfu", mfu}};
    for (const auto& [k, v] : extra) j[k] = v;
    for (const auto& [k, v] : eval) j["eval_" + (k == "loss" ? std::string("loss") : k)] = v;
    jl << j.dump() << "\n";
    ZEBRA_CHECK(csv.good() && jl.good(), "training log: cannot write ", csv_path_, " / ", jsonl_path_);
  }

 private:
  static void truncate_to(const std::string& path, int64_t keep_steps, bool csv) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, kept;
    bool first = true;
    while (std::getline(in, line)) {
      if (csv && first) {
        kept += line + "\n";
        first = false;
        continue;
      }
      long long step = -1;
      if (csv) step = std::atoll(line.c_str());
      else if (auto p = line.find("\"step\":"); p != std::string::npos) step = std::atoll(line.c_str() + p + 7);
      if (step >= 1 && step <= keep_steps) kept += line + "\n";
    }
    in.close();
    std::ofstream(path, std::ios::trunc) << kept;
  }
  std::string csv_path_, jsonl_path_;
  bool has_header_ = false;
};

bool finite(double x) { return std::isfinite(x); }

std::string fmt_metrics(const Metrics& m) {
  std::ostringstream s;
  for (const auto& [k, v] : m) s << " " << k << " " << v;
  return s.str();
}

}  // namespace

TrainSummary train(Stage& stage, const TrainOptions& o) {
  ZEBRA_CHECK(stage.model && stage.micro_step, "train: stage '", stage.name, "' is incomplete");
  ZEBRA_CHECK(o.steps >= 1, "--steps must be at least 1, got ", o.steps);
  ZEBRA_CHECK(o.batch >= 1, "--batch must be at least 1, got ", o.batch);
  ZEBRA_CHECK(o.grad_accum >= 1, "--grad-accum must be at least 1, got ", o.grad_accum);
  ZEBRA_CHECK(o.lr > 0 && finite(o.lr), "--lr must be positive, got ", o.lr);
  ZEBRA_CHECK(stage.n_samples >= 1, "train: the training data of stage ", stage.name, " is empty");
  ZEBRA_CHECK(!o.out_dir.empty(), "train: an output directory (-o) is required");
  fs::create_directories(o.out_dir);
  const std::string ckpt_dir = o.out_dir + "/checkpoint";

  Model& model = *stage.model;
  Model grad = zeros_like(model);
  std::vector<ParamRef> params;
  {
    auto w = named_parameters(model);
    auto g = named_parameters(grad);
    for (size_t i = 0; i < w.size(); ++i)
      if (!stage.trainable || stage.trainable(w[i].name)) params.push_back(make_param(w[i].name, *w[i].tensor, *g[i].tensor));
  }
  int64_t n_trainable = 0;
  for (const ParamRef& p : params) n_trainable += p.n;
  AdamWOptions ao;
  ao.lr = o.lr, ao.beta1 = o.beta1, ao.beta2 = o.beta2, ao.eps = o.eps, ao.weight_decay = o.weight_decay;
  AdamW opt(params, ao);

  TrainerState state;
  state.stage = stage.name, state.total_steps = o.steps, state.seed = o.seed, state.options = stage.options_json;
  if (o.resume) {
    ZEBRA_CHECK(checkpoint_exists(ckpt_dir), "--resume: no checkpoint in ", ckpt_dir,
                " (a run writes one every --save-every steps)");
    const TrainerState saved = load_checkpoint(ckpt_dir, model, opt);
    ZEBRA_CHECK(saved.stage == stage.name, "--resume: ", ckpt_dir, " is a checkpoint of stage '", saved.stage,
                "', not '", stage.name, "'");
    ZEBRA_CHECK(saved.options == nlohmann::json::parse(stage.options_json).dump(), "--resume: the options differ from "
                "the checkpointed run's.\n  checkpoint: ", saved.options, "\n  now:        ",
                nlohmann::json::parse(stage.options_json).dump());
    state.step = saved.step, state.samples_seen = saved.samples_seen;
    log_info("resuming ", stage.name, " from step ", state.step, " of ", o.steps, " (", ckpt_dir, ")");
  }
  TrainLog log(o.out_dir, o.resume, state.step);

  const int64_t warmup = warmup_steps(o.warmup_ratio, o.steps);
  const double peak_gflops = measure_gemm_gflops();
  log_info(stage.name, ": ", n_trainable, " trainable parameters in ", params.size(), " tensors; ", o.steps,
           " steps of ", o.grad_accum, " x ", o.batch, " samples; peak lr ", o.lr, ", warmup ", warmup,
           " steps; measured GEMM peak ", peak_gflops, " GFLOP/s");

  TrainSummary summary;
  Metrics last_eval;
  const auto run_start = Clock::now();
  const int64_t first_step = state.step;
  while (state.step < o.steps) {
    const auto t0 = Clock::now();
    zero_grad(params);
    double loss = 0;
    int64_t tokens = 0;
    Metrics extra;
    const double scale = 1.0 / static_cast<double>(o.grad_accum);
    for (int64_t a = 0; a < o.grad_accum; ++a) {
      std::vector<int64_t> samples(o.batch);
      for (int64_t i = 0; i < o.batch; ++i) samples[i] = (state.samples_seen + i) % stage.n_samples;
      state.samples_seen += o.batch;
      MicroResult r = stage.micro_step(samples, grad, scale);
      loss += r.loss * scale;
      tokens += r.tokens;
      if (extra.empty()) extra.assign(r.extra.size(), {});
      for (size_t k = 0; k < r.extra.size(); ++k) extra[k] = {r.extra[k].first, extra[k].second + r.extra[k].second * scale};
    }
    const double gnorm = clip_grad_norm(params, o.clip > 0 ? o.clip : 1e300);
    const int64_t step = state.step + 1;
    if (!finite(loss) || !finite(gnorm)) {
      fail("step ", step, ": the ", !finite(loss) ? "loss" : "gradient norm", " is ", !finite(loss) ? loss : gnorm,
           "; stopping without applying the update. The last good checkpoint is ",
           checkpoint_exists(ckpt_dir) ? ckpt_dir : std::string("(none yet)"),
           " (resume from it with a lower --lr, or check the data)");
    }
    const double lr = cosine_lr(state.step, o.steps, warmup, o.lr, o.min_lr);
    opt.step(lr);
    state.step = step;

    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tps = tokens / secs;
    const double gflops = stage.flops_per_token * tps / 1e9;
    const double mfu = peak_gflops > 0 ? gflops / peak_gflops : 0;
    Metrics eval;
    if ((o.eval_every > 0 && step % o.eval_every == 0) || step == o.steps)
      if (stage.evaluate) eval = last_eval = stage.evaluate();
    log.write(step, loss, lr, gnorm, tps, mfu, eval, extra);
    const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
    const double eta = elapsed / (step - first_step) * (o.steps - step);
    log_info(stage.name, " step ", step, "/", o.steps, " | loss ", loss, " | lr ", lr, " | grad norm ", gnorm, " | ",
             static_cast<int64_t>(tps), " tok/s | ", gflops, " GFLOP/s (MFU ", 100 * mfu, "%)", fmt_metrics(extra),
             eval.empty() ? "" : " | eval" + fmt_metrics(eval), " | eta ", static_cast<int64_t>(eta), " s");
    summary.last_loss = loss, summary.tokens_per_second = tps, summary.gflops = gflops, summary.mfu = mfu;

    if ((o.save_every > 0 && step % o.save_every == 0) || step == o.steps) {
      save_checkpoint(ckpt_dir, model, stage.tokenizer, opt, state);
      log_info("checkpoint: ", ckpt_dir, " (step ", step, ")");
    }
    if (step == o.halt_after_step) {
      log_info("halting after step ", step, " (--halt-after-step)");
      std::fflush(nullptr);
      std::_Exit(3);  // like a kill: nothing after the last checkpoint is saved
    }
  }
  save_hybrid(model, stage.tokenizer, o.out_dir + "/model", DType::F32);
  log_info(stage.name, ": done; model written to ", o.out_dir, "/model");
  summary.steps = state.step;
  summary.last_eval = last_eval;
  return summary;
}

}  // namespace zebra
