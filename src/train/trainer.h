// The training loop shared by every stage (ILD, KD, DPO): micro-batches with gradient accumulation, global
// grad-norm clipping, cosine schedule with warmup, AdamW, one log line per step (stderr + CSV + JSONL),
// held-out evaluation every N steps, atomic checkpoints every N steps and exact resume.
// A stage supplies only what differs: how one micro-batch's loss and gradients are computed, and how the
// held-out set is scored.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

struct TrainOptions {
  int64_t steps = 100;       // optimiser steps
  int64_t batch = 8;         // samples (packed rows, or preference pairs) per micro-batch
  int64_t grad_accum = 1;    // micro-batches per optimiser step
  double lr = 1e-3, min_lr = 0.0, warmup_ratio = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double clip = 1.0;         // global grad-norm clip (0 = off)
  uint64_t seed = 42;
  int64_t eval_every = 0;    // 0: only after the last step
  int64_t save_every = 0;    // 0: only after the last step
  std::string out_dir;
  bool resume = false;
  int64_t halt_after_step = -1;  // testing: exit abruptly after this step, as a killed process would
};

// Named scalars a stage reports besides the loss (e.g. DPO's margin), in a fixed order.
using Metrics = std::vector<std::pair<std::string, double>>;

struct MicroResult {
  double loss = 0;
  int64_t tokens = 0;  // tokens processed (for tokens/s)
  Metrics extra;
};

struct Stage {
  std::string name;            // "ild", "kd", "dpo"
  Model* model = nullptr;      // trained in place
  const Tokenizer* tokenizer = nullptr;  // written beside checkpoints when it can be
  int64_t n_samples = 0;       // samples in the training data (consumed in order, cycling)
  // Which parameters train (by HF name); empty = all.
  std::function<bool(const std::string&)> trainable;
  // Loss of samples[i] (indices into the data), accumulating scale * d(loss)/d(weights) into grad.
  std::function<MicroResult(const std::vector<int64_t>& samples, Model& grad, double scale)> micro_step;
  // Held-out metrics; the first is reported as eval_loss. May be empty.
  std::function<Metrics()> evaluate;
  double flops_per_token = 0;  // for achieved GFLOP/s and MFU
  std::string options_json = "{}";  // recorded in checkpoints; a resume must match
};

struct TrainSummary {
  int64_t steps = 0;
  double last_loss = 0, tokens_per_second = 0, gflops = 0, mfu = 0;
  Metrics last_eval;
};

// Runs the stage to opts.steps, writing OUT/train_log.csv, OUT/train_log.jsonl, OUT/checkpoint/ and the final
// OUT/model/. Throws (keeping the last good checkpoint) when a loss or gradient is NaN/Inf.
TrainSummary train(Stage& stage, const TrainOptions& opts);

// The machine's sustained fp32 GEMM throughput (GFLOP/s) with the current threads: MFU's denominator.
double measure_gemm_gflops();

}  // namespace zebra
