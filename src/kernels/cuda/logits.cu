#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/logits.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void gather_kernel(const float* src, int64_t ld_src, const int32_t* idx, int width, float* dst,
                              int64_t ld_dst) {
  const int64_t i = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < width) dst[i * ld_dst + c] = src[static_cast<int64_t>(idx[i]) * ld_src + c];
}

template <class T>
__global__ void cast_kernel(const float* src, int64_t ld_src, T* dst, int64_t ld_dst, int n) {
  const int64_t t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < n) dst[t * ld_dst + c] = from_float<T>(src[t * ld_src + c]);
}

}  // namespace

void gather_rows(const float* src, int64_t ld_src, const int32_t* idx, int64_t m, int64_t width, float* dst,
                 int64_t ld_dst, cudaStream_t stream) {
  ZEBRA_CHECK(m >= 0 && width > 0 && ld_src >= width && ld_dst >= width, "gather_rows: bad shape m ", m, " width ",
              width, " ld_src ", ld_src, " ld_dst ", ld_dst);
  if (m == 0) return;
  check_grid(ceil_div(width, kThreads), m, 1, "gather_rows");
  gather_kernel<<<dim3((unsigned)ceil_div(width, kThreads), (unsigned)m), kThreads, 0, stream>>>(src, ld_src, idx,
                                                                                                (int)width, dst, ld_dst);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template <class T>
void cast_rows(const float* src, int64_t ld_src, T* dst, int64_t ld_dst, int64_t rows, int64_t n, cudaStream_t stream) {
  ZEBRA_CHECK(rows >= 0 && n > 0 && ld_src >= n && ld_dst >= n, "cast_rows: bad shape rows ", rows, " n ", n);
  if (rows == 0) return;
  check_grid(ceil_div(n, kThreads), rows, 1, "cast_rows");
  cast_kernel<T><<<dim3((unsigned)ceil_div(n, kThreads), (unsigned)rows), kThreads, 0, stream>>>(src, ld_src, dst,
                                                                                                ld_dst, (int)n);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void cast_rows<float>(const float*, int64_t, float*, int64_t, int64_t, int64_t, cudaStream_t);
template void cast_rows<bf16>(const float*, int64_t, bf16*, int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace zebra::cuda
