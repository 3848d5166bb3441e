// zebra bench: llama-bench-style throughput table (prefill pp, decode tg) swept over batch size, prompt
// and generation length and context depth, with the memory roofline; --compare A B puts a teacher and
// its hybrid side by side.
#include <cstdio>
#include <filesystem>
#include <optional>

#include "common.h"
#include "core/log.h"
#include "eval/bench.h"
#include "eval/bench_report.h"
#include "io/atomic_write.h"
#include "kernels/cpu/ops.h"

namespace zebra::cli {

struct BenchOptions {
  ModelOptions model;
  std::vector<std::string> compare;  // --compare A B
  std::string batches = "1", prompts = "512", gens = "128", depths = "0";
  int reps = 5;
  bool roofline = true;
  std::string json_path, csv_path;
};

// parse_int_list accepts a trailing comma and an empty text; a sweep must name every value.
static std::vector<int64_t> parse_sweep(const std::string& text, const std::string& flag, const std::string& example) {
  ZEBRA_CHECK(!text.empty() && text.back() != ',' && text.front() != ',', flag, ": '", text,
              "' is not a comma-separated list like ", example);
  return parse_int_list(text, flag, example);
}

static BenchSweep parse_sweep_options(const BenchOptions& o) {
  BenchSweep s;
  s.batches = parse_sweep(o.batches, "-b/--batch", "1,4,16");
  s.prompts = parse_sweep(o.prompts, "-p/--n-prompt", "128,512");
  s.gens = parse_sweep(o.gens, "-n/--n-gen", "128");
  s.depths = parse_sweep(o.depths, "-d/--depth", "0,1024");
  s.reps = o.reps;
  validate_sweep(s);
  return s;
}

// Loads, measures and releases one model, so that two models never share the process's memory.
static BenchModelRun bench_model(const BenchOptions& o, const std::string& path, std::optional<BenchSweep>& sweep,
                                 double bandwidth) {
  ModelOptions mo = o.model;
  mo.model = path;
  LoadedModel lm = open_model(mo, false);
  // Parsed after the first load, so that a model that cannot load is the error reported (it names the file).
  if (!sweep) sweep = parse_sweep_options(o);
  return describe_run(*lm.model, path, run_sweep(*lm.model, *sweep), bandwidth);
}

static void run_bench(const BenchOptions& o) {
  std::vector<std::string> paths;
  if (!o.compare.empty()) {
    ZEBRA_CHECK(o.model.model.empty(), "bench: give either -m MODEL or --compare A B, not both");
    paths = o.compare;
  } else {
    ZEBRA_CHECK(!o.model.model.empty(), "bench: give -m MODEL, or --compare TEACHER HYBRID");
    paths = {o.model.model};
  }
  // Fail before minutes of measuring A when B is missing.
  for (const std::string& p : paths) ZEBRA_CHECK(std::filesystem::exists(p), "model path ", p, " does not exist");

  BenchReport report;
  cpu::set_num_threads(o.model.threads);
  report.threads = cpu::num_threads();
  // Before any model is loaded: the 1 GiB buffer must not count in the tests' peak RSS.
  if (o.roofline) report.read_bandwidth = measure_read_bandwidth();
  std::optional<BenchSweep> sweep;
  for (const std::string& p : paths) report.models.push_back(bench_model(o, p, sweep, report.read_bandwidth));

  const std::string json = bench_json(report).dump(2) + "\n";
  if (!o.json_path.empty()) write_file_atomic(o.json_path, json);
  if (!o.csv_path.empty()) write_file_atomic(o.csv_path, bench_csv(report));
  std::fputs(o.model.json ? json.c_str() : bench_markdown(report).c_str(), stdout);
}

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "prefill/decode throughput and cache memory (llama-bench style)");
  auto o = std::make_shared<BenchOptions>();
  add_model_options(cmd, o->model, true);
  cmd->get_option("--model")->required(false);  // --compare names the models instead
  cmd->add_option("--compare", o->compare, "benchmark teacher A and hybrid B with the same sweep; ratio B/A")
      ->expected(2)
      ->type_name("A B");
  cmd->add_option("-b,--batch", o->batches, "batch sizes (sequences decoded together), comma separated")
      ->capture_default_str();
  cmd->add_option("-p,--n-prompt", o->prompts, "prompt lengths, comma separated (0 = no prefill test)")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", o->gens, "generation lengths, comma separated (0 = no decode test)")
      ->capture_default_str();
  cmd->add_option("-d,--depth", o->depths, "context depths, comma separated")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "repetitions per test")->capture_default_str();
  cmd->add_flag("!--no-roofline", o->roofline, "skip the memory-bandwidth measurement");
  cmd->add_option("-o,--output", o->json_path, "also write the JSON results to this file");
  cmd->add_option("--csv", o->csv_path, "also write the results as CSV to this file");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace zebra::cli
