// Training checkpoints: everything a killed run needs to continue exactly where it stopped.
//   DIR/model/             the weights as a loadable hybrid (AMD layout, F32: bit-exact)
//   DIR/optimizer.safetensors  AdamW's moments, "exp_avg.<param>" and "exp_avg_sq.<param>"
//   DIR/trainer_state.json     step, data position, seed, schedule, the options the run was started with
// Written into a temporary directory first, then swapped in by renames: at any moment either the previous
// or the new checkpoint is complete on disk (a crash between the renames leaves DIR.old, which load finds).
#pragma once
#include <cstdint>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/optimizer.h"

namespace zebra {

struct TrainerState {
  std::string stage;          // "ild", "kd", "dpo"
  int64_t step = 0;           // optimiser steps done
  int64_t samples_seen = 0;   // data position: rows (or pairs) consumed, in the data's fixed order
  int64_t total_steps = 0;
  uint64_t seed = 0;
  std::string options;        // the run's options (JSON) to refuse resuming with different ones
};

void save_checkpoint(const std::string& dir, const Model& m, const Tokenizer* tok, const AdamW& opt,
                     const TrainerState& state);
bool checkpoint_exists(const std::string& dir);
// Restores m's weights (same structure), the optimiser's moments and step, and returns the trainer state.
TrainerState load_checkpoint(const std::string& dir, Model& m, AdamW& opt);

}  // namespace zebra
