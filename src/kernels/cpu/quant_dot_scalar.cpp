// The portable kernels of quant_linear, for every format: the definition the SIMD paths reproduce bit for
// bit (quant_kernels.h gives the order of operations).
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "kernels/cpu/quant_kernels.h"

// The lane updates are explicit fmas and the rest plain products and sums; nothing may be contracted.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace zebra::cpu::quant {

namespace {

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// ---- activations ----

// One block of n activations: d = amax / 127, q = nearest-even(x * (127 / amax)). An all-zero (or
// vanishing) block gets d = 0; a block holding inf or nan gets d = nan, so its outputs are nan.
void quantize_block(const float* x, int n, int8_t* q, float& d, int32_t& sum) {
  float amax = 0.0f;
  bool finite = true;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    finite &= a <= FLT_MAX;
    amax = a > amax ? a : amax;
  }
  sum = 0;
  if (!finite || amax < ACT_MIN_AMAX) {
    std::memset(q, 0, static_cast<size_t>(n));
    d = finite ? 0.0f : NAN;
    return;
  }
  d = amax / 127.0f;
  const float id = 127.0f / amax;
  for (int i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] * id);
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    q[i] = static_cast<int8_t>(v);
    sum += q[i];
  }
}

void acts32(const float* x, int64_t t0, int64_t t1, const QuantActs& a) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* row = x + t * a.cols;
    float* d = a.d + t * a.stride;
    int32_t* s = a.sum + t * a.stride;
    for (int64_t b = 0; b < a.nb; ++b) quantize_block(row + b * QK, QK, a.q + t * a.cols + b * QK, d[b], s[b]);
    for (int64_t b = a.nb; b < a.stride; ++b) d[b] = 0.0f, s[b] = 0;
  }
}

void acts256(const float* x, int64_t t0, int64_t t1, const QuantActs& a) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* row = x + t * a.cols;
    float* d = a.d + t * a.stride;
    for (int64_t b = 0; b < a.nb; ++b) {
      int8_t* q = a.q + t * a.cols + b * QK_K;
      int32_t total;
      quantize_block(row + b * QK_K, QK_K, q, d[b], total);
      int16_t* bs = a.bsum + (t * a.nb + b) * 16;
      for (int j = 0; j < 16; ++j) {
        int s = 0;
        for (int i = 0; i < 16; ++i) s += q[16 * j + i];
        bs[j] = static_cast<int16_t>(s);
      }
    }
    for (int64_t b = a.nb; b < a.stride; ++b) d[b] = 0.0f;
  }
}

// ---- per-block integer sums ----

struct BlockSums {
  int32_t isum = 0, msum = 0;
  float dw = 0.0f, mw = 0.0f;
};

// The activation block b of row t: its q and (32-blocks) sum or (256-blocks) per-16 sums.
struct ActBlock {
  const int8_t* q;
  int32_t sum;
  const int16_t* bsum;
};

// sum over a 32-block of (level - offset) * x, the levels 4-bit nibbles at qs (element j < 16: low nibble of
// qs[j], else high nibble of qs[j - 16]) plus, when qh4 is set, fifth bits (bit j of those 32 bits).
// Written as two half loops: GCC 12 at -O3 -march=native vectorised the equivalent single loop over j with
// a select between the two nibbles into wrong sums (reproduced in isolation, no undefined behaviour).
int32_t dot_nibbles(const uint8_t* qs, const uint8_t* qh4, int offset, const int8_t* x) {
  uint32_t qh = 0;
  if (qh4) std::memcpy(&qh, qh4, 4);
  int32_t s = 0;
  for (int j = 0; j < QK / 2; ++j) {
    const int lo = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + QK / 2)) & 1) << 4);
    s += (lo - offset) * x[j] + (hi - offset) * x[j + QK / 2];
  }
  return s;
}

void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

template <int F>
BlockSums block_sums(const uint8_t* b, const ActBlock& x) {
  BlockSums s;
  if constexpr (F == Q8_0) {
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < QK; ++j) s.isum += qs[j] * x.q[j];
    s.dw = load_f16(b);
  } else if constexpr (F == Q4_0) {
    s.isum = dot_nibbles(b + 2, nullptr, 8, x.q);
    s.dw = load_f16(b);
  } else if constexpr (F == Q4_1) {
    s.isum = dot_nibbles(b + 4, nullptr, 0, x.q);
    s.msum = x.sum;
    s.dw = load_f16(b);
    s.mw = load_f16(b + 2);
  } else if constexpr (F == Q5_0) {
    s.isum = dot_nibbles(b + 6, b + 2, 16, x.q);
    s.dw = load_f16(b);
  } else if constexpr (F == Q5_1) {
    s.isum = dot_nibbles(b + 8, b + 4, 0, x.q);
    s.msum = x.sum;
    s.dw = load_f16(b);
    s.mw = load_f16(b + 2);
  } else if constexpr (F == Q4_K || F == Q5_K) {
    // Sub-block j (32 elements): level * d * sc_j - dmin * m_j.
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + (F == Q4_K ? 16 : 48);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, scales, sc, m);
      const uint8_t* q = qs + 32 * (j / 2);
      int32_t dot = 0;
      for (int i = 0; i < 32; ++i) {
        int level = (j % 2 == 0) ? (q[i] & 0xF) : (q[i] >> 4);
        if constexpr (F == Q5_K) level |= ((qh[i] >> j) & 1) << 4;
        dot += level * x.q[32 * j + i];
      }
      s.isum += sc * dot;
      s.msum += m * (x.bsum[2 * j] + x.bsum[2 * j + 1]);
    }
    s.dw = load_f16(b);
    s.mw = -load_f16(b + 2);
  } else if constexpr (F == Q6_K) {
    // Element e of half h = e / 128, l = e % 32, k = (e % 128) / 32: 4 low bits in ql[64h + l + 32 (k & 1)]
    // (high nibble when k >= 2), 2 high bits in qh[32h + l] at bit 2k; sub-block e / 16 has scale sc[e / 16].
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    for (int j = 0; j < 16; ++j) {
      int32_t dot = 0;
      for (int i = 0; i < 16; ++i) {
        const int e = 16 * j + i, h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t lo = ql[64 * h + l + 32 * (k & 1)];
        const int level = ((k >= 2 ? lo >> 4 : lo & 0xF) | (((qh[32 * h + l] >> (2 * k)) & 3) << 4)) - 32;
        dot += level * x.q[e];
      }
      s.isum += sc[j] * dot;
    }
    s.dw = load_f16(b + 208);
  }
  return s;
}

template <int F>
float dot_row(const uint8_t* w, int64_t nb, const QuantActs& x, int64_t t) {
  constexpr bool has_min = F == Q4_1 || F == Q5_1 || F == Q4_K || F == Q5_K;
  constexpr int block = format_block(F), bytes = format_bytes(F);
  const float* dx = x.d + t * x.stride;
  float lane[LANES] = {};
  for (int64_t g = 0; g < nb; g += LANES) {
    for (int l = 0; l < LANES; ++l) {
      const int64_t b = g + l;
      BlockSums s;  // zeros past the end of the row
      if (b < nb) {
        ActBlock a{x.q + t * x.cols + b * block, 0, nullptr};
        if (block == QK) a.sum = x.sum[t * x.stride + b];
        else a.bsum = x.bsum + (t * x.nb + b) * 16;
        s = block_sums<F>(w + b * bytes, a);
      }
      lane[l] = std::fma(s.dw * dx[b], static_cast<float>(s.isum), lane[l]);
      if (has_min) lane[l] = std::fma(s.mw * dx[b], static_cast<float>(s.msum), lane[l]);
    }
  }
  return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

template <int F>
void tile(const uint8_t* w, size_t row_bytes, int64_t nb, int64_t r0, int64_t r1, const QuantActs& x, int64_t t0,
          int64_t t1, float* y, int64_t ldy) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t r = r0; r < r1; ++r) y[t * ldy + r] = dot_row<F>(w + r * row_bytes, nb, x, t);
}

const Kernels SCALAR = {
    "scalar",
    acts32,
    acts256,
    {tile<Q8_0>, tile<Q4_0>, tile<Q4_1>, tile<Q5_0>, tile<Q5_1>, tile<Q4_K>, tile<Q5_K>, tile<Q6_K>},
};

}  // namespace

const Kernels& scalar_kernels() { return SCALAR; }

}  // namespace zebra::cpu::quant
