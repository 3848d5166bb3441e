// The scheduler against a fake engine whose logits are a hash of what its cache really holds for each
// sequence: the paged history read through the block table, and (for a "stateful" model) a per-slot token
// history standing in for the Mamba2 state, snapshotted and restored like one. A wrongly attached prefix,
// a missed snapshot or a mixed-up sequence changes the logits, so "the same tokens as the request alone"
// checks the bookkeeping, not just the plumbing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "engine/scheduler.h"
#include "kernels/cpu/ops.h"
#include "model/row_plan.h"
#include "support.h"

namespace zebra {
namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Logits after reading `hist` (both views agree when the cache is right).
void fake_logits(const std::vector<int32_t>& paged_hist, const std::vector<int32_t>& state_hist, bool paged,
                 bool stateful, int64_t V, float* out) {
  uint64_t h = 1469598103934665603ull;
  if (paged)
    for (int32_t t : paged_hist) h = mix(h, static_cast<uint64_t>(t));
  if (stateful) {
    uint64_t s = 7;
    for (int32_t t : state_hist) s = mix(s, static_cast<uint64_t>(t));
    h = mix(h, s);
  }
  for (int64_t v = 0; v < V; ++v) out[v] = static_cast<float>(mix(h, static_cast<uint64_t>(v)) % 10007) / 997.0f;
}

struct Kind {
  const char* name;
  bool paged, stateful;
};

class FakeEngine : public Engine {
 public:
  FakeEngine(const EngineOptions& o, Kind kind, int64_t vocab = 64)
      : opts_(o), kind_(kind), book_(shape_of(o, kind)) {
    model_.config.vocab_size = vocab;
    store_.assign(book_.shape().n_blocks * o.block_tokens, -1);
    state_.resize(o.max_seqs + o.n_snapshots);
  }
  static CacheShape shape_of(const EngineOptions& o, Kind k) {
    CacheShape s;
    s.max_seqs = o.max_seqs, s.n_ctx = o.n_ctx, s.block_tokens = o.block_tokens, s.n_blocks = o.n_blocks;
    s.n_snapshots = o.n_snapshots, s.paged = k.paged, s.stateful = k.stateful;
    return s;
  }
  const Model& model() const override { return model_; }
  const EngineOptions& options() const override { return opts_; }
  CacheBook& book() override { return book_; }

  void run(const Batch& b, ForwardTrace*) override {
    const int64_t V = model_.config.vocab_size, bt = opts_.block_tokens;
    ZEBRA_CHECK(b.size() <= opts_.max_batch_tokens, "fake: batch of ", b.size(), " > ", opts_.max_batch_tokens);
    RowPlan plan = plan_rows(b);
    for (const Run& r : plan.runs) {
      ZEBRA_CHECK(r.seq >= 0 && r.seq < opts_.max_seqs, "fake: seq ", r.seq);
      ZEBRA_CHECK(r.pos0 == 0 || r.pos0 == book_.length(r.seq), "fake: seq ", r.seq, " at ", r.pos0, " but length ",
                  book_.length(r.seq));
      ZEBRA_CHECK(r.end() <= opts_.n_ctx, "fake: past n_ctx");
    }
    for (int32_t t : b.tokens) ZEBRA_CHECK(t >= 0 && t < V, "fake: token ", t);
    std::vector<std::vector<float>> row_logits(plan.tokens.size());
    for (const Run& r : plan.runs) {
      std::vector<BlockCopy> copies;
      book_.append(r.seq, r.n, r.pos0 == 0, copies);
      for (const BlockCopy& c : copies)
        std::copy(store_.begin() + c.src * bt, store_.begin() + (c.src + 1) * bt, store_.begin() + c.dst * bt);
      if (r.pos0 == 0) state_[r.seq].clear();
      for (int32_t i = 0; i < r.n; ++i) {
        const int64_t row = r.row0 + i, pos = r.pos0 + i;
        if (kind_.paged) store_[slot(r.seq, pos)] = plan.tokens[row];
        if (kind_.stateful) state_[r.seq].push_back(plan.tokens[row]);
        if (!b.logits[plan.batch_index[row]]) continue;
        std::vector<int32_t> hist;
        for (int64_t p = 0; kind_.paged && p <= pos; ++p) hist.push_back(store_[slot(r.seq, p)]);
        row_logits[row].resize(V);
        fake_logits(hist, state_[r.seq], kind_.paged, kind_.stateful, V, row_logits[row].data());
      }
    }
    logits_ = Tensor({static_cast<int64_t>(plan.logit_rows.size()), V});
    for (size_t i = 0; i < plan.logit_rows.size(); ++i)
      std::copy(row_logits[plan.logit_rows[i]].begin(), row_logits[plan.logit_rows[i]].end(), logits_.ptr() + i * V);
    forwards += 1;
    tokens_run += b.size();
    batch_sizes.push_back(b.size());
  }
  Tensor logits() override { return logits_; }
  std::vector<int32_t> sample(const std::vector<Sampler*>& samplers) override {
    const int64_t V = model_.config.vocab_size;
    EXPECT_EQ(static_cast<int64_t>(samplers.size()), logits_.dim(0));
    std::vector<int32_t> out;
    for (size_t i = 0; i < samplers.size(); ++i) out.push_back(samplers[i]->sample(logits_.ptr() + i * V, V));
    return out;
  }
  void seq_clear(int32_t seq) override {
    book_.clear(seq);
    state_[seq].clear();
  }
  void seq_fork(int32_t src, int32_t dst, int64_t n) override {
    book_.fork(src, dst, n);
    state_[dst] = state_[src];
  }
  void snapshot_save(int32_t seq, int32_t slot) override {
    if (kind_.stateful) state_[slot] = state_[seq];
    snapshots_saved += kind_.stateful;
  }
  void snapshot_restore(int32_t slot, int32_t seq) override {
    if (kind_.stateful) state_[seq] = state_[slot];
  }
  MemoryReport memory() const override { return {}; }

  int64_t forwards = 0, tokens_run = 0, snapshots_saved = 0;
  std::vector<int64_t> batch_sizes;

 private:
  int64_t slot(int32_t seq, int64_t pos) const {
    const int64_t bt = opts_.block_tokens;
    const int32_t blk = book_.block_table(seq)[pos / bt];
    EXPECT_GE(blk, 0);
    return blk * bt + pos % bt;
  }
  EngineOptions opts_;
  Kind kind_;
  Model model_;
  CacheBook book_;
  std::vector<int32_t> store_;
  std::vector<std::vector<int32_t>> state_;
  Tensor logits_;
};

const Kind kStateless{"stateless", true, false}, kStateful{"stateful", false, true}, kMixed{"mixed", true, true};

EngineOptions options(int64_t max_seqs, int64_t n_ctx, int64_t n_blocks = 0, int64_t n_snapshots = 16,
                      int64_t max_batch = 256) {
  EngineOptions o;
  o.max_seqs = max_seqs, o.n_ctx = n_ctx, o.block_tokens = 16, o.n_blocks = n_blocks, o.n_snapshots = n_snapshots;
  o.max_batch_tokens = max_batch;
  return o;
}

std::vector<float> reference_logits(const std::vector<int32_t>& hist, Kind k, int64_t V = 64) {
  std::vector<float> l(V);
  fake_logits(hist, hist, k.paged, k.stateful, V, l.data());
  return l;
}

// What generate() does for one request alone: greedy, stop ids unseen, the context's end.
std::vector<int32_t> reference_greedy(std::vector<int32_t> fed, int64_t max_tokens, int64_t n_ctx, Kind k,
                                      const std::vector<int32_t>& stops = {}) {
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < max_tokens) {
    std::vector<float> l = reference_logits(fed, k);
    const int32_t t = argmax(l.data(), static_cast<int64_t>(l.size()));
    if (std::find(stops.begin(), stops.end(), t) != stops.end()) break;
    out.push_back(t);
    if (static_cast<int64_t>(out.size()) == max_tokens || static_cast<int64_t>(fed.size()) >= n_ctx) break;
    fed.push_back(t);
  }
  return out;
}

GenRequest greedy_request(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  return r;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t n, int64_t V = 64) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % V);
  return t;
}

class SchedulerKinds : public ::testing::TestWithParam<Kind> {};

// 32 requests of different prompt lengths (some sharing a long system prompt, some the same prompt) arrive
// over time; each must produce exactly what it produces alone.
TEST_P(SchedulerKinds, StaggeredRequestsMatchEachAlone) {
  const Kind kind = GetParam();
  FakeEngine eng(options(6, 128), kind);
  SchedulerOptions so;
  so.token_budget = 24;
  Scheduler sched(eng, so);
  std::mt19937 rng(42);
  const std::vector<int32_t> system = random_tokens(rng, 40);
  std::vector<GenRequest> reqs;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p = random_tokens(rng, 1 + (i * 7) % 60);
    if (i % 3 == 0) p.insert(p.begin(), system.begin(), system.end());
    if (i % 8 == 5) p = reqs[i - 1].prompt;  // an identical prompt
    reqs.push_back(greedy_request(p, 3 + (i * 5) % 17));
  }
  std::vector<int64_t> ids;
  size_t next = 0;
  for (int stepno = 0; next < reqs.size() || sched.step(); ++stepno) {
    for (int k = 0; k < 3 && next < reqs.size() && stepno % 2 == 0; ++k) ids.push_back(sched.submit(reqs[next++]));
    if (next < reqs.size()) sched.step();
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(sched.finished(ids[i])) << i;
    RequestResult r = sched.take_result(ids[i]);
    EXPECT_EQ(r.tokens, reference_greedy(reqs[i].prompt, reqs[i].max_tokens, 128, kind)) << kind.name << " request " << i;
    EXPECT_EQ(r.reason, FinishReason::Length) << i;
    EXPECT_EQ(r.prompt_tokens, static_cast<int64_t>(reqs[i].prompt.size()));
  }
  const SchedulerStats st = sched.stats();
  EXPECT_EQ(st.finished, 32);
  EXPECT_EQ(st.waiting + st.running, 0);
  EXPECT_GT(st.cached_tokens, 0) << "the shared system prompt was never reused";
  EXPECT_EQ(st.prompt_tokens_computed + st.cached_tokens, st.prompt_tokens);
  for (int64_t n : eng.batch_sizes) EXPECT_LE(n, 24);
}

INSTANTIATE_TEST_SUITE_P(All, SchedulerKinds, ::testing::Values(kStateless, kStateful, kMixed),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Scheduler, AdmissionWaitsWhenTheCacheIsFullAndResumes) {
  // 8 blocks of 16: two requests of 3 blocks run, the third waits until one finishes.
  FakeEngine eng(options(4, 64, 8), kStateless);
  SchedulerOptions so;
  so.prefix_reuse = false;
  Scheduler sched(eng, so);
  std::mt19937 rng(1);
  std::vector<GenRequest> reqs;
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    reqs.push_back(greedy_request(random_tokens(rng, 30), 10 + 8 * i));  // 39.. positions: 3 blocks
    ids.push_back(sched.submit(reqs.back()));
  }
  ASSERT_TRUE(sched.step());
  SchedulerStats st = sched.stats();
  EXPECT_EQ(st.running, 2);
  EXPECT_EQ(st.waiting, 1);
  bool admitted_later = false;
  while (sched.step())
    if (sched.stats().running == 2 && sched.finished(ids[0])) admitted_later = true;
  EXPECT_TRUE(admitted_later);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(sched.take_result(ids[i]).tokens, reference_greedy(reqs[i].prompt, reqs[i].max_tokens, 64, kStateless));
  EXPECT_EQ(eng.book().used_blocks(), 0);
}

TEST(Scheduler, RequestsThatCanNeverRunAreRejectedAtSubmit) {
  FakeEngine eng(options(2, 128, 4), kStateless);  // 4 blocks = 64 positions in all
  Scheduler sched(eng);
  std::string msg = test::error_message([&] { sched.submit(greedy_request(std::vector<int32_t>(50, 1), 30)); });
  EXPECT_NE(msg.find("needs 5 cache blocks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("holds 4 blocks"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at most 64 positions"), std::string::npos) << msg;
  msg = test::error_message([&] { sched.submit(greedy_request(std::vector<int32_t>(129, 1), 1)); });
  EXPECT_NE(msg.find("more than the context of 128"), std::string::npos) << msg;
  msg = test::error_message([&] { sched.submit(greedy_request({}, 1)); });
  EXPECT_NE(msg.find("empty prompt"), std::string::npos) << msg;
  msg = test::error_message([&] { sched.submit(greedy_request({1, 64}, 1)); });
  EXPECT_NE(msg.find("outside the vocabulary"), std::string::npos) << msg;
  GenRequest s = greedy_request({1, 2, 3}, 0);
  s.score_from = 3;
  msg = test::error_message([&] { sched.submit(s); });
  EXPECT_NE(msg.find("score_from 3"), std::string::npos) << msg;
  // 63 positions fit exactly (the last generated token is never fed back).
  sched.submit(greedy_request(std::vector<int32_t>(50, 1), 14));
  sched.run_until_idle();
}

TEST(Scheduler, LongPromptsArePrefilledInChunksWithoutStallingDecode) {
  FakeEngine eng(options(4, 256), kMixed);
  SchedulerOptions so;
  so.token_budget = 8;
  Scheduler sched(eng, so);
  std::mt19937 rng(3);
  GenRequest a = greedy_request(random_tokens(rng, 5), 40);
  int64_t a_tokens = 0;
  a.on_token = [&](int32_t) { return ++a_tokens, true; };
  const int64_t ia = sched.submit(a);
  sched.step();  // a's prompt
  ASSERT_EQ(a_tokens, 1);
  GenRequest b = greedy_request(random_tokens(rng, 60), 4);
  const int64_t ib = sched.submit(b);
  int64_t steps = 0;
  while (!sched.finished(ib)) {
    const int64_t before = a_tokens;
    ASSERT_TRUE(sched.step());
    ++steps;
    EXPECT_EQ(a_tokens, before + 1) << "a decoding request must get a token every step";
  }
  EXPECT_GE(steps, 60 / 7);
  for (int64_t n : eng.batch_sizes) EXPECT_LE(n, 8);
  sched.run_until_idle();
  EXPECT_EQ(sched.take_result(ia).tokens, reference_greedy(a.prompt, 40, 256, kMixed));
  EXPECT_EQ(sched.take_result(ib).tokens, reference_greedy(b.prompt, 4, 256, kMixed));
}

TEST(Scheduler, StopsOnStopIdsLengthContextAndCallback) {
  std::mt19937 rng(5);
  const std::vector<int32_t> prompt = random_tokens(rng, 20);
  const std::vector<int32_t> ref = reference_greedy(prompt, 30, 1 << 20, kStateless);
  // The first occurrence of ref[6] ends the request there (and is not emitted).
  const int32_t stop = ref[6];
  const size_t first = std::find(ref.begin(), ref.end(), stop) - ref.begin();
  FakeEngine eng(options(4, 30), kStateless);
  Scheduler sched(eng);
  GenRequest s = greedy_request(prompt, 30);
  s.stop_ids = {stop};
  const int64_t is = sched.submit(s);
  const int64_t il = sched.submit(greedy_request(prompt, 4));
  const int64_t ic = sched.submit(greedy_request(prompt, 30));  // n_ctx 30: 20 + 11 tokens (10 fed)
  GenRequest cb = greedy_request(prompt, 30);
  int seen = 0;
  cb.on_token = [&](int32_t) { return ++seen < 2; };
  const int64_t icb = sched.submit(cb);
  std::map<int64_t, FinishReason> finished_order;
  sched.on_finish = [&](int64_t id, const RequestResult& r) { finished_order[id] = r.reason; };
  sched.run_until_idle();
  RequestResult rs = sched.take_result(is), rl = sched.take_result(il), rc = sched.take_result(ic),
                rcb = sched.take_result(icb);
  EXPECT_EQ(rs.reason, FinishReason::Stop);
  EXPECT_EQ(rs.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + first));
  EXPECT_EQ(rl.reason, FinishReason::Length);
  EXPECT_EQ(rl.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + 4));
  EXPECT_EQ(rc.reason, FinishReason::Context);
  EXPECT_EQ(rc.tokens, reference_greedy(prompt, 30, 30, kStateless));
  EXPECT_EQ(rc.tokens.size(), 11u);
  EXPECT_EQ(rcb.reason, FinishReason::Callback);
  EXPECT_EQ(rcb.tokens.size(), 2u);
  EXPECT_EQ(finished_order.size(), 4u);
  EXPECT_EQ(finished_order[is], FinishReason::Stop);
  EXPECT_STREQ(finish_reason_name(FinishReason::Context), "context");
  EXPECT_FALSE(sched.finished(is));  // taken
  EXPECT_THROW(sched.take_result(is), Error);
}

TEST(Scheduler, CancelFreesTheSequenceAtOnce) {
  FakeEngine eng(options(1, 64, 4), kStateless);  // one sequence: the second request waits for it
  SchedulerOptions so;
  so.prefix_reuse = false;
  Scheduler sched(eng, so);
  std::mt19937 rng(7);
  const int64_t a = sched.submit(greedy_request(random_tokens(rng, 20), 40));
  const GenRequest breq = greedy_request(random_tokens(rng, 10), 5);
  const int64_t b = sched.submit(breq);
  const int64_t c = sched.submit(greedy_request(random_tokens(rng, 10), 5));
  sched.step();
  sched.step();
  EXPECT_EQ(sched.stats().running, 1);
  EXPECT_GT(eng.book().used_blocks(), 0);
  sched.cancel(a);
  EXPECT_EQ(eng.book().used_blocks(), 0);
  EXPECT_EQ(sched.stats().running, 0);
  sched.cancel(c);  // still waiting: never runs
  ASSERT_TRUE(sched.finished(a));
  ASSERT_TRUE(sched.finished(c));
  EXPECT_EQ(sched.take_result(a).reason, FinishReason::Cancelled);
  EXPECT_EQ(sched.take_result(c).reason, FinishReason::Cancelled);
  const int64_t forwards = eng.forwards;
  sched.run_until_idle();
  EXPECT_EQ(sched.take_result(b).tokens, reference_greedy(breq.prompt, 5, 64, kStateless));
  EXPECT_EQ(eng.forwards - forwards, 5);  // b alone: its prompt, then 4 decode steps
  // Cancelling from inside a callback ends the request at once too.
  int64_t self = -1;
  GenRequest d = greedy_request(random_tokens(rng, 10), 20);
  d.on_token = [&](int32_t) {
    sched.cancel(self);
    return true;
  };
  self = sched.submit(d);
  sched.run_until_idle();
  RequestResult rd = sched.take_result(self);
  EXPECT_EQ(rd.reason, FinishReason::Cancelled);
  EXPECT_EQ(rd.tokens.size(), 1u);
  EXPECT_EQ(eng.book().used_blocks(), 0);
}

// Two requests sharing 40 tokens arrive together: the second waits for the first's prefill to pass the
// shared block boundary (32) and reuses it; a later turn of the first conversation reuses its decode.
TEST_P(SchedulerKinds, PrefixesAreRegisteredReusedAndWaitedFor) {
  const Kind kind = GetParam();
  FakeEngine eng(options(4, 256), kind);
  SchedulerOptions so;
  so.token_budget = 20;
  Scheduler sched(eng, so);
  std::mt19937 rng(9);
  const std::vector<int32_t> shared = random_tokens(rng, 40);
  std::vector<int32_t> p1 = shared, p2 = shared;
  for (int32_t t : random_tokens(rng, 8)) p1.push_back(t);
  for (int32_t t : random_tokens(rng, 12)) p2.push_back(t);
  const int64_t i1 = sched.submit(greedy_request(p1, 20)), i2 = sched.submit(greedy_request(p2, 3));
  sched.step();
  EXPECT_EQ(sched.stats().waiting, 1) << "the second request waits for the shared prefix";
  sched.run_until_idle();
  RequestResult r1 = sched.take_result(i1), r2 = sched.take_result(i2);
  EXPECT_EQ(r1.tokens, reference_greedy(p1, 20, 256, kind));
  EXPECT_EQ(r2.tokens, reference_greedy(p2, 3, 256, kind));
  EXPECT_EQ(r1.cached_tokens, 0);
  EXPECT_EQ(r2.cached_tokens, 32);
  EXPECT_EQ(sched.stats().prompt_tokens_computed, 48 + 52 - 32);
  // Turn two: everything r1's sequence held (48 + 19 fed tokens: boundary 64) plus a new message.
  std::vector<int32_t> p3 = p1;
  p3.insert(p3.end(), r1.tokens.begin(), r1.tokens.end());
  for (int32_t t : random_tokens(rng, 5)) p3.push_back(t);
  const int64_t i3 = sched.submit(greedy_request(p3, 4));
  sched.run_until_idle();
  RequestResult r3 = sched.take_result(i3);
  EXPECT_EQ(r3.tokens, reference_greedy(p3, 4, 256, kind));
  EXPECT_EQ(r3.cached_tokens, 64);
  // The same prompt again reuses everything up to its last block boundary.
  const int64_t i4 = sched.submit(greedy_request(p2, 3));
  sched.run_until_idle();
  RequestResult r4 = sched.take_result(i4);
  EXPECT_EQ(r4.tokens, r2.tokens);
  EXPECT_EQ(r4.cached_tokens, 48);
}

// Scoring: per-token log-probs and greedy flags from the position before each scored token; a reused
// prefix never covers a position whose logits are needed; reuse and no reuse give identical scores.
TEST_P(SchedulerKinds, ScoringRequestsReportLogprobsWithAndWithoutReuse) {
  const Kind kind = GetParam();
  std::mt19937 rng(11);
  const std::vector<int32_t> ctx = random_tokens(rng, 37);
  std::vector<GenRequest> reqs;
  for (int c = 0; c < 4; ++c) {
    GenRequest r = greedy_request(ctx, 0);
    for (int32_t t : random_tokens(rng, 2 + c)) r.prompt.push_back(t);
    r.score_from = 37;
    reqs.push_back(r);
  }
  GenRequest early = greedy_request(ctx, 0);  // scores from 20: may reuse at most one block
  early.score_from = 20;
  reqs.push_back(early);
  std::vector<std::vector<RequestResult>> runs;
  for (bool reuse : {true, false}) {
    FakeEngine eng(options(3, 64), kind);
    SchedulerOptions so;
    so.prefix_reuse = reuse;
    so.token_budget = 16;
    Scheduler sched(eng, so);
    std::vector<int64_t> ids;
    for (const GenRequest& r : reqs) ids.push_back(sched.submit(r));
    sched.run_until_idle();
    runs.emplace_back();
    for (int64_t id : ids) runs.back().push_back(sched.take_result(id));
    EXPECT_EQ(sched.stats().cached_tokens > 0, reuse);
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenRequest& q = reqs[i];
    const RequestResult& r = runs[0][i];
    ASSERT_EQ(r.logprobs.size(), q.prompt.size() - q.score_from) << i;
    for (size_t t = q.score_from; t < q.prompt.size(); ++t) {
      std::vector<float> l = reference_logits(std::vector<int32_t>(q.prompt.begin(), q.prompt.begin() + t), kind);
      const double want = static_cast<double>(l[q.prompt[t]]) - static_cast<double>(cpu::logsumexp(l.data(), 64));
      EXPECT_EQ(r.logprobs[t - q.score_from], want) << i << " " << t;
      EXPECT_EQ(r.greedy[t - q.score_from], argmax(l.data(), 64) == q.prompt[t]) << i << " " << t;
    }
    EXPECT_EQ(r.logprobs, runs[1][i].logprobs);
    EXPECT_EQ(r.greedy, runs[1][i].greedy);
    EXPECT_LE(r.cached_tokens, q.score_from - 1);
    EXPECT_EQ(r.reason, FinishReason::Length);
    EXPECT_TRUE(r.tokens.empty());
  }
  EXPECT_EQ(runs[0][4].cached_tokens, 16);
}

TEST(Scheduler, SamplingIsPerRequestAndReproducible) {
  auto run = [](uint64_t seed_b) {
    FakeEngine eng(options(2, 64), kMixed);
    Scheduler sched(eng);
    GenRequest a = greedy_request({1, 2, 3}, 12), b = a;
    a.sampling = {1.0f, 0, 1.0f, 0.0f, 17};
    b.sampling = {1.0f, 0, 1.0f, 0.0f, seed_b};
    const int64_t ia = sched.submit(a), ib = sched.submit(b);
    sched.run_until_idle();
    return std::make_pair(sched.take_result(ia).tokens, sched.take_result(ib).tokens);
  };
  auto x = run(17), y = run(18);
  EXPECT_EQ(x.first, x.second);  // same seed, same prompt, same tokens
  EXPECT_EQ(x.first, y.first);   // a does not depend on its neighbour
  EXPECT_NE(y.first, y.second);
}

}  // namespace
}  // namespace zebra
