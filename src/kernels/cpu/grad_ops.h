// Backward passes of the CPU ops in ops.h (the distillation trainer's building blocks). Same conventions:
// row-major, a row is one token, linear weights [out, in]. Every gradient output ACCUMULATES (+=) so a
// tensor read by several consumers (the residual stream, a weight used twice) just sums its parts; pass
// nullptr for a gradient you do not need. The CUDA backend will provide the same signatures.
#pragma once
#include <cstdint>

namespace zebra::cpu {

// Forward y[T, out] = x[T, in] · W[out, in]^T.
// dx[T, in] += dy[T, out] · W[out, in];   dw[out, in] += dy[T, out]^T · x[T, in].
void linear_backward(const float* x, const float* w, const float* dy, int64_t T, int64_t in, int64_t out, float* dx,
                     float* dw);

// Forward y[M, N] = a[M, K] · b[K, N].   da[M, K] += dy · b^T;   db[K, N] += a^T · dy.
void matmul_backward(const float* a, const float* b, const float* dy, int64_t M, int64_t K, int64_t N, float* da,
                     float* db);

// Forward y[t] = w * x[t] * r_t, r_t = 1/sqrt(mean(x[t]^2) + eps), T rows of n.
// dx[t] += r_t * (w*dy[t]) - x[t] * r_t^3 / n * sum_i(w_i dy_i x_i);   dw += sum_t dy[t] * x[t] * r_t.
void rmsnorm_backward(const float* x, const float* w, const float* dy, int64_t T, int64_t n, float eps, float* dx,
                      float* dw);

// Forward out = silu(gate) * up, elementwise over n.
void silu_mul_backward(const float* gate, const float* up, const float* dout, int64_t n, float* dgate, float* dup);

// Forward y = softmax(x) over n values (y given). dx += y * (dy - sum(dy * y)).
void softmax_backward(const float* y, const float* dy, int64_t n, float* dx);

// Forward: embedding lookup x[t] = E[tokens[t]]. dE[tokens[t]] += dx[t].
void embedding_backward(const int32_t* tokens, const float* dx, int64_t T, int64_t dim, float* dE);

// Forward: HF rotate-half RoPE (ops.h rope_rotate_half). The rotation is orthogonal, so the backward
// rotates the incoming gradient by the opposite angle, in place: dx = R(-angle) dy.
void rope_rotate_half_backward(float* dy, const float* cos, const float* sin, int64_t d);

}  // namespace zebra::cpu
