// MLA attention on the GPU (decompressed prefill per run, absorbed decode) against a double reference written
// from the spec's formula (§1.3): k_nope^g = W_UK^g c_kv, v^g = W_UV^g c_kv, score = scale (q_nope·k_nope +
// q_pe·kpe), over the paged latent cache [c_kv | kpe]. The released dims (rope 32/64, latent 128/160, 8 kv heads
// or full), DeepSeek's 512 + 64, tiny fixture dims; ragged runs crossing blocks, a padding run.
#include <algorithm>
#include <numeric>

#include "gpu_support.h"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/mla_attention.cuh"

using namespace zebra;
using namespace zebra::test;
using cuda::bf16;
using cuda::DeviceBuffer;
using cuda::DevRun;

template <class T>
class CudaMla : public ::testing::Test {};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaMla, StorageTypes);

namespace {

struct RunSpec {
  int32_t pos0, n;
};

int sm_count() {
  cudaDeviceProp p{};
  ZEBRA_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return p.multiProcessorCount;
}

template <class T>
void check_mla(const cuda::MlaAttnDims& d, int64_t bt, const std::vector<RunSpec>& specs, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "heads " << d.n_heads << "/" << d.kv_heads << " rank " << d.kv_rank << " rope "
                                    << d.rope_dim << " nope " << d.nope_dim << " v " << d.v_dim << " seed " << seed);
  const int64_t nh = d.n_heads, group = d.n_heads / d.kv_heads, R = d.kv_rank, dr = d.rope_dim, dn = d.nope_dim;
  const int64_t dv = d.v_dim, dq = d.q_dim(), W = d.width(), other_w = 5;
  const int64_t block_stride = bt * (W + other_w);  // this layer first, then another one's rows
  int64_t max_blocks = 1, total = 0;
  for (const RunSpec& r : specs) {
    const int64_t b = (r.pos0 + r.n + bt - 1) / bt;
    max_blocks = std::max(max_blocks, b);
    total += b;
  }
  std::vector<int32_t> perm(total + 2);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  const int64_t NR = static_cast<int64_t>(specs.size());
  std::vector<int32_t> tables((NR + 1) * max_blocks, -1);
  std::vector<float> pool = rounded<T>(randn((total + 2) * block_stride, seed + 1));
  std::vector<float> kv_b = rounded<T>(randn(d.kv_cols() * R, seed + 2, 1.0f / std::sqrt(float(R))));
  std::vector<DevRun> runs;
  int64_t rows = 0, used = 0;
  for (int64_t r = 0; r < NR; ++r) {
    runs.push_back(DevRun{static_cast<int32_t>(r), static_cast<int32_t>(rows), specs[r].n, specs[r].pos0});
    rows += specs[r].n;
    for (int64_t b = 0; b < (specs[r].pos0 + specs[r].n + bt - 1) / bt; ++b) tables[r * max_blocks + b] = perm[used++];
  }
  runs.push_back(DevRun{-1, static_cast<int32_t>(rows), 1, 0});
  rows += 1;
  auto latent = [&](int64_t r, int64_t p) {
    return &pool[tables[r * max_blocks + p / bt] * block_stride + (p % bt) * W];
  };
  const std::vector<float> q = rounded<T>(randn(rows * nh * dq, seed + 3));
  std::vector<double> ref(rows * nh * dv, 0.0);
  for (int64_t r = 0; r < NR; ++r) {
    const int64_t L = specs[r].pos0 + specs[r].n;
    // k_nope, v of every kv head at every position.
    std::vector<double> kn(L * d.kv_heads * dn), vv(L * d.kv_heads * dv);
    for (int64_t p = 0; p < L; ++p)
      for (int64_t g = 0; g < d.kv_heads; ++g) {
        const float* c = latent(r, p);
        for (int64_t i = 0; i < dn + dv; ++i) {
          double acc = 0;
          for (int64_t k = 0; k < R; ++k) acc += double(kv_b[(g * (dn + dv) + i) * R + k]) * c[k];
          if (i < dn)
            kn[(p * d.kv_heads + g) * dn + i] = acc;
          else
            vv[(p * d.kv_heads + g) * dv + i - dn] = acc;
        }
      }
    for (int32_t t = 0; t < specs[r].n; ++t) {
      const int64_t row = runs[r].row0 + t, qpos = specs[r].pos0 + t;
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        const float* qh = &q[(row * nh + h) * dq];
        std::vector<double> s(qpos + 1);
        double mx = -1e300, sum = 0;
        for (int64_t p = 0; p <= qpos; ++p) {
          double acc = 0;
          for (int64_t i = 0; i < dn; ++i) acc += qh[i] * kn[(p * d.kv_heads + g) * dn + i];
          for (int64_t i = 0; i < dr; ++i) acc += double(qh[dn + i]) * latent(r, p)[R + i];
          s[p] = acc * d.softmax_scale;
          mx = std::max(mx, s[p]);
        }
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int64_t p = 0; p <= qpos; ++p)
          for (int64_t j = 0; j < dv; ++j) ref[(row * nh + h) * dv + j] += s[p] / sum * vv[(p * d.kv_heads + g) * dv + j];
      }
    }
  }

  DeviceBuffer<T> dpool = upload_as<T>(pool), dqb = upload_as<T>(q), dkvb = upload_as<T>(kv_b), dout(rows * nh * dv);
  DeviceBuffer<int32_t> dtab = cuda::to_device(tables);
  DeviceBuffer<DevRun> druns = cuda::to_device(runs);
  cuda::DevPaged<T> lat;
  lat.base = dpool.get(), lat.block_stride = block_stride, lat.row_stride = W, lat.row_elems = W;
  lat.block_tokens = static_cast<int32_t>(bt), lat.table_stride = static_cast<int32_t>(max_blocks), lat.tables = dtab.get();
  std::vector<int32_t> ids(NR + 1);
  std::iota(ids.begin(), ids.end(), 0);
  DeviceBuffer<int32_t> dids = cuda::to_device(ids);
  poison(dout);
  cuda::Blas blas(0);
  std::vector<int32_t> dec;
  int64_t max_len = 1;
  for (int64_t r = 0; r < NR; ++r) {
    if (specs[r].n > 1) {
      DeviceBuffer<T> scratch(cuda::mla_attention_scratch(d, specs[r].pos0 + specs[r].n));
      poison(scratch);
      cuda::mla_attention(blas, d, dqb.get(), nh * dq, dkvb.get(), lat, druns.get(), dids.get() + r,
                          static_cast<int32_t>(r), runs[r], scratch.get(), dout.get(), nh * dv, 0);
      device_sync();  // the scratch is freed at the end of this scope
    } else {
      dec.push_back(static_cast<int32_t>(r));
      max_len = std::max<int64_t>(max_len, specs[r].pos0 + 1);
    }
  }
  dec.push_back(static_cast<int32_t>(NR));  // padding
  DeviceBuffer<int32_t> ddec = cuda::to_device(dec);
  const int64_t n_dec = static_cast<int64_t>(dec.size());
  const cuda::MlaDecodePlan plan = cuda::mla_decode_plan(d, n_dec, max_len, sm_count());
  DeviceBuffer<float> ws(cuda::mla_decode_workspace_floats(d, n_dec, plan));
  poison(ws);
  cuda::mla_decode(d, plan, dqb.get(), nh * dq, dkvb.get(), lat, druns.get(), ddec.get(), n_dec, ws.get(), dout.get(),
                   nh * dv, 0);
  device_sync();
  const std::vector<float> out = download_f32(dout);
  for (int64_t c = 0; c < nh * dv; ++c) ASSERT_EQ(out[(rows - 1) * nh * dv + c], 0.0f) << "padding row not zero";
  for (int64_t r = 0; r < NR; ++r) {
    const int64_t a = runs[r].row0 * nh * dv, b = a + specs[r].n * nh * dv;
    EXPECT_LT(rel_err(std::vector<float>(out.begin() + a, out.begin() + b), std::vector<double>(ref.begin() + a, ref.begin() + b)),
              tol<T>(1e-5))
        << (specs[r].n > 1 ? "decompressed prefill" : "absorbed decode") << " run " << r << " pos0 " << specs[r].pos0
        << " n " << specs[r].n << " (splits " << plan.splits << ", heads/block " << plan.heads_per_block << ")";
  }
}

cuda::MlaAttnDims dims(int64_t nh, int64_t nkv, int64_t R, int64_t dr, int64_t dn, int64_t dv) {
  return cuda::MlaAttnDims{nh, nkv, R, dr, dn, dv, static_cast<float>(1.0 / std::sqrt(double(dn + dr)))};
}

const std::vector<RunSpec> kRagged = {{0, 40}, {30, 35}, {0, 1}, {99, 1}, {16, 1}, {250, 1}, {5, 2}};

}  // namespace

TYPED_TEST(CudaMla, Zebra1BDims) {  // rope 32, latent 128, 8 kv heads
  ZEBRA_REQUIRE_GPU();
  check_mla<TypeParam>(dims(32, 8, 128, 32, 32, 64), 16, kRagged, 1);
}

TYPED_TEST(CudaMla, Zebra8BDims) {  // rope 64, latent 160, 8 kv heads
  ZEBRA_REQUIRE_GPU();
  check_mla<TypeParam>(dims(32, 8, 160, 64, 64, 128), 16, kRagged, 2);
}

TYPED_TEST(CudaMla, Zebra3BDimsFullKvHeads) {  // rope 64, latent 128, kv_b with every query head
  ZEBRA_REQUIRE_GPU();
  check_mla<TypeParam>(dims(24, 24, 128, 64, 64, 128), 16, kRagged, 3);
}

TYPED_TEST(CudaMla, DeepSeekWidthAndManyHeads) {  // latent 512 + rope 64, 48 heads (two head blocks)
  ZEBRA_REQUIRE_GPU();
  check_mla<TypeParam>(dims(48, 1, 512, 64, 128, 128), 16, {{0, 20}, {0, 1}, {300, 1}, {7, 1}}, 4);
}

TYPED_TEST(CudaMla, TinyFixtureDimsOddBlocks) {
  ZEBRA_REQUIRE_GPU();
  check_mla<TypeParam>(dims(4, 2, 16, 8, 4, 8), 5, kRagged, 5);
  check_mla<TypeParam>(dims(4, 4, 16, 8, 4, 8), 3, {{0, 9}, {9, 1}, {2, 7}}, 6);
}
