// Internals of quant_linear shared by its kernel files and the tests: the layout of quantised activations,
// the one order of fp32 arithmetic every kernel path follows, and the run-time choice of path.
//
// Why every path gives the same bits. For output y = dot(W row, x row):
//  1. x is quantised per block by one definition (acts32/acts256: d = amax/127, q = nearest-even of
//     x * (127/amax)); the SIMD quantisers compute exactly that (max, one division, one multiply, a
//     round in the current mode).
//  2. Per weight block b the kernel forms integers: isum_b = sum of level * q (with the format's level
//     offset folded in, e.g. (q4 - 8)), and for formats with a min msum_b (Q4_1/Q5_1: the block's sum of
//     q; Q4_K/Q5_K: sum over sub-blocks of m_j * their q sum). Integer sums are exact in any order.
//  3. The fp32 part is fixed: block b goes to lane b % 8, and in block order
//        lane = fma(dw_b * dx_b, float(isum_b), lane)
//        lane = fma(mw_b * dx_b, float(msum_b), lane)        (formats with a min; mw = m or -dmin)
//     with dw, mw the block's fp16 scales as fp32 and dx_b the activation scale; blocks past the end of a
//     row are zeros. Finally y = ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
// The SIMD kernels hold the 8 lanes in one vector; the scalar kernels loop over them.
//
// This header stays free of standard-library templates: the SIMD files include it under their own
// target flags, and an inline function they instantiated could be picked by the linker for other files.
#pragma once
#include <cstddef>
#include <cstdint>

namespace zebra::cpu::quant {

constexpr int LANES = 8;
constexpr int QK = 32;     // elements of a 32-element block
constexpr int QK_K = 256;  // elements of a K-quant super-block
// Activation blocks whose largest magnitude is below this quantise to zeros (127 / amax must stay finite).
constexpr float ACT_MIN_AMAX = 1e-30f;

// Weight formats, in the order of the kernel tables.
enum Format { Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, N_FORMATS };
constexpr int format_block(int f) { return f >= Q4_K ? QK_K : QK; }
// Bytes per block, as ggml-common.h (and io/dtype) lay them out.
constexpr int format_bytes(int f) {
  switch (f) {
    case Q8_0: return 2 + 32;                  // d, qs[32]
    case Q4_0: return 2 + 16;                  // d, qs[16]
    case Q4_1: return 2 + 2 + 16;              // d, m, qs[16]
    case Q5_0: return 2 + 4 + 16;              // d, qh[4], qs[16]
    case Q5_1: return 2 + 2 + 4 + 16;          // d, m, qh[4], qs[16]
    case Q4_K: return 2 + 2 + 12 + 128;        // d, dmin, scales[12], qs[128]
    case Q5_K: return 2 + 2 + 12 + 32 + 128;   // d, dmin, scales[12], qh[32], qs[128]
    case Q6_K: return 128 + 64 + 16 + 2;       // ql[128], qh[64], scales[16], d
    default: return 0;
  }
}

// `rows` activation rows quantised for one block size:
//  block 32:  per 32 elements q[32] (int8, |q| <= 127), scale d (fp32) and the sum of its q (int32);
//  block 256: per 256 elements q[256], scale d and bsum[16], the sums of each 16 q (int16).
// d and sum have a row stride padded to a multiple of LANES, with zeros in the padding.
struct QuantActs {
  int block = QK;
  int64_t rows = 0, cols = 0;
  int64_t nb = 0;              // blocks per row
  int64_t stride = 0;          // nb rounded up to LANES
  float* d = nullptr;          // [rows, stride]
  int32_t* sum = nullptr;      // [rows, stride], block 32
  int16_t* bsum = nullptr;     // [rows, nb, 16], block 256
  int8_t* q = nullptr;         // [rows, cols]
  // Block 32 with rows >= 2: q again, interleaved for the multi-row SIMD kernels: per row and group of
  // LANES blocks, 8 vectors of 32 bytes where vector k holds bytes 4k..4k+3 of each block of the group
  // (zeros past the row's end), so one 4-byte dot per lane sums a whole block. [rows, stride * 32]
  int8_t* qi = nullptr;
};

// Fills a.qi from a.q for rows [t0, t1).
void interleave_acts(const QuantActs& a, int64_t t0, int64_t t1);

// Bytes of the buffer acts_layout carves (64-byte aligned parts, plus 64 for aligning the base).
size_t acts_bytes(int block, int64_t rows, int64_t cols);
QuantActs acts_layout(int block, int64_t rows, int64_t cols, uint8_t* mem);

// Quantises activation rows [t0, t1) of x [rows, cols] into a.
using ActsFn = void (*)(const float* x, int64_t t0, int64_t t1, const QuantActs& a);
// The tile rows [r0, r1) of W × activation rows [t0, t1): y[t * ldy + r] = dot(W row r, x row t), where
// W row r is the nb blocks at w + r * row_bytes.
using TileFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t nb, int64_t r0, int64_t r1,
                        const QuantActs& x, int64_t t0, int64_t t1, float* y, int64_t ldy);

struct Kernels {
  const char* name;
  ActsFn acts32, acts256;
  TileFn tile[N_FORMATS];
};

// Each path's table; the SIMD ones are nullptr when the build could not compile them.
const Kernels& scalar_kernels();
const Kernels* avx2_kernels();
const Kernels* avx512_kernels();

enum class Path { Auto, Scalar, Avx2, Avx512 };
// Whether this CPU (and build) can run a path.
bool path_available(Path p);
// Tests: run every later quant_linear on path p (Auto: the CPU's best). Throws if p is unavailable.
void force_path(Path p);
const Kernels& active_kernels();

}  // namespace zebra::cpu::quant
