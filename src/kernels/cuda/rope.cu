// One block per row: every thread first reads its (head, pair) values into registers, the block syncs, then
// every thread writes, so rotating in place is safe even when a pair's outputs land on other threads' inputs
// (the interleaved layout).
#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/rope.cuh"

namespace zebra::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kPairsPerThread = 16;  // up to 4096 (head, pair) items per row: 128 heads of rope dim 64

template <class Out, bool kInterleaved>
__global__ void __launch_bounds__(kThreads) rope_kernel(const float* in, int64_t ld_in, Out* out, int64_t ld_out,
                                                        int n_heads, int dim, int64_t head_stride, float scale,
                                                        const int32_t* pos, const float* inv_freq) {
  const int64_t t = blockIdx.x;
  const int half = dim / 2, items = n_heads * half;
  const float p = static_cast<float>(pos[t]);
  float r0[kPairsPerThread], r1[kPairsPerThread];
#pragma unroll
  for (int k = 0; k < kPairsPerThread; ++k) {
    const int item = threadIdx.x + k * kThreads;
    if (item < items) {
      const int h = item / half, i = item % half;
      const float* x = in + t * ld_in + h * head_stride;
      const float x0 = kInterleaved ? x[2 * i] : x[i];
      const float x1 = kInterleaved ? x[2 * i + 1] : x[i + half];
      float s, c;
      sincosf(p * inv_freq[i], &s, &c);  // accurate range reduction: positions reach 1e5+ radians
      c *= scale;
      s *= scale;
      r0[k] = x0 * c - x1 * s;
      r1[k] = x1 * c + x0 * s;
    }
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < kPairsPerThread; ++k) {
    const int item = threadIdx.x + k * kThreads;
    if (item < items) {
      const int h = item / half, i = item % half;
      Out* y = out + t * ld_out + h * head_stride;
      y[i] = from_float<Out>(r0[k]);
      y[i + half] = from_float<Out>(r1[k]);
    }
  }
}

template <class Out, bool kInterleaved>
void launch(const float* in, int64_t ld_in, Out* out, int64_t ld_out, const RopeArgs& a, cudaStream_t stream,
            const char* op) {
  ZEBRA_CHECK(a.rows >= 0 && a.n_heads > 0 && a.dim > 0 && a.dim % 2 == 0 && a.head_stride >= 0, op,
              ": bad shape rows ", a.rows, " heads ", a.n_heads, " dim ", a.dim, " head_stride ", a.head_stride);
  ZEBRA_CHECK((a.n_heads - 1) * a.head_stride + a.dim <= std::min(ld_in, ld_out), op, ": ", a.n_heads,
              " heads of width ", a.dim, " at stride ", a.head_stride, " overrun the row (ld_in ", ld_in, ", ld_out ",
              ld_out, ")");
  ZEBRA_CHECK(a.n_heads * (a.dim / 2) <= int64_t(kThreads) * kPairsPerThread, op, ": ", a.n_heads, " heads x ",
              a.dim / 2, " pairs exceed the kernel's ", kThreads * kPairsPerThread, " per row");
  ZEBRA_CHECK(a.pos && a.inv_freq, op, ": null positions or frequency table");
  if (a.rows == 0) return;
  check_grid(a.rows, 1, 1, op);
  rope_kernel<Out, kInterleaved><<<(unsigned)a.rows, kThreads, 0, stream>>>(in, ld_in, out, ld_out, (int)a.n_heads,
                                                                           (int)a.dim, a.head_stride, a.scale, a.pos,
                                                                           a.inv_freq);
  ZEBRA_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <class Out>
void rope_rotate_half(const float* in, int64_t ld_in, Out* out, int64_t ld_out, const RopeArgs& a, cudaStream_t stream) {
  launch<Out, false>(in, ld_in, out, ld_out, a, stream, "rope_rotate_half");
}

template <class Out>
void rope_interleaved(const float* in, int64_t ld_in, Out* out, int64_t ld_out, const RopeArgs& a, cudaStream_t stream) {
  launch<Out, true>(in, ld_in, out, ld_out, a, stream, "rope_interleaved");
}

template void rope_rotate_half<float>(const float*, int64_t, float*, int64_t, const RopeArgs&, cudaStream_t);
template void rope_rotate_half<bf16>(const float*, int64_t, bf16*, int64_t, const RopeArgs&, cudaStream_t);
template void rope_interleaved<float>(const float*, int64_t, float*, int64_t, const RopeArgs&, cudaStream_t);
template void rope_interleaved<bf16>(const float*, int64_t, bf16*, int64_t, const RopeArgs&, cudaStream_t);

}  // namespace zebra::cuda
