#include "cache/cache_book.h"

#include <algorithm>
#include <unordered_set>

namespace zebra {

namespace {

// Key of a prefix one block longer than the prefix keyed `parent` (splitmix64 over the block's tokens).
// 0 is reserved for "no parent".
uint64_t chain_hash(uint64_t parent, const int32_t* tokens, int64_t n) {
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int64_t i = 0; i < n; ++i) {
    h += static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h == 0 ? 1 : h;
}

}  // namespace

CacheBook::CacheBook(const CacheShape& shape) : shape_(shape) {
  ZEBRA_CHECK(shape_.max_seqs > 0, "cache: max_seqs must be positive, got ", shape_.max_seqs);
  ZEBRA_CHECK(shape_.n_ctx > 0, "cache: n_ctx must be positive, got ", shape_.n_ctx);
  ZEBRA_CHECK(shape_.block_tokens > 0, "cache: block_tokens must be positive, got ", shape_.block_tokens);
  ZEBRA_CHECK(shape_.n_blocks >= 0 && shape_.n_snapshots >= 0, "cache: n_blocks (", shape_.n_blocks,
              ") and n_snapshots (", shape_.n_snapshots, ") must not be negative");
  ZEBRA_CHECK(shape_.max_seqs * shape_.max_blocks() < (int64_t(1) << 31) && shape_.n_blocks < (int64_t(1) << 31) &&
                  shape_.max_seqs + shape_.n_snapshots < (int64_t(1) << 31),
              "cache: ", shape_.max_seqs, " sequences of ", shape_.max_blocks(), " blocks is too large");
  if (!shape_.paged) shape_.n_blocks = 0;  // nothing to page: lengths only
  else if (shape_.n_blocks == 0) shape_.n_blocks = shape_.max_seqs * shape_.max_blocks();
  tables_.assign(static_cast<size_t>(shape_.max_seqs * shape_.max_blocks()), -1);
  lengths_.assign(static_cast<size_t>(shape_.max_seqs), 0);
  refs_.assign(static_cast<size_t>(shape_.n_blocks), 0);
  free_.reserve(static_cast<size_t>(shape_.n_blocks));
  for (int64_t b = shape_.n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));  // 0 pops first
  snap_refs_.assign(static_cast<size_t>(shape_.n_snapshots), 0);
  for (int64_t s = shape_.n_snapshots - 1; s >= 0; --s) free_snaps_.push_back(static_cast<int32_t>(shape_.max_seqs + s));
}

void CacheBook::check_seq(int32_t seq, const char* what) const {
  ZEBRA_CHECK(seq >= 0 && seq < shape_.max_seqs, what, ": sequence ", seq, " is outside 0..", shape_.max_seqs - 1,
              " (the cache holds ", shape_.max_seqs, " sequences)");
}

int64_t CacheBook::length(int32_t seq) const {
  check_seq(seq, "cache length");
  return lengths_[seq];
}

int32_t CacheBook::block_refs(int32_t block) const {
  ZEBRA_CHECK(block >= 0 && block < shape_.n_blocks, "cache: block ", block, " is outside 0..", shape_.n_blocks - 1);
  return refs_[block];
}

void CacheBook::unref_block(int32_t b) {
  if (--refs_[b] == 0) free_.push_back(b);
}

int32_t CacheBook::pop_free_block() {
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

int64_t CacheBook::blocks_needed(int32_t seq, int64_t n) const {
  check_seq(seq, "cache blocks_needed");
  if (!shape_.paged || n <= 0) return 0;
  const int64_t base = lengths_[seq], bt = shape_.block_tokens;
  int64_t need = blocks_for(base + n) - blocks_for(base);
  if (base % bt != 0 && refs_[block_table(seq)[base / bt]] > 1) ++need;  // copy-on-write of the shared last block
  return need;
}

void CacheBook::append(int32_t seq, int64_t n, bool reset, std::vector<BlockCopy>& copies) {
  const SeqAppend a{seq, n, reset};
  append(&a, 1, copies);
}

void CacheBook::append(const SeqAppend* appends, int64_t count, std::vector<BlockCopy>& copies) {
  const int64_t bt = shape_.block_tokens, mb = shape_.max_blocks();
  // Checks that change nothing.
  for (int64_t i = 0; i < count; ++i) {
    const SeqAppend& a = appends[i];
    check_seq(a.seq, "cache append");
    ZEBRA_CHECK(a.n >= 0, "cache append: sequence ", a.seq, ": cannot append ", a.n, " positions");
    for (int64_t j = 0; j < i; ++j)
      ZEBRA_CHECK(appends[j].seq != a.seq, "cache append: sequence ", a.seq, " appears twice in one forward");
    const int64_t end = (a.reset ? 0 : lengths_[a.seq]) + a.n;
    if (end > shape_.n_ctx)
      throw CacheFullError(cat("cache full: sequence ", a.seq, " would hold ", end, " positions but the context is ",
                               shape_.n_ctx, " (", a.reset ? 0 : lengths_[a.seq], " held, ", a.n, " appended)"));
  }
  if (!shape_.paged) {
    for (int64_t i = 0; i < count; ++i) lengths_[appends[i].seq] = (appends[i].reset ? 0 : lengths_[appends[i].seq]) + appends[i].n;
    return;
  }

  // Reset sequences give their blocks back first (undone below if the batch does not fit).
  struct Saved {
    int32_t seq;
    int64_t length;
    std::vector<int32_t> row;
  };
  std::vector<Saved> saved;
  const size_t free_mark = free_.size();
  for (int64_t i = 0; i < count; ++i) {
    const SeqAppend& a = appends[i];
    if (!a.reset || lengths_[a.seq] == 0) continue;
    const int32_t* row = block_table(a.seq);
    saved.push_back({a.seq, lengths_[a.seq], std::vector<int32_t>(row, row + mb)});
    clear(a.seq);
  }

  // New blocks the whole batch needs: the positions past each sequence's last block, plus a copy-on-write
  // block where a sequence writes into a partly filled block that someone else still references (two forks
  // of one block appending in the same forward: the first copies, the second then owns it alone).
  int64_t need = 0;
  std::vector<std::pair<int32_t, int32_t>> cow_taken;  // (block, references given up by earlier copies)
  for (int64_t i = 0; i < count; ++i) {
    const SeqAppend& a = appends[i];
    if (a.n == 0) continue;
    const int64_t base = lengths_[a.seq];
    need += blocks_for(base + a.n) - blocks_for(base);
    if (base % bt != 0) {
      const int32_t b = block_table(a.seq)[base / bt];
      int32_t refs = refs_[b];
      auto it = std::find_if(cow_taken.begin(), cow_taken.end(), [&](auto& p) { return p.first == b; });
      if (it != cow_taken.end()) refs -= it->second;
      if (refs > 1) {
        ++need;
        if (it != cow_taken.end()) ++it->second;
        else cow_taken.push_back({b, 1});
      }
    }
  }
  const int64_t free_now = static_cast<int64_t>(free_.size());
  const int64_t evictable = need > free_now ? evictable_blocks() : 0;
  if (need > free_now + evictable) {
    // Undo the resets exactly: the blocks they freed are the last ones pushed onto the free stack.
    free_.resize(free_mark);
    for (const Saved& s : saved) {
      int32_t* row = tables_.data() + s.seq * mb;
      std::copy(s.row.begin(), s.row.end(), row);
      for (int32_t b : s.row)
        if (b >= 0) ++refs_[b];
      lengths_[s.seq] = s.length;
    }
    const int64_t free_after = static_cast<int64_t>(free_.size());
    const int64_t evict_after = evictable_blocks();
    if (count == 1)
      throw CacheFullError(cat("cache full: sequence ", appends[0].seq, " needs ", need, " more blocks of ", bt,
                               " positions but only ", free_after + evict_after, " of ", shape_.n_blocks,
                               " are free (", evict_after, " of them held by unused cached prefixes)"));
    throw CacheFullError(cat("cache full: the forward's ", count, " sequences need ", need, " more blocks of ", bt,
                             " positions but only ", free_after + evict_after, " of ", shape_.n_blocks,
                             " are free (", evict_after, " of them held by unused cached prefixes)"));
  }
  while (static_cast<int64_t>(free_.size()) < need) {
    const bool evicted = evict_one(false);
    ZEBRA_CHECK(evicted, "cache: internal error: evictable blocks counted but none could be evicted");
  }

  for (int64_t i = 0; i < count; ++i) {
    const SeqAppend& a = appends[i];
    if (a.n == 0) continue;
    int32_t* row = tables_.data() + a.seq * mb;
    const int64_t base = lengths_[a.seq];
    if (base % bt != 0) {
      int32_t& b = row[base / bt];
      if (refs_[b] > 1) {
        const int32_t fresh = pop_free_block();
        copies.push_back({b, fresh});
        --refs_[b];  // still referenced by the others
        b = fresh;
      }
    }
    for (int64_t k = blocks_for(base); k < blocks_for(base + a.n); ++k) row[k] = pop_free_block();
    lengths_[a.seq] = base + a.n;
  }
}

void CacheBook::clear(int32_t seq) {
  check_seq(seq, "cache clear");
  if (shape_.paged) {
    int32_t* row = tables_.data() + seq * shape_.max_blocks();
    for (int64_t k = 0; k < shape_.max_blocks(); ++k)
      if (row[k] >= 0) unref_block(row[k]), row[k] = -1;
  }
  lengths_[seq] = 0;
}

void CacheBook::fork(int32_t src, int32_t dst, int64_t n_tokens) {
  check_seq(src, "cache fork");
  check_seq(dst, "cache fork");
  ZEBRA_CHECK(n_tokens >= 0 && n_tokens <= lengths_[src], "cache fork: sequence ", src, " holds ", lengths_[src],
              " positions; cannot fork its first ", n_tokens);
  ZEBRA_CHECK(!shape_.stateful || n_tokens == lengths_[src], "cache fork: a Mamba2 state cannot be rewound: fork of "
              "sequence ", src, " must take all its ", lengths_[src], " positions, not ", n_tokens);
  const int64_t mb = shape_.max_blocks();
  if (src == dst) {  // truncation
    if (shape_.paged) {
      int32_t* row = tables_.data() + src * mb;
      for (int64_t k = blocks_for(n_tokens); k < mb; ++k)
        if (row[k] >= 0) unref_block(row[k]), row[k] = -1;
    }
    lengths_[src] = n_tokens;
    return;
  }
  clear(dst);
  if (shape_.paged) {
    const int32_t* from = tables_.data() + src * mb;
    int32_t* to = tables_.data() + dst * mb;
    for (int64_t k = 0; k < blocks_for(n_tokens); ++k) to[k] = from[k], ++refs_[from[k]];
  }
  lengths_[dst] = n_tokens;
}

// ---- snapshots ----

int32_t CacheBook::take_snapshot_slot() {
  while (free_snaps_.empty())
    if (!evict_one(true)) return -1;
  const int32_t s = free_snaps_.back();
  free_snaps_.pop_back();
  snap_ref(s) = 1;
  return s;
}

void CacheBook::release_snapshot_slot(int32_t slot) {
  ZEBRA_CHECK(slot >= shape_.max_seqs && slot < shape_.max_seqs + shape_.n_snapshots, "cache: snapshot slot ", slot,
              " is outside ", shape_.max_seqs, "..", shape_.max_seqs + shape_.n_snapshots - 1);
  ZEBRA_CHECK(snap_ref(slot) > 0, "cache: snapshot slot ", slot, " is not taken");
  if (--snap_ref(slot) == 0) free_snaps_.push_back(slot);
}

// ---- prefix index ----

bool CacheBook::entry_held(const Entry& e) const {
  return (e.block >= 0 && refs_[e.block] > 1) || (e.snapshot >= 0 && snap_ref(e.snapshot) > 1);
}

std::unordered_set<uint64_t> CacheBook::pinned_entries() const {
  // An entry can go once its whole subtree can: pin every held entry and its ancestors.
  std::unordered_set<uint64_t> pinned;
  for (const auto& [key, e] : index_) {
    if (!entry_held(e)) continue;
    for (uint64_t k = key; k != 0 && pinned.insert(k).second;) k = index_.at(k).parent;
  }
  return pinned;
}

int64_t CacheBook::evictable_blocks() const {
  if (index_.empty()) return 0;
  const std::unordered_set<uint64_t> pinned = pinned_entries();
  int64_t n = 0;
  for (const auto& [key, e] : index_)
    if (e.block >= 0 && !pinned.count(key)) ++n;
  return n;
}

bool CacheBook::evict_one(bool need_snapshot) {
  if (need_snapshot) {
    // Evicting leaves only helps if some snapshot would come free with them.
    const std::unordered_set<uint64_t> pinned = pinned_entries();
    bool any = false;
    for (const auto& [key, e] : index_) any = any || (e.snapshot >= 0 && !pinned.count(key));
    if (!any) return false;
  }
  const Entry* best = nullptr;
  uint64_t best_key = 0;
  for (const auto& [key, e] : index_) {
    if (e.children > 0 || entry_held(e)) continue;
    if (!best || e.last_use < best->last_use || (e.last_use == best->last_use && key < best_key)) best = &e, best_key = key;
  }
  if (!best) return false;
  evict(best_key);
  return true;
}

void CacheBook::evict(uint64_t key) {
  const Entry e = index_.at(key);
  index_.erase(key);
  if (e.block >= 0) unref_block(e.block);
  if (e.snapshot >= 0) release_snapshot_slot(e.snapshot);
  if (e.parent != 0) --index_.at(e.parent).children;
}

void CacheBook::insert_prefix(const std::vector<int32_t>& tokens, int64_t n_tokens, int32_t seq, int32_t snapshot) {
  check_seq(seq, "prefix insert");
  const int64_t bt = shape_.block_tokens;
  ZEBRA_CHECK(n_tokens > 0 && n_tokens % bt == 0, "prefix insert: ", n_tokens,
              " positions is not a positive multiple of the block size ", bt);
  ZEBRA_CHECK(n_tokens <= lengths_[seq] && n_tokens <= static_cast<int64_t>(tokens.size()), "prefix insert: sequence ",
              seq, " holds ", lengths_[seq], " positions and ", tokens.size(), " tokens were given; cannot register ",
              n_tokens);
  if (snapshot >= 0) {
    ZEBRA_CHECK(shape_.stateful, "prefix insert: a snapshot was given but the model has no Mamba2 layers");
    ZEBRA_CHECK(snapshot >= shape_.max_seqs && snapshot < shape_.max_seqs + shape_.n_snapshots && snap_ref(snapshot) > 0,
                "prefix insert: snapshot slot ", snapshot, " is not a taken snapshot slot");
  }
  ++clock_;
  uint64_t parent = 0;
  const int64_t k_end = n_tokens / bt;
  for (int64_t k = 0; k < k_end; ++k) {
    const int32_t* blk = tokens.data() + k * bt;
    const uint64_t key = chain_hash(parent, blk, bt);
    auto it = index_.find(key);
    if (it != index_.end()) {
      Entry& e = it->second;
      if (e.parent != parent || !std::equal(blk, blk + bt, e.tokens_of_block.begin())) break;  // hash collision
      e.last_use = clock_;
    } else {
      Entry e;
      e.parent = parent;
      e.tokens_of_block.assign(blk, blk + bt);
      if (shape_.paged) e.block = block_table(seq)[k], ++refs_[e.block];
      e.last_use = clock_;
      if (parent != 0) ++index_.at(parent).children;
      it = index_.emplace(key, std::move(e)).first;
    }
    if (k + 1 == k_end && snapshot >= 0 && it->second.snapshot < 0) {
      it->second.snapshot = snapshot;  // the index takes over the caller's reference
      snapshot = -1;
    }
    parent = key;
  }
  if (snapshot >= 0) release_snapshot_slot(snapshot);  // the prefix already had one (or could not be registered)
}

PrefixMatch CacheBook::lookup_prefix(const std::vector<int32_t>& tokens) {
  ++lookups_;
  ++clock_;
  const int64_t bt = shape_.block_tokens, n = static_cast<int64_t>(tokens.size());
  std::vector<const Entry*> path;
  int64_t best = 0;
  uint64_t parent = 0;
  for (int64_t k = 0; (k + 1) * bt < n; ++k) {
    const int32_t* blk = tokens.data() + k * bt;
    const uint64_t key = chain_hash(parent, blk, bt);
    auto it = index_.find(key);
    if (it == index_.end()) break;
    Entry& e = it->second;
    if (e.parent != parent || !std::equal(blk, blk + bt, e.tokens_of_block.begin())) break;
    e.last_use = clock_;
    path.push_back(&e);
    if (!shape_.stateful || e.snapshot >= 0) best = k + 1;
    parent = key;
  }
  PrefixMatch m;
  if (best == 0) return m;
  ++hits_;
  m.tokens = best * bt;
  m.held = true;
  if (shape_.paged)
    for (int64_t k = 0; k < best; ++k) m.blocks.push_back(path[k]->block), ++refs_[path[k]->block];
  if (shape_.stateful) m.snapshot = path[best - 1]->snapshot, ++snap_ref(m.snapshot);
  return m;
}

void CacheBook::attach_prefix(int32_t seq, PrefixMatch& match) {
  check_seq(seq, "prefix attach");
  ZEBRA_CHECK(match.held || match.tokens == 0, "prefix attach: the match was already attached or released");
  ZEBRA_CHECK(match.tokens <= shape_.n_ctx, "prefix attach: the match holds ", match.tokens,
              " positions, past the context ", shape_.n_ctx);
  clear(seq);
  int32_t* row = tables_.data() + seq * shape_.max_blocks();
  std::copy(match.blocks.begin(), match.blocks.end(), row);  // the match's references become the sequence's
  lengths_[seq] = match.tokens;
  if (match.snapshot >= 0 && match.held) release_snapshot_slot(match.snapshot);  // the index still holds it
  tokens_reused_ += match.tokens;
  match.blocks.clear();
  match.held = false;
}

void CacheBook::release_match(PrefixMatch& match) {
  if (!match.held) return;
  for (int32_t b : match.blocks) unref_block(b);
  if (match.snapshot >= 0) release_snapshot_slot(match.snapshot);
  match.blocks.clear();
  match.held = false;
}

// ---- accounting ----

int64_t CacheBook::free_blocks() const { return static_cast<int64_t>(free_.size()) + evictable_blocks(); }

int64_t CacheBook::used_blocks() const { return shape_.n_blocks - static_cast<int64_t>(free_.size()); }

}  // namespace zebra
