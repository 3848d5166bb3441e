// The engine: the one seam every front end runs a model through (generate, chat, perplexity, eval, bench,
// synth, the teacher passes of select/ILD/KD, and the server's scheduler). It owns the model's caches and
// the forward's workspace on its device; commands never touch layers or cache memory directly, so a new
// backend (CUDA) gives every command `--device` without changes of its own.
//
// A forward runs a Batch: tokens of any number of sequences at mixed positions (prefill chunks and decode
// tokens together). Sequence ids are 0..max_seqs-1. A token at position 0 starts its sequence afresh; any
// other token must be at the sequence's current length (the next position), so a batch can only append.
// Logits come back only for the tokens that asked for them, in batch order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_book.h"
#include "core/tensor.h"
#include "model/batch.h"
#include "model/model.h"
#include "model/sampler.h"

namespace zebra {

enum class Device { Cpu, Cuda };
const char* device_name(Device d);
// "cpu", "cuda" or "auto" (cuda when a usable GPU is visible, else cpu); throws naming the flag otherwise.
Device parse_device(const std::string& text);

struct EngineOptions {
  Device device = Device::Cpu;
  int64_t max_seqs = 1;          // sequences holding state at once
  int64_t n_ctx = 0;             // positions per sequence; 0 = the model's max_position_embeddings
  int64_t block_tokens = 16;     // positions per cache block (the granularity of prefix sharing)
  int64_t n_blocks = 0;          // 0 = enough for every sequence at n_ctx (no overcommit)
  int64_t n_snapshots = 0;       // spare Mamba2 state slots (prefix snapshots, fork sources)
  int64_t max_batch_tokens = 0;  // largest forward the workspace is planned for; 0 = max(n_ctx, max_seqs)
  std::string dtype = "auto";    // cuda: "bf16" (auto) or "f32"; cpu: "f32"
  int threads = 0;               // cpu: worker threads (0 = all cores)
};

// What the engine has allocated, in bytes, and how the cache is used now.
struct MemoryReport {
  int64_t weight_bytes = 0;
  int64_t cache_bytes = 0;       // paged blocks + state slots, as allocated
  int64_t workspace_bytes = 0;
  int64_t kv_bytes_per_token = 0;       // all paged layers, at the cache's dtype
  int64_t state_bytes_per_sequence = 0; // all Mamba2 layers (conv window + SSM state)
  int64_t blocks_total = 0, blocks_used = 0, block_tokens = 0;
  int64_t snapshots_total = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const Model& model() const = 0;  // config, layer kinds, host weights
  virtual const EngineOptions& options() const = 0;
  virtual CacheBook& book() = 0;           // lengths, blocks, snapshots, prefix index (no storage)

  // Runs one forward over the batch, appending every token to its sequence's cache. Throws zebra::Error
  // (nothing changed) for tokens outside the vocabulary, sequences outside 0..max_seqs-1, positions that
  // neither start nor continue their sequence or pass n_ctx, a batch larger than max_batch_tokens, or a
  // cache without room (CacheFullError). With a trace (CPU only): every layer's input and mixer output.
  virtual void run(const Batch& batch, ForwardTrace* trace = nullptr) = 0;
  // The last run's logits [n_logits, vocab] on the host (a copy from the device for CUDA).
  virtual Tensor logits() = 0;
  // One token per logits row of the last run, row i drawn by samplers[i] (greedy, temperature, top-k,
  // top-p, min-p; the sampler supplies the uniform draw, so CPU and GPU sample alike). CUDA samples on the
  // device and copies back only the ids.
  virtual std::vector<int32_t> sample(const std::vector<Sampler*>& samplers) = 0;

  // ---- sequences ----
  int64_t seq_length(int32_t seq) { return book().length(seq); }
  virtual void seq_clear(int32_t seq) = 0;
  // `dst` continues exactly as `src` after its first n_tokens positions (blocks shared, Mamba2 states
  // copied). A Mamba2 state cannot be rewound: for a model with Mamba2 layers n_tokens must equal
  // seq_length(src), or the call throws.
  virtual void seq_fork(int32_t src, int32_t dst, int64_t n_tokens) = 0;
  // Copies the Mamba2 states of `seq` (at its current length) into snapshot slot `slot` (from
  // book().take_snapshot_slot()), and back into a sequence. No-ops for a model without Mamba2 layers.
  virtual void snapshot_save(int32_t seq, int32_t slot) = 0;
  virtual void snapshot_restore(int32_t slot, int32_t seq) = 0;
  // `seq` (cleared first) continues after a prefix found by book().lookup_prefix: its blocks are attached
  // and the snapshot restored.
  void attach_prefix(int32_t seq, PrefixMatch& match) {
    book().attach_prefix(seq, match);
    if (match.snapshot >= 0) snapshot_restore(match.snapshot, seq);
  }

  virtual MemoryReport memory() const = 0;
};

// The engine for `opts.device` over `model` (which must outlive it). Throws with a clear message when the
// device is unavailable (e.g. no GPU visible: "use --device cpu") or the cache does not fit (bytes needed
// and what would fit).
std::unique_ptr<Engine> make_engine(const Model& model, const EngineOptions& opts);

}  // namespace zebra
