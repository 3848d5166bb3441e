// Mamba2 scans (see ssd_scan.cuh). Within a chunk of L <= 64 tokens with a_s = dt_s A and cum_l = Σ_{s<=l} a_s
// (a prefix sum in double, as the CPU scan, so exp(cum_l - cum_s) keeps fp32 accuracy):
//   y_l   = Σ_{s<=l} (C_l·B_s) exp(cum_l - cum_s) dt_s x_s  +  exp(cum_l) S_in C_l  +  D x_l
//   S_out = exp(cum_{L-1}) S_in  +  Σ_s exp(cum_{L-1} - cum_s) dt_s x_s B_sᵀ
// Workspace per (chunk, head): the chunk's own state term [P][N] (overwritten by phase 2 with the state entering
// the chunk), exp(cum_{L-1}), and exp(cum_l) for each of its tokens.
#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/ssd_scan.cuh"

namespace zebra::cuda {

namespace {

constexpr int CH = static_cast<int>(kSsdChunk);
constexpr int kThreads = 256;
constexpr int kMaxDim = 128;

struct Workspace {
  float* state;  // [n_chunks][n_heads][P][N]
  float* decay;  // [n_chunks][n_heads]
  float* tok;    // [n_chunks][n_heads][CH]
};

Workspace split_workspace(float* ws, const SsmArgs& a, int64_t n_chunks) {
  Workspace w;
  w.state = ws;
  w.decay = w.state + n_chunks * a.n_heads * a.head_dim * a.d_state;
  w.tok = w.decay + n_chunks * a.n_heads;
  return w;
}

size_t chunk_smem_bytes(int P, int N) {
  return sizeof(double) * CH + sizeof(float) * (size_t)(2 * CH + CH * P + CH * (N + 1) + CH * N + CH * CH);
}

// Phase 1, one block per (chunk, head).
__global__ void __launch_bounds__(kThreads) chunk_kernel(const float* xbc, int64_t ld_xbc, const float* dt_raw,
                                                         int64_t ld_dt, SsmArgs a, const DevRun* runs,
                                                         const ScanChunk* chunks, Workspace ws, float* y, int64_t ld_y) {
  extern __shared__ __align__(16) double smem_d[];
  const int P = static_cast<int>(a.head_dim), N = static_cast<int>(a.d_state), nh = static_cast<int>(a.n_heads);
  double* cum = smem_d;                                 // [CH]
  float* dt = reinterpret_cast<float*>(cum + CH);       // [CH]
  float* wgt = dt + CH;                                 // [CH] exp(cum_last - cum_s) dt_s
  float* X = wgt + CH;                                  // [CH][P]
  float* Bs = X + CH * P;                               // [CH][N + 1] (odd pitch for the G products)
  float* Cs = Bs + CH * (N + 1);                        // [CH][N]
  float* G = Cs + CH * N;                               // [CH][CH]

  const int ci = blockIdx.x, h = blockIdx.y, k = h / static_cast<int>(a.group());
  const ScanChunk ch = chunks[ci];
  const DevRun run = runs[ch.run];
  const int L = ch.len;
  const int64_t row0 = static_cast<int64_t>(run.row0) + ch.t0;
  const float A = -expf(a.A_log[h]);

  for (int idx = threadIdx.x; idx < L * P; idx += kThreads) {
    const int l = idx / P, p = idx % P;
    X[l * P + p] = xbc[(row0 + l) * ld_xbc + k * P + p];
  }
  for (int idx = threadIdx.x; idx < L * N; idx += kThreads) {
    const int l = idx / N, n = idx % N;
    const float* r = xbc + (row0 + l) * ld_xbc;
    Bs[l * (N + 1) + n] = r[a.d_xb + k * N + n];
    Cs[l * N + n] = r[2 * a.d_xb + h * N + n];
  }
  if (threadIdx.x < L) dt[threadIdx.x] = softplus(dt_raw[(row0 + threadIdx.x) * ld_dt + h] + a.dt_bias[h]);
  __syncthreads();
  if (threadIdx.x == 0) {
    double acc = 0.0;
    for (int l = 0; l < L; ++l) {
      acc += static_cast<double>(dt[l]) * A;
      cum[l] = acc;
    }
    for (int s = 0; s < L; ++s) wgt[s] = static_cast<float>(exp(acc - cum[s])) * dt[s];
  }
  __syncthreads();
  // G[l][s] = (C_l·B_s) exp(cum_l - cum_s) dt_s, s <= l.
  for (int idx = threadIdx.x; idx < L * L; idx += kThreads) {
    const int l = idx / L, s = idx % L;
    float g = 0.0f;
    if (s <= l) {
      float acc = 0.0f;
      for (int n = 0; n < N; ++n) acc += Cs[l * N + n] * Bs[s * (N + 1) + n];
      g = acc * static_cast<float>(exp(cum[l] - cum[s])) * dt[s];
    }
    G[l * CH + s] = g;
  }
  __syncthreads();
  const int64_t wsi = static_cast<int64_t>(ci) * nh + h;
  for (int idx = threadIdx.x; idx < L * P; idx += kThreads) {
    const int l = idx / P, p = idx % P;
    float acc = 0.0f;
    for (int s = 0; s <= l; ++s) acc += G[l * CH + s] * X[s * P + p];
    y[(row0 + l) * ld_y + static_cast<int64_t>(h) * P + p] = acc;
  }
  float* Sc = ws.state + wsi * P * N;
  for (int idx = threadIdx.x; idx < P * N; idx += kThreads) {
    const int p = idx / N, n = idx % N;
    float acc = 0.0f;
    for (int s = 0; s < L; ++s) acc += (wgt[s] * X[s * P + p]) * Bs[s * (N + 1) + n];
    Sc[idx] = acc;
  }
  if (threadIdx.x == 0) ws.decay[wsi] = static_cast<float>(exp(cum[L - 1]));
  if (threadIdx.x < L) ws.tok[wsi * CH + threadIdx.x] = static_cast<float>(exp(cum[threadIdx.x]));
}

// Phase 2, one block per (prefill run, head): the chunks' states in order, elementwise over [P][N].
__global__ void __launch_bounds__(kThreads) pass_kernel(SsmArgs a, const DevRun* runs, const int32_t* run_ids,
                                                        const int32_t* chunk_first, Workspace ws, DevStates st) {
  const int ii = blockIdx.x, h = blockIdx.y, nh = static_cast<int>(a.n_heads);
  const DevRun run = runs[run_ids[ii]];
  const int64_t PN = a.head_dim * a.d_state;
  float* S = st.ssm_at(run.seq) + h * PN;
  const int c0 = chunk_first[ii], c1 = chunk_first[ii + 1];
  for (int64_t e = threadIdx.x; e < PN; e += kThreads) {
    float s = run.pos0 > 0 ? S[e] : 0.0f;
    for (int c = c0; c < c1; ++c) {
      float* cs = ws.state + (static_cast<int64_t>(c) * nh + h) * PN + e;
      const float own = *cs;
      *cs = s;  // the state entering chunk c
      s = ws.decay[static_cast<int64_t>(c) * nh + h] * s + own;
    }
    S[e] = s;
  }
}

size_t output_smem_bytes(int P, int N) { return sizeof(float) * (size_t)(P * (N + 1) + CH * N); }

// Phase 3, one block per (chunk, head): y_l += exp(cum_l) S_in C_l + D x_l.
__global__ void __launch_bounds__(kThreads) output_kernel(const float* xbc, int64_t ld_xbc, SsmArgs a,
                                                          const DevRun* runs, const ScanChunk* chunks, Workspace ws,
                                                          float* y, int64_t ld_y) {
  extern __shared__ __align__(16) float smem[];
  const int P = static_cast<int>(a.head_dim), N = static_cast<int>(a.d_state), nh = static_cast<int>(a.n_heads);
  float* Sin = smem;               // [P][N + 1]
  float* Cs = Sin + P * (N + 1);   // [CH][N]
  const int ci = blockIdx.x, h = blockIdx.y, k = h / static_cast<int>(a.group());
  const ScanChunk ch = chunks[ci];
  const DevRun run = runs[ch.run];
  const int L = ch.len;
  const int64_t row0 = static_cast<int64_t>(run.row0) + ch.t0;
  const int64_t wsi = static_cast<int64_t>(ci) * nh + h;
  const float* src = ws.state + wsi * P * N;
  for (int idx = threadIdx.x; idx < P * N; idx += kThreads) Sin[(idx / N) * (N + 1) + idx % N] = src[idx];
  for (int idx = threadIdx.x; idx < L * N; idx += kThreads) {
    const int l = idx / N, n = idx % N;
    Cs[l * N + n] = xbc[(row0 + l) * ld_xbc + 2 * a.d_xb + h * N + n];
  }
  __syncthreads();
  const float Dh = a.D[h];
  for (int idx = threadIdx.x; idx < L * P; idx += kThreads) {
    const int l = idx / P, p = idx % P;
    float acc = 0.0f;
    for (int n = 0; n < N; ++n) acc += Sin[p * (N + 1) + n] * Cs[l * N + n];
    float* yo = y + (row0 + l) * ld_y + static_cast<int64_t>(h) * P + p;
    *yo += ws.tok[wsi * CH + l] * acc + Dh * xbc[(row0 + l) * ld_xbc + k * P + p];
  }
}

// One block per (decode run, head): warps over the state rows p, lanes over d_state.
__global__ void __launch_bounds__(128) step_kernel(const float* xbc, int64_t ld_xbc, const float* dt_raw, int64_t ld_dt,
                                                   SsmArgs a, const DevRun* runs, const int32_t* run_ids, DevStates st,
                                                   float* y, int64_t ld_y) {
  __shared__ float xs[kMaxDim], Bs[kMaxDim], Cs[kMaxDim];
  const int ii = blockIdx.x, h = blockIdx.y, k = h / static_cast<int>(a.group());
  const int P = static_cast<int>(a.head_dim), N = static_cast<int>(a.d_state);
  const DevRun run = runs[run_ids[ii]];
  float* yo = y + static_cast<int64_t>(run.row0) * ld_y + static_cast<int64_t>(h) * P;
  if (run.seq < 0) {
    for (int p = threadIdx.x; p < P; p += blockDim.x) yo[p] = 0.0f;
    return;
  }
  const float* r = xbc + static_cast<int64_t>(run.row0) * ld_xbc;
  for (int p = threadIdx.x; p < P; p += blockDim.x) xs[p] = r[k * P + p];
  for (int n = threadIdx.x; n < N; n += blockDim.x) {
    Bs[n] = r[a.d_xb + k * N + n];
    Cs[n] = r[2 * a.d_xb + h * N + n];
  }
  __syncthreads();
  const float dt = softplus(dt_raw[static_cast<int64_t>(run.row0) * ld_dt + h] + a.dt_bias[h]);
  const float decay = expf(dt * -expf(a.A_log[h]));
  const float Dh = a.D[h];
  const bool fresh = run.pos0 == 0;
  float* S = st.ssm_at(run.seq) + static_cast<int64_t>(h) * P * N;
  const int wid = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  for (int p = wid; p < P; p += n_warps) {
    const float xp = dt * xs[p];
    float acc = 0.0f;
    for (int n = lane; n < N; n += 32) {
      const float s = (fresh ? 0.0f : decay * S[p * N + n]) + xp * Bs[n];
      S[p * N + n] = s;
      acc += s * Cs[n];
    }
    acc = warp_sum(acc);
    if (lane == 0) yo[p] = acc + Dh * xs[p];
  }
}

void check_args(const SsmArgs& a, const DevStates& st, const char* op) {
  ZEBRA_CHECK(a.n_heads > 0 && a.head_dim > 0 && a.head_dim <= kMaxDim && a.d_state > 0 && a.d_state <= kMaxDim &&
                  a.d_xb > 0 && a.d_xb % a.head_dim == 0 && a.n_heads % (a.d_xb / a.head_dim) == 0 && a.dt_bias &&
                  a.A_log && a.D && st.ssm && st.slot_stride > 0,
              op, ": bad arguments (heads ", a.n_heads, ", head_dim ", a.head_dim, ", d_state ", a.d_state, " (<= ",
              kMaxDim, "), d_xb ", a.d_xb, ")");
}

template <class K>
void set_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    ZEBRA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

}  // namespace

int64_t ssd_scan_workspace_floats(const SsmArgs& a, int64_t n_chunks) {
  return n_chunks * a.n_heads * (a.head_dim * a.d_state + 1 + kSsdChunk);
}

void ssd_scan(const float* xbc, int64_t ld_xbc, const float* dt_raw, int64_t ld_dt, const SsmArgs& a,
              const DevRun* runs, const int32_t* run_ids, int64_t n_ids, const ScanChunk* chunks,
              const int32_t* chunk_first, int64_t n_chunks, const DevStates& states, float* workspace, float* y,
              int64_t ld_y, cudaStream_t stream) {
  check_args(a, states, "ssd_scan");
  ZEBRA_CHECK(xbc && dt_raw && y && runs && run_ids && chunks && chunk_first && workspace && n_ids >= 0 &&
                  n_chunks >= n_ids,
              "ssd_scan: bad arguments (", n_ids, " runs, ", n_chunks, " chunks)");
  if (n_ids == 0) return;
  const Workspace ws = split_workspace(workspace, a, n_chunks);
  const int P = (int)a.head_dim, N = (int)a.d_state;
  check_grid(n_chunks, a.n_heads, 1, "ssd_scan");
  const size_t s1 = chunk_smem_bytes(P, N);
  set_smem(chunk_kernel, s1);
  chunk_kernel<<<dim3((unsigned)n_chunks, (unsigned)a.n_heads), kThreads, s1, stream>>>(xbc, ld_xbc, dt_raw, ld_dt, a,
                                                                                       runs, chunks, ws, y, ld_y);
  ZEBRA_CUDA_CHECK_LAUNCH();
  pass_kernel<<<dim3((unsigned)n_ids, (unsigned)a.n_heads), kThreads, 0, stream>>>(a, runs, run_ids, chunk_first, ws,
                                                                                 states);
  ZEBRA_CUDA_CHECK_LAUNCH();
  const size_t s3 = output_smem_bytes(P, N);
  set_smem(output_kernel, s3);
  output_kernel<<<dim3((unsigned)n_chunks, (unsigned)a.n_heads), kThreads, s3, stream>>>(xbc, ld_xbc, a, runs, chunks,
                                                                                        ws, y, ld_y);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

void ssm_step(const float* xbc, int64_t ld_xbc, const float* dt_raw, int64_t ld_dt, const SsmArgs& a,
              const DevRun* runs, const int32_t* run_ids, int64_t n_ids, const DevStates& states, float* y,
              int64_t ld_y, cudaStream_t stream) {
  check_args(a, states, "ssm_step");
  ZEBRA_CHECK(xbc && dt_raw && y && runs && run_ids && n_ids >= 0, "ssm_step: bad arguments");
  if (n_ids == 0) return;
  check_grid(n_ids, a.n_heads, 1, "ssm_step");
  step_kernel<<<dim3((unsigned)n_ids, (unsigned)a.n_heads), 128, 0, stream>>>(xbc, ld_xbc, dt_raw, ld_dt, a, runs,
                                                                             run_ids, states, y, ld_y);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

}  // namespace zebra::cuda
