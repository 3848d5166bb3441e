#include "model/row_plan.h"

#include <unordered_map>

#include "core/error.h"

namespace zebra {

RowPlan plan_rows(const Batch& batch) {
  const int64_t n = batch.size();
  ZEBRA_CHECK(static_cast<int64_t>(batch.seq.size()) == n && static_cast<int64_t>(batch.pos.size()) == n &&
                  static_cast<int64_t>(batch.logits.size()) == n,
              "batch: ", n, " tokens but ", batch.seq.size(), " sequence ids, ", batch.pos.size(), " positions and ",
              batch.logits.size(), " logit flags");
  // Distinct sequences in order of first appearance, each with its tokens in batch order.
  std::unordered_map<int32_t, int32_t> run_of;
  std::vector<std::vector<int32_t>> members;
  RowPlan p;
  for (int64_t t = 0; t < n; ++t) {
    auto [it, fresh] = run_of.try_emplace(batch.seq[t], static_cast<int32_t>(members.size()));
    if (fresh) members.emplace_back();
    std::vector<int32_t>& m = members[it->second];
    if (!m.empty())
      ZEBRA_CHECK(batch.pos[t] == batch.pos[m.back()] + 1, "batch token ", t, ": sequence ", batch.seq[t],
                  " is at position ", batch.pos[t], " but its previous token in the batch is at ", batch.pos[m.back()],
                  " (a sequence's tokens must be consecutive positions)");
    m.push_back(static_cast<int32_t>(t));
  }
  p.batch_index.reserve(n), p.tokens.reserve(n), p.pos.reserve(n);
  std::vector<int32_t> row_of(n);
  for (const std::vector<int32_t>& m : members) {
    const int32_t row0 = static_cast<int32_t>(p.batch_index.size());
    p.runs.push_back(Run{batch.seq[m[0]], row0, static_cast<int32_t>(m.size()), batch.pos[m[0]]});
    for (int32_t t : m) {
      row_of[t] = static_cast<int32_t>(p.batch_index.size());
      p.batch_index.push_back(t);
      p.tokens.push_back(batch.tokens[t]);
      p.pos.push_back(batch.pos[t]);
    }
  }
  for (int64_t t = 0; t < n; ++t)
    if (batch.logits[t]) p.logit_rows.push_back(row_of[t]);
  return p;
}

}  // namespace zebra
