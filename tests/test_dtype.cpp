// Storage dtype conversions: dequantisation of the llama.cpp block formats against gguf-py (ggml's own
// Python package), fp16/bf16 rounding against numpy/torch and exhaustively against the round-to-nearest-
// even definition. Goldens: tests/fixtures/dequant/, made by scripts/reference/make_dequant_fixtures.py.
// Every comparison is bit-exact (NaN compares equal to NaN; its payload is not specified).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/dtype.h"
#include "support.h"

namespace zebra {
namespace {

using nlohmann::json;

template <class T>
std::vector<T> read_vec(const std::string& path) {
  std::string bytes = test::read_file(path);
  EXPECT_EQ(bytes.size() % sizeof(T), 0u) << path;
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

json manifest() { return json::parse(test::read_file(test::fixture("dequant/manifest.json"))); }

DType dtype_from_name(const std::string& s) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                  DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    if (dtype_name(t) == s) return t;
  ADD_FAILURE() << "unknown dtype in manifest: " << s;
  return DType::F32;
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

bool is_nan_f16(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }
bool is_nan_bf16(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0; }

TEST(DType, BlockGeometryMatchesGgml) {
  // sizeof(block_q4_0) etc. in ggml-common.h.
  EXPECT_EQ(dtype_block_bytes(DType::Q4_0), 18);
  EXPECT_EQ(dtype_block_bytes(DType::Q4_1), 20);
  EXPECT_EQ(dtype_block_bytes(DType::Q5_0), 22);
  EXPECT_EQ(dtype_block_bytes(DType::Q5_1), 24);
  EXPECT_EQ(dtype_block_bytes(DType::Q8_0), 34);
  EXPECT_EQ(dtype_block_bytes(DType::Q4_K), 144);
  EXPECT_EQ(dtype_block_bytes(DType::Q5_K), 176);
  EXPECT_EQ(dtype_block_bytes(DType::Q6_K), 210);
  EXPECT_EQ(dtype_block_size(DType::Q8_0), 32);
  EXPECT_EQ(dtype_block_size(DType::Q6_K), 256);
  EXPECT_EQ(dtype_block_size(DType::BF16), 1);
  EXPECT_EQ(dtype_row_bytes(DType::Q4_K, 512), 288u);
  EXPECT_EQ(dtype_row_bytes(DType::F64, 3), 24u);
  EXPECT_EQ(dtype_row_bytes(DType::Q8_0, 0), 0u);
}

TEST(DType, RowBytesRejectsPartialBlocksAndOverflow) {
  try {
    dtype_row_bytes(DType::Q4_0, 48);
    FAIL() << "expected zebra::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the block size 32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dtype_row_bytes(DType::F32, -4), Error);
  EXPECT_THROW(dtype_row_bytes(DType::F64, int64_t{1} << 62), Error);
}

TEST(DType, IntegerTypesAreNotConvertible) {
  int32_t v[2] = {1, 2};
  float out[2];
  EXPECT_FALSE(dtype_is_float_like(DType::I32));
  EXPECT_TRUE(dtype_is_float_like(DType::Q6_K));
  try {
    to_f32(DType::I32, v, out, 2);
    FAIL() << "expected zebra::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("I32 cannot be converted to fp32"), std::string::npos) << e.what();
  }
}

// Every block format (and F16/BF16 rows) against gguf-py's dequantisation, bit for bit.
TEST(DType, DequantMatchesGgufPy) {
  json m = manifest();
  ASSERT_GE(m["blocks"].size(), 10u);
  for (const json& e : m["blocks"]) {
    const std::string name = e["type"];
    SCOPED_TRACE(name);
    const DType t = dtype_from_name(name);
    const int64_t n = e["n"];
    std::string raw = test::read_file(test::fixture("dequant/" + e["blocks"].get<std::string>()));
    std::vector<float> expected = read_vec<float>(test::fixture("dequant/" + e["expected"].get<std::string>()));
    ASSERT_EQ(raw.size(), dtype_row_bytes(t, n));
    ASSERT_EQ(static_cast<int64_t>(expected.size()), n);
    std::vector<float> got(n);
    to_f32(t, raw.data(), got.data(), n);
    int mismatches = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!same_float(got[i], expected[i]) && mismatches++ < 5)
        ADD_FAILURE() << name << " element " << i << ": got " << got[i] << " expected " << expected[i];
    EXPECT_EQ(mismatches, 0);
  }
}

// The OpenMP path (large inputs) must produce what the single-block path produces.
TEST(DType, ParallelDequantMatchesBlockByBlock) {
  std::mt19937 rng(3);
  for (DType t : {DType::Q4_1, DType::Q5_0, DType::Q4_K, DType::Q6_K, DType::F16}) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t bs = dtype_block_size(t), bb = dtype_block_bytes(t), nb = 5000;
    std::vector<uint8_t> raw(nb * bb);
    for (auto& b : raw) b = static_cast<uint8_t>(rng());
    // Finite fp16 scales so the comparison is not dominated by NaN.
    if (t != DType::F16)
      for (int64_t i = 0; i < nb; ++i) {
        const size_t off = t == DType::Q6_K ? bb - 2 : 0;
        raw[i * bb + off + 1] &= 0x3F;
        if (t == DType::Q4_1 || t == DType::Q4_K) raw[i * bb + 3] &= 0x3F;
      }
    std::vector<float> whole(nb * bs), one(bs);
    to_f32(t, raw.data(), whole.data(), nb * bs);
    for (int64_t i = 0; i < nb; ++i) {
      to_f32(t, raw.data() + i * bb, one.data(), bs);
      for (int64_t j = 0; j < bs; ++j) ASSERT_TRUE(same_float(one[j], whole[i * bs + j])) << i << "," << j;
    }
  }
}

TEST(DType, F64AndF32Convert) {
  const double d[4] = {1.0, -0.1, 1e300, 3.0000000001};
  float out[4];
  to_f32(DType::F64, d, out, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], static_cast<float>(d[i]));
  const float f[3] = {1.5f, -0.0f, 7.0f};
  to_f32(DType::F32, f, out, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(same_float(out[i], f[i]));
}

TEST(DType, F16SpecialValues) {
  EXPECT_EQ(f16_to_f32(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));   // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24)); // largest subnormal
  EXPECT_EQ(f16_to_f32(0x83FF), -std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));  // signalling nan stays nan

  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);   // below the midpoint to "65536"
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);   // the midpoint ties to even = inf
  EXPECT_EQ(f32_to_f16(1e30f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);          // tie between 0 and 2^-24: even = 0
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25) * 1.0001f), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);          // tie between 1 and 2 units: even = 2
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(2047.0f, -25)), 0x0400);       // rounds up out of the subnormals
  EXPECT_TRUE(is_nan_f16(f32_to_f16(NAN)));
  EXPECT_TRUE(is_nan_f16(f32_to_f16(std::bit_cast<float>(0x7F800001u))));  // payload only in low bits
}

// Exhaustive: every finite half survives f16 -> f32 -> f16, and every midpoint between neighbouring
// halves rounds to the one with the even mantissa.
TEST(DType, F16RoundTripAndTiesExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    if (is_nan_f16(x)) {
      ASSERT_TRUE(std::isnan(f16_to_f32(x)));
      ASSERT_TRUE(is_nan_f16(f32_to_f16(f16_to_f32(x)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f16_to_f32(x)), x) << h;
    const uint16_t next = static_cast<uint16_t>(x + 1);
    // Inf has no next neighbour; the step from 65504 to inf is checked in F16SpecialValues.
    if ((x & 0x7FFF) >= 0x7BFF) continue;
    // Midpoint of x and its successor in magnitude (exact in fp32: halves have 11 significant bits).
    const double a = f16_to_f32(x), b = f16_to_f32(next);
    const float mid = static_cast<float>((a + b) / 2);
    ASSERT_EQ(static_cast<double>(mid), (a + b) / 2);
    const uint16_t want = (x & 1) ? next : x;
    ASSERT_EQ(f32_to_f16(mid), want) << "midpoint after " << h;
    // Just off the midpoint, the nearer neighbour wins.
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, static_cast<float>(a))), x) << h;
    ASSERT_EQ(f32_to_f16(std::nextafter(mid, static_cast<float>(b))), next) << h;
  }
}

TEST(DType, Bf16RoundTripAndTiesExhaustive) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const float f = bf16_to_f32(x);
    ASSERT_EQ(std::bit_cast<uint32_t>(f), h << 16);
    if (is_nan_bf16(x)) {
      ASSERT_TRUE(is_nan_bf16(f32_to_bf16(f)));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), x) << h;
    if ((x & 0x7FFF) >= 0x7F80) continue;
    // The midpoint to the next bf16 is x's bits with 0x8000 in the low half: ties to even.
    const float mid = std::bit_cast<float>((h << 16) | 0x8000u);
    const uint16_t next = static_cast<uint16_t>(x + 1);
    ASSERT_EQ(f32_to_bf16(mid), (x & 1) ? next : x) << h;
    ASSERT_EQ(f32_to_bf16(std::bit_cast<float>((h << 16) | 0x7FFFu)), x) << h;
    ASSERT_EQ(f32_to_bf16(std::bit_cast<float>((h << 16) | 0x8001u)), next) << h;
  }
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to inf
  EXPECT_TRUE(is_nan_bf16(f32_to_bf16(std::bit_cast<float>(0x7F800001u))));  // low-bit payload stays nan
}

// fp32 -> fp16 against numpy and fp32 -> bf16 against torch on specials, ties, subnormals and random bits.
TEST(DType, RoundingMatchesNumpyAndTorch) {
  json c = manifest()["conversions"];
  auto x = read_vec<float>(test::fixture("dequant/" + c["f32"].get<std::string>()));
  auto f16 = read_vec<uint16_t>(test::fixture("dequant/" + c["f16"].get<std::string>()));
  auto bf16 = read_vec<uint16_t>(test::fixture("dequant/" + c["bf16"].get<std::string>()));
  ASSERT_EQ(x.size(), c["n"].get<size_t>());
  ASSERT_EQ(f16.size(), x.size());
  ASSERT_EQ(bf16.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(is_nan_f16(f32_to_f16(x[i]))) << i;
      EXPECT_TRUE(is_nan_bf16(f32_to_bf16(x[i]))) << i;
      continue;
    }
    EXPECT_EQ(f32_to_f16(x[i]), f16[i]) << "f16 of " << x[i] << " (bits 0x" << std::hex
                                        << std::bit_cast<uint32_t>(x[i]) << ")";
    EXPECT_EQ(f32_to_bf16(x[i]), bf16[i]) << "bf16 of " << x[i];
  }
}

}  // namespace
}  // namespace zebra
