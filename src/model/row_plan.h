// How a Batch becomes the rows of a forward: its tokens grouped by sequence (stable, sequences in order of
// first appearance), so every layer sees each sequence as one contiguous run (kernels/views.h). The forward
// works in row order and maps its logits and traces back to batch order.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/views.h"
#include "model/batch.h"

namespace zebra {

struct RowPlan {
  std::vector<int32_t> batch_index;  // [n] row r holds the batch's token batch_index[r]
  std::vector<int32_t> tokens;       // [n] token ids in row order
  std::vector<int32_t> pos;          // [n] positions in row order
  std::vector<Run> runs;
  std::vector<int32_t> logit_rows;   // rows whose logits were asked for, in batch order
  RowLayout layout() const {
    return {runs.data(), static_cast<int64_t>(runs.size()), pos.data(), static_cast<int64_t>(pos.size())};
  }
};

// Groups the batch; throws zebra::Error when a sequence's tokens are not consecutive positions in batch
// order (the same sequence appearing, e.g., at 3, 4 then 7). Slot and position ranges are the caller's to check.
RowPlan plan_rows(const Batch& batch);

}  // namespace zebra
