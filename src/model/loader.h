// Opening a model in any supported format: a Hugging Face directory (config.json + safetensors), a GGUF
// file, or a llama2.c .bin with its tokenizer.bin. Weights are converted to the engine's fp32 layout with
// Hugging Face tensor names and rotate-half RoPE order.
#pragma once
#include <memory>
#include <string>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: tokenizer .bin (default: tokenizer.bin / tok*.bin beside the model)
  bool need_tokenizer = true;
};

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // null only when need_tokenizer is false and none was found
  std::string llama2c_tokenizer_file;    // the tokenizer.bin it came from, when it is a llama2.c one
};

enum class ModelFormat { HfDirectory, Gguf, Llama2c };
ModelFormat detect_model_format(const std::string& path);  // throws with a clear message if unknown
const char* model_format_name(ModelFormat f);

LoadedModel load_model(const std::string& path, const LoadOptions& opts = {});

// A checked llama2.c header (io/llama2c.h) as a LlamaConfig, with the conventions llama2.c's runner
// hard-codes: head_dim = dim / n_heads, rope_theta 1e4, rms_norm_eps 1e-5, bos 1, eos 2 (when the
// vocabulary has them), source_format "llama2c". Errors name `path`.
struct Llama2cHeader;
LlamaConfig llama2c_llama_config(const Llama2cHeader& h, const std::string& path);

}  // namespace zebra
