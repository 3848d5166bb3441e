// GQA attention kernels (see attention.cuh). Scores are kept in log2 units (queries pre-scaled by
// scale * log2(e)) so the softmax uses exp2f; m/l/o partials of the decode splits are in the same units.
#include <cmath>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"

namespace zebra::cuda {

namespace {

template <class T>
__device__ __forceinline__ int64_t kv_row(const KvSource<T>& kv, int32_t r, int64_t p) {
  if (kv.tables) {
    const int32_t b = kv.tables[static_cast<int64_t>(r) * kv.table_stride + p / kv.block_tokens];
    return static_cast<int64_t>(b) * kv.block_stride + (p % kv.block_tokens) * kv.row_stride;
  }
  return p * kv.row_stride;
}

template <class T>
void check_kv(const KvSource<T>& kv, const AttnDims& d, const char* op) {
  ZEBRA_CHECK(d.n_heads > 0 && d.kv_heads > 0 && d.n_heads % d.kv_heads == 0 && d.qk_dim > 0 && d.v_dim > 0, op,
              ": bad dims heads ", d.n_heads, " kv_heads ", d.kv_heads, " qk ", d.qk_dim, " v ", d.v_dim);
  ZEBRA_CHECK(kv.base && kv.d1 >= 0 && kv.d1 <= d.qk_dim && kv.row_stride > 0, op, ": bad key/value source (d1 ",
              kv.d1, ", row_stride ", kv.row_stride, ")");
  ZEBRA_CHECK(!kv.tables || (kv.block_tokens > 0 && kv.table_stride > 0 && kv.block_stride >= kv.block_tokens * kv.row_stride),
              op, ": bad paged addressing (block_tokens ", kv.block_tokens, ", block_stride ", kv.block_stride, ")");
}

// ---- prefill: flash attention, one block per (query tile, query head, run) ----

constexpr int kBQ = 64;              // queries per block (2 threads each)
constexpr int kBK = 32;              // keys per shared-memory tile
constexpr int kPrefillThreads = 2 * kBQ;

// Row pitch of the query tile in shared memory: 2 mod 32 floats, so the 16 rows x 2 interleaved halves a warp
// reads at once fall in 32 distinct banks.
__host__ __device__ constexpr int q_pitch(int qk) { return (qk + 31) / 32 * 32 + 2; }

size_t prefill_smem_bytes(int qk, int dv) {
  return sizeof(float) * (size_t)(kBQ * q_pitch(qk) + kBK * qk + kBK * dv) + sizeof(int64_t) * kBK;
}

// Thread (qi, half) owns query row qi of the tile; the two halves split the dot products (even/odd elements,
// summed by one shuffle) and own the even/odd value columns of the output (O, DVH registers each).
template <class T, int DVH>
__global__ void __launch_bounds__(kPrefillThreads) prefill_kernel(const T* q, int64_t ldq, int64_t q_head,
                                                                  KvSource<T> kv, int group, int qk, int dv,
                                                                  float scale_log2, const DevRun* runs,
                                                                  const int32_t* run_ids, T* out, int64_t ldo) {
  extern __shared__ __align__(16) float smem[];
  const int qp = q_pitch(qk);
  float* Qs = smem;              // [kBQ][qp]
  float* Ks = Qs + kBQ * qp;     // [kBK][qk]
  float* Vs = Ks + kBK * qk;     // [kBK][dv]
  int64_t* rowoff = reinterpret_cast<int64_t*>(Vs + kBK * dv);  // [kBK] (an even float offset: 8-byte aligned)

  const int32_t r = run_ids[blockIdx.z];
  const DevRun run = runs[r];
  const int tile0 = blockIdx.x * kBQ;
  if (run.seq < 0 || tile0 >= run.n) return;  // uniform over the block
  const int h = blockIdx.y, g = h / group;
  const int qi = threadIdx.x >> 1, half = threadIdx.x & 1;
  const int i = tile0 + qi;
  const int64_t qpos = static_cast<int64_t>(run.pos0) + i;

  for (int idx = threadIdx.x; idx < kBQ * qk; idx += kPrefillThreads) {
    const int row = idx / qk, c = idx % qk, ii = tile0 + row;
    Qs[row * qp + c] =
        ii < run.n ? to_float(q[static_cast<int64_t>(run.row0 + ii) * ldq + h * q_head + c]) * scale_log2 : 0.0f;
  }
  // Keys the tile's last query sees.
  const int64_t kv_end = static_cast<int64_t>(run.pos0) + min(run.n, tile0 + kBQ);

  float O[DVH];
#pragma unroll
  for (int c = 0; c < DVH; ++c) O[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  for (int64_t k0 = 0; k0 < kv_end; k0 += kBK) {
    __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
    if (threadIdx.x < kBK) {
      const int64_t p = k0 + threadIdx.x;
      rowoff[threadIdx.x] = p < kv_end ? kv_row(kv, r, p) : -1;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBK * qk; idx += kPrefillThreads) {
      const int j = idx / qk, c = idx % qk;
      const int64_t off = rowoff[j];
      float v = 0.0f;
      if (off >= 0)
        v = to_float(c < kv.d1 ? kv.base[off + kv.k1_off + g * kv.k1_head + c]
                               : kv.base[off + kv.k2_off + g * kv.k2_head + (c - kv.d1)]);
      Ks[j * qk + c] = v;
    }
    for (int idx = threadIdx.x; idx < kBK * dv; idx += kPrefillThreads) {
      const int j = idx / dv, c = idx % dv;
      const int64_t off = rowoff[j];
      Vs[j * dv + c] = off >= 0 ? to_float(kv.base[off + kv.v_off + g * kv.v_head + c]) : 0.0f;
    }
    __syncthreads();

    float s[kBK];
#pragma unroll
    for (int j = 0; j < kBK; ++j) s[j] = 0.0f;
    for (int e = half; e < qk; e += 2) {
      const float qe = Qs[qi * qp + e];
#pragma unroll
      for (int j = 0; j < kBK; ++j) s[j] += qe * Ks[j * qk + e];
    }
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBK; ++j) {
      s[j] += __shfl_xor_sync(0xffffffffu, s[j], 1);
      const int64_t kp = k0 + j;
      s[j] = (kp <= qpos && kp < kv_end) ? s[j] : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    // Key 0 is in the first tile and visible to every query, so m_new is finite from the first tile on.
    const float m_new = fmaxf(m, tile_max);
    const float corr = exp2f(m - m_new);
    float psum = 0.0f;
#pragma unroll
    for (int j = 0; j < kBK; ++j) {
      s[j] = exp2f(s[j] - m_new);
      psum += s[j];
    }
    l = l * corr + psum;
#pragma unroll
    for (int c = 0; c < DVH; ++c) O[c] *= corr;
#pragma unroll
    for (int j = 0; j < kBK; ++j) {
      const float pj = s[j];
#pragma unroll
      for (int c = 0; c < DVH; ++c) {
        const int e = 2 * c + half;
        if (e < dv) O[c] += pj * Vs[j * dv + e];
      }
    }
    m = m_new;
  }
  if (i < run.n) {
    T* o = out + static_cast<int64_t>(run.row0 + i) * ldo + static_cast<int64_t>(h) * dv;
    const float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < DVH; ++c) {
      const int e = 2 * c + half;
      if (e < dv) o[e] = from_float<T>(O[c] * inv);
    }
  }
}

// ---- decode: split-K over the paged cache, one block per (split, kv head, run) ----

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kMaxGroup = 8;  // query heads per kv head

// Each warp takes 32 positions at a time: lane j scores position base + j against every query head of the group
// (its own key row, the queries broadcast from shared memory), then the warp accumulates p · V with lanes over
// the value columns (coalesced rows). The four warps' (m, l, o) merge in shared memory at the end.
template <class T, int DPL>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(const T* q, int64_t ldq, int64_t q_head,
                                                                KvSource<T> kv, int n_heads, int group, int qk, int dv,
                                                                float scale_log2, const DevRun* runs,
                                                                const int32_t* run_ids, int splits, float* part_m,
                                                                float* part_l, float* part_o) {
  constexpr int kW = 32 * DPL;  // widest head this instantiation holds
  __shared__ float Qs[kMaxGroup][kW];
  __shared__ float wm[kDecodeWarps][kMaxGroup], wl[kDecodeWarps][kMaxGroup];
  __shared__ float wo[kDecodeWarps][kMaxGroup][kW];

  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int ii = blockIdx.z, g = blockIdx.y, split = blockIdx.x;
  const int32_t r = run_ids[ii];
  const DevRun run = runs[r];
  if (run.seq < 0) return;  // padding: combine_splits writes its zeros
  const int64_t len = static_cast<int64_t>(run.pos0) + 1;
  const int64_t chunk = (len + splits - 1) / splits;
  const int64_t start = static_cast<int64_t>(split) * chunk;
  const int64_t end = min(len, start + chunk);

  for (int idx = threadIdx.x; idx < group * qk; idx += kDecodeThreads) {
    const int jh = idx / qk, c = idx % qk;
    Qs[jh][c] = to_float(q[static_cast<int64_t>(run.row0) * ldq + (g * group + jh) * q_head + c]) * scale_log2;
  }
  __syncthreads();

  float m[kMaxGroup], l[kMaxGroup], O[kMaxGroup][DPL];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int k = 0; k < DPL; ++k) O[h][k] = 0.0f;
  }

  for (int64_t base = start + wid * 32; base < end; base += kDecodeWarps * 32) {  // uniform per warp
    const int64_t p = base + lane;
    const bool ok = p < end;
    const int64_t off = ok ? kv_row(kv, r, p) : 0;
    float s[kMaxGroup];
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) s[h] = 0.0f;
    if (ok) {
      const T* k1 = kv.base + off + kv.k1_off + static_cast<int64_t>(g) * kv.k1_head;
      for (int c = 0; c < kv.d1; ++c) {
        const float kc = to_float(k1[c]);
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h)
          if (h < group) s[h] += Qs[h][c] * kc;
      }
      const T* k2 = kv.base + off + kv.k2_off + static_cast<int64_t>(g) * kv.k2_head - kv.d1;
      for (int c = kv.d1; c < qk; ++c) {
        const float kc = to_float(k2[c]);
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h)
          if (h < group) s[h] += Qs[h][c] * kc;
      }
    }
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) continue;  // uniform
      const float sh = ok ? s[h] : -INFINITY;
      const float m_new = fmaxf(m[h], warp_max(sh));  // lane 0's position is valid: finite
      const float corr = exp2f(m[h] - m_new);
      const float ph = exp2f(sh - m_new);
      l[h] = l[h] * corr + warp_sum(ph);
#pragma unroll
      for (int k = 0; k < DPL; ++k) O[h][k] *= corr;
      m[h] = m_new;
      s[h] = ph;
    }
    const int n_valid = static_cast<int>(min(static_cast<int64_t>(32), end - base));
    for (int jj = 0; jj < n_valid; ++jj) {
      const int64_t offj = __shfl_sync(0xffffffffu, off, jj);
      const T* vrow = kv.base + offj + kv.v_off + static_cast<int64_t>(g) * kv.v_head;
      float vv[DPL];
#pragma unroll
      for (int k = 0; k < DPL; ++k) {
        const int c = lane + 32 * k;
        vv[k] = c < dv ? to_float(vrow[c]) : 0.0f;
      }
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h >= group) continue;
        const float pj = __shfl_sync(0xffffffffu, s[h], jj);
#pragma unroll
        for (int k = 0; k < DPL; ++k) O[h][k] += pj * vv[k];
      }
    }
  }

#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) continue;
    if (lane == 0) wm[wid][h] = m[h], wl[wid][h] = l[h];
#pragma unroll
    for (int k = 0; k < DPL; ++k) {
      const int c = lane + 32 * k;
      if (c < dv) wo[wid][h][c] = O[h][k];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * dv; idx += kDecodeThreads) {
    const int jh = idx / dv, c = idx % dv;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, wm[w][jh]);
    float L = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      if (wm[w][jh] == -INFINITY) continue;  // a warp (or the whole split) that saw no position
      const float f = exp2f(wm[w][jh] - M);
      L += wl[w][jh] * f;
      o += wo[w][jh][c] * f;
    }
    const int64_t hi = (static_cast<int64_t>(ii) * n_heads + g * group + jh) * splits + split;
    part_o[hi * dv + c] = o;
    if (c == 0) part_m[hi] = M, part_l[hi] = L;
  }
}

template <class Out>
__global__ void combine_kernel(const float* part_m, const float* part_l, const float* part_o, int n_heads, int splits,
                               int width, const DevRun* runs, const int32_t* run_ids, Out* out, int64_t ldo,
                               int64_t head_stride, bool by_index) {
  const int ii = blockIdx.x, h = blockIdx.y;
  const DevRun run = runs[run_ids[ii]];
  const int64_t row = by_index ? ii : run.row0;
  Out* o = out + row * ldo + static_cast<int64_t>(h) * head_stride;
  if (run.seq < 0) {
    for (int c = threadIdx.x; c < width; c += blockDim.x) o[c] = from_float<Out>(0.0f);
    return;
  }
  const int64_t hs = (static_cast<int64_t>(ii) * n_heads + h) * splits;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, part_m[hs + s]);
  float L = 0.0f;
  for (int s = 0; s < splits; ++s)
    if (part_m[hs + s] != -INFINITY) L += part_l[hs + s] * exp2f(part_m[hs + s] - M);
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
  for (int c = threadIdx.x; c < width; c += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s)
      if (part_m[hs + s] != -INFINITY) acc += part_o[(hs + s) * width + c] * exp2f(part_m[hs + s] - M);
    o[c] = from_float<Out>(acc * inv);
  }
}

template <class K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    ZEBRA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

}  // namespace

template <class T>
void gqa_attention_prefill(const T* q, int64_t ldq, int64_t q_head, const KvSource<T>& kv, const AttnDims& d,
                           const DevRun* runs, const int32_t* run_ids, int64_t n_ids, int64_t max_n, T* out,
                           int64_t ldo, cudaStream_t stream) {
  check_kv(kv, d, "gqa_attention_prefill");
  ZEBRA_CHECK(d.qk_dim <= 256 && d.v_dim <= 128, "gqa_attention_prefill: head widths qk ", d.qk_dim, " / v ", d.v_dim,
              " exceed the kernel's 256 / 128");
  ZEBRA_CHECK(q && out && runs && run_ids && n_ids >= 0 && max_n >= 0, "gqa_attention_prefill: bad arguments");
  ZEBRA_CHECK((d.n_heads - 1) * q_head + d.qk_dim <= ldq && d.n_heads * d.v_dim <= ldo,
              "gqa_attention_prefill: query/output rows too narrow (ldq ", ldq, ", ldo ", ldo, ")");
  if (n_ids == 0 || max_n == 0) return;
  const int64_t tiles = ceil_div(max_n, kBQ);
  check_grid(tiles, d.n_heads, n_ids, "gqa_attention_prefill");
  const size_t smem = prefill_smem_bytes((int)d.qk_dim, (int)d.v_dim);
  const float scale_log2 = d.scale * kLog2e;
  const dim3 grid((unsigned)tiles, (unsigned)d.n_heads, (unsigned)n_ids);
  const int group = (int)(d.n_heads / d.kv_heads);
  if (d.v_dim <= 64) {
    set_smem(prefill_kernel<T, 32>, smem);
    prefill_kernel<T, 32><<<grid, kPrefillThreads, smem, stream>>>(q, ldq, q_head, kv, group, (int)d.qk_dim,
                                                                   (int)d.v_dim, scale_log2, runs, run_ids, out, ldo);
  } else {
    set_smem(prefill_kernel<T, 64>, smem);
    prefill_kernel<T, 64><<<grid, kPrefillThreads, smem, stream>>>(q, ldq, q_head, kv, group, (int)d.qk_dim,
                                                                   (int)d.v_dim, scale_log2, runs, run_ids, out, ldo);
  }
  ZEBRA_CUDA_CHECK_LAUNCH();
}

int64_t gqa_decode_splits(int64_t n_ids, int64_t kv_heads, int64_t max_len, int sm_count) {
  const int64_t blocks = std::max<int64_t>(1, n_ids * kv_heads);
  int64_t s = ceil_div(2 * std::max(1, sm_count), blocks);
  s = std::min<int64_t>(s, ceil_div(std::max<int64_t>(1, max_len), 64));
  return std::clamp<int64_t>(s, 1, 128);
}

int64_t gqa_decode_workspace_floats(int64_t n_ids, const AttnDims& d, int64_t splits) {
  return n_ids * d.n_heads * splits * (2 + d.v_dim);
}

template <class Out>
void combine_splits(const float* partial, int64_t n_ids, int64_t n_heads, int64_t splits, int64_t width,
                    const DevRun* runs, const int32_t* run_ids, Out* out, int64_t ldo, int64_t head_stride,
                    cudaStream_t stream, bool by_index) {
  ZEBRA_CHECK(partial && n_heads > 0 && splits > 0 && width > 0, "combine_splits: bad arguments");
  if (n_ids == 0) return;
  check_grid(n_ids, n_heads, 1, "combine_splits");
  const int64_t hs = n_ids * n_heads * splits;
  const int threads = (int)std::min<int64_t>(256, ceil_div(width, 32) * 32);
  combine_kernel<Out><<<dim3((unsigned)n_ids, (unsigned)n_heads), threads, 0, stream>>>(
      partial, partial + hs, partial + 2 * hs, (int)n_heads, (int)splits, (int)width, runs, run_ids, out, ldo,
      head_stride, by_index);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template <class T>
void gqa_attention_decode(const T* q, int64_t ldq, int64_t q_head, const KvSource<T>& kv, const AttnDims& d,
                          const DevRun* runs, const int32_t* run_ids, int64_t n_ids, int64_t splits, float* partial,
                          T* out, int64_t ldo, cudaStream_t stream) {
  check_kv(kv, d, "gqa_attention_decode");
  const int64_t group = d.n_heads / d.kv_heads;
  ZEBRA_CHECK(group <= kMaxGroup, "gqa_attention_decode: ", group, " query heads per kv head exceed the kernel's ",
              kMaxGroup);
  ZEBRA_CHECK(d.qk_dim <= 128 && d.v_dim <= 128, "gqa_attention_decode: head widths qk ", d.qk_dim, " / v ", d.v_dim,
              " exceed the kernel's 128");
  ZEBRA_CHECK(q && out && runs && run_ids && partial && n_ids >= 0 && splits >= 1,
              "gqa_attention_decode: bad arguments");
  ZEBRA_CHECK((d.n_heads - 1) * q_head + d.qk_dim <= ldq && d.n_heads * d.v_dim <= ldo,
              "gqa_attention_decode: query/output rows too narrow (ldq ", ldq, ", ldo ", ldo, ")");
  if (n_ids == 0) return;
  check_grid(splits, d.kv_heads, n_ids, "gqa_attention_decode");
  const int64_t hs = n_ids * d.n_heads * splits;
  const dim3 grid((unsigned)splits, (unsigned)d.kv_heads, (unsigned)n_ids);
  const float scale_log2 = d.scale * kLog2e;
  const int64_t width = std::max(d.qk_dim, d.v_dim);
  if (width <= 64)
    decode_kernel<T, 2><<<grid, kDecodeThreads, 0, stream>>>(q, ldq, q_head, kv, (int)d.n_heads, (int)group,
                                                             (int)d.qk_dim, (int)d.v_dim, scale_log2, runs, run_ids,
                                                             (int)splits, partial, partial + hs, partial + 2 * hs);
  else
    decode_kernel<T, 4><<<grid, kDecodeThreads, 0, stream>>>(q, ldq, q_head, kv, (int)d.n_heads, (int)group,
                                                             (int)d.qk_dim, (int)d.v_dim, scale_log2, runs, run_ids,
                                                             (int)splits, partial, partial + hs, partial + 2 * hs);
  ZEBRA_CUDA_CHECK_LAUNCH();
  combine_splits<T>(partial, n_ids, d.n_heads, splits, d.v_dim, runs, run_ids, out, ldo, d.v_dim, stream);
}

template void gqa_attention_prefill<float>(const float*, int64_t, int64_t, const KvSource<float>&, const AttnDims&,
                                           const DevRun*, const int32_t*, int64_t, int64_t, float*, int64_t,
                                           cudaStream_t);
template void gqa_attention_prefill<bf16>(const bf16*, int64_t, int64_t, const KvSource<bf16>&, const AttnDims&,
                                          const DevRun*, const int32_t*, int64_t, int64_t, bf16*, int64_t,
                                          cudaStream_t);
template void gqa_attention_decode<float>(const float*, int64_t, int64_t, const KvSource<float>&, const AttnDims&,
                                          const DevRun*, const int32_t*, int64_t, int64_t, float*, float*, int64_t,
                                          cudaStream_t);
template void gqa_attention_decode<bf16>(const bf16*, int64_t, int64_t, const KvSource<bf16>&, const AttnDims&,
                                         const DevRun*, const int32_t*, int64_t, int64_t, float*, bf16*, int64_t,
                                         cudaStream_t);
template void combine_splits<float>(const float*, int64_t, int64_t, int64_t, int64_t, const DevRun*, const int32_t*,
                                    float*, int64_t, int64_t, cudaStream_t, bool);
template void combine_splits<bf16>(const float*, int64_t, int64_t, int64_t, int64_t, const DevRun*, const int32_t*,
                                   bf16*, int64_t, int64_t, cudaStream_t, bool);

}  // namespace zebra::cuda
