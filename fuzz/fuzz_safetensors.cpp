// libFuzzer harness for the safetensors reader: any byte string must either parse or throw zebra::Error,
// never crash or trip a sanitizer. Parsing goes through SafetensorsFile::from_memory (the same parser as
// for mapped files); small float-like tensors are then converted to fp32 so every view's bounds are used.
// Seeds: fuzz/corpus/safetensors/ (small files written by write_safetensors and python safetensors).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy so the buffer ends exactly at `size` (ASan catches any read past it).
  std::vector<uint8_t> buf(data, data + size);
  try {
    auto f = zebra::SafetensorsFile::from_memory(buf.data(), buf.size(), "fuzz.safetensors");
    std::vector<float> out;
    for (const zebra::TensorView& v : f->tensors()) {
      if (!zebra::dtype_is_float_like(v.dtype) || v.numel() > (1 << 16)) continue;
      out.resize(static_cast<size_t>(v.numel()));
      zebra::to_f32(v.dtype, v.data, out.data(), v.numel());
    }
    for (const std::string& name : f->names()) (void)f->find(name);
  } catch (const zebra::Error&) {
  }
  return 0;
}
