// Zero-shot evaluation of a model on a task file, lm-eval-harness style: per-item log-likelihoods of
// every choice, then accuracy metrics with their standard errors.
//   acc       multiple choice / partial scoring: the gold request has the highest summed log-likelihood
//             (first maximum wins, as numpy's argmax); language modelling: every continuation token is
//             the greedy argmax.
//   acc_norm  multiple choice only: the highest log-likelihood divided by the choice's UTF-8 byte length
//             (lm-eval divides by its character count; the two agree on ASCII text).
//   stderr    sqrt(p (1 - p) / (n - 1)): the sample standard deviation of the 0/1 scores over sqrt(n).
//   perplexity language modelling only: exp(-mean over items of the continuation's total log-likelihood),
//             lm-eval's `perplexity` aggregation for LAMBADA.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/task_file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

struct EvalOptions {
  int64_t limit = 0;  // score only the first `limit` items (0 = all)
  ScoreOptions scoring;
  BadLinePolicy on_bad_item = BadLinePolicy::Stop;  // for items too long for the model's context
};

struct ItemResult {
  int64_t line = 0;                     // line in the task file
  std::vector<Request> requests;        // token ids as scored
  std::vector<RequestScore> scores;     // [n_requests]
  int64_t gold = -1;
  bool correct = false, correct_norm = false;
};

struct TaskResult {
  std::string name;
  TaskSchema schema = TaskSchema::MultipleChoice;
  int64_t n_original = 0;  // valid items in the file
  std::vector<ItemResult> items;  // the items scored (limit applied, over-long ones skipped)
  double acc = 0, acc_stderr = 0;
  bool has_acc_norm = false;
  double acc_norm = 0, acc_norm_stderr = 0;
  bool has_perplexity = false;
  double perplexity = 0;
  double seconds = 0;
};

// Tokenises, scores and aggregates. Items whose tokens exceed the model's context length stop the run
// with an error naming file:line (or are skipped with a warning under BadLinePolicy::Skip).
// on_items(done, total) reports progress.
TaskResult evaluate_task(const Model& model, const Tokenizer& tok, const Task& task, const EvalOptions& opts,
                         const std::function<void(int64_t, int64_t)>& on_items = {});

// sqrt(p (1 - p) / (n - 1)) for a mean p of n 0/1 scores; NaN when n < 2.
double binary_stderr(double p, int64_t n);

}  // namespace zebra
