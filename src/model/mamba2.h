// Mamba2 in the MambaInLlama/Zebra variant (spec §1.4): weights, the per-sequence state (conv window +
// SSM state), prefill by chunked scan and single-token step, and the training forward/backward.
#pragma once
#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"
#include "model/batch.h"
#include "model/hybrid_config.h"

namespace zebra {

struct Mamba2Weights {
  Tensor in_proj;   // [2*d_inner + 2*d_xb + n_heads, hidden]: rows z | x | B | C | dt
  Tensor conv_w;    // [conv_dim, d_conv] (the file stores [conv_dim, 1, d_conv]); channels x | B | C
  Tensor conv_b;    // [conv_dim]
  Tensor dt_bias;   // [n_heads]
  Tensor A_log;     // [n_heads]; A = -exp(A_log)
  Tensor D;         // [n_heads]
  Tensor norm;      // [d_inner] gated RMSNorm weight, groups of head_dim
  Tensor out_proj;  // [hidden, d_inner]
};

// Constant-size state of every sequence slot.
struct Mamba2State {
  int64_t n_slots = 0, conv_dim = 0, d_conv = 0, ssm_size = 0;
  std::vector<float> conv;  // [slot][conv_dim][d_conv]: the last d_conv pre-conv inputs, oldest first
  std::vector<float> ssm;   // [slot][n_heads][head_dim][d_state]
  std::vector<int64_t> next_pos;  // [slot] the position the next token must have
  void allocate(int64_t slots, const Mamba2Dims& d);
  float* conv_at(int64_t slot) { return conv.data() + slot * conv_dim * d_conv; }
  float* ssm_at(int64_t slot) { return ssm.data() + slot * ssm_size; }
  size_t bytes() const { return (conv.size() + ssm.size()) * sizeof(float); }
};

// x: [n, hidden] normalised inputs; out: [n, hidden]. Each sequence's tokens in the batch must be
// consecutive positions continuing its state (position 0 starts a fresh state); other orders throw.
// chunk_size: tokens per chunk of the SSD scan for runs longer than one token.
void mamba2_forward(const Mamba2Dims& d, const Mamba2Weights& w, const Batch& batch, const float* x, float* out,
                    Mamba2State& state, int64_t chunk_size = 64);

// The plain sequential recurrence (the definition), for tests: same contract as mamba2_forward.
void mamba2_forward_sequential(const Mamba2Dims& d, const Mamba2Weights& w, const Batch& batch, const float* x,
                               float* out, Mamba2State& state);

// The mixer core of one sequence's run of T consecutive tokens (used by both forwards; exposed for tests):
// from the in_proj outputs proj [T, in_proj_rows], the causal depthwise conv continuing conv_window
// ([conv_dim][d_conv], updated in place), SiLU when conv_silu, dt = softplus(dt_raw + dt_bias), A = -exp(A_log),
// and the SSM scan continuing ssm ([n_heads][head_dim][d_state], updated in place).
// y: [T, d_inner], per head y^h_t = S^h_t C^h_t + D^h x^h_t, i.e. before the gate and the norm.
// chunk_size 0 runs the sequential recurrence (the definition); > 0 the chunked SSD scan.
void mamba2_ssm_core(const Mamba2Dims& d, const Mamba2Weights& w, int64_t T, const float* proj, float* conv_window,
                     float* ssm, float* y, int64_t chunk_size, bool conv_silu = true);

// Checks the dimensions and every weight's shape (conv_w may be [conv_dim, d_conv] or [conv_dim, 1, d_conv]);
// throws zebra::Error naming the tensor, the expected and the found shape.
void mamba2_check(const Mamba2Dims& d, const Mamba2Weights& w);

// ---- Training (distillation): B packed rows of T tokens, each row a fresh sequence from position 0.
// What the training forward saves for the backward, as slices of the step's Arena.
// Filled by mamba2_train_forward (see mamba2_backward.cpp for how each is used); n = B*T rows, row b*T + t.
struct Mamba2Activations {
  int64_t B = 0, T = 0, chunk_size = 0;  // the forward's shape, checked by the backward
  float* proj = nullptr;    // [n, in_proj_rows] in_proj outputs z | x B C (pre-conv) | dt_raw
  float* xbc = nullptr;     // [n, conv_dim] SiLU(conv) outputs: the scan's x | B | C
  float* dt = nullptr;      // [n, n_heads] softplus(dt_raw + dt_bias)
  float* y = nullptr;       // [n, d_inner] scan output + D x (before the gate)
  float* rstd = nullptr;    // [n, n_heads] 1/sqrt(mean(g^2) + eps) of each head's gated group
  float* gated = nullptr;   // [n, d_inner] normalised gated output (out_proj's input)
  float* states = nullptr;  // [B][n_heads][n_chunks-1][head_dim][d_state] SSM state entering chunks 1..
};
// Floats mamba2_train_forward takes from the arena for B rows of T tokens (the plan must be exact or larger).
int64_t mamba2_activation_floats(const Mamba2Dims& d, int64_t B, int64_t T, int64_t chunk_size = 64);
// x: [B*T, hidden] normalised inputs; out: [B*T, hidden] (equal to mamba2_forward's output from a fresh state).
void mamba2_train_forward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T, const float* x,
                          float* out, Arena& arena, Mamba2Activations& act, int64_t chunk_size = 64);
// dout: [B*T, hidden]. Accumulates dx [B*T, hidden] (+=, may be nullptr) and every weight gradient into
// grad (same shapes as w, pre-sized by the caller; += as well). conv_w's gradient has conv_w's stored shape.
void mamba2_backward(const Mamba2Dims& d, const Mamba2Weights& w, int64_t B, int64_t T, const float* x,
                     const Mamba2Activations& act, const float* dout, float* dx, Mamba2Weights& grad,
                     int64_t chunk_size = 64);

}  // namespace zebra
