#include "tokenizer/spm.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <queue>

#include "core/error.h"

namespace zebra {

namespace {

// "<0xNN>" to NN, -1 otherwise.
int parse_byte_piece(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    char c = s[k];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

}  // namespace

SpmTokenizer::SpmTokenizer(std::vector<std::string> tokens, std::vector<float> scores,
                           std::vector<int32_t> token_types, int32_t bos, int32_t eos, bool add_bos)
    : tokens_(std::move(tokens)), scores_(std::move(scores)), types_(std::move(token_types)), bos_(bos), eos_(eos),
      add_bos_(add_bos) {
  const size_t n = tokens_.size();
  ZEBRA_CHECK(n > 0, "SentencePiece vocabulary is empty");
  ZEBRA_CHECK(n < (1u << 31), "SentencePiece vocabulary too large: ", n);
  ZEBRA_CHECK(scores_.size() == n, "SentencePiece vocabulary: ", scores_.size(), " scores for ", n, " tokens");
  ZEBRA_CHECK(types_.empty() || types_.size() == n, "SentencePiece vocabulary: ", types_.size(),
              " token types for ", n, " tokens");
  ZEBRA_CHECK(bos_ >= -1 && bos_ < static_cast<int64_t>(n), "SentencePiece vocabulary: bos id ", bos_, " out of range");
  ZEBRA_CHECK(eos_ >= -1 && eos_ < static_cast<int64_t>(n), "SentencePiece vocabulary: eos id ", eos_, " out of range");
  if (types_.empty()) {
    types_.assign(n, 1);
    for (size_t i = 0; i < n; ++i)
      if (parse_byte_piece(tokens_[i]) >= 0) types_[i] = 6;
  }
  byte_id_.fill(-1);
  pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    pieces_[i] = replace_all(tokens_[i], "\xE2\x96\x81", " ");
    int32_t id = static_cast<int32_t>(i);
    if (types_[i] == 6) {
      int b = parse_byte_piece(tokens_[i]);
      ZEBRA_CHECK(b >= 0, "SentencePiece vocabulary: byte token ", i, " is '", tokens_[i], "', expected <0xNN>");
      if (byte_id_[b] < 0) byte_id_[b] = id;
    }
    if ((types_[i] == 2 || types_[i] == 3 || types_[i] == 4) && !tokens_[i].empty()) added_.push_back({tokens_[i], id});
    // Like llama2.c's sorted-vocabulary lookup every piece (byte tokens too) can be a merge result;
    // the first of duplicate pieces wins.
    piece_to_id_.emplace(pieces_[i], id);
  }
  std::stable_sort(added_.begin(), added_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

int32_t SpmTokenizer::lookup(std::string_view piece) const {
  auto it = piece_to_id_.find(std::string(piece));
  return it == piece_to_id_.end() ? -1 : it->second;
}

bool SpmTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return types_[id] == 2 || types_[id] == 3 || id == bos_ || id == eos_;
}

std::string SpmTokenizer::token_text(int32_t id) const {
  ZEBRA_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
  return tokens_[id];
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  ZEBRA_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
  if (types_[id] == 6) return std::string(1, static_cast<char>(parse_byte_piece(tokens_[id])));
  return pieces_[id];
}

void SpmTokenizer::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  // Symbols: llama2.c collects a lead byte and up to three continuation bytes, looks the whole
  // buffer up, and falls back to one byte token per byte when it is not a piece.
  std::vector<int32_t> ids;
  auto push_bytes = [&](std::string_view s) {
    int32_t id = lookup(s);
    if (id >= 0) {
      ids.push_back(id);
      return;
    }
    for (unsigned char b : s)
      if (byte_id_[b] >= 0) ids.push_back(byte_id_[b]);
  };
  push_bytes(" ");  // the dummy prefix (the caller passes non-empty text)
  size_t start = 0, len = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80) {
      start = i;
      len = 0;
    }
    if (len == 0) start = i;
    ++len;
    bool next_cont = i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
    if (next_cont && len < 4) continue;
    push_bytes(text.substr(start, len));
    len = 0;
  }

  // Greedy merges, best score first and leftmost on ties, via a queue of candidate pairs; this
  // picks the same pair as llama2.c's rescan of the whole sequence after every merge.
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> syms(ids.size());
  for (size_t k = 0; k < ids.size(); ++k)
    syms[k] = {ids[k], static_cast<int32_t>(k) - 1, k + 1 < ids.size() ? static_cast<int32_t>(k + 1) : -1};
  struct Cand {
    float score;
    int32_t left, left_id, right_id, result;
  };
  auto worse = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push_pair = [&](int32_t left) {
    if (left < 0 || syms[left].next < 0) return;
    int32_t right = syms[left].next;
    int32_t id = lookup(pieces_[syms[left].id] + pieces_[syms[right].id]);
    if (id >= 0 && scores_[id] > -1e10f) heap.push({scores_[id], left, syms[left].id, syms[right].id, id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) push_pair(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    if (l.id != c.left_id || l.next < 0 || syms[l.next].id != c.right_id) continue;
    Sym& r = syms[l.next];
    l.id = c.result;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t k = syms.empty() ? -1 : 0; k >= 0; k = syms[k].next) out.push_back(syms[k].id);
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && adds_bos()) out.push_back(bos_);
  // Control/user-defined tokens are split out first (as llama.cpp does); the text fragment at the
  // start and after each such token gets the dummy-prefix space. Without them this is llama2.c.
  size_t plain = 0;
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, int32_t>* hit = nullptr;
    for (const auto& a : added_) {
      if (types_[a.second] != 4 && !parse_special) continue;  // unknown/control: only when asked
      if (text.compare(i, a.first.size(), a.first) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > plain) encode_fragment(text.substr(plain, i - plain), out);
    out.push_back(hit->second);
    i += hit->first.size();
    plain = i;
  }
  if (plain < text.size()) encode_fragment(text.substr(plain), out);
  return out;
}

std::unique_ptr<Tokenizer> make_spm(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                                    const std::vector<int32_t>& token_types, int32_t bos, int32_t eos,
                                    bool add_bos) {
  return std::make_unique<SpmTokenizer>(tokens, scores, token_types, bos, eos, add_bos);
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t vocab_size) {
  ZEBRA_CHECK(vocab_size > 0, "llama2.c tokenizer ", path, ": vocab_size must be positive, got ", vocab_size);
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in, "llama2.c tokenizer ", path, ": cannot open file");
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto read_i32 = [&](const char* what, int64_t index) {
    ZEBRA_CHECK(pos + 4 <= data.size(), "llama2.c tokenizer ", path, ": truncated at byte ", pos, " reading ", what,
                index >= 0 ? cat(" of token ", index) : std::string(), " (file has ", data.size(), " bytes)");
    int32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  int32_t max_len = read_i32("max_token_length", -1);
  ZEBRA_CHECK(max_len >= 0, "llama2.c tokenizer ", path, ": max_token_length is ", max_len, ", expected >= 0");
  std::vector<std::string> tokens(vocab_size);
  std::vector<float> scores(vocab_size);
  std::vector<int32_t> types(vocab_size, 1);
  for (int32_t i = 0; i < vocab_size; ++i) {
    int32_t bits = read_i32("score", i);
    std::memcpy(&scores[i], &bits, 4);
    int32_t len = read_i32("length", i);
    ZEBRA_CHECK(len >= 0 && static_cast<size_t>(len) <= data.size() - pos, "llama2.c tokenizer ", path, ": token ", i,
                " has length ", len, " but only ", data.size() - pos, " bytes remain at offset ", pos);
    tokens[i] = data.substr(pos, len);
    pos += len;
    if (parse_byte_piece(tokens[i]) >= 0) types[i] = 6;
  }
  // llama2.c's fixed ids: 0 = <unk>, 1 = <s>, 2 = </s>.
  if (vocab_size > 0) types[0] = 2;
  if (vocab_size > 1) types[1] = 3;
  if (vocab_size > 2) types[2] = 3;
  return std::make_unique<SpmTokenizer>(tokens, scores, types, vocab_size > 1 ? 1 : -1, vocab_size > 2 ? 2 : -1,
                                        true);
}

}  // namespace zebra
