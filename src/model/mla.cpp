// Multi-head Latent Attention forward (spec §1.3). Stub: filled in below.
#include "model/mla.h"

namespace zebra {

int64_t MlaDims::parameter_count() const {
  throw Error("MlaDims::parameter_count: not implemented");
}

MlaRope make_mla_rope(const HybridConfig&, const MlaDims&) { throw Error("make_mla_rope: not implemented"); }

void MlaCache::allocate(int64_t slots, int64_t ctx, int64_t w) {
  n_slots = slots, n_ctx = ctx, width = w;
  latent.assign(static_cast<size_t>(slots * ctx * w), 0.0f);
}

void mla_forward(const MlaDims&, const MlaWeights&, const MlaRope&, const Batch&, const float*, float*, MlaCache&,
                 MlaMode) {
  throw Error("mla_forward: not implemented");
}

}  // namespace zebra
