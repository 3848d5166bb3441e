// The CPU tensor of the engine: a dense row-major fp32 array with a shape.
// Weights follow PyTorch's convention: a linear weight is [out, in] and y = x W^T.
// Storage-format tensors (quantised blocks, bf16, ...) live in io/ as TensorView and are converted to
// this type when a model is loaded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace zebra {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape_) : shape(std::move(shape_)), data(count(shape), 0.0f) {}

  static int64_t count(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
  }
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
  int rank() const { return static_cast<int>(shape.size()); }
  bool empty() const { return data.empty(); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace zebra
