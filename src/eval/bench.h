// Speed measurements: prefill and decode throughput of B sequences at a time, and the machine's memory
// read bandwidth (the roofline for decode, which streams every weight once per step).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace zebra {

struct BenchSample {
  std::string test;  // "pp512", "tg128", "tg128 @ d1024" (llama-bench's names; batch is its own column)
  int64_t n_prompt = 0, n_gen = 0, batch = 1, depth = 0;
  std::vector<double> tokens_per_second;  // one per repetition, counting the tokens of all `batch` sequences
  double peak_rss_mib = 0;                // while this test ran: weights + cache + activations (run_sweep)
  double mean() const;
  double stddev() const;
  bool is_decode() const { return n_gen > 0; }
};

// Prefill: one forward over `batch` prompts of n_prompt tokens each (one cache slot per prompt), every
// slot first holding `depth` tokens of context.
BenchSample bench_prefill(const Model& m, int64_t n_prompt, int64_t depth, int64_t batch, int reps);
// Decode: n_gen steps, each one forward with one new token for each of `batch` sequences, after `depth`
// tokens of context in every slot.
BenchSample bench_decode(const Model& m, int64_t n_gen, int64_t depth, int64_t batch, int reps);

// The cross product a `zebra bench` run measures. n_prompt / n_gen of 0 are skipped (llama-bench's -p 0).
struct BenchSweep {
  std::vector<int64_t> batches{1}, prompts{512}, gens{128}, depths{0};
  int reps = 5;
};
// Checks the sweep is measurable (batch >= 1, something to measure, positions fit); throws with the flag.
void validate_sweep(const BenchSweep& s);
// Runs every (depth, batch, prompt) prefill and (depth, batch, gen) decode test in that order, logging
// each result, and records each test's peak RSS (the mark is reset before each test).
std::vector<BenchSample> run_sweep(const Model& m, const BenchSweep& s);

// Sustained read bandwidth in bytes/s with the current thread count (sums a large buffer repeatedly).
double measure_read_bandwidth(size_t bytes = size_t(1) << 30, int reps = 5);

// Bytes one decode step of `batch` sequences reads: every weight except the embedding table (one row per
// token), plus each sequence's KV cache of `ctx` tokens and Mamba2 state.
int64_t decode_bytes_per_step(const Model& m, int64_t ctx, int64_t batch);
// Cache memory of `batch` sequences of `tokens` tokens each (KV/latents grow, Mamba2 state is constant), fp32.
double cache_mib(const Model& m, int64_t tokens, int64_t batch = 1);

// Peak resident memory of this process in MiB (VmHWM). reset_peak_rss() lowers the mark to the current
// RSS so that the next reading is the peak of what ran since; false where the kernel refuses.
double peak_rss_mib();
bool reset_peak_rss();

}  // namespace zebra
