#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/embedding.cuh"

namespace zebra::cuda {

namespace {

template <class T>
__global__ void embedding_kernel(const T* embed, int64_t vocab, int hidden, const int32_t* tokens, float* x,
                                 int64_t ldx) {
  const int64_t t = blockIdx.y;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= hidden) return;
  const int32_t id = tokens[t];
  x[t * ldx + i] = (id >= 0 && id < vocab) ? to_float(embed[static_cast<int64_t>(id) * hidden + i]) : __int_as_float(0x7fc00000);
}

}  // namespace

template <class T>
void embedding_gather(const T* embed, int64_t vocab, int64_t hidden, const int32_t* tokens, int64_t rows, float* x,
                      int64_t ldx, cudaStream_t stream) {
  ZEBRA_CHECK(vocab > 0 && hidden > 0 && rows >= 0 && ldx >= hidden, "embedding_gather: bad shape vocab ", vocab,
              " hidden ", hidden, " rows ", rows, " ldx ", ldx);
  if (rows == 0) return;
  constexpr int kThreads = 256;
  check_grid(ceil_div(hidden, kThreads), rows, 1, "embedding_gather");
  embedding_kernel<T><<<dim3((unsigned)ceil_div(hidden, kThreads), (unsigned)rows), kThreads, 0, stream>>>(
      embed, vocab, (int)hidden, tokens, x, ldx);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void embedding_gather<float>(const float*, int64_t, int64_t, const int32_t*, int64_t, float*, int64_t, cudaStream_t);
template void embedding_gather<bf16>(const bf16*, int64_t, int64_t, const int32_t*, int64_t, float*, int64_t, cudaStream_t);

}  // namespace zebra::cuda
