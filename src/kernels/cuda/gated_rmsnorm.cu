#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/gated_rmsnorm.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 256;

// One block per row; a warp per head, lanes over its channels (two passes over them: sum of squares, then scale).
template <class Out>
__global__ void __launch_bounds__(kThreads) gated_kernel(const float* y, int64_t ld_y, const float* z, int64_t ld_z,
                                                         const float* w, Out* out, int64_t ld_out, int n_heads, int P,
                                                         float eps) {
  const int64_t t = blockIdx.x;
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int h = wid; h < n_heads; h += kThreads / 32) {
    const float* yr = y + t * ld_y + static_cast<int64_t>(h) * P;
    const float* zr = z + t * ld_z + static_cast<int64_t>(h) * P;
    float ss = 0.0f;
    for (int p = lane; p < P; p += 32) {
      const float g = yr[p] * silu(zr[p]);
      ss += g * g;
    }
    ss = warp_sum(ss);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(P) + eps);
    Out* o = out + t * ld_out + static_cast<int64_t>(h) * P;
    for (int p = lane; p < P; p += 32) {
      const float g = yr[p] * silu(zr[p]);
      o[p] = from_float<Out>(g * inv * w[h * P + p]);
    }
  }
}

}  // namespace

template <class Out>
void gated_rmsnorm(const float* y, int64_t ld_y, const float* z, int64_t ld_z, const float* w, Out* out, int64_t ld_out,
                   int64_t rows, int64_t n_heads, int64_t head_dim, float eps, cudaStream_t stream) {
  const int64_t n = n_heads * head_dim;
  ZEBRA_CHECK(rows >= 0 && n_heads > 0 && head_dim > 0 && ld_y >= n && ld_z >= n && ld_out >= n && y && z && w && out,
              "gated_rmsnorm: bad arguments (rows ", rows, ", heads ", n_heads, ", head_dim ", head_dim, ")");
  if (rows == 0) return;
  check_grid(rows, 1, 1, "gated_rmsnorm");
  gated_kernel<Out><<<(unsigned)rows, kThreads, 0, stream>>>(y, ld_y, z, ld_z, w, out, ld_out, (int)n_heads,
                                                            (int)head_dim, eps);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void gated_rmsnorm<float>(const float*, int64_t, const float*, int64_t, const float*, float*, int64_t, int64_t,
                                   int64_t, int64_t, float, cudaStream_t);
template void gated_rmsnorm<bf16>(const float*, int64_t, const float*, int64_t, const float*, bf16*, int64_t, int64_t,
                                  int64_t, int64_t, float, cudaStream_t);

}  // namespace zebra::cuda
