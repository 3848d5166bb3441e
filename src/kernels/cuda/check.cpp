#include "kernels/cuda/check.h"

#include <cstdio>

namespace zebra::cuda {

void fail_cuda(const char* call, const char* file, int line, cudaError_t err) {
  std::string msg = cat("CUDA error: ", call, " failed at ", file, ":", line, ": ", cudaGetErrorString(err), " (",
                        cudaGetErrorName(err), ")");
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // allocation failures are not sticky: clear them so the caller can report and go on
    throw OutOfMemoryError(msg);
  }
  throw Error(msg);
}

void fail_cublas(const char* call, const char* file, int line, cublasStatus_t status) {
  std::string msg = cat("cuBLASLt error: ", call, " failed at ", file, ":", line, ": ", cublasLtGetStatusString(status),
                        " (", cublasLtGetStatusName(status), ")");
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg);
  throw Error(msg);
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  return buf;
}

}  // namespace zebra::cuda
