// Helpers of the GPU tests: skipping without a usable GPU, random inputs, device copies of either storage type,
// NaN poisoning (so an element an op failed to write fails the comparison) and ‖out − ref‖ / ‖ref‖.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/cuda_engine.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.h"

namespace zebra::test {

// The CUDA engine's code is sm_90 only: anything else is treated as no GPU.
inline std::string gpu_skip_reason() {
  if (cuda_device_count() == 0) return cuda_unavailable_reason();
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "cudaGetDeviceProperties failed";
  if (p.major < 9) return std::string("GPU ") + p.name + " is not sm_90 (Hopper); this build carries sm_90 code only";
  return "";
}

#define ZEBRA_REQUIRE_GPU()                                                                        \
  do {                                                                                             \
    const std::string zebra_why_ = ::zebra::test::gpu_skip_reason();                               \
    if (!zebra_why_.empty()) GTEST_SKIP() << "skipped: no usable CUDA GPU (" << zebra_why_ << ")"; \
  } while (0)

inline std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(g);
  return v;
}

// Values as the storage type T would hold them (bf16 rounding), so references see what the kernels see.
template <class T>
std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = cuda::to_f32(cuda::from_f32<T>(x));
  return v;
}

template <class T>
cuda::DeviceBuffer<T> upload_as(const std::vector<float>& v) {
  std::vector<T> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = cuda::from_f32<T>(v[i]);
  return cuda::to_device(h);
}

template <class T>
std::vector<float> download_f32(const cuda::DeviceBuffer<T>& b, int64_t n = -1) {
  const std::vector<T> h = b.download(n);
  std::vector<float> v(h.size());
  for (size_t i = 0; i < h.size(); ++i) v[i] = cuda::to_f32(h[i]);
  return v;
}

// All-ones bytes: NaN in fp32 and in bf16.
template <class T>
void poison(cuda::DeviceBuffer<T>& b) {
  if (b.size()) ZEBRA_CUDA_CHECK(cudaMemset(b.get(), 0xff, static_cast<size_t>(b.bytes())));
}

inline void device_sync() { ZEBRA_CUDA_CHECK(cudaDeviceSynchronize()); }

// ‖out − ref‖ / ‖ref‖ (infinite when out holds a NaN or the sizes differ).
inline double rel_err(const std::vector<float>& out, const std::vector<double>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
inline double rel_err(const std::vector<float>& out, const std::vector<float>& ref) {
  return rel_err(out, std::vector<double>(ref.begin(), ref.end()));
}

// Tolerances by storage type: fp32 end to end, or bf16 storage with fp32 accumulation.
template <class T>
constexpr double tol(double f32 = 1e-5) {
  return std::is_same_v<T, float> ? f32 : 1e-2;
}

}  // namespace zebra::test
