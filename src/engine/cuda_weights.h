// The CUDA engine's device copy of a Model (internal to the engine): every tensor in one allocation, linear weights
// in the storage type T (bf16, or fp32 for parity runs), norms and Mamba2 scalars in fp32. Projections that read
// the same input are concatenated so each is one GEMM: [wq; wk; wv] and [gate; up].
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/dtype.h"
#include "model/model.h"

namespace zebra::cuda {

// A bump allocator over one device allocation, used in two passes: count() (pointers stay null, only the size
// is summed), then allocate() and the same takes again for real pointers.
class DeviceArena {
 public:
  void begin_count() { counting_ = true, used_ = 0; }
  // Allocates what the counting pass summed; throws OutOfMemoryError (from the runtime) when it does not fit.
  void allocate() {
    buffer_.allocate(used_);
    capacity_ = used_;
    counting_ = false;
    used_ = 0;
  }
  template <class U>
  U* take(int64_t n) {
    used_ = (used_ + 255) / 256 * 256;  // 256-byte alignment for every array (cuBLASLt's favourite)
    const int64_t off = used_;
    used_ += n * static_cast<int64_t>(sizeof(U));
    if (counting_ || n == 0) return nullptr;
    ZEBRA_CHECK(used_ <= capacity_, "DeviceArena: the second pass takes more than the first counted");
    return reinterpret_cast<U*>(buffer_.get() + off);
  }
  int64_t bytes() const { return counting_ ? used_ : capacity_; }

 private:
  DeviceBuffer<char> buffer_;
  int64_t used_ = 0, capacity_ = 0;
  bool counting_ = true;
};

template <class T>
struct DevLayer {
  LayerKind kind = LayerKind::Attention;
  float* input_norm = nullptr;
  float* post_norm = nullptr;
  // Llama attention
  T* wqkv = nullptr;  // [q_dim + 2 kv_dim, hidden]
  T* wo = nullptr;    // [hidden, q_dim]
  // MLA
  T* q_a = nullptr;
  T* q_b = nullptr;
  T* q_proj = nullptr;
  T* kv_a = nullptr;
  T* kv_b = nullptr;
  T* mla_out = nullptr;
  float* q_a_norm = nullptr;
  float* kv_a_norm = nullptr;
  float* mla_inv_freq = nullptr;  // [rope_dim / 2]
  // Mamba2
  T* in_proj = nullptr;
  T* mamba_out = nullptr;
  float* conv_w = nullptr;  // [conv_dim, d_conv]
  float* conv_b = nullptr;
  float* dt_bias = nullptr;
  float* A_log = nullptr;
  float* D = nullptr;
  float* gnorm = nullptr;   // gated RMSNorm weight [d_inner]
  // MLP
  T* wgu = nullptr;  // [2 intermediate, hidden]: gate rows, then up rows
  T* wd = nullptr;   // [hidden, intermediate]
};

template <class T>
struct DevWeights {
  T* embed = nullptr;  // [vocab, hidden]
  T* head = nullptr;   // [vocab, hidden] (== embed when tied)
  float* norm = nullptr;
  std::vector<DevLayer<T>> layers;
};

// Takes every weight's room from the arena (both passes call it).
template <class T>
void take_weights(const Model& m, DeviceArena& arena, DevWeights<T>& w);
// Copies (converting to T) the host weights into the pointers take_weights assigned.
template <class T>
void upload_weights(const Model& m, DevWeights<T>& w);

}  // namespace zebra::cuda
