#include "eval/tasks.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "core/log.h"

namespace zebra {

double binary_stderr(double p, int64_t n) {
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  return std::sqrt(p * (1.0 - p) / static_cast<double>(n - 1));
}

namespace {

// Index of the largest value; the first one on ties.
size_t first_argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

void aggregate(const Task& task, TaskResult& res) {
  const int64_t n = static_cast<int64_t>(res.items.size());
  double correct = 0, correct_norm = 0, loglik_sum = 0;
  for (size_t k = 0; k < res.items.size(); ++k) {
    ItemResult& item = res.items[k];
    if (task.schema == TaskSchema::LanguageModelling) {
      item.correct = item.scores[0].greedy;
      loglik_sum += item.scores[0].loglik;
    } else {
      std::vector<double> ll, normed;
      const TaskItem& src = task.items[k];
      for (size_t r = 0; r < item.scores.size(); ++r) {
        ll.push_back(item.scores[r].loglik);
        normed.push_back(item.scores[r].loglik / static_cast<double>(src.continuations[r].size()));
      }
      item.correct = static_cast<int64_t>(first_argmax(ll)) == item.gold;
      item.correct_norm = static_cast<int64_t>(first_argmax(normed)) == item.gold;
    }
    correct += item.correct, correct_norm += item.correct_norm;
  }
  res.acc = correct / n;
  res.acc_stderr = binary_stderr(res.acc, n);
  res.has_acc_norm = task.schema == TaskSchema::MultipleChoice;
  if (res.has_acc_norm) {
    res.acc_norm = correct_norm / n;
    res.acc_norm_stderr = binary_stderr(res.acc_norm, n);
  }
  res.has_perplexity = task.schema == TaskSchema::LanguageModelling;
  if (res.has_perplexity) res.perplexity = std::exp(-loglik_sum / n);
}

}  // namespace

TaskResult evaluate_task(const Model& model, const Tokenizer& tok, const Task& task_in, const EvalOptions& opts,
                         const std::function<void(int64_t, int64_t)>& on_items) {
  auto t0 = std::chrono::steady_clock::now();
  TaskResult res;
  res.name = task_in.name, res.schema = task_in.schema;
  res.n_original = static_cast<int64_t>(task_in.items.size());

  // The items to score, tokenised; `task` keeps the texts of exactly those items (for acc_norm lengths).
  Task task = task_in;
  task.items.clear();
  std::vector<std::vector<Request>> requests;
  const int64_t max_ctx = model.config.max_position_embeddings;
  for (const TaskItem& item : task_in.items) {
    if (opts.limit > 0 && static_cast<int64_t>(task.items.size()) >= opts.limit) break;
    const std::string where = task_in.path + ":" + std::to_string(item.line);
    std::vector<Request> reqs;
    try {
      for (size_t r = 0; r < item.contexts.size(); ++r) {
        Request q = encode_request(tok, item.contexts[r], item.continuations[r]);
        ZEBRA_CHECK(q.size() - 1 <= max_ctx, where, ": the item needs ", q.size() - 1,
                    " tokens of input, more than the model's context length ", max_ctx);
        reqs.push_back(std::move(q));
      }
    } catch (const Error& e) {
      std::string msg = e.what();
      if (msg.rfind(where, 0) != 0) msg = where + ": " + msg;
      if (opts.on_bad_item == BadLinePolicy::Stop) fail(msg);
      log_warn(msg, "; skipped");
      continue;
    }
    task.items.push_back(item);
    requests.push_back(std::move(reqs));
  }
  ZEBRA_CHECK(!requests.empty(), "task '", task.name, "': no items left to score");

  const int64_t total = static_cast<int64_t>(requests.size());
  std::vector<std::vector<RequestScore>> scores =
      score_requests(model, requests, opts.scoring, [&](int64_t done) {
        if (on_items) on_items(done, total);
      });
  for (size_t k = 0; k < requests.size(); ++k) {
    ItemResult item;
    item.line = task.items[k].line;
    item.gold = task.items[k].gold;
    item.requests = std::move(requests[k]);
    item.scores = std::move(scores[k]);
    res.items.push_back(std::move(item));
  }
  aggregate(task, res);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace zebra
