// One block per row: the sum of squares reduced over the block, then each thread scales the elements it read.
#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 256;

template <class Out, bool kResidual>
__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(float* x, int64_t ldx, const float* r, int64_t ldr,
                                                           const float* w, Out* y, int64_t ldy, int n, float eps) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  float* xr = x + t * ldx;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    float v = xr[i];
    if constexpr (kResidual) {
      v += r[t * ldr + i];
      xr[i] = v;
    }
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  Out* yr = y + t * ldy;
  for (int i = threadIdx.x; i < n; i += kThreads) yr[i] = from_float<Out>(w[i] * (xr[i] * inv));
}

void check_args(int64_t rows, int64_t n, int64_t ldx, int64_t ldy, const char* op) {
  ZEBRA_CHECK(rows >= 0 && n > 0 && ldx >= n && ldy >= n && n <= (int64_t(1) << 30), op, ": bad shape rows ", rows,
              " n ", n, " ldx ", ldx, " ldy ", ldy);
}

}  // namespace

template <class Out>
void rmsnorm(const float* x, int64_t ldx, const float* w, Out* y, int64_t ldy, int64_t rows, int64_t n, float eps,
             cudaStream_t stream) {
  check_args(rows, n, ldx, ldy, "rmsnorm");
  if (rows == 0) return;
  check_grid(rows, 1, 1, "rmsnorm");
  rmsnorm_kernel<Out, false><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(const_cast<float*>(x), ldx, nullptr,
                                                                                   0, w, y, ldy, (int)n, eps);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template <class Out>
void residual_rmsnorm(float* x, int64_t ldx, const float* r, int64_t ldr, const float* w, Out* y, int64_t ldy,
                      int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  check_args(rows, n, ldx, ldy, "residual_rmsnorm");
  ZEBRA_CHECK(ldr >= n, "residual_rmsnorm: ldr ", ldr, " < n ", n);
  if (rows == 0) return;
  check_grid(rows, 1, 1, "residual_rmsnorm");
  rmsnorm_kernel<Out, true><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, ldx, r, ldr, w, y, ldy, (int)n, eps);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void rmsnorm<float>(const float*, int64_t, const float*, float*, int64_t, int64_t, int64_t, float, cudaStream_t);
template void rmsnorm<bf16>(const float*, int64_t, const float*, bf16*, int64_t, int64_t, int64_t, float, cudaStream_t);
template void residual_rmsnorm<float>(float*, int64_t, const float*, int64_t, const float*, float*, int64_t, int64_t,
                                      int64_t, float, cudaStream_t);
template void residual_rmsnorm<bf16>(float*, int64_t, const float*, int64_t, const float*, bf16*, int64_t, int64_t,
                                     int64_t, float, cudaStream_t);

}  // namespace zebra::cuda
