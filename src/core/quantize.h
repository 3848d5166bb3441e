// fp32 -> GGUF block quantisers for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: the inverse of the
// dequantisers in io/dtype. They follow ggml's reference quantisers (quantize_row_*_ref, the ones
// llama-quantize runs when it has no importance matrix) operation for operation, including the K-quants'
// iterative scale search, in plain IEEE single precision without fused multiply-adds (ggml builds them
// without -march, so the arithmetic is the same), so the blocks equal what llama.cpp writes.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace zebra {

// The block types above.
bool dtype_is_quantizable(DType t);

// Quantises n fp32 values into dtype_row_bytes(t, n) bytes of t blocks at dst; n must be a multiple of
// the block size. Every value must be finite (throws zebra::Error naming the first bad element).
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// src [rows, n] -> rows rows of blocks, each dtype_row_bytes(t, n) bytes; rows run in parallel.
void quantize_rows(DType t, const float* src, void* dst, int64_t rows, int64_t n);

}  // namespace zebra
