#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/paged_cache.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 128;

template <class T>
__global__ void write_kernel(const float* src, int64_t ld_src, int width, const int32_t* row_run, const int32_t* pos,
                             const DevRun* runs, DevPaged<T> layer) {
  const int64_t t = blockIdx.x;
  const int32_t r = row_run[t];
  if (r < 0 || runs[r].seq < 0) return;
  T* dst = layer.row(r, pos[t]);
  const float* s = src + t * ld_src;
  for (int i = threadIdx.x; i < width; i += kThreads) dst[i] = from_float<T>(s[i]);
}

template <class T>
__global__ void gather_kernel(DevPaged<T> layer, int32_t run, int width, T* dst, int64_t ld_dst) {
  const int64_t p = blockIdx.x;
  const T* s = layer.row(run, p);
  for (int i = threadIdx.x; i < width; i += kThreads) dst[p * ld_dst + i] = s[i];
}

template <class T>
void check_layer(const DevPaged<T>& l, int64_t width, const char* op) {
  ZEBRA_CHECK(l.base && l.tables && l.block_tokens > 0 && l.table_stride > 0 && width > 0 && width <= l.row_elems &&
                  l.row_elems <= l.row_stride && l.row_stride * l.block_tokens <= l.block_stride,
              op, ": bad paged layer (width ", width, ", row ", l.row_elems, "/", l.row_stride, ", block ",
              l.block_tokens, " x ", l.block_stride, ")");
}

}  // namespace

template <class T>
void paged_cache_write(const float* src, int64_t ld_src, int64_t width, int64_t rows, const int32_t* row_run,
                       const int32_t* pos, const DevRun* runs, const DevPaged<T>& layer, cudaStream_t stream) {
  check_layer(layer, width, "paged_cache_write");
  ZEBRA_CHECK(ld_src >= width && rows >= 0, "paged_cache_write: ld_src ", ld_src, " < width ", width);
  if (rows == 0) return;
  check_grid(rows, 1, 1, "paged_cache_write");
  write_kernel<T><<<(unsigned)rows, kThreads, 0, stream>>>(src, ld_src, (int)width, row_run, pos, runs, layer);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template <class T>
void paged_gather(const DevPaged<T>& layer, int32_t run, int64_t n_pos, int64_t width, T* dst, int64_t ld_dst,
                  cudaStream_t stream) {
  check_layer(layer, width, "paged_gather");
  ZEBRA_CHECK(run >= 0 && n_pos >= 0 && ld_dst >= width, "paged_gather: run ", run, " n_pos ", n_pos, " ld_dst ",
              ld_dst, " width ", width);
  if (n_pos == 0) return;
  check_grid(n_pos, 1, 1, "paged_gather");
  gather_kernel<T><<<(unsigned)n_pos, kThreads, 0, stream>>>(layer, run, (int)width, dst, ld_dst);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void paged_cache_write<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, const int32_t*,
                                       const DevRun*, const DevPaged<float>&, cudaStream_t);
template void paged_cache_write<bf16>(const float*, int64_t, int64_t, int64_t, const int32_t*, const int32_t*,
                                      const DevRun*, const DevPaged<bf16>&, cudaStream_t);
template void paged_gather<float>(const DevPaged<float>&, int32_t, int64_t, int64_t, float*, int64_t, cudaStream_t);
template void paged_gather<bf16>(const DevPaged<bf16>&, int32_t, int64_t, int64_t, bf16*, int64_t, cudaStream_t);

}  // namespace zebra::cuda
