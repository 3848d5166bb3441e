// cuBLASLt behind Blas::gemm. Row-major C[m, n] = A[m, k] · op(B) is the column-major product
// Cᵀ[n, m] = op(B)ᵀ · Aᵀ: cuBLASLt's "A" is our B (transposed when trans_b: the weights-as-[out, in] "TN"
// layout the tensor cores like best) and its "B" is our A, untransposed.
#include <cublasLt.h>

#include <map>
#include <tuple>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemm.cuh"

namespace zebra::cuda {

namespace {

cudaDataType_t cuda_type(DType t) { return t == DType::F32 ? CUDA_R_32F : CUDA_R_16BF; }

// Largest power of two (<= 256) dividing the address and every leading-dimension/stride step in bytes: the
// alignment the chosen algorithm may assume (cuBLASLt's default assumption is 256, which a column slice breaks).
uint32_t alignment(const void* p, int64_t ld_bytes, int64_t stride_bytes) {
  uint64_t a = reinterpret_cast<uint64_t>(p) | static_cast<uint64_t>(ld_bytes) | static_cast<uint64_t>(stride_bytes) |
               256u;
  return static_cast<uint32_t>(a & (~a + 1));
}

struct Key {
  bool trans_b;
  DType ab, c;
  int64_t m, n, k, lda, ldb, ldc, batch, sa, sb, sc;
  uint32_t al_a, al_b, al_c;
  bool beta_nonzero;
  auto tie() const {
    return std::tie(trans_b, ab, c, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, al_a, al_b, al_c, beta_nonzero);
  }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

void set_batch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride) {
  if (batch <= 1) return;
  int32_t count = static_cast<int32_t>(batch);
  ZEBRA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
  ZEBRA_CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
}

}  // namespace

struct Blas::Impl {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  std::map<Key, Plan> plans;
};

Blas::Blas(cudaStream_t stream, int64_t workspace_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  ZEBRA_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->workspace_bytes = workspace_bytes;
  if (workspace_bytes > 0) {
    const cudaError_t e = cudaMalloc(&impl_->workspace, static_cast<size_t>(workspace_bytes));
    if (e != cudaSuccess) {
      cublasLtDestroy(impl_->handle);
      ZEBRA_CUDA_CHECK(e);
    }
  }
}

Blas::~Blas() {
  for (auto& [key, p] : impl_->plans) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.op);
  }
  if (impl_->workspace) cudaFree(impl_->workspace);
  cublasLtDestroy(impl_->handle);
}

cudaStream_t Blas::stream() const { return impl_->stream; }
int64_t Blas::workspace_bytes() const { return impl_->workspace_bytes; }

void Blas::gemm(bool trans_b, DType ab, DType c, int64_t m, int64_t n, int64_t k, const void* A, int64_t lda,
                const void* B, int64_t ldb, void* C, int64_t ldc, float beta, float alpha, int64_t batch,
                int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  ZEBRA_CHECK(m >= 0 && n >= 0 && k > 0 && batch >= 1, "gemm: bad shape m ", m, " n ", n, " k ", k, " batch ", batch);
  if (m == 0 || n == 0) return;
  ZEBRA_CHECK(A && B && C, "gemm: null matrix pointer (m ", m, " n ", n, " k ", k, ")");
  ZEBRA_CHECK(lda >= k && ldb >= (trans_b ? k : n) && ldc >= n, "gemm: leading dimensions lda ", lda, " ldb ", ldb,
              " ldc ", ldc, " too small for m ", m, " n ", n, " k ", k, (trans_b ? " (B transposed)" : ""));
  const int64_t eab = dtype_bytes(ab), ec = dtype_bytes(c);
  Key key{trans_b, ab, c, m, n, k, lda, ldb, ldc, batch, stride_a, stride_b, stride_c,
          alignment(A, lda * eab, stride_a * eab), alignment(B, ldb * eab, stride_b * eab),
          alignment(C, ldc * ec, stride_c * ec), beta != 0.0f};
  auto it = impl_->plans.find(key);
  if (it == impl_->plans.end()) {
    Plan p;
    const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // strict fp32 accumulation, no TF32
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, compute, CUDA_R_32F));
    const cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    // cuBLASLt's A = our B: stored [k rows of n] col-major-transposed, i.e. a k x n (trans_b) or n x k matrix.
    ZEBRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(ab), trans_b ? k : n, trans_b ? n : k, ldb));
    ZEBRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(ab), k, m, lda));  // our A as k x m
    ZEBRA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(c), n, m, ldc));   // our C as n x m
    set_batch(p.a, batch, stride_b);
    set_batch(p.b, batch, stride_a);
    set_batch(p.c, batch, stride_c);

    cublasLtMatmulPreference_t pref = nullptr;
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = static_cast<uint64_t>(impl_->workspace_bytes);
    ZEBRA_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // cuBLASLt's A/B are our B/A.
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                            &key.al_b, sizeof key.al_b));
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                            &key.al_a, sizeof key.al_a));
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                            &key.al_c, sizeof key.al_c));
    ZEBRA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                            &key.al_c, sizeof key.al_c));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(impl_->handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      cublasLtMatmulDescDestroy(p.op);
      fail("gemm: cuBLASLt has no algorithm for m ", m, " n ", n, " k ", k, " (", dtype_name(ab), " x ",
           dtype_name(ab), " -> ", dtype_name(c), ", lda ", lda, " ldb ", ldb, " ldc ", ldc, ", alignments ", key.al_a,
           "/", key.al_b, "/", key.al_c, " bytes, batch ", batch, "): status ", cublasLtGetStatusString(st));
    }
    p.algo = result.algo;
    it = impl_->plans.emplace(key, p).first;
  }
  const Plan& p = it->second;
  ZEBRA_CUBLAS_CHECK(cublasLtMatmul(impl_->handle, p.op, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo,
                                    impl_->workspace, static_cast<size_t>(impl_->workspace_bytes), impl_->stream));
}

}  // namespace zebra::cuda
