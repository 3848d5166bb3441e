// Sampling on the GPU, exactly as model/sampler.cpp chooses (the uniform draw u comes from the host Sampler's
// draw_uniform, so both devices consume one random stream): greedy = first argmax; otherwise the top-k
// candidates (radix select over the row, then a sort by logit, ties by lower id), softmax at the temperature in
// double, min-p, top-p, and the first candidate whose cumulative mass reaches u * kept mass. Only the chosen ids
// leave the device.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

constexpr int64_t kMaxSampleTopK = 1024;  // rows needing more candidates are sampled on the host

struct SampleParams {
  float temperature = 0.0f;  // <= 0: greedy (u unused)
  int32_t top_k = 0;         // effective k: 1..min(vocab, kMaxSampleTopK) (the host resolves "disabled" = vocab)
  float top_p = 1.0f;
  float min_p = 0.0f;
  double u = 0.0;
};

// ids[i] = the token row i of logits ([m, ld], vocab wide) samples with params[i] (both on the device).
void sample_rows(const float* logits, int64_t ld, int64_t vocab, const SampleParams* params, int64_t m, int32_t* ids,
                 cudaStream_t stream);

}  // namespace zebra::cuda
