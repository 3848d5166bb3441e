// MLA attention (see mla_attention.cuh). The absorbed decoder keeps scores in log2 units: q_lat is pre-scaled by
// softmax_scale * log2(e), so its partials merge with the GQA decoder's combine_splits.
#include <cmath>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/mla_attention.cuh"
#include "kernels/cuda/paged_cache.cuh"

namespace zebra::cuda {

namespace {

constexpr int kTile = 32;         // latent positions per shared-memory tile (one per lane when scoring)
constexpr int kHeadsPerWarp = 4;  // query heads each warp scores and accumulates
constexpr int kMaxHeadsPerBlock = 32;
constexpr int kMaxRank = 512;
constexpr int kMaxNope = 256;

void check_dims(const MlaAttnDims& d, const char* op) {
  ZEBRA_CHECK(d.n_heads > 0 && d.kv_heads > 0 && d.n_heads % d.kv_heads == 0 && d.kv_rank > 0 &&
                  d.kv_rank <= kMaxRank && d.rope_dim > 0 && d.nope_dim >= 0 && d.nope_dim <= kMaxNope && d.v_dim > 0,
              op, ": unsupported MLA dims (heads ", d.n_heads, ", kv_heads ", d.kv_heads, ", kv_rank ", d.kv_rank,
              " (<= ", kMaxRank, "), rope ", d.rope_dim, ", nope ", d.nope_dim, " (<= ", kMaxNope, "), v ", d.v_dim,
              ")");
}

// q_lat[i][h] = [q_nope^h · W_UK^g (kv_rank) | q_pe^h (rope)] * softmax_scale * log2(e); W_UK^g = the nope rows of
// kv head g in kv_b ([nope][kv_rank], row-major: consecutive threads read consecutive columns).
template <class T>
__global__ void absorb_q_kernel(const T* q, int64_t ldq, const T* kv_b, int nh, int group, int R, int dr, int dn,
                                int dv, float scale_log2, const DevRun* runs, const int32_t* run_ids, float* q_lat) {
  __shared__ float qn[kMaxNope];
  const int ii = blockIdx.x, h = blockIdx.y, g = h / group, W = R + dr;
  const DevRun run = runs[run_ids[ii]];
  float* ql = q_lat + (static_cast<int64_t>(ii) * nh + h) * W;
  if (run.seq < 0) {
    for (int c = threadIdx.x; c < W; c += blockDim.x) ql[c] = 0.0f;
    return;
  }
  const T* qh = q + static_cast<int64_t>(run.row0) * ldq + static_cast<int64_t>(h) * (dn + dr);
  for (int i = threadIdx.x; i < dn; i += blockDim.x) qn[i] = to_float(qh[i]);
  __syncthreads();
  const T* wuk = kv_b + static_cast<int64_t>(g) * (dn + dv) * R;
  for (int c = threadIdx.x; c < R; c += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < dn; ++i) acc += qn[i] * to_float(wuk[static_cast<int64_t>(i) * R + c]);
    ql[c] = acc * scale_log2;
  }
  for (int c = threadIdx.x; c < dr; c += blockDim.x) ql[R + c] = to_float(qh[dn + c]) * scale_log2;
}

size_t decode_smem_bytes(int64_t hc, int64_t W) {
  return sizeof(int64_t) * kTile + sizeof(float) * (size_t)(hc * W + kTile * (W + 1));
}

// One block per (split, head chunk, run): the block's warps own kHeadsPerWarp heads each; every tile of 32 latent
// rows is read from global memory once into shared memory and scored by all of the block's heads. Lane j scores
// row j (its dot over the whole width), then lanes own kv_rank columns for p · c_kv. Each head belongs to one warp,
// so its split partial needs no merge inside the block.
template <class T, int RPL>
__global__ void decode_kernel(const float* q_lat, DevPaged<T> lat, int nh, int hc, int R, int W, const DevRun* runs,
                              const int32_t* run_ids, int splits, float* part_m, float* part_l, float* part_o) {
  extern __shared__ __align__(16) float smem[];
  int64_t* rowoff = reinterpret_cast<int64_t*>(smem);  // [kTile]
  float* Qs = smem + 2 * kTile;                         // [hc][W]
  float* tile = Qs + hc * W;                            // [kTile][W + 1]
  const int tp = W + 1;                                 // odd pitch: a column read by 32 lanes hits 32 banks

  const int ii = blockIdx.z, h0 = blockIdx.y * hc, split = blockIdx.x;
  const int32_t r = run_ids[ii];
  const DevRun run = runs[r];
  if (run.seq < 0) return;  // padding: combine_splits writes zeros
  const int nhb = min(hc, nh - h0);
  const int64_t len = static_cast<int64_t>(run.pos0) + 1;
  const int64_t chunk = (len + splits - 1) / splits;
  const int64_t start = static_cast<int64_t>(split) * chunk;
  const int64_t end = min(len, start + chunk);

  const float* qsrc = q_lat + (static_cast<int64_t>(ii) * nh + h0) * W;
  for (int idx = threadIdx.x; idx < nhb * W; idx += blockDim.x) Qs[idx] = qsrc[idx];

  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31, hb = wid * kHeadsPerWarp;
  float m[kHeadsPerWarp], l[kHeadsPerWarp], O[kHeadsPerWarp][RPL];
#pragma unroll
  for (int k = 0; k < kHeadsPerWarp; ++k) {
    m[k] = -INFINITY;
    l[k] = 0.0f;
#pragma unroll
    for (int c = 0; c < RPL; ++c) O[k][c] = 0.0f;
  }

  for (int64_t base = start; base < end; base += kTile) {  // uniform over the block
    __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
    if (threadIdx.x < kTile) {
      const int64_t p = base + threadIdx.x;
      rowoff[threadIdx.x] = p < end ? lat.row(r, p) - lat.base : -1;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * W; idx += blockDim.x) {
      const int j = idx / W, c = idx % W;
      const int64_t off = rowoff[j];
      tile[j * tp + c] = off >= 0 ? to_float(lat.base[off + c]) : 0.0f;
    }
    __syncthreads();
    if (hb >= nhb) continue;  // a warp without heads only helps load (uniform per warp; no shuffles skipped)

    const bool ok = base + lane < end;
    float s[kHeadsPerWarp];
#pragma unroll
    for (int k = 0; k < kHeadsPerWarp; ++k) s[k] = 0.0f;
    const float* trow = tile + lane * tp;
    for (int c = 0; c < W; ++c) {
      const float t = trow[c];
#pragma unroll
      for (int k = 0; k < kHeadsPerWarp; ++k)
        if (hb + k < nhb) s[k] += Qs[(hb + k) * W + c] * t;
    }
#pragma unroll
    for (int k = 0; k < kHeadsPerWarp; ++k) {
      if (hb + k >= nhb) continue;  // uniform per warp
      const float sk = ok ? s[k] : -INFINITY;
      const float m_new = fmaxf(m[k], warp_max(sk));  // lane 0's row is valid: finite
      const float corr = exp2f(m[k] - m_new);
      const float pk = exp2f(sk - m_new);
      l[k] = l[k] * corr + warp_sum(pk);
#pragma unroll
      for (int c = 0; c < RPL; ++c) O[k][c] *= corr;
      m[k] = m_new;
      s[k] = pk;
    }
    const int n_valid = static_cast<int>(min(static_cast<int64_t>(kTile), end - base));
    for (int jj = 0; jj < n_valid; ++jj) {
      float pj[kHeadsPerWarp];
#pragma unroll
      for (int k = 0; k < kHeadsPerWarp; ++k) pj[k] = __shfl_sync(0xffffffffu, s[k], jj);
      const float* vrow = tile + jj * tp;
#pragma unroll
      for (int c = 0; c < RPL; ++c) {
        const int col = lane + 32 * c;
        const float v = col < R ? vrow[col] : 0.0f;
#pragma unroll
        for (int k = 0; k < kHeadsPerWarp; ++k) O[k][c] += pj[k] * v;
      }
    }
  }

#pragma unroll
  for (int k = 0; k < kHeadsPerWarp; ++k) {
    if (hb + k >= nhb) continue;
    const int64_t hi = (static_cast<int64_t>(ii) * nh + h0 + hb + k) * splits + split;
    if (lane == 0) part_m[hi] = m[k], part_l[hi] = l[k];
#pragma unroll
    for (int c = 0; c < RPL; ++c) {
      const int col = lane + 32 * c;
      if (col < R) part_o[hi * R + col] = O[k][c];
    }
  }
}

// out[row0][h * dv + v] = W_UV^g[v] · o_lat[i][h], W_UV^g = the value rows of kv head g in kv_b ([dv][kv_rank]):
// a warp per output column, lanes over kv_rank.
template <class T>
__global__ void absorb_out_kernel(const float* o_lat, const T* kv_b, int nh, int group, int R, int dn, int dv,
                                  const DevRun* runs, const int32_t* run_ids, T* out, int64_t ldo) {
  __shared__ float ov[kMaxRank];
  const int ii = blockIdx.x, h = blockIdx.y, g = h / group;
  const DevRun run = runs[run_ids[ii]];
  T* o = out + static_cast<int64_t>(run.row0) * ldo + static_cast<int64_t>(h) * dv;
  if (run.seq < 0) {
    for (int v = threadIdx.x; v < dv; v += blockDim.x) o[v] = from_float<T>(0.0f);
    return;
  }
  const float* ol = o_lat + (static_cast<int64_t>(ii) * nh + h) * R;
  for (int c = threadIdx.x; c < R; c += blockDim.x) ov[c] = ol[c];
  __syncthreads();
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  const T* wuv = kv_b + (static_cast<int64_t>(g) * (dn + dv) + dn) * R;
  for (int v = wid; v < dv; v += n_warps) {
    float acc = 0.0f;
    for (int c = lane; c < R; c += 32) acc += ov[c] * to_float(wuv[static_cast<int64_t>(v) * R + c]);
    acc = warp_sum(acc);
    if (lane == 0) o[v] = from_float<T>(acc);
  }
}

template <class K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    ZEBRA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

}  // namespace

int64_t mla_attention_scratch(const MlaAttnDims& d, int64_t len) {
  return len * d.width() + len * (d.kv_cols() + d.rope_dim);
}

template <class T>
void mla_attention(Blas& blas, const MlaAttnDims& d, const T* q, int64_t ldq, const T* kv_b, const DevPaged<T>& latent,
                   const DevRun* runs, const int32_t* run_id, int32_t run, const DevRun& run_host, T* scratch,
                   T* out, int64_t ldo, cudaStream_t stream) {
  check_dims(d, "mla_attention");
  ZEBRA_CHECK(run_host.seq >= 0 && run_host.n > 0 && latent.row_elems == d.width(), "mla_attention: bad run (seq ",
              run_host.seq, ", n ", run_host.n, ") or latent width ", latent.row_elems, " != ", d.width());
  const int64_t L = static_cast<int64_t>(run_host.pos0) + run_host.n, W = d.width(), R = d.kv_rank;
  const int64_t kvw = d.kv_cols(), ldkv = kvw + d.rope_dim;
  T* lat = scratch;         // [L, W] the run's latents, positions 0..L-1
  T* kv = scratch + L * W;  // [L, kvw + rope]: per kv head [k_nope | v], then the shared rope key
  paged_gather(latent, run, L, W, lat, W, stream);
  blas.gemm(true, dtype_of<T>(), dtype_of<T>(), L, kvw, R, lat, W, kv_b, R, kv, ldkv);  // c_kv · kv_bᵀ
  ZEBRA_CUDA_CHECK(cudaMemcpy2DAsync(kv + kvw, ldkv * sizeof(T), lat + R, W * sizeof(T), d.rope_dim * sizeof(T), L,
                                     cudaMemcpyDeviceToDevice, stream));
  KvSource<T> src;
  src.base = kv;
  src.k1_off = 0, src.k1_head = d.nope_dim + d.v_dim;
  src.k2_off = kvw, src.k2_head = 0;
  src.v_off = d.nope_dim, src.v_head = d.nope_dim + d.v_dim;
  src.d1 = static_cast<int32_t>(d.nope_dim);
  src.row_stride = ldkv;
  AttnDims ad{d.n_heads, d.kv_heads, d.q_dim(), d.v_dim, d.softmax_scale};
  gqa_attention_prefill(q, ldq, d.q_dim(), src, ad, runs, run_id, 1, run_host.n, out, ldo, stream);
}

MlaDecodePlan mla_decode_plan(const MlaAttnDims& d, int64_t n_ids, int64_t max_len, int sm_count) {
  MlaDecodePlan p;
  p.heads_per_block = std::min<int64_t>(d.n_heads, kMaxHeadsPerBlock);
  while (p.heads_per_block > kHeadsPerWarp && decode_smem_bytes(p.heads_per_block, d.width()) > 160 * 1024)
    p.heads_per_block = ceil_div(p.heads_per_block, 2);
  const int64_t blocks = std::max<int64_t>(1, n_ids) * ceil_div(d.n_heads, p.heads_per_block);
  int64_t s = ceil_div(2 * std::max(1, sm_count), blocks);
  s = std::min<int64_t>(s, ceil_div(std::max<int64_t>(1, max_len), 64));
  p.splits = std::clamp<int64_t>(s, 1, 128);
  return p;
}

int64_t mla_decode_workspace_floats(const MlaAttnDims& d, int64_t n_ids, const MlaDecodePlan& plan) {
  return n_ids * d.n_heads * (d.width() + plan.splits * (2 + d.kv_rank) + d.kv_rank);
}

template <class T>
void mla_decode(const MlaAttnDims& d, const MlaDecodePlan& plan, const T* q, int64_t ldq, const T* kv_b,
                const DevPaged<T>& latent, const DevRun* runs, const int32_t* run_ids, int64_t n_ids, float* workspace,
                T* out, int64_t ldo, cudaStream_t stream) {
  check_dims(d, "mla_decode");
  ZEBRA_CHECK(latent.row_elems == d.width() && latent.base && latent.tables, "mla_decode: latent rows of ",
              latent.row_elems, " elements, expected kv_rank + rope = ", d.width());
  ZEBRA_CHECK(q && kv_b && out && workspace && runs && run_ids && n_ids >= 0 && plan.splits >= 1 &&
                  plan.heads_per_block >= 1 && plan.heads_per_block <= kMaxHeadsPerBlock,
              "mla_decode: bad arguments");
  ZEBRA_CHECK(ldq >= d.n_heads * d.q_dim() && ldo >= d.n_heads * d.v_dim, "mla_decode: rows too narrow (ldq ", ldq,
              ", ldo ", ldo, ")");
  if (n_ids == 0) return;
  const int64_t nh = d.n_heads, W = d.width(), R = d.kv_rank, hc = plan.heads_per_block;
  const int64_t chunks = ceil_div(nh, hc);
  const int group = static_cast<int>(nh / d.kv_heads);
  float* q_lat = workspace;                          // [n_ids][nh][W]
  float* partial = q_lat + n_ids * nh * W;           // m, l [n_ids][nh][splits], o [..][R]
  const int64_t hs = n_ids * nh * plan.splits;
  float* o_lat = partial + hs * (2 + R);             // [n_ids][nh][R]
  const float scale_log2 = d.softmax_scale * kLog2e;

  check_grid(n_ids, nh, 1, "mla_decode");
  absorb_q_kernel<T><<<dim3((unsigned)n_ids, (unsigned)nh), 128, 0, stream>>>(
      q, ldq, kv_b, (int)nh, group, (int)R, (int)d.rope_dim, (int)d.nope_dim, (int)d.v_dim, scale_log2, runs, run_ids,
      q_lat);
  ZEBRA_CUDA_CHECK_LAUNCH();

  check_grid(plan.splits, chunks, n_ids, "mla_decode");
  const size_t smem = decode_smem_bytes(hc, W);
  const dim3 grid((unsigned)plan.splits, (unsigned)chunks, (unsigned)n_ids);
  const int threads = (int)(32 * ceil_div(hc, kHeadsPerWarp));
  if (R <= 128) {
    set_smem(decode_kernel<T, 4>, smem);
    decode_kernel<T, 4><<<grid, threads, smem, stream>>>(q_lat, latent, (int)nh, (int)hc, (int)R, (int)W, runs,
                                                          run_ids, (int)plan.splits, partial, partial + hs,
                                                          partial + 2 * hs);
  } else if (R <= 256) {
    set_smem(decode_kernel<T, 8>, smem);
    decode_kernel<T, 8><<<grid, threads, smem, stream>>>(q_lat, latent, (int)nh, (int)hc, (int)R, (int)W, runs,
                                                          run_ids, (int)plan.splits, partial, partial + hs,
                                                          partial + 2 * hs);
  } else {
    set_smem(decode_kernel<T, 16>, smem);
    decode_kernel<T, 16><<<grid, threads, smem, stream>>>(q_lat, latent, (int)nh, (int)hc, (int)R, (int)W, runs,
                                                           run_ids, (int)plan.splits, partial, partial + hs,
                                                           partial + 2 * hs);
  }
  ZEBRA_CUDA_CHECK_LAUNCH();

  combine_splits<float>(partial, n_ids, nh, plan.splits, R, runs, run_ids, o_lat, nh * R, R, stream, true);
  absorb_out_kernel<T><<<dim3((unsigned)n_ids, (unsigned)nh), 128, 0, stream>>>(
      o_lat, kv_b, (int)nh, group, (int)R, (int)d.nope_dim, (int)d.v_dim, runs, run_ids, out, ldo);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

template void mla_attention<float>(Blas&, const MlaAttnDims&, const float*, int64_t, const float*,
                                   const DevPaged<float>&, const DevRun*, const int32_t*, int32_t, const DevRun&,
                                   float*, float*, int64_t, cudaStream_t);
template void mla_attention<bf16>(Blas&, const MlaAttnDims&, const bf16*, int64_t, const bf16*, const DevPaged<bf16>&,
                                  const DevRun*, const int32_t*, int32_t, const DevRun&, bf16*, bf16*, int64_t,
                                  cudaStream_t);
template void mla_decode<float>(const MlaAttnDims&, const MlaDecodePlan&, const float*, int64_t, const float*,
                                const DevPaged<float>&, const DevRun*, const int32_t*, int64_t, float*, float*, int64_t,
                                cudaStream_t);
template void mla_decode<bf16>(const MlaAttnDims&, const MlaDecodePlan&, const bf16*, int64_t, const bf16*,
                               const DevPaged<bf16>&, const DevRun*, const int32_t*, int64_t, float*, bf16*, int64_t,
                               cudaStream_t);

}  // namespace zebra::cuda
