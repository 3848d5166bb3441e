// mla_attention, mla_decode (kernels/cpu's mla_attention.h): Multi-head Latent Attention over the paged latent
// cache, whose rows are [c_kv (kv_rank) | rotated rope key (rope_dim)] (spec §1.3; model/mla.cpp's notation):
//   mla_attention  decompressed, for prefill runs: the run's latents are gathered, k_nope/v rebuilt for every
//                  position with one GEMM (c_kv · kv_bᵀ), and the flash prefill kernel attends with keys
//                  [k_nope^g | kpe] and values v^g.
//   mla_decode     weight-absorbed, for runs of one token: q_lat^h = [q_nope^h · W_UK^g | q_pe^h] is scored
//                  directly against the cached latent rows, all query heads in one pass over the latents
//                  (split-K blocks per (run, split), merged like the GQA decoder's), and o^h = W_UV^g · o_lat^h.
// Any latent and rope width (kv_rank <= 512) and head count: heads are spread over the warps of a block and,
// past 32, over several blocks.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_views.h"
#include "kernels/cuda/gemm.cuh"

namespace zebra::cuda {

struct MlaAttnDims {
  int64_t n_heads = 0, kv_heads = 0;  // query heads; heads of kv_b (num_kv_heads or n_heads)
  int64_t kv_rank = 0, rope_dim = 0, nope_dim = 0, v_dim = 0;
  float softmax_scale = 1.0f;
  int64_t q_dim() const { return nope_dim + rope_dim; }
  int64_t width() const { return kv_rank + rope_dim; }            // latent row
  int64_t kv_cols() const { return kv_heads * (nope_dim + v_dim); }  // kv_b output per position
};

// Scratch of one mla_attention call for a run whose context is `len` positions (elements of T).
int64_t mla_attention_scratch(const MlaAttnDims& d, int64_t len);

// Decompressed attention for the run runs[run] (host copy `run_host`; `run_id` points at a device int32 holding
// `run`). q: rows [rows, ldq], head h at h * q_dim() = [q_nope | rotated q_pe]; kv_b: [kv_cols(), kv_rank];
// out: head h at out + row * ldo + h * v_dim. The run's own latents must already be in the cache.
template <class T>
void mla_attention(Blas& blas, const MlaAttnDims& d, const T* q, int64_t ldq, const T* kv_b, const DevPaged<T>& latent,
                   const DevRun* runs, const int32_t* run_id, int32_t run, const DevRun& run_host, T* scratch,
                   T* out, int64_t ldo, cudaStream_t stream);

struct MlaDecodePlan {
  int64_t splits = 1;
  int64_t heads_per_block = 1;
};
// Splits and head blocks for n_ids decode runs whose longest context is max_len.
MlaDecodePlan mla_decode_plan(const MlaAttnDims& d, int64_t n_ids, int64_t max_len, int sm_count);
// fp32 workspace of mla_decode: q_lat [n_ids][n_heads][width], split partials, o_lat [n_ids][n_heads][kv_rank].
int64_t mla_decode_workspace_floats(const MlaAttnDims& d, int64_t n_ids, const MlaDecodePlan& plan);

// Absorbed decode of the runs runs[run_ids[i]] (each n == 1, its query at row0), i < n_ids. Padding runs write
// zero outputs and read no cache.
template <class T>
void mla_decode(const MlaAttnDims& d, const MlaDecodePlan& plan, const T* q, int64_t ldq, const T* kv_b,
                const DevPaged<T>& latent, const DevRun* runs, const int32_t* run_ids, int64_t n_ids, float* workspace,
                T* out, int64_t ldo, cudaStream_t stream);

}  // namespace zebra::cuda
