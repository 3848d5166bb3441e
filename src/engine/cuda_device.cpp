// Whether a usable GPU is visible (--device auto, the GPU tests' skip), apart from the engine itself so that
// asking links nothing else.
#include <cuda_runtime_api.h>

#include "core/error.h"
#include "engine/cuda_engine.h"

namespace zebra {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear it: callers only ask
    return 0;
  }
  return n;
}

std::string cuda_unavailable_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaSuccess && n > 0) return "";
  cudaGetLastError();
  if (e == cudaErrorInsufficientDriver) {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0) return "no NVIDIA driver is installed (no GPU on this machine)";
    return cat("the NVIDIA driver is too old for this build (driver supports CUDA ", driver / 1000, ".",
               (driver % 1000) / 10, ", zebra was built with CUDA ", CUDART_VERSION / 1000, ".",
               (CUDART_VERSION % 1000) / 10, ")");
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) return "no CUDA GPU is visible";
  return cat("the CUDA runtime cannot start: ", cudaGetErrorString(e));
}

}  // namespace zebra
