// gated_rmsnorm (kernels/cpu's gated_rmsnorm.h): Mamba2's output norm (norm_before_gate = False, spec §1.4):
// g = y * silu(z), then RMSNorm over each head's head_dim contiguous channels, times w.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

// out[t, h*P + p] = g[t, h*P + p] / sqrt(mean_p(g[t, h*P..]²) + eps) * w[h*P + p], g = y * silu(z).
template <class Out>
void gated_rmsnorm(const float* y, int64_t ld_y, const float* z, int64_t ld_z, const float* w, Out* out, int64_t ld_out,
                   int64_t rows, int64_t n_heads, int64_t head_dim, float eps, cudaStream_t stream);

}  // namespace zebra::cuda
