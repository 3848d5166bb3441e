// Multi-head Latent Attention (DeepSeek-style, AMD's GQA-MLA variant; spec §1.3): weights, the latent
// cache, prefill (decompressed) and decode (weight-absorbed) forward, and the training forward/backward.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"
#include "model/batch.h"
#include "model/hybrid_config.h"

namespace zebra {

struct MlaWeights {
  Tensor q_a;        // [q_rank, hidden]            (q_rank > 0)
  Tensor q_a_norm;   // [q_rank]                    (lora_norm)
  Tensor q_b;        // [n_heads*(nope+rope), q_rank]
  Tensor q_proj;     // [n_heads*(nope+rope), hidden] (q_rank == 0)
  Tensor kv_a;       // [kv_rank + rope, hidden]: latent rows, then the shared rope-key rows
  Tensor kv_a_norm;  // [kv_rank]                   (lora_norm)
  Tensor kv_b;       // [kv_heads*(nope + v), kv_rank]: per kv head, nope key rows then value rows
  Tensor out_proj;   // [hidden, n_heads*v]
};

// Throws zebra::Error naming `where` and the tensor when a weight's shape does not match d (q_a/q_b or
// q_proj by q_rank, the norms only when lora_norm), or when d itself is unusable (odd rope dim, ...).
void check_mla_weights(const MlaDims& d, const MlaWeights& w, const std::string& where);

// YaRN rope of the MLA rope dims (interleaved pairs), and the softmax scale (spec §1.3).
struct MlaRope {
  std::vector<float> inv_freq;  // [rope_dim/2]
  float mscale = 1.0f;          // multiplies cos and sin
  float softmax_scale = 1.0f;
};
MlaRope make_mla_rope(const HybridConfig& h, const MlaDims& d);

// Per sequence slot and position: [c_kv (kv_rank, after kv_a_norm if any), rotated rope key (rope_dim)].
struct MlaCache {
  int64_t n_slots = 0, n_ctx = 0, width = 0;
  std::vector<float> latent;
  void allocate(int64_t slots, int64_t ctx, int64_t w);
  float* at(int64_t slot, int64_t pos) { return latent.data() + (slot * n_ctx + pos) * width; }
  size_t bytes() const { return latent.size() * sizeof(float); }
};

enum class MlaMode {
  Auto,          // decompress keys/values for prefill, absorb weights for single-token decode
  Decompressed,  // always rebuild per-head keys/values from the cached latents
  Absorbed,      // always attend in latent space
};

// x: [n, hidden] normalised inputs; out: [n, hidden]. Writes each token's latent + rope key into the
// cache at (slot, pos), then attends causally within each sequence.
void mla_forward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, const Batch& batch, const float* x,
                 float* out, MlaCache& cache, MlaMode mode = MlaMode::Auto);

// ---- Training (distillation): B packed rows of T tokens, row b's token t at position t, causal within a row.
// What the training forward saves for the backward, as slices of the step's Arena.
// n = B*T rows; a pointer is null when the dims have no such tensor.
struct MlaActivations {
  float* cq_raw = nullptr;   // [n, q_rank] q_a·x before q_a_norm           (q_rank > 0 and lora_norm)
  float* cq = nullptr;       // [n, q_rank] q_b's input                      (q_rank > 0)
  float* q = nullptr;        // [n, n_heads*(nope+rope)] per head [q_nope | rotated q_pe]
  float* ckv_raw = nullptr;  // [n, kv_rank] latent before kv_a_norm         (lora_norm)
  float* ckv = nullptr;      // [n, kv_rank] kv_b's input
  float* kpe = nullptr;      // [n, rope] rotated shared rope key
  float* kv = nullptr;       // [n, kv_heads*(nope+v)] per kv head [k_nope | v]
  float* probs = nullptr;    // [B, n_heads, T, T] causal softmax, zero above the diagonal
  float* ctx = nullptr;      // [n, n_heads*v] concatenated head outputs (out_proj's input)
};
// Floats mla_train_forward takes from the arena for B rows of T tokens (the plan must be exact or larger).
int64_t mla_activation_floats(const MlaDims& d, int64_t B, int64_t T);
// x: [B*T, hidden] normalised inputs; out: [B*T, hidden] (equal to mla_forward's output on the same tokens).
void mla_train_forward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, int64_t B, int64_t T,
                       const float* x, float* out, Arena& arena, MlaActivations& act);
// dout: [B*T, hidden]. Accumulates dx [B*T, hidden] (+=, may be nullptr) and every weight gradient into
// grad (same shapes as w, pre-sized by the caller; += as well).
void mla_backward(const MlaDims& d, const MlaWeights& w, const MlaRope& rope, int64_t B, int64_t T, const float* x,
                  const MlaActivations& act, const float* dout, float* dx, MlaWeights& grad);

}  // namespace zebra
