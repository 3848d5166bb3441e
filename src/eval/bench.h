// Speed measurements: prefill and decode throughput, and the machine's memory read bandwidth (the
// roofline for decode, which streams every weight once per token).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace zebra {

struct BenchSample {
  std::string test;  // "pp512", "tg128"
  int64_t n_prompt = 0, n_gen = 0, batch = 1, depth = 0;
  std::vector<double> tokens_per_second;  // one per repetition
  double mean() const;
  double stddev() const;
};

// Prefill: one forward over n_prompt tokens from position `depth` (the cache first holds depth tokens).
BenchSample bench_prefill(const Model& m, int64_t n_prompt, int64_t depth, int reps);
// Decode: n_gen single-token steps after `depth` tokens of context.
BenchSample bench_decode(const Model& m, int64_t n_gen, int64_t depth, int reps);

// Sustained read bandwidth in bytes/s with the current thread count (sums a large buffer repeatedly).
double measure_read_bandwidth(size_t bytes = size_t(1) << 30, int reps = 5);

// Bytes one decode step reads: every weight except the embedding table (one row), plus the KV cache
// of `ctx` tokens and the Mamba2 state.
int64_t decode_bytes_per_token(const Model& m, int64_t ctx);
// Cache memory one sequence of `tokens` tokens needs (KV/latents grow, Mamba2 state is constant), fp32.
double cache_mib(const Model& m, int64_t tokens);
double peak_rss_mib();

}  // namespace zebra
