// The device-agnostic bookkeeping of an engine's caches: which blocks each sequence's positions live in
// (reference-counted, so a prefix shared by several sequences is stored once), how long each sequence is,
// which state slots hold Mamba2 snapshots, and an index of computed prefixes for reuse across requests.
// It owns no cache memory: the engine that owns the storage (host arrays on the CPU, device buffers on the
// GPU) asks it where to write and performs the copies it returns.
//
// Terms:
//   block      `block_tokens` consecutive positions of one sequence in every paged layer (attention K|V,
//              MLA latents); one block id indexes all paged layers at once.
//   state slot one sequence's Mamba2 conv window + SSM state in every Mamba2 layer. Slots 0..max_seqs-1
//              belong to the sequences; slots max_seqs.. hold snapshots.
//   snapshot   the Mamba2 states of a sequence at some length, copied into a spare slot so another sequence
//              can later continue from there (an SSM state cannot be rewound, only restored).
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/error.h"

namespace zebra {

// Thrown when the blocks or positions a request needs are not there; the message names what was needed and
// what is free, so a caller can wait (the scheduler) or tell the user what fits.
class CacheFullError : public Error {
 public:
  using Error::Error;
};

struct CacheShape {
  int64_t max_seqs = 1;       // sequences that hold state at once (ids 0..max_seqs-1)
  int64_t n_ctx = 0;          // longest sequence, in positions
  int64_t block_tokens = 16;  // positions per block
  int64_t n_blocks = 0;       // blocks in the pool (0 = max_seqs * ceil(n_ctx / block_tokens): no overcommit)
  int64_t n_snapshots = 0;    // spare Mamba2 state slots for snapshots
  bool paged = true;          // the model has attention or MLA layers (else no blocks are allocated)
  bool stateful = false;      // the model has Mamba2 layers
  int64_t max_blocks() const { return (n_ctx + block_tokens - 1) / block_tokens; }  // per sequence
};

// A copy the storage owner must make in every paged layer before the next write: block `src` -> `dst`
// (copy-on-write of a partly filled block that another sequence or the prefix index still references).
struct BlockCopy {
  int32_t src = -1, dst = -1;
};

// What a prefix lookup found: the first `tokens` positions of the prompt are already computed in `blocks`
// (retained for the caller until attach_prefix or release_match), with the Mamba2 states at exactly that
// length in snapshot slot `snapshot` (-1 when the model has no Mamba2 layers).
struct PrefixMatch {
  int64_t tokens = 0;
  std::vector<int32_t> blocks;
  int32_t snapshot = -1;
  bool held = false;  // the match still retains its blocks and snapshot (cleared by attach or release)
};

// One sequence's share of a forward: append `n` positions to `seq`, after resetting it to length 0 when
// `reset` (the batch starts the sequence afresh at position 0).
struct SeqAppend {
  int32_t seq = 0;
  int64_t n = 0;
  bool reset = false;
};

class CacheBook {
 public:
  explicit CacheBook(const CacheShape& shape);
  const CacheShape& shape() const { return shape_; }

  // ---- sequences ----
  int64_t length(int32_t seq) const;
  // Makes room to append `n` positions to `seq` (after resetting it to length 0 when `reset`): allocates
  // blocks, and when the block to be written is shared, a fresh block plus the copy that un-shares it
  // (appended to `copies`). Nothing changes when it throws (CacheFullError: not enough free blocks, even
  // after evicting unused prefixes; or the sequence would pass n_ctx).
  void append(int32_t seq, int64_t n, bool reset, std::vector<BlockCopy>& copies);
  // The same for every sequence of a forward at once (distinct seqs): all appends happen, or none (a
  // batch that does not fit as a whole throws CacheFullError and leaves the book unchanged).
  void append(const SeqAppend* appends, int64_t count, std::vector<BlockCopy>& copies);
  // Frees every block of `seq` (a block shared with others stays for them) and sets its length to 0.
  void clear(int32_t seq);
  // `dst` (cleared first) continues exactly where `src` stands after its first `n_tokens` positions: the
  // full blocks are shared, the partly filled last one is shared too and copied on the next write.
  // (Mamba2 states are the storage owner's to copy; fork of a stateful model needs n_tokens == length(src).)
  // src == dst truncates the sequence to n_tokens (stateless models).
  void fork(int32_t src, int32_t dst, int64_t n_tokens);
  // Dense block tables [max_seqs][max_blocks] (-1 = none), as the kernels read them (PagedLayer).
  const int32_t* block_tables() const { return tables_.data(); }
  const int32_t* block_table(int32_t seq) const { return tables_.data() + seq * shape_.max_blocks(); }
  // Blocks `seq` would need to grow by `n` positions (the scheduler's admission test), COW copy included.
  int64_t blocks_needed(int32_t seq, int64_t n) const;
  // References to `block` (sequences, the prefix index and outstanding matches); 0 = free. For tests.
  int32_t block_refs(int32_t block) const;

  // ---- snapshots ----
  // A free snapshot slot (max_seqs..max_seqs+n_snapshots-1), evicting the least recently used unreferenced
  // prefix entry if needed; -1 when none can be had. The caller copies the states into it, and owns it
  // until release_snapshot_slot or insert_prefix.
  int32_t take_snapshot_slot();
  void release_snapshot_slot(int32_t slot);
  int64_t free_snapshot_slots() const { return static_cast<int64_t>(free_snaps_.size()); }

  // ---- prefix index (reuse across requests) ----
  // Registers that the first `n_tokens` (a multiple of block_tokens) positions of `seq` hold `tokens[0..n_tokens)`,
  // with its Mamba2 states at that length in `snapshot` (or -1 for a stateless model). The index retains the
  // blocks and takes over the snapshot slot (released at once when that prefix already has one); they are
  // evicted least recently used when blocks or slots run out.
  void insert_prefix(const std::vector<int32_t>& tokens, int64_t n_tokens, int32_t seq, int32_t snapshot);
  // Longest registered prefix of `tokens` shorter than `tokens` itself (at least one token is left to run,
  // for its logits), at block granularity; for a stateful model only lengths that have a snapshot.
  // The match retains its blocks and snapshot until attach_prefix or release_match.
  PrefixMatch lookup_prefix(const std::vector<int32_t>& tokens);
  // `seq` (cleared first) takes the match's blocks and length; the storage owner restores its snapshot
  // (still held by the index: nothing evicts it before the next append or take_snapshot_slot).
  void attach_prefix(int32_t seq, PrefixMatch& match);
  void release_match(PrefixMatch& match);
  int64_t prefix_entries() const { return static_cast<int64_t>(index_.size()); }

  // ---- accounting ----
  int64_t free_blocks() const;      // free now, plus what evicting unused prefixes would free
  int64_t used_blocks() const;      // blocks holding something (sequences, prefixes, matches)
  int64_t prefix_hits() const { return hits_; }
  int64_t prefix_lookups() const { return lookups_; }
  int64_t prefix_tokens_reused() const { return tokens_reused_; }

 private:
  struct Entry {  // one registered prefix of k blocks
    uint64_t parent = 0;  // key of the prefix one block shorter (0 = none: the first block)
    std::vector<int32_t> tokens_of_block;  // this block's tokens (collision check)
    int32_t block = -1;
    int32_t snapshot = -1;
    int64_t last_use = 0;
    int32_t children = 0;
  };
  void check_seq(int32_t seq, const char* what) const;
  int64_t blocks_for(int64_t positions) const { return (positions + shape_.block_tokens - 1) / shape_.block_tokens; }
  int32_t& snap_ref(int32_t slot) { return snap_refs_[slot - shape_.max_seqs]; }
  int32_t snap_ref(int32_t slot) const { return snap_refs_[slot - shape_.max_seqs]; }
  void unref_block(int32_t b);
  // Blocks the index would give back if every entry no sequence or match holds were evicted.
  int64_t evictable_blocks() const;
  std::unordered_set<uint64_t> pinned_entries() const;  // held entries and their ancestors
  bool entry_held(const Entry& e) const;
  // Evicts the least recently used unheld leaf (with a snapshot only when `need_snapshot`); false if none.
  bool evict_one(bool need_snapshot);
  void evict(uint64_t key);
  int32_t pop_free_block();

  CacheShape shape_;
  std::vector<int32_t> tables_;   // [max_seqs][max_blocks]
  std::vector<int64_t> lengths_;  // [max_seqs]
  std::vector<int32_t> refs_;     // [n_blocks] references (sequences + prefix index + matches)
  std::vector<int32_t> free_;     // free block ids (a stack)
  std::vector<int32_t> snap_refs_;   // [n_snapshots] owners of each snapshot slot (caller, index, matches)
  std::vector<int32_t> free_snaps_;  // free snapshot slot ids
  std::unordered_map<uint64_t, Entry> index_;  // hash of the whole prefix -> its last block
  int64_t clock_ = 0, hits_ = 0, lookups_ = 0, tokens_reused_ = 0;
};

}  // namespace zebra
