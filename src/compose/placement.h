// Where the MLA layers of a hybrid go (spec §3): the regular layout every released Zebra model follows,
// and SMART's score-driven choice under the same spacing rule.
#pragma once
#include <cstdint>
#include <vector>

namespace zebra {

// The released models' structure: first MLA layer 0, last L-2, every gap floor(G) or ceil(G) with
// G = (L-2)/(N-1). Tie rule (ours; the paper's is not published): the floor gaps come first and the
// ceil gaps last, i.e. the spare layers are spent near the output. This reproduces 5 of the 8 released
// and config-only layouts exactly (1B-6MLA, 8B-8MLA and the three every-other-layer ones); the others
// (1B-4MLA, 3B-6MLA, 3B-8MLA) put their wide gaps elsewhere, presumably by SMART's scores.
// Edge cases: N <= 0 -> {} (all Mamba2); N == 1 -> {0}; N >= L -> every layer; N == L-1 -> 0..L-2.
// Throws for L < 1.
std::vector<int64_t> default_mla_layout(int64_t n_layers, int64_t n_mla);

// SMART placement (spec §3 RECON, flagged as ours): first = 0; last = the better-scoring of the two
// terminal candidates L-2 and L-1 (ties -> L-2, as in every released model); the N-2 interior layers
// maximise the sum of scores subject to every gap being floor(G) or ceil(G), G = (last - first)/(N-1)
// (dynamic programming). Equal scores give default_mla_layout. scores[l] = sensitivity of layer l
// (larger = keep as attention); scores.size() must be n_layers. Same edge cases as default_mla_layout.
std::vector<int64_t> smart_layout(const std::vector<double>& scores, int64_t n_layers, int64_t n_mla);

}  // namespace zebra
