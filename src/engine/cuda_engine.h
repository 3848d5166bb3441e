// The CUDA engine: Engine (engine.h) on one NVIDIA GPU. Weights are uploaded from the host fp32 Model as bf16
// (EngineOptions::dtype "auto"/"bf16") or fp32 ("f32", for tight parity tests); the residual stream, norms,
// Mamba2 states and all accumulation are fp32. The paged KV / MLA-latent cache and the Mamba2 state slots live
// on the GPU and follow the engine's CacheBook (block tables, copy-on-write, forks, snapshots, prefix reuse).
// A forward mixes prefill chunks and decode tokens of many sequences; decode-only forwards replay CUDA graphs
// captured per batch-size bucket.
#pragma once
#include <memory>
#include <string>

#include "engine/engine.h"

namespace zebra {

// Knobs beyond EngineOptions, for tests and benchmarks.
struct CudaEngineTuning {
  bool graphs = true;        // replay decode-only forwards as CUDA graphs (one per power-of-two batch bucket)
  int device = 0;            // CUDA device ordinal
  int64_t forward_rows = 0;  // rows the workspace holds per forward (0: max_batch_tokens, else min(n_ctx, 2048));
                             // larger batches run as consecutive slices
  int64_t logit_rows = 0;    // logits rows held on the GPU per forward (0: max(max_seqs, min(rows, 512)))
};

// GPUs this process can use (0 when there is no device or the driver is missing or too old; never throws).
int cuda_device_count();
// Why cuda_device_count() is 0, for messages ("" when a GPU is usable).
std::string cuda_unavailable_reason();

// Throws zebra::Error (never crashes) when no usable GPU is visible (suggesting --device cpu), when the GPU is not
// Hopper-class (this build carries sm_90 code only), or when the weights, workspace or cache do not fit in GPU
// memory (saying how much was needed and what would fit).
std::unique_ptr<Engine> make_cuda_engine(const Model& model, const EngineOptions& opts);
std::unique_ptr<Engine> make_cuda_engine(const Model& model, const EngineOptions& opts, const CudaEngineTuning& tuning);

}  // namespace zebra
