// Hugging Face config.json for Llama-architecture models -> LlamaConfig.
// Reads both generations of the RoPE fields: transformers 4.x ("rope_theta" + "rope_scaling" with
// "rope_type" or the legacy "type") and 5.x ("rope_parameters" holding rope_theta and the scaling keys).
// In model/ with the GGUF and llama2.c conversions (loader.cpp): io/ reads formats, model/ makes configs.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"

namespace zebra {

// Reads and parses `config_json_path`; errors name the file and the field.
LlamaConfig load_hf_llama_config(const std::string& config_json_path);

// Parses an already-loaded config object. `where` (usually the file path) prefixes error messages.
// Only the Llama architecture is accepted (model_type "llama", architectures LlamaForCausalLM/LlamaModel).
// Defaults follow transformers' LlamaConfig: num_key_value_heads = num_attention_heads, head_dim =
// hidden_size / num_attention_heads, max_position_embeddings 2048, rms_norm_eps 1e-6, rope_theta 10000,
// tie_word_embeddings false. Ends with LlamaConfig::validate.
LlamaConfig parse_hf_llama_config(const nlohmann::json& j, const std::string& where);

// Parses one rope scaling dict (the value of rope_scaling or rope_parameters, named `field` in errors);
// null or rope_type "default" gives Type::None. Keys other than the scaling ones (rope_theta) are ignored.
RopeScaling parse_hf_rope_scaling(const nlohmann::json& j, const std::string& where, const std::string& field);

}  // namespace zebra
