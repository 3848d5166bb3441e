// Storage data types found in checkpoint files, and conversion of stored rows to fp32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace zebra {

enum class DType {
  F32, F16, BF16, F64, I8, I16, I32, I64, U8, BOOL,
  // llama.cpp block-quantised formats (GGUF).
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
};

std::string dtype_name(DType t);
// Elements per block (1 for plain types) and bytes per block.
int64_t dtype_block_size(DType t);
int64_t dtype_block_bytes(DType t);
// Bytes needed for n elements; n must be a multiple of the block size (throws otherwise).
size_t dtype_row_bytes(DType t, int64_t n);
bool dtype_is_float_like(DType t);  // can be converted to fp32 by to_f32()

// Convert n stored elements starting at src into fp32 (dequantising blocks). n must be a multiple of the
// block size. Integer and bool types are not convertible (throws).
void to_f32(DType t, const void* src, float* dst, int64_t n);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace zebra
