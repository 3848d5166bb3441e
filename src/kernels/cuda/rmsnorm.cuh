// rmsnorm, residual_rmsnorm (the CUDA side of kernels/cpu's rmsnorm.h): fp32 rows in, rows of the GEMM input
// type out (bf16 or fp32), y = w * (x / sqrt(mean(x²) + eps)). With the residual adds fused into the GEMMs
// (beta = 1) the engine mostly needs the plain norm; residual_rmsnorm is the fused add for other callers.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

// y[t, :n] = rmsnorm(x[t, :n]) * w for t < rows. Leading dimensions in elements; y may alias x (Out = float).
template <class Out>
void rmsnorm(const float* x, int64_t ldx, const float* w, Out* y, int64_t ldy, int64_t rows, int64_t n, float eps,
             cudaStream_t stream);

// x[t] += r[t]; y[t] = rmsnorm(x[t]) * w.
template <class Out>
void residual_rmsnorm(float* x, int64_t ldx, const float* r, int64_t ldr, const float* w, Out* y, int64_t ldy,
                      int64_t rows, int64_t n, float eps, cudaStream_t stream);

}  // namespace zebra::cuda
