#include "tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"

namespace zebra {

std::vector<std::string> pre_regexes_for(const std::string& pre) {
  // The names llama.cpp writes to tokenizer.ggml.pre, grouped by the pre-tokenizer they stand for.
  if (pre == "gpt2" || pre == "default" || pre.empty() || pre == "gpt-2" || pre == "olmo" || pre == "jais")
    return {kGpt2Regex};
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "codeshell" ||
      pre == "exaone" || pre == "minerva")
    return {kDigitRegex, kGpt2Regex};
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" || pre == "smaug-bpe" ||
      pre == "falcon3")
    return {kLlama3Regex};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen") return {kQwen2Regex};
  fail("byte-level BPE: unsupported pre-tokenizer tokenizer.ggml.pre = '", pre,
       "' (supported: gpt2, default, smollm, starcoder, llama-bpe, llama3, dbrx, smaug-bpe, qwen2, ...)");
}

namespace {

BpeVocabSpec resolve(BpeVocabSpec spec) {
  if (spec.pre_regexes.empty()) spec.pre_regexes = pre_regexes_for(spec.pre);
  if (spec.ignore_merges < 0) {
    bool llama3 = spec.pre_regexes.size() == 1 && spec.pre_regexes[0] == kLlama3Regex;
    spec.ignore_merges = llama3 ? 1 : 0;
  }
  return spec;
}

}  // namespace

ByteBpeTokenizer::ByteBpeTokenizer(const BpeVocabSpec& spec_in)
    : spec_(resolve(spec_in)), ignore_merges_(spec_.ignore_merges == 1), pre_(spec_.pre_regexes) {
  const size_t n = spec_.tokens.size();
  ZEBRA_CHECK(n > 0, "byte-level BPE: empty vocabulary (tokenizer.ggml.tokens)");
  ZEBRA_CHECK(n < (1u << 31), "byte-level BPE: vocabulary too large: ", n);
  ZEBRA_CHECK(spec_.token_types.empty() || spec_.token_types.size() == n, "byte-level BPE: token_types has ",
              spec_.token_types.size(), " entries, expected one per token (", n, ")");
  auto check_id = [&](int32_t id, const char* what) {
    ZEBRA_CHECK(id >= -1 && id < static_cast<int64_t>(n), "byte-level BPE: ", what, " id ", id,
                " out of range [0, ", n, ")");
  };
  check_id(spec_.bos, "bos");
  check_id(spec_.eos, "eos");
  for (int32_t e : spec_.extra_eos) check_id(e, "extra eos");

  added_flag_.assign(n, 0);
  id_bytes_.resize(n);
  byte_id_.fill(-1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = spec_.tokens[i];
    int32_t type = spec_.token_types.empty() ? 1 : spec_.token_types[i];
    int32_t id = static_cast<int32_t>(i);
    // Control, unknown and user-defined tokens are stored as plain text and matched in raw text.
    if (type == 2 || type == 3 || type == 4) {
      added_flag_[i] = type == 4 ? 1 : 2;
      id_bytes_[i] = t;
      if (!t.empty()) added_.push_back({t, id, type != 4});
      continue;
    }
    id_bytes_[i] = byte_level::decode(t);
    if (type == 5) continue;  // unused slots never come out of encode
    // A later duplicate does not replace the first id, as in HF's vocab map built from the list.
    token_to_id_.emplace(t, id);
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8::append_codepoint(s, byte_level::byte_to_codepoint(static_cast<unsigned char>(b)));
    auto it = token_to_id_.find(s);
    if (it != token_to_id_.end()) byte_id_[b] = it->second;
  }
  std::stable_sort(added_.begin(), added_.end(),
                   [](const Added& a, const Added& b) { return a.text.size() > b.text.size(); });
  for (size_t k = 0; k < added_.size(); ++k)
    added_by_byte_[static_cast<unsigned char>(added_[k].text[0])].push_back(static_cast<uint32_t>(k));

  merges_.reserve(spec_.merges.size() * 2);
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const std::string& m = spec_.merges[r];
    size_t sp = m.find(' ', 1);
    ZEBRA_CHECK(sp != std::string::npos && sp + 1 < m.size(), "byte-level BPE: merge #", r, " '", m,
                "' is not two tokens separated by a space");
    std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), ic = token_to_id_.find(a + b);
    ZEBRA_CHECK(ia != token_to_id_.end(), "byte-level BPE: merge #", r, " '", m, "' names unknown token '", a, "'");
    ZEBRA_CHECK(ib != token_to_id_.end(), "byte-level BPE: merge #", r, " '", m, "' names unknown token '", b, "'");
    ZEBRA_CHECK(ic != token_to_id_.end(), "byte-level BPE: merge #", r, " '", m, "' makes '", a + b,
                "', which is not in the vocabulary");
    // The first occurrence of a pair keeps its (lower) rank.
    merges_.emplace(pair_key(ia->second, ib->second), MergeInfo{static_cast<int32_t>(r), ic->second});
  }
  set_chat_template_text(spec_.chat_template);
}

std::vector<int32_t> ByteBpeTokenizer::eos_ids() const {
  std::vector<int32_t> out;
  if (spec_.eos >= 0) out.push_back(spec_.eos);
  for (int32_t e : spec_.extra_eos)
    if (e >= 0 && std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
  return out;
}

bool ByteBpeTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return added_flag_[id] == 2 || id == spec_.bos || id == spec_.eos;
}

bool ByteBpeTokenizer::is_added(int32_t id) const {
  return id >= 0 && id < vocab_size() && added_flag_[id] != 0;
}

std::string ByteBpeTokenizer::token_text(int32_t id) const {
  ZEBRA_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
  return spec_.tokens[id];
}

std::string ByteBpeTokenizer::token_bytes(int32_t id) const {
  ZEBRA_CHECK(id >= 0 && id < vocab_size(), "token id ", id, " out of range [0, ", vocab_size(), ")");
  return id_bytes_[id];
}

void ByteBpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  // One symbol per byte to start with; bytes without a token are dropped, as HF BPE without unk does.
  struct Sym {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(piece.size());
  for (unsigned char b : piece) {
    int32_t id = byte_id_[b];
    if (id < 0) continue;
    int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back({id, k - 1, -1});
    if (k > 0) syms[k - 1].next = k;
  }
  if (syms.empty()) return;

  // Lowest rank first, then leftmost; stale entries are skipped when popped.
  struct Cand {
    int32_t rank, left, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[left].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(syms[left].id, syms[right].id));
    if (it != merges_.end()) heap.push({it->second.rank, left, syms[left].id, syms[right].id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) push_pair(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    if (l.id != c.left_id || l.next < 0) continue;  // merged away or changed since pushed
    Sym& r = syms[l.next];
    if (r.id != c.right_id) continue;
    l.id = merges_.at(pair_key(c.left_id, c.right_id)).result;
    r.id = -1;  // dead
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t k = 0; k >= 0; k = syms[k].next) out.push_back(syms[k].id);
}

void ByteBpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() <= 64) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bool done = false;
  if (ignore_merges_) {
    auto it = token_to_id_.find(byte_level::encode(piece));
    if (it != token_to_id_.end()) {
      ids.push_back(it->second);
      done = true;
    }
  }
  if (!done) bpe(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (piece.size() <= 64) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() > 200000) cache_.clear();  // bounded memory for huge, varied inputs
    cache_.emplace(std::string(piece), std::move(ids));
  }
}

void ByteBpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  // Valid UTF-8 runs go through the regex pre-tokenizer; each invalid byte is a piece of its own.
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i, bad = utf8::first_invalid(text.substr(start));
    i = bad == std::string_view::npos ? text.size() : start + bad;
    if (i > start)
      for (auto piece : pre_.split(text.substr(start, i - start))) encode_piece(piece, out);
    if (i < text.size()) {
      // An invalid byte: its byte token when the vocabulary has one (exact round trip), else the
      // tokens of U+FFFD, as if the text had been decoded with errors="replace" (vocabularies trained
      // on UTF-8 often lack 0xC0, 0xC1 and 0xF5..0xFF).
      int32_t id = byte_id_[static_cast<unsigned char>(text[i])];
      if (id >= 0) out.push_back(id);
      else encode_piece("\xEF\xBF\xBD", out);
      ++i;
    }
  }
}

std::vector<int32_t> ByteBpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && adds_bos()) out.push_back(spec_.bos);
  size_t plain_start = 0;
  for (size_t i = 0; i < text.size();) {
    const Added* hit = nullptr;
    for (uint32_t k : added_by_byte_[static_cast<unsigned char>(text[i])]) {
      const Added& a = added_[k];  // longest first, so the first hit is the longest at i
      if (a.special && !parse_special) continue;
      if (text.compare(i, a.text.size(), a.text) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(text.substr(plain_start, i - plain_start), out);
    out.push_back(hit->id);
    i += hit->text.size();
    plain_start = i;
  }
  encode_plain(text.substr(plain_start), out);
  return out;
}

void add_conventional_stop_tokens(BpeVocabSpec& spec) {
  static const char* const kStops[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>",
                                       "<|endoftext|>", "<end_of_turn>", "<|end|>"};
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    int32_t type = spec.token_types.empty() ? 1 : spec.token_types[i];
    if (type != 3 && type != 4) continue;  // only added/control tokens, never ordinary text pieces
    for (const char* s : kStops) {
      int32_t id = static_cast<int32_t>(i);
      if (spec.tokens[i] == s && id != spec.eos &&
          std::find(spec.extra_eos.begin(), spec.extra_eos.end(), id) == spec.extra_eos.end())
        spec.extra_eos.push_back(id);
    }
  }
}

std::unique_ptr<Tokenizer> make_byte_bpe(const BpeVocabSpec& spec) {
  return std::make_unique<ByteBpeTokenizer>(spec);
}

}  // namespace zebra
