#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "kernels/cpu/ops.h"

namespace zebra {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Context: return "context";
    case FinishReason::Callback: return "callback";
    case FinishReason::Cancelled: return "cancelled";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Waiting requests whose divergence points a prefill chunk is cut at (hybrids). A longer queue is not
// scanned every step; requests further back still find whatever prefixes exist when they are admitted.
constexpr size_t kSplitLookahead = 64;

}  // namespace

struct Scheduler::Impl {
  struct Req {
    int64_t id = 0;
    GenRequest in;
    RequestResult out;
    Clock::time_point submitted;
    bool scoring = false;
    int64_t feed = 0;        // prompt tokens the model reads (a pure scoring request skips the last one)
    int64_t lookup_len = 0;  // a reused prefix must be shorter than prompt[0, lookup_len)
    int64_t total = 0;       // positions it may occupy, reserved at admission
    int32_t seq = -1;
    int64_t computed = 0;    // prompt positions in the cache
    int64_t registered = 0;  // prompt positions registered in the prefix index (stateless models)
    int64_t split = -1;      // a hybrid's prefill chunk ends here to snapshot the state (-1: none)
    int64_t snapped = 0;     // hybrids: the longest length whose state was snapshotted
    bool decoding = false;
    bool done = false;
    int32_t last = -1;       // sampled token that the next decode step feeds
    std::unique_ptr<Sampler> sampler;
    int32_t decode_snap = -1;     // hybrids: snapshot slot of the latest block boundary past the prompt
    int64_t decode_snap_len = 0;  // its length
  };

  Engine& engine;
  SchedulerOptions opts;
  CacheShape shape;
  int64_t vocab = 0, max_running = 0, budget = 0;
  bool paged = true, stateful = false;
  int64_t next_id = 0;
  std::deque<std::unique_ptr<Req>> waiting;  // arrival order
  std::vector<std::unique_ptr<Req>> running; // admission order
  std::map<int64_t, RequestResult> results;  // finished, not yet taken
  std::vector<int32_t> free_seqs;            // descending, so the lowest id is used first
  SchedulerStats st;
  bool in_step = false;
  std::function<void(int64_t, const RequestResult&)>* on_finish = nullptr;

  Impl(Engine& e, SchedulerOptions o) : engine(e), opts(o), shape(e.book().shape()) {
    vocab = e.model().config.vocab_size;
    paged = shape.paged, stateful = shape.stateful;
    const EngineOptions& eo = e.options();
    const int64_t max_batch = eo.max_batch_tokens > 0 ? eo.max_batch_tokens : std::max(shape.n_ctx, shape.max_seqs);
    ZEBRA_CHECK(o.max_running >= 0, "scheduler: max_running must be >= 0, got ", o.max_running);
    ZEBRA_CHECK(o.token_budget >= 1, "scheduler: the token budget must be at least 1, got ", o.token_budget);
    max_running = o.max_running > 0 ? std::min(o.max_running, shape.max_seqs) : shape.max_seqs;
    // Every decoding sequence contributes a token each step, so they must all fit one forward.
    max_running = std::min(max_running, max_batch);
    budget = std::min(o.token_budget, max_batch);
    for (int64_t s = shape.max_seqs - 1; s >= 0; --s) free_seqs.push_back(static_cast<int32_t>(s));
  }

  bool reuse(const Req& r) const { return opts.prefix_reuse && r.in.reuse_prefix; }

  // Blocks the running requests may still allocate: reserved, so none of them ever runs out.
  int64_t outstanding_blocks() {
    int64_t n = 0;
    CacheBook& book = engine.book();
    for (const auto& r : running)
      if (!r->done) n += book.blocks_needed(r->seq, std::max<int64_t>(0, r->total - book.length(r->seq)));
    return n;
  }

  // The longest whole-block prefix `w` could reuse from `r`'s prompt (0 when under one block).
  int64_t shared_boundary(const Req& w, const Req& r) const {
    const int64_t limit = std::min(w.lookup_len - 1, r.feed);
    int64_t k = 0;
    while (k < limit && w.in.prompt[k] == r.in.prompt[k]) ++k;
    return k / shape.block_tokens * shape.block_tokens;
  }

  // A waiting request waits for a prompt still being prefilled that will register a prefix it shares,
  // rather than computing the same prefix itself.
  bool waits_for_sharer(const Req& w) const {
    for (const auto& r : running) {
      if (r->done || r->decoding || !reuse(*r)) continue;
      const int64_t b = shared_boundary(w, *r);
      if (b > 0 && r->computed < b) return true;
    }
    return false;
  }

  void admit() {
    CacheBook& book = engine.book();
    for (size_t i = 0; i < waiting.size();) {
      if (static_cast<int64_t>(running.size()) >= max_running || free_seqs.empty()) return;
      Req& w = *waiting[i];
      if (reuse(w) && waits_for_sharer(w)) {
        ++i;
        continue;
      }
      PrefixMatch match;
      int64_t need = paged ? ceil_div(w.total, shape.block_tokens) : 0;
      // Look a prefix up only when it could matter: the request fits without one, or only with one.
      const bool fits_plain = !paged || need + outstanding_blocks() <= book.free_blocks();
      if (reuse(w)) {
        match = book.lookup_prefix(std::vector<int32_t>(w.in.prompt.begin(), w.in.prompt.begin() + w.lookup_len));
        st.prefix_lookups += 1;
        if (paged) need -= match.tokens / shape.block_tokens;
      }
      if (!fits_plain && paged && need + outstanding_blocks() > book.free_blocks()) {
        if (match.tokens > 0 || !match.blocks.empty() || match.snapshot >= 0) book.release_match(match);
        return;  // arrival order: later requests wait behind this one
      }
      std::unique_ptr<Req> r = std::move(waiting[i]);
      waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
      r->seq = free_seqs.back();
      free_seqs.pop_back();
      if (match.tokens > 0) {
        engine.attach_prefix(r->seq, match);
        r->computed = r->registered = match.tokens;
        r->out.cached_tokens = match.tokens;
        st.prefix_hits += 1;
        st.cached_tokens += match.tokens;
      } else {
        if (!match.blocks.empty() || match.snapshot >= 0) book.release_match(match);
        engine.seq_clear(r->seq);
      }
      r->sampler = std::make_unique<Sampler>(r->in.sampling);
      r->out.queue_seconds = seconds_between(r->submitted, Clock::now());
      running.push_back(std::move(r));
    }
  }

  // Where a hybrid's next prefill chunk must end so that the Mamba2 state can be snapshotted there: the
  // last block boundary before the prompt's end (a), and the boundaries where waiting prompts diverge
  // from this one (b). -1 when none lies ahead.
  int64_t next_split(const Req& r) const {
    if (!stateful || !reuse(r)) return -1;
    const int64_t bt = shape.block_tokens;
    int64_t best = -1;
    auto consider = [&](int64_t b) {
      if (b > r.computed && b <= r.feed && (best < 0 || b < best)) best = b;
    };
    consider((r.feed - 1) / bt * bt);
    size_t scanned = 0;
    for (const auto& w : waiting) {
      if (scanned++ >= kSplitLookahead) break;
      if (reuse(*w)) consider(shared_boundary(*w, r));
    }
    return best;
  }

  // Registers the first n positions of `tokens` in r's sequence, with the Mamba2 states snapshotted there.
  void register_snapshot(Req& r, const std::vector<int32_t>& tokens, int64_t n) {
    CacheBook& book = engine.book();
    const int32_t slot = book.take_snapshot_slot();
    if (slot < 0) return;  // no spare state slot: this prefix is simply not reusable
    engine.snapshot_save(r.seq, slot);
    book.insert_prefix(tokens, n, r.seq, slot);  // the index takes the slot over
  }

  // The tokens r's sequence holds: the prompt it read, then the generated tokens fed back (all but the last
  // one, unless a stop id followed it).
  std::vector<int32_t> fed_tokens(const Req& r) const {
    const int64_t len = engine.book().length(r.seq);
    std::vector<int32_t> t(r.in.prompt.begin(), r.in.prompt.begin() + r.feed);
    t.insert(t.end(), r.out.tokens.begin(), r.out.tokens.begin() + (len - r.feed));
    return t;
  }

  void finish(Req& r, FinishReason reason) {
    if (r.done) return;
    CacheBook& book = engine.book();
    if (r.seq >= 0) {
      // Register what the sequence reached, so a follow-up (the next turn of a chat) re-runs only what is new.
      if (reason != FinishReason::Cancelled && reuse(r)) {
        const int64_t len = book.length(r.seq), bt = shape.block_tokens;
        if (stateful) {
          if (r.decode_snap >= 0) book.insert_prefix(fed_tokens(r), r.decode_snap_len, r.seq, r.decode_snap);
          r.decode_snap = -1;  // the index took it over
        } else if (len / bt * bt > r.registered) {
          book.insert_prefix(fed_tokens(r), len / bt * bt, r.seq, -1);
        }
      }
      if (r.decode_snap >= 0) book.release_snapshot_slot(r.decode_snap);
      r.decode_snap = -1;
      engine.seq_clear(r.seq);
      free_seqs.push_back(r.seq);
      std::sort(free_seqs.rbegin(), free_seqs.rend());
      r.seq = -1;
    }
    r.done = true;
    r.out.reason = reason;
    const auto now = Clock::now();
    r.out.total_seconds = seconds_between(r.submitted, now);
    if (r.out.ttft_seconds == 0) r.out.ttft_seconds = r.out.total_seconds;
    st.finished += 1;
    if (on_finish && *on_finish) (*on_finish)(r.id, r.out);
    results[r.id] = std::move(r.out);
    r.out = RequestResult{};
  }

  // One generated token: stop ids end the request unseen; otherwise it is delivered and may end it.
  void deliver(Req& r, int32_t token) {
    const std::vector<int32_t>& stops = r.in.stop_ids;
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) return finish(r, FinishReason::Stop);
    if (r.out.tokens.empty()) r.out.ttft_seconds = seconds_between(r.submitted, Clock::now());
    r.out.tokens.push_back(token);
    st.generated_tokens += 1;
    if (r.in.on_token && !r.in.on_token(token)) return finish(r, FinishReason::Callback);
    if (r.done) return;  // the callback cancelled it
    if (static_cast<int64_t>(r.out.tokens.size()) >= r.in.max_tokens) return finish(r, FinishReason::Length);
    if (engine.book().length(r.seq) >= shape.n_ctx) return finish(r, FinishReason::Context);
    r.last = token;
  }

  void sweep() {
    running.erase(std::remove_if(running.begin(), running.end(), [](const auto& r) { return r->done; }),
                  running.end());
  }

  bool step() {
    admit();
    if (running.empty()) {
      ZEBRA_CHECK(waiting.empty(), "scheduler: ", waiting.size(),
                  " requests wait but none can be admitted into an idle cache (", engine.book().free_blocks(),
                  " blocks free)");
      return false;
    }

    // One row of the forward that asked for logits: whose, at which position, and what for.
    struct LogitRow {
      Req* r;
      int64_t pos;
      bool score, sample;
    };
    struct Chunk {
      Req* r;
      int64_t n;
    };
    Batch b;
    std::vector<LogitRow> rows;
    std::vector<Req*> members;  // every request in this forward
    std::vector<Chunk> chunks;
    CacheBook& book = engine.book();
    int64_t n_decode = 0;
    for (const auto& r : running) {
      if (!r->decoding) continue;
      const int64_t pos = book.length(r->seq);
      b.add(r->last, r->seq, static_cast<int32_t>(pos), true);
      rows.push_back({r.get(), pos, false, true});
      members.push_back(r.get());
      ++n_decode;
    }
    int64_t left = budget - n_decode;
    for (const auto& rp : running) {
      Req& r = *rp;
      if (r.decoding || left <= 0) continue;
      int64_t n = std::min(left, r.feed - r.computed);
      r.split = next_split(r);
      if (r.split > 0) n = std::min(n, r.split - r.computed);
      const int64_t n_prompt = static_cast<int64_t>(r.in.prompt.size());
      for (int64_t p = r.computed; p < r.computed + n; ++p) {
        const bool score = r.scoring && p >= r.in.score_from - 1 && p + 1 < n_prompt;
        const bool sample = p == r.feed - 1 && r.in.max_tokens > 0;
        b.add(r.in.prompt[p], r.seq, static_cast<int32_t>(p), score || sample);
        if (score || sample) rows.push_back({&r, p, score, sample});
      }
      chunks.push_back({&r, n});
      members.push_back(&r);
      left -= n;
    }

    engine.run(b);
    st.forwards += 1;

    // Logits on the host when some rows are scored (log-softmax as eval always did); otherwise the engine
    // samples on its device and returns only the ids.
    bool any_score = false;
    for (const LogitRow& row : rows) any_score = any_score || row.score;
    std::vector<int32_t> sampled(rows.size(), -1);
    if (any_score) {
      const Tensor logits = engine.logits();  // [rows, vocab]
      for (size_t i = 0; i < rows.size(); ++i) {
        const float* row = logits.ptr() + static_cast<int64_t>(i) * vocab;
        Req& r = *rows[i].r;
        if (rows[i].score) {
          const int32_t target = r.in.prompt[rows[i].pos + 1];
          r.out.logprobs.push_back(static_cast<double>(row[target]) -
                                   static_cast<double>(cpu::logsumexp(row, vocab)));
          r.out.greedy.push_back(argmax(row, vocab) == target ? 1 : 0);
        }
        if (rows[i].sample) sampled[i] = r.sampler->sample(row, vocab);
      }
    } else if (!rows.empty()) {
      std::vector<Sampler*> samplers;
      for (const LogitRow& row : rows) samplers.push_back(row.r->sampler.get());
      sampled = engine.sample(samplers);
    }

    const int64_t bt = shape.block_tokens;
    for (const Chunk& c : chunks) {
      Req& r = *c.r;
      r.computed += c.n;
      st.prompt_tokens_computed += c.n;
      if (!reuse(r)) continue;
      if (!stateful && r.computed / bt * bt > r.registered) {
        r.registered = r.computed / bt * bt;
        book.insert_prefix(r.in.prompt, r.registered, r.seq, -1);
      }
      if (stateful && r.computed == r.split) {
        register_snapshot(r, r.in.prompt, r.computed);
        r.snapped = r.computed;
      }
    }
    // Hybrids keep a snapshot of the latest block boundary reached past the prompt's last registered one,
    // registered when the request finishes (the next turn of a conversation continues from there).
    for (Req* rp : members) {
      Req& r = *rp;
      if (!stateful || !reuse(r) || (!r.decoding && r.computed < r.feed)) continue;
      const int64_t len = book.length(r.seq);
      if (len % bt != 0 || len <= r.snapped) continue;
      if (r.decode_snap < 0) r.decode_snap = book.take_snapshot_slot();
      if (r.decode_snap < 0) continue;
      engine.snapshot_save(r.seq, r.decode_snap);
      r.decode_snap_len = r.snapped = len;
    }

    in_step = true;
    for (size_t i = 0; i < rows.size(); ++i) {
      Req& r = *rows[i].r;
      if (r.done || !rows[i].sample) continue;
      r.decoding = true;
      deliver(r, sampled[i]);
    }
    // Prompts that ran to their end without sampling: scoring-only or prefill-only requests.
    for (const Chunk& c : chunks) {
      Req& r = *c.r;
      if (!r.done && !r.decoding && r.computed == r.feed) finish(r, FinishReason::Length);
    }
    in_step = false;
    sweep();
    return true;
  }
};

Scheduler::Scheduler(Engine& engine, SchedulerOptions opts) : engine_(engine), impl_(std::make_unique<Impl>(engine, opts)) {
  impl_->on_finish = &on_finish;
}

Scheduler::~Scheduler() = default;

int64_t Scheduler::submit(GenRequest request) {
  Impl& s = *impl_;
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  ZEBRA_CHECK(n > 0, "scheduler: the request has an empty prompt");
  ZEBRA_CHECK(request.max_tokens >= 0, "scheduler: max_tokens must be >= 0, got ", request.max_tokens);
  for (int64_t t = 0; t < n; ++t)
    ZEBRA_CHECK(request.prompt[t] >= 0 && request.prompt[t] < s.vocab, "scheduler: prompt token ", t, " is ",
                request.prompt[t], ", outside the vocabulary of ", s.vocab);
  auto r = std::make_unique<Impl::Req>();
  r->scoring = request.score_from > 0;
  ZEBRA_CHECK(request.score_from >= 0 && request.score_from < std::max<int64_t>(n, 1) &&
                  (request.score_from == 0 || n >= 2),
              "scheduler: score_from ", request.score_from, " must lie in 1..", n - 1,
              " (a prompt of ", n, " tokens; 0 = no scoring)");
  r->feed = r->scoring && request.max_tokens == 0 ? n - 1 : n;
  r->lookup_len = r->scoring ? request.score_from : r->feed;
  const int64_t n_ctx = s.shape.n_ctx, bt = s.shape.block_tokens;
  ZEBRA_CHECK(r->feed <= n_ctx, "scheduler: the prompt needs ", r->feed, " positions, more than the context of ", n_ctx,
              " tokens");
  // The last generated token is never fed back, so max_tokens tokens need max_tokens - 1 positions.
  r->total = std::min(n_ctx, r->feed + std::max<int64_t>(request.max_tokens - 1, 0));
  if (s.paged) {
    const int64_t need = ceil_div(r->total, bt), have = s.engine.book().shape().n_blocks;
    ZEBRA_CHECK(need <= have, "scheduler: the request needs ", need, " cache blocks of ", bt, " tokens (a prompt of ",
                n, " + up to ", request.max_tokens, " generated tokens = ", r->total,
                " positions) but the whole cache holds ", have, " blocks: at most ", have * bt,
                " positions of prompt + max_tokens fit");
  }
  r->id = s.next_id++;
  r->in = std::move(request);
  r->out.prompt_tokens = n;
  r->submitted = Clock::now();
  s.st.prompt_tokens += n;
  const int64_t id = r->id;
  s.waiting.push_back(std::move(r));
  return id;
}

void Scheduler::cancel(int64_t id) {
  Impl& s = *impl_;
  for (size_t i = 0; i < s.waiting.size(); ++i)
    if (s.waiting[i]->id == id) {
      std::unique_ptr<Impl::Req> r = std::move(s.waiting[i]);
      s.waiting.erase(s.waiting.begin() + static_cast<std::ptrdiff_t>(i));
      s.finish(*r, FinishReason::Cancelled);
      return;
    }
  for (auto& r : s.running)
    if (r->id == id && !r->done) {
      s.finish(*r, FinishReason::Cancelled);
      if (!s.in_step) s.sweep();
      return;
    }
}

bool Scheduler::step() { return impl_->step(); }

void Scheduler::run_until_idle() {
  while (impl_->step()) {
  }
}

bool Scheduler::finished(int64_t id) const { return impl_->results.count(id) > 0; }

RequestResult Scheduler::take_result(int64_t id) {
  auto it = impl_->results.find(id);
  ZEBRA_CHECK(it != impl_->results.end(), "scheduler: request ", id, " has not finished (or its result was taken)");
  RequestResult r = std::move(it->second);
  impl_->results.erase(it);
  return r;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s = impl_->st;
  s.waiting = static_cast<int64_t>(impl_->waiting.size());
  s.running = 0;
  for (const auto& r : impl_->running) s.running += !r->done;
  return s;
}

}  // namespace zebra
