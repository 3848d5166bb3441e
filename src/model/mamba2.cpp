// Mamba2 layer (MambaInLlama/Zebra variant, spec §1.4). Work in progress.
#include "model/mamba2.h"

#include "core/error.h"

namespace zebra {

int64_t Mamba2Dims::parameter_count() const {
  // in_proj + conv (weights + bias) + dt_bias + A_log + D + norm + out_proj
  return in_proj_rows() * hidden + conv_dim() * d_conv + conv_dim() + 3 * n_heads + d_inner + hidden * d_inner;
}

void Mamba2State::allocate(int64_t slots, const Mamba2Dims& d) {
  n_slots = slots;
  conv_dim = d.conv_dim();
  d_conv = d.d_conv;
  ssm_size = d.n_heads * d.head_dim * d.d_state;
  conv.assign(static_cast<size_t>(slots * conv_dim * d_conv), 0.0f);
  ssm.assign(static_cast<size_t>(slots * ssm_size), 0.0f);
  next_pos.assign(static_cast<size_t>(slots), 0);
}

void mamba2_forward(const Mamba2Dims&, const Mamba2Weights&, const Batch&, const float*, float*, Mamba2State&,
                    int64_t) {
  fail("mamba2_forward: not implemented");
}

void mamba2_forward_sequential(const Mamba2Dims&, const Mamba2Weights&, const Batch&, const float*, float*,
                               Mamba2State&) {
  fail("mamba2_forward_sequential: not implemented");
}

}  // namespace zebra
