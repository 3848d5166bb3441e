// zebra bench end to end on stories260K and its composed hybrid: sweeps give one row per (batch, test)
// in table, CSV and JSON; cache sizes match the spec's closed form; --compare pairs the rows; plot.py
// turns the JSON into charts. Tiny sweeps and -r 1: no timing is asserted, only that t/s is positive.
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/log.h"
#include "model/loader.h"
#include "support.h"

using namespace zebra;
using test::CliRun;
using test::zebra_cli;
using nlohmann::json;

namespace {

std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::stringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::stringstream cs(line);
    std::string cell;
    while (std::getline(cs, cell, ',')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

size_t column(const std::vector<std::string>& header, const std::string& name) {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  ADD_FAILURE() << "no CSV column " << name;
  return 0;
}

// stories260K (teacher, 5 layers) and a hybrid composed from it with 2 MLA + 3 Mamba2 layers, made once.
class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string dir = test::shared_asset("models/stories260K");
    if (dir.empty()) return;
    teacher_ = new std::string(dir + "/stories260K.bin");
    hybrid_ = new std::string(test::temp_dir() + "/stories-2mla");
    std::string out, err;
    int status = test::run_command(test::zebra_binary() + " compose --teacher " + *teacher_ + " --tokenizer " + dir +
                                       "/tok512.bin --mla-count 2 --dtype f32 -o " + *hybrid_,
                                   &out, &err);
    if (status != 0) ADD_FAILURE() << "compose failed: " << err;
  }
  static void TearDownTestSuite() {
    delete teacher_, delete hybrid_;
    teacher_ = hybrid_ = nullptr;
  }
  void SetUp() override {
    if (!teacher_) GTEST_SKIP() << "skipped: ../shared/assets/models/stories260K not found";
  }
  static std::string* teacher_;
  static std::string* hybrid_;
};
std::string* BenchCli::teacher_ = nullptr;
std::string* BenchCli::hybrid_ = nullptr;

TEST_F(BenchCli, SweepGivesOneRowPerBatchAndTestInTableCsvAndJson) {
  const std::string tmp = test::temp_dir();
  CliRun r = zebra_cli("bench -m " + *teacher_ + " -b 1,3 -p 8 -n 4 -d 0,16 -r 1 -t 1 -o " + tmp + "/b.json --csv " +
                       tmp + "/b.csv");
  ASSERT_EQ(r.status, 0) << r.err;
  // 2 batches x 2 depths x (pp8, tg4) = 8 rows, each (batch, test) once.
  const std::set<std::pair<int64_t, std::string>> want = {
      {1, "pp8"}, {1, "tg4"}, {3, "pp8"}, {3, "tg4"}, {1, "pp8 @ d16"}, {1, "tg4 @ d16"}, {3, "pp8 @ d16"}, {3, "tg4 @ d16"}};

  json j = json::parse(test::read_file(tmp + "/b.json"));
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_FALSE(j.contains("compare"));
  EXPECT_EQ(j["threads"].get<int>(), 1);
  EXPECT_GT(j["read_bandwidth_gbs"].get<double>(), 0);
  std::set<std::pair<int64_t, std::string>> seen;
  for (const json& e : j["models"][0]["results"]) {
    EXPECT_TRUE(seen.insert({e["batch"].get<int64_t>(), e["test"].get<std::string>()}).second) << e.dump();
    EXPECT_GT(e["avg_ts"].get<double>(), 0) << e.dump();
    EXPECT_EQ(e["samples_ts"].size(), 1u);
    EXPECT_GT(e["peak_rss_mib"].get<double>(), 0);
    const bool decode = e["n_gen"].get<int64_t>() > 0;
    EXPECT_EQ(e["roofline_ts"].get<double>() > 0, decode) << e.dump();  // prefill has no memory roofline
    EXPECT_EQ(e["bytes_per_step"].get<int64_t>() > 0, decode) << e.dump();
  }
  EXPECT_EQ(seen, want);

  auto csv = parse_csv(test::read_file(tmp + "/b.csv"));
  ASSERT_EQ(csv.size(), 1 + want.size());
  const auto& header = csv[0];
  std::set<std::pair<int64_t, std::string>> csv_seen;
  for (size_t i = 1; i < csv.size(); ++i) {
    ASSERT_EQ(csv[i].size(), header.size()) << i;
    csv_seen.insert({std::stoll(csv[i][column(header, "batch")]), csv[i][column(header, "test")]});
    EXPECT_GT(std::stod(csv[i][column(header, "avg_ts")]), 0);
  }
  EXPECT_EQ(csv_seen, want);

  // The markdown table on stdout: header, separator, one line per row.
  size_t table_lines = 0;
  std::stringstream ls(r.out);
  for (std::string line; std::getline(ls, line);) table_lines += line.rfind("| ", 0) == 0;
  EXPECT_EQ(table_lines, 2 + want.size()) << r.out;
  EXPECT_NE(r.out.find("| " + *teacher_ + " | "), std::string::npos) << r.out;

  // --json prints the same layout on stdout instead of the table.
  r = zebra_cli("bench -m " + *teacher_ + " -b 2 -p 0 -n 2 -r 1 --no-roofline --json");
  ASSERT_EQ(r.status, 0) << r.err;
  json k = json::parse(r.out);
  ASSERT_EQ(k["models"][0]["results"].size(), 1u);
  EXPECT_EQ(k["models"][0]["results"][0]["test"], "tg2");
  EXPECT_EQ(k["models"][0]["results"][0]["roofline_ts"].get<double>(), 0);  // not measured
}

TEST_F(BenchCli, HybridCacheMatchesTheClosedFormAndGrowsSlowerThanTheTeachers) {
  const std::string tmp = test::temp_dir();
  CliRun r = zebra_cli("bench --compare " + *teacher_ + " " + *hybrid_ +
                       " -b 1,3 -p 4 -n 2 -d 0,32,64 -r 1 --no-roofline -o " + tmp + "/c.json");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(test::read_file(tmp + "/c.json"));
  ASSERT_EQ(j["compare"].size(), 2u * 3u * 2u);

  // The closed forms, from the configs (spec §1.6), not from zebra's own byte counts.
  set_log_level(LogLevel::Quiet);
  LoadedModel t = load_model(*teacher_, {});
  LoadedModel h = load_model(*hybrid_, {});
  const LlamaConfig& c = t.model->config;
  const HybridConfig& hc = h.model->hybrid;
  const int64_t n_mla = static_cast<int64_t>(hc.mla_layers.size()), n_m2 = c.num_layers - n_mla;
  ASSERT_EQ(n_mla, 2);
  const int64_t teacher_per_token = c.num_layers * 2 * c.num_kv_heads * c.head_dim * 4;
  const int64_t hybrid_per_token = n_mla * (hc.kv_lora_rank + hc.qk_rope_head_dim) * 4;
  const int64_t hybrid_state = n_m2 * (c.num_heads * c.head_dim * c.head_dim + 4 * (hc.d_inner + 2 * hc.d_xb)) * 4;
  EXPECT_EQ(t.model->kv_bytes_per_token(), teacher_per_token);
  EXPECT_EQ(h.model->kv_bytes_per_token(), hybrid_per_token);
  EXPECT_EQ(h.model->state_bytes_per_sequence(), hybrid_state);
  EXPECT_EQ(j["models"][0]["kv_bytes_per_token"].get<int64_t>(), teacher_per_token);
  EXPECT_EQ(j["models"][1]["kv_bytes_per_token"].get<int64_t>(), hybrid_per_token);
  EXPECT_EQ(j["models"][1]["state_bytes_per_sequence"].get<int64_t>(), hybrid_state);

  const double mib = 1 << 20;
  std::map<std::pair<int64_t, int64_t>, std::pair<double, double>> tg_cache;  // (batch, depth) -> (a, b)
  for (const json& e : j["compare"]) {
    const int64_t B = e["batch"], T = e["depth"].get<int64_t>() + e["n_prompt"].get<int64_t>() + e["n_gen"].get<int64_t>();
    EXPECT_NEAR(e["a_cache_mib"].get<double>(), B * teacher_per_token * T / mib, 1e-9) << e.dump();
    EXPECT_NEAR(e["b_cache_mib"].get<double>(), B * (hybrid_per_token * T + hybrid_state) / mib, 1e-9) << e.dump();
    if (e["n_gen"].get<int64_t>() > 0) tg_cache[{B, e["depth"]}] = {e["a_cache_mib"], e["b_cache_mib"]};
  }
  for (int64_t B : {1, 3}) {
    // Each step of depth adds less to the hybrid's cache than to the teacher's.
    const double a_growth = tg_cache[{B, 64}].first - tg_cache[{B, 0}].first;
    const double b_growth = tg_cache[{B, 64}].second - tg_cache[{B, 0}].second;
    EXPECT_GT(b_growth, 0);
    EXPECT_LT(b_growth, a_growth);
    EXPECT_NEAR(b_growth / a_growth, double(hybrid_per_token) / teacher_per_token, 1e-9);
  }
}

TEST_F(BenchCli, CompareRatioIsBOverAFromTheSameRows) {
  const std::string tmp = test::temp_dir();
  CliRun r = zebra_cli("bench --compare " + *teacher_ + " " + *hybrid_ + " -b 1,2 -p 8 -n 4 -d 0,8 -r 1 -o " + tmp +
                       "/c.json --csv " + tmp + "/c.csv");
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(test::read_file(tmp + "/c.json"));
  ASSERT_EQ(j["models"].size(), 2u);
  const json &a = j["models"][0]["results"], &b = j["models"][1]["results"], &cmp = j["compare"];
  ASSERT_EQ(cmp.size(), 8u);
  ASSERT_EQ(a.size(), cmp.size());
  ASSERT_EQ(b.size(), cmp.size());
  for (size_t i = 0; i < cmp.size(); ++i) {
    EXPECT_EQ(cmp[i]["test"], a[i]["test"]);
    EXPECT_EQ(cmp[i]["batch"], b[i]["batch"]);
    EXPECT_EQ(cmp[i]["a_ts"].get<double>(), a[i]["avg_ts"].get<double>());
    EXPECT_EQ(cmp[i]["b_ts"].get<double>(), b[i]["avg_ts"].get<double>());
    EXPECT_GT(cmp[i]["a_ts"].get<double>(), 0);
    EXPECT_GT(cmp[i]["b_ts"].get<double>(), 0);
    EXPECT_NEAR(cmp[i]["ts_ratio"].get<double>(), b[i]["avg_ts"].get<double>() / a[i]["avg_ts"].get<double>(), 1e-12);
    EXPECT_NEAR(cmp[i]["cache_ratio"].get<double>(), b[i]["cache_mib"].get<double>() / a[i]["cache_mib"].get<double>(),
                1e-12);
  }
  // The CSV holds the same pairs; its rounded ratio is the rounded B/A.
  auto csv = parse_csv(test::read_file(tmp + "/c.csv"));
  ASSERT_EQ(csv.size(), 1 + cmp.size());
  const auto& header = csv[0];
  for (size_t i = 1; i < csv.size(); ++i) {
    ASSERT_EQ(csv[i].size(), header.size());
    EXPECT_EQ(csv[i][column(header, "test")], cmp[i - 1]["test"].get<std::string>());
    const double at = std::stod(csv[i][column(header, "a_ts")]), bt = std::stod(csv[i][column(header, "b_ts")]);
    EXPECT_NEAR(std::stod(csv[i][column(header, "ts_ratio")]), bt / at, 1e-4 * bt / at);
  }
  // The table: both t/s and the ratio on each line.
  EXPECT_NE(r.out.find("| batch | test | A t/s | B t/s | B/A t/s |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("B: " + *hybrid_), std::string::npos) << r.out;
}

TEST_F(BenchCli, BadInputGivesClearErrors) {
  const std::string tmp = test::temp_dir();
  const std::string m = "bench -m " + *teacher_ + " -r 1 -p 4 -n 2 --no-roofline ";
  struct Case {
    std::string args, message;
  } cases[] = {
      {m + "-b 0", "-b/--batch: batch size 0 is not allowed"},
      {m + "-b 1,,2", "-b/--batch: '' is not a non-negative integer"},
      {m + "-b 1,2,", "-b/--batch: '1,2,' is not a comma-separated list"},
      {m + "-b x", "-b/--batch: 'x' is not a non-negative integer"},
      {m + "-d -5", "-d/--depth: '-5' is not a non-negative integer"},
      {"bench -m " + *teacher_ + " -r 0", "-r/--repetitions must be at least 1"},
      {"bench -m " + *teacher_ + " -p 0 -n 0", "nothing to measure"},
      {"bench -m " + tmp + "/missing.gguf", "model path " + tmp + "/missing.gguf does not exist"},
      {"bench --compare " + *teacher_ + " " + tmp + "/missing", "model path " + tmp + "/missing does not exist"},
      {"bench -p 4", "give -m MODEL, or --compare TEACHER HYBRID"},
      {"bench -m " + *teacher_ + " --compare " + *teacher_ + " " + *hybrid_, "not both"},
  };
  for (const Case& c : cases) {
    CliRun r = zebra_cli(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  }
}

// plot.py runs in the project's virtualenv (scripts/setup.sh --reference, plus matplotlib).
TEST_F(BenchCli, PlotScriptWritesPngCharts) {
  const std::string python = test::source_dir() + "/.venv/bin/python";
  if (!test::file_exists(python)) GTEST_SKIP() << "skipped: " << python << " not found (scripts/setup.sh --reference)";
  std::string out, err;
  if (test::run_command(python + " -c 'import matplotlib'", &out, &err) != 0)
    GTEST_SKIP() << "skipped: matplotlib is not installed in .venv";
  const std::string tmp = test::temp_dir();
  CliRun r = zebra_cli("bench --compare " + *teacher_ + " " + *hybrid_ + " -b 1,2 -p 4 -n 2 -d 0,16 -r 1 -o " + tmp +
                       "/c.json");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string script = test::source_dir() + "/scripts/plot.py";
  ASSERT_EQ(test::run_command(python + " " + script + " bench " + tmp + "/c.json -o " + tmp + "/charts", &out, &err), 0)
      << err;
  // A training log as the trainer writes it (eval_loss empty between evaluations), and one as JSONL.
  test::write_file(tmp + "/train_log.csv",
                   "step,loss,lr,grad_norm,tokens_per_s,mfu,eval_loss\n"
                   "1,5.0,1e-4,2.0,1000,0.1,\n2,4.5,2e-4,1.5,1100,0.1,4.8\n3,4.1,2e-4,1.2,1050,0.1,\n");
  test::write_file(tmp + "/run2.jsonl",
                   "{\"step\": 1, \"loss\": 5.2, \"lr\": 1e-4}\n{\"step\": 2, \"loss\": 4.9, \"lr\": 1e-4, "
                   "\"eval_loss\": 5.0}\n");
  ASSERT_EQ(test::run_command(python + " " + script + " train " + tmp + "/train_log.csv:baseline " + tmp +
                                  "/run2.jsonl:second -o " + tmp + "/charts/loss.png",
                              &out, &err),
            0)
      << err;
  for (const char* name : {"decode_vs_batch.png", "throughput_vs_depth.png", "cache_vs_context.png", "loss.png"}) {
    const std::string png = test::read_file(tmp + "/charts/" + name);
    EXPECT_GT(png.size(), 1000u) << name;
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << name;
  }
  // A file that is not bench JSON is refused with its name.
  EXPECT_NE(test::run_command(python + " " + script + " bench " + tmp + "/train_log.csv -o " + tmp + "/x", &out, &err),
            0);
  EXPECT_NE(err.find("train_log.csv"), std::string::npos) << err;
}

// scripts/make_results.sh --from renders the report from JSON alone: hand-written eval results in
// lm-eval's layout (what zebra eval writes) and real bench --compare output.
TEST_F(BenchCli, ResultsReportRendersEvalPerplexityAndBenchTables) {
  std::string out, err;
  if (test::run_command("python3 -c 'import json'", &out, &err) != 0) GTEST_SKIP() << "skipped: no python3";
  const std::string dir = test::temp_dir();
  for (const char* kind : {"decode", "prefill"}) {
    const std::string sweep = std::string(kind) == "decode" ? "-p 0 -n 2 -b 1,2 -d 0,8" : "-p 4 -n 0 -b 1 -d 0,8";
    CliRun r = zebra_cli("bench --compare " + *teacher_ + " " + *hybrid_ + " " + sweep + " -r 1 --no-roofline -o " +
                         dir + "/bench_" + kind + ".json");
    ASSERT_EQ(r.status, 0) << r.err;
  }
  for (const char* role : {"teacher", "hybrid"}) {
    const bool t = std::string(role) == "teacher";
    json e = {{"results",
               {{"arc_easy",
                 {{"alias", "arc_easy"}, {"acc,none", t ? 0.55 : 0.25}, {"acc_stderr,none", 0.111},
                  {"acc_norm,none", t ? 0.5 : 0.3}, {"acc_norm_stderr,none", 0.1}}},
                {"lambada_openai",
                 {{"alias", "lambada_openai"}, {"acc,none", t ? 0.4 : 0.0}, {"acc_stderr,none", 0.1},
                  {"perplexity,none", t ? 21.5 : 98765.4}}}}},
              {"n-samples", {{"arc_easy", {{"original", 2376}, {"effective", 20}}},
                             {"lambada_openai", {{"original", 5153}, {"effective", 20}}}}},
              {"average", {{"acc,none", t ? 0.475 : 0.125}, {"acc_norm,none", t ? 0.5 : 0.3}}},
              {"config", {{"model", role}, {"limit", 20}, {"batch_size", 8}, {"naive", false},
                          {"items_per_second", 4.0}, {"seconds", 10.0}}}};
    test::write_file(dir + "/eval_" + role + ".json", e.dump());
    test::write_file(dir + "/ppl_" + role + ".json",
                     json{{"ppl", t ? 27.81 : 563892.0}, {"nll_per_token", t ? 3.3254 : 13.2426}, {"tokens", 5120}}.dump());
  }
  test::write_file(dir + "/meta.json", json{{"limit", 20}, {"threads", 2}, {"cores", 2}, {"cpu", "Test CPU"},
                                            {"memory_gib", "24"}, {"date", "2030-01-01 00:00 UTC"},
                                            {"commit", "abc1234"}, {"loadavg_before", "0.1 0.2 0.3"},
                                            {"teacher", *teacher_}, {"hybrid", *hybrid_}, {"arguments", "--limit 20"}}
                                           .dump());
  const std::string report = dir + "/docs/RESULTS.md";
  ASSERT_EQ(test::run_command("PYTHON=python3 " + test::source_dir() + "/scripts/make_results.sh --from " + dir +
                                  " -o " + report,
                              &out, &err),
            0)
      << err;
  const std::string md = test::read_file(report);
  for (const char* want : {"Quick check (`--limit 20`)", "| Test CPU | 2 | 2 | 24 GiB | 0.1 0.2 0.3 |",
                           "| arc_easy | 20 of 2376 | 55.0 ± 11.1 | 50.0 ± 10.0 | 25.0 ± 11.1 | 30.0 ± 10.0 |",
                           "| lambada_openai | 20 of 5153 | 40.0 ± 10.0 | - | 0.0 ± 10.0 | - |",
                           "| **average** | | 47.5 | 50.0 | 12.5 | 30.0 |",
                           "target-word perplexity: teacher 21.50, hybrid 98,765.40",
                           "| teacher | 5,120 | 3.3254 | 27.81 |", "| hybrid | 5,120 | 13.2426 | 563,892.00 |",
                           "| 2 | tg2 @ d8 |", "| 1 | pp4 @ d8 |"})
    EXPECT_NE(md.find(want), std::string::npos) << want << "\n" << md;

  // --hybrid-limit: the teacher scored on the full task, the hybrid on 20 items; plus the optional
  // cached-vs-naive eval throughput table.
  json teacher_eval = json::parse(test::read_file(dir + "/eval_teacher.json"));
  teacher_eval["n-samples"]["arc_easy"]["effective"] = 2376;
  test::write_file(dir + "/eval_teacher.json", teacher_eval.dump());
  json meta = json::parse(test::read_file(dir + "/meta.json"));
  meta["limit"] = 0;
  meta["hybrid_limit"] = 20;
  test::write_file(dir + "/meta.json", meta.dump());
  for (const char* role : {"teacher", "hybrid"})
    for (const char* mode : {"cached", "naive"}) {
      const double cached = std::string(role) == "teacher" ? 4.0 : 3.0;
      const double items_per_second = std::string(mode) == "naive" ? cached / 2.5 : cached;
      test::write_file(dir + "/eval_speed_" + role + "_" + mode + ".json",
                       json{{"results", {{"arc_easy", json::object()}}},
                            {"n-samples", {{"arc_easy", {{"original", 2376}, {"effective", 64}}}}},
                            {"config", {{"items_per_second", items_per_second}}}}
                           .dump());
    }
  ASSERT_EQ(test::run_command("PYTHON=python3 " + test::source_dir() + "/scripts/make_results.sh --from " + dir +
                                  " -o " + report,
                              &out, &err),
            0)
      << err;
  const std::string limited = test::read_file(report);
  EXPECT_EQ(limited.find("Quick check"), std::string::npos) << limited;
  for (const char* want : {"the undistilled hybrid, to save time, on the first 20 items of each task",
                           "| arc_easy | 2376 of 2376 (hybrid: 20) | 55.0 ± 11.1 |",
                           "The same 64 items (arc_easy; batch 8)", "| teacher | 4.00 | 1.60 | 2.50x |",
                           "| hybrid | 3.00 | 1.20 | 2.50x |"})
    EXPECT_NE(limited.find(want), std::string::npos) << want << "\n" << limited;

  // A missing input names the file.
  std::filesystem::remove(dir + "/ppl_hybrid.json");
  EXPECT_NE(test::run_command("PYTHON=python3 " + test::source_dir() + "/scripts/make_results.sh --from " + dir +
                                  " -o " + report,
                              &out, &err),
            0);
  EXPECT_NE(err.find("ppl_hybrid.json"), std::string::npos) << err;
}

}  // namespace
