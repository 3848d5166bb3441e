// Karpathy's llama2.c checkpoints (.bin): the legacy "version 0" layout (7 int32 header, fp32 tensors,
// negative vocab_size = separate classifier) and the "ak42" version 1 layout (256-byte header, fp32).
// The weights are presented under Hugging Face Llama names, with q/k projections permuted from Meta's
// interleaved-pair RoPE layout into HF's rotate-half layout, so the engine can treat them like an HF model.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/tensor_view.h"
#include "model/config.h"

namespace zebra {

struct Llama2cModel {
  LlamaConfig config;  // source_format "llama2c", rope_theta 1e4, rms_norm_eps 1e-5, bos 1, eos 2
  std::unique_ptr<TensorSource> tensors;  // HF names; F32 views (into the mapped file, or owned for q/k)
  int version = 0;  // 0 = legacy, 1 = "ak42" version 1
};

// Loads and validates the file (sizes must match the header exactly); throws zebra::Error naming the file
// and what is wrong (truncation reports expected vs actual bytes). Quantised version 2 files are refused.
Llama2cModel load_llama2c(const std::string& path);

// Rows of a [n_heads * head_dim, cols] projection from Meta's layout (RoPE rotates adjacent pairs
// (2i, 2i+1)) to HF's (rotates (i, i + head_dim/2)): within each head, HF row j*head_dim/2 + i is Meta row
// 2i + j. This is transformers' convert_llama_weights_to_hf.py permute(). `src` has rows*cols floats.
std::vector<float> permute_rope_rows_meta_to_hf(const float* src, int64_t n_heads, int64_t rows, int64_t cols);

}  // namespace zebra
