#include "eval/fewshot.h"

#include <cctype>
#include <numeric>
#include <random>

#include "core/error.h"

namespace zebra {

std::string join_target(const std::string& context, const std::string& continuation) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  const bool bare = context.empty() || is_space(context.back()) || continuation.empty() || is_space(continuation.front());
  return context + (bare ? "" : " ") + continuation;
}

std::string render_shot(const TaskItem& ex, TaskSchema schema) {
  const size_t gold = schema == TaskSchema::LanguageModelling ? 0 : static_cast<size_t>(ex.gold);
  return join_target(ex.contexts[gold], ex.continuations[gold]);
}

namespace {

bool same_item(const TaskItem& a, const TaskItem& b) {
  return a.contexts == b.contexts && a.continuations == b.continuations && a.gold == b.gold;
}

// Draws without replacement from 0..n-1: a Fisher-Yates shuffle extended one position at a time. A new
// round re-shuffles from the start (uniform whatever order the last round left).
class Draws {
 public:
  Draws(int64_t n, uint64_t seed) : perm_(n), rng_(seed) { std::iota(perm_.begin(), perm_.end(), int64_t{0}); }
  void new_round() { drawn_ = 0; }
  // The next index of this round; -1 when every index has been drawn.
  int64_t next() {
    const int64_t n = static_cast<int64_t>(perm_.size());
    if (drawn_ == n) return -1;
    const int64_t j = drawn_ + static_cast<int64_t>(rng_() % static_cast<uint64_t>(n - drawn_));
    std::swap(perm_[drawn_], perm_[j]);
    return perm_[drawn_++];
  }

 private:
  std::vector<int64_t> perm_;
  std::mt19937_64 rng_;
  int64_t drawn_ = 0;
};

}  // namespace

Task with_fewshot(const Task& task, const Task* pool_in, const FewshotOptions& o) {
  ZEBRA_CHECK(o.k >= 0, "--num-fewshot must be >= 0, got ", o.k);
  if (o.k == 0) return task;
  const bool own = pool_in == nullptr;
  const Task& pool = own ? task : *pool_in;
  ZEBRA_CHECK(pool.schema == task.schema, "task '", task.name, "': the few-shot examples in ", pool.path, " are ",
              task_schema_name(pool.schema), " items, the task's are ", task_schema_name(task.schema));
  const int64_t n = static_cast<int64_t>(pool.items.size());
  Draws draws(n, o.seed);
  std::vector<int64_t> shared_order;  // shared mode: one draw sequence for every item
  Task out = task;
  for (size_t i = 0; i < task.items.size(); ++i) {
    const TaskItem& item = task.items[i];
    auto excluded = [&](int64_t e) { return (own && e == static_cast<int64_t>(i)) || same_item(pool.items[e], item); };
    std::vector<int64_t> shots;
    if (o.shared) {
      for (size_t k = 0; static_cast<int64_t>(shots.size()) < o.k; ++k) {
        if (k == shared_order.size()) {
          const int64_t e = draws.next();
          if (e < 0) break;
          shared_order.push_back(e);
        }
        if (!excluded(shared_order[k])) shots.push_back(shared_order[k]);
      }
    } else {
      draws.new_round();
      for (int64_t e; static_cast<int64_t>(shots.size()) < o.k && (e = draws.next()) >= 0;)
        if (!excluded(e)) shots.push_back(e);
    }
    ZEBRA_CHECK(static_cast<int64_t>(shots.size()) == o.k, "task '", task.name, "': --num-fewshot ", o.k,
                " needs ", o.k, " examples other than the item (", task.path, ":", item.line, "), but ",
                own ? "the task" : pool.path, " has only ", shots.size());
    std::string prefix;
    for (int64_t e : shots) prefix += render_shot(pool.items[e], pool.schema) + "\n\n";
    for (std::string& c : out.items[i].contexts) c = prefix + c;
  }
  return out;
}

}  // namespace zebra
