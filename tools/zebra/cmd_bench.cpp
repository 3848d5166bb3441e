// zebra bench: llama-bench-style throughput table (prefill pp, decode tg), with the memory roofline.
#include <cstdio>

#include "common.h"
#include "core/log.h"
#include "eval/bench.h"
#include "kernels/cpu/ops.h"

namespace zebra::cli {

struct BenchOptions {
  ModelOptions model;
  std::string prompts = "512", gens = "128", depths = "0";
  int reps = 5;
  bool roofline = true;
};

static void run_bench(const BenchOptions& o) {
  LoadedModel lm = open_model(o.model, false);
  const Model& m = *lm.model;
  ZEBRA_CHECK(o.reps >= 1, "-r must be at least 1");
  std::vector<BenchSample> samples;
  for (int64_t d : parse_int_list(o.depths, "-d", "0,512")) {
    for (int64_t p : parse_int_list(o.prompts, "-p", "128,512"))
      if (p > 0) samples.push_back(bench_prefill(m, p, d, o.reps));
    for (int64_t g : parse_int_list(o.gens, "-n", "128"))
      if (g > 0) samples.push_back(bench_decode(m, g, d, o.reps));
  }
  const double size_mib = m.parameter_count() * 4.0 / (1 << 20);
  const int threads = cpu::num_threads();
  double bw = o.roofline ? measure_read_bandwidth() : 0.0;
  if (o.model.json) {
    std::printf("{\"model\": \"%s\", \"params\": %lld, \"size_mib\": %.1f, \"threads\": %d, "
                "\"read_bandwidth_gbs\": %.2f, \"results\": [",
                json_escape(o.model.model).c_str(), (long long)m.parameter_count(), size_mib, threads, bw / 1e9);
    for (size_t i = 0; i < samples.size(); ++i) {
      const BenchSample& s = samples[i];
      int64_t bytes = decode_bytes_per_token(m, s.depth + s.n_gen / 2);
      std::printf("%s{\"test\": \"%s\", \"n_prompt\": %lld, \"n_gen\": %lld, \"depth\": %lld, \"avg_ts\": %.3f, "
                  "\"stddev_ts\": %.3f, \"bytes_per_token\": %lld, \"roofline_ts\": %.3f, \"cache_mib\": %.4f}",
                  i ? ", " : "", s.test.c_str(), (long long)s.n_prompt, (long long)s.n_gen, (long long)s.depth,
                  s.mean(), s.stddev(), (long long)(s.n_gen ? bytes : 0), s.n_gen && bw > 0 ? bw / bytes : 0.0,
                  cache_mib(m, s.depth + s.n_prompt + s.n_gen));
    }
    std::printf("], \"peak_rss_mib\": %.1f}\n", peak_rss_mib());
    return;
  }
  std::printf("| model | size | params | backend | threads | test | t/s | roofline t/s | cache MiB |\n");
  std::printf("| ----- | ---: | -----: | ------- | ------: | ---: | --: | -----------: | --------: |\n");
  for (const BenchSample& s : samples) {
    std::string roof = "-";
    if (s.n_gen && bw > 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", bw / decode_bytes_per_token(m, s.depth + s.n_gen / 2));
      roof = buf;
    }
    std::printf("| %s | %.1f MiB | %.2f M | CPU f32 | %d | %s | %.2f ± %.2f | %s | %.3f |\n", o.model.model.c_str(),
                size_mib, m.parameter_count() / 1e6, threads, s.test.c_str(), s.mean(), s.stddev(), roof.c_str(),
                cache_mib(m, s.depth + s.n_prompt + s.n_gen));
  }
  std::printf("\npeak RSS: %.1f MiB\n", peak_rss_mib());
  if (bw > 0) std::printf("\nmeasured read bandwidth: %.2f GB/s (roofline = bandwidth / bytes read per token)\n", bw / 1e9);
}

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "prefill/decode throughput (llama-bench style)");
  auto o = std::make_shared<BenchOptions>();
  add_model_options(cmd, o->model, true);
  cmd->add_option("-p,--n-prompt", o->prompts, "prompt lengths, comma separated")->capture_default_str();
  cmd->add_option("-n,--n-gen", o->gens, "generation lengths, comma separated")->capture_default_str();
  cmd->add_option("-d,--depth", o->depths, "context depths, comma separated")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "repetitions per test")->capture_default_str();
  cmd->add_flag("!--no-roofline", o->roofline, "skip the memory-bandwidth measurement");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace zebra::cli
