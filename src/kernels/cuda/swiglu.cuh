// swiglu (kernels/cpu's swiglu.h): out = silu(gate) * up, elementwise over rows, fp32 arithmetic.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace zebra::cuda {

// out[t, i] = silu(gate[t, i]) * up[t, i] for i < n. gate and up share ld_in (they are usually the two halves of
// one [rows, 2n] GEMM output: up = gate + n).
template <class T>
void swiglu(const T* gate, const T* up, int64_t ld_in, T* out, int64_t ld_out, int64_t rows, int64_t n,
            cudaStream_t stream);

}  // namespace zebra::cuda
