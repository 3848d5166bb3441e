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

namespace zebra {

// The header as the file gives it (llama2.c's Config), the legacy negative vocab_size decoded into
// shared_classifier. model/ turns it into a LlamaConfig (llama2c_llama_config in model/loader.h).
struct Llama2cHeader {
  int64_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;  // false: a separate classifier (lm_head.weight) follows the weights
  int version = 0;                // 0 = legacy, 1 = "ak42" version 1
};

struct Llama2cModel {
  Llama2cHeader header;  // checked: positive sizes, heads dividing, even head size, matching the file size
  std::unique_ptr<TensorSource> tensors;  // HF names; F32 views (into the mapped file, or owned for q/k)
};

// Loads and validates the file (sizes must match the header exactly); throws zebra::Error naming the file
// and what is wrong (truncation reports expected vs actual bytes). Quantised version 2 files are refused.
Llama2cModel load_llama2c(const std::string& path);

// Rows of a [n_heads * head_dim, cols] projection from Meta's layout (RoPE rotates adjacent pairs
// (2i, 2i+1)) to HF's (rotates (i, i + head_dim/2)): within each head, HF row j*head_dim/2 + i is Meta row
// 2i + j. This is transformers' convert_llama_weights_to_hf.py permute(). `src` has rows*cols floats.
std::vector<float> permute_rope_rows_meta_to_hf(const float* src, int64_t n_heads, int64_t rows, int64_t cols);

}  // namespace zebra
