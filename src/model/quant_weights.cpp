#include "model/quant_weights.h"

#include "core/error.h"
#include "core/tensor.h"

namespace zebra {

using cpu::QuantMatrix;
using cpu::quant_supported;

QuantMatrix quant_matrix_view(const TensorView& v) {
  ZEBRA_CHECK(quant_supported(v.dtype), v.file, ": tensor '", v.name, "' has type ", dtype_name(v.dtype),
              ", not one of the block formats quant_linear runs on");
  ZEBRA_CHECK(v.shape.size() == 2, v.file, ": tensor '", v.name, "' has shape ", shape_str(v.shape),
              ", expected a matrix [rows, cols]");
  QuantMatrix m;
  m.type = v.dtype;
  m.rows = v.shape[0];
  m.cols = v.shape[1];
  m.blocks = v.data;
  ZEBRA_CHECK(v.nbytes >= m.nbytes(), v.file, ": tensor '", v.name, "' holds ", v.nbytes, " bytes, its shape ",
              shape_str(v.shape), " of ", dtype_name(v.dtype), " needs ", m.nbytes());
  return m;
}

}  // namespace zebra
