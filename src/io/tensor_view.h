// A read-only view of one tensor inside a (usually memory-mapped) checkpoint file.
// shape is in PyTorch order (outermost first): a linear weight is [out, in]. GGUF stores ne[] innermost
// first; its reader reverses it into this order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/dtype.h"

namespace zebra {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  std::string file;  // for error messages

  int64_t numel() const { return Tensor::count(shape); }
};

// Dequantise/convert a whole view into an fp32 Tensor with the same shape.
Tensor view_to_tensor(const TensorView& view);

// A source of named tensors (one safetensors file, a sharded directory, a GGUF file, ...).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual const TensorView* find(const std::string& name) const = 0;  // nullptr if absent
  virtual std::vector<std::string> names() const = 0;
  virtual std::string describe() const = 0;  // path(s), for error messages

  // The tensor `name` as fp32, checking its shape; throws with file, tensor, expected and actual shape.
  Tensor load(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }
};

}  // namespace zebra
