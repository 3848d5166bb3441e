#include "kernels/cpu/quant.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/error.h"
#include "core/quantize.h"
#include "kernels/cpu/quant_kernels.h"

namespace zebra::cpu {

namespace quant {

namespace {

constexpr size_t ALIGN = 64;

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Byte sizes of the parts of a QuantActs buffer, each rounded up to ALIGN.
struct Parts {
  size_t d = 0, sum = 0, bsum = 0, q = 0, qi = 0;
  size_t total() const { return d + sum + bsum + q + qi; }
};

Parts parts(int block, int64_t rows, int64_t cols) {
  const size_t r = static_cast<size_t>(rows), nb = static_cast<size_t>(cols / block);
  const size_t stride = round_up(nb, LANES);
  Parts p;
  p.d = round_up(r * stride * sizeof(float), ALIGN);
  if (block == QK) p.sum = round_up(r * stride * sizeof(int32_t), ALIGN);
  else p.bsum = round_up(r * nb * 16 * sizeof(int16_t), ALIGN);
  p.q = round_up(r * static_cast<size_t>(cols), ALIGN);
  if (block == QK && rows >= 2) p.qi = round_up(r * stride * QK, ALIGN);
  return p;
}

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // F16C from cpuid: clang's __builtin_cpu_supports does not know it (the OS's AVX state is covered by
  // the avx2 check).
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

const Kernels* table(Path p) {
  switch (p) {
    case Path::Scalar: return &scalar_kernels();
    case Path::Avx2: return cpu_has_avx2() ? avx2_kernels() : nullptr;
    case Path::Avx512: return cpu_has_avx512() ? avx512_kernels() : nullptr;
    case Path::Auto: break;
  }
  return nullptr;
}

const Kernels& best() {
  static const Kernels* k = [] {
    for (Path p : {Path::Avx512, Path::Avx2})
      if (const Kernels* t = table(p)) return t;
    return &scalar_kernels();
  }();
  return *k;
}

std::atomic<const Kernels*> forced{nullptr};

}  // namespace

size_t acts_bytes(int block, int64_t rows, int64_t cols) { return parts(block, rows, cols).total() + ALIGN; }

QuantActs acts_layout(int block, int64_t rows, int64_t cols, uint8_t* mem) {
  const Parts p = parts(block, rows, cols);
  uint8_t* base = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(mem), ALIGN));
  QuantActs a;
  a.block = block;
  a.rows = rows;
  a.cols = cols;
  a.nb = cols / block;
  a.stride = static_cast<int64_t>(round_up(static_cast<size_t>(a.nb), LANES));
  a.d = reinterpret_cast<float*>(base);
  base += p.d;
  if (block == QK) a.sum = reinterpret_cast<int32_t*>(base);
  else a.bsum = reinterpret_cast<int16_t*>(base);
  base += p.sum + p.bsum;
  a.q = reinterpret_cast<int8_t*>(base);
  base += p.q;
  if (p.qi) a.qi = reinterpret_cast<int8_t*>(base);
  return a;
}

void interleave_acts(const QuantActs& a, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const int8_t* q = a.q + t * a.cols;
    int8_t* out = a.qi + t * a.stride * QK;
    for (int64_t g = 0; g < a.stride; g += LANES)
      for (int k = 0; k < QK / 4; ++k)
        for (int l = 0; l < LANES; ++l, out += 4) {
          if (g + l < a.nb) std::memcpy(out, q + (g + l) * QK + 4 * k, 4);
          else std::memset(out, 0, 4);
        }
  }
}

bool path_available(Path p) { return p == Path::Auto || table(p) != nullptr; }

void force_path(Path p) {
  if (p == Path::Auto) {
    forced.store(nullptr);
    return;
  }
  const Kernels* k = table(p);
  ZEBRA_CHECK(k != nullptr, "quant kernels: the requested SIMD path is not available on this CPU or build");
  forced.store(k);
}

const Kernels& active_kernels() {
  const Kernels* k = forced.load(std::memory_order_relaxed);
  return k ? *k : best();
}

}  // namespace quant

namespace {

using namespace quant;

int format_of(DType t) {
  switch (t) {
    case DType::Q8_0: return Q8_0;
    case DType::Q4_0: return Q4_0;
    case DType::Q4_1: return Q4_1;
    case DType::Q5_0: return Q5_0;
    case DType::Q5_1: return Q5_1;
    case DType::Q4_K: return Q4_K;
    case DType::Q5_K: return Q5_K;
    case DType::Q6_K: return Q6_K;
    default: return -1;
  }
}

int checked_format(DType t) {
  const int f = format_of(t);
  ZEBRA_CHECK(f >= 0, "quant_linear: weight type ", dtype_name(t),
              " is not a block format (supported: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
  static_assert(format_bytes(Q8_0) == 34 && format_bytes(Q4_K) == 144 && format_bytes(Q6_K) == 210);
  return f;
}

// Weight rows and activation rows per tile: 16 rows of weights stay in L1 while the activation rows of
// the tile pass four at a time.
constexpr int64_t TILE_ROWS = 16, TILE_T = 64;
// Below this many multiply-adds the threads cost more than they save.
constexpr double PARALLEL_MACS = 1 << 16;

}  // namespace

bool quant_supported(DType t) { return format_of(t) >= 0; }

QuantMatrix quantize_matrix(const float* w, int64_t rows, int64_t cols, DType type) {
  checked_format(type);
  ZEBRA_CHECK(rows >= 0, "quantize_matrix: negative row count ", rows);
  QuantMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  auto storage = std::make_shared<std::vector<uint8_t>>(m.nbytes());
  quantize_rows(type, w, storage->data(), rows, cols);
  m.blocks = storage->data();
  m.storage = std::move(storage);
  return m;
}

void dequantize_row(const QuantMatrix& W, int64_t r, float* out) {
  ZEBRA_CHECK(r >= 0 && r < W.rows, "dequantize_row: row ", r, " outside [0, ", W.rows, ")");
  const size_t rb = W.row_bytes();
  to_f32(W.type, W.blocks + static_cast<size_t>(r) * rb, out, W.cols);
}

size_t quant_scratch_bytes(DType type, int64_t T, int64_t cols) {
  return acts_bytes(format_block(checked_format(type)), T, cols);
}

void quant_linear(const float* x, const QuantMatrix& W, float* y, int64_t T, uint8_t* scratch) {
  const int f = checked_format(W.type);
  const int block = format_block(f);
  ZEBRA_CHECK(T >= 0 && W.rows >= 0, "quant_linear: negative size (T ", T, ", rows ", W.rows, ")");
  ZEBRA_CHECK(W.cols > 0 && W.cols % block == 0, "quant_linear: ", dtype_name(W.type), " weight has ", W.cols,
              " columns, not a positive multiple of its block size ", block);
  if (T == 0 || W.rows == 0) return;
  ZEBRA_CHECK(W.blocks != nullptr && x != nullptr && y != nullptr, "quant_linear: null pointer");

  if (!scratch) {
    thread_local std::vector<uint8_t> buffer;
    const size_t need = acts_bytes(block, T, W.cols);
    if (buffer.size() < need) buffer.resize(need);
    scratch = buffer.data();
  }
  const QuantActs acts = acts_layout(block, T, W.cols, scratch);
  const Kernels& k = active_kernels();
  const ActsFn quantize_acts = block == QK ? k.acts32 : k.acts256;

  // x [T, cols] -> 8-bit blocks, once for all output rows.
  constexpr int64_t ACT_ROWS = 4;
  const int64_t act_chunks = (T + ACT_ROWS - 1) / ACT_ROWS;
#pragma omp parallel for schedule(static) if (act_chunks > 1 && T * W.cols >= 16384)
  for (int64_t c = 0; c < act_chunks; ++c) {
    const int64_t t0 = c * ACT_ROWS, t1 = std::min(T, (c + 1) * ACT_ROWS);
    quantize_acts(x, t0, t1, acts);
    if (acts.qi) interleave_acts(acts, t0, t1);
  }

  // y [T, rows]: tiles of weight rows × activation rows.
  const TileFn tile = k.tile[f];
  const size_t rb = W.row_bytes();
  const int64_t nb = W.cols / block, rows = W.rows;
  const int64_t n_rt = (rows + TILE_ROWS - 1) / TILE_ROWS, n_tt = (T + TILE_T - 1) / TILE_T;
  const bool parallel = static_cast<double>(rows) * static_cast<double>(W.cols) * static_cast<double>(T) >= PARALLEL_MACS;
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t i = 0; i < n_tt; ++i)
    for (int64_t j = 0; j < n_rt; ++j)
      tile(W.blocks, rb, nb, j * TILE_ROWS, std::min(rows, (j + 1) * TILE_ROWS), acts, i * TILE_T,
           std::min(T, (i + 1) * TILE_T), y, rows);
}

const char* quant_kernel_name() { return active_kernels().name; }

}  // namespace zebra::cpu
