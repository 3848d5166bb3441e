// libFuzzer harness for HF config.json parsing: any byte string is either rejected (invalid JSON, or a
// zebra::Error from the Llama config parser) or yields a config that passed LlamaConfig::validate.
// Seeds: fuzz/corpus/hf_config/ (the committed example configs).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    zebra::LlamaConfig c = zebra::parse_hf_llama_config(j, "fuzz/config.json");
    // Whatever parsed must satisfy the invariants the engine relies on.
    if (c.num_heads % c.num_kv_heads != 0 || c.head_dim <= 0 || c.head_dim % 2 != 0) __builtin_trap();
  } catch (const zebra::Error&) {
  }
  return 0;
}
