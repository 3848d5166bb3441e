// Plain views the coarse ops of every backend take (kernels/cpu/*.h, kernels/cuda/*.cuh): how a batch is laid
// out in runs of one sequence, and where a sequence's cached rows and recurrent state live. No ownership, no
// allocation: the engine builds these once per forward from its cache and hands them to every layer.
#pragma once
#include <cstdint>

namespace zebra {

// Rows [row0, row0 + n) of a forward's activations are positions [pos0, pos0 + n) of sequence `seq`.
// The engine groups a batch's tokens by sequence (stable), so each sequence that appears in a forward is one
// run; runs are in order of first appearance. pos0 == 0 means the sequence starts fresh (zero state).
struct Run {
  int32_t seq = 0;
  int32_t row0 = 0;
  int32_t n = 0;
  int32_t pos0 = 0;
  int32_t end() const { return pos0 + n; }  // the sequence's length after this forward
};

// The rows of one forward: n rows grouped into runs (each run's rows contiguous), and every row's position.
struct RowLayout {
  const Run* runs = nullptr;
  int64_t n_runs = 0;
  const int32_t* pos = nullptr;  // [n] position of each row in its sequence
  int64_t n = 0;
};

// One paged cache layer (Llama attention K|V rows or MLA latent rows): position p of sequence s is row
//   block_tables[s * max_blocks + p / block_tokens] * block_tokens + p % block_tokens
// of `base`, each row `row_floats` wide. Blocks are shared between sequences by reference (a common prefix is
// stored once); the tables are dense [max_seqs][max_blocks] int32, -1 where a sequence has no block yet.
struct PagedLayer {
  float* base = nullptr;
  int64_t row_floats = 0;
  int64_t block_tokens = 0;
  const int32_t* block_tables = nullptr;
  int64_t max_blocks = 0;

  float* row(int64_t seq, int64_t pos) const {
    const int32_t b = block_tables[seq * max_blocks + pos / block_tokens];
    return base + (static_cast<int64_t>(b) * block_tokens + pos % block_tokens) * row_floats;
  }
};

// Constant-size recurrent state of one Mamba2 layer: slot s (a sequence, or a snapshot) holds its causal-conv
// window at conv + s * conv_floats ([conv_dim][d_conv - 1], oldest first: only the d_conv - 1 previous inputs
// are ever read) and its SSM state at ssm + s * ssm_floats ([n_heads][head_dim][d_state]).
struct StateSlots {
  float* conv = nullptr;
  float* ssm = nullptr;
  int64_t conv_floats = 0;
  int64_t ssm_floats = 0;
  float* conv_at(int64_t slot) const { return conv + slot * conv_floats; }
  float* ssm_at(int64_t slot) const { return ssm + slot * ssm_floats; }
};

}  // namespace zebra
