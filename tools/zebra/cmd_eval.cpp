// zebra eval: zero- or few-shot (--num-fewshot) accuracy on lm-eval-harness-style tasks (multiple choice,
// WinoGrande partial scoring, LAMBADA), as a markdown table on stdout and JSON in lm-eval's results layout.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "common.h"
#include "core/log.h"
#include "core/progress.h"
#include "eval/fewshot.h"
#include "eval/tasks.h"
#include "io/atomic_write.h"

namespace zebra::cli {

namespace fs = std::filesystem;

struct EvalCliOptions {
  ModelOptions model;
  std::string tasks;                    // "arc_easy,piqa" or "all"
  std::vector<std::string> task_files;  // NAME=FILE.jsonl
  std::string data_dir;
  int64_t limit = 0;
  int64_t batch = 8;
  std::string on_bad_line = "stop";
  bool naive = false;
  std::string output;
  FewshotOptions fewshot;
  std::string fewshot_file, fewshot_split;
};

// ../shared/assets/benchmarks from the current directory, else from the repository the binary was built
// in (build/zebra -> build/.. is the repository root).
static std::string default_data_dir() {
  const fs::path rel = fs::path("..") / "shared" / "assets" / "benchmarks";
  std::error_code ec;
  if (fs::is_directory(rel, ec)) return rel.string();
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path(); dir = dir.parent_path())
    if (fs::is_directory(dir / rel, ec)) return (dir / rel).string();
  return "";
}

struct TaskSpec {
  std::string name, path;
};

static std::vector<TaskSpec> resolve_tasks(const EvalCliOptions& o) {
  std::vector<TaskSpec> specs;
  std::vector<std::string> names;
  if (o.tasks == "all") {
    names = known_task_names();
  } else if (!o.tasks.empty()) {
    for (size_t start = 0; start <= o.tasks.size();) {
      size_t comma = o.tasks.find(',', start);
      if (comma == std::string::npos) comma = o.tasks.size();
      std::string name = o.tasks.substr(start, comma - start);
      ZEBRA_CHECK(!name.empty(), "--tasks: empty task name in '", o.tasks, "' (expected a list like arc_easy,piqa)");
      names.push_back(name);
      start = comma + 1;
    }
  }
  if (!names.empty()) {
    std::string known;
    for (const std::string& k : known_task_names()) known += (known.empty() ? "" : ", ") + k;
    for (const std::string& name : names) {
      bool ok = false;
      for (const std::string& k : known_task_names()) ok = ok || k == name;
      ZEBRA_CHECK(ok, "unknown task '", name, "'; known tasks: ", known, " (or all; for another file use --task ",
                  name, "=FILE.jsonl)");
    }
    std::string dir = o.data_dir.empty() ? default_data_dir() : o.data_dir;
    ZEBRA_CHECK(!dir.empty(), "no benchmark directory: ../shared/assets/benchmarks was not found from the current "
                "directory nor the binary's repository; pass --data-dir DIR");
    for (const std::string& name : names) specs.push_back({name, (fs::path(dir) / (name + ".jsonl")).string()});
  }
  for (const std::string& t : o.task_files) {
    size_t eq = t.find('=');
    ZEBRA_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < t.size(), "--task '", t,
                "': expected NAME=FILE.jsonl");
    specs.push_back({t.substr(0, eq), t.substr(eq + 1)});
  }
  ZEBRA_CHECK(!specs.empty(), "nothing to evaluate: give --tasks arc_easy,... (or all) and/or --task NAME=FILE.jsonl");
  return specs;
}

// The pool few-shot examples come from for one task: --fewshot-file, the task's --fewshot-split file beside
// it (<task>_<split>.jsonl), or none (the task's own items).
static std::optional<Task> fewshot_pool(const EvalCliOptions& o, const TaskSpec& spec, BadLinePolicy policy) {
  if (!o.fewshot_file.empty()) return load_task_file(spec.name + " (few-shot)", o.fewshot_file, policy);
  if (o.fewshot_split.empty()) return std::nullopt;
  const fs::path dir = fs::path(spec.path).parent_path();
  const fs::path file = dir / (spec.name + "_" + o.fewshot_split + ".jsonl");
  if (!fs::exists(file)) {
    std::string have;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir.empty() ? fs::path(".") : dir, ec)) {
      const std::string f = e.path().filename().string();
      if (f.rfind(spec.name + "_", 0) == 0 && e.path().extension() == ".jsonl") have += (have.empty() ? "" : ", ") + f;
    }
    fail("--fewshot-split ", o.fewshot_split, ": task '", spec.name, "' has no file ", file.string(),
         have.empty() ? std::string(" (no other split of it is there; leave the flag out to draw from the task's own "
                                    "items, or give --fewshot-file)")
                      : " (there: " + have + ")");
  }
  return load_task_file(spec.name + " (" + o.fewshot_split + ")", file.string(), policy);
}

static std::string fmt(double v, const char* f = "%.4f") {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

static void print_table(const std::vector<TaskResult>& results, double avg_acc, double avg_norm, bool any_norm) {
  std::printf("| task | n | acc | ± | acc_norm | ± | perplexity |\n|---|---:|---:|---:|---:|---:|---:|\n");
  for (const TaskResult& r : results) {
    std::printf("| %s | %lld | %s | %s | %s | %s | %s |\n", r.name.c_str(), (long long)r.items.size(),
                fmt(r.acc).c_str(), fmt(r.acc_stderr).c_str(), r.has_acc_norm ? fmt(r.acc_norm).c_str() : "",
                r.has_acc_norm ? fmt(r.acc_norm_stderr).c_str() : "",
                r.has_perplexity ? fmt(r.perplexity, "%.3f").c_str() : "");
  }
  std::printf("| average | | %s | | %s | | |\n", fmt(avg_acc).c_str(), any_norm ? fmt(avg_norm).c_str() : "");
}

static void run_eval(const EvalCliOptions& o) {
  ZEBRA_CHECK(o.on_bad_line == "stop" || o.on_bad_line == "skip", "--on-bad-line must be skip or stop, got '",
              o.on_bad_line, "'");
  ZEBRA_CHECK(o.batch >= 1, "--batch must be at least 1, got ", o.batch);
  ZEBRA_CHECK(o.limit >= 0, "--limit must be >= 0, got ", o.limit);
  const BadLinePolicy policy = o.on_bad_line == "skip" ? BadLinePolicy::Skip : BadLinePolicy::Stop;

  // Read every task before loading the model, so a bad file fails fast.
  ZEBRA_CHECK(o.fewshot.k >= 0, "--num-fewshot must be >= 0, got ", o.fewshot.k);
  ZEBRA_CHECK(o.fewshot_file.empty() || o.fewshot_split.empty(), "give --fewshot-file or --fewshot-split, not both");
  ZEBRA_CHECK(o.fewshot.k > 0 || (o.fewshot_file.empty() && o.fewshot_split.empty() && !o.fewshot.shared),
              "--fewshot-file, --fewshot-split and --fewshot-shared need --num-fewshot K > 0");
  std::vector<Task> tasks;
  for (const TaskSpec& s : resolve_tasks(o)) {
    Task t = load_task_file(s.name, s.path, policy);
    if (o.fewshot.k > 0) {
      std::optional<Task> pool = fewshot_pool(o, s, policy);
      t = with_fewshot(t, pool ? &*pool : nullptr, o.fewshot);
    }
    tasks.push_back(std::move(t));
  }
  LoadedModel lm = open_model(o.model);

  EvalOptions eo;
  eo.limit = o.limit;
  eo.scoring.batch_items = o.batch;
  eo.scoring.naive = o.naive;
  eo.on_bad_item = policy;
  std::vector<TaskResult> results;
  double seconds = 0;
  int64_t items = 0;
  for (const Task& t : tasks) {
    Progress bar(t.name, o.limit > 0 ? std::min<int64_t>(o.limit, t.items.size()) : t.items.size(), "items");
    results.push_back(evaluate_task(*lm.model, *lm.tokenizer, t, eo, [&](int64_t done, int64_t) { bar.update(done); }));
    bar.finish();
    seconds += results.back().seconds;
    items += static_cast<int64_t>(results.back().items.size());
  }

  double sum_acc = 0, sum_norm = 0;
  int64_t n_norm = 0;
  for (const TaskResult& r : results) {
    sum_acc += r.acc;
    if (r.has_acc_norm) sum_norm += r.acc_norm, n_norm += 1;
  }
  const double avg_acc = sum_acc / results.size(), avg_norm = n_norm ? sum_norm / n_norm : NAN;
  log_info("scored ", items, " items in ", seconds, " s (", items / seconds, " items/s, ",
           o.naive ? "naive: a full forward per choice" : "shared context cached", ")");

  nlohmann::ordered_json j, res = nlohmann::ordered_json::object(), samples = nlohmann::ordered_json::object();
  for (const TaskResult& r : results) {
    nlohmann::ordered_json t;
    t["alias"] = r.name;
    t["acc,none"] = r.acc;
    t["acc_stderr,none"] = r.acc_stderr;  // NaN (one item) dumps as null
    if (r.has_acc_norm) {
      t["acc_norm,none"] = r.acc_norm;
      t["acc_norm_stderr,none"] = r.acc_norm_stderr;
    }
    if (r.has_perplexity) t["perplexity,none"] = r.perplexity;
    res[r.name] = t;
    samples[r.name] = {{"original", r.n_original}, {"effective", static_cast<int64_t>(r.items.size())}};
  }
  j["results"] = res;
  j["n-samples"] = samples;
  nlohmann::ordered_json shots = nlohmann::ordered_json::object();
  for (const TaskResult& r : results) shots[r.name] = o.fewshot.k;
  j["n-shot"] = shots;
  j["average"]["acc,none"] = avg_acc;
  if (n_norm) j["average"]["acc_norm,none"] = avg_norm;
  j["config"] = {{"model", o.model.model},
                 {"limit", o.limit > 0 ? nlohmann::ordered_json(o.limit) : nlohmann::ordered_json(nullptr)},
                 {"batch_size", o.batch},
                 {"naive", o.naive},
                 {"num_fewshot", o.fewshot.k},
                 {"fewshot_seed", o.fewshot.seed},
                 {"fewshot_shared", o.fewshot.shared},
                 {"fewshot_source", !o.fewshot_file.empty()    ? o.fewshot_file
                                    : !o.fewshot_split.empty() ? "split " + o.fewshot_split
                                                               : std::string("the task's own items")},
                 {"items_per_second", items / seconds},
                 {"seconds", seconds}};
  const std::string text = j.dump(2) + "\n";
  if (!o.output.empty()) {
    write_file_atomic(o.output, text);
    log_info("wrote ", o.output);
  }
  if (o.model.json) std::fputs(text.c_str(), stdout);
  else print_table(results, avg_acc, avg_norm, n_norm > 0);
}

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "zero- or few-shot accuracy on lm-eval-harness-style tasks");
  auto o = std::make_shared<EvalCliOptions>();
  add_model_options(cmd, o->model, true);
  cmd->add_option("--tasks", o->tasks, "comma-separated known tasks (arc_easy,arc_challenge,piqa,...) or all");
  cmd->add_option("--task", o->task_files, "another task file: NAME=FILE.jsonl (repeatable)");
  cmd->add_option("--data-dir", o->data_dir, "directory of <task>.jsonl (default: ../shared/assets/benchmarks)");
  cmd->add_option("--limit", o->limit, "score only the first N items of each task (0 = all)");
  cmd->add_option("--batch", o->batch, "items scored together")->capture_default_str();
  cmd->add_option("--on-bad-line", o->on_bad_line, "malformed items: stop (default) or skip with a warning");
  cmd->add_flag("--naive", o->naive, "score every choice with a full forward (no shared-context cache)");
  cmd->add_option("--output", o->output, "also write the JSON results to this file");
  cmd->add_option("--num-fewshot", o->fewshot.k, "labelled examples before each item (lm-eval's layout)")
      ->capture_default_str();
  cmd->add_option("--fewshot-file", o->fewshot_file, "draw the examples from this task file (default: the task's own items)");
  cmd->add_option("--fewshot-split", o->fewshot_split,
                  "draw the examples from the task's SPLIT file beside it: <task>_<SPLIT>.jsonl");
  cmd->add_option("--fewshot-seed", o->fewshot.seed, "seed of the example draws")->capture_default_str();
  cmd->add_flag("--fewshot-shared", o->fewshot.shared,
                "one draw for the whole task: every item gets the same examples (a prefix computed once)");
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace zebra::cli
