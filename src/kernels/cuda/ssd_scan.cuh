// ssd_scan, ssm_step (kernels/cpu's ssd_scan.h): Mamba2's selective state update (spec §1.4) over the conv outputs
// xbc = [x (d_xb) | B (d_xb) | C (d_inner)] per row, for head h with group k = h / (n_heads / (d_xb / head_dim)):
//   dt = softplus(dt_raw[h] + dt_bias[h]),  A = -exp(A_log[h])
//   S_t = exp(dt A) S_{t-1} + dt x^k B^kᵀ      ([head_dim][d_state], fp32 in the state slot)
//   y_t = S_t C^h + D[h] x^k                   (y: [rows][n_heads * head_dim], before the gate and norm)
// A run at pos0 == 0 starts from S = 0.
//   ssd_scan  prefill runs, the chunked SSD form in three kernels: (1) per (chunk, head), in parallel: the
//             intra-chunk outputs, the chunk's own state contribution and its decays; (2) per (run, head): the
//             sequential pass over the run's chunks (the state entering each chunk, and the final state into the
//             slot); (3) per (chunk, head): y += exp(cum_l) S_in C_l + D x.
//   ssm_step  runs of one token (decode), one block per (run, head).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_views.h"

namespace zebra::cuda {

struct SsmArgs {
  int64_t n_heads = 0, head_dim = 0, d_state = 0;  // head_dim, d_state <= 128
  int64_t d_xb = 0;                                // x and B widths (n_groups * head_dim)
  const float* dt_bias = nullptr;                  // [n_heads]
  const float* A_log = nullptr;                    // [n_heads]
  const float* D = nullptr;                        // [n_heads]
  ZEBRA_HD int64_t group() const { return n_heads / (d_xb / head_dim); }  // heads per x/B group
};

constexpr int64_t kSsdChunk = 64;  // tokens per SSD chunk (the CPU scan's default)

// One chunk of a prefill run: tokens [t0, t0 + len) of runs[run] (len <= kSsdChunk). `first[i]`.. for prefill
// run i are its chunks, in order: the engine lists them run by run.
struct ScanChunk {
  int32_t run = 0;
  int32_t t0 = 0;
  int32_t len = 0;
  int32_t pad = 0;
};

// fp32 workspace for n_chunks chunks.
int64_t ssd_scan_workspace_floats(const SsmArgs& a, int64_t n_chunks);

// Prefill runs runs[run_ids[i]], i < n_ids, whose chunks are chunks[chunk_first[i] .. chunk_first[i + 1])
// (chunk_first: device [n_ids + 1]; n_chunks = chunk_first[n_ids], also known on the host).
void ssd_scan(const float* xbc, int64_t ld_xbc, const float* dt_raw, int64_t ld_dt, const SsmArgs& a,
              const DevRun* runs, const int32_t* run_ids, int64_t n_ids, const ScanChunk* chunks,
              const int32_t* chunk_first, int64_t n_chunks, const DevStates& states, float* workspace, float* y,
              int64_t ld_y, cudaStream_t stream);

// Decode runs (n == 1). Padding runs write zero outputs and keep no state.
void ssm_step(const float* xbc, int64_t ld_xbc, const float* dt_raw, int64_t ld_dt, const SsmArgs& a,
              const DevRun* runs, const int32_t* run_ids, int64_t n_ids, const DevStates& states, float* y,
              int64_t ld_y, cudaStream_t stream);

}  // namespace zebra::cuda
