// Regex pre-tokenisation as HF tokenizers does it: a chain of Split(regex, "Isolated") steps, each
// cutting every piece from the previous step into matches and the gaps between them. PCRE2 (UTF+UCP,
// JIT when available) runs the patterns; text must be valid UTF-8 (the BPE validates first).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zebra {

extern const char* const kGpt2Regex;    // HF ByteLevel(use_regex=true)
extern const char* const kLlama3Regex;  // Llama-3's Split pattern
extern const char* const kQwen2Regex;
extern const char* const kDigitRegex;   // HF Digits(individual_digits=true)

class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern);  // throws zebra::Error naming the pattern
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  const std::string& pattern() const { return pattern_; }
  // Appends the pieces of `text` (valid UTF-8) to out: every match and every non-empty gap, in order.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

class PreTokenizer {
 public:
  explicit PreTokenizer(const std::vector<std::string>& patterns);
  const std::vector<std::string>& patterns() const { return patterns_; }
  // Pieces of valid UTF-8 text, views into `text`.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  std::vector<std::string> patterns_;
  std::vector<std::unique_ptr<RegexSplitter>> steps_;
};

}  // namespace zebra
