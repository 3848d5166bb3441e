// Few-shot contexts in lm-eval-harness's layout (description none): K labelled examples, each rendered as
// its own context + the target delimiter + its gold continuation, joined and followed by the fewshot
// delimiter "\n\n", before the item's own context:
//     ex1_ctx + " " + ex1_gold + "\n\n" + ... + exK_ctx + " " + exK_gold + "\n\n" + item_ctx
// (the " " is left out, as for scoring, when the context ends or the continuation starts with whitespace).
// Per schema the example's text is: multiple choice query + choices[gold]; partial scoring (WinoGrande)
// context_options[gold] + continuation; language modelling context + continuation.
//
// Draws follow lm-eval's sampler: one random stream per task (seeded, 1234 by default), advanced item by
// item; from a separate pool (a few-shot file or split) K examples are drawn, from the task's own items
// K + 1 so the item itself can be dropped (the first K others are kept). lm-eval's Python
// random.Random(1234) is not reproduced bit for bit, but the same seed always gives the same draws.
// `shared` draws once for the whole task, so every item gets the same examples (an item that was drawn gets
// the next one instead): a prefix common to every request, which the scheduler computes once.
#pragma once
#include <cstdint>
#include <string>

#include "eval/task_file.h"

namespace zebra {

struct FewshotOptions {
  int64_t k = 0;
  uint64_t seed = 1234;
  bool shared = false;
};

// The example's text: its gold context + delimiter + gold continuation.
std::string render_shot(const TaskItem& example, TaskSchema schema);
// "ctx" + " " + "cont" unless either side already has whitespace at the join (lm-eval's target_delimiter).
std::string join_target(const std::string& context, const std::string& continuation);

// A copy of `task` whose every context starts with k examples from `pool` (nullptr: the task's own items),
// never the item itself (by position in its own pool, and by content in another). Throws zebra::Error when
// the pool has a different schema or fewer than k examples other than the item.
Task with_fewshot(const Task& task, const Task* pool, const FewshotOptions& opts);

}  // namespace zebra
