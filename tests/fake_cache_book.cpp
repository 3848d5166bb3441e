// A stand-in CacheBook for test_scheduler while src/cache/cache_book.cpp has not landed (CMakeLists links
// this file only then). It keeps the header's contract with plain linear scans; delete it once the real one
// is on main.
#include <algorithm>

#include "cache/cache_book.h"

namespace zebra {

namespace {
uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (z ^ (z >> 31)) | 1;  // never 0: 0 is "no parent"
}
}  // namespace

CacheBook::CacheBook(const CacheShape& shape) : shape_(shape) {
  const int64_t mb = shape_.max_blocks();
  if (shape_.n_blocks == 0) shape_.n_blocks = shape_.paged ? shape_.max_seqs * mb : 0;
  tables_.assign(shape_.max_seqs * mb, -1);
  lengths_.assign(shape_.max_seqs, 0);
  refs_.assign(shape_.n_blocks, 0);
  for (int64_t b = shape_.n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
  snap_refs_.assign(shape_.n_snapshots, 0);
  for (int64_t s = shape_.n_snapshots - 1; s >= 0; --s) free_snaps_.push_back(static_cast<int32_t>(s));
}

int64_t CacheBook::length(int32_t seq) const {
  ZEBRA_CHECK(seq >= 0 && seq < shape_.max_seqs, "cache: sequence ", seq, " out of range");
  return lengths_[seq];
}

static void unref(std::vector<int32_t>& refs, std::vector<int32_t>& free, int32_t b) {
  if (--refs[b] == 0) free.push_back(b);
}

int64_t CacheBook::blocks_needed(int32_t seq, int64_t n) const {
  if (!shape_.paged || n <= 0) return 0;
  const int64_t bt = shape_.block_tokens, len = lengths_[seq];
  const int32_t* t = block_table(seq);
  int64_t need = 0;
  for (int64_t j = len / bt; j < (len + n + bt - 1) / bt; ++j) {
    if (t[j] < 0) ++need;
    else if (j == len / bt && len % bt != 0 && refs_[t[j]] > 1) ++need;
  }
  return need;
}

int64_t CacheBook::free_blocks() const {
  int64_t n = static_cast<int64_t>(free_.size());
  for (const auto& [k, e] : index_)
    if (e.block >= 0 && refs_[e.block] == 1) ++n;
  return n;
}

int64_t CacheBook::used_blocks() const { return shape_.n_blocks - static_cast<int64_t>(free_.size()); }

void CacheBook::append(int32_t seq, int64_t n, bool reset, std::vector<BlockCopy>& copies) {
  length(seq);
  const int64_t len = reset ? 0 : lengths_[seq];
  if (len + n > shape_.n_ctx)
    throw CacheFullError(cat("cache: sequence ", seq, " would reach ", len + n, " positions, past n_ctx ", shape_.n_ctx));
  if (reset) clear(seq);
  const int64_t need = blocks_needed(seq, n);
  if (need > free_blocks())
    throw CacheFullError(cat("cache: ", need, " blocks needed, ", free_blocks(), " free"));
  if (!shape_.paged) {
    lengths_[seq] = len + n;
    return;
  }
  auto take = [&]() {
    while (free_.empty()) {  // evict the least recently used unheld leaf
      uint64_t best = 0;
      int64_t when = 0;
      for (const auto& [k, e] : index_)
        if (e.children == 0 && e.block >= 0 && refs_[e.block] == 1 && (best == 0 || e.last_use < when))
          best = k, when = e.last_use;
      ZEBRA_CHECK(best != 0, "fake cache book: nothing to evict");
      Entry e = index_[best];
      index_.erase(best);
      unref(refs_, free_, e.block);
      if (e.snapshot >= 0) release_snapshot_slot(e.snapshot);
      if (e.parent) index_[e.parent].children -= 1;
    }
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[b] = 1;
    return b;
  };
  const int64_t bt = shape_.block_tokens;
  int32_t* t = tables_.data() + seq * shape_.max_blocks();
  for (int64_t j = len / bt; j < (len + n + bt - 1) / bt; ++j) {
    if (t[j] < 0) {
      t[j] = take();
    } else if (j == len / bt && len % bt != 0 && refs_[t[j]] > 1) {
      const int32_t fresh = take();
      copies.push_back({t[j], fresh});
      unref(refs_, free_, t[j]);
      t[j] = fresh;
    }
  }
  lengths_[seq] = len + n;
}

void CacheBook::clear(int32_t seq) {
  length(seq);
  int32_t* t = tables_.data() + seq * shape_.max_blocks();
  for (int64_t j = 0; j < shape_.max_blocks(); ++j)
    if (t[j] >= 0) unref(refs_, free_, t[j]), t[j] = -1;
  lengths_[seq] = 0;
}

void CacheBook::fork(int32_t src, int32_t dst, int64_t n_tokens) {
  clear(dst);
  const int64_t bt = shape_.block_tokens;
  for (int64_t j = 0; shape_.paged && j < (n_tokens + bt - 1) / bt; ++j) {
    const int32_t b = block_table(src)[j];
    tables_[dst * shape_.max_blocks() + j] = b;
    refs_[b] += 1;
  }
  lengths_[dst] = n_tokens;
}

int32_t CacheBook::take_snapshot_slot() {
  if (free_snaps_.empty()) {
    uint64_t best = 0;
    int64_t when = 0;
    for (const auto& [k, e] : index_)
      if (e.snapshot >= 0 && snap_refs_[e.snapshot - shape_.max_seqs] == 1 && (best == 0 || e.last_use < when))
        best = k, when = e.last_use;
    if (best == 0) return -1;
    release_snapshot_slot(index_[best].snapshot);
    index_[best].snapshot = -1;
  }
  const int32_t s = free_snaps_.back();
  free_snaps_.pop_back();
  snap_refs_[s] = 1;
  return static_cast<int32_t>(shape_.max_seqs + s);
}

void CacheBook::release_snapshot_slot(int32_t slot) {
  const int64_t s = slot - shape_.max_seqs;
  if (--snap_refs_[s] == 0) free_snaps_.push_back(static_cast<int32_t>(s));
}

void CacheBook::insert_prefix(const std::vector<int32_t>& tokens, int64_t n_tokens, int32_t seq, int32_t snapshot) {
  const int64_t bt = shape_.block_tokens;
  ZEBRA_CHECK(n_tokens % bt == 0 && n_tokens > 0 && n_tokens <= lengths_[seq], "fake cache book: bad insert");
  uint64_t key = 0;
  for (int64_t k = 0; k < n_tokens / bt; ++k) {
    std::vector<int32_t> toks(tokens.begin() + k * bt, tokens.begin() + (k + 1) * bt);
    uint64_t h = key;
    for (int32_t t : toks) h = mix(h, static_cast<uint64_t>(t));
    auto it = index_.find(h);
    if (it == index_.end()) {
      Entry e;
      e.parent = key;
      e.tokens_of_block = toks;
      e.block = shape_.paged ? block_table(seq)[k] : -1;
      if (e.block >= 0) refs_[e.block] += 1;
      if (key) index_[key].children += 1;
      it = index_.emplace(h, e).first;
    }
    it->second.last_use = ++clock_;
    key = h;
  }
  if (snapshot >= 0) {
    Entry& e = index_[key];
    if (e.snapshot < 0) e.snapshot = snapshot;
    else release_snapshot_slot(snapshot);
  }
}

PrefixMatch CacheBook::lookup_prefix(const std::vector<int32_t>& tokens) {
  lookups_ += 1;
  const int64_t bt = shape_.block_tokens;
  PrefixMatch m;
  std::vector<uint64_t> chain;
  uint64_t key = 0;
  int64_t best = 0;
  for (int64_t k = 0; (k + 1) * bt < static_cast<int64_t>(tokens.size()); ++k) {
    uint64_t h = key;
    for (int64_t i = k * bt; i < (k + 1) * bt; ++i) h = mix(h, static_cast<uint64_t>(tokens[i]));
    auto it = index_.find(h);
    if (it == index_.end()) break;
    chain.push_back(h);
    if (!shape_.stateful || it->second.snapshot >= 0) best = k + 1;
    key = h;
  }
  if (best == 0) return m;
  for (int64_t k = 0; k < best; ++k) {
    Entry& e = index_[chain[k]];
    e.last_use = ++clock_;
    if (e.block >= 0) m.blocks.push_back(e.block), refs_[e.block] += 1;
  }
  m.tokens = best * bt;
  m.snapshot = index_[chain[best - 1]].snapshot;
  if (m.snapshot >= 0) snap_refs_[m.snapshot - shape_.max_seqs] += 1;
  hits_ += 1;
  tokens_reused_ += m.tokens;
  return m;
}

void CacheBook::attach_prefix(int32_t seq, PrefixMatch& match) {
  clear(seq);
  for (size_t k = 0; k < match.blocks.size(); ++k) tables_[seq * shape_.max_blocks() + k] = match.blocks[k];
  lengths_[seq] = match.tokens;
  if (match.snapshot >= 0) release_snapshot_slot(match.snapshot);  // the index still holds it
  match.blocks.clear();
}

void CacheBook::release_match(PrefixMatch& match) {
  for (int32_t b : match.blocks) unref(refs_, free_, b);
  if (match.snapshot >= 0) release_snapshot_slot(match.snapshot);
  match = PrefixMatch{};
}

}  // namespace zebra
