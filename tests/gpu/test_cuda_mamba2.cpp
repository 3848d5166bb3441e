// Mamba2 on the GPU (causal conv of runs and its fused one-token step, the 3-phase chunked SSD scan and ssm_step,
// gated_rmsnorm) against the CPU layer's own core, mamba2_ssm_core (conv window + SSM state in, y = S C + D x and
// the updated window/state out): ragged runs, fresh and continuing states, lengths that cross the 64-token chunk
// boundary, decode tokens; the tiny fixture's dims, Zebra-1B's, and head_dim/d_state 128.
#include <algorithm>
#include <cmath>

#include "gpu_support.h"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/gated_rmsnorm.cuh"
#include "kernels/cuda/ssd_scan.cuh"
#include "model/mamba2.h"

using namespace zebra;
using namespace zebra::test;
using cuda::DeviceBuffer;
using cuda::DevRun;

namespace {

struct RunSpec {
  int32_t pos0, n;
};

Mamba2Dims make_dims(int64_t hidden, int64_t d_inner, int64_t d_xb, int64_t N) {
  Mamba2Dims d;
  d.hidden = hidden, d.d_inner = d_inner, d.d_xb = d_xb, d.d_state = N, d.head_dim = N, d.n_heads = d_inner / N;
  d.d_conv = 4;
  return d;
}

Mamba2Weights make_weights(const Mamba2Dims& d, uint64_t seed) {
  Mamba2Weights w;
  w.in_proj = Tensor({d.in_proj_rows(), d.hidden});
  w.out_proj = Tensor({d.hidden, d.d_inner});
  w.norm = Tensor({d.d_inner});
  w.conv_w = Tensor({d.conv_dim(), d.d_conv});
  w.conv_w.data = randn(d.conv_dim() * d.d_conv, seed, 0.5f);
  w.conv_b = Tensor({d.conv_dim()});
  w.conv_b.data = randn(d.conv_dim(), seed + 1, 0.2f);
  w.dt_bias = Tensor({d.n_heads});
  w.A_log = Tensor({d.n_heads});
  w.D = Tensor({d.n_heads});
  std::mt19937 g(seed + 2);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t h = 0; h < d.n_heads; ++h) {
    w.dt_bias.data[h] = -4.0f + 2.0f * u(g);                // softplus -> dt ~ 0.02..0.13
    w.A_log.data[h] = std::log(1.0f + 15.0f * u(g));         // A in [-16, -1]
    w.D.data[h] = 0.5f + u(g);
  }
  return w;
}

void check_scan(const Mamba2Dims& d, const std::vector<RunSpec>& specs, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "d_inner " << d.d_inner << " d_xb " << d.d_xb << " N " << d.d_state << " seed " << seed);
  const Mamba2Weights w = make_weights(d, seed);
  const int64_t K = d.d_conv, cd = d.conv_dim(), rows_in = d.in_proj_rows(), nh = d.n_heads;
  const int64_t ssm = nh * d.head_dim * d.d_state, conv = cd * (K - 1), slot = ssm + conv;
  const int64_t NR = static_cast<int64_t>(specs.size());
  int64_t rows = 0;
  std::vector<DevRun> runs;
  for (int64_t r = 0; r < NR; ++r) {
    runs.push_back(DevRun{static_cast<int32_t>(r), static_cast<int32_t>(rows), specs[r].n, specs[r].pos0});
    rows += specs[r].n;
  }
  runs.push_back(DevRun{-1, static_cast<int32_t>(rows), 1, 0});  // padding (decode list)
  rows += 1;
  std::vector<float> proj = randn(rows * rows_in, seed + 3);
  // Slots: [ssm | conv window]; a fresh run's slot holds garbage that must be ignored.
  std::vector<float> states = randn((NR + 1) * slot, seed + 4, 0.5f);
  for (int64_t r = 0; r < NR; ++r)
    if (specs[r].pos0 == 0)
      for (int64_t i = 0; i < slot; ++i) states[r * slot + i] = 1e3f;

  // CPU reference per run (its window layout is [conv_dim][d_conv], only entries 1..d_conv-1 read).
  std::vector<float> y_ref(rows * d.d_inner, 0.0f), state_ref = states;
  for (int64_t r = 0; r < NR; ++r) {
    const bool fresh = specs[r].pos0 == 0;
    std::vector<float> window(cd * K, 0.0f), S(ssm, 0.0f);
    if (!fresh) {
      std::copy_n(&states[r * slot], ssm, S.begin());
      for (int64_t c = 0; c < cd; ++c)
        for (int64_t k = 0; k < K - 1; ++k) window[c * K + 1 + k] = states[r * slot + ssm + c * (K - 1) + k];
    }
    mamba2_ssm_core(d, w, specs[r].n, &proj[runs[r].row0 * rows_in], window.data(), S.data(),
                    &y_ref[runs[r].row0 * d.d_inner], 64);
    std::copy(S.begin(), S.end(), state_ref.begin() + r * slot);
    for (int64_t c = 0; c < cd; ++c)
      for (int64_t k = 0; k < K - 1; ++k) state_ref[r * slot + ssm + c * (K - 1) + k] = window[c * K + 1 + k];
  }

  DeviceBuffer<float> dproj = cuda::to_device(proj), dstates = cuda::to_device(states);
  DeviceBuffer<float> dcw = cuda::to_device(w.conv_w.data), dcb = cuda::to_device(w.conv_b.data);
  DeviceBuffer<float> ddt = cuda::to_device(w.dt_bias.data), dA = cuda::to_device(w.A_log.data), dD = cuda::to_device(w.D.data);
  DeviceBuffer<DevRun> druns = cuda::to_device(runs);
  DeviceBuffer<float> xbc(rows * cd), y(rows * d.d_inner);
  poison(xbc);
  poison(y);
  std::vector<int32_t> pre, dec, first;
  std::vector<cuda::ScanChunk> chunks;
  int64_t max_n = 0;
  for (int64_t r = 0; r < NR; ++r) {
    if (specs[r].n == 1) {
      dec.push_back(static_cast<int32_t>(r));
      continue;
    }
    first.push_back(static_cast<int32_t>(chunks.size()));
    pre.push_back(static_cast<int32_t>(r));
    max_n = std::max<int64_t>(max_n, specs[r].n);
    for (int32_t t0 = 0; t0 < specs[r].n; t0 += 64)
      chunks.push_back(cuda::ScanChunk{static_cast<int32_t>(r), t0, std::min(64, specs[r].n - t0), 0});
  }
  first.push_back(static_cast<int32_t>(chunks.size()));
  dec.push_back(static_cast<int32_t>(NR));
  DeviceBuffer<int32_t> dpre = cuda::to_device(pre), ddec = cuda::to_device(dec), dfirst = cuda::to_device(first);
  DeviceBuffer<cuda::ScanChunk> dchunks = cuda::to_device(chunks);
  cuda::DevStates st;
  st.ssm = dstates.get(), st.conv = dstates.get() + ssm, st.slot_stride = slot;
  cuda::ConvArgs ca;
  ca.channels = cd, ca.d_conv = K, ca.w = dcw.get(), ca.b = dcb.get();
  cuda::SsmArgs sa;
  sa.n_heads = nh, sa.head_dim = d.head_dim, sa.d_state = d.d_state, sa.d_xb = d.d_xb;
  sa.dt_bias = ddt.get(), sa.A_log = dA.get(), sa.D = dD.get();
  const float* dt_raw = dproj.get() + d.d_inner + cd;
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  DeviceBuffer<float> ws(std::max<int64_t>(1, cuda::ssd_scan_workspace_floats(sa, n_chunks)));
  poison(ws);
  if (!pre.empty()) {
    cuda::causal_conv1d(dproj.get() + d.d_inner, rows_in, ca, druns.get(), dpre.get(), (int64_t)pre.size(), max_n, st,
                        xbc.get(), cd, 0);
    cuda::ssd_scan(xbc.get(), cd, dt_raw, rows_in, sa, druns.get(), dpre.get(), (int64_t)pre.size(), dchunks.get(),
                   dfirst.get(), n_chunks, st, ws.get(), y.get(), d.d_inner, 0);
  }
  cuda::causal_conv1d_step(dproj.get() + d.d_inner, rows_in, ca, druns.get(), ddec.get(), (int64_t)dec.size(), st,
                           xbc.get(), cd, 0);
  cuda::ssm_step(xbc.get(), cd, dt_raw, rows_in, sa, druns.get(), ddec.get(), (int64_t)dec.size(), st, y.get(),
                 d.d_inner, 0);
  device_sync();
  const std::vector<float> got_y = y.download(), got_st = dstates.download();
  for (int64_t c = 0; c < d.d_inner; ++c) ASSERT_EQ(got_y[(rows - 1) * d.d_inner + c], 0.0f) << "padding row";
  for (int64_t i = 0; i < slot; ++i) ASSERT_EQ(got_st[NR * slot + i], states[NR * slot + i]) << "padding slot written";
  for (int64_t r = 0; r < NR; ++r) {
    const char* kind = specs[r].n == 1 ? "decode" : "prefill";
    const int64_t a = runs[r].row0 * d.d_inner, b = a + specs[r].n * d.d_inner;
    EXPECT_LT(rel_err(std::vector<float>(got_y.begin() + a, got_y.begin() + b),
                      std::vector<float>(y_ref.begin() + a, y_ref.begin() + b)),
              2e-5)
        << kind << " run " << r << " pos0 " << specs[r].pos0 << " n " << specs[r].n << ": y";
    EXPECT_LT(rel_err(std::vector<float>(got_st.begin() + r * slot, got_st.begin() + r * slot + ssm),
                      std::vector<float>(state_ref.begin() + r * slot, state_ref.begin() + r * slot + ssm)),
              2e-5)
        << kind << " run " << r << ": SSM state";
    EXPECT_EQ(std::vector<float>(got_st.begin() + r * slot + ssm, got_st.begin() + (r + 1) * slot),
              std::vector<float>(state_ref.begin() + r * slot + ssm, state_ref.begin() + (r + 1) * slot))
        << kind << " run " << r << ": conv window";
  }
}

const std::vector<RunSpec> kRuns = {{0, 63}, {10, 64}, {0, 65}, {7, 130}, {0, 1}, {33, 1}, {0, 2}, {3, 3}, {100, 200}};

}  // namespace

TEST(CudaMamba2, ScanAndStepMatchCpuCoreTinyDims) {
  ZEBRA_REQUIRE_GPU();
  check_scan(make_dims(32, 32, 16, 8), kRuns, 1);
}

TEST(CudaMamba2, ScanAndStepMatchCpuCoreZebra1BDims) {
  ZEBRA_REQUIRE_GPU();
  check_scan(make_dims(64, 2048, 512, 64), kRuns, 2);
}

TEST(CudaMamba2, ScanAndStepMatchCpuCoreStateDim128) {
  ZEBRA_REQUIRE_GPU();
  check_scan(make_dims(64, 512, 256, 128), kRuns, 3);
}

TEST(CudaMamba2, GatedRmsnormMatchesCpuFormula) {
  ZEBRA_REQUIRE_GPU();
  for (int64_t P : {8, 64, 128}) {
    const int64_t heads = 6, n = heads * P, rows = 5, ldz = n + 9;
    const std::vector<float> y = randn(rows * n, P), z = randn(rows * ldz, P + 1), w = randn(n, P + 2);
    std::vector<float> ref(rows * n);
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        double ss = 0;
        std::vector<float> g(P);
        for (int64_t p = 0; p < P; ++p) {
          const float zv = z[t * ldz + h * P + p];
          g[p] = y[t * n + h * P + p] * (zv / (1.0f + std::exp(-zv)));
          ss += double(g[p]) * g[p];
        }
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / P) + 1e-5f);
        for (int64_t p = 0; p < P; ++p) ref[t * n + h * P + p] = g[p] * inv * w[h * P + p];
      }
    DeviceBuffer<float> dy = cuda::to_device(y), dz = cuda::to_device(z), dw = cuda::to_device(w), dout(rows * n);
    DeviceBuffer<cuda::bf16> dout16(rows * n);
    poison(dout);
    poison(dout16);
    cuda::gated_rmsnorm(dy.get(), n, dz.get(), ldz, dw.get(), dout.get(), n, rows, heads, P, 1e-5f, 0);
    cuda::gated_rmsnorm(dy.get(), n, dz.get(), ldz, dw.get(), dout16.get(), n, rows, heads, P, 1e-5f, 0);
    device_sync();
    EXPECT_LT(rel_err(dout.download(), ref), 1e-6) << "P " << P;
    EXPECT_LT(rel_err(download_f32(dout16), ref), 1e-2) << "P " << P << " (bf16)";
  }
}
