// Building a Zebra hybrid from a Llama (spec §2): choose the MLA layers, initialise each MLA layer by
// SVD of the teacher's attention and each Mamba2 layer from its q/k/v/o, copy everything else.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "model/model.h"

namespace zebra {

struct ComposeOptions {
  // Layout: at most one of mla_layers / mla_count / all_mla / all_mamba. None: half the layers
  // (rounded down, at least 1) in default_mla_layout, like the released 8MLA-8M2 / 14MLA-14M2 / 16MLA-16M2.
  std::optional<std::vector<int64_t>> mla_layers;  // explicit indices (any order; sorted on use)
  int64_t mla_count = -1;                          // N MLA layers placed by default_mla_layout
  bool all_mla = false, all_mamba = false;

  // MLA shape. Defaults (hd = teacher head dim, following the released configs' spirit):
  //   rope_dim = nope_dim = hd/2 (rope rounded up to even); one given -> the other fills the head;
  //   v_dim = hd (required by the o_proj reuse);
  //   kv_rank = 2*nkv*hd/8 rounded up to 8 (1B's released 128); q_rank = nh*hd/2 rounded up to 8
  //   (3B/8B's released ratio); both capped by what the matrices allow.
  int64_t q_rank = -1;    // -1 = default, 0 = no q LoRA (full q_proj)
  int64_t kv_rank = 0;    // 0 = default
  int64_t rope_dim = 0;   // 0 = default
  int64_t nope_dim = -1;  // -1 = default
  int64_t v_dim = 0;      // 0 = default (hd)
  double q_energy = 0;    // > 0: per-layer q rank by the energy rule (exclusive with q_rank)
  double kv_energy = 0;   // > 0: per-layer kv rank by the energy rule (exclusive with kv_rank)
  bool full_kv_head = false;  // kv_b with nh heads (X-EcoMLA) instead of the teacher's nkv
  int64_t rank_divisor = 8;   // qkv_rank_divisor

  // MLA YaRN. 0 = from the teacher: its llama3/yarn/linear factor and original context (the released
  // configs copy Llama-3's factor and 8192); a plain-RoPE teacher gets factor 1 (no scaling).
  double yarn_factor = 0;
  int64_t yarn_original_max = 0;

  uint64_t seed = 0;      // Mamba2's random parts
  bool progress = true;   // a progress line per layer
};

// The MLA layer indices `opts` asks for on a model of n_layers (validated: in range, no duplicates).
std::vector<int64_t> resolve_mla_layers(const ComposeOptions& opts, int64_t n_layers);

// Returns the hybrid (is_hybrid, hybrid config, per-layer dims/rope/weights); MLP, norms, embedding
// and head are copied from the teacher. Throws zebra::Error naming the option for impossible requests
// (ranks beyond the matrices, rope dims not fitting the head, bad layer lists, a hybrid teacher).
Model compose_hybrid(const Model& teacher, const ComposeOptions& opts);

}  // namespace zebra
