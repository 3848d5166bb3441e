// Element types of the CUDA engine's device arrays, usable from host code compiled by the C++ compiler:
// weights, GEMM inputs and caches are stored as bf16 (or fp32 with --dtype f32); the residual stream, norms,
// Mamba2 states and every accumulation are fp32.
#pragma once
#include <cstdint>
#include <cstring>

namespace zebra::cuda {

// bf16 storage: the upper 16 bits of an IEEE fp32. Host code only moves and converts these; device code reads
// them through device_common.cuh's to_float/from_float (the same bits as __nv_bfloat16).
struct bf16 {
  uint16_t bits = 0;
};
static_assert(sizeof(bf16) == 2, "bf16 must be two bytes");

// Round to nearest even, as __float2bfloat16_rn does; NaN stays a (quiet) NaN.
inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

inline float from_bf16(bf16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

enum class DType : uint8_t { F32, BF16 };
inline int64_t dtype_bytes(DType t) { return t == DType::F32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::F32 ? "f32" : "bf16"; }

// The DType of a storage type (float or bf16).
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::F32; }
template <>
constexpr DType dtype_of<bf16>() { return DType::BF16; }

// Host conversion into a storage type (fp32 passes through).
template <class T>
inline T from_f32(float f);
template <>
inline float from_f32<float>(float f) { return f; }
template <>
inline bf16 from_f32<bf16>(float f) { return to_bf16(f); }
inline float to_f32(float f) { return f; }
inline float to_f32(bf16 b) { return from_bf16(b); }

}  // namespace zebra::cuda
