// What the CUDA ops read, as plain structs of device pointers (the device counterparts of kernels/views.h):
// the runs of a forward, paged cache layers and Mamba2 state slots. Included by host code (the engine, the
// tests) and by the .cu files alike.
#pragma once
#include <cstdint>

#include "kernels/cuda/dtype.h"

#if defined(__CUDACC__)
#define ZEBRA_HD __host__ __device__ __forceinline__
#else
#define ZEBRA_HD inline
#endif

namespace zebra::cuda {

// Rows [row0, row0 + n) of a forward's activations are positions [pos0, pos0 + n) of sequence `seq`
// (views.h's Run). seq < 0 marks a padding run of a captured decode graph: every op skips it (no cache or
// state access) and writes zeros (or nothing) for its rows. pos0 == 0 starts the sequence afresh: Mamba2 ops
// then read a zero state instead of the slot's. A sequence's state slot is its id.
struct DevRun {
  int32_t seq = -1;
  int32_t row0 = 0;
  int32_t n = 0;
  int32_t pos0 = 0;
  ZEBRA_HD int32_t end() const { return pos0 + n; }
};

// One paged cache layer (Llama K|V rows or MLA latent rows) of element type T. The engine keeps all paged
// layers of a block together (block b of every layer is one contiguous span of `block_stride` elements, so a
// copy-on-write block copy is one memcpy), hence position p of run r lives at
//   base + tables[r * table_stride + p / block_tokens] * block_stride + (p % block_tokens) * row_stride
// `tables` is per run of the forward (row r = the block table of runs[r].seq), not per sequence: the engine
// uploads only the rows the forward needs.
template <class T>
struct DevPaged {
  T* base = nullptr;
  int64_t block_stride = 0;  // elements from block b to block b + 1 of this layer
  int64_t row_stride = 0;    // elements from one position's row to the next within a block
  int64_t row_elems = 0;     // the row's width (<= row_stride)
  int32_t block_tokens = 0;
  int32_t table_stride = 0;  // entries per run row of `tables`
  const int32_t* tables = nullptr;

  ZEBRA_HD T* row(int32_t run, int64_t pos) const {
    const int32_t b = tables[static_cast<int64_t>(run) * table_stride + pos / block_tokens];
    return base + static_cast<int64_t>(b) * block_stride + (pos % block_tokens) * row_stride;
  }
};

// Mamba2 state of one layer, fp32: slot s's conv window at conv + s * slot_stride ([conv_dim][d_conv - 1],
// oldest first: only the d_conv - 1 previous inputs are ever read) and its SSM state at ssm + s * slot_stride
// ([n_heads][head_dim][d_state]). The engine interleaves the layers of a slot (one slot = one contiguous span),
// so copying a sequence's whole state for a fork or snapshot is one memcpy.
struct DevStates {
  float* conv = nullptr;
  float* ssm = nullptr;
  int64_t slot_stride = 0;
  ZEBRA_HD float* conv_at(int64_t slot) const { return conv + slot * slot_stride; }
  ZEBRA_HD float* ssm_at(int64_t slot) const { return ssm + slot * slot_stride; }
};

}  // namespace zebra::cuda
