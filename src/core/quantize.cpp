#include "core/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"

// The reference quantisers round every multiply and add separately (ggml compiles them for baseline
// x86-64, which has no FMA); a contracted a*b+c would round once and could flip a level or a scale.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace zebra {

namespace {

constexpr int QK = 32;     // elements per block of the 32-element formats
constexpr int QK_K = 256;  // elements per K-quant super-block
// ggml's threshold below which a Q6_K super-block counts as all zero.
constexpr float GROUP_MAX_EPS = 1e-15f;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

float get_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Round to nearest, ties to even (ggml's nearest_int for |v| < 2^22, which every caller stays within).
int nearest(float v) { return static_cast<int>(std::nearbyint(v)); }

// The value of largest magnitude with its sign; the first one wins ties.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float a = std::fabs(x[j]);
    if (a > amax) {
      amax = a;
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, int n, float& lo, float& hi) {
  lo = FLT_MAX;
  hi = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
}

// ---- 32-element formats: one scale (and min) per block from the block's extremes ----

// Q4_0: d = max / -8 puts the largest magnitude on level 0; level = x/d + 8 rounded half up, at most 15.
void block_q4_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, QK) / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(b, d);
  uint8_t* qs = b + 2;
  for (int j = 0; j < QK / 2; ++j) {
    const float v0 = x[j] * id, v1 = x[j + QK / 2] * id;
    const int l0 = std::min(15, static_cast<int>(v0 + 8.5f));
    const int l1 = std::min(15, static_cast<int>(v1 + 8.5f));
    qs[j] = static_cast<uint8_t>(l0 | (l1 << 4));
  }
}

// Q4_1: levels 0..15 spanning [min, max]; level = (x - min)/d rounded half up.
void block_q4_1(const float* x, uint8_t* b) {
  float lo, hi;
  min_max(x, QK, lo, hi);
  const float d = (hi - lo) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(b, d);
  put_f16(b + 2, lo);
  uint8_t* qs = b + 4;
  for (int j = 0; j < QK / 2; ++j) {
    const float v0 = (x[j] - lo) * id, v1 = (x[j + QK / 2] - lo) * id;
    const int l0 = std::min(15, static_cast<int>(v0 + 0.5f));
    const int l1 = std::min(15, static_cast<int>(v1 + 0.5f));
    qs[j] = static_cast<uint8_t>(l0 | (l1 << 4));
  }
}

// Q5_0: as Q4_0 with 32 levels (d = max / -16); the fifth bit of element j goes to bit j of qh.
void block_q5_0(const float* x, uint8_t* b) {
  const float d = signed_absmax(x, QK) / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(b, d);
  uint32_t qh = 0;
  uint8_t* qs = b + 6;
  for (int j = 0; j < QK / 2; ++j) {
    const float v0 = x[j] * id, v1 = x[j + QK / 2] * id;
    const uint32_t l0 = static_cast<uint32_t>(std::min(31, static_cast<int>(v0 + 16.5f)));
    const uint32_t l1 = static_cast<uint32_t>(std::min(31, static_cast<int>(v1 + 16.5f)));
    qs[j] = static_cast<uint8_t>((l0 & 0xF) | ((l1 & 0xF) << 4));
    qh |= ((l0 >> 4) & 1) << j;
    qh |= ((l1 >> 4) & 1) << (j + QK / 2);
  }
  std::memcpy(b + 2, &qh, 4);
}

// Q5_1: as Q4_1 with 32 levels. The reference does not cap the level: it cannot exceed 31 here
// ((x - min) <= (max - min) and the rounding adds well under half a level).
void block_q5_1(const float* x, uint8_t* b) {
  float lo, hi;
  min_max(x, QK, lo, hi);
  const float d = (hi - lo) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(b, d);
  put_f16(b + 2, lo);
  uint32_t qh = 0;
  uint8_t* qs = b + 8;
  for (int j = 0; j < QK / 2; ++j) {
    const float v0 = (x[j] - lo) * id, v1 = (x[j + QK / 2] - lo) * id;
    const uint32_t l0 = static_cast<uint8_t>(static_cast<int>(v0 + 0.5f));
    const uint32_t l1 = static_cast<uint8_t>(static_cast<int>(v1 + 0.5f));
    qs[j] = static_cast<uint8_t>((l0 & 0xF) | ((l1 & 0xF) << 4));
    qh |= ((l0 >> 4) & 1) << j;
    qh |= ((l1 >> 4) & 1) << (j + QK / 2);
  }
  std::memcpy(b + 4, &qh, 4);
}

// Q8_0: d = amax / 127, q = x/d rounded half away from zero.
void block_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(b, d);
  int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
  for (int j = 0; j < QK; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

// ---- K-quant scale searches ----

// ggml's make_qkx2_quants: levels 0..nmax for x ~ scale * L - offset, minimising the w-weighted squared
// error. Starts from the grid spanning [min(x, 0), max(x)], then tries nstep+1 grids of
// (nmax + rmin + rdelta*is) steps over the range, fitting scale and min by weighted least squares on each
// level assignment and keeping the best. As in the reference, an accepted fit's min replaces the range's
// lower end for the grids after it. Returns the scale; *offset = -min (>= 0).
float fit_scale_min(const float* x, const float* w, int n, int nmax, float rmin, float rdelta, int nstep,
                    uint8_t* L, float* offset) {
  float lo = x[0], hi = x[0];
  const float sum_w0 = w[0];
  float sum_w = sum_w0;
  float sum_x = sum_w0 * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    std::fill(L, L + n, uint8_t{0});
    *offset = -lo;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1.0f / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax));
    float diff = scale * static_cast<float>(L[i]) + lo - x[i];
    diff = diff * diff;
    best_error += w[i] * diff;
  }
  uint8_t trial[QK];  // callers pass n <= 32
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (hi - lo);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest(iscale * (x[i] - lo)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0.0f;
    for (int i = 0; i < n; ++i) {
      float diff = this_scale * static_cast<float>(trial[i]) + this_min - x[i];
      diff = diff * diff;
      error += w[i] * diff;
    }
    if (error < best_error) {
      std::copy(trial, trial + n, L);
      best_error = error;
      scale = this_scale;
      lo = this_min;
    }
  }
  *offset = -lo;
  return scale;
}

// ggml's make_qx_quants with weights x^2 (rmse_type 1): symmetric levels -nmax..nmax-1 for x ~ scale * l,
// trying the 18 grids (nmax + 0.1*is) / max around the plain one and keeping the best weighted fit
// (largest sumlx^2 / suml2). L receives l + nmax. Returns the (signed) scale.
float fit_scale_signed(const float* x, int n, int nmax, int8_t* L) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (a > amax) {
      amax = a;
      max = x[i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  auto level = [&](float iscale, int i) { return std::clamp(nearest(iscale * x[i]), -nmax, nmax - 1); };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale, i);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i], fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i], fl = static_cast<float>(level(iscale, i));
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale, i));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ---- K-quants ----

// The 6-bit scales and mins of 8 sub-blocks packed into 12 bytes (Q4_K/Q5_K): bytes 0-3 hold scales 0-3,
// bytes 4-7 mins 0-3, bytes 8-11 the low nibbles of scale/min 4-7, whose high two bits go to the top
// bits of bytes 0-7.
void pack_scales_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = ls[j];
    q[j + 4] = lm[j];
  }
  for (int j = 4; j < 8; ++j) {
    q[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
    q[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
  }
}

void unpack_scale_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K and Q5_K share everything but the level count and the search grid: each 32-element sub-block gets
// a (scale, min) from fit_scale_min with weights av_x + |x|; those are quantised to 6 bits against the
// super-block's largest (fp16 d and dmin), and the levels are re-derived from the stored scales.
// Writes d, dmin, scales[12] to b and the levels to L[256].
void kquant_scales_mins(const float* x, int nmax, float rmin, int nstep, uint8_t* b, uint8_t* L) {
  float scales[QK_K / 32], mins[QK_K / 32], weights[32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < QK_K / 32; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(xs, weights, 32, nmax, rmin, 0.1f, nstep, L + 32 * j, &mins[j]);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[QK_K / 32], lm[QK_K / 32];
  for (int j = 0; j < QK_K / 32; ++j) {
    // As the reference: the int goes through uint8_t (a negative scale wraps, then caps at 63).
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest(inv_min * mins[j])));
  }
  uint8_t* packed = b + 4;
  pack_scales_k4(ls, lm, packed);
  put_f16(b, max_scale / 63.0f);
  put_f16(b + 2, max_min / 63.0f);
  const float d = get_f16(b), dmin = get_f16(b + 2);
  for (int j = 0; j < QK_K / 32; ++j) {
    int sc, m;
    unpack_scale_k4(j, packed, sc, m);
    const float ds = d * static_cast<float>(sc);
    if (ds == 0.0f) continue;  // keeps the search's levels, as the reference does
    const float dm = dmin * static_cast<float>(m);
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = static_cast<uint8_t>(std::clamp(nearest((x[32 * j + i] + dm) / ds), 0, nmax));
  }
}

// Q4_K: d, dmin, scales[12], qs[128]; each 64 elements share 32 bytes (first 32 in the low nibbles).
void block_q4_k(const float* x, uint8_t* b) {
  uint8_t L[QK_K];
  kquant_scales_mins(x, 15, -1.0f, 20, b, L);
  uint8_t* q = b + 16;
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

// Q5_K: d, dmin, scales[12], qh[32], qs[128]; the fifth bit of element l of the i-th 64 goes to bit 2i
// (first 32) or 2i+1 (second 32) of qh[l].
void block_q5_k(const float* x, uint8_t* b) {
  uint8_t L[QK_K];
  kquant_scales_mins(x, 31, -0.5f, 15, b, L);
  uint8_t* qh = b + 16;
  uint8_t* ql = b + 48;
  std::memset(qh, 0, QK_K / 8);
  for (int n = 0, bit = 0; n < QK_K; n += 64, bit += 2, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      const int l1 = L[n + j], l2 = L[n + j + 32];
      qh[j] |= static_cast<uint8_t>(((l1 >> 4) << bit) | ((l2 >> 4) << (bit + 1)));
      ql[j] = static_cast<uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
    }
  }
}

// Q6_K: ql[128], qh[64], int8 scales[16], d. Sixteen 16-element sub-blocks get signed scales from
// fit_scale_signed; those are quantised to int8 against the largest magnitude (d = max / -128), and the
// levels -32..31 re-derived from the stored scales.
void block_q6_k(const float* x, uint8_t* b) {
  int8_t L[QK_K];
  float scales[QK_K / 16];
  float max_scale = 0.0f, max_abs_scale = 0.0f;
  for (int ib = 0; ib < QK_K / 16; ++ib) {
    scales[ib] = fit_scale_signed(x + 16 * ib, 16, 32, L + 16 * ib);
    const float a = std::fabs(scales[ib]);
    if (a > max_abs_scale) {
      max_abs_scale = a;
      max_scale = scales[ib];
    }
  }
  uint8_t* ql = b;
  uint8_t* qh = b + QK_K / 2;
  int8_t* sc = reinterpret_cast<int8_t*>(b + QK_K / 2 + QK_K / 4);
  uint8_t* dp = b + QK_K / 2 + QK_K / 4 + QK_K / 16;
  if (max_abs_scale < GROUP_MAX_EPS) {
    std::memset(b, 0, 210);
    return;
  }
  const float iscale = -128.0f / max_scale;
  put_f16(dp, 1.0f / iscale);
  for (int ib = 0; ib < QK_K / 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest(iscale * scales[ib])));
  const float d = get_f16(dp);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float ds = d * static_cast<float>(sc[j]);
    if (ds == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = static_cast<int8_t>(std::clamp(nearest(x[16 * j + i] / ds), -32, 31) + 32);
  }
  // Each 128 elements: ql[l] holds elements l (low nibble) and l+64 (high), ql[l+32] elements l+32 and
  // l+96; qh[l] holds the top two bits of l, l+32, l+64, l+96 in bit pairs 0, 2, 4, 6.
  for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

using BlockFn = void (*)(const float*, uint8_t*);

BlockFn block_fn(DType t) {
  switch (t) {
    case DType::Q4_0: return block_q4_0;
    case DType::Q4_1: return block_q4_1;
    case DType::Q5_0: return block_q5_0;
    case DType::Q5_1: return block_q5_1;
    case DType::Q8_0: return block_q8_0;
    case DType::Q4_K: return block_q4_k;
    case DType::Q5_K: return block_q5_k;
    case DType::Q6_K: return block_q6_k;
    default: break;
  }
  fail("cannot quantise to ", dtype_name(t), ": supported are Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K");
}

void check_finite(const float* src, int64_t rows, int64_t n, DType t) {
  const int64_t total = rows * n;
  for (int64_t i = 0; i < total; ++i)
    if (!std::isfinite(src[i]))
      fail("cannot quantise to ", dtype_name(t), ": element ", i % n, " of row ", i / n, " is ", src[i],
           " (values must be finite)");
}

}  // namespace

bool dtype_is_quantizable(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) { quantize_rows(t, src, dst, 1, n); }

void quantize_rows(DType t, const float* src, void* dst, int64_t rows, int64_t n) {
  const BlockFn fn = block_fn(t);
  ZEBRA_CHECK(rows >= 0, "quantize to ", dtype_name(t), ": negative row count ", rows);
  const size_t row_bytes = dtype_row_bytes(t, n);  // checks n against the block size
  check_finite(src, rows, n, t);
  const int64_t bs = dtype_block_size(t), bb = dtype_block_bytes(t), nb = n / bs;
  uint8_t* out = static_cast<uint8_t*>(dst);
  // K-quant blocks cost ~100x a 32-block one (the scale search), so they parallelise sooner.
  const int64_t work = rows * nb * (bs == QK_K ? 100 : 1);
#pragma omp parallel for schedule(dynamic, 1) if (work > 4096 && rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = src + r * n;
    uint8_t* y = out + static_cast<size_t>(r) * row_bytes;
    for (int64_t i = 0; i < nb; ++i) fn(x + i * bs, y + i * bb);
  }
}

}  // namespace zebra
