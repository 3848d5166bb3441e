// rope_rotate_half, rope_interleaved (kernels/cpu's rope.h): rotary embedding of n_heads vectors per row,
// angle(row, i) = pos[row] * inv_freq[i] in fp32 (as transformers and the CPU layers compute it), cos and sin
// multiplied by `scale` (yarn's attention factor / MLA's mscale). Reads fp32, writes fp32 or the storage type.
// Head h of row t is the dim-wide vector at in + t * ld_in + h * head_stride (same offsets in out).
// in == out (with equal strides) rotates in place.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

struct RopeArgs {
  int64_t rows = 0;
  int64_t n_heads = 0;
  int64_t dim = 0;          // rotated width per head (even)
  int64_t head_stride = 0;  // elements between heads of one row
  float scale = 1.0f;
  const int32_t* pos = nullptr;       // device [rows]
  const float* inv_freq = nullptr;    // device [dim / 2]
};

// Llama's rotate-half: pairs (i, i + dim/2).
template <class Out>
void rope_rotate_half(const float* in, int64_t ld_in, Out* out, int64_t ld_out, const RopeArgs& a, cudaStream_t stream);

// MLA's interleaved pairs (2j, 2j+1), written in split-half order: out[j] = rotated x[2j], out[dim/2 + j] =
// rotated x[2j+1] (the reference's layout, which the latent cache stores).
template <class Out>
void rope_interleaved(const float* in, int64_t ld_in, Out* out, int64_t ld_out, const RopeArgs& a, cudaStream_t stream);

}  // namespace zebra::cuda
