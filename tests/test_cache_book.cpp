// CacheBook: block allocation and reference counts, copy-on-write, fork/clear, snapshots, the prefix index,
// errors. The test plays the storage owner: every block position holds the token written there, copies are
// performed as the book asks, and each sequence must always read back exactly its own tokens.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "cache/cache_book.h"
#include "support.h"

using namespace zebra;

namespace {

// The storage a CacheBook indexes, one token per position, and each sequence's reference contents.
struct Harness {
  CacheBook book;
  std::vector<int32_t> store;             // [n_blocks * block_tokens] token at each block position (-1 unset)
  std::vector<std::vector<int32_t>> ref;  // [max_seqs] what each sequence must read back
  std::vector<PrefixMatch> matches;       // outstanding lookups
  std::vector<std::vector<int32_t>> match_tokens;  // what each covers
  explicit Harness(const CacheShape& s)
      : book(s), store(book.shape().n_blocks * s.block_tokens, -1), ref(s.max_seqs) {}

  int64_t bt() const { return book.shape().block_tokens; }
  int32_t& at(int32_t seq, int64_t pos) {
    const int32_t b = book.block_table(seq)[pos / bt()];
    EXPECT_GE(b, 0) << "seq " << seq << " pos " << pos;
    return store[b * bt() + pos % bt()];
  }
  void apply(const std::vector<BlockCopy>& copies) {
    for (const BlockCopy& c : copies)
      std::copy_n(store.begin() + c.src * bt(), bt(), store.begin() + c.dst * bt());
  }
  // Appends tokens to seq (after a reset when asked), checking that a copy comes exactly when the block
  // written is shared.
  void append(int32_t seq, const std::vector<int32_t>& toks, bool reset) {
    const int64_t base = reset ? 0 : book.length(seq);
    bool expect_cow = false;
    if (!reset && base % bt() != 0 && !toks.empty()) expect_cow = book.block_refs(book.block_table(seq)[base / bt()]) > 1;
    const int64_t need = reset ? -1 : book.blocks_needed(seq, static_cast<int64_t>(toks.size()));
    const int64_t used = book.used_blocks(), entries = book.prefix_entries();
    std::vector<BlockCopy> copies;
    book.append(seq, static_cast<int64_t>(toks.size()), reset, copies);
    if (!reset) {
      EXPECT_EQ(copies.size(), expect_cow ? 1u : 0u);
      // Each evicted prefix entry gave one block back.
      EXPECT_EQ(book.used_blocks() - used + (entries - book.prefix_entries()), need)
          << "blocks_needed must predict the append";
    }
    apply(copies);
    if (reset) ref[seq].clear();
    for (size_t i = 0; i < toks.size(); ++i) at(seq, base + static_cast<int64_t>(i)) = toks[i];
    ref[seq].insert(ref[seq].end(), toks.begin(), toks.end());
  }
  void fork(int32_t src, int32_t dst, int64_t n) {
    book.fork(src, dst, n);
    std::vector<int32_t> keep(ref[src].begin(), ref[src].begin() + n);
    ref[dst] = keep;
  }
  void clear(int32_t seq) {
    book.clear(seq);
    ref[seq].clear();
  }

  // Everything observable, to show that a failed call changed nothing.
  std::vector<int64_t> dump() const {
    const CacheShape& s = book.shape();
    std::vector<int64_t> d(book.block_tables(), book.block_tables() + s.max_seqs * s.max_blocks());
    for (int32_t q = 0; q < s.max_seqs; ++q) d.push_back(book.length(q));
    for (int32_t b = 0; b < s.n_blocks; ++b) d.push_back(book.block_refs(b));
    d.push_back(book.free_blocks()), d.push_back(book.used_blocks()), d.push_back(book.prefix_entries());
    d.push_back(book.free_snapshot_slots());
    return d;
  }

  // The invariants: contents, table shape, reference counts against an independent count.
  void check() {
    const CacheShape& s = book.shape();
    std::vector<int32_t> expected(s.n_blocks, 0);
    for (int32_t q = 0; q < s.max_seqs; ++q) {
      const int64_t len = book.length(q);
      ASSERT_EQ(len, static_cast<int64_t>(ref[q].size())) << "seq " << q;
      const int64_t nb = (len + bt() - 1) / bt();
      for (int64_t k = 0; k < s.max_blocks(); ++k) {
        const int32_t b = book.block_table(q)[k];
        ASSERT_EQ(b >= 0, k < nb) << "seq " << q << " block " << k;
        if (b >= 0) ++expected[b];
      }
      for (int64_t p = 0; p < len; ++p) ASSERT_EQ(at(q, p), ref[q][p]) << "seq " << q << " pos " << p;
    }
    for (const PrefixMatch& m : matches)
      for (int32_t b : m.blocks) ++expected[b];
    int64_t extra = 0, used = 0;
    for (int32_t b = 0; b < s.n_blocks; ++b) {
      const int32_t r = book.block_refs(b);
      ASSERT_GE(r, expected[b]) << "block " << b;
      ASSERT_LE(r - expected[b], 1) << "block " << b << ": at most one index entry holds a block";
      extra += r - expected[b];
      used += r > 0;
    }
    ASSERT_EQ(extra, book.prefix_entries()) << "each index entry references exactly one block";
    ASSERT_EQ(used, book.used_blocks());
    ASSERT_LE(book.free_blocks(), s.n_blocks - (used - extra));
  }
};

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

CacheShape shape(int64_t seqs, int64_t ctx, int64_t bt, int64_t blocks = 0) {
  CacheShape s;
  s.max_seqs = seqs, s.n_ctx = ctx, s.block_tokens = bt, s.n_blocks = blocks;
  return s;
}

}  // namespace

TEST(CacheBook, AllocatesBlocksAsSequencesGrowAndFreesThemOnClear) {
  Harness h(shape(2, 20, 4));
  EXPECT_EQ(h.book.shape().n_blocks, 10);  // 2 * ceil(20/4): no overcommit by default
  h.append(0, {1, 2, 3}, false);
  EXPECT_EQ(h.book.used_blocks(), 1);
  h.append(0, {4, 5}, false);
  EXPECT_EQ(h.book.used_blocks(), 2);
  EXPECT_EQ(h.book.blocks_needed(0, 3), 0);  // positions 5..7 fit the second block, 8 needs a third
  EXPECT_EQ(h.book.blocks_needed(0, 4), 1);
  h.check();
  h.clear(0);
  EXPECT_EQ(h.book.used_blocks(), 0);
  EXPECT_EQ(h.book.free_blocks(), 10);
  h.check();
}

TEST(CacheBook, ForkSharesBlocksAndCopiesThePartialOneOnWrite) {
  Harness h(shape(3, 32, 4));
  h.append(0, {1, 2, 3, 4, 5, 6}, false);  // block 0 full, block 1 half
  h.fork(0, 1, 6);
  EXPECT_EQ(h.book.used_blocks(), 2);  // nothing copied yet
  EXPECT_EQ(h.book.block_table(1)[0], h.book.block_table(0)[0]);
  EXPECT_EQ(h.book.block_table(1)[1], h.book.block_table(0)[1]);
  EXPECT_EQ(h.book.blocks_needed(1, 1), 1);  // the copy
  h.append(1, {70}, false);                  // copies block 1 for seq 1
  EXPECT_EQ(h.book.used_blocks(), 3);
  EXPECT_NE(h.book.block_table(1)[1], h.book.block_table(0)[1]);
  h.append(0, {7}, false);  // seq 0 now owns its block alone: no copy
  EXPECT_EQ(h.book.used_blocks(), 3);
  h.check();
  // A fork of the first 5 positions shares the second block although it holds more; seq 2 overwrites.
  h.fork(0, 2, 5);
  h.append(2, {90, 91, 92, 93}, false);
  h.check();
  // Truncation in place (src == dst) gives the trailing blocks back.
  h.append(0, {8, 9, 10}, false);  // length 10: 3 blocks
  h.fork(0, 0, 4);
  EXPECT_EQ(h.book.length(0), 4);
  h.check();
}

TEST(CacheBook, TwoForksAppendingInOneForwardCopyOnlyOnce) {
  Harness h(shape(3, 32, 4));
  h.append(0, {1, 2}, false);
  h.fork(0, 1, 2);
  h.fork(0, 2, 2);  // three references to one partial block
  std::vector<BlockCopy> copies;
  const SeqAppend all[] = {{0, 1, false}, {1, 1, false}, {2, 1, false}};
  const int64_t free_before = h.book.free_blocks();
  h.book.append(all, 3, copies);
  EXPECT_EQ(copies.size(), 2u);  // the first two copy; the last then owns the original
  EXPECT_EQ(free_before - h.book.free_blocks(), 2);
  h.apply(copies);
  for (int32_t q = 0; q < 3; ++q) h.at(q, 2) = 10 + q, h.ref[q].push_back(10 + q);
  h.check();
}

TEST(CacheBook, ErrorsNameWhatIsNeededAndLeaveTheBookUnchanged) {
  Harness h(shape(2, 16, 4, 4));  // 4 blocks for two sequences of up to 4 each: overcommitted
  h.append(0, {1, 2, 3, 4, 5, 6, 7, 8, 9}, false);  // 3 blocks
  h.fork(0, 1, 9);
  const std::vector<int64_t> before = h.dump();
  std::vector<BlockCopy> copies;
  // seq 1 needs a copy of the shared partial block plus 1 more: 2 > 1 free.
  const std::string msg = test::error_message([&] { h.book.append(1, 7, false, copies); });
  EXPECT_NE(msg.find("needs 2 more blocks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("only 1 of 4 are free"), std::string::npos) << msg;
  EXPECT_THROW(h.book.append(1, 7, false, copies), CacheFullError);
  EXPECT_THROW(h.book.append(0, 8, false, copies), CacheFullError);  // past n_ctx 16
  const std::string ctx = test::error_message([&] { h.book.append(0, 8, false, copies); });
  EXPECT_NE(ctx.find("17 positions but the context is 16"), std::string::npos) << ctx;
  // A batch that does not fit as a whole changes nothing, though a reset in it had already given blocks back.
  const SeqAppend batch[] = {{0, 12, true}, {1, 7, false}};
  EXPECT_THROW(h.book.append(batch, 2, copies), CacheFullError);
  EXPECT_THROW(h.book.append(3, 1, false, copies), Error);        // no such sequence
  EXPECT_THROW(h.book.fork(0, 1, 10), Error);                     // more than seq 0 holds
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(h.dump(), before);
  h.check();
  // The reset that fits: with seq 1 gone, seq 0 restarts in its own blocks.
  h.clear(1);
  h.append(0, {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, true);
  h.check();
}

TEST(CacheBook, RandomOperationsKeepReferencesAndContentsExact) {
  std::mt19937 rng(1234);
  int64_t hits = 0, full = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t seqs = 2 + rng() % 4, bt = 1 + rng() % 5, ctx = 8 + rng() % 40;
    const int64_t blocks = rng() % 2 ? 0 : seqs * ((ctx + bt - 1) / bt) / 2 + 1;  // sometimes overcommitted
    Harness h(shape(seqs, ctx, bt, blocks));
    const int32_t vocab = 3;  // few token ids: prefixes repeat, so the index gets hits
    for (int step = 0; step < 400; ++step) {
      const int32_t q = static_cast<int32_t>(rng() % seqs), other = static_cast<int32_t>(rng() % seqs);
      const int op = static_cast<int>(rng() % 10);
      const std::vector<int64_t> before = h.dump();
      try {
        if (op <= 3) {
          const bool reset = rng() % 6 == 0;
          h.append(q, random_tokens(rng, 1 + rng() % (2 * bt + 1), vocab), reset);
        } else if (op == 4) {
          h.clear(q);
        } else if (op == 5 && h.book.length(other) > 0) {
          h.fork(other, q, static_cast<int64_t>(rng() % (h.book.length(other) + 1)));
        } else if (op == 6 && h.book.length(q) >= bt) {
          const int64_t k = 1 + rng() % (h.book.length(q) / bt);
          h.book.insert_prefix(h.ref[q], k * bt, q, -1);
        } else if (op == 7) {
          // A prompt that starts like some sequence's contents.
          std::vector<int32_t> prompt(h.ref[other].begin(), h.ref[other].begin() + rng() % (h.ref[other].size() + 1));
          const std::vector<int32_t> tail = random_tokens(rng, 1 + rng() % 3, vocab);
          prompt.insert(prompt.end(), tail.begin(), tail.end());
          PrefixMatch m = h.book.lookup_prefix(prompt);
          ASSERT_EQ(m.tokens % bt, 0);
          ASSERT_LT(m.tokens, static_cast<int64_t>(prompt.size()));
          ASSERT_EQ(static_cast<int64_t>(m.blocks.size()), m.tokens / bt);
          // The match's blocks hold the prompt's first m.tokens tokens.
          for (int64_t p = 0; p < m.tokens; ++p) ASSERT_EQ(h.store[m.blocks[p / bt] * bt + p % bt], prompt[p]);
          if (m.tokens == 0) continue;
          if (rng() % 3 == 0) {
            h.matches.push_back(m);  // held for a while
            h.match_tokens.emplace_back(prompt.begin(), prompt.begin() + m.tokens);
          } else {
            h.book.attach_prefix(q, m);
            h.ref[q].assign(prompt.begin(), prompt.begin() + m.tokens);
          }
        } else if (op == 8 && !h.matches.empty()) {
          const size_t i = rng() % h.matches.size();
          if (rng() % 2) {
            h.book.attach_prefix(q, h.matches[i]);
            h.ref[q] = h.match_tokens[i];
          } else {
            h.book.release_match(h.matches[i]);
          }
          h.matches.erase(h.matches.begin() + static_cast<std::ptrdiff_t>(i));
          h.match_tokens.erase(h.match_tokens.begin() + static_cast<std::ptrdiff_t>(i));
        }
      } catch (const CacheFullError&) {
        ++full;
        ASSERT_EQ(h.dump(), before) << "a CacheFullError must leave the book unchanged";
      }
      h.check();
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Everything given back: no sequence, no match, every cached prefix evictable.
    for (PrefixMatch& m : h.matches) h.book.release_match(m);
    h.matches.clear();
    h.match_tokens.clear();
    for (int32_t q = 0; q < seqs; ++q) h.clear(q);
    EXPECT_EQ(h.book.free_blocks(), h.book.shape().n_blocks);
    EXPECT_EQ(h.book.used_blocks(), h.book.prefix_entries());
    h.check();
    // Filling the whole cache evicts every prefix entry.
    const int64_t fill = std::min<int64_t>(ctx, h.book.shape().n_blocks * bt);
    h.append(0, random_tokens(rng, fill, vocab), false);
    if (h.book.shape().n_blocks * bt <= ctx) {
      EXPECT_EQ(h.book.prefix_entries(), 0);
    }
    hits += h.book.prefix_hits();
    h.check();
  }
  EXPECT_GT(hits, 100);  // the sequences did exercise the index and the limits
  EXPECT_GT(full, 50);
}

TEST(CacheBook, PrefixIndexMatchesWholeBlocksAndLeavesOneTokenToRun) {
  Harness h(shape(4, 64, 4, 10));
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  h.append(0, prompt, false);
  h.book.insert_prefix(prompt, 8, 0, -1);
  EXPECT_EQ(h.book.prefix_entries(), 2);

  PrefixMatch m = h.book.lookup_prefix(prompt);
  EXPECT_EQ(m.tokens, 8);
  EXPECT_EQ(m.blocks, (std::vector<int32_t>{h.book.block_table(0)[0], h.book.block_table(0)[1]}));
  h.book.release_match(m);
  // Exactly 8 tokens: one must be left to run, so only the first block matches.
  m = h.book.lookup_prefix({1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(m.tokens, 4);
  h.book.release_match(m);
  // A different second block: the chain stops after the first.
  m = h.book.lookup_prefix({1, 2, 3, 4, 5, 6, 0, 8, 9});
  EXPECT_EQ(m.tokens, 4);
  h.book.release_match(m);
  m = h.book.lookup_prefix({2, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(m.tokens, 0);
  EXPECT_EQ(h.book.prefix_hits(), 3);
  EXPECT_EQ(h.book.prefix_lookups(), 4);

  // Attach to seq 1: it shares seq 0's blocks and continues after them.
  m = h.book.lookup_prefix({1, 2, 3, 4, 5, 6, 7, 8, 42, 43});
  h.book.attach_prefix(1, m);
  h.ref[1] = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(h.book.length(1), 8);
  EXPECT_EQ(h.book.prefix_tokens_reused(), 8);
  h.append(1, {42, 43}, false);
  h.check();
  EXPECT_THROW(h.book.attach_prefix(2, m), Error);  // already attached

  // The prefix survives its sequences; with every sequence gone it is evictable, leaves first.
  h.clear(0);
  h.clear(1);
  EXPECT_EQ(h.book.used_blocks(), 2);
  EXPECT_EQ(h.book.free_blocks(), h.book.shape().n_blocks);
  m = h.book.lookup_prefix(prompt);
  EXPECT_EQ(m.tokens, 8);  // still there
  // A held match pins its blocks: filling the cache cannot evict them.
  EXPECT_THROW(h.append(2, std::vector<int32_t>(36, 7), false), CacheFullError);
  h.append(2, std::vector<int32_t>(32, 7), false);
  EXPECT_EQ(h.book.prefix_entries(), 2);
  h.book.release_match(m);
  h.append(2, {7, 7, 7, 7}, false);  // released: the leaf goes
  EXPECT_EQ(h.book.prefix_entries(), 1);
  h.check();
}

TEST(CacheBook, EvictsLeastRecentlyUsedLeavesFirst) {
  // 4 blocks of 2 tokens; two cached prefixes of two blocks each fill the pool.
  Harness h(shape(2, 8, 2, 4));
  const std::vector<int32_t> a = {1, 1, 2, 2, 9}, b = {3, 3, 4, 4, 9};
  h.append(0, {1, 1, 2, 2}, false);
  h.book.insert_prefix(a, 4, 0, -1);
  h.append(1, {3, 3, 4, 4}, false);
  h.book.insert_prefix(b, 4, 1, -1);
  h.clear(0), h.clear(1);
  PrefixMatch m = h.book.lookup_prefix(a);  // a is now the more recent
  h.book.release_match(m);
  EXPECT_EQ(h.book.free_blocks(), 4);
  EXPECT_EQ(h.book.used_blocks(), 4);
  // One block needed: b's leaf goes (least recently used leaf); a stays whole.
  h.append(0, {5}, false);
  EXPECT_EQ(h.book.prefix_entries(), 3);
  m = h.book.lookup_prefix(a);
  EXPECT_EQ(m.tokens, 4);
  h.book.release_match(m);
  h.append(0, {5, 6}, false);  // one more: b's root, now a leaf and least recently used, goes
  EXPECT_EQ(h.book.prefix_entries(), 2);
  m = h.book.lookup_prefix(b);
  EXPECT_EQ(m.tokens, 0);
  m = h.book.lookup_prefix(a);
  EXPECT_EQ(m.tokens, 4);
  h.book.release_match(m);
  h.check();
}

TEST(CacheBook, SnapshotSlotsForStatefulPrefixes) {
  CacheShape s = shape(2, 32, 4);
  s.stateful = true;
  s.n_snapshots = 2;
  Harness h(s);
  EXPECT_EQ(h.book.free_snapshot_slots(), 2);
  // A stateful fork must take the whole sequence.
  h.append(0, {1, 2, 3, 4, 5, 6, 7, 8, 9}, false);
  EXPECT_THROW(h.book.fork(0, 1, 4), Error);
  h.fork(0, 1, 9);

  // Registered at 4 (with a snapshot) and 8 (without): only 4 can be matched.
  const int32_t s4 = h.book.take_snapshot_slot();
  EXPECT_EQ(s4, 2);  // slots after the sequences' own
  h.book.insert_prefix(h.ref[0], 4, 0, s4);
  h.book.insert_prefix(h.ref[0], 8, 0, -1);
  PrefixMatch m = h.book.lookup_prefix(h.ref[0]);
  EXPECT_EQ(m.tokens, 4);
  EXPECT_EQ(m.snapshot, s4);
  h.book.release_match(m);
  // Now at 8 with a snapshot: the longer match wins.
  const int32_t s8 = h.book.take_snapshot_slot();
  EXPECT_EQ(s8, 3);
  h.book.insert_prefix(h.ref[0], 8, 0, s8);
  m = h.book.lookup_prefix(h.ref[0]);
  EXPECT_EQ(m.tokens, 8);
  EXPECT_EQ(m.snapshot, s8);
  EXPECT_EQ(h.book.take_snapshot_slot(), -1);  // both held (by live blocks and the match): nothing to evict
  h.book.release_match(m);
  EXPECT_EQ(h.book.take_snapshot_slot(), -1);  // the sequences still hold the prefixes' blocks
  h.clear(0), h.clear(1);
  // Out of slots: the least recently used entry with a snapshot goes (the deeper one is a leaf).
  const int32_t again = h.book.take_snapshot_slot();
  EXPECT_EQ(again, s8);
  m = h.book.lookup_prefix(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_EQ(m.tokens, 4);
  h.book.release_match(m);
  h.book.release_snapshot_slot(again);
  EXPECT_EQ(h.book.free_snapshot_slots(), 1);
  EXPECT_THROW(h.book.release_snapshot_slot(again), Error);
  h.check();
}

TEST(CacheBook, StatefulModelWithoutPagedLayersTracksLengthsOnly) {
  CacheShape s = shape(2, 16, 4);
  s.paged = false;
  s.stateful = true;
  s.n_snapshots = 2;
  CacheBook book(s);
  EXPECT_EQ(book.shape().n_blocks, 0);
  std::vector<BlockCopy> copies;
  book.append(0, 10, false, copies);
  EXPECT_EQ(book.length(0), 10);
  EXPECT_THROW(book.append(0, 7, false, copies), CacheFullError);
  EXPECT_EQ(book.length(0), 10);
  const int32_t slot = book.take_snapshot_slot();
  std::vector<int32_t> toks(10, 3);
  book.insert_prefix(toks, 8, 0, slot);
  EXPECT_EQ(book.free_snapshot_slots(), 1);
  // A second snapshot of a prefix that already has one is given back at once.
  book.insert_prefix(toks, 8, 0, book.take_snapshot_slot());
  EXPECT_EQ(book.free_snapshot_slots(), 1);
  PrefixMatch m = book.lookup_prefix(toks);
  EXPECT_EQ(m.tokens, 8);
  EXPECT_TRUE(m.blocks.empty());
  EXPECT_EQ(m.snapshot, slot);
  book.attach_prefix(1, m);
  EXPECT_EQ(book.length(1), 8);
  EXPECT_TRUE(copies.empty());
}
