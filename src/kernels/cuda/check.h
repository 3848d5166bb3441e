// Error checking for every CUDA runtime and cuBLASLt call: a failure throws zebra::Error naming the call, the
// file and line, and the runtime's own description, so a bad launch or a full GPU is a message, never a crash.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "core/error.h"

namespace zebra::cuda {

// Out of GPU memory (cudaErrorMemoryAllocation): callers that can say what would fit catch this one.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void fail_cuda(const char* call, const char* file, int line, cudaError_t err);
[[noreturn]] void fail_cublas(const char* call, const char* file, int line, cublasStatus_t status);

// "12.3 MiB" style sizes for messages.
std::string format_bytes(int64_t bytes);

}  // namespace zebra::cuda

#define ZEBRA_CUDA_CHECK(call)                                                          \
  do {                                                                                  \
    const cudaError_t zebra_cuda_err_ = (call);                                         \
    if (zebra_cuda_err_ != cudaSuccess)                                                 \
      ::zebra::cuda::fail_cuda(#call, __FILE__, __LINE__, zebra_cuda_err_);             \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, asynchronous faults at the next sync.
#define ZEBRA_CUDA_CHECK_LAUNCH() ZEBRA_CUDA_CHECK(cudaGetLastError())

#define ZEBRA_CUBLAS_CHECK(call)                                                        \
  do {                                                                                  \
    const cublasStatus_t zebra_cublas_st_ = (call);                                     \
    if (zebra_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::zebra::cuda::fail_cublas(#call, __FILE__, __LINE__, zebra_cublas_st_);          \
  } while (0)
