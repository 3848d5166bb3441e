// A batch of tokens from one or more sequences, processed in one forward pass.
// Prefill of a prompt, one decode step of several sequences, or a mix: each token says which cache
// slot (sequence) it belongs to and its position there. Tokens of one sequence appear in increasing
// position order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zebra {

struct Batch {
  std::vector<int32_t> tokens;  // [n]
  std::vector<int32_t> seq;     // [n] cache slot of each token
  std::vector<int32_t> pos;     // [n] position of each token in its sequence
  std::vector<uint8_t> logits;  // [n] 1 = return logits for this token

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  void add(int32_t token, int32_t seq_id, int32_t position, bool want_logits) {
    tokens.push_back(token);
    seq.push_back(seq_id);
    pos.push_back(position);
    logits.push_back(want_logits ? 1 : 0);
  }
  void clear() { tokens.clear(), seq.clear(), pos.clear(), logits.clear(); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (uint8_t l : logits) n += l;
    return n;
  }
};

// A batch holding one sequence's tokens at positions start.. (logits for all or only the last).
Batch make_sequence_batch(const std::vector<int32_t>& tokens, int32_t seq, int32_t start, bool all_logits);

}  // namespace zebra
