#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/swiglu.cuh"

namespace zebra::cuda {

namespace {

template <class T>
__global__ void swiglu_kernel(const T* gate, const T* up, int64_t ld_in, T* out, int64_t ld_out, int n) {
  const int64_t t = blockIdx.y;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = to_float(gate[t * ld_in + i]);
  out[t * ld_out + i] = from_float<T>(g / (1.0f + expf(-g)) * to_float(up[t * ld_in + i]));
}

}  // namespace

template <class T>
void swiglu(const T* gate, const T* up, int64_t ld_in, T* out, int64_t ld_out, int64_t rows, int64_t n,
            cudaStream_t stream) {
  ZEBRA_CHECK(rows >= 0 && n > 0 && ld_in >= n && ld_out >= n, "swiglu: bad shape rows ", rows, " n ", n, " ld_in ",
              ld_in, " ld_out ", ld_out);
  if (rows == 0) return;
  constexpr int kThreads = 256;
  check_grid(ceil_div(n, kThreads), rows, 1, "swiglu");
  swiglu_kernel<T><<<dim3((unsigned)ceil_div(n, kThreads), (unsigned)rows), kThreads, 0, stream>>>(gate, up, ld_in, out,
                                                                                                  ld_out, (int)n);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void swiglu<float>(const float*, const float*, int64_t, float*, int64_t, int64_t, int64_t, cudaStream_t);
template void swiglu<bf16>(const bf16*, const bf16*, int64_t, bf16*, int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace zebra::cuda
