// Byte-level BPE (GPT-2 style), the tokenizer of SmolLM2 and Llama-3: added tokens are split out
// first (leftmost, longest), the rest is pre-tokenised by regex, each piece's bytes are mapped with
// bytes_to_unicode and merged by rank.
#pragma once
#include <array>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

// Adds the stop tokens chat models end turns with (<|eot_id|>, <|im_end|>, <|endoftext|>, ...) that
// are in the vocabulary to spec.extra_eos, as llama.cpp does for its end-of-generation set.
void add_conventional_stop_tokens(BpeVocabSpec& spec);

class ByteBpeTokenizer : public Tokenizer {
 public:
  explicit ByteBpeTokenizer(const BpeVocabSpec& spec);  // throws zebra::Error for an inconsistent spec

  // The vocabulary as built (pre_regexes and ignore_merges resolved), for export.
  const BpeVocabSpec& spec() const { return spec_; }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(spec_.tokens.size()); }
  int32_t bos_id() const override { return spec_.bos; }
  int32_t eos_id() const override { return spec_.eos; }
  std::vector<int32_t> eos_ids() const override;
  bool adds_bos() const override { return spec_.add_bos && spec_.bos >= 0; }
  bool is_special(int32_t id) const override;
  std::string token_text(int32_t id) const override;
  // Whether an id is an added token matched in raw text (GGUF control/user-defined/unknown).
  bool is_added(int32_t id) const;

 private:
  struct Added {
    std::string text;
    int32_t id;
    bool special;
  };
  struct MergeInfo {
    int32_t rank;
    int32_t result;
  };

  // Appends the ids of one pre-token (valid UTF-8 bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  BpeVocabSpec spec_;
  bool ignore_merges_ = false;
  PreTokenizer pre_;
  std::unordered_map<std::string, int32_t> token_to_id_;  // byte-level strings of the normal tokens
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::array<int32_t, 256> byte_id_{};                    // token of each single byte, -1 if none
  std::vector<std::string> id_bytes_;                     // token_bytes per id
  std::vector<Added> added_;                              // longest first
  std::array<std::vector<uint32_t>, 256> added_by_byte_;  // indices into added_ by first byte
  std::vector<uint8_t> added_flag_;                       // per id: 0 no, 1 added, 2 added+special

  // Per-piece cache of merge results (pieces repeat a lot in real text).
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace zebra
