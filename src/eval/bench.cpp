#include "eval/bench.h"

#include <chrono>
#include <cmath>
#include <random>

#include <sys/resource.h>

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

static void fill_context(const Model& m, Cache& cache, int64_t depth) {
  if (depth <= 0) return;
  m.forward(make_sequence_batch(random_tokens(depth, m.config.vocab_size, 7), 0, 0, false), cache);
}

BenchSample bench_prefill(const Model& m, int64_t n_prompt, int64_t depth, int reps) {
  BenchSample s;
  s.test = "pp" + std::to_string(n_prompt) + (depth ? " @ d" + std::to_string(depth) : "");
  s.n_prompt = n_prompt, s.depth = depth;
  Cache cache = m.make_cache(1, depth + n_prompt);
  fill_context(m, cache, depth);
  std::vector<int32_t> toks = random_tokens(n_prompt, m.config.vocab_size, 1);
  Batch b = make_sequence_batch(toks, 0, static_cast<int32_t>(depth), false);
  // Every repetition starts from the same context: Mamba2 state only moves forward, so restore a copy.
  const Cache context = cache;
  m.forward(b, cache);  // warm-up
  for (int r = 0; r < reps; ++r) {
    cache = context;
    auto t0 = std::chrono::steady_clock::now();
    m.forward(b, cache);
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_second.push_back(n_prompt / sec);
  }
  return s;
}

BenchSample bench_decode(const Model& m, int64_t n_gen, int64_t depth, int reps) {
  BenchSample s;
  s.test = "tg" + std::to_string(n_gen) + (depth ? " @ d" + std::to_string(depth) : "");
  s.n_gen = n_gen, s.depth = depth;
  Cache cache = m.make_cache(1, depth + n_gen + 1);
  fill_context(m, cache, depth);
  std::vector<int32_t> toks = random_tokens(n_gen, m.config.vocab_size, 2);
  const Cache context = cache;  // restored before each repetition (see bench_prefill)
  Batch warm;
  warm.add(toks[0], 0, static_cast<int32_t>(depth), true);
  m.forward(warm, cache);
  for (int r = 0; r < reps; ++r) {
    cache = context;
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_gen; ++i) {
      Batch b;
      b.add(toks[i], 0, static_cast<int32_t>(depth + i), true);
      m.forward(b, cache);
    }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.tokens_per_second.push_back(n_gen / sec);
  }
  return s;
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

double cache_mib(const Model& m, int64_t tokens) {
  return (static_cast<double>(m.kv_bytes_per_token()) * tokens + m.state_bytes_per_sequence()) / (1 << 20);
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

int64_t decode_bytes_per_token(const Model& m, int64_t ctx) {
  int64_t params = m.parameter_count() - m.embed.numel() + m.config.hidden_size;
  if (m.lm_head.empty()) params += m.embed.numel();  // a tied head reads the whole table
  return params * static_cast<int64_t>(sizeof(float)) + m.kv_bytes_per_token() * ctx + m.state_bytes_per_sequence();
}

}  // namespace zebra
