// gemm / linear on the GPU through cuBLASLt (the CUDA side of kernels/cpu's gemm.h): bf16 or fp32 inputs,
// fp32 accumulation, bf16 or fp32 outputs, and beta = 1 to fuse a residual add into the product
// (o_proj/down_proj/out_proj write x += ctx · Woᵀ straight into the fp32 residual stream).
// Row-major throughout, leading dimensions in elements, so strided views (a column slice of a row) need no copy.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "kernels/cuda/dtype.h"

namespace zebra::cuda {

// A cuBLASLt handle, its workspace and a cache of chosen algorithms (one heuristic query per distinct shape),
// bound to one stream. Products issued through it are capturable into CUDA graphs.
class Blas {
 public:
  explicit Blas(cudaStream_t stream, int64_t workspace_bytes = int64_t(32) << 20);
  ~Blas();
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  cudaStream_t stream() const;
  int64_t workspace_bytes() const;

  // C[m, n] = alpha * A[m, k] · op(B) + beta * C, op(B) = B[n, k]ᵀ when trans_b, else B[k, n].
  // A and B have element type `ab`, C type `c`; accumulation is fp32 (strict fp32 for f32 inputs: no TF32).
  // `batch` > 1 runs independent products at element offsets stride_a/b/c apart.
  void gemm(bool trans_b, DType ab, DType c, int64_t m, int64_t n, int64_t k, const void* A, int64_t lda,
            const void* B, int64_t ldb, void* C, int64_t ldc, float beta = 0.0f, float alpha = 1.0f, int64_t batch = 1,
            int64_t stride_a = 0, int64_t stride_b = 0, int64_t stride_c = 0);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// y[rows, out] (+)= x[rows, in] · W[out, in]ᵀ: a linear layer with a PyTorch-layout weight. accumulate adds into
// y (beta = 1: the fused residual add). T is the input/weight type, Out the output's (float or bf16).
template <class T, class Out>
void linear(Blas& blas, const T* x, int64_t ldx, const T* w, Out* y, int64_t ldy, int64_t rows, int64_t in, int64_t out,
            bool accumulate = false) {
  blas.gemm(true, dtype_of<T>(), dtype_of<Out>(), rows, out, in, x, ldx, w, in, y, ldy, accumulate ? 1.0f : 0.0f);
}

}  // namespace zebra::cuda
