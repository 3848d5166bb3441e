// Writing a Zebra hybrid in AMD's Hugging Face layout (spec §7.1, §7.3): config.json (the base Llama
// config), hybrid_config.json (current generation), model.safetensors and the tokenizer.
// The mirror of model/loader: it writes a whole model and its tokenizer, so it sits in model/, not io/.
#pragma once
#include <string>

#include "core/dtype.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

// Writes the hybrid `m` into directory `dir` with tensors stored as `dtype` (F32, BF16 or F16).
// Files: config.json (LlamaForCausalLM, model_type llama, the teacher's sizes and RoPE, tie_word_embeddings
// = no separate head, bos/eos, torch_dtype), hybrid_config.json, model.safetensors (names of spec §7.3:
// model.layers.{i}.mla.* / .mamba.*, conv1d.weight as [conv_dim, 1, d_conv], lm_head.weight only when
// untied) and, when `tok` is a byte-level BPE, tokenizer.json + tokenizer_config.json (other tokenizers
// cannot be written in HF layout: a warning is logged and none is written; tok may be null).
// Atomic: everything is written into a temporary directory next to `dir`, which then replaces `dir`
// (or, when `dir` already exists, each file is renamed into it). On error nothing half-written is left.
// Refuses an existing `dir` holding other *.safetensors shards (a loader would mix them with ours).
void save_hybrid(const Model& m, const Tokenizer* tok, const std::string& dir, DType dtype);

// The config.json text save_hybrid writes (exposed for tests).
std::string hybrid_llama_config_json(const Model& m, DType dtype);

}  // namespace zebra
