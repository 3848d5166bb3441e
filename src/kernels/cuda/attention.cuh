// gqa_attention (kernels/cpu's attention.h): causal grouped-query attention of a forward's runs over their cached
// keys and values, in two kernels:
//   prefill  flash-attention style: one block per (64-query tile of a run, query head), key/value tiles of 32
//            positions through shared memory, online softmax, fp32 accumulation. Also serves the decompressed MLA
//            prefill (keys = [k_nope per kv head | one shared rope key], values v per kv head).
//   decode   paged split-K for runs of one token: one block per (run, kv head, split of the context), so every
//            query head of the group shares each K/V read; a combine kernel merges the splits.
// Query row i of run r sits at position pos0 + i and sees key positions 0..pos0+i, which the caller has already
// written to the cache (its own included).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_views.h"

namespace zebra::cuda {

struct AttnDims {
  int64_t n_heads = 0;   // query heads
  int64_t kv_heads = 0;  // key/value heads; query head h reads kv head h / (n_heads / kv_heads)
  int64_t qk_dim = 0;    // query/key width (<= 256)
  int64_t v_dim = 0;     // value width (<= 128)
  float scale = 1.0f;    // softmax scale
};

// Where keys and values of position p of run r live. Row offset (elements from `base`):
//   paged (tables != null):  tables[r * table_stride + p / block_tokens] * block_stride + (p % block_tokens) * row_stride
//   dense (tables == null):  p * row_stride   (base already points at the run's position 0)
// Within the row, for kv head g: key = [row + k1_off + g * k1_head, d1 elements | row + k2_off + g * k2_head,
// qk_dim - d1 elements], value = row + v_off + g * v_head (v_dim elements). k2_head = 0 shares one key part
// among all heads (MLA's rope key). Llama: row = [K | V], k1_off = 0, k1_head = head_dim, d1 = head_dim,
// v_off = kv_heads * head_dim, v_head = head_dim.
template <class T>
struct KvSource {
  const T* base = nullptr;
  int64_t k1_off = 0, k1_head = 0;
  int64_t k2_off = 0, k2_head = 0;
  int64_t v_off = 0, v_head = 0;
  int32_t d1 = 0;
  const int32_t* tables = nullptr;
  int32_t table_stride = 0, block_tokens = 1;
  int64_t block_stride = 0, row_stride = 0;
};

// Queries: head h of row t at q + t * ldq + h * q_head (qk_dim elements). Output: out + t * ldo + h * v_dim.
// Prefill runs the runs runs[run_ids[i]] for i < n_ids (run_ids on the device); max_n >= every such run's n
// (sets the grid). Padding runs (seq < 0) are skipped.
template <class T>
void gqa_attention_prefill(const T* q, int64_t ldq, int64_t q_head, const KvSource<T>& kv, const AttnDims& d,
                           const DevRun* runs, const int32_t* run_ids, int64_t n_ids, int64_t max_n, T* out,
                           int64_t ldo, cudaStream_t stream);

// Decode: every listed run has n == 1 (its query at row0, position pos0). `splits` blocks share each (run, kv head);
// `partial` is fp32 workspace of gqa_decode_workspace_floats(n_ids, d, splits). Padding runs get zero outputs.
template <class T>
void gqa_attention_decode(const T* q, int64_t ldq, int64_t q_head, const KvSource<T>& kv, const AttnDims& d,
                          const DevRun* runs, const int32_t* run_ids, int64_t n_ids, int64_t splits, float* partial,
                          T* out, int64_t ldo, cudaStream_t stream);

// Splits that fill the GPU (about two blocks per multiprocessor) without making splits shorter than 64 positions
// of the longest context `max_len` the launch may see.
int64_t gqa_decode_splits(int64_t n_ids, int64_t kv_heads, int64_t max_len, int sm_count);
int64_t gqa_decode_workspace_floats(int64_t n_ids, const AttnDims& d, int64_t splits);

// Merges split partials (m, l in log2 units, unnormalised o) into out rows; shared by the GQA and MLA decoders.
// partial layout: [n_ids][n_heads][splits] m, then l (same shape), then o [n_ids][n_heads][splits][width].
// The output row of run runs[run_ids[i]] is its row0 (or i when by_index): out + row * ldo + h * head_stride
// (width elements). Padding runs get zeros.
template <class Out>
void combine_splits(const float* partial, int64_t n_ids, int64_t n_heads, int64_t splits, int64_t width,
                    const DevRun* runs, const int32_t* run_ids, Out* out, int64_t ldo, int64_t head_stride,
                    cudaStream_t stream, bool by_index = false);

}  // namespace zebra::cuda
