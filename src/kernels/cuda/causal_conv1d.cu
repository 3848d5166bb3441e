#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/device_common.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 128;      // channels per block
constexpr int kTokens = 8;         // consecutive tokens per thread in the sequence kernel
constexpr int kMaxConv = 8;

// Input tap j (run-local token index; j < 0 reads the window, or zero for a fresh run).
__device__ __forceinline__ float conv_input(const float* in, int64_t ld_in, const DevRun& run, const float* window,
                                            int K, int c, int64_t j) {
  if (j >= 0) return in[(run.row0 + j) * ld_in + c];
  return run.pos0 > 0 ? window[c * (K - 1) + (K - 1) + j] : 0.0f;
}

__global__ void __launch_bounds__(kThreads) conv_kernel(const float* in, int64_t ld_in, ConvArgs a, const DevRun* runs,
                                                        const int32_t* run_ids, DevStates st, float* out,
                                                        int64_t ld_out) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  const DevRun run = runs[run_ids[blockIdx.z]];
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTokens;
  if (c >= a.channels || run.seq < 0 || t0 >= run.n) return;
  const int K = static_cast<int>(a.d_conv);
  const float* window = st.conv_at(run.seq);
  float wk[kMaxConv], x[kMaxConv + kTokens - 1];
#pragma unroll
  for (int k = 0; k < kMaxConv; ++k) wk[k] = k < K ? a.w[static_cast<int64_t>(c) * K + k] : 0.0f;
  const float bias = a.b[c];
  // x[i] = input tap t0 - (K - 1) + i, i < K - 1 + kTokens
#pragma unroll
  for (int i = 0; i < kMaxConv + kTokens - 1; ++i)
    if (i < K - 1 + kTokens) {
      const int64_t j = t0 - (K - 1) + i;
      x[i] = j < run.n ? conv_input(in, ld_in, run, window, K, c, j) : 0.0f;
    }
#pragma unroll
  for (int tt = 0; tt < kTokens; ++tt) {
    const int64_t t = t0 + tt;
    if (t >= run.n) break;
    float acc = bias;
#pragma unroll
    for (int k = 0; k < kMaxConv; ++k)
      if (k < K) acc += wk[k] * x[tt + k];
    out[(run.row0 + t) * ld_out + c] = a.silu ? silu(acc) : acc;
  }
}

// After conv_kernel (stream order): window <- the run's last K - 1 inputs. Ascending k reads old entry n + k > k
// before anything at or above it is overwritten.
__global__ void window_kernel(const float* in, int64_t ld_in, ConvArgs a, const DevRun* runs, const int32_t* run_ids,
                              DevStates st) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  const DevRun run = runs[run_ids[blockIdx.y]];
  if (c >= a.channels || run.seq < 0) return;
  const int K = static_cast<int>(a.d_conv);
  float* window = st.conv_at(run.seq);
  for (int k = 0; k < K - 1; ++k) {
    const int64_t j = static_cast<int64_t>(run.n) - (K - 1) + k;
    window[c * (K - 1) + k] = conv_input(in, ld_in, run, window, K, c, j);
  }
}

__global__ void __launch_bounds__(kThreads) step_kernel(const float* in, int64_t ld_in, ConvArgs a, const DevRun* runs,
                                                        const int32_t* run_ids, DevStates st, float* out,
                                                        int64_t ld_out) {
  const int c = blockIdx.x * kThreads + threadIdx.x;
  const DevRun run = runs[run_ids[blockIdx.y]];
  if (c >= a.channels) return;
  float* o = out + static_cast<int64_t>(run.row0) * ld_out + c;
  if (run.seq < 0) {
    *o = 0.0f;
    return;
  }
  const int K = static_cast<int>(a.d_conv);
  float* window = st.conv_at(run.seq) + static_cast<int64_t>(c) * (K - 1);
  float w[kMaxConv];
#pragma unroll
  for (int k = 0; k < kMaxConv - 1; ++k) w[k] = (k < K - 1 && run.pos0 > 0) ? window[k] : 0.0f;
  const float x = in[static_cast<int64_t>(run.row0) * ld_in + c];
  float acc = a.b[c];
#pragma unroll
  for (int k = 0; k < kMaxConv - 1; ++k)
    if (k < K - 1) acc += a.w[static_cast<int64_t>(c) * K + k] * w[k];
  acc += a.w[static_cast<int64_t>(c) * K + K - 1] * x;
  *o = a.silu ? silu(acc) : acc;
#pragma unroll
  for (int k = 0; k < kMaxConv - 1; ++k)
    if (k < K - 1) window[k] = k + 1 < K - 1 ? w[k + 1] : x;
}

void check_args(const ConvArgs& a, const DevStates& st, const char* op) {
  ZEBRA_CHECK(a.channels > 0 && a.d_conv >= 2 && a.d_conv <= kMaxConv && a.w && a.b && st.conv && st.slot_stride > 0,
              op, ": bad arguments (channels ", a.channels, ", d_conv ", a.d_conv, " in [2, ", kMaxConv, "])");
}

}  // namespace

void causal_conv1d(const float* in, int64_t ld_in, const ConvArgs& a, const DevRun* runs, const int32_t* run_ids,
                   int64_t n_ids, int64_t max_n, const DevStates& states, float* out, int64_t ld_out,
                   cudaStream_t stream) {
  check_args(a, states, "causal_conv1d");
  ZEBRA_CHECK(ld_in >= a.channels && ld_out >= a.channels && n_ids >= 0 && max_n >= 0,
              "causal_conv1d: bad leading dimensions or counts");
  if (n_ids == 0 || max_n == 0) return;
  const int64_t bx = ceil_div(a.channels, kThreads);
  check_grid(bx, ceil_div(max_n, kTokens), n_ids, "causal_conv1d");
  conv_kernel<<<dim3((unsigned)bx, (unsigned)ceil_div(max_n, kTokens), (unsigned)n_ids), kThreads, 0, stream>>>(
      in, ld_in, a, runs, run_ids, states, out, ld_out);
  ZEBRA_CUDA_CHECK_LAUNCH();
  window_kernel<<<dim3((unsigned)bx, (unsigned)n_ids), kThreads, 0, stream>>>(in, ld_in, a, runs, run_ids, states);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

void causal_conv1d_step(const float* in, int64_t ld_in, const ConvArgs& a, const DevRun* runs, const int32_t* run_ids,
                        int64_t n_ids, const DevStates& states, float* out, int64_t ld_out, cudaStream_t stream) {
  check_args(a, states, "causal_conv1d_step");
  ZEBRA_CHECK(ld_in >= a.channels && ld_out >= a.channels && n_ids >= 0, "causal_conv1d_step: bad arguments");
  if (n_ids == 0) return;
  const int64_t bx = ceil_div(a.channels, kThreads);
  check_grid(bx, n_ids, 1, "causal_conv1d_step");
  step_kernel<<<dim3((unsigned)bx, (unsigned)n_ids), kThreads, 0, stream>>>(in, ld_in, a, runs, run_ids, states, out,
                                                                          ld_out);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

}  // namespace zebra::cuda
