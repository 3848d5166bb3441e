// The elementwise and row ops of kernels/cuda against the CPU ops (kernels/cpu/ops.h, model/sampler.cpp) or
// double references, on fresh random inputs, with every output poisoned with NaN before the run; fp32 and bf16
// storage (typed tests), strided and offset views.
#include <algorithm>
#include <cstring>

#include "gpu_support.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/logits.cuh"
#include "kernels/cuda/paged_cache.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "model/config.h"
#include "model/rope.h"
#include "model/sampler.h"

using namespace zebra;
using namespace zebra::test;
using cuda::bf16;
using cuda::DeviceBuffer;

template <class T>
class CudaOps : public ::testing::Test {};
using StorageTypes = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(CudaOps, StorageTypes);

namespace {

template <class T, class Out>
void check_gemm(cuda::Blas& blas, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                int64_t a_off, int64_t c_off, float beta, int64_t batch, uint64_t seed) {
  const int64_t sa = m * lda + 8, sb = (tb ? n * ldb : k * ldb) + 8, sc = m * ldc + 8;  // batch strides
  const std::vector<float> A = rounded<T>(randn(a_off + sa * batch, seed, 0.5f));
  const std::vector<float> B = rounded<T>(randn(sb * batch, seed + 1, 0.5f));
  std::vector<float> C0 = rounded<Out>(randn(c_off + sc * batch, seed + 2));
  DeviceBuffer<T> dA = upload_as<T>(A), dB = upload_as<T>(B);
  DeviceBuffer<Out> dC = upload_as<Out>(C0);
  if (beta == 0.0f) poison(dC);
  blas.gemm(tb, cuda::dtype_of<T>(), cuda::dtype_of<Out>(), m, n, k, dA.get() + a_off, lda, dB.get(), ldb,
            dC.get() + c_off, ldc, beta, 1.0f, batch, sa, sb, sc);
  device_sync();
  const std::vector<float> C = download_f32(dC);
  std::vector<float> got;
  std::vector<double> want;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = beta != 0.0f ? beta * C0[c_off + b * sc + i * ldc + j] : 0.0;
        for (int64_t kk = 0; kk < k; ++kk)
          acc += double(A[a_off + b * sa + i * lda + kk]) * (tb ? B[b * sb + j * ldb + kk] : B[b * sb + kk * ldb + j]);
        want.push_back(acc);
        got.push_back(C[c_off + b * sc + i * ldc + j]);
      }
  const double e = rel_err(got, want);
  EXPECT_LT(e, (std::is_same_v<Out, float> ? 1e-5 : 1e-2))
      << "gemm m " << m << " n " << n << " k " << k << (tb ? " NT" : " NN") << " beta " << beta << " batch " << batch;
}

}  // namespace

TYPED_TEST(CudaOps, GemmMatchesDoubleReferenceOnStridedViews) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  cuda::Blas blas(0);
  uint64_t seed = 10;
  // decode-shaped, odd strides and offsets (alignment below 16 bytes), NN, beta = 1, large, batched
  check_gemm<T, float>(blas, true, 1, 64, 96, 96, 96, 64, 0, 0, 0.0f, 1, seed++);
  check_gemm<T, float>(blas, true, 37, 130, 72, 80, 72, 140, 8, 8, 1.0f, 1, seed++);
  check_gemm<T, float>(blas, false, 16, 48, 40, 40, 48, 48, 0, 0, 0.0f, 1, seed++);
  check_gemm<T, float>(blas, true, 200, 300, 256, 256, 256, 300, 0, 0, 1.0f, 1, seed++);
  if constexpr (std::is_same_v<T, float>) {
    // 4-byte alignment only (the engine never needs this; cuBLASLt's fallback kernels must still be right).
    check_gemm<T, float>(blas, true, 5, 7, 12, 13, 12, 9, 1, 2, 0.0f, 1, seed++);
    check_gemm<T, T>(blas, false, 8, 40, 24, 30, 40, 41, 2, 1, 0.0f, 1, seed++);
  } else {
    // bf16 views at 16-byte alignment, as the engine's column slices are.
    check_gemm<T, float>(blas, true, 5, 7, 16, 24, 16, 16, 8, 8, 0.0f, 1, seed++);
    check_gemm<T, T>(blas, false, 8, 40, 24, 32, 40, 48, 8, 8, 0.0f, 1, seed++);
  }
  check_gemm<T, float>(blas, true, 9, 24, 32, 32, 32, 24, 0, 0, 0.0f, 3, seed++);
  check_gemm<T, T>(blas, true, 33, 96, 64, 64, 64, 96, 0, 0, 0.0f, 1, seed++);
}

TYPED_TEST(CudaOps, RmsnormAndResidualRmsnormMatchCpu) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  for (int64_t n : {8, 64, 100, 2048, 3000}) {
    const int64_t rows = 13, ld = n + 3;
    std::vector<float> x = randn(rows * ld, n, 2.0f), r = randn(rows * ld, n + 1), w = randn(n, n + 2);
    // CPU reference on the dense rows.
    std::vector<float> xd(rows * n), rd(rows * n), ref(rows * n), xsum(rows * n), ref2(rows * n);
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t i = 0; i < n; ++i) xd[t * n + i] = x[t * ld + i], rd[t * n + i] = r[t * ld + i];
    cpu::rmsnorm(xd.data(), w.data(), ref.data(), rows, n, 1e-5f);
    for (int64_t i = 0; i < rows * n; ++i) xsum[i] = xd[i] + rd[i];
    cpu::rmsnorm(xsum.data(), w.data(), ref2.data(), rows, n, 1e-5f);

    DeviceBuffer<float> dx = cuda::to_device(x), dr = cuda::to_device(r), dw = cuda::to_device(w);
    DeviceBuffer<T> dy(rows * (n + 1));
    poison(dy);
    cuda::rmsnorm(dx.get(), ld, dw.get(), dy.get(), n + 1, rows, n, 1e-5f, 0);
    device_sync();
    std::vector<float> y = download_f32(dy), got;
    for (int64_t t = 0; t < rows; ++t) got.insert(got.end(), y.begin() + t * (n + 1), y.begin() + t * (n + 1) + n);
    EXPECT_LT(rel_err(got, ref), tol<T>()) << "rmsnorm n " << n;

    poison(dy);
    cuda::residual_rmsnorm(dx.get(), ld, dr.get(), ld, dw.get(), dy.get(), n + 1, rows, n, 1e-5f, 0);
    device_sync();
    y = download_f32(dy);
    got.clear();
    for (int64_t t = 0; t < rows; ++t) got.insert(got.end(), y.begin() + t * (n + 1), y.begin() + t * (n + 1) + n);
    EXPECT_LT(rel_err(got, ref2), tol<T>()) << "residual_rmsnorm n " << n;
    const std::vector<float> xs = dx.download();
    std::vector<float> xs_d(rows * n);
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t i = 0; i < n; ++i) xs_d[t * n + i] = xs[t * ld + i];
    EXPECT_LT(rel_err(xs_d, xsum), 1e-7) << "residual_rmsnorm's sum";
  }
  // In place, fp32.
  std::vector<float> x = randn(5 * 64, 3), w = randn(64, 4), ref(5 * 64);
  cpu::rmsnorm(x.data(), w.data(), ref.data(), 5, 64, 1e-6f);
  DeviceBuffer<float> dx = cuda::to_device(x), dw = cuda::to_device(w);
  cuda::rmsnorm(dx.get(), 64, dw.get(), dx.get(), 64, 5, 64, 1e-6f, 0);
  device_sync();
  EXPECT_LT(rel_err(dx.download(), ref), 1e-6);
}

TYPED_TEST(CudaOps, SwigluMatchesCpu) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  const int64_t rows = 7, n = 1000;
  const std::vector<float> gu = rounded<T>(randn(rows * 2 * n, 5, 3.0f));
  std::vector<float> g(rows * n), u(rows * n), ref(rows * n);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t i = 0; i < n; ++i) g[t * n + i] = gu[t * 2 * n + i], u[t * n + i] = gu[t * 2 * n + n + i];
  cpu::silu_mul(g.data(), u.data(), ref.data(), rows * n);
  DeviceBuffer<T> dgu = upload_as<T>(gu), dout(rows * n);
  poison(dout);
  cuda::swiglu(dgu.get(), dgu.get() + n, 2 * n, dout.get(), n, rows, n, 0);
  device_sync();
  EXPECT_LT(rel_err(download_f32(dout), ref), tol<T>(1e-6));
}

TYPED_TEST(CudaOps, RopeRotateHalfAndInterleavedMatchCpu) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  LlamaConfig cfg;
  cfg.rope_theta = 500000.0;
  cfg.rope_scaling.type = RopeScaling::Type::Llama3;
  cfg.rope_scaling.factor = 32.0;
  cfg.rope_scaling.original_max_position_embeddings = 8192;
  cfg.max_position_embeddings = 131072;
  for (int64_t dim : {8, 32, 64, 128}) {
    const int64_t rows = 9, heads = 5, hs = dim + 2, ld = heads * hs + 1;
    const RopeTable table = make_rope_table(cfg, dim, 1);
    std::vector<int32_t> pos(rows);
    for (int64_t t = 0; t < rows; ++t) pos[t] = static_cast<int32_t>((t * 15731 + 7) % 131072);
    const std::vector<float> x = randn(rows * ld, dim);
    const float scale = 1.25f;
    std::vector<float> ref_rh(x), ref_il(x);
    std::vector<float> cs(dim / 2), sn(dim / 2);
    for (int64_t t = 0; t < rows; ++t) {
      table.angles(pos[t], cs.data(), sn.data());
      for (float& c : cs) c *= scale;
      for (float& s : sn) s *= scale;
      for (int64_t h = 0; h < heads; ++h) {
        cpu::rope_rotate_half(&ref_rh[t * ld + h * hs], cs.data(), sn.data(), dim);
        // MLA's interleaved pairs, split-half output (model/mla.cpp's rope_interleaved).
        const float* in = &x[t * ld + h * hs];
        float* o = &ref_il[t * ld + h * hs];
        for (int64_t j = 0; j < dim / 2; ++j) {
          const float e = in[2 * j], od = in[2 * j + 1];
          o[j] = e * cs[j] - od * sn[j];
          o[dim / 2 + j] = od * cs[j] + e * sn[j];
        }
      }
    }
    DeviceBuffer<float> dx = cuda::to_device(x), dfreq = cuda::to_device(table.inv_freq);
    DeviceBuffer<int32_t> dpos = cuda::to_device(pos);
    cuda::RopeArgs a;
    a.rows = rows, a.n_heads = heads, a.dim = dim, a.head_stride = hs, a.scale = scale;
    a.pos = dpos.get(), a.inv_freq = dfreq.get();
    auto compare = [&](const std::vector<float>& got, const std::vector<float>& ref, double t, const char* what) {
      std::vector<float> g, r;
      for (int64_t row = 0; row < rows; ++row)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < dim; ++i) g.push_back(got[row * ld + h * hs + i]), r.push_back(ref[row * ld + h * hs + i]);
      EXPECT_LT(rel_err(g, r), t) << what << " dim " << dim;
    };
    DeviceBuffer<T> dy(rows * ld);
    poison(dy);
    cuda::rope_rotate_half(dx.get(), ld, dy.get(), ld, a, 0);
    device_sync();
    compare(download_f32(dy), ref_rh, tol<T>(1e-5), "rope_rotate_half");
    poison(dy);
    cuda::rope_interleaved(dx.get(), ld, dy.get(), ld, a, 0);
    device_sync();
    compare(download_f32(dy), ref_il, tol<T>(1e-5), "rope_interleaved");
    // In place (fp32), where pair outputs overwrite other threads' inputs.
    cuda::rope_interleaved(dx.get(), ld, dx.get(), ld, a, 0);
    device_sync();
    compare(dx.download(), ref_il, 1e-5, "rope_interleaved in place");
  }
}

TYPED_TEST(CudaOps, EmbeddingGatherRowsAndCast) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  const int64_t V = 300, H = 77, n = 11;
  const std::vector<float> emb = rounded<T>(randn(V * H, 1));
  std::vector<int32_t> tok(n);
  for (int64_t i = 0; i < n; ++i) tok[i] = static_cast<int32_t>((i * 97 + 5) % V);
  DeviceBuffer<T> de = upload_as<T>(emb);
  DeviceBuffer<int32_t> dt = cuda::to_device(tok);
  DeviceBuffer<float> dx(n * (H + 1));
  poison(dx);
  cuda::embedding_gather(de.get(), V, H, dt.get(), n, dx.get(), H + 1, 0);
  device_sync();
  const std::vector<float> x = dx.download();
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < H; ++i) ASSERT_EQ(x[t * (H + 1) + i], emb[tok[t] * H + i]);

  std::vector<int32_t> idx = {4, 0, 10, 10, 3};
  DeviceBuffer<int32_t> didx = cuda::to_device(idx);
  DeviceBuffer<float> dsel(idx.size() * H);
  poison(dsel);
  cuda::gather_rows(dx.get(), H + 1, didx.get(), (int64_t)idx.size(), H, dsel.get(), H, 0);
  DeviceBuffer<T> dcast(idx.size() * H);
  poison(dcast);
  cuda::cast_rows(dsel.get(), H, dcast.get(), H, (int64_t)idx.size(), H, 0);
  device_sync();
  const std::vector<float> sel = dsel.download(), cast = download_f32(dcast);
  for (size_t j = 0; j < idx.size(); ++j)
    for (int64_t i = 0; i < H; ++i) {
      // gather_rows picks rows of x, the embeddings of tok[idx[j]]
      ASSERT_EQ(sel[j * H + i], x[idx[j] * (H + 1) + i]);
      ASSERT_EQ(cast[j * H + i], x[idx[j] * (H + 1) + i]);  // already representable in T
    }
}

TYPED_TEST(CudaOps, PagedCacheWriteAndGatherSkipPaddingRuns) {
  using T = TypeParam;
  ZEBRA_REQUIRE_GPU();
  // Two layers interleaved per block (this layer second), blocks in a shuffled order, block_tokens 5.
  const int64_t bt = 5, width = 12, other = 7, n_blocks = 20, max_blocks = 8;
  const int64_t block_stride = bt * (other + width);
  DeviceBuffer<T> pool(n_blocks * block_stride);
  pool.upload(std::vector<T>(pool.size(), cuda::from_f32<T>(3.0f)));
  cuda::DevPaged<T> layer;
  layer.base = pool.get() + bt * other;
  layer.block_stride = block_stride, layer.row_stride = width, layer.row_elems = width;
  layer.block_tokens = static_cast<int32_t>(bt), layer.table_stride = static_cast<int32_t>(max_blocks);
  // runs: seq 4 positions 3..14 (12 rows), a padding run, seq 1 position 7 (1 row)
  std::vector<cuda::DevRun> runs = {{4, 0, 12, 3}, {-1, 12, 1, 0}, {1, 13, 1, 7}};
  std::vector<int32_t> tables(3 * max_blocks, -1);
  const int32_t t0[] = {17, 2, 9, 11}, t2[] = {5, 13};
  std::copy(std::begin(t0), std::end(t0), tables.begin());
  std::copy(std::begin(t2), std::end(t2), tables.begin() + 2 * max_blocks);
  std::vector<int32_t> row_run(14), pos(14);
  for (int i = 0; i < 12; ++i) row_run[i] = 0, pos[i] = 3 + i;
  row_run[12] = 1, pos[12] = 0;
  row_run[13] = 2, pos[13] = 7;
  const std::vector<float> src = rounded<T>(randn(14 * (width + 2), 9));
  DeviceBuffer<cuda::DevRun> druns = cuda::to_device(runs);
  DeviceBuffer<int32_t> dtab = cuda::to_device(tables), drr = cuda::to_device(row_run), dpos = cuda::to_device(pos);
  DeviceBuffer<float> dsrc = cuda::to_device(src);
  layer.tables = dtab.get();
  cuda::paged_cache_write(dsrc.get(), width + 2, width, 14, drr.get(), dpos.get(), druns.get(), layer, 0);
  device_sync();
  const std::vector<float> p = download_f32(pool);
  int64_t written = 0;
  for (int t = 0; t < 14; ++t) {
    if (row_run[t] == 1) continue;
    const int32_t b = tables[row_run[t] * max_blocks + pos[t] / bt];
    const int64_t at = b * block_stride + bt * other + (pos[t] % bt) * width;
    for (int64_t i = 0; i < width; ++i) ASSERT_EQ(p[at + i], src[t * (width + 2) + i]) << "row " << t;
    written += width;
  }
  int64_t untouched = 0;
  for (float v : p) untouched += v == 3.0f;
  EXPECT_EQ(untouched, pool.size() - written) << "a write landed outside its row (or the padding run wrote)";

  DeviceBuffer<T> dst(15 * width);
  poison(dst);
  cuda::paged_gather(layer, 0, 15, width, dst.get(), width, 0);
  device_sync();
  const std::vector<float> g = download_f32(dst);
  for (int pp = 3; pp < 15; ++pp)
    for (int64_t i = 0; i < width; ++i) ASSERT_EQ(g[pp * width + i], src[(pp - 3) * (width + 2) + i]);
}

TEST(CudaSampling, MatchesTheCpuSamplerForTheSameDraws) {
  ZEBRA_REQUIRE_GPU();
  for (int64_t V : {100, 5000, 40000}) {
    const std::vector<SamplerParams> settings = {
        {0.0f, 40, 0.95f, 0.05f, 0}, {0.8f, 40, 0.95f, 0.05f, 0}, {1.0f, 1, 1.0f, 0.0f, 0},
        {1.2f, 1024, 0.5f, 0.0f, 0}, {0.7f, 200, 1.0f, 0.2f, 0},   {1.0f, 0, 0.9f, 0.0f, 0},
        {0.5f, 7, 1.0f, 0.0f, 0}};
    std::vector<float> logits;
    std::vector<cuda::SampleParams> params;
    std::vector<SamplerParams> used;
    std::vector<double> draws;
    uint64_t seed = 1;
    for (const SamplerParams& p : settings) {
      const int64_t k = p.top_k > 0 ? std::min<int64_t>(p.top_k, V) : V;
      if (p.temperature > 0 && k > cuda::kMaxSampleTopK) continue;  // the engine samples those on the host
      for (double u : {0.0, 0.3, 0.77, 0.999999}) {
        const std::vector<float> row = randn(V, seed++, 2.0f);
        logits.insert(logits.end(), row.begin(), row.end());
        cuda::SampleParams sp;
        if (p.temperature > 0)
          sp = cuda::SampleParams{p.temperature, static_cast<int32_t>(k), p.top_p, p.min_p, u};
        params.push_back(sp);
        used.push_back(p);
        draws.push_back(u);
      }
    }
    const int64_t m = static_cast<int64_t>(params.size());
    DeviceBuffer<float> dl = cuda::to_device(logits);
    DeviceBuffer<cuda::SampleParams> dp = cuda::to_device(params);
    DeviceBuffer<int32_t> ids(m);
    poison(ids);
    cuda::sample_rows(dl.get(), V, V, dp.get(), m, ids.get(), 0);
    device_sync();
    const std::vector<int32_t> got = ids.download();
    for (int64_t i = 0; i < m; ++i) {
      Sampler s(used[i]);
      EXPECT_EQ(got[i], s.sample_with(logits.data() + i * V, V, draws[i]))
          << "V " << V << " row " << i << " temp " << used[i].temperature << " k " << used[i].top_k << " u " << draws[i];
    }
  }
}

TEST(CudaSampling, TiesResolveToLowerIdsLikeArgmax) {
  ZEBRA_REQUIRE_GPU();
  const int64_t V = 3000;
  std::vector<float> logits(V);
  for (int64_t i = 0; i < V; ++i) logits[i] = static_cast<float>((i * 7) % 11);  // many equal maxima (10)
  std::vector<cuda::SampleParams> params(3);
  params[1] = cuda::SampleParams{1.0f, 5, 1.0f, 0.0f, 0.0};     // five of the tied 10s: the lowest ids
  params[2] = cuda::SampleParams{1.0f, 5, 1.0f, 0.0f, 0.9999};  // the last of those five
  std::vector<float> all;
  for (int r = 0; r < 3; ++r) all.insert(all.end(), logits.begin(), logits.end());
  DeviceBuffer<float> dl = cuda::to_device(all);
  DeviceBuffer<cuda::SampleParams> dp = cuda::to_device(params);
  DeviceBuffer<int32_t> ids(3);
  poison(ids);
  cuda::sample_rows(dl.get(), V, V, dp.get(), 3, ids.get(), 0);
  device_sync();
  const std::vector<int32_t> got = ids.download();
  std::vector<int32_t> tens;
  for (int64_t i = 0; i < V && tens.size() < 5; ++i)
    if (logits[i] == 10.0f) tens.push_back(static_cast<int32_t>(i));
  EXPECT_EQ(got[0], argmax(logits.data(), V));
  EXPECT_EQ(got[1], tens[0]);
  EXPECT_EQ(got[2], tens[4]);
}
