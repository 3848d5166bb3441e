// SentencePiece-style BPE with byte fallback, encoding exactly as llama2.c's encode(): a dummy-prefix
// space, one symbol per UTF-8 character (bytes of unknown characters fall back to <0xNN> tokens),
// then repeatedly merge the adjacent pair whose concatenation is the best-scoring vocabulary piece
// (leftmost on ties).
#pragma once
#include <array>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace zebra {

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(std::vector<std::string> tokens, std::vector<float> scores, std::vector<int32_t> token_types,
               int32_t bos, int32_t eos, bool add_bos);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  bool adds_bos() const override { return add_bos_ && bos_ >= 0; }
  bool is_special(int32_t id) const override;
  std::string token_text(int32_t id) const override;
  bool strips_leading_space() const override { return true; }
  float score(int32_t id) const { return scores_.at(id); }
  // GGUF token type: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte <0xNN>.
  int32_t token_type(int32_t id) const { return types_.at(id); }

 private:
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
  int32_t lookup(std::string_view piece) const;

  std::vector<std::string> tokens_;  // as given ("▁" or " ")
  std::vector<std::string> pieces_;  // "▁" replaced by " "
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  int32_t bos_, eos_;
  bool add_bos_;
  std::unordered_map<std::string, int32_t> piece_to_id_;
  std::array<int32_t, 256> byte_id_{};
  std::vector<std::pair<std::string, int32_t>> added_;  // unknown (2), control (3), user-defined (4), longest first
};

}  // namespace zebra
