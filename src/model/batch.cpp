#include "model/batch.h"

namespace zebra {

Batch make_sequence_batch(const std::vector<int32_t>& tokens, int32_t seq, int32_t start, bool all_logits) {
  Batch b;
  for (size_t i = 0; i < tokens.size(); ++i)
    b.add(tokens[i], seq, start + static_cast<int32_t>(i), all_logits || i + 1 == tokens.size());
  return b;
}

}  // namespace zebra
