// Quantised linear layers and the reference quantisers.
//
// The oracle for the kernels is io/dtype's dequantisation (bit-exact against gguf-py): y must equal
// x · dequant(W)^T up to the error of quantising x, whose bound each activation block implies:
//   x is quantised per block with d = amax/127 and q = nearest(x * 127/amax), so |x - d q| <= d/2 plus the
//   rounding of 127/amax, x * id and d (each <= 2^-24 relative), i.e. |x - x^| <= (0.5 + 2^-20) amax/127,
//   a relative error of at most 1/254 = 0.39% of the block's largest magnitude (32 elements for the
//   32-element weight types, 256 for the K types);
//   so |y - y_exact| <= sum_i |w_i| (0.5 + 2^-20) amax_b(i) / 127, plus fp32 accumulation (we allow
//   1e-5 of sum |w_i x_i|; the kernels round once per block and lane, ~1e-6 here).
// Where the arithmetic is exact (power-of-two scales, small integers) the kernels must give the exact
// result; with the levels read off the oracle (dequantising with unit scales) and quant_kernels.h's
// fp32 order, every path must give the same bits as a scalar restatement here; and the SIMD paths must
// equal the scalar path bit for bit.
//
// The quantisers: round trips within the bound each block's stored scales imply; Q8_0/Q4_0 equal a plain
// re-derivation of ggml's reference on hand-made rows; with ZEBRA_LLAMA_QUANTIZE set to a llama-quantize
// binary, every type equals llama.cpp's output byte for byte.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <cmath>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/dtype.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "core/quantize.h"
#include "kernels/cpu/quant.h"
#include "model/quant_weights.h"
#include "kernels/cpu/quant_kernels.h"
#include "support.h"

// The restatements below round each multiply and add as the code they check does.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace zebra {
namespace {

using cpu::QuantMatrix;
using cpu::quant::Path;

const std::vector<DType> kTypes = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                   DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

bool is_k(DType t) { return dtype_block_size(t) == 256; }
bool has_min(DType t) {
  return t == DType::Q4_1 || t == DType::Q5_1 || t == DType::Q4_K || t == DType::Q5_K;
}

// Offsets of a block's fp16 scale and min (-1: none).
int scale_offset(DType t) { return t == DType::Q6_K ? 208 : 0; }

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Column counts per type: one block, a few, a tail past a multiple of 8 blocks, a model-like width.
std::vector<int64_t> test_cols(DType t) {
  if (is_k(t)) return {256, 768, 2304};
  return {32, 96, 288, 576};
}

// rows × cols of random blocks with finite, moderate scales (random bytes elsewhere: every level and
// sub-block scale occurs). pow2: power-of-two scales and small-integer mins, so products are exact.
std::vector<uint8_t> random_blocks(DType t, int64_t rows, int64_t cols, std::mt19937& rng, bool pow2 = false) {
  const int64_t bb = dtype_block_bytes(t), nb = rows * cols / dtype_block_size(t);
  std::vector<uint8_t> raw(static_cast<size_t>(nb * bb));
  for (auto& b : raw) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> mag(0.002f, 0.05f);
  auto sign = [&] { return (rng() & 1) ? 1.0f : -1.0f; };
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* b = raw.data() + i * bb;
    if (pow2) {
      put_f16(b + scale_offset(t), sign() * (is_k(t) ? 0x1p-8f : 0x1p-6f));
      if (t == DType::Q4_1 || t == DType::Q5_1) put_f16(b + 2, static_cast<float>(int(rng() % 65) - 32) * 0x1p-6f);
      if (is_k(t) && has_min(t)) put_f16(b + 2, 0x1p-9f);
    } else {
      put_f16(b + scale_offset(t), sign() * mag(rng) * (t == DType::Q6_K || is_k(t) ? 0.05f : 1.0f));
      if (has_min(t)) put_f16(b + 2, sign() * mag(rng) * (is_k(t) ? 0.05f : 4.0f));
    }
  }
  return raw;
}

QuantMatrix as_matrix(DType t, int64_t rows, int64_t cols, const std::vector<uint8_t>& raw) {
  QuantMatrix m;
  m.type = t;
  m.rows = rows;
  m.cols = cols;
  m.blocks = raw.data();
  return m;
}

std::vector<float> dequant(const QuantMatrix& W) {
  std::vector<float> w(static_cast<size_t>(W.rows * W.cols));
  to_f32(W.type, W.blocks, w.data(), W.rows * W.cols);
  return w;
}

// Activations with varied block magnitudes (and the odd all-zero block) so scales differ per block.
std::vector<float> random_acts(int64_t T, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(T * cols));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < cols / 32; ++b) {
      const float scale = (rng() % 17 == 0) ? 0.0f : std::exp2(static_cast<float>(int(rng() % 9) - 4));
      for (int i = 0; i < 32; ++i) x[t * cols + b * 32 + i] = scale * g(rng);
    }
  return x;
}

std::vector<float> run(const float* x, const QuantMatrix& W, int64_t T, Path p = Path::Auto) {
  cpu::quant::force_path(p);
  std::vector<float> y(static_cast<size_t>(T * W.rows), -1.0f);
  cpu::quant_linear(x, W, y.data(), T);
  cpu::quant::force_path(Path::Auto);
  return y;
}

std::vector<Path> available_paths() {
  std::vector<Path> out;
  for (Path p : {Path::Scalar, Path::Avx2, Path::Avx512})
    if (cpu::quant::path_available(p)) out.push_back(p);
  return out;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::Scalar: return "scalar";
    case Path::Avx2: return "avx2";
    case Path::Avx512: return "avx512";
    default: return "auto";
  }
}

// The activations as the kernels see them (quantised by the scalar definition), dequantised: x^ [T, cols].
struct QuantisedActs {
  std::vector<uint8_t> mem;
  cpu::quant::QuantActs a;
  std::vector<float> xhat;
};

QuantisedActs quantise_acts(const std::vector<float>& x, int64_t T, int64_t cols, int block,
                            Path p = Path::Scalar) {
  QuantisedActs r;
  r.mem.assign(cpu::quant::acts_bytes(block, T, cols), 0xEE);
  r.a = cpu::quant::acts_layout(block, T, cols, r.mem.data());
  cpu::quant::force_path(p);
  const auto& k = cpu::quant::active_kernels();
  (block == 32 ? k.acts32 : k.acts256)(x.data(), 0, T, r.a);
  cpu::quant::force_path(Path::Auto);
  r.xhat.resize(x.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < cols; ++i)
      r.xhat[t * cols + i] = r.a.d[t * r.a.stride + i / block] * static_cast<float>(r.a.q[t * cols + i]);
  return r;
}

// ---- kernels against the dequantised oracle ----

TEST(QuantKernel, ActivationRoundingWithinHalfAStep) {
  std::mt19937 rng(11);
  for (int block : {32, 256}) {
    const int64_t T = 5, cols = 1024;
    std::vector<float> x = random_acts(T, cols, rng);
    QuantisedActs q = quantise_acts(x, T, cols, block);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t b = 0; b < cols / block; ++b) {
        float amax = 0.0f;
        for (int i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[t * cols + b * block + i]));
        const float d = q.a.d[t * q.a.stride + b];
        EXPECT_EQ(d, amax / 127.0f);
        int32_t sum = 0;
        for (int i = 0; i < block; ++i) {
          const int64_t k = t * cols + b * block + i;
          ASSERT_LE(std::abs(int{q.a.q[k]}), 127);
          sum += q.a.q[k];
          ASSERT_LE(std::fabs(x[k] - q.xhat[k]), (0.5 + 0x1p-20) * amax / 127.0) << "block " << block << " at " << k;
        }
        if (block == 32) {
          EXPECT_EQ(q.a.sum[t * q.a.stride + b], sum);
        }
        for (int j = 0; block == 256 && j < 16; ++j) {
          int s = 0;
          for (int i = 0; i < 16; ++i) s += q.a.q[t * cols + b * block + 16 * j + i];
          EXPECT_EQ(q.a.bsum[(t * q.a.nb + b) * 16 + j], s);
        }
      }
  }
}

TEST(QuantKernel, MatchesDequantisedOracleWithinActivationBound) {
  std::mt19937 rng(1);
  const int64_t rows = 37;  // not a multiple of the 16-row tile
  for (DType t : kTypes)
    for (int64_t cols : test_cols(t))
      for (int64_t T : {1, 3, 17, 64}) {
        SCOPED_TRACE(cat(dtype_name(t), " cols ", cols, " T ", T));
        std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
        const QuantMatrix W = as_matrix(t, rows, cols, raw);
        const std::vector<float> w = dequant(W);
        const std::vector<float> x = random_acts(T, cols, rng);
        const int block = static_cast<int>(is_k(t) ? 256 : 32);
        const QuantisedActs q = quantise_acts(x, T, cols, block);
        for (Path p : available_paths()) {
        SCOPED_TRACE(path_name(p));
        const std::vector<float> y = run(x.data(), W, T, p);
        double worst = 0.0;
        for (int64_t i = 0; i < T; ++i)
          for (int64_t r = 0; r < rows; ++r) {
            double exact = 0.0, with_xhat = 0.0, act_bound = 0.0, mag = 0.0;
            for (int64_t c = 0; c < cols; ++c) {
              const double wv = w[r * cols + c], xv = x[i * cols + c];
              exact += wv * xv;
              with_xhat += wv * q.xhat[i * cols + c];
              mag += std::fabs(wv * xv) + std::fabs(wv * q.xhat[i * cols + c]);
              act_bound += std::fabs(wv) * (0.5 + 0x1p-20) * q.a.d[i * q.a.stride + c / block];
            }
            const double got = y[i * rows + r];
            // The kernel computes sum w x^ exactly up to fp32 rounding...
            ASSERT_NEAR(got, with_xhat, 1e-5 * mag + 1e-30) << "row " << r << " t " << i;
            // ...and x^ is within the activation bound of x.
            ASSERT_LE(std::fabs(got - exact), act_bound + 1e-5 * mag + 1e-30) << "row " << r << " t " << i;
            if (act_bound > 0) worst = std::max(worst, std::fabs(got - exact) / act_bound);
          }
        EXPECT_LE(worst, 1.0);
        }
      }
}

// Power-of-two scales, activations d * q with d a power of two and small integer levels: every product
// and partial sum is exact in fp32, so the kernels must return the exact dot on every path.
TEST(QuantKernel, ExactWherePowerOfTwoScalesMakeArithmeticExact) {
  std::mt19937 rng(2);
  const int64_t rows = 19;
  for (DType t : kTypes)
    for (int64_t cols : {is_k(t) ? int64_t{512} : int64_t{256}, is_k(t) ? int64_t{1024} : int64_t{544}})
      for (int64_t T : {1, 3, 17}) {
        SCOPED_TRACE(cat(dtype_name(t), " cols ", cols, " T ", T));
        std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng, /*pow2=*/true);
        const QuantMatrix W = as_matrix(t, rows, cols, raw);
        const std::vector<float> w = dequant(W);
        const int block = is_k(t) ? 256 : 32;
        // x = q * 2^-7 with |q| <= 3, and one q = +-127 per activation block, so d = 2^-7 and 127/amax =
        // 2^7 exactly and quantisation returns q.
        std::vector<float> x(static_cast<size_t>(T * cols));
        for (int64_t k = 0; k < T * cols; ++k) {
          const int q = (k % block == 0) ? ((rng() & 1) ? 127 : -127) : static_cast<int>(rng() % 7) - 3;
          x[k] = static_cast<float>(q) * 0x1p-7f;
        }
        for (Path p : available_paths()) {
          SCOPED_TRACE(path_name(p));
          const std::vector<float> y = run(x.data(), W, T, p);
          for (int64_t i = 0; i < T; ++i)
            for (int64_t r = 0; r < rows; ++r) {
              double exact = 0.0, mag = 0.0;
              for (int64_t c = 0; c < cols; ++c) {
                exact += static_cast<double>(w[r * cols + c]) * x[i * cols + c];
                mag += std::fabs(static_cast<double>(w[r * cols + c]) * x[i * cols + c]);
              }
              // All values are multiples of 2^-9 * 2^-7 * 2^-... well inside fp32's 24 bits:
              ASSERT_LT(mag, 0x1p24 * 0x1p-17) << "test data too large to be exact";
              ASSERT_EQ(y[i * rows + r], static_cast<float>(exact)) << "row " << r << " t " << i;
            }
        }
      }
}

// The integer levels of each block read off the oracle: dequantising with unit scale and zero min gives
// the scaled levels (q - 8, sc_j * q, ...); with zero scale and unit min, the min multipliers.
struct OracleLevels {
  std::vector<float> level, minlevel;  // [rows, cols]
  std::vector<float> dw, mw;           // per block: the kernels' dw and mw
};

OracleLevels oracle_levels(const QuantMatrix& W) {
  const DType t = W.type;
  const int64_t bb = dtype_block_bytes(t), nb = W.rows * W.cols / dtype_block_size(t);
  std::vector<uint8_t> unit(W.blocks, W.blocks + nb * bb), mins = unit;
  OracleLevels o;
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* b = unit.data() + i * bb;
    uint16_t h;
    std::memcpy(&h, b + scale_offset(t), 2);
    o.dw.push_back(f16_to_f32(h));
    put_f16(b + scale_offset(t), 1.0f);
    put_f16(mins.data() + i * bb + scale_offset(t), 0.0f);
    if (has_min(t)) {
      std::memcpy(&h, b + 2, 2);
      // Q4_1/Q5_1 add m; the K types subtract dmin * m_j.
      o.mw.push_back(is_k(t) ? -f16_to_f32(h) : f16_to_f32(h));
      put_f16(b + 2, 0.0f);
      put_f16(mins.data() + i * bb + 2, 1.0f);
    }
  }
  o.level.resize(static_cast<size_t>(W.rows * W.cols));
  o.minlevel.assign(o.level.size(), 0.0f);
  to_f32(t, unit.data(), o.level.data(), W.rows * W.cols);
  if (has_min(t)) {
    to_f32(t, mins.data(), o.minlevel.data(), W.rows * W.cols);
    if (is_k(t))
      for (float& v : o.minlevel) v = -v;  // dequantised as -m_j; the kernels' msum uses +m_j
  }
  return o;
}

TEST(QuantKernel, IntegerDotsAndFp32OrderAreExactlyAsDocumented) {
  std::mt19937 rng(3);
  const int64_t rows = 21;
  for (DType t : kTypes)
    for (int64_t cols : test_cols(t))
      for (int64_t T : {1, 3, 17, 64}) {
        SCOPED_TRACE(cat(dtype_name(t), " cols ", cols, " T ", T));
        std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
        const QuantMatrix W = as_matrix(t, rows, cols, raw);
        const OracleLevels o = oracle_levels(W);
        const std::vector<float> x = random_acts(T, cols, rng);
        const int block = is_k(t) ? 256 : 32;
        const QuantisedActs q = quantise_acts(x, T, cols, block);
        const int64_t nb = cols / block;
        // The scalar restatement of quant_kernels.h: exact integers per block, then the fixed fp32 order.
        std::vector<float> want(static_cast<size_t>(T * rows));
        for (int64_t i = 0; i < T; ++i)
          for (int64_t r = 0; r < rows; ++r) {
            float lane[8] = {};
            for (int64_t b = 0; b < nb; ++b) {
              int64_t isum = 0, msum = 0;
              for (int c = 0; c < block; ++c) {
                const int64_t k = r * cols + b * block + c;
                const int xq = q.a.q[i * cols + b * block + c];
                isum += static_cast<int64_t>(o.level[k]) * xq;
                msum += static_cast<int64_t>(o.minlevel[k]) * xq;
              }
              ASSERT_LT(std::llabs(isum), int64_t{1} << 31);
              const float dx = q.a.d[i * q.a.stride + b];
              float& l = lane[b % 8];
              l = std::fma(o.dw[r * nb + b] * dx, static_cast<float>(isum), l);
              if (has_min(t)) l = std::fma(o.mw[r * nb + b] * dx, static_cast<float>(msum), l);
            }
            want[i * rows + r] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
          }
        for (Path p : available_paths()) {
          SCOPED_TRACE(path_name(p));
          const std::vector<float> y = run(x.data(), W, T, p);
          for (size_t k = 0; k < y.size(); ++k)
            ASSERT_EQ(std::bit_cast<uint32_t>(y[k]), std::bit_cast<uint32_t>(want[k]))
                << "output " << k << ": got " << y[k] << " want " << want[k];
        }
      }
}

TEST(QuantKernel, SimdPathsEqualScalarBitForBit) {
  const std::vector<Path> paths = available_paths();
  std::cout << "quant kernel paths on this CPU:";
  for (Path p : paths) std::cout << " " << path_name(p);
  std::cout << " (auto: " << cpu::quant_kernel_name() << ")\n";
  std::mt19937 rng(4);
  for (DType t : kTypes)
    for (int64_t cols : test_cols(t))
      for (int64_t T : {1, 3, 17, 64}) {
        SCOPED_TRACE(cat(dtype_name(t), " cols ", cols, " T ", T));
        const int64_t rows = 45;
        std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
        const QuantMatrix W = as_matrix(t, rows, cols, raw);
        std::vector<float> x = random_acts(T, cols, rng);
        for (int i = 0; i < 32; ++i) x[i] = 3e-31f * static_cast<float>(i % 3);  // a vanishing block
        const std::vector<float> ref = run(x.data(), W, T, Path::Scalar);
        const int block = is_k(t) ? 256 : 32;
        const QuantisedActs qref = quantise_acts(x, T, cols, block, Path::Scalar);
        for (Path p : paths) {
          SCOPED_TRACE(path_name(p));
          const QuantisedActs qp = quantise_acts(x, T, cols, block, p);
          ASSERT_EQ(std::memcmp(qp.a.q, qref.a.q, static_cast<size_t>(T * cols)), 0);
          ASSERT_EQ(std::memcmp(qp.a.d, qref.a.d, static_cast<size_t>(T * qref.a.stride) * 4), 0);
          if (block == 32) {
            ASSERT_EQ(std::memcmp(qp.a.sum, qref.a.sum, static_cast<size_t>(T * qref.a.stride) * 4), 0);
          } else {
            ASSERT_EQ(std::memcmp(qp.a.bsum, qref.a.bsum, static_cast<size_t>(T * qref.a.nb) * 32), 0);
          }
          const std::vector<float> y = run(x.data(), W, T, p);
          ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * 4), 0);
        }
      }
}

TEST(QuantKernel, LargeShapesAndScratchAgree) {
  // Several row tiles and activation tiles, both threads; a caller's scratch gives the same bits.
  std::mt19937 rng(5);
  for (DType t : {DType::Q4_1, DType::Q6_K}) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t rows = 200, cols = 1536, T = 130;
    std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
    const QuantMatrix W = as_matrix(t, rows, cols, raw);
    const std::vector<float> x = random_acts(T, cols, rng);
    const std::vector<float> y = run(x.data(), W, T);
    std::vector<uint8_t> scratch(cpu::quant_scratch_bytes(t, T, cols));
    std::vector<float> y2(y.size());
    cpu::quant_linear(x.data(), W, y2.data(), T, scratch.data());
    EXPECT_EQ(std::memcmp(y.data(), y2.data(), y.size() * 4), 0);
    // Row t alone gives what it gives inside the batch (no dependence on the tiling).
    for (int64_t i : {0, 63, 64, 129}) {
      const std::vector<float> one = run(x.data() + i * cols, W, 1);
      EXPECT_EQ(std::memcmp(one.data(), y.data() + i * rows, rows * 4), 0) << "row " << i;
    }
    const std::vector<float> sc = run(x.data(), W, T, Path::Scalar);
    EXPECT_EQ(std::memcmp(sc.data(), y.data(), y.size() * 4), 0);
  }
}

TEST(QuantKernel, ZeroAndNonFiniteActivations) {
  std::mt19937 rng(6);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t rows = 9, cols = is_k(t) ? 512 : 64;
    std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
    const QuantMatrix W = as_matrix(t, rows, cols, raw);
    std::vector<float> x(static_cast<size_t>(2 * cols), 0.0f);
    x[cols + 5] = NAN;  // row 1 holds a nan
    for (Path p : available_paths()) {
      const std::vector<float> y = run(x.data(), W, 2, p);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(std::bit_cast<uint32_t>(y[r]), 0u) << path_name(p);  // +0 exactly
        EXPECT_TRUE(std::isnan(y[rows + r])) << path_name(p);
      }
    }
  }
}

TEST(QuantKernel, RejectsBadShapesAndTypes) {
  std::vector<uint8_t> raw(34 * 4, 0);
  QuantMatrix W = as_matrix(DType::Q8_0, 2, 64, raw);
  float x[64] = {}, y[2];
  W.type = DType::F16;
  EXPECT_NE(test::error_message([&] { cpu::quant_linear(x, W, y, 1); }).find("F16 is not a block format"),
            std::string::npos);
  W.type = DType::Q4_K;  // 64 columns is not a K-quant super-block
  EXPECT_NE(test::error_message([&] { cpu::quant_linear(x, W, y, 1); }).find("not a positive multiple of its block size 256"),
            std::string::npos);
  W.type = DType::Q8_0;
  cpu::quant_linear(x, W, y, 0);  // T = 0: nothing to do
  EXPECT_THROW(cpu::quant::force_path(static_cast<Path>(99)), Error);
  TensorView v;
  v.name = "blk.0.attn_norm.weight";
  v.file = "m.gguf";
  v.dtype = DType::Q8_0;
  v.shape = {64};
  EXPECT_NE(test::error_message([&] { quant_matrix_view(v); }).find("expected a matrix"), std::string::npos);
}

// A real tensor: the SmolLM2 GGUF's Q4_1 / Q8_0 matrices as views, against their dequantisation.
TEST(QuantKernel, SmolLMTensorsAgainstDequantisation) {
  ZEBRA_REQUIRE_SMOLLM(path);
  GgufFile f(path);
  std::mt19937 rng(7);
  std::map<DType, int> seen;
  for (const std::string& name : f.names()) {
    const TensorView* v = f.find(name);
    if (v->shape.size() != 2 || !cpu::quant_supported(v->dtype) || seen[v->dtype]++ > 0) continue;
    SCOPED_TRACE(name);
    QuantMatrix W = quant_matrix_view(*v);
    const int64_t rows = std::min<int64_t>(W.rows, 300);
    W.rows = rows;
    const std::vector<float> w = dequant(W);
    const int64_t T = 3;
    const std::vector<float> x = random_acts(T, W.cols, rng);
    const std::vector<float> y = run(x.data(), W, T);
    const int block = is_k(W.type) ? 256 : 32;
    const QuantisedActs q = quantise_acts(x, T, W.cols, block);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double with_xhat = 0, mag = 0;
        for (int64_t c = 0; c < W.cols; ++c) {
          with_xhat += static_cast<double>(w[r * W.cols + c]) * q.xhat[i * W.cols + c];
          mag += std::fabs(static_cast<double>(w[r * W.cols + c]) * q.xhat[i * W.cols + c]);
        }
        ASSERT_NEAR(y[i * rows + r], with_xhat, 1e-5 * mag + 1e-30);
      }
    std::cout << name << " (" << dtype_name(W.type) << ", " << W.rows << " of " << v->shape[0] << " rows) ok\n";
  }
  EXPECT_GE(seen.size(), 1u);
}

// Decode-shaped matrix-vector products: reported, not asserted (the machine is shared).
TEST(QuantKernel, MatvecSpeedReport) {
  std::mt19937 rng(8);
  for (DType t : {DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t rows = 4096, cols = 1536;
    std::vector<uint8_t> raw = random_blocks(t, rows, cols, rng);
    const QuantMatrix W = as_matrix(t, rows, cols, raw);
    const std::vector<float> x = random_acts(1, cols, rng);
    std::vector<float> y(rows);
    std::cout << dtype_name(t) << " matvec " << rows << "x" << cols << " (" << W.nbytes() / 1024 << " KiB):";
    for (Path p : available_paths()) {
      cpu::quant::force_path(p);
      cpu::quant_linear(x.data(), W, y.data(), 1);
      const int reps = p == Path::Scalar ? 3 : 50;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) cpu::quant_linear(x.data(), W, y.data(), 1);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      std::cout << "  " << path_name(p) << " " << s * 1e6 << " us (" << W.nbytes() / s / 1e9 << " GB/s)";
    }
    cpu::quant::force_path(Path::Auto);
    std::cout << "\n";
  }
}

// One decode step's matrix-vector products over every weight matrix of the SmolLM2 GGUF (what a
// token reads in a native-quant forward, 92 MiB), and a 64-token prefill's: reported, not asserted.
TEST(QuantKernel, SmolLMWeightSweepReport) {
  ZEBRA_REQUIRE_SMOLLM(path);
  GgufFile f(path);
  std::vector<QuantMatrix> ms;
  size_t bytes = 0;
  for (const std::string& name : f.names()) {
    const TensorView* v = f.find(name);
    if (v->shape.size() != 2 || !cpu::quant_supported(v->dtype)) continue;
    ms.push_back(quant_matrix_view(*v));
    bytes += ms.back().nbytes();
  }
  std::mt19937 rng(9);
  for (int64_t T : {1, 64}) {
    const std::vector<float> x = random_acts(T, 1536, rng);
    std::vector<float> y(static_cast<size_t>(T * 49152));
    std::cout << "SmolLM2 sweep of " << ms.size() << " matrices (" << bytes / 1048576 << " MiB), T = " << T << ", "
              << omp_get_max_threads() << " threads:";
    for (Path p : available_paths()) {
      if (p == Path::Scalar && T > 1) continue;
      cpu::quant::force_path(p);
      double best = 1e30;
      for (int rep = 0; rep < (p == Path::Scalar ? 1 : 5); ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (const QuantMatrix& m : ms) cpu::quant_linear(x.data(), m, y.data(), T);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::cout << "  " << path_name(p) << " " << best * 1e3 << " ms (" << T / best << " tok/s, "
                << bytes / best / 1e9 << " GB/s)";
    }
    cpu::quant::force_path(Path::Auto);
    std::cout << "\n";
  }
}

// ---- the quantisers ----

float get_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

std::vector<float> gaussian_rows(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::exp2(static_cast<float>(int(rng() % 11) - 5));  // rows of different magnitudes
    for (int64_t c = 0; c < cols; ++c) x[r * cols + c] = scale * g(rng);
  }
  return x;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<uint8_t> q(rows * dtype_row_bytes(t, cols));
  quantize_rows(t, x.data(), q.data(), rows, cols);
  return q;
}

void unpack_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

double dist_outside(double v, double lo, double hi) {
  if (lo > hi) std::swap(lo, hi);
  return v < lo ? lo - v : (v > hi ? v - hi : 0.0);
}

// Per element, the largest |x - dequant(quant(x))| the block's encoding allows:
//  32-element types: the reference rounds x/d to the nearest level with the fp32 d it derived from the
//  block (Q8_0 amax/127, Q4_0 max/-8, Q5_0 max/-16, Q4_1 (max-min)/15, Q5_1 (max-min)/31), then stores d
//  (and min) as fp16: err <= d/2 + levels * |d - d_fp16| (+ |min - min_fp16|), except that Q4_0/Q5_0 have
//  no level for +8d / +16d on the side opposite the largest magnitude: there up to one step;
//  K types: the levels are re-derived from the stored scales, so x^ is the nearest point of the grid
//  d*sc_j*L - dmin*m_j (L in 0..nmax; Q6_K d*sc_j*(L - 32)): err <= step/2 + how far x lies outside it.
// Plus fp32 rounding slack.
std::vector<double> error_bounds(DType t, const float* x, const uint8_t* b) {
  const int n = static_cast<int>(dtype_block_size(t));
  std::vector<double> bound(n);
  auto amax_of = [&] {
    float a = 0, mx = 0;
    for (int i = 0; i < n; ++i)
      if (std::fabs(x[i]) > a) a = std::fabs(x[i]), mx = x[i];
    return std::pair<float, float>{a, mx};
  };
  const auto [amax, max_signed] = amax_of();
  const float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  switch (t) {
    case DType::Q8_0: {
      const double d = amax / 127.0f, ds = get_f16(b);
      for (int i = 0; i < n; ++i) bound[i] = 0.5 * d + 127 * std::fabs(d - ds) + 1e-6 * amax;
      break;
    }
    case DType::Q4_0: case DType::Q5_0: {
      const int half = t == DType::Q4_0 ? 8 : 16;
      const double d = max_signed / static_cast<float>(-half), ds = get_f16(b);
      for (int i = 0; i < n; ++i) {
        const double v = d != 0 ? x[i] / d : 0.0;  // in [-half, half]
        const double steps = v > half - 0.5 ? v - (half - 1) : 0.5;
        bound[i] = steps * std::fabs(d) + half * std::fabs(d - ds) + 1e-6 * amax;
      }
      break;
    }
    case DType::Q4_1: case DType::Q5_1: {
      const int levels = t == DType::Q4_1 ? 15 : 31;
      const double d = (hi - lo) / static_cast<float>(levels), ds = get_f16(b), ms = get_f16(b + 2);
      for (int i = 0; i < n; ++i)
        bound[i] = 0.5 * d + levels * std::fabs(d - ds) + std::fabs(lo - ms) + 1e-6 * amax;
      break;
    }
    case DType::Q4_K: case DType::Q5_K: {
      const int nmax = t == DType::Q4_K ? 15 : 31;
      const double d = get_f16(b), dmin = get_f16(b + 2);
      for (int j = 0; j < 8; ++j) {
        int sc, m;
        unpack_k4(j, b + 4, sc, m);
        const double step = static_cast<float>(d) * static_cast<float>(sc), dm = static_cast<float>(dmin) * static_cast<float>(m);
        for (int i = 32 * j; i < 32 * j + 32; ++i)
          bound[i] = 0.5 * step + dist_outside(x[i], -dm, nmax * step - dm) + 1e-6 * (std::fabs(x[i]) + dm + nmax * step);
      }
      break;
    }
    case DType::Q6_K: {
      const double d = get_f16(b + 208);
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      for (int j = 0; j < 16; ++j) {
        const double step = static_cast<float>(d) * static_cast<float>(sc[j]);
        for (int i = 16 * j; i < 16 * j + 16; ++i)
          bound[i] = 0.5 * std::fabs(step) + dist_outside(x[i], -32 * step, 31 * step) + 1e-6 * (std::fabs(x[i]) + 32 * std::fabs(step));
      }
      break;
    }
    default: ADD_FAILURE() << "no bound for " << dtype_name(t);
  }
  return bound;
}

TEST(Quantize, RoundTripWithinTheBoundOfEachBlock) {
  std::mt19937 rng(21);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t rows = 24, cols = 1536;
    std::vector<float> x = gaussian_rows(rows, cols, rng);
    // A constant block, an all-zero block, a block of one sign, outliers.
    for (int i = 0; i < 256; ++i) x[i] = 0.75f, x[256 + i] = 0.0f, x[512 + i] = std::fabs(x[512 + i]);
    x[cols + 7] = 40.0f;
    const std::vector<uint8_t> q = quantize(t, x, rows, cols);
    std::vector<float> back(x.size());
    to_f32(t, q.data(), back.data(), rows * cols);
    const int64_t n = dtype_block_size(t), bb = dtype_block_bytes(t);
    for (int64_t blk = 0; blk < rows * cols / n; ++blk) {
      const std::vector<double> bound = error_bounds(t, x.data() + blk * n, q.data() + blk * bb);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t k = blk * n + i;
        ASSERT_LE(std::fabs(static_cast<double>(x[k]) - back[k]), bound[i]) << "element " << k << " x " << x[k];
      }
    }
  }
}

// Relative RMS error on unit Gaussian rows: what each format's grid gives, and the K-quants' search
// must beat the plain format of the same bit width.
TEST(Quantize, RelativeRmsErrorOnGaussianRows) {
  std::mt19937 rng(22);
  const int64_t rows = 16, cols = 4096;
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (float& v : x) v = g(rng);
  std::map<DType, double> rms;
  for (DType t : kTypes) {
    const std::vector<uint8_t> q = quantize(t, x, rows, cols);
    std::vector<float> back(x.size());
    to_f32(t, q.data(), back.data(), rows * cols);
    double e2 = 0, x2 = 0;
    for (size_t k = 0; k < x.size(); ++k) e2 += (x[k] - back[k]) * double(x[k] - back[k]), x2 += double(x[k]) * x[k];
    rms[t] = std::sqrt(e2 / x2);
    std::cout << dtype_name(t) << " relative rms error " << rms[t] << "\n";
  }
  // Uniform-step estimates (step / sqrt(12) for a Gaussian block's range), with margin.
  EXPECT_LT(rms[DType::Q8_0], 0.007);
  EXPECT_LT(rms[DType::Q6_K], 0.025);
  EXPECT_LT(rms[DType::Q5_0], 0.06);
  EXPECT_LT(rms[DType::Q5_1], 0.05);
  EXPECT_LT(rms[DType::Q4_0], 0.12);
  EXPECT_LT(rms[DType::Q4_1], 0.10);
  EXPECT_LT(rms[DType::Q5_K], rms[DType::Q5_1]);
  EXPECT_LT(rms[DType::Q4_K], rms[DType::Q4_1]);
  EXPECT_LT(rms[DType::Q6_K], rms[DType::Q5_K]);
}

// ggml's quantize_row_q8_0_ref and quantize_row_q4_0_ref restated as plainly as possible.
std::vector<uint8_t> plain_q8_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t h = f32_to_f16(d);
    out.push_back(h & 0xFF);
    out.push_back(h >> 8);
    for (int j = 0; j < 32; ++j) out.push_back(static_cast<uint8_t>(static_cast<int8_t>(std::round(x[b + j] * id))));
  }
  return out;
}

std::vector<uint8_t> plain_q4_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size(); b += 32) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[b + j])) amax = std::fabs(x[b + j]), max = x[b + j];
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    const uint16_t h = f32_to_f16(d);
    out.push_back(h & 0xFF);
    out.push_back(h >> 8);
    for (int j = 0; j < 16; ++j) {
      const float v0 = x[b + j] * id, v1 = x[b + 16 + j] * id;
      const int q0 = std::min(15, static_cast<int>(v0 + 8.5f)), q1 = std::min(15, static_cast<int>(v1 + 8.5f));
      out.push_back(static_cast<uint8_t>(q0 | (q1 << 4)));
    }
  }
  return out;
}

TEST(Quantize, Q8_0AndQ4_0EqualAPlainRestatementOfTheReference) {
  std::vector<std::vector<float>> rows;
  // Hand-made: exact levels and ties (x * id = k + 0.5), a zero block, one nonzero value, equal
  // magnitudes of both signs (the first wins Q4_0's max), the opposite extreme (+8 d), tiny and huge.
  std::vector<float> a(32);
  for (int j = 0; j < 32; ++j) a[j] = static_cast<float>(j) - 15.5f;
  rows.push_back(a);
  rows.push_back(std::vector<float>(32, 0.0f));
  std::vector<float> one(32, 0.0f);
  one[9] = -3.25f;
  rows.push_back(one);
  std::vector<float> pm(32, 1.0f);
  pm[3] = -6.0f, pm[20] = 6.0f, pm[21] = -5.25f;
  rows.push_back(pm);
  std::vector<float> tiny(32), huge(32);
  for (int j = 0; j < 32; ++j) tiny[j] = 1e-7f * static_cast<float>(j % 7 - 3), huge[j] = 3e5f * std::sin(static_cast<float>(j));
  rows.push_back(tiny);
  rows.push_back(huge);
  std::mt19937 rng(23);
  rows.push_back(gaussian_rows(1, 4096, rng));
  for (size_t r = 0; r < rows.size(); ++r) {
    SCOPED_TRACE(cat("row ", r));
    const int64_t n = static_cast<int64_t>(rows[r].size());
    EXPECT_EQ(quantize(DType::Q8_0, rows[r], 1, n), plain_q8_0(rows[r]));
    EXPECT_EQ(quantize(DType::Q4_0, rows[r], 1, n), plain_q4_0(rows[r]));
  }
}

TEST(Quantize, HandComputedBlocks) {
  // Q8_0 of amax 127: d = 1 (fp16 0x3C00), q = x rounded half away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127, x[1] = -127, x[2] = 0.5f, x[3] = 1.5f, x[4] = -2.5f, x[5] = 2.49f, x[6] = -0.5f;
  std::vector<uint8_t> q8 = quantize(DType::Q8_0, x, 1, 32);
  const std::vector<int> want8 = {0x00, 0x3C, 127, 0x81, 1, 2, 0xFD, 2, 0xFF};
  for (size_t i = 0; i < want8.size(); ++i) EXPECT_EQ(q8[i], want8[i]) << "byte " << i;
  for (size_t i = want8.size(); i < q8.size(); ++i) EXPECT_EQ(q8[i], 0) << "byte " << i;
  // Q4_0 of max -8: d = 1, level = x + 8 rounded half up, capped at 15 (x = +8 has no level: 15).
  std::vector<float> y(32, 0.0f);
  y[0] = -8, y[1] = 8, y[2] = 0.5f, y[3] = -0.5f, y[16] = 7.4f, y[17] = -7.6f;
  std::vector<uint8_t> q4 = quantize(DType::Q4_0, y, 1, 32);
  EXPECT_EQ(q4[0], 0x00);  // d = -8 / -8 = 1
  EXPECT_EQ(q4[1], 0x3C);
  EXPECT_EQ(q4[2], 0xF0);  // element 0: level 0; element 16 (7.4 + 8.5 -> 15)
  EXPECT_EQ(q4[3], 0x0F);  // element 1: 16 -> 15; element 17: 0.9 -> 0
  EXPECT_EQ(q4[4], 0x89);  // element 2: 9; element 18: 8
  EXPECT_EQ(q4[5], 0x88);  // element 3: 8 (-0.5 + 8.5 = 8); element 19: 8
}

TEST(Quantize, RejectsNonFiniteValuesAndBadSizes) {
  std::vector<float> x(64, 1.0f);
  x[37] = NAN;
  std::vector<uint8_t> out(dtype_row_bytes(DType::Q4_K, 256));
  EXPECT_NE(test::error_message([&] { quantize_rows(DType::Q8_0, x.data(), out.data(), 2, 32); })
                .find("element 5 of row 1 is nan"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { quantize_row(DType::Q4_K, x.data(), out.data(), 64); })
                .find("not a multiple of the block size 256"),
            std::string::npos);
  EXPECT_NE(test::error_message([&] { quantize_row(DType::F16, x.data(), out.data(), 32); }).find("cannot quantise to F16"),
            std::string::npos);
}

TEST(Quantize, ParallelRowsEqualOneRowAtATime) {
  std::mt19937 rng(24);
  const int64_t rows = 40, cols = 512;
  const std::vector<float> x = gaussian_rows(rows, cols, rng);
  for (DType t : kTypes) {
    const std::vector<uint8_t> all = quantize(t, x, rows, cols);
    const size_t rb = dtype_row_bytes(t, cols);
    std::vector<uint8_t> one(rb);
    for (int64_t r = 0; r < rows; ++r) {
      quantize_row(t, x.data() + r * cols, one.data(), cols);
      ASSERT_EQ(std::memcmp(one.data(), all.data() + r * rb, rb), 0) << dtype_name(t) << " row " << r;
    }
  }
}

TEST(Quantize, QuantizeMatrixFeedsQuantLinear) {
  std::mt19937 rng(25);
  const int64_t rows = 33, cols = 512, T = 2;
  const std::vector<float> w = gaussian_rows(rows, cols, rng);
  const std::vector<float> x = random_acts(T, cols, rng);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const QuantMatrix W = cpu::quantize_matrix(w.data(), rows, cols, t);
    ASSERT_NE(W.storage, nullptr);
    EXPECT_EQ(W.storage->size(), W.nbytes());
    std::vector<float> row(cols), deq = dequant(W);
    cpu::dequantize_row(W, 5, row.data());
    EXPECT_EQ(std::memcmp(row.data(), deq.data() + 5 * cols, cols * 4), 0);
    const QuantMatrix copy = W;  // shares the blocks
    const std::vector<float> y = run(x.data(), copy, T);
    double err = 0, mag = 0;
    for (int64_t i = 0; i < T; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0;
        for (int64_t c = 0; c < cols; ++c) exact += double(w[r * cols + c]) * x[i * cols + c];
        err += std::fabs(y[i * rows + r] - exact), mag += std::fabs(exact);
      }
    EXPECT_LT(err / mag, 0.2);  // weight and activation rounding together, relative to |y|
  }
}

// llama.cpp itself as the oracle (opt-in: ZEBRA_LLAMA_QUANTIZE=/path/to/llama-quantize). The SmolLM2
// GGUF's weights, dequantised to an F32 GGUF by our writer (every other tensor perturbed by a few ulps of
// 2^-10 so its blocks leave the Q4_1 grid), are quantised by `llama-quantize --pure` to each type; every
// quantised tensor must equal ours byte for byte.
TEST(QuantizeLlamaCpp, EqualsLlamaQuantizeByteForByte) {
  const char* bin = std::getenv("ZEBRA_LLAMA_QUANTIZE");
  if (!bin || !*bin) GTEST_SKIP() << "set ZEBRA_LLAMA_QUANTIZE to a llama-quantize binary to compare with llama.cpp";
  ZEBRA_REQUIRE_SMOLLM(path);
  GgufFile src(path);
  const std::string dir = test::temp_dir(), f32_path = dir + "/f32.gguf";
  GgufWriter w;
  w.copy_metadata(src);
  w.set("general.file_type", gguf_u32(0));  // LLAMA_FTYPE_ALL_F32
  std::map<std::string, std::shared_ptr<std::vector<uint8_t>>> f32;
  int index = 0;
  for (const std::string& name : src.names()) {
    const TensorView* v = src.find(name);
    Tensor t = view_to_tensor(*v);
    if (index++ % 2 == 1)
      for (size_t i = 0; i < t.data.size(); ++i)
        t.data[i] *= 1.0f + 0x1p-10f * static_cast<float>(static_cast<int>((i * 2654435761u) % 7) - 3);
    auto bytes = std::make_shared<std::vector<uint8_t>>(t.data.size() * 4);
    std::memcpy(bytes->data(), t.data.data(), bytes->size());
    w.add_tensor(name, DType::F32, v->shape, bytes);
    f32[name] = bytes;
  }
  w.write(f32_path);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const std::string out_path = cat(dir, "/", dtype_name(t), ".gguf");
    std::string out, err;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(test::run_command(cat(bin, " --pure ", f32_path, " ", out_path, " ", dtype_name(t), " 2"), &out, &err), 0)
        << err;
    const double llama_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    GgufFile q(out_path);
    int64_t tensors = 0, blocks = 0, bad_blocks = 0;
    double ours_s = 0;
    std::map<std::string, int> types;
    for (const std::string& name : q.names()) {
      const TensorView* v = q.find(name);
      types[dtype_name(v->dtype)]++;
      if (!dtype_is_quantizable(v->dtype)) continue;
      const int64_t cols = v->shape.back(), rows = v->numel() / cols;
      std::vector<uint8_t> mine(v->nbytes);
      const auto q0 = std::chrono::steady_clock::now();
      quantize_rows(v->dtype, reinterpret_cast<const float*>(f32[name]->data()), mine.data(), rows, cols);
      ours_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - q0).count();
      const int64_t bb = dtype_block_bytes(v->dtype), nb = static_cast<int64_t>(v->nbytes) / bb;
      int64_t bad = 0;
      for (int64_t b = 0; b < nb; ++b)
        if (std::memcmp(mine.data() + b * bb, v->data + b * bb, bb) != 0 && bad++ < 3)
          ADD_FAILURE() << name << " (" << dtype_name(v->dtype) << ") block " << b << " differs";
      ++tensors, blocks += nb, bad_blocks += bad;
    }
    std::string summary;
    for (const auto& [k, c] : types) summary += cat(k, "=", c, " ");
    std::cout << dtype_name(t) << ": " << tensors << " quantised tensors (" << summary << "), " << blocks
              << " blocks, " << bad_blocks << " differ; llama-quantize " << llama_s << " s, ours " << ours_s << " s\n";
    EXPECT_EQ(bad_blocks, 0);
    EXPECT_GT(tensors, 0);
    std::filesystem::remove(out_path);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace zebra
