// Formats `zebra bench` results: the llama-bench-style markdown table, CSV and JSON, for one model or
// for a teacher/hybrid comparison (same sweep on both, ratio B/A per test).
//
// JSON layout (every number a JSON number; *_ts in tokens/s summed over the batch's sequences):
//   backend "CPU f32", threads, read_bandwidth_gbs (0 with --no-roofline),
//   models: [{ path, params, size_mib (fp32 weights), kv_bytes_per_token, state_bytes_per_sequence,
//              results: [{ test ("pp512", "tg128 @ d1024"), batch, n_prompt, n_gen, depth,
//                          avg_ts, stddev_ts, samples_ts [one per repetition],
//                          bytes_per_step (decode: bytes one step reads; 0 for prefill),
//                          roofline_ts (decode: bandwidth * batch / bytes_per_step; 0 for prefill or
//                          without a bandwidth), cache_mib (batch sequences of depth+n_prompt+n_gen
//                          tokens), peak_rss_mib (of the process while this test ran) }] }]
//   compare (only for two models): [{ test, batch, n_prompt, n_gen, depth, a_ts, a_stddev_ts, b_ts,
//                                     b_stddev_ts, ts_ratio (b/a), a_cache_mib, b_cache_mib,
//                                     cache_ratio (b/a) }]
// The CSV has one line per results entry (one model) or per compare entry (two models), same names.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/bench.h"

namespace zebra {

struct BenchRow {
  BenchSample sample;
  int64_t bytes_per_step = 0;  // decode only
  double roofline_ts = 0;      // decode with a measured bandwidth only
  double cache_mib = 0;
};

struct BenchModelRun {
  std::string path;
  int64_t params = 0;
  double size_mib = 0;
  int64_t kv_bytes_per_token = 0, state_bytes_per_sequence = 0;
  std::vector<BenchRow> rows;
};

struct BenchReport {
  std::string backend = "CPU f32";
  int threads = 1;
  double read_bandwidth = 0;  // bytes/s; 0 = not measured
  std::vector<BenchModelRun> models;  // one, or two for a comparison (A then B)
};

// The row-level numbers of one model's samples (roofline from report.read_bandwidth).
BenchModelRun describe_run(const Model& m, const std::string& path, const std::vector<BenchSample>& samples,
                           double read_bandwidth);

std::string bench_markdown(const BenchReport& r);    // one table; for two models, the comparison table
std::string bench_csv(const BenchReport& r);
nlohmann::ordered_json bench_json(const BenchReport& r);

}  // namespace zebra
