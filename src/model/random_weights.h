// Deterministic random weights of the right shapes for a config alone (config.json, plus hybrid_config.json for
// a Zebra hybrid): benchmarks and smoke tests of large shapes whose checkpoints cannot be downloaded here (the
// released Zebra layouts in tests/fixtures/hybrid_configs/, a Llama-3.2-1B config).
//
// Scales keep a forward finite and its logits non-degenerate: every linear weight ~ N(0, 1/in), embeddings
// ~ N(0, 0.02²) (tied heads then give logits of unit-order spread), norms 1; Mamba2 as its reference init:
// A = -uniform[1, 16], dt = exp(uniform[ln 1e-3, ln 1e-1]) stored as dt_bias = softplus⁻¹(dt), D = 1, conv weight
// and bias ~ U(±1/sqrt(d_conv)). The same (config, seed) gives the same weights on any machine and thread count
// (a counter-based generator, not the standard library's distributions).
#pragma once
#include <cstdint>
#include <string>

#include "model/model.h"

namespace zebra {

// `hybrid` null: a Llama of cfg. Otherwise a hybrid of that layout (MLA and Mamba2 layers over cfg's skeleton).
Model random_model(const LlamaConfig& cfg, const HybridConfig* hybrid, uint64_t seed);

// The same from a directory holding config.json (and hybrid_config.json for a hybrid).
Model random_model_from_dir(const std::string& dir, uint64_t seed);

}  // namespace zebra
