// An owned device allocation (cudaMalloc/cudaFree) with typed upload/download helpers for host code: the
// engine's weights, caches and workspace, and the GPU tests' inputs and outputs.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"

namespace zebra::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t count) { allocate(count); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      count_ = std::exchange(o.count_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  void allocate(int64_t count) {
    release();
    ZEBRA_CHECK(count >= 0, "DeviceBuffer: negative element count ", count);
    if (count == 0) return;
    void* p = nullptr;
    ZEBRA_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(count) * sizeof(T)));
    ptr_ = static_cast<T*>(p);
    count_ = count;
  }
  void release() {
    if (ptr_) cudaFree(ptr_);  // never throws from a destructor; a failed free is reported by the next call
    ptr_ = nullptr;
    count_ = 0;
  }

  T* get() const { return ptr_; }
  int64_t size() const { return count_; }
  int64_t bytes() const { return count_ * static_cast<int64_t>(sizeof(T)); }

  // Synchronous copies of the first n elements (default: all), for setup and tests.
  void upload(const T* src, int64_t n) {
    ZEBRA_CHECK(n >= 0 && n <= count_, "DeviceBuffer::upload: ", n, " elements into a buffer of ", count_);
    if (n) ZEBRA_CUDA_CHECK(cudaMemcpy(ptr_, src, static_cast<size_t>(n) * sizeof(T), cudaMemcpyHostToDevice));
  }
  void upload(const std::vector<T>& src) { upload(src.data(), static_cast<int64_t>(src.size())); }
  std::vector<T> download(int64_t n = -1) const {
    if (n < 0) n = count_;
    ZEBRA_CHECK(n <= count_, "DeviceBuffer::download: ", n, " elements from a buffer of ", count_);
    std::vector<T> out(static_cast<size_t>(n));
    if (n) ZEBRA_CUDA_CHECK(cudaMemcpy(out.data(), ptr_, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  T* ptr_ = nullptr;
  int64_t count_ = 0;
};

// Page-locked host memory (cudaHostAlloc), for asynchronous copies the device can overlap.
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  void allocate(int64_t count) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    void* p = nullptr;
    ZEBRA_CUDA_CHECK(cudaHostAlloc(&p, static_cast<size_t>(std::max<int64_t>(1, count)) * sizeof(T), cudaHostAllocDefault));
    ptr_ = static_cast<T*>(p);
  }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

// A buffer holding a copy of `host`.
template <class T>
DeviceBuffer<T> to_device(const std::vector<T>& host) {
  DeviceBuffer<T> b(static_cast<int64_t>(host.size()));
  b.upload(host);
  return b;
}

}  // namespace zebra::cuda
