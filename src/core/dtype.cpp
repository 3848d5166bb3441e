#include "core/dtype.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "core/error.h"

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

// Dequantisation must round `d * q + m` twice (multiply, then add), exactly as ggml's reference C and
// the gguf Python package do; a fused multiply-add would round once and differ in the last bit. GCC
// contracts across statements under -march=native unless told not to.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace zebra {

static_assert(std::endian::native == std::endian::little, "storage formats are little-endian");

namespace {

constexpr int64_t QK = 32;    // elements per block of the 32-element formats
constexpr int64_t QK_K = 256; // elements per K-quant super-block

// Byte sizes of ggml's block structs (ggml-common.h).
constexpr int64_t Q4_0_BYTES = 2 + QK / 2;                           // d, qs[16]
constexpr int64_t Q4_1_BYTES = 2 + 2 + QK / 2;                       // d, m, qs[16]
constexpr int64_t Q5_0_BYTES = 2 + 4 + QK / 2;                       // d, qh[4], qs[16]
constexpr int64_t Q5_1_BYTES = 2 + 2 + 4 + QK / 2;                   // d, m, qh[4], qs[16]
constexpr int64_t Q8_0_BYTES = 2 + QK;                               // d, qs[32]
constexpr int64_t Q4_K_BYTES = 2 + 2 + 12 + QK_K / 2;                // d, dmin, scales[12], qs[128]
constexpr int64_t Q5_K_BYTES = 2 + 2 + 12 + QK_K / 8 + QK_K / 2;     // + qh[32]
constexpr int64_t Q6_K_BYTES = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;  // ql[128], qh[64], scales[16], d

// Above this many blocks the conversion loops fan out over OpenMP threads.
constexpr int64_t PARALLEL_BLOCKS = 1024;

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// One block of each format: src points at the block, y receives its elements.
void block_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < QK / 2; ++j) {
    y[j] = static_cast<float>((qs[j] & 0xF) - 8) * d;
    y[j + QK / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void block_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < QK / 2; ++j) {
    y[j] = static_cast<float>(qs[j] & 0xF) * d + m;
    y[j + QK / 2] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

void block_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);  // bit j is the fifth bit of element j
  const uint8_t* qs = b + 6;
  for (int j = 0; j < QK / 2; ++j) {
    int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
    y[j] = static_cast<float>(((qs[j] & 0xF) | h0) - 16) * d;
    y[j + QK / 2] = static_cast<float>(((qs[j] >> 4) | h1) - 16) * d;
  }
}

void block_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < QK / 2; ++j) {
    int h0 = ((qh >> j) & 1) << 4, h1 = ((qh >> (j + 16)) & 1) << 4;
    y[j] = static_cast<float>((qs[j] & 0xF) | h0) * d + m;
    y[j + QK / 2] = static_cast<float>((qs[j] >> 4) | h1) * d + m;
  }
}

void block_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q4_K: 8 sub-blocks of 32; each 64 elements share 32 bytes of qs (low nibbles, then high nibbles).
void block_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
    int sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) y[j + l] = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) y[j + 32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

// Q5_K: as Q4_K plus a fifth bit per element from qh (bit pair (2i, 2i+1) for the i-th 64 elements).
void block_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    int sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l)
      y[j + l] = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      y[j + 32 + l] = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
  }
}

// Q6_K: two halves of 128; each uses 64 bytes of ql (4 low bits), 32 of qh (2 high bits) and 8 int8 scales.
void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + QK_K / 2;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + QK_K / 2 + QK_K / 4);
  const float d = load_f16(b + QK_K / 2 + QK_K / 4 + QK_K / 16);
  for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[n + l] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[n + l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[n + l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[n + l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

// Runs fn(block_src, block_dst) over all blocks, in parallel for large inputs. fn is a lambda so the
// block body inlines into the loop.
template <class Fn>
void for_blocks(const void* src, float* dst, int64_t nblocks, int64_t block_elems, int64_t block_bytes,
                Fn fn) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
#pragma omp parallel for schedule(static) if (nblocks > PARALLEL_BLOCKS)
  for (int64_t i = 0; i < nblocks; ++i) fn(s + i * block_bytes, dst + i * block_elems);
}

// Plain element types converted in chunks of 4096 (one "block" per chunk for the parallel loop).
template <class T, class Conv>
void convert_plain(const void* src, float* dst, int64_t n, Conv conv) {
  constexpr int64_t CHUNK = 4096;
  const uint8_t* s = static_cast<const uint8_t*>(src);
  const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 64)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t begin = c * CHUNK, end = std::min(n, begin + CHUNK);
    for (int64_t i = begin; i < end; ++i) {
      T v;
      std::memcpy(&v, s + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
      dst[i] = conv(v);
    }
  }
}

// F16 rows use the CPU's half-conversion instructions when compiled for them (the same values as
// f16_to_f32, which remains the portable path and handles the tail).
void f16_row_to_f32(const void* src, float* dst, int64_t n) {
#if defined(__F16C__) && defined(__AVX__)
  constexpr int64_t CHUNK = 4096;
  const uint8_t* s = static_cast<const uint8_t*>(src);
  const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (nchunks > 64)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t begin = c * CHUNK, end = std::min(n, begin + CHUNK);
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i));
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < end; ++i) {
      uint16_t h;
      std::memcpy(&h, s + 2 * i, 2);
      dst[i] = f16_to_f32(h);
    }
  }
#else
  convert_plain<uint16_t>(src, dst, n, [](uint16_t h) { return f16_to_f32(h); });
#endif
}

}  // namespace

std::string dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_1: return "Q4_1";
    case DType::Q5_0: return "Q5_0";
    case DType::Q5_1: return "Q5_1";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
  }
  return cat("DType(", static_cast<int>(t), ")");
}

int64_t dtype_block_size(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
      return QK;
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return QK_K;
    default:
      return 1;
  }
}

int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::F64: case DType::I64: return 8;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
    case DType::Q4_0: return Q4_0_BYTES;
    case DType::Q4_1: return Q4_1_BYTES;
    case DType::Q5_0: return Q5_0_BYTES;
    case DType::Q5_1: return Q5_1_BYTES;
    case DType::Q8_0: return Q8_0_BYTES;
    case DType::Q4_K: return Q4_K_BYTES;
    case DType::Q5_K: return Q5_K_BYTES;
    case DType::Q6_K: return Q6_K_BYTES;
  }
  fail("unknown dtype ", static_cast<int>(t));
}

size_t dtype_row_bytes(DType t, int64_t n) {
  const int64_t bs = dtype_block_size(t);
  ZEBRA_CHECK(n >= 0, "dtype ", dtype_name(t), ": negative element count ", n);
  ZEBRA_CHECK(n % bs == 0, "dtype ", dtype_name(t), ": element count ", n,
              " is not a multiple of the block size ", bs);
  const uint64_t blocks = static_cast<uint64_t>(n / bs), bb = static_cast<uint64_t>(dtype_block_bytes(t));
  ZEBRA_CHECK(blocks <= std::numeric_limits<size_t>::max() / bb, "dtype ", dtype_name(t), ": ", n,
              " elements overflow the addressable byte size");
  return static_cast<size_t>(blocks * bb);
}

bool dtype_is_float_like(DType t) {
  switch (t) {
    case DType::I8: case DType::I16: case DType::I32: case DType::I64: case DType::U8: case DType::BOOL:
      return false;
    default:
      return true;
  }
}

void to_f32(DType t, const void* src, float* dst, int64_t n) {
  ZEBRA_CHECK(dtype_is_float_like(t), "dtype ", dtype_name(t), " cannot be converted to fp32");
  dtype_row_bytes(t, n);  // validates n against the block size
  if (n == 0) return;
  const int64_t nb = n / dtype_block_size(t), bb = dtype_block_bytes(t);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    // Lambdas (not function pointers) so the per-element conversion inlines.
    case DType::F16: f16_row_to_f32(src, dst, n); return;
    case DType::BF16: convert_plain<uint16_t>(src, dst, n, [](uint16_t h) { return bf16_to_f32(h); }); return;
    case DType::F64:
      convert_plain<double>(src, dst, n, [](double v) { return static_cast<float>(v); });
      return;
    case DType::Q4_0: for_blocks(src, dst, nb, QK, bb, [](const uint8_t* b, float* y) { block_q4_0(b, y); }); return;
    case DType::Q4_1: for_blocks(src, dst, nb, QK, bb, [](const uint8_t* b, float* y) { block_q4_1(b, y); }); return;
    case DType::Q5_0: for_blocks(src, dst, nb, QK, bb, [](const uint8_t* b, float* y) { block_q5_0(b, y); }); return;
    case DType::Q5_1: for_blocks(src, dst, nb, QK, bb, [](const uint8_t* b, float* y) { block_q5_1(b, y); }); return;
    case DType::Q8_0: for_blocks(src, dst, nb, QK, bb, [](const uint8_t* b, float* y) { block_q8_0(b, y); }); return;
    case DType::Q4_K: for_blocks(src, dst, nb, QK_K, bb, [](const uint8_t* b, float* y) { block_q4_k(b, y); }); return;
    case DType::Q5_K: for_blocks(src, dst, nb, QK_K, bb, [](const uint8_t* b, float* y) { block_q5_k(b, y); }); return;
    case DType::Q6_K: for_blocks(src, dst, nb, QK_K, bb, [](const uint8_t* b, float* y) { block_q6_k(b, y); }); return;
    default: break;
  }
  fail("dtype ", dtype_name(t), " cannot be converted to fp32");
}

float f16_to_f32(uint16_t h) {
  // Branch-free so the bulk F16 loop vectorises. Normal halves, inf and nan: place exponent+mantissa
  // in an fp32, raise the exponent by 224 (so half exponent 31 lands on 255 = inf/nan) and scale by
  // 2^-112 (net rebias +112, exact). Zero and subnormals: mant * 2^-24, exact in fp32.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t em = h & 0x7FFFu;
  const float normal = std::bit_cast<float>((em << 13) + (224u << 23)) * 0x1p-112f;
  const float subnormal = static_cast<float>(em) * 0x1p-24f;
  const float mag = em < 0x400 ? subnormal : normal;
  return std::bit_cast<float>(std::bit_cast<uint32_t>(mag) | sign);
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFF;
  if (ax > 0x7F800000) return sign | 0x7E00 | static_cast<uint16_t>((ax >> 13) & 0x3FF);  // quiet nan
  if (ax >= 0x477FF000) return sign | 0x7C00;  // >= 65520 (and inf) rounds to inf
  if (ax < 0x38800000) {
    // Below the smallest normal half (2^-14): a subnormal half in units of 2^-24, or zero.
    if (ax <= 0x33000000) return sign;  // <= 2^-25 rounds to zero (2^-25 itself ties to even 0)
    const uint32_t e = ax >> 23, m = (ax & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;  // may carry into the smallest normal: still right
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3FF);
  const uint32_t rem = ax & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carries into the exponent correctly
  return sign | static_cast<uint16_t>(h);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  // Round to nearest even; overflow carries into the exponent and reaches inf as it should.
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

}  // namespace zebra
