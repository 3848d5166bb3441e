// The scheduler: continuous batching over an Engine. It holds waiting and running requests, admits waiting
// ones as sequence ids and cache blocks free up, and each step runs one forward that mixes the running
// sequences' decode tokens with chunks of prompts being prefilled, under a token budget. It reuses cached
// prefixes (shared blocks for attention/MLA, Mamba2 snapshots), samples, and finishes requests on a stop
// id, max_tokens, the context end, a callback's refusal or cancel(). generate, chat, synth and eval run on
// it; the HTTP server is a thin layer on top.
//
// Single-threaded: submit/cancel/step are called from one thread (the server owns a loop thread and passes
// requests in through its own queue).
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "model/sampler.h"

namespace zebra {

struct GenRequest {
  std::vector<int32_t> prompt;  // never empty
  int64_t max_tokens = 0;       // tokens to generate (0: only run/score the prompt)
  SamplerParams sampling;
  std::vector<int32_t> stop_ids;  // a sampled stop id ends the request and is not emitted
  // Scoring (eval): when > 0, log p(prompt[t] | prompt[..t)) and whether prompt[t] was the argmax are
  // reported for every t >= score_from (prefix reuse never skips the positions whose logits this needs).
  int64_t score_from = 0;
  bool reuse_prefix = true;
  // Called during step() with each generated token; returning false finishes the request (stop strings,
  // a disconnected client).
  std::function<bool(int32_t)> on_token;
};

enum class FinishReason { None, Stop, Length, Context, Callback, Cancelled };
const char* finish_reason_name(FinishReason r);  // "stop", "length", ...

struct RequestResult {
  std::vector<int32_t> tokens;  // generated ids (stop id excluded)
  FinishReason reason = FinishReason::None;
  std::vector<double> logprobs;  // scoring: one per prompt token from score_from on
  std::vector<uint8_t> greedy;   // scoring: prompt[t] was the argmax of its position's logits
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;     // prompt positions reused from the prefix cache (not recomputed)
  double queue_seconds = 0, ttft_seconds = 0, total_seconds = 0;  // from submit
};

struct SchedulerOptions {
  int64_t max_running = 0;     // sequences decoding at once; 0 = the engine's max_seqs
  int64_t token_budget = 512;  // tokens per forward (decode tokens first, then prompt chunks)
  bool prefix_reuse = true;
};

struct SchedulerStats {
  int64_t waiting = 0, running = 0, finished = 0;
  int64_t forwards = 0, prompt_tokens = 0, prompt_tokens_computed = 0, generated_tokens = 0;
  int64_t prefix_lookups = 0, prefix_hits = 0, cached_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, SchedulerOptions opts = {});
  ~Scheduler();

  // Queues a request and returns its id. Throws zebra::Error when it can never run: an empty prompt, a
  // token outside the vocabulary, a prompt longer than the engine's n_ctx, or more blocks than the whole
  // cache holds for prompt + max_tokens (capped at n_ctx; the message says what fits). A request that fits
  // but not now waits for running ones to finish (admission is in arrival order, with its blocks reserved
  // up front so it never runs out; no preemption). Generation past n_ctx ends with FinishReason::Context.
  // A scoring request without max_tokens never reads its last prompt token (only its log-prob is needed).
  int64_t submit(GenRequest request);
  // Finishes a waiting or running request (reason Cancelled); its sequence is freed at once.
  void cancel(int64_t id);
  // Admits what fits, runs one forward, samples, delivers tokens and finishes requests. Returns false when
  // there was nothing to do (no waiting or running request).
  bool step();
  void run_until_idle();

  bool finished(int64_t id) const;
  // The result of a finished request (once; then forgotten).
  RequestResult take_result(int64_t id);
  // Called as each request finishes, with its result (before take_result could see it). Callbacks
  // (on_token, on_finish) may call submit() and cancel(), never step().
  std::function<void(int64_t id, const RequestResult& result)> on_finish;

  SchedulerStats stats() const;
  Engine& engine() { return engine_; }

 private:
  struct Impl;
  Engine& engine_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zebra
