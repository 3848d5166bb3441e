#include "eval/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>

#include <sys/resource.h>

#include "core/error.h"
#include "core/log.h"
#include "eval/cache_slots.h"

namespace zebra {

double BenchSample::mean() const {
  double s = 0;
  for (double v : tokens_per_second) s += v;
  return tokens_per_second.empty() ? 0 : s / tokens_per_second.size();
}

double BenchSample::stddev() const {
  if (tokens_per_second.size() < 2) return 0;
  double m = mean(), s = 0;
  for (double v : tokens_per_second) s += (v - m) * (v - m);
  return std::sqrt(s / (tokens_per_second.size() - 1));
}

static std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// A cache of `batch` slots of `n_ctx` positions whose first `depth` positions hold the same random context:
// slot 0 runs it, the others get a copy of slot 0. Filling B slots by B forwards would cost B times the
// prefill and measure nothing more, since the work of a step does not depend on the tokens' values.
static Cache context_cache(const Model& m, int64_t batch, int64_t n_ctx, int64_t depth) {
  Cache cache = m.make_cache(batch, n_ctx);
  if (depth > 0) {
    m.forward(make_sequence_batch(random_tokens(depth, m.config.vocab_size, 7), 0, 0, false), cache);
    for (int64_t slot = 1; slot < batch; ++slot) copy_cache_slot(cache, 0, slot, depth);
  }
  return cache;
}

static std::string test_name(const char* kind, int64_t n, int64_t depth) {
  return kind + std::to_string(n) + (depth ? " @ d" + std::to_string(depth) : "");
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Every repetition must start from the same context. Keys and latents past `depth` are simply
// overwritten (attention reads only positions up to the token's own), but Mamba2 state only moves
// forward, so each repetition restores a copy of it (small: no copy of the whole cache is needed).

BenchSample bench_prefill(const Model& m, int64_t n_prompt, int64_t depth, int64_t batch, int reps) {
  BenchSample s;
  s.test = test_name("pp", n_prompt, depth);
  s.n_prompt = n_prompt, s.depth = depth, s.batch = batch;
  Cache cache = context_cache(m, batch, depth + n_prompt, depth);
  const std::vector<Mamba2State> context_state = cache.ssm;
  std::vector<int32_t> toks = random_tokens(n_prompt, m.config.vocab_size, 1);
  Batch b;
  for (int64_t q = 0; q < batch; ++q)
    for (int64_t i = 0; i < n_prompt; ++i)
      b.add(toks[i], static_cast<int32_t>(q), static_cast<int32_t>(depth + i), i == n_prompt - 1);
  m.forward(b, cache);  // warm-up
  for (int r = 0; r < reps; ++r) {
    cache.ssm = context_state;
    auto t0 = std::chrono::steady_clock::now();
    m.forward(b, cache);
    s.tokens_per_second.push_back(batch * n_prompt / seconds_since(t0));
  }
  return s;
}

BenchSample bench_decode(const Model& m, int64_t n_gen, int64_t depth, int64_t batch, int reps) {
  BenchSample s;
  s.test = test_name("tg", n_gen, depth);
  s.n_gen = n_gen, s.depth = depth, s.batch = batch;
  Cache cache = context_cache(m, batch, depth + n_gen, depth);
  const std::vector<Mamba2State> context_state = cache.ssm;
  std::vector<int32_t> toks = random_tokens(n_gen, m.config.vocab_size, 2);
  auto step = [&](int64_t i) {
    Batch b;
    for (int64_t q = 0; q < batch; ++q) b.add(toks[i], static_cast<int32_t>(q), static_cast<int32_t>(depth + i), true);
    m.forward(b, cache);
  };
  step(0);  // warm-up
  for (int r = 0; r < reps; ++r) {
    cache.ssm = context_state;
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_gen; ++i) step(i);
    s.tokens_per_second.push_back(batch * n_gen / seconds_since(t0));
  }
  return s;
}

void validate_sweep(const BenchSweep& s) {
  ZEBRA_CHECK(s.reps >= 1, "-r/--repetitions must be at least 1 (got ", s.reps, ")");
  ZEBRA_CHECK(!s.batches.empty(), "-b/--batch: give at least one batch size, like 1,4,16");
  ZEBRA_CHECK(!s.depths.empty(), "-d/--depth: give at least one context depth, like 0,1024");
  bool any = false;
  for (int64_t b : s.batches) ZEBRA_CHECK(b >= 1, "-b/--batch: batch size ", b, " is not allowed (at least 1)");
  for (int64_t p : s.prompts) any = any || p > 0;
  for (int64_t n : s.gens) any = any || n > 0;
  ZEBRA_CHECK(any, "nothing to measure: every -p and -n is 0");
  // Positions are int32 in a Batch; a depth that large would not fit in memory anyway.
  const int64_t limit = int64_t(1) << 30;
  for (int64_t d : s.depths)
    for (const auto* list : {&s.prompts, &s.gens})
      for (int64_t n : *list)
        ZEBRA_CHECK(d + n < limit, "context depth ", d, " + ", n, " tokens exceeds ", limit, " positions");
}

std::vector<BenchSample> run_sweep(const Model& m, const BenchSweep& s) {
  validate_sweep(s);
  std::vector<BenchSample> out;
  auto record = [&](BenchSample sample) {
    sample.peak_rss_mib = peak_rss_mib();
    log_info("bench: batch ", sample.batch, " ", sample.test, ": ", sample.mean(), " t/s");
    out.push_back(std::move(sample));
  };
  for (int64_t d : s.depths)
    for (int64_t b : s.batches) {
      for (int64_t p : s.prompts)
        if (p > 0) reset_peak_rss(), record(bench_prefill(m, p, d, b, s.reps));
      for (int64_t g : s.gens)
        if (g > 0) reset_peak_rss(), record(bench_decode(m, g, d, b, s.reps));
    }
  return out;
}

double measure_read_bandwidth(size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> buf(n);
#pragma omp parallel for
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      // 16 independent lanes so the compiler can keep several vector loads in flight (a single float
      // accumulator serialises on the add latency and measures the core, not the memory).
      float lanes[16] = {};
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i += 16)
        for (int j = 0; j < 16; ++j) lanes[j] += buf[i + j];
      for (float v : lanes) total += v;
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, bytes / sec);
  }
  return best;
}

double cache_mib(const Model& m, int64_t tokens, int64_t batch) {
  const double per_sequence = static_cast<double>(m.kv_bytes_per_token()) * tokens + m.state_bytes_per_sequence();
  return batch * per_sequence / (1 << 20);
}

double peak_rss_mib() {
  // VmHWM rather than getrusage: ru_maxrss is not lowered by reset_peak_rss().
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // in kB
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";  // "5" resets the peak RSS mark (Linux >= 4.0, proc(5))
  clear.flush();
  return clear.good();
}

int64_t decode_bytes_per_step(const Model& m, int64_t ctx, int64_t batch) {
  int64_t params = m.parameter_count() - m.embed.numel() + batch * m.config.hidden_size;
  if (m.lm_head.empty()) params += m.embed.numel();  // a tied head reads the whole table
  return params * static_cast<int64_t>(sizeof(float)) +
         batch * (m.kv_bytes_per_token() * ctx + m.state_bytes_per_sequence());
}

}  // namespace zebra
