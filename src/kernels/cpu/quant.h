// Linear layers over weights kept in their GGUF blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K):
// the activations are quantised to 8 bits once per call and each output is an integer dot product per
// block, scaled in fp32. SIMD kernels (AVX2, AVX-512 VNNI) are chosen at run time; every path gives the
// same bits as the portable scalar one (quant_kernels.h says how).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/dtype.h"

namespace zebra::cpu {

// A weight matrix [rows, cols] (a linear weight [out, in]) in GGUF blocks: row r is the cols / block_size
// blocks at blocks + r * row_bytes(). The blocks belong to `storage` when it is set, else to whoever
// handed them out (a mapped file), which must outlive the matrix.
struct QuantMatrix {
  DType type = DType::Q8_0;
  int64_t rows = 0, cols = 0;
  const uint8_t* blocks = nullptr;
  std::shared_ptr<const std::vector<uint8_t>> storage;

  size_t row_bytes() const { return dtype_row_bytes(type, cols); }
  size_t nbytes() const { return static_cast<size_t>(rows) * row_bytes(); }
};

// The block types quant_linear runs on.
bool quant_supported(DType t);

// w [rows, cols] quantised to `type` with io/quantize's reference quantisers, owning its blocks.
QuantMatrix quantize_matrix(const float* w, int64_t rows, int64_t cols, DType type);
// Row r dequantised: out [cols].
void dequantize_row(const QuantMatrix& W, int64_t r, float* out);

// y[T, rows] = x[T, cols] · W^T. x is quantised per row to 8-bit blocks (32 elements with an fp32 scale
// for the 32-element types, 256 with per-16 sums for the K types), then each y is a sum over blocks of
// integer dots times the two scales. Parallel over output rows (and row tiles of x when T > 1).
// `scratch`, when given, holds quant_scratch_bytes(W.type, T, W.cols) bytes for the quantised
// activations (then nothing is allocated); without it a per-thread buffer is grown as needed.
void quant_linear(const float* x, const QuantMatrix& W, float* y, int64_t T, uint8_t* scratch = nullptr);
size_t quant_scratch_bytes(DType type, int64_t T, int64_t cols);

// The kernel path this CPU runs ("avx512-vnni", "avx2" or "scalar").
const char* quant_kernel_name();

}  // namespace zebra::cpu
