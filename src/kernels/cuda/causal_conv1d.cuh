// causal_conv1d, causal_conv1d_step (kernels/cpu's causal_conv1d.h): Mamba2's depthwise causal convolution of
// the x|B|C channels, with SiLU, continuing each sequence's conv window (the d_conv - 1 previous inputs kept in
// its state slot: DevStates, [channels][d_conv - 1], oldest first). A run at pos0 == 0 starts from a zero window.
//   out[t, c] = silu(b[c] + Σ_k w[c, k] · in[t - (K - 1) + k, c])   (in[< 0] from the window)
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_views.h"

namespace zebra::cuda {

struct ConvArgs {
  int64_t channels = 0;  // conv_dim
  int64_t d_conv = 0;    // K (<= 8)
  const float* w = nullptr;  // [channels][K]
  const float* b = nullptr;  // [channels]
  bool silu = true;
};

// Prefill runs runs[run_ids[i]] (i < n_ids; max_n >= each one's n): in row t holds the conv inputs at
// in + t * ld_in; outputs to out + t * ld_out. Then each run's window becomes its last K - 1 inputs.
void causal_conv1d(const float* in, int64_t ld_in, const ConvArgs& a, const DevRun* runs, const int32_t* run_ids,
                   int64_t n_ids, int64_t max_n, const DevStates& states, float* out, int64_t ld_out,
                   cudaStream_t stream);

// One token per run (runs of n == 1): output and window update fused. Padding runs write zeros and keep no state.
void causal_conv1d_step(const float* in, int64_t ld_in, const ConvArgs& a, const DevRun* runs, const int32_t* run_ids,
                        int64_t n_ids, const DevStates& states, float* out, int64_t ld_out, cudaStream_t stream);

}  // namespace zebra::cuda
