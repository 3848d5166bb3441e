// Branching a sequence: one cache slot's state copied into another, so several continuations can be
// scored after a context that was processed once.
#pragma once
#include <cstdint>

#include "model/model.h"

namespace zebra {

// Makes slot `dst` continue exactly where slot `src` stands after its first `n_tokens` positions:
// attention keys/values and MLA latents of positions [0, n_tokens) are copied, and so are the Mamba2
// conv window, SSM state and next position. A Mamba2 state only moves forward, so copying it is the only
// way to branch; positions >= n_tokens of `dst` keep stale values that the next tokens overwrite.
// Throws zebra::Error for slots or lengths outside the cache, or a Mamba2 state that is not at n_tokens.
void copy_cache_slot(Cache& cache, int64_t src, int64_t dst, int64_t n_tokens);

}  // namespace zebra
