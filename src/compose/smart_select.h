// SMART layer selection (spec §3) and the assembly of the hybrid from two students (spec §2.3).
//
// OUR RECONSTRUCTION (spec §3 [RECON]): the paper describes SMART only in words and its code is not
// released. What follows is what the authors' description implies, with every undocumented choice made
// explicit here:
//   * D(model) = KL(p_teacher || p_model) averaged over every position of every calibration row (the
//     teacher's distribution first; the KL direction is not documented).
//   * The scored models are exactly what assemble_hybrid would build: every layer from the all-Mamba2
//     student M except (for D_l) the whole decoder layer l (mixer, MLP and both norms) from the all-MLA
//     student A, with the TEACHER's embedding, final norm and LM head (spec §2.3 discards the ILD-trained
//     final norm). So D_l = KL(teacher || assemble_hybrid(T, A, M, {l})) and D0 = ... {}.
//   * s_l = D0 - D_l (larger = the layer matters more as attention); placement by smart_layout
//     (compose/placement.h: first 0, last the better of L-2 / L-1, interior by DP under the spacing rule).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

// Checks that `mla` is an all-MLA hybrid and `mamba` an all-Mamba2 hybrid of the same Llama skeleton as
// `teacher` (a Llama, all attention): same layer count, hidden size, vocabulary and MLP width. Errors
// name the role given in `mla_name` / `mamba_name` (e.g. "--mla-student A") and the offending layer.
void check_smart_models(const Model& teacher, const Model& mla, const Model& mamba,
                        const std::string& mla_name = "the MLA student",
                        const std::string& mamba_name = "the Mamba2 student");

// The calibration set (ours): each text tokenised whole with the teacher's tokenizer (no BOS), then cut
// into consecutive non-overlapping windows that do not cross file boundaries, files in order, until
// `n_rows` windows are collected. A window is BOS followed by seq_len-1 text tokens when the tokenizer
// adds BOS (as llama-perplexity starts each window), otherwise seq_len text tokens. Returns fewer rows
// when the texts are short (the caller decides whether that is acceptable); `rows_per_text` (optional)
// gets how many rows came from each text.
std::vector<std::vector<int32_t>> calibration_rows(const Tokenizer& tok, const std::vector<std::string>& texts,
                                                   int64_t n_rows, int64_t seq_len,
                                                   std::vector<int64_t>* rows_per_text = nullptr);

struct SmartOptions {
  int64_t batch_rows = 0;  // rows per forward pass (separate cache slots); 0 = automatic (memory-bounded)
  // progress(done, total) after each forward pass over a batch of rows: the teacher's and the L+1
  // student variants', so total = batches * (L+2).
  std::function<void(int64_t, int64_t)> progress;
};

struct SmartScores {
  double d0 = 0;                 // KL(teacher || all-Mamba2), nats per token
  std::vector<double> d_l;       // [L] KL(teacher || all-Mamba2 with layer l from the MLA student)
  std::vector<double> scores;    // [L] s_l = d0 - d_l
  int64_t tokens = 0;            // positions averaged over (rows * seq_len)
};

// Token-averaged KL(p_teacher || p_student) over all positions of `rows` (each row its own sequence from
// position 0). Teacher and student must share the vocabulary. Computed batch by batch (teacher logits
// are never stored for more than one batch).
double mean_kl(const Model& teacher, const Model& student, const std::vector<std::vector<int32_t>>& rows,
               int64_t batch_rows = 0);

// The SMART sensitivities. Works on any token rows (text windows, trainer shards): every row must be
// non-empty and fit the models' context. The teacher runs once per row; the L+1 student variants run on
// each batch while its teacher distribution is in memory. Checks only what the computation needs
// (matching skeletons); kinds are check_smart_models' job, so a test may hand in a non-MLA "A".
SmartScores smart_scores(const Model& teacher, const Model& mla, const Model& mamba,
                         const std::vector<std::vector<int32_t>>& rows, const SmartOptions& opts = {});

// Spec §2.3: layer i copied in full (mixer, MLP, both norms) from `mla` when i is in mla_layers, else
// from `mamba`; embedding, final norm and LM head from `teacher`. Hybrid config: the MLA fields from
// mla.hybrid (per-layer ranks kept for the chosen layers), the Mamba2 fields from mamba.hybrid,
// mla_layers = the (sorted) list. The base Llama config is the teacher's.
Model assemble_hybrid(const Model& teacher, const Model& mla, const Model& mamba, std::vector<int64_t> mla_layers);

}  // namespace zebra
