#include "kernels/cpu/grad_ops.h"

#include <cblas.h>

#include <cmath>
#include <vector>

namespace zebra::cpu {

void linear_backward(const float* x, const float* w, const float* dy, int64_t T, int64_t in, int64_t out, float* dx,
                     float* dw) {
  // dx[T, in] += dy[T, out] · W[out, in]
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)in, (int)out, 1.0f, dy, (int)out, w, (int)in,
                1.0f, dx, (int)in);
  // dW[out, in] += dy^T[out, T] · x[T, in]
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)T, 1.0f, dy, (int)out, x, (int)in,
                1.0f, dw, (int)in);
}

void matmul_backward(const float* a, const float* b, const float* dy, int64_t M, int64_t K, int64_t N, float* da,
                     float* db) {
  // da[M, K] += dy[M, N] · b^T[N, K]
  if (da)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)K, (int)N, 1.0f, dy, (int)N, b, (int)N, 1.0f,
                da, (int)K);
  // db[K, N] += a^T[K, M] · dy[M, N]
  if (db)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, 1.0f, a, (int)K, dy, (int)N, 1.0f,
                db, (int)N);
}

void rmsnorm_backward(const float* x, const float* w, const float* dy, int64_t T, int64_t n, float eps, float* dx,
                      float* dw) {
  std::vector<float> inv(T);
#pragma omp parallel for if (T > 4)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += (double)xr[i] * xr[i];
    const float r = 1.0f / std::sqrt((float)(ss / n) + eps);
    inv[t] = r;
    if (!dx) continue;
    const float* g = dy + t * n;
    double s = 0.0;  // sum_i w_i dy_i x_i
    for (int64_t i = 0; i < n; ++i) s += (double)w[i] * g[i] * xr[i];
    const float c = (float)(s * r * r * r / n);
    float* d = dx + t * n;
    for (int64_t i = 0; i < n; ++i) d[i] += r * w[i] * g[i] - c * xr[i];
  }
  if (dw)  // a reduction over tokens: kept serial per column block so the sum order is fixed
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = x + t * n;
      const float* g = dy + t * n;
      for (int64_t i = 0; i < n; ++i) dw[i] += g[i] * xr[i] * inv[t];
    }
}

void silu_mul_backward(const float* gate, const float* up, const float* dout, int64_t n, float* dgate, float* dup) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * s;
    if (dgate) dgate[i] += dout[i] * up[i] * s * (1.0f + g * (1.0f - s));
    if (dup) dup[i] += dout[i] * silu;
  }
}

void softmax_backward(const float* y, const float* dy, int64_t n, float* dx) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += (double)dy[i] * y[i];
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] * (dy[i] - (float)s);
}

void embedding_backward(const int32_t* tokens, const float* dx, int64_t T, int64_t dim, float* dE) {
  for (int64_t t = 0; t < T; ++t) {
    float* row = dE + (int64_t)tokens[t] * dim;
    const float* g = dx + t * dim;
    for (int64_t i = 0; i < dim; ++i) row[i] += g[i];
  }
}

void rope_rotate_half_backward(float* dy, const float* cos, const float* sin, int64_t d) {
  // Forward: (a, b) -> (a cos - b sin, b cos + a sin). Its transpose: (ga, gb) -> (ga cos + gb sin, gb cos - ga sin).
  const int64_t h = d / 2;
  for (int64_t i = 0; i < h; ++i) {
    const float ga = dy[i], gb = dy[i + h];
    dy[i] = ga * cos[i] + gb * sin[i];
    dy[i + h] = gb * cos[i] - ga * sin[i];
  }
}

}  // namespace zebra::cpu
