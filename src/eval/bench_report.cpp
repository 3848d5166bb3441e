#include "eval/bench_report.h"

#include <cstdio>

#include "core/error.h"

namespace zebra {

BenchModelRun describe_run(const Model& m, const std::string& path, const std::vector<BenchSample>& samples,
                           double read_bandwidth) {
  BenchModelRun run;
  run.path = path;
  run.params = m.parameter_count();
  run.size_mib = run.params * 4.0 / (1 << 20);
  run.kv_bytes_per_token = m.kv_bytes_per_token();
  run.state_bytes_per_sequence = m.state_bytes_per_sequence();
  for (const BenchSample& s : samples) {
    BenchRow row;
    row.sample = s;
    if (s.is_decode()) {
      // The cache grows during the test; its middle is the average context a step reads.
      row.bytes_per_step = decode_bytes_per_step(m, s.depth + s.n_gen / 2, s.batch);
      if (read_bandwidth > 0) row.roofline_ts = read_bandwidth * s.batch / row.bytes_per_step;
    }
    row.cache_mib = cache_mib(m, s.depth + s.n_prompt + s.n_gen, s.batch);
    run.rows.push_back(row);
  }
  return run;
}

static std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

static double ratio(double b, double a) { return a > 0 ? b / a : 0.0; }

// The rows of A and B come from one sweep, so they pair up in order; anything else is a bug upstream.
static void check_paired(const BenchReport& r) {
  ZEBRA_CHECK(r.models.size() == 2, "bench comparison needs exactly two models, got ", r.models.size());
  const auto &a = r.models[0].rows, &b = r.models[1].rows;
  ZEBRA_CHECK(a.size() == b.size(), "bench comparison: ", a.size(), " tests for A but ", b.size(), " for B");
  for (size_t i = 0; i < a.size(); ++i)
    ZEBRA_CHECK(a[i].sample.test == b[i].sample.test && a[i].sample.batch == b[i].sample.batch,
                "bench comparison: test ", i, " differs (", a[i].sample.test, " vs ", b[i].sample.test, ")");
}

static std::string single_markdown(const BenchReport& r) {
  const BenchModelRun& m = r.models.at(0);
  std::string out =
      "| model | size | params | backend | threads | batch | test | t/s | roofline t/s | cache MiB | peak RSS MiB |\n"
      "| ----- | ---: | -----: | ------- | ------: | ----: | ---: | --: | -----------: | --------: | -----------: |\n";
  for (const BenchRow& row : m.rows) {
    const BenchSample& s = row.sample;
    out += "| " + m.path + " | " + fmt("%.1f MiB", m.size_mib) + " | " + fmt("%.2f M", m.params / 1e6) + " | " +
           r.backend + " | " + std::to_string(r.threads) + " | " + std::to_string(s.batch) + " | " + s.test + " | " +
           fmt("%.2f", s.mean()) + " ± " + fmt("%.2f", s.stddev()) + " | " +
           (row.roofline_ts > 0 ? fmt("%.2f", row.roofline_ts) : "-") + " | " + fmt("%.3f", row.cache_mib) + " | " +
           fmt("%.1f", s.peak_rss_mib) + " |\n";
  }
  return out;
}

static std::string compare_markdown(const BenchReport& r) {
  check_paired(r);
  const BenchModelRun &a = r.models[0], &b = r.models[1];
  std::string out = "A: " + a.path + " (" + fmt("%.2f M params", a.params / 1e6) + ", " +
                    fmt("%.0f KV bytes/token", a.kv_bytes_per_token) + ")\n" + "B: " + b.path + " (" +
                    fmt("%.2f M params", b.params / 1e6) + ", " + fmt("%.0f KV bytes/token", b.kv_bytes_per_token) +
                    ", " + fmt("%.0f state bytes/sequence", b.state_bytes_per_sequence) + ")\n" + r.backend + ", " +
                    std::to_string(r.threads) + " threads\n\n";
  out +=
      "| batch | test | A t/s | B t/s | B/A t/s | A cache MiB | B cache MiB | B/A cache | A peak RSS MiB | B peak RSS MiB |\n"
      "| ----: | ---: | ----: | ----: | ------: | ----------: | ----------: | --------: | -------------: | -------------: |\n";
  for (size_t i = 0; i < a.rows.size(); ++i) {
    const BenchRow &x = a.rows[i], &y = b.rows[i];
    out += "| " + std::to_string(x.sample.batch) + " | " + x.sample.test + " | " + fmt("%.2f", x.sample.mean()) +
           " ± " + fmt("%.2f", x.sample.stddev()) + " | " + fmt("%.2f", y.sample.mean()) + " ± " +
           fmt("%.2f", y.sample.stddev()) + " | " + fmt("%.3f", ratio(y.sample.mean(), x.sample.mean())) + " | " +
           fmt("%.3f", x.cache_mib) + " | " + fmt("%.3f", y.cache_mib) + " | " +
           fmt("%.4f", ratio(y.cache_mib, x.cache_mib)) + " | " + fmt("%.1f", x.sample.peak_rss_mib) + " | " +
           fmt("%.1f", y.sample.peak_rss_mib) + " |\n";
  }
  return out;
}

std::string bench_markdown(const BenchReport& r) {
  std::string out = r.models.size() == 2 ? compare_markdown(r) : single_markdown(r);
  if (r.read_bandwidth > 0)
    out += "\nmeasured read bandwidth: " + fmt("%.2f", r.read_bandwidth / 1e9) +
           " GB/s (decode roofline = bandwidth * batch / bytes one step reads)\n";
  return out;
}

static nlohmann::ordered_json test_fields(const BenchSample& s) {
  return {{"test", s.test}, {"batch", s.batch}, {"n_prompt", s.n_prompt}, {"n_gen", s.n_gen}, {"depth", s.depth}};
}

static std::vector<nlohmann::ordered_json> compare_entries(const BenchReport& r) {
  check_paired(r);
  std::vector<nlohmann::ordered_json> out;
  const auto &a = r.models[0].rows, &b = r.models[1].rows;
  for (size_t i = 0; i < a.size(); ++i) {
    nlohmann::ordered_json e = test_fields(a[i].sample);
    e["a_ts"] = a[i].sample.mean(), e["a_stddev_ts"] = a[i].sample.stddev();
    e["b_ts"] = b[i].sample.mean(), e["b_stddev_ts"] = b[i].sample.stddev();
    e["ts_ratio"] = ratio(b[i].sample.mean(), a[i].sample.mean());
    e["a_cache_mib"] = a[i].cache_mib, e["b_cache_mib"] = b[i].cache_mib;
    e["cache_ratio"] = ratio(b[i].cache_mib, a[i].cache_mib);
    out.push_back(e);
  }
  return out;
}

nlohmann::ordered_json bench_json(const BenchReport& r) {
  nlohmann::ordered_json j = {{"backend", r.backend}, {"threads", r.threads}, {"read_bandwidth_gbs", r.read_bandwidth / 1e9}};
  j["models"] = nlohmann::ordered_json::array();
  for (const BenchModelRun& m : r.models) {
    nlohmann::ordered_json mj = {{"path", m.path},
                         {"params", m.params},
                         {"size_mib", m.size_mib},
                         {"kv_bytes_per_token", m.kv_bytes_per_token},
                         {"state_bytes_per_sequence", m.state_bytes_per_sequence}};
    mj["results"] = nlohmann::ordered_json::array();
    for (const BenchRow& row : m.rows) {
      nlohmann::ordered_json e = test_fields(row.sample);
      e["avg_ts"] = row.sample.mean(), e["stddev_ts"] = row.sample.stddev();
      e["samples_ts"] = row.sample.tokens_per_second;
      e["bytes_per_step"] = row.bytes_per_step, e["roofline_ts"] = row.roofline_ts;
      e["cache_mib"] = row.cache_mib, e["peak_rss_mib"] = row.sample.peak_rss_mib;
      mj["results"].push_back(e);
    }
    j["models"].push_back(mj);
  }
  if (r.models.size() == 2) j["compare"] = compare_entries(r);
  return j;
}

// RFC 4180 quoting, only where needed (paths may hold commas).
static std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

static std::string csv_number(double v) { return fmt("%.6g", v); }

std::string bench_csv(const BenchReport& r) {
  std::string out;
  if (r.models.size() == 2) {
    out = "a_model,b_model,batch,test,n_prompt,n_gen,depth,a_ts,a_stddev_ts,b_ts,b_stddev_ts,ts_ratio,"
          "a_cache_mib,b_cache_mib,cache_ratio\n";
    for (const nlohmann::ordered_json& e : compare_entries(r)) {
      out += csv_field(r.models[0].path) + "," + csv_field(r.models[1].path) + "," +
             std::to_string(e["batch"].get<int64_t>()) + "," + e["test"].get<std::string>() + "," +
             std::to_string(e["n_prompt"].get<int64_t>()) + "," + std::to_string(e["n_gen"].get<int64_t>()) + "," +
             std::to_string(e["depth"].get<int64_t>());
      for (const char* k : {"a_ts", "a_stddev_ts", "b_ts", "b_stddev_ts", "ts_ratio", "a_cache_mib", "b_cache_mib",
                            "cache_ratio"})
        out += "," + csv_number(e[k].get<double>());
      out += "\n";
    }
    return out;
  }
  const BenchModelRun& m = r.models.at(0);
  out = "model,params,size_mib,backend,threads,batch,test,n_prompt,n_gen,depth,avg_ts,stddev_ts,roofline_ts,"
        "cache_mib,peak_rss_mib\n";
  for (const BenchRow& row : m.rows) {
    const BenchSample& s = row.sample;
    out += csv_field(m.path) + "," + std::to_string(m.params) + "," + csv_number(m.size_mib) + "," +
           csv_field(r.backend) + "," + std::to_string(r.threads) + "," + std::to_string(s.batch) + "," + s.test +
           "," + std::to_string(s.n_prompt) + "," + std::to_string(s.n_gen) + "," + std::to_string(s.depth) + "," +
           csv_number(s.mean()) + "," + csv_number(s.stddev()) + "," + csv_number(row.roofline_ts) + "," +
           csv_number(row.cache_mib) + "," + csv_number(s.peak_rss_mib) + "\n";
  }
  return out;
}

}  // namespace zebra
