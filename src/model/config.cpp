#include "model/config.h"

#include "core/error.h"

namespace zebra {

void LlamaConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* field) {
    ZEBRA_CHECK(v > 0, where, ": config field '", field, "' must be positive, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_layers, "num_hidden_layers");
  positive(num_heads, "num_attention_heads");
  positive(num_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  ZEBRA_CHECK(num_heads % num_kv_heads == 0, where, ": num_attention_heads (", num_heads,
              ") must be a multiple of num_key_value_heads (", num_kv_heads, ")");
  ZEBRA_CHECK(head_dim % 2 == 0, where, ": head_dim must be even for RoPE, got ", head_dim);
  ZEBRA_CHECK(rms_norm_eps > 0, where, ": rms_norm_eps must be positive");
  ZEBRA_CHECK(rope_theta > 0, where, ": rope_theta must be positive");
  if (rope_scaling.type != RopeScaling::Type::None)
    ZEBRA_CHECK(rope_scaling.factor > 0, where, ": rope_scaling.factor must be positive");
  if (bos_token_id >= 0)
    ZEBRA_CHECK(bos_token_id < vocab_size, where, ": bos_token_id ", bos_token_id, " >= vocab_size ", vocab_size);
  for (int32_t e : eos_token_ids)
    ZEBRA_CHECK(e >= 0 && e < vocab_size, where, ": eos_token_id ", e, " out of range [0, ", vocab_size, ")");
}

}  // namespace zebra
