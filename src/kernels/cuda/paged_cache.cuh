// The paged caches' row movers: writing a forward's new K|V or latent rows at their (run, position), and
// gathering one run's rows back into a dense matrix (the decompressed MLA prefill's GEMM input).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_views.h"

namespace zebra::cuda {

// For every row t < rows with r = row_run[t] >= 0 and runs[r].seq >= 0 (padding rows are skipped: they must never
// write a real sequence's cache): layer.row(r, pos[t])[0, width) = src[t, 0, width) converted to T.
template <class T>
void paged_cache_write(const float* src, int64_t ld_src, int64_t width, int64_t rows, const int32_t* row_run,
                       const int32_t* pos, const DevRun* runs, const DevPaged<T>& layer, cudaStream_t stream);

// dst[p, 0, width) = layer.row(run, p)[0, width) for p < n_pos (run: an index into the tables' rows).
template <class T>
void paged_gather(const DevPaged<T>& layer, int32_t run, int64_t n_pos, int64_t width, T* dst, int64_t ld_dst,
                  cudaStream_t stream);

}  // namespace zebra::cuda
