// Weights of a loaded file kept in their GGUF blocks: views of the mapped tensors as the quantised
// kernels' QuantMatrix (kernels/ knows no file formats, so the bridge lives here, beside the loader).
#pragma once
#include "io/tensor_view.h"
#include "kernels/cpu/quant.h"

namespace zebra {

// A view of a 2-D GGUF tensor [rows, cols] of a supported block type (no copy); throws naming the tensor.
cpu::QuantMatrix quant_matrix_view(const TensorView& v);

}  // namespace zebra
