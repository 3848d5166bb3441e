// The CUDA engine (see cuda_engine.h). One forward, for the rows of a batch grouped by sequence (plan_rows):
//   host   check the batch, ask the CacheBook for blocks (performing its copy-on-write copies), fill the step's
//          metadata (tokens, positions, runs, per-run block tables, decode/prefill run lists, SSD chunks, logit
//          rows, rope table) in pinned memory and upload it with one copy (plus one 2-D copy of the tables);
//   device embedding gather; per layer: rmsnorm -> mixer (attention / MLA / Mamba2, prefill runs and decode runs
//          by their own kernels) with its output GEMM adding into the fp32 residual (beta = 1) -> rmsnorm ->
//          [gate; up] GEMM -> swiglu -> down GEMM adding into the residual; then the final norm and LM head for the
//          logit rows only.
// Every kernel reads the step's metadata from fixed device buffers, so a decode-only forward can be captured
// once per batch-size bucket and replayed: padded to the bucket with runs of seq = -1, which every op skips.
#include "engine/cuda_engine.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "core/log.h"
#include "engine/cuda_weights.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/check.h"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gated_rmsnorm.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/logits.cuh"
#include "kernels/cuda/mla_attention.cuh"
#include "kernels/cuda/paged_cache.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/ssd_scan.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "model/rope.h"
#include "model/row_plan.h"

namespace zebra {

namespace {

using cuda::bf16;
using cuda::DevPaged;
using cuda::DevRun;
using cuda::DevStates;

int64_t next_pow2(int64_t n) {
  int64_t b = 1;
  while (b < n) b <<= 1;
  return b;
}

// What one forward launches: counts the kernels' grids need, and the host copies of the prefill runs (the
// decompressed MLA loops over them). In a captured decode graph: rows = runs = n_decode = the bucket.
struct StepShape {
  int64_t rows = 0, n_runs = 0, n_decode = 0, n_prefill = 0, max_prefill_n = 0, n_logits = 0, n_chunks = 0;
  int64_t max_len = 0;  // the longest context a decode run may have (sets the split counts)
  std::vector<DevRun> prefill_runs;
  std::vector<int32_t> prefill_index;  // their indices into the step's runs
};

// Owned stream and event handles (destroyed even when the engine's constructor throws half way).
struct StreamHandle {
  cudaStream_t s = nullptr;
  ~StreamHandle() {
    if (s) cudaStreamDestroy(s);
  }
};
struct EventHandle {
  cudaEvent_t e = nullptr;
  ~EventHandle() {
    if (e) cudaEventDestroy(e);
  }
};

// Byte offsets of the step metadata inside one pinned host buffer and its device twin.
struct MetaLayout {
  size_t tokens = 0, pos = 0, row_run = 0, runs = 0, decode_ids = 0, prefill_ids = 0, logit_rows = 0, chunks = 0,
         chunk_first = 0, inv_freq = 0, total = 0;
};

template <class T>
class CudaEngine final : public Engine {
 public:
  CudaEngine(const Model& model, const EngineOptions& opts, const CudaEngineTuning& tuning);
  ~CudaEngine() override;

  const Model& model() const override { return model_; }
  const EngineOptions& options() const override { return opts_; }
  CacheBook& book() override { return *book_; }
  void run(const Batch& batch, ForwardTrace* trace) override;
  Tensor logits() override;
  std::vector<int32_t> sample(const std::vector<Sampler*>& samplers) override;
  void seq_clear(int32_t seq) override;
  void seq_fork(int32_t src, int32_t dst, int64_t n_tokens) override;
  void snapshot_save(int32_t seq, int32_t slot) override;
  void snapshot_restore(int32_t slot, int32_t seq) override;
  MemoryReport memory() const override;

 private:
  void init_device();
  void plan_workspace(cuda::DeviceArena& a);
  void allocate_caches();
  void check_seq(int32_t seq, const char* what) const;
  void check_batch(const Batch& batch, const RowPlan& plan, bool check_blocks) const;
  void run_slice(const Batch& batch, bool to_host);
  StepShape fill_step(const RowPlan& plan, int64_t bucket);
  void upload_step(int64_t table_rows, int64_t table_cols);
  void forward(const StepShape& s);
  void attention_layer(size_t li, const StepShape& s);
  void mla_layer(size_t li, const StepShape& s);
  void mamba_layer(size_t li, const StepShape& s);
  void launch_graph(const StepShape& s);
  void copy_state_slot(int32_t from, int32_t to);
  DevPaged<T> paged(size_t li) const;
  DevStates states(size_t li) const;
  cuda::KvSource<T> attention_source(size_t li) const;
  cuda::MlaAttnDims mla_dims(size_t li) const;
  cuda::SsmArgs ssm_args(size_t li) const;

  const Model& model_;
  EngineOptions opts_;
  CudaEngineTuning tune_;
  int64_t limit_tokens_ = 0;  // the contract's max_batch_tokens
  int64_t rows_ = 0, logit_rows_ = 0, max_runs_ = 0, max_chunks_ = 0, max_blocks_ = 0;
  int sm_count_ = 1;
  StreamHandle stream_holder_;  // declared before everything that uses the stream, so destroyed after it
  cudaStream_t stream_ = nullptr;
  EventHandle upload_done_holder_;
  cudaEvent_t upload_done_ = nullptr;
  std::unique_ptr<cuda::Blas> blas_;
  std::unique_ptr<CacheBook> book_;

  cuda::DeviceArena weight_arena_, work_arena_;
  cuda::DevWeights<T> w_;
  // Cache storage: blocks of every paged layer together ([block][layer rows]), state slots of every Mamba2 layer
  // together ([slot][ssm of each layer | conv window of each layer]).
  cuda::DeviceBuffer<T> kv_pool_;
  cuda::DeviceBuffer<float> state_pool_;
  std::vector<int64_t> paged_offset_, paged_width_;  // per layer (-1 / 0 for Mamba2): element offset in a block
  std::vector<int> mamba_index_;                      // per layer (-1 unless Mamba2)
  int64_t block_elems_ = 0, n_mamba_ = 0, ssm_floats_ = 0, conv_floats_ = 0, slot_floats_ = 0, n_slots_ = 0;
  int64_t n_blocks_ = 0;

  // Workspace (all in work_arena_).
  float* x_ = nullptr;        // [rows, H] residual stream
  T* xn_ = nullptr;           // [rows, H] normed GEMM input
  float* f_a_ = nullptr;      // [rows, fa]: qkv / MLA q / Mamba2 in_proj output
  float* f_b_ = nullptr;      // [rows, fb]: MLA latents / Mamba2 conv output
  float* f_c_ = nullptr;      // [rows, fc]: MLA cq (lora norm) / Mamba2 y
  T* t_a_ = nullptr;          // [rows, ta]: rotated q / cq / gated Mamba2 output
  T* t_b_ = nullptr;          // [rows, tb]: attention output / MLP hidden
  T* t_gu_ = nullptr;         // [rows, 2I]
  int64_t fa_ = 0, fb_ = 0, fc_ = 0, ta_ = 0, tb_ = 0;
  float* decode_ws_ = nullptr;  // attention / MLA decode partials
  int64_t decode_ws_floats_ = 0;
  T* mla_scratch_ = nullptr;
  float* ssd_ws_ = nullptr;
  float* sel_f_ = nullptr;    // [logit_rows, H]
  T* sel_t_ = nullptr;        // [logit_rows, H]
  float* logits_ = nullptr;   // [logit_rows, V]
  cuda::SampleParams* d_sample_ = nullptr;
  int32_t* d_ids_ = nullptr;
  char* d_meta_ = nullptr;
  int32_t* d_tables_ = nullptr;  // [max_runs, max_blocks]

  MetaLayout meta_;
  cuda::PinnedBuffer<char> h_meta_buf_;
  cuda::PinnedBuffer<int32_t> h_tables_buf_, h_ids_buf_;
  cuda::PinnedBuffer<cuda::SampleParams> h_sample_buf_;
  char* h_meta_ = nullptr;
  int32_t* h_tables_ = nullptr;             // [max_runs, max_blocks]
  cuda::SampleParams* h_sample_ = nullptr;  // [logit_rows]
  int32_t* h_ids_ = nullptr;                // [logit_rows]

  std::map<int64_t, cudaGraphExec_t> graphs_;  // decode bucket -> captured forward

  // The last run's logits: on the device (rows [0, n)) or, for a batch run in slices, on the host.
  int64_t last_logits_ = 0;
  bool logits_on_host_ = false;
  std::vector<float> host_logits_;

  template <class U>
  U* meta(size_t off) const { return reinterpret_cast<U*>(d_meta_ + off); }
  template <class U>
  U* hmeta(size_t off) const { return reinterpret_cast<U*>(h_meta_ + off); }
  void set_device() const { ZEBRA_CUDA_CHECK(cudaSetDevice(tune_.device)); }
};

EngineOptions resolve_options(const Model& m, const EngineOptions& o) {
  EngineOptions r = o;
  r.device = Device::Cuda;
  ZEBRA_CHECK(o.max_seqs >= 1, "engine: max_seqs must be at least 1, got ", o.max_seqs);
  ZEBRA_CHECK(o.block_tokens >= 1, "engine: block_tokens must be at least 1, got ", o.block_tokens);
  ZEBRA_CHECK(o.n_ctx >= 0 && o.n_blocks >= 0 && o.n_snapshots >= 0 && o.max_batch_tokens >= 0,
              "engine: n_ctx, n_blocks, n_snapshots and max_batch_tokens must not be negative");
  r.n_ctx = o.n_ctx > 0 ? o.n_ctx : m.config.max_position_embeddings;
  ZEBRA_CHECK(r.n_ctx >= 1 && r.n_ctx <= (int64_t(1) << 30), "engine: n_ctx ", r.n_ctx, " is out of range");
  if (o.dtype == "auto" || o.dtype == "bf16")
    r.dtype = "bf16";
  else if (o.dtype == "f32")
    r.dtype = "f32";
  else
    fail("--dtype: the CUDA engine stores weights as bf16 or f32, not '", o.dtype, "'");
  return r;
}

template <class T>
CudaEngine<T>::CudaEngine(const Model& model, const EngineOptions& opts, const CudaEngineTuning& tuning)
    : model_(model), opts_(resolve_options(model, opts)), tune_(tuning) {
  const LlamaConfig& c = model_.config;
  limit_tokens_ = opts_.max_batch_tokens > 0 ? opts_.max_batch_tokens : std::max(opts_.n_ctx, opts_.max_seqs);
  rows_ = tune_.forward_rows > 0 ? tune_.forward_rows
          : opts_.max_batch_tokens > 0 ? opts_.max_batch_tokens
                                       : std::min<int64_t>(std::max(opts_.n_ctx, opts_.max_seqs), 2048);
  rows_ = std::max<int64_t>(1, std::min(rows_, limit_tokens_));
  max_runs_ = std::min(rows_, opts_.max_seqs);
  logit_rows_ = tune_.logit_rows > 0 ? tune_.logit_rows : std::max(opts_.max_seqs, std::min<int64_t>(rows_, 512));
  logit_rows_ = std::max<int64_t>(1, std::min(logit_rows_, rows_));
  max_chunks_ = rows_ / cuda::kSsdChunk + max_runs_ + 1;
  max_blocks_ = (opts_.n_ctx + opts_.block_tokens - 1) / opts_.block_tokens;
  for (const Layer& L : model_.layers)
    ZEBRA_CHECK(L.kind != LayerKind::Attention || (c.head_dim % 2 == 0 && c.head_dim <= 128),
                "the CUDA engine supports attention head_dim up to 128 (even), got ", c.head_dim);

  init_device();

  // Weights.
  take_weights(model_, weight_arena_, w_);
  const int64_t weight_bytes = weight_arena_.bytes();
  try {
    weight_arena_.allocate();
  } catch (const cuda::OutOfMemoryError&) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("out of GPU memory loading the weights: they need ", cuda::format_bytes(weight_bytes), " as ", opts_.dtype,
         " but the GPU has ", cuda::format_bytes((int64_t)free_b), " free of ", cuda::format_bytes((int64_t)total_b),
         opts_.dtype == "f32" ? " (try --dtype bf16, or --device cpu)" : " (use --device cpu)");
  }
  take_weights(model_, weight_arena_, w_);
  upload_weights(model_, w_);

  // Cache layout (bytes per block and per state slot), then the workspace, then the cache from what is left.
  paged_offset_.assign(model_.layers.size(), -1);
  paged_width_.assign(model_.layers.size(), 0);
  mamba_index_.assign(model_.layers.size(), -1);
  for (size_t i = 0; i < model_.layers.size(); ++i) {
    const Layer& L = model_.layers[i];
    if (L.kind == LayerKind::Mamba2) {
      mamba_index_[i] = static_cast<int>(n_mamba_++);
      continue;
    }
    paged_width_[i] = L.kind == LayerKind::Attention ? 2 * c.kv_dim() : L.mla_dims.cache_width();
    paged_offset_[i] = block_elems_;
    block_elems_ += opts_.block_tokens * paged_width_[i];
  }
  if (n_mamba_ > 0) {
    const Mamba2Dims& d = model_.mamba_dims;
    ssm_floats_ = d.n_heads * d.head_dim * d.d_state;
    conv_floats_ = d.conv_dim() * (d.d_conv - 1);
    slot_floats_ = n_mamba_ * (ssm_floats_ + conv_floats_);
  }

  work_arena_.begin_count();
  plan_workspace(work_arena_);
  const int64_t work_bytes = work_arena_.bytes();
  try {
    work_arena_.allocate();
  } catch (const cuda::OutOfMemoryError&) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("out of GPU memory for the forward's workspace: ", cuda::format_bytes(work_bytes), " for ", rows_,
         " rows per forward (", logit_rows_, " logit rows) but ", cuda::format_bytes((int64_t)free_b),
         " are free after the weights (", cuda::format_bytes(weight_bytes), "); lower max_batch_tokens");
  }
  plan_workspace(work_arena_);
  allocate_caches();

  // Step metadata: pinned host staging and its device twin.
  h_meta_buf_.allocate(static_cast<int64_t>(meta_.total));
  h_tables_buf_.allocate(max_runs_ * max_blocks_);
  h_sample_buf_.allocate(logit_rows_);
  h_ids_buf_.allocate(logit_rows_);
  h_meta_ = h_meta_buf_.get(), h_tables_ = h_tables_buf_.get(), h_sample_ = h_sample_buf_.get(), h_ids_ = h_ids_buf_.get();
  ZEBRA_CUDA_CHECK(cudaEventCreateWithFlags(&upload_done_holder_.e, cudaEventDisableTiming));
  upload_done_ = upload_done_holder_.e;
  ZEBRA_CUDA_CHECK(cudaStreamSynchronize(stream_));

  const MemoryReport r = memory();
  log_info("cuda: ", opts_.dtype, " weights ", cuda::format_bytes(r.weight_bytes), ", cache ",
           cuda::format_bytes(r.cache_bytes), " (", r.blocks_total, " blocks of ", r.block_tokens, " tokens, ",
           n_slots_, " state slots), workspace ", cuda::format_bytes(r.workspace_bytes), " for ", rows_,
           " rows per forward");
}

template <class T>
CudaEngine<T>::~CudaEngine() {
  cudaSetDevice(tune_.device);
  if (stream_) cudaStreamSynchronize(stream_);  // nothing in flight may outlive the buffers
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
}

template <class T>
void CudaEngine<T>::init_device() {
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) fail("--device cuda: ", why, "; use --device cpu");
  const int count = cuda_device_count();
  ZEBRA_CHECK(tune_.device >= 0 && tune_.device < count, "--device cuda: GPU ", tune_.device, " does not exist (",
              count, " visible)");
  ZEBRA_CUDA_CHECK(cudaSetDevice(tune_.device));
  cudaDeviceProp p{};
  ZEBRA_CUDA_CHECK(cudaGetDeviceProperties(&p, tune_.device));
  ZEBRA_CHECK(p.major >= 9, "--device cuda: GPU ", tune_.device, " (", p.name, ") has compute capability ", p.major,
              ".", p.minor, " but this build of zebra carries GPU code for sm_90 (Hopper: H100/H200) only; use "
              "--device cpu");
  sm_count_ = p.multiProcessorCount;
  ZEBRA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_holder_.s, cudaStreamNonBlocking));
  stream_ = stream_holder_.s;
  blas_ = std::make_unique<cuda::Blas>(stream_);
}

template <class T>
void CudaEngine<T>::plan_workspace(cuda::DeviceArena& a) {
  const LlamaConfig& c = model_.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, N = rows_;
  fa_ = fb_ = fc_ = ta_ = 1;
  tb_ = I;
  int64_t mla_scratch = 0, ssd = 0;
  decode_ws_floats_ = 0;
  for (size_t i = 0; i < model_.layers.size(); ++i) {
    const Layer& L = model_.layers[i];
    switch (L.kind) {
      case LayerKind::Attention: {
        fa_ = std::max(fa_, c.q_dim() + 2 * c.kv_dim());
        ta_ = std::max(ta_, c.q_dim());
        tb_ = std::max(tb_, c.q_dim());
        const cuda::AttnDims d{c.num_heads, c.num_kv_heads, c.head_dim, c.head_dim, 1.0f};
        // splits(n) <= ceil(2 SMs / (n kv_heads)): the partials of n decode runs never exceed this bound.
        for (int64_t n = 1; n <= max_runs_; ++n)
          decode_ws_floats_ = std::max(decode_ws_floats_, cuda::gqa_decode_workspace_floats(
                                                              n, d, cuda::gqa_decode_splits(n, d.kv_heads, opts_.n_ctx, sm_count_)));
        break;
      }
      case LayerKind::Mla: {
        const MlaDims& m = L.mla_dims;
        const cuda::MlaAttnDims d = mla_dims(i);
        fa_ = std::max(fa_, m.n_heads * m.q_head_dim());
        fb_ = std::max(fb_, m.cache_width());
        if (m.lora_norm) fc_ = std::max(fc_, m.q_rank);
        ta_ = std::max({ta_, m.q_rank, m.n_heads * m.q_head_dim()});
        tb_ = std::max(tb_, m.n_heads * m.v_dim);
        mla_scratch = std::max(mla_scratch, cuda::mla_attention_scratch(d, opts_.n_ctx));
        for (int64_t n = 1; n <= max_runs_; ++n)
          decode_ws_floats_ = std::max(decode_ws_floats_, cuda::mla_decode_workspace_floats(
                                                              d, n, cuda::mla_decode_plan(d, n, opts_.n_ctx, sm_count_)));
        break;
      }
      case LayerKind::Mamba2: {
        const Mamba2Dims& m = model_.mamba_dims;
        fa_ = std::max(fa_, m.in_proj_rows());
        fb_ = std::max(fb_, m.conv_dim());
        fc_ = std::max(fc_, m.d_inner);
        ta_ = std::max(ta_, m.d_inner);
        ssd = std::max(ssd, cuda::ssd_scan_workspace_floats(ssm_args(i), max_chunks_));
        break;
      }
    }
  }
  x_ = a.take<float>(N * H);
  xn_ = a.take<T>(N * H);
  f_a_ = a.take<float>(N * fa_);
  f_b_ = a.take<float>(N * fb_);
  f_c_ = a.take<float>(N * fc_);
  t_a_ = a.take<T>(N * ta_);
  t_b_ = a.take<T>(N * tb_);
  t_gu_ = a.take<T>(N * 2 * I);
  decode_ws_ = a.take<float>(decode_ws_floats_);
  mla_scratch_ = a.take<T>(mla_scratch);
  ssd_ws_ = a.take<float>(ssd);
  sel_f_ = a.take<float>(logit_rows_ * H);
  sel_t_ = a.take<T>(logit_rows_ * H);
  logits_ = a.take<float>(logit_rows_ * V);
  d_sample_ = a.take<cuda::SampleParams>(logit_rows_);
  d_ids_ = a.take<int32_t>(logit_rows_);
  d_tables_ = a.take<int32_t>(std::max<int64_t>(1, max_runs_ * max_blocks_));

  MetaLayout& m = meta_;
  size_t off = 0;
  auto place = [&](size_t bytes) {
    off = (off + 15) / 16 * 16;
    const size_t at = off;
    off += bytes;
    return at;
  };
  m.tokens = place(sizeof(int32_t) * N);
  m.pos = place(sizeof(int32_t) * N);
  m.row_run = place(sizeof(int32_t) * N);
  m.runs = place(sizeof(DevRun) * max_runs_);
  m.decode_ids = place(sizeof(int32_t) * max_runs_);
  m.prefill_ids = place(sizeof(int32_t) * max_runs_);
  m.logit_rows = place(sizeof(int32_t) * logit_rows_);
  m.chunks = place(sizeof(cuda::ScanChunk) * max_chunks_);
  m.chunk_first = place(sizeof(int32_t) * (max_runs_ + 1));
  m.inv_freq = place(sizeof(float) * std::max<int64_t>(1, c.head_dim / 2));
  m.total = (off + 15) / 16 * 16;
  d_meta_ = a.take<char>(static_cast<int64_t>(m.total));
}

template <class T>
void CudaEngine<T>::allocate_caches() {
  const int64_t bt = opts_.block_tokens;
  const int64_t block_bytes = block_elems_ * static_cast<int64_t>(sizeof(T));
  n_slots_ = n_mamba_ > 0 ? opts_.max_seqs + opts_.n_snapshots : 0;
  const int64_t state_bytes = n_slots_ * slot_floats_ * static_cast<int64_t>(sizeof(float));
  const int64_t wanted = block_elems_ > 0 ? (opts_.n_blocks > 0 ? opts_.n_blocks : opts_.max_seqs * max_blocks_) : 0;
  size_t free_b = 0, total_b = 0;
  ZEBRA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const int64_t reserve = int64_t(256) << 20;  // cuBLASLt internals, graphs, the CUDA context's growth
  const int64_t avail = std::max<int64_t>(0, static_cast<int64_t>(free_b) - reserve);
  const int64_t seq_bytes = max_blocks_ * block_bytes + slot_floats_ * static_cast<int64_t>(sizeof(float));
  auto what_fits = [&]() {
    const int64_t fit_seqs = seq_bytes > 0 ? avail / seq_bytes : 0;
    std::string s = cat("at n_ctx ", opts_.n_ctx, " at most ", fit_seqs, " sequence", fit_seqs == 1 ? "" : "s",
                        " fit (", cuda::format_bytes(seq_bytes), " each)");
    if (fit_seqs < 1 && block_bytes > 0)
      s += cat("; one sequence fits up to n_ctx ",
               std::max<int64_t>(0, (avail - slot_floats_ * (int64_t)sizeof(float)) / block_bytes) * bt);
    return s;
  };
  int64_t blocks = wanted;
  if (wanted * block_bytes + state_bytes > avail) {
    if (opts_.n_blocks > 0 || state_bytes > avail)
      fail("out of GPU memory for the cache: ", wanted, " blocks (", cuda::format_bytes(wanted * block_bytes),
           ") and ", n_slots_, " state slots (", cuda::format_bytes(state_bytes), ") need ",
           cuda::format_bytes(wanted * block_bytes + state_bytes), " but ", cuda::format_bytes(avail),
           " are left after the weights and workspace; ", what_fits());
    // No explicit n_blocks: size the block pool from free memory (sequences then share it, overcommitted).
    blocks = (avail - state_bytes) / block_bytes;
    ZEBRA_CHECK(blocks >= max_blocks_, "out of GPU memory for the cache: ", opts_.max_seqs, " sequences at n_ctx ",
                opts_.n_ctx, " need ", cuda::format_bytes(wanted * block_bytes + state_bytes), " but ",
                cuda::format_bytes(avail), " are left after the weights and workspace; ", what_fits());
    log_info("cuda: cache sized from free GPU memory: ", blocks, " blocks (", blocks * bt, " tokens) for ",
             opts_.max_seqs, " sequences of up to ", opts_.n_ctx);
  }
  n_blocks_ = blocks;
  try {
    kv_pool_.allocate(n_blocks_ * block_elems_);
    state_pool_.allocate(n_slots_ * slot_floats_);
  } catch (const cuda::OutOfMemoryError&) {
    fail("out of GPU memory allocating the cache (", cuda::format_bytes(n_blocks_ * block_bytes + state_bytes), "); ",
         what_fits());
  }
  CacheShape shape;
  shape.max_seqs = opts_.max_seqs;
  shape.n_ctx = opts_.n_ctx;
  shape.block_tokens = bt;
  shape.n_blocks = block_elems_ > 0 ? n_blocks_ : 0;
  shape.n_snapshots = opts_.n_snapshots;
  shape.paged = block_elems_ > 0;
  shape.stateful = n_mamba_ > 0;
  book_ = std::make_unique<CacheBook>(shape);
  opts_.n_blocks = n_blocks_;
}

template <class T>
DevPaged<T> CudaEngine<T>::paged(size_t li) const {
  DevPaged<T> p;
  p.base = kv_pool_.get() + paged_offset_[li];
  p.block_stride = block_elems_;
  p.row_stride = paged_width_[li];
  p.row_elems = paged_width_[li];
  p.block_tokens = static_cast<int32_t>(opts_.block_tokens);
  p.table_stride = static_cast<int32_t>(max_blocks_);
  p.tables = d_tables_;
  return p;
}

template <class T>
DevStates CudaEngine<T>::states(size_t li) const {
  DevStates s;
  const int m = mamba_index_[li];
  s.ssm = state_pool_.get() + m * ssm_floats_;
  s.conv = state_pool_.get() + n_mamba_ * ssm_floats_ + m * conv_floats_;
  s.slot_stride = slot_floats_;
  return s;
}

template <class T>
cuda::KvSource<T> CudaEngine<T>::attention_source(size_t li) const {
  const LlamaConfig& c = model_.config;
  cuda::KvSource<T> s;
  s.base = kv_pool_.get() + paged_offset_[li];
  s.k1_off = 0, s.k1_head = c.head_dim, s.d1 = static_cast<int32_t>(c.head_dim);
  s.v_off = c.kv_dim(), s.v_head = c.head_dim;
  s.tables = d_tables_;
  s.table_stride = static_cast<int32_t>(max_blocks_);
  s.block_tokens = static_cast<int32_t>(opts_.block_tokens);
  s.block_stride = block_elems_;
  s.row_stride = 2 * c.kv_dim();
  return s;
}

template <class T>
cuda::MlaAttnDims CudaEngine<T>::mla_dims(size_t li) const {
  const Layer& L = model_.layers[li];
  const MlaDims& m = L.mla_dims;
  return {m.n_heads, m.kv_heads, m.kv_rank, m.rope_dim, m.nope_dim, m.v_dim, L.mla_rope.softmax_scale};
}

template <class T>
cuda::SsmArgs CudaEngine<T>::ssm_args(size_t li) const {
  const Mamba2Dims& d = model_.mamba_dims;
  const cuda::DevLayer<T>& L = w_.layers[li];
  cuda::SsmArgs a;
  a.n_heads = d.n_heads, a.head_dim = d.head_dim, a.d_state = d.d_state, a.d_xb = d.d_xb;
  a.dt_bias = L.dt_bias, a.A_log = L.A_log, a.D = L.D;
  return a;
}

// ---- sequences -------------------------------------------------------------------------------------------

template <class T>
void CudaEngine<T>::check_seq(int32_t seq, const char* what) const {
  ZEBRA_CHECK(seq >= 0 && seq < opts_.max_seqs, what, ": sequence ", seq, " is outside 0..", opts_.max_seqs - 1);
}

template <class T>
void CudaEngine<T>::seq_clear(int32_t seq) {
  check_seq(seq, "seq_clear");
  book_->clear(seq);
}

template <class T>
void CudaEngine<T>::copy_state_slot(int32_t from, int32_t to) {
  if (n_mamba_ == 0 || from == to) return;
  set_device();
  ZEBRA_CUDA_CHECK(cudaMemcpyAsync(state_pool_.get() + to * slot_floats_, state_pool_.get() + from * slot_floats_,
                                   sizeof(float) * slot_floats_, cudaMemcpyDeviceToDevice, stream_));
}

template <class T>
void CudaEngine<T>::seq_fork(int32_t src, int32_t dst, int64_t n_tokens) {
  check_seq(src, "seq_fork");
  check_seq(dst, "seq_fork");
  ZEBRA_CHECK(n_mamba_ == 0 || n_tokens == book_->length(src), "seq_fork: a Mamba2 state cannot be rewound: fork ",
              "sequence ", src, " at its length ", book_->length(src), ", not ", n_tokens);
  book_->fork(src, dst, n_tokens);
  copy_state_slot(src, dst);
}

template <class T>
void CudaEngine<T>::snapshot_save(int32_t seq, int32_t slot) {
  check_seq(seq, "snapshot_save");
  if (n_mamba_ == 0) return;
  ZEBRA_CHECK(slot >= opts_.max_seqs && slot < n_slots_, "snapshot_save: slot ", slot, " is not a snapshot slot (",
              opts_.max_seqs, "..", n_slots_ - 1, ")");
  copy_state_slot(seq, slot);
}

template <class T>
void CudaEngine<T>::snapshot_restore(int32_t slot, int32_t seq) {
  check_seq(seq, "snapshot_restore");
  if (n_mamba_ == 0) return;
  ZEBRA_CHECK(slot >= opts_.max_seqs && slot < n_slots_, "snapshot_restore: slot ", slot,
              " is not a snapshot slot (", opts_.max_seqs, "..", n_slots_ - 1, ")");
  copy_state_slot(slot, seq);
}

template <class T>
MemoryReport CudaEngine<T>::memory() const {
  MemoryReport r;
  r.weight_bytes = weight_arena_.bytes();
  r.cache_bytes = kv_pool_.bytes() + state_pool_.bytes();
  r.workspace_bytes = work_arena_.bytes() + blas_->workspace_bytes();
  r.kv_bytes_per_token = block_elems_ / opts_.block_tokens * static_cast<int64_t>(sizeof(T));
  r.state_bytes_per_sequence = slot_floats_ * static_cast<int64_t>(sizeof(float));
  r.blocks_total = book_ && block_elems_ > 0 ? n_blocks_ : 0;
  r.blocks_used = book_ && block_elems_ > 0 ? book_->used_blocks() : 0;
  r.block_tokens = opts_.block_tokens;
  r.snapshots_total = n_mamba_ > 0 ? opts_.n_snapshots : 0;
  return r;
}

// ---- a forward ---------------------------------------------------------------------------------------------

template <class T>
void CudaEngine<T>::check_batch(const Batch& batch, const RowPlan& plan, bool check_blocks) const {
  const int64_t V = model_.config.vocab_size;
  for (int64_t t = 0; t < batch.size(); ++t) {
    ZEBRA_CHECK(batch.tokens[t] >= 0 && batch.tokens[t] < V, "token id ", batch.tokens[t], " is outside the vocabulary [0, ",
                V, ")");
    ZEBRA_CHECK(batch.seq[t] >= 0 && batch.seq[t] < opts_.max_seqs, "sequence ", batch.seq[t], " is outside the engine's 0..",
                opts_.max_seqs - 1);
  }
  int64_t need = 0, freeable = 0;
  for (const Run& r : plan.runs) {
    const int64_t len = book_->length(r.seq);
    ZEBRA_CHECK(r.pos0 == 0 || r.pos0 == len, "sequence ", r.seq, " holds ", len, " positions; a token at position ",
                r.pos0, " neither starts it afresh (0) nor continues it (", len, ")");
    ZEBRA_CHECK(r.end() <= opts_.n_ctx, "position ", r.end() - 1, " of sequence ", r.seq, " exceeds the context size ",
                opts_.n_ctx, " (use a larger -c)");
    if (block_elems_ == 0 || !check_blocks) continue;
    if (r.pos0 == 0) {
      need += (r.n + opts_.block_tokens - 1) / opts_.block_tokens;
      freeable += (len + opts_.block_tokens - 1) / opts_.block_tokens;  // at most what restarting frees
    } else {
      need += book_->blocks_needed(r.seq, r.n);
    }
  }
  if (check_blocks && need > book_->free_blocks() + freeable)
    throw CacheFullError(cat("the cache is full: this batch needs ", need, " blocks of ", opts_.block_tokens,
                             " tokens but ", book_->free_blocks(), " of ", n_blocks_, " are free"));
}

template <class T>
void CudaEngine<T>::run(const Batch& batch, ForwardTrace* trace) {
  ZEBRA_CHECK(trace == nullptr, "the CUDA engine records no forward traces (use --device cpu for distillation)");
  ZEBRA_CHECK(batch.size() > 0, "engine run: empty batch");
  ZEBRA_CHECK(batch.size() <= limit_tokens_, "engine run: ", batch.size(), " tokens exceed max_batch_tokens ",
              limit_tokens_);
  set_device();
  const RowPlan whole = plan_rows(batch);
  const int64_t n_logits = static_cast<int64_t>(whole.logit_rows.size());
  const bool one_forward = batch.size() <= rows_ && n_logits <= logit_rows_;
  // One forward appends all its sequences at once (CacheBook's batch append: all or nothing); a batch run in
  // slices is checked for blocks up front instead (a bound: what restarting sequences free is counted in full).
  check_batch(batch, whole, !one_forward);
  logits_on_host_ = false;
  host_logits_.clear();
  last_logits_ = 0;
  if (one_forward) {
    run_slice(batch, false);
    return;
  }
  // Too large for one forward's workspace: consecutive slices of the batch (each a valid batch: a sequence's
  // tokens stay in order and continue what the previous slice appended), logits gathered on the host.
  Batch part;
  int64_t part_logits = 0;
  for (int64_t t = 0; t < batch.size(); ++t) {
    part.add(batch.tokens[t], batch.seq[t], batch.pos[t], batch.logits[t] != 0);
    part_logits += batch.logits[t] ? 1 : 0;
    const bool full = part.size() == rows_ || part_logits == logit_rows_;
    if (full || t + 1 == batch.size()) {
      run_slice(part, true);
      part.clear();
      part_logits = 0;
    }
  }
  logits_on_host_ = true;
  last_logits_ = n_logits;
}

template <class T>
StepShape CudaEngine<T>::fill_step(const RowPlan& plan, int64_t bucket) {
  const int64_t n = static_cast<int64_t>(plan.tokens.size());
  const int64_t rows = bucket > 0 ? bucket : n;
  const int64_t n_runs = bucket > 0 ? bucket : static_cast<int64_t>(plan.runs.size());
  StepShape s;
  s.rows = rows;
  s.n_runs = n_runs;
  int32_t* tokens = hmeta<int32_t>(meta_.tokens);
  int32_t* pos = hmeta<int32_t>(meta_.pos);
  int32_t* row_run = hmeta<int32_t>(meta_.row_run);
  DevRun* runs = hmeta<DevRun>(meta_.runs);
  int32_t* decode_ids = hmeta<int32_t>(meta_.decode_ids);
  int32_t* prefill_ids = hmeta<int32_t>(meta_.prefill_ids);
  int32_t* logit_rows = hmeta<int32_t>(meta_.logit_rows);
  cuda::ScanChunk* chunks = hmeta<cuda::ScanChunk>(meta_.chunks);
  int32_t* chunk_first = hmeta<int32_t>(meta_.chunk_first);

  for (int64_t i = 0; i < n; ++i) tokens[i] = plan.tokens[i], pos[i] = plan.pos[i];
  int64_t max_pos = 0;
  for (int64_t r = 0; r < static_cast<int64_t>(plan.runs.size()); ++r) {
    const Run& run = plan.runs[r];
    runs[r] = DevRun{run.seq, run.row0, run.n, run.pos0};
    for (int32_t i = 0; i < run.n; ++i) row_run[run.row0 + i] = static_cast<int32_t>(r);
    max_pos = std::max<int64_t>(max_pos, run.end() - 1);
    if (run.n == 1) {
      decode_ids[s.n_decode++] = static_cast<int32_t>(r);
      s.max_len = std::max<int64_t>(s.max_len, run.end());
    } else {
      chunk_first[s.n_prefill] = static_cast<int32_t>(s.n_chunks);
      prefill_ids[s.n_prefill++] = static_cast<int32_t>(r);
      s.max_prefill_n = std::max<int64_t>(s.max_prefill_n, run.n);
      s.prefill_runs.push_back(runs[r]);
      s.prefill_index.push_back(static_cast<int32_t>(r));
      for (int32_t t0 = 0; t0 < run.n; t0 += static_cast<int32_t>(cuda::kSsdChunk))
        chunks[s.n_chunks++] = cuda::ScanChunk{static_cast<int32_t>(r), t0,
                                               std::min<int32_t>(static_cast<int32_t>(cuda::kSsdChunk), run.n - t0), 0};
    }
  }
  chunk_first[s.n_prefill] = static_cast<int32_t>(s.n_chunks);
  for (size_t j = 0; j < plan.logit_rows.size(); ++j) logit_rows[j] = plan.logit_rows[j];
  s.n_logits = static_cast<int64_t>(plan.logit_rows.size());
  if (bucket > 0) {
    // A captured decode step: pad to the bucket with runs that every op skips; every row's logits.
    for (int64_t i = n; i < rows; ++i) {
      tokens[i] = 0, pos[i] = 0, row_run[i] = static_cast<int32_t>(i);
      runs[i] = DevRun{-1, static_cast<int32_t>(i), 1, 0};
    }
    for (int64_t i = 0; i < rows; ++i) decode_ids[i] = static_cast<int32_t>(i), logit_rows[i] = static_cast<int32_t>(i);
    s.n_decode = rows;
    s.n_logits = rows;
    s.max_len = opts_.n_ctx;
  }
  // The Llama rope table of this forward (dynamic NTK depends on its longest position, as on the CPU).
  const LlamaConfig& c = model_.config;
  if (c.head_dim >= 2) {
    const RopeTable rope = make_rope_table(c, c.head_dim, max_pos + 1);
    std::copy(rope.inv_freq.begin(), rope.inv_freq.end(), hmeta<float>(meta_.inv_freq));
  }
  // Block tables of the runs' sequences (only the columns the forward can reach).
  int64_t cols = 0;
  if (block_elems_ > 0) {
    for (int64_t r = 0; r < static_cast<int64_t>(plan.runs.size()); ++r) {
      const Run& run = plan.runs[r];
      const int64_t need = (run.end() + opts_.block_tokens - 1) / opts_.block_tokens;
      std::copy_n(book_->block_table(run.seq), need, h_tables_ + r * max_blocks_);
      cols = std::max(cols, need);
    }
  }
  upload_step(static_cast<int64_t>(plan.runs.size()), cols);
  return s;
}

template <class T>
void CudaEngine<T>::upload_step(int64_t table_rows, int64_t table_cols) {
  ZEBRA_CUDA_CHECK(cudaMemcpyAsync(d_meta_, h_meta_, meta_.total, cudaMemcpyHostToDevice, stream_));
  // Only the real runs' rows and the columns their lengths reach (padding runs of a graph read no table).
  if (table_cols > 0 && table_rows > 0)
    ZEBRA_CUDA_CHECK(cudaMemcpy2DAsync(d_tables_, sizeof(int32_t) * max_blocks_, h_tables_, sizeof(int32_t) * max_blocks_,
                                       sizeof(int32_t) * table_cols, table_rows, cudaMemcpyHostToDevice, stream_));
  ZEBRA_CUDA_CHECK(cudaEventRecord(upload_done_, stream_));
}

template <class T>
void CudaEngine<T>::run_slice(const Batch& batch, bool to_host) {
  const RowPlan plan = plan_rows(batch);
  std::vector<BlockCopy> copies;
  std::vector<SeqAppend> appends;
  for (const Run& r : plan.runs) appends.push_back(SeqAppend{r.seq, r.n, r.pos0 == 0});
  book_->append(appends.data(), static_cast<int64_t>(appends.size()), copies);  // all or nothing
  for (const BlockCopy& bc : copies)
    ZEBRA_CUDA_CHECK(cudaMemcpyAsync(kv_pool_.get() + bc.dst * block_elems_, kv_pool_.get() + bc.src * block_elems_,
                                     sizeof(T) * block_elems_, cudaMemcpyDeviceToDevice, stream_));
  const int64_t n = static_cast<int64_t>(plan.tokens.size());
  bool decode_only = true;
  for (const Run& r : plan.runs) decode_only = decode_only && r.n == 1;
  const int64_t b = std::min(next_pow2(n), max_runs_);
  const bool graph = tune_.graphs && !to_host && decode_only && static_cast<int64_t>(plan.logit_rows.size()) == n &&
                     b <= logit_rows_;
  const int64_t bucket = graph ? b : 0;

  ZEBRA_CUDA_CHECK(cudaEventSynchronize(upload_done_));  // the pinned staging is free again
  const StepShape s = fill_step(plan, bucket);
  if (graph)
    launch_graph(s);
  else
    forward(s);
  const int64_t m = static_cast<int64_t>(plan.logit_rows.size());
  last_logits_ = m;
  if (to_host && m > 0) {
    const int64_t V = model_.config.vocab_size;
    const size_t at = host_logits_.size();
    host_logits_.resize(at + static_cast<size_t>(m * V));
    ZEBRA_CUDA_CHECK(cudaMemcpyAsync(host_logits_.data() + at, logits_, sizeof(float) * m * V, cudaMemcpyDeviceToHost,
                                     stream_));
    ZEBRA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
}

template <class T>
void CudaEngine<T>::launch_graph(const StepShape& s) {
  auto it = graphs_.find(s.rows);
  if (it == graphs_.end()) {
    // Relaxed: the launchers may raise a kernel's shared-memory limit (cudaFuncSetAttribute) while capturing.
    cudaGraph_t g = nullptr;
    ZEBRA_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
      forward(s);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      throw;
    }
    ZEBRA_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    ZEBRA_CUDA_CHECK(e);
    it = graphs_.emplace(s.rows, exec).first;
  }
  ZEBRA_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
}

template <class T>
void CudaEngine<T>::forward(const StepShape& s) {
  const LlamaConfig& c = model_.config;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, n = s.rows;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ZEBRA_CHECK(n <= rows_ && s.n_runs <= max_runs_ && s.n_logits <= logit_rows_ && s.n_chunks <= max_chunks_,
              "CUDA forward: step (", n, " rows, ", s.n_runs, " runs, ", s.n_logits, " logits, ", s.n_chunks,
              " chunks) exceeds the planned workspace");
  cuda::embedding_gather(w_.embed, V, H, meta<int32_t>(meta_.tokens), n, x_, H, stream_);
  for (size_t li = 0; li < model_.layers.size(); ++li) {
    const cuda::DevLayer<T>& L = w_.layers[li];
    cuda::rmsnorm(x_, H, L.input_norm, xn_, H, n, H, eps, stream_);
    switch (L.kind) {
      case LayerKind::Attention: attention_layer(li, s); break;
      case LayerKind::Mla: mla_layer(li, s); break;
      case LayerKind::Mamba2: mamba_layer(li, s); break;
    }
    cuda::rmsnorm(x_, H, L.post_norm, xn_, H, n, H, eps, stream_);
    cuda::linear(*blas_, xn_, H, L.wgu, t_gu_, 2 * I, n, H, 2 * I);
    cuda::swiglu(t_gu_, t_gu_ + I, 2 * I, t_b_, I, n, I, stream_);
    cuda::linear(*blas_, t_b_, I, L.wd, x_, H, n, I, H, /*accumulate=*/true);
  }
  if (s.n_logits == 0) return;
  cuda::gather_rows(x_, H, meta<int32_t>(meta_.logit_rows), s.n_logits, H, sel_f_, H, stream_);
  cuda::rmsnorm(sel_f_, H, w_.norm, sel_t_, H, s.n_logits, H, eps, stream_);
  cuda::linear(*blas_, sel_t_, H, w_.head, logits_, V, s.n_logits, H, V);
}

template <class T>
void CudaEngine<T>::attention_layer(size_t li, const StepShape& s) {
  const LlamaConfig& c = model_.config;
  const cuda::DevLayer<T>& L = w_.layers[li];
  const int64_t H = c.hidden_size, n = s.rows, hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t w = qd + 2 * kvd;
  float* qkv = f_a_;
  cuda::linear(*blas_, xn_, H, L.wqkv, qkv, w, n, H, w);
  cuda::RopeArgs ra;
  ra.rows = n, ra.dim = hd, ra.head_stride = hd;
  ra.pos = meta<int32_t>(meta_.pos);
  ra.inv_freq = meta<float>(meta_.inv_freq);
  ra.scale = make_rope_table(c, hd, 1).attention_scale;  // independent of the length
  ra.n_heads = c.num_heads;
  cuda::rope_rotate_half(qkv, w, t_a_, qd, ra, stream_);  // rotated queries, as T
  ra.n_heads = c.num_kv_heads;
  cuda::rope_rotate_half(qkv + qd, w, qkv + qd, w, ra, stream_);  // keys, in place
  cuda::paged_cache_write(qkv + qd, w, 2 * kvd, n, meta<int32_t>(meta_.row_run), meta<int32_t>(meta_.pos),
                          meta<DevRun>(meta_.runs), paged(li), stream_);
  const cuda::KvSource<T> src = attention_source(li);
  const cuda::AttnDims d{c.num_heads, c.num_kv_heads, hd, hd, 1.0f / std::sqrt(static_cast<float>(hd))};
  if (s.n_prefill > 0)
    cuda::gqa_attention_prefill(t_a_, qd, hd, src, d, meta<DevRun>(meta_.runs), meta<int32_t>(meta_.prefill_ids),
                                s.n_prefill, s.max_prefill_n, t_b_, qd, stream_);
  if (s.n_decode > 0) {
    const int64_t splits = cuda::gqa_decode_splits(s.n_decode, c.num_kv_heads, s.max_len, sm_count_);
    ZEBRA_CHECK(cuda::gqa_decode_workspace_floats(s.n_decode, d, splits) <= decode_ws_floats_,
                "attention decode: workspace too small");
    cuda::gqa_attention_decode(t_a_, qd, hd, src, d, meta<DevRun>(meta_.runs), meta<int32_t>(meta_.decode_ids),
                               s.n_decode, splits, decode_ws_, t_b_, qd, stream_);
  }
  cuda::linear(*blas_, t_b_, qd, L.wo, x_, H, n, qd, H, /*accumulate=*/true);
}

template <class T>
void CudaEngine<T>::mla_layer(size_t li, const StepShape& s) {
  const Layer& HL = model_.layers[li];
  const MlaDims& m = HL.mla_dims;
  const cuda::DevLayer<T>& L = w_.layers[li];
  const int64_t H = m.hidden, n = s.rows, nh = m.n_heads, dq = m.q_head_dim(), R = m.kv_rank, dr = m.rope_dim;
  const int64_t W = m.cache_width(), qw = nh * dq;
  const float eps = static_cast<float>(m.eps);
  float* q = f_a_;    // [n, nh*dq] fp32
  float* lat = f_b_;  // [n, W] fp32
  if (m.q_rank > 0) {
    if (m.lora_norm) {
      cuda::linear(*blas_, xn_, H, L.q_a, f_c_, m.q_rank, n, H, m.q_rank);
      cuda::rmsnorm(f_c_, m.q_rank, L.q_a_norm, t_a_, m.q_rank, n, m.q_rank, eps, stream_);
    } else {
      cuda::linear(*blas_, xn_, H, L.q_a, t_a_, m.q_rank, n, H, m.q_rank);
    }
    cuda::linear(*blas_, t_a_, m.q_rank, L.q_b, q, qw, n, m.q_rank, qw);
  } else {
    cuda::linear(*blas_, xn_, H, L.q_proj, q, qw, n, H, qw);
  }
  cuda::linear(*blas_, xn_, H, L.kv_a, lat, W, n, H, W);
  if (m.lora_norm) cuda::rmsnorm(lat, W, L.kv_a_norm, lat, W, n, R, eps, stream_);
  cuda::RopeArgs ra;
  ra.rows = n, ra.dim = dr, ra.scale = HL.mla_rope.mscale;
  ra.pos = meta<int32_t>(meta_.pos);
  ra.inv_freq = L.mla_inv_freq;
  ra.n_heads = 1, ra.head_stride = 0;
  cuda::rope_interleaved(lat + R, W, lat + R, W, ra, stream_);  // the shared rope key
  ra.n_heads = nh, ra.head_stride = dq;
  cuda::rope_interleaved(q + m.nope_dim, qw, q + m.nope_dim, qw, ra, stream_);
  cuda::cast_rows(q, qw, t_a_, qw, n, qw, stream_);
  const DevPaged<T> cache = paged(li);
  cuda::paged_cache_write(lat, W, W, n, meta<int32_t>(meta_.row_run), meta<int32_t>(meta_.pos),
                          meta<DevRun>(meta_.runs), cache, stream_);
  const cuda::MlaAttnDims d = mla_dims(li);
  for (size_t i = 0; i < s.prefill_runs.size(); ++i)
    cuda::mla_attention(*blas_, d, t_a_, qw, L.kv_b, cache, meta<DevRun>(meta_.runs),
                        meta<int32_t>(meta_.prefill_ids) + i, s.prefill_index[i], s.prefill_runs[i], mla_scratch_, t_b_,
                        nh * m.v_dim, stream_);
  if (s.n_decode > 0) {
    const cuda::MlaDecodePlan plan = cuda::mla_decode_plan(d, s.n_decode, s.max_len, sm_count_);
    ZEBRA_CHECK(cuda::mla_decode_workspace_floats(d, s.n_decode, plan) <= decode_ws_floats_,
                "MLA decode: workspace too small");
    cuda::mla_decode(d, plan, t_a_, qw, L.kv_b, cache, meta<DevRun>(meta_.runs), meta<int32_t>(meta_.decode_ids),
                     s.n_decode, decode_ws_, t_b_, nh * m.v_dim, stream_);
  }
  cuda::linear(*blas_, t_b_, nh * m.v_dim, L.mla_out, x_, H, n, nh * m.v_dim, H, /*accumulate=*/true);
}

template <class T>
void CudaEngine<T>::mamba_layer(size_t li, const StepShape& s) {
  const Mamba2Dims& m = model_.mamba_dims;
  const cuda::DevLayer<T>& L = w_.layers[li];
  const int64_t H = m.hidden, n = s.rows, rows_in = m.in_proj_rows(), cd = m.conv_dim();
  float* proj = f_a_;  // [n, rows_in]: z | xBC | dt
  float* xbc = f_b_;   // [n, conv_dim]
  float* y = f_c_;     // [n, d_inner]
  cuda::linear(*blas_, xn_, H, L.in_proj, proj, rows_in, n, H, rows_in);
  cuda::ConvArgs ca;
  ca.channels = cd, ca.d_conv = m.d_conv, ca.w = L.conv_w, ca.b = L.conv_b, ca.silu = true;
  const DevStates st = states(li);
  const DevRun* runs = meta<DevRun>(meta_.runs);
  const cuda::SsmArgs sa = ssm_args(li);
  const float* dt_raw = proj + m.d_inner + cd;
  if (s.n_prefill > 0) {
    cuda::causal_conv1d(proj + m.d_inner, rows_in, ca, runs, meta<int32_t>(meta_.prefill_ids), s.n_prefill,
                        s.max_prefill_n, st, xbc, cd, stream_);
    cuda::ssd_scan(xbc, cd, dt_raw, rows_in, sa, runs, meta<int32_t>(meta_.prefill_ids), s.n_prefill,
                   meta<cuda::ScanChunk>(meta_.chunks), meta<int32_t>(meta_.chunk_first), s.n_chunks, st, ssd_ws_, y,
                   m.d_inner, stream_);
  }
  if (s.n_decode > 0) {
    cuda::causal_conv1d_step(proj + m.d_inner, rows_in, ca, runs, meta<int32_t>(meta_.decode_ids), s.n_decode, st,
                             xbc, cd, stream_);
    cuda::ssm_step(xbc, cd, dt_raw, rows_in, sa, runs, meta<int32_t>(meta_.decode_ids), s.n_decode, st, y, m.d_inner,
                   stream_);
  }
  cuda::gated_rmsnorm(y, m.d_inner, proj, rows_in, L.gnorm, t_a_, m.d_inner, n, m.n_heads, m.head_dim,
                      static_cast<float>(m.eps), stream_);
  cuda::linear(*blas_, t_a_, m.d_inner, L.mamba_out, x_, H, n, m.d_inner, H, /*accumulate=*/true);
}

// ---- results -----------------------------------------------------------------------------------------------

template <class T>
Tensor CudaEngine<T>::logits() {
  const int64_t V = model_.config.vocab_size;
  Tensor t({last_logits_, V});
  if (last_logits_ == 0) return t;
  if (logits_on_host_) {
    t.data = host_logits_;
    return t;
  }
  set_device();
  ZEBRA_CUDA_CHECK(cudaMemcpyAsync(t.ptr(), logits_, sizeof(float) * last_logits_ * V, cudaMemcpyDeviceToHost, stream_));
  ZEBRA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return t;
}

template <class T>
std::vector<int32_t> CudaEngine<T>::sample(const std::vector<Sampler*>& samplers) {
  const int64_t V = model_.config.vocab_size, m = last_logits_;
  ZEBRA_CHECK(static_cast<int64_t>(samplers.size()) == m, "engine sample: ", samplers.size(),
              " samplers for the last run's ", m, " logits rows");
  for (int64_t i = 0; i < m; ++i) ZEBRA_CHECK(samplers[i], "engine sample: no sampler for row ", i);
  std::vector<int32_t> ids(static_cast<size_t>(m));
  if (m == 0) return ids;
  if (logits_on_host_) {
    for (int64_t i = 0; i < m; ++i) ids[i] = samplers[i]->sample(host_logits_.data() + i * V, V);
    return ids;
  }
  set_device();
  // Draws in row order, as the CPU engine samples row by row; rows that need more candidates than the kernel
  // holds are sampled on the host from their copied logits with the same draw.
  std::vector<double> draws(static_cast<size_t>(m), 0.0);
  std::vector<int64_t> host_rows;
  for (int64_t i = 0; i < m; ++i) {
    const SamplerParams& p = samplers[i]->params();
    cuda::SampleParams& sp = h_sample_[i];
    sp = cuda::SampleParams{};
    if (samplers[i]->greedy()) continue;  // temperature 0: greedy, no draw
    draws[i] = samplers[i]->draw_uniform();
    const int64_t k = p.top_k > 0 ? std::min<int64_t>(p.top_k, V) : V;
    if (k > cuda::kMaxSampleTopK) {
      host_rows.push_back(i);
      continue;  // stays greedy on the device; replaced below
    }
    sp.temperature = p.temperature, sp.top_k = static_cast<int32_t>(k), sp.top_p = p.top_p, sp.min_p = p.min_p;
    sp.u = draws[i];
  }
  ZEBRA_CUDA_CHECK(cudaMemcpyAsync(d_sample_, h_sample_, sizeof(cuda::SampleParams) * m, cudaMemcpyHostToDevice, stream_));
  cuda::sample_rows(logits_, V, V, d_sample_, m, d_ids_, stream_);
  ZEBRA_CUDA_CHECK(cudaMemcpyAsync(h_ids_, d_ids_, sizeof(int32_t) * m, cudaMemcpyDeviceToHost, stream_));
  ZEBRA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int64_t i = 0; i < m; ++i) ids[i] = h_ids_[i];
  std::vector<float> row(static_cast<size_t>(V));
  for (int64_t i : host_rows) {
    ZEBRA_CUDA_CHECK(cudaMemcpy(row.data(), logits_ + i * V, sizeof(float) * V, cudaMemcpyDeviceToHost));
    ids[i] = samplers[i]->sample_with(row.data(), V, draws[i]);
  }
  return ids;
}

}  // namespace

std::unique_ptr<Engine> make_cuda_engine(const Model& model, const EngineOptions& opts, const CudaEngineTuning& tuning) {
  const EngineOptions r = resolve_options(model, opts);
  if (r.dtype == "f32") return std::make_unique<CudaEngine<float>>(model, opts, tuning);
  return std::make_unique<CudaEngine<bf16>>(model, opts, tuning);
}

std::unique_ptr<Engine> make_cuda_engine(const Model& model, const EngineOptions& opts) {
  return make_cuda_engine(model, opts, CudaEngineTuning{});
}

}  // namespace zebra
