#include "train_flags.h"

#include <nlohmann/json.hpp>

namespace zebra::cli {

void add_train_flags(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("-o,--output", o.out_dir, "output directory: model/, checkpoint/, train_log.csv/.jsonl")->required();
  cmd->add_option("--steps", o.steps, "optimiser steps")->capture_default_str();
  cmd->add_option("-b,--batch", o.batch, "samples (rows or pairs) per micro-batch")->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimiser step")->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o.min_lr, "floor of the cosine schedule")->capture_default_str();
  cmd->add_option("--warmup-ratio", o.warmup_ratio, "linear warmup, share of the steps (HF: ceil)")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay (not on norms, biases, A_log, D)")
      ->capture_default_str();
  cmd->add_option("--beta1", o.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--adam-eps", o.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--clip", o.clip, "global gradient-norm clip (0 = off)")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed (data order)")->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "evaluate on the held-out rows every N steps (0 = at the end)")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "write a checkpoint every N steps (0 = at the end)")
      ->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue from OUT/checkpoint (same options required)");
  cmd->add_option("--halt-after-step", o.halt_after_step, "testing: exit abruptly after step N, as if killed")
      ->group("");  // hidden
}

std::string train_options_json(const TrainOptions& o) {
  nlohmann::json j = {{"steps", o.steps},   {"batch", o.batch},       {"grad_accum", o.grad_accum},
                      {"lr", o.lr},         {"min_lr", o.min_lr},     {"warmup_ratio", o.warmup_ratio},
                      {"beta1", o.beta1},   {"beta2", o.beta2},       {"eps", o.eps},
                      {"weight_decay", o.weight_decay}, {"clip", o.clip}, {"seed", o.seed}};
  return j.dump();
}

}  // namespace zebra::cli
