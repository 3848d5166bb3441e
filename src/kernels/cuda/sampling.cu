// One block of 1024 threads per row. Top-k: a 4-pass radix select (8 bits a pass, from the top) finds the exact key
// of the k-th largest logit; every larger logit is a candidate, and of the logits equal to it the lowest ids fill
// the remaining places. The candidates are bitonic-sorted (logit descending, id ascending), their probabilities
// computed in parallel, and the sequential part (sums, cut-offs, the walk) runs on one thread in the CPU's order.
#include <cfloat>
#include <climits>
#include <cmath>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/sampling.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kSlots = static_cast<int>(kMaxSampleTopK);
static_assert(kSlots == kThreads, "one candidate slot per thread");

// Order-preserving map of a float to an unsigned key (larger float -> larger key).
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* logits, int64_t ld, int vocab,
                                                          const SampleParams* params, int32_t* ids) {
  __shared__ int hist[256];
  __shared__ float cv[kSlots];
  __shared__ int ci[kSlots];
  __shared__ double probs[kSlots];
  __shared__ float red_v[32];
  __shared__ int red_i[32];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining, s_eq, s_gt_count, s_eq_count, s_taken, s_warp[32];

  const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
  const float* x = logits + static_cast<int64_t>(row) * ld;
  const SampleParams sp = params[row];

  if (sp.temperature <= 0.0f) {
    // First index of the maximum (the CPU's strict >): each thread keeps its lowest index, ties reduce to lower.
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = tid; i < vocab; i += kThreads)
      if (x[i] > bv || bi == INT_MAX) bv = x[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (oi != INT_MAX && (bi == INT_MAX || before(ov, oi, bv, bi))) bv = ov, bi = oi;
    }
    if (lane == 0) red_v[wid] = bv, red_i[wid] = bi;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < kThreads / 32; ++w)
        if (red_i[w] != INT_MAX && (bi == INT_MAX || before(red_v[w], red_i[w], bv, bi))) bv = red_v[w], bi = red_i[w];
      ids[row] = bi;
    }
    return;
  }

  const int k = sp.top_k;
  // ---- radix select: the key of the k-th largest ----
  uint32_t prefix = 0, mask = 0;
  if (tid == 0) s_remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (tid < 256) hist[tid] = 0;
    __syncthreads();
    for (int i = tid; i < vocab; i += kThreads) {
      const uint32_t key = key_of(x[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int cum = 0, sel = 0;
      for (int d = 255; d >= 0; --d) {
        if (cum + hist[d] >= s_remaining) {
          sel = d;
          break;
        }
        cum += hist[d];
      }
      s_remaining -= cum;  // how many of the elements equal so far (in the selected digit) are still needed
      s_eq = hist[sel];
      s_prefix = prefix | (static_cast<uint32_t>(sel) << shift);
    }
    __syncthreads();
    prefix = s_prefix;
    mask |= 0xffu << shift;
  }
  const uint32_t thr = prefix;
  const int remaining = s_remaining, n_eq = s_eq, n_gt = k - remaining;

  // ---- candidates: all keys > thr, and `remaining` keys == thr (the lowest ids when there are more) ----
  cv[tid] = -INFINITY;
  ci[tid] = INT_MAX;
  if (tid == 0) s_gt_count = 0, s_eq_count = 0, s_taken = 0;
  __syncthreads();
  const bool all_eq = n_eq == remaining;
  for (int i = tid; i < vocab; i += kThreads) {
    const uint32_t key = key_of(x[i]);
    if (key > thr) {
      const int s = atomicAdd(&s_gt_count, 1);
      cv[s] = x[i], ci[s] = i;
    } else if (key == thr && all_eq) {
      const int s = atomicAdd(&s_eq_count, 1);
      cv[n_gt + s] = x[i], ci[n_gt + s] = i;
    }
  }
  if (!all_eq) {
    // More ties than places: take them in id order, 1024 ids at a time (an exclusive scan of the tie flags).
    for (int base = 0; base < vocab; base += kThreads) {
      __syncthreads();
      if (s_taken >= remaining) break;  // uniform: read after the barrier
      const int i = base + tid;
      const bool tie = i < vocab && key_of(x[i]) == thr;
      const unsigned ballot = __ballot_sync(0xffffffffu, tie);
      if (lane == 0) s_warp[wid] = __popc(ballot);
      __syncthreads();
      int before_me = __popc(ballot & ((1u << lane) - 1u));
      for (int w = 0; w < wid; ++w) before_me += s_warp[w];
      const int taken = s_taken;
      if (tie && taken + before_me < remaining) cv[n_gt + taken + before_me] = x[i], ci[n_gt + taken + before_me] = i;
      __syncthreads();
      if (tid == 0) {
        int total = 0;
        for (int w = 0; w < kThreads / 32; ++w) total += s_warp[w];
        s_taken = taken + total;
      }
    }
  }
  __syncthreads();

  // ---- bitonic sort of the 1024 slots: logit descending, id ascending; empty slots (-inf, INT_MAX) last ----
  for (int size = 2; size <= kSlots; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      const int j = tid ^ stride;
      if (j > tid) {
        const bool up = (tid & size) == 0;
        const float va = cv[tid], vb = cv[j];
        const int ia = ci[tid], ib = ci[j];
        const bool swap = up ? before(vb, ib, va, ia) : before(va, ia, vb, ib);
        if (swap) cv[tid] = vb, cv[j] = va, ci[tid] = ib, ci[j] = ia;
      }
      __syncthreads();
    }
  }

  // ---- probabilities (double, as the CPU), then the sequential part ----
  const double mx = cv[0];
  if (tid < k) probs[tid] = exp((static_cast<double>(cv[tid]) - mx) / static_cast<double>(sp.temperature));
  __syncthreads();
  if (tid == 0) {
    double sum = 0.0;
    for (int i = 0; i < k; ++i) sum += probs[i];
    for (int i = 0; i < k; ++i) probs[i] /= sum;
    int keep = k;
    if (sp.min_p > 0.0f) {
      const double floor = sp.min_p * probs[0];
      keep = 1;
      while (keep < k && probs[keep] >= floor) ++keep;
    }
    if (sp.top_p < 1.0f) {
      double cum = 0.0;
      int cut = 0;
      while (cut < keep) {
        cum += probs[cut++];
        if (cum >= sp.top_p) break;
      }
      keep = max(cut, 1);
    }
    double mass = 0.0;
    for (int i = 0; i < keep; ++i) mass += probs[i];
    double r = sp.u * mass;
    int chosen = ci[keep - 1];
    for (int i = 0; i < keep; ++i) {
      r -= probs[i];
      if (r <= 0.0) {
        chosen = ci[i];
        break;
      }
    }
    ids[row] = chosen;
  }
}

}  // namespace

void sample_rows(const float* logits, int64_t ld, int64_t vocab, const SampleParams* params, int64_t m, int32_t* ids,
                 cudaStream_t stream) {
  ZEBRA_CHECK(logits && params && ids && vocab > 0 && vocab <= INT_MAX && ld >= vocab && m >= 0,
              "sample_rows: bad arguments (vocab ", vocab, ", ld ", ld, ", rows ", m, ")");
  if (m == 0) return;
  check_grid(m, 1, 1, "sample_rows");
  sample_kernel<<<(unsigned)m, kThreads, 0, stream>>>(logits, ld, (int)vocab, params, ids);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

}  // namespace zebra::cuda
