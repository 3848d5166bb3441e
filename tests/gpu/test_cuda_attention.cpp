// gqa_attention on the GPU (flash prefill, paged split-K decode) against a double-precision reference of causal
// GQA attention, over a paged cache laid out as the engine lays it out (blocks shared by two layers, shuffled
// block ids, per-run tables): ragged runs (prefill chunks at nonzero positions, decode tokens at positions that
// cross block boundaries), GQA ratios 1, 3, 4 and 8, head widths 8..128, a padding run.
#include <algorithm>
#include <numeric>

#include "gpu_support.h"
#include "kernels/cuda/attention.cuh"

using namespace zebra;
using namespace zebra::test;
using cuda::bf16;
using cuda::DeviceBuffer;
using cuda::DevRun;

template <class T>
class CudaAttention : public ::testing::Test {};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaAttention, StorageTypes);

namespace {

struct RunSpec {
  int32_t pos0, n;
};

int sm_count() {
  cudaDeviceProp p{};
  ZEBRA_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return p.multiProcessorCount;
}

// force_splits > 0 overrides the decode split count.
template <class T>
void check_attention(int64_t nh, int64_t nkv, int64_t hd, int64_t bt, const std::vector<RunSpec>& specs, uint64_t seed,
                     int64_t force_splits = 0) {
  SCOPED_TRACE(::testing::Message() << "heads " << nh << "/" << nkv << " hd " << hd << " block " << bt << " seed " << seed);
  const int64_t kvd = nkv * hd, row_w = 2 * kvd, other_w = 3, group = nh / nkv, qd = nh * hd;
  const int64_t block_stride = bt * (other_w + row_w);  // another layer's rows first, then this one's
  int64_t max_blocks = 1, total_blocks = 0;
  for (const RunSpec& r : specs) {
    const int64_t b = (r.pos0 + r.n + bt - 1) / bt;
    max_blocks = std::max(max_blocks, b);
    total_blocks += b;
  }
  const int64_t n_blocks = total_blocks + 3;
  std::vector<int32_t> perm(n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  const int64_t R = static_cast<int64_t>(specs.size());
  std::vector<int32_t> tables((R + 1) * max_blocks, -1);
  std::vector<float> pool = rounded<T>(randn(n_blocks * block_stride, seed + 1));
  std::vector<DevRun> runs;
  int64_t rows = 0, used = 0;
  for (int64_t r = 0; r < R; ++r) {
    runs.push_back(DevRun{static_cast<int32_t>(r), static_cast<int32_t>(rows), specs[r].n, specs[r].pos0});
    rows += specs[r].n;
    for (int64_t b = 0; b < (specs[r].pos0 + specs[r].n + bt - 1) / bt; ++b) tables[r * max_blocks + b] = perm[used++];
  }
  runs.push_back(DevRun{-1, static_cast<int32_t>(rows), 1, 0});  // padding: zero output, no cache reads
  rows += 1;
  auto key = [&](int64_t r, int64_t p, int64_t g) {
    const int64_t b = tables[r * max_blocks + p / bt];
    return &pool[b * block_stride + bt * other_w + (p % bt) * row_w + g * hd];
  };
  const std::vector<float> q = rounded<T>(randn(rows * qd, seed + 2));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<double> ref(rows * qd, 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int32_t i = 0; i < specs[r].n; ++i) {
      const int64_t row = runs[r].row0 + i, qpos = specs[r].pos0 + i;
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        std::vector<double> s(qpos + 1);
        double mx = -1e300, sum = 0;
        for (int64_t p = 0; p <= qpos; ++p) {
          const float* k = key(r, p, g);
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += double(q[row * qd + h * hd + c]) * k[c];
          s[p] = d * scale;
          mx = std::max(mx, s[p]);
        }
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int64_t p = 0; p <= qpos; ++p) {
          const float* v = key(r, p, g) + kvd;
          for (int64_t c = 0; c < hd; ++c) ref[row * qd + h * hd + c] += s[p] / sum * v[c];
        }
      }
    }

  DeviceBuffer<T> dpool = upload_as<T>(pool), dq = upload_as<T>(q), dout(rows * qd);
  DeviceBuffer<int32_t> dtab = cuda::to_device(tables);
  DeviceBuffer<DevRun> druns = cuda::to_device(runs);
  std::vector<int32_t> pre, dec;
  int64_t max_n = 0, max_len = 1;
  for (int64_t r = 0; r < R; ++r) {
    if (specs[r].n > 1)
      pre.push_back(static_cast<int32_t>(r)), max_n = std::max<int64_t>(max_n, specs[r].n);
    else
      dec.push_back(static_cast<int32_t>(r)), max_len = std::max<int64_t>(max_len, specs[r].pos0 + 1);
  }
  dec.push_back(static_cast<int32_t>(R));  // the padding run
  DeviceBuffer<int32_t> dpre = cuda::to_device(pre), ddec = cuda::to_device(dec);
  cuda::KvSource<T> src;
  src.base = dpool.get() + bt * other_w;
  src.k1_off = 0, src.k1_head = hd, src.d1 = static_cast<int32_t>(hd);
  src.v_off = kvd, src.v_head = hd;
  src.tables = dtab.get(), src.table_stride = static_cast<int32_t>(max_blocks), src.block_tokens = static_cast<int32_t>(bt);
  src.block_stride = block_stride, src.row_stride = row_w;
  const cuda::AttnDims d{nh, nkv, hd, hd, scale};
  poison(dout);
  if (!pre.empty())
    cuda::gqa_attention_prefill(dq.get(), qd, hd, src, d, druns.get(), dpre.get(), (int64_t)pre.size(), max_n,
                                dout.get(), qd, 0);
  const int64_t n_dec = static_cast<int64_t>(dec.size());
  const int64_t splits = force_splits > 0 ? force_splits : cuda::gqa_decode_splits(n_dec, nkv, max_len, sm_count());
  DeviceBuffer<float> ws(cuda::gqa_decode_workspace_floats(n_dec, d, splits));
  poison(ws);
  cuda::gqa_attention_decode(dq.get(), qd, hd, src, d, druns.get(), ddec.get(), n_dec, splits, ws.get(), dout.get(),
                             qd, 0);
  device_sync();
  const std::vector<float> out = download_f32(dout);
  for (int64_t c = 0; c < qd; ++c) ASSERT_EQ(out[(rows - 1) * qd + c], 0.0f) << "padding row not zero";
  EXPECT_LT(rel_err(out, ref), tol<T>(2e-6)) << "splits " << splits;
  // Per run, so a failure names the path.
  for (int64_t r = 0; r < R; ++r) {
    const int64_t a = runs[r].row0 * qd, b = a + specs[r].n * qd;
    EXPECT_LT(rel_err(std::vector<float>(out.begin() + a, out.begin() + b), std::vector<double>(ref.begin() + a, ref.begin() + b)),
              tol<T>(2e-6))
        << (specs[r].n > 1 ? "prefill" : "decode") << " run " << r << " pos0 " << specs[r].pos0 << " n " << specs[r].n;
  }
}

const std::vector<RunSpec> kRagged = {{0, 37}, {50, 70}, {0, 1}, {130, 1}, {15, 1}, {16, 1}, {3, 64}, {200, 2}};

}  // namespace

TYPED_TEST(CudaAttention, RaggedRunsGqaRatio1) {
  ZEBRA_REQUIRE_GPU();
  check_attention<TypeParam>(4, 4, 64, 16, kRagged, 1);
}

TYPED_TEST(CudaAttention, RaggedRunsGqaRatio4Head128) {
  ZEBRA_REQUIRE_GPU();
  check_attention<TypeParam>(16, 4, 128, 16, kRagged, 2);
}

TYPED_TEST(CudaAttention, RaggedRunsGqaRatio8OddBlocks) {
  ZEBRA_REQUIRE_GPU();
  check_attention<TypeParam>(32, 4, 64, 7, kRagged, 3);
}

TYPED_TEST(CudaAttention, SmolLmShapeRatio3) {
  ZEBRA_REQUIRE_GPU();
  check_attention<TypeParam>(9, 3, 64, 16, kRagged, 4);
}

TYPED_TEST(CudaAttention, TinyHeadsSmallBlocks) {
  ZEBRA_REQUIRE_GPU();
  check_attention<TypeParam>(4, 2, 8, 5, kRagged, 5);
  check_attention<TypeParam>(4, 2, 16, 3, {{0, 9}, {4, 1}, {9, 5}}, 6);
}

TYPED_TEST(CudaAttention, LongDecodeManySplitsAndForcedSplits) {
  ZEBRA_REQUIRE_GPU();
  const std::vector<RunSpec> runs = {{3000, 1}, {1, 1}, {777, 1}};
  check_attention<TypeParam>(8, 1, 64, 16, runs, 7);
  check_attention<TypeParam>(8, 1, 64, 16, runs, 8, 1);
  check_attention<TypeParam>(8, 1, 64, 16, runs, 9, 7);
  check_attention<TypeParam>(8, 1, 64, 16, runs, 10, 128);  // more splits than positions: empty splits merge away
}
