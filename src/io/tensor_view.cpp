#include "io/tensor_view.h"

namespace zebra {

Tensor view_to_tensor(const TensorView& view) {
  ZEBRA_CHECK(dtype_is_float_like(view.dtype), view.file, ": tensor '", view.name, "' has dtype ",
              dtype_name(view.dtype), ", which cannot be converted to fp32");
  Tensor t(view.shape);
  size_t need = dtype_row_bytes(view.dtype, t.numel());
  ZEBRA_CHECK(view.nbytes >= need, view.file, ": tensor '", view.name, "' holds ", view.nbytes,
              " bytes but shape ", shape_str(view.shape), " of ", dtype_name(view.dtype), " needs ", need);
  to_f32(view.dtype, view.data, t.ptr(), t.numel());
  return t;
}

Tensor TensorSource::load(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorView* v = find(name);
  ZEBRA_CHECK(v != nullptr, describe(), ": missing tensor '", name, "' (expected shape ",
              shape_str(expected_shape), ")");
  ZEBRA_CHECK(v->shape == expected_shape, describe(), ": tensor '", name, "' has shape ",
              shape_str(v->shape), ", expected ", shape_str(expected_shape));
  return view_to_tensor(*v);
}

}  // namespace zebra
