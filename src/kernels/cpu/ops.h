// CPU fp32 numeric ops called by the layers. The CUDA backend will provide the same signatures.
// Conventions: row-major; a "row" is one token's vector; linear weights are [out, in] (PyTorch).
#pragma once
#include <cstdint>

namespace zebra::cpu {

// Sets the worker threads of OpenBLAS and OpenMP (0 = leave the defaults).
void set_num_threads(int n);
int num_threads();

// y[T, out] = x[T, in] · W[out, in]^T  (+ y if accumulate)
void matmul_wt(const float* x, const float* w, float* y, int64_t T, int64_t in, int64_t out,
               bool accumulate = false);
// y[M, N] = a[M, K] · b[K, N]  (+ y if accumulate)
void matmul(const float* a, const float* b, float* y, int64_t M, int64_t K, int64_t N, bool accumulate = false);

// y[t] = w * x[t] / sqrt(mean(x[t]^2) + eps) for T rows of n.
void rmsnorm(const float* x, const float* w, float* y, int64_t T, int64_t n, float eps);
// out[i] = silu(gate[i]) * up[i]
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);
// In-place softmax over n values; returns nothing. Numerically stable (max subtracted).
void softmax_inplace(float* x, int64_t n);
float dot(const float* a, const float* b, int64_t n);
// y[i] += a * x[i]
void axpy(float a, const float* x, float* y, int64_t n);

// HF "rotate-half" RoPE on one head vector of size d: pairs (i, i + d/2) rotated by angle with
// cos[i], sin[i] (i < d/2).
void rope_rotate_half(float* x, const float* cos, const float* sin, int64_t d);

// log(sum(exp(x))) over n values.
float logsumexp(const float* x, int64_t n);

}  // namespace zebra::cpu
