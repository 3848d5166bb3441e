// libFuzzer harness for the GGUF reader: any byte string must either parse or throw zebra::Error, never
// crash, leak or trip a sanitizer. Parsing goes through GgufFile's in-memory constructor (the same parser
// as for files). Small float-like tensors are also dequantised, and the getters exercised, so the dtype
// conversions see hostile bits too. Seeds: fuzz/corpus/gguf/ (scripts/reference/make_gguf_seeds.py).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    zebra::GgufFile f(std::vector<uint8_t>(data, data + size), "fuzz.gguf");
    for (const auto& [key, value] : f.metadata()) {
      try {
        if (value.type == zebra::GgufType::STRING) f.get_string(key);
        else if (value.is_integer()) f.get_int(key);
        else if (value.type == zebra::GgufType::ARRAY) f.get_double_array(key);
        else f.get_double(key);
      } catch (const zebra::Error&) {
      }
    }
    std::vector<float> out;
    for (const std::string& name : f.names()) {
      const zebra::TensorView* v = f.find(name);
      if (!v || !zebra::dtype_is_float_like(v->dtype) || v->numel() > (1 << 16)) continue;
      out.resize(static_cast<size_t>(v->numel()));
      zebra::to_f32(v->dtype, v->data, out.data(), v->numel());
    }
  } catch (const zebra::Error&) {
  }
  return 0;
}
