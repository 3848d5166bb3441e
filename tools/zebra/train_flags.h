// Command-line flags shared by the training commands (distill, dpo): optimiser, schedule, steps,
// checkpoints and resume.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "train/trainer.h"

namespace zebra::cli {

void add_train_flags(CLI::App* cmd, TrainOptions& o);
// The flags that change the result, as JSON (stored in checkpoints so a resume with other values is refused).
std::string train_options_json(const TrainOptions& o);

}  // namespace zebra::cli
