// logits row gather and casts: the final norm and LM head run only over the rows that asked for logits, gathered
// into a dense block first.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

// dst[i, 0, width) = src[idx[i], 0, width) for i < m (idx on the device).
void gather_rows(const float* src, int64_t ld_src, const int32_t* idx, int64_t m, int64_t width, float* dst,
                 int64_t ld_dst, cudaStream_t stream);

// dst[t, 0, n) = src[t, 0, n) converted to T (fp32 -> bf16, or a strided fp32 copy).
template <class T>
void cast_rows(const float* src, int64_t ld_src, T* dst, int64_t ld_dst, int64_t rows, int64_t n, cudaStream_t stream);

}  // namespace zebra::cuda
