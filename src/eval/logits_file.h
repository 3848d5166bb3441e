// Saved base-model logits for KL divergence: `zebra perplexity --save-logits FILE` writes them, and a
// later `zebra perplexity --kl-base FILE` compares another model against them without loading the base.
//
// Binary layout, little-endian, version 1:
//   offset 0   char[8]  magic "ZBLOGITS"
//          8   u32      version (1)
//         12   u32      vocab: logits per scored position
//         16   u32      n_ctx: window size in tokens (perplexity's -c)
//         20   u32      scored: positions scored per window (n_ctx - n_ctx/2 - 1)
//         24   i32      bos written at each window start (-1 = none)
//         28   u32      reserved, 0
//         32   u64      n_windows
//         40   u64      n_tokens = n_windows * n_ctx
//         48   i32[n_tokens]                       token ids of the text, before the BOS replacement, so a
//                                                  later run can check it scores the same text and windows
//         then f32[n_windows][scored][vocab]       the logits of each scored position j (the position that
//                                                  predicts token j + 1), window by window
// The file is vocab * 4 bytes per scored token (SmolLM2: 192 KiB), fp32 so that KL of a model against
// its own saved logits is exactly zero.
#pragma once
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace zebra {

struct LogitsHeader {
  int64_t vocab = 0, n_ctx = 0, scored = 0, n_windows = 0;
  int32_t bos = -1;
};

// True when the file exists and starts with the magic.
bool is_logits_file(const std::string& path);

// Streams a logits file: the constructor writes header and tokens; write_window appends one window.
class LogitsFileWriter {
 public:
  LogitsFileWriter(std::ostream& out, const LogitsHeader& h, const std::vector<int32_t>& tokens);
  void write_window(const Tensor& logits);  // [scored, vocab]
  ~LogitsFileWriter() = default;

 private:
  std::ostream& out_;
  LogitsHeader h_;
  int64_t written_ = 0;
};

// A logits file, memory-mapped and validated on open (magic, version, sizes against the file length).
class LogitsFile {
 public:
  explicit LogitsFile(const std::string& path);
  const LogitsHeader& header() const { return h_; }
  const int32_t* tokens() const { return tokens_; }  // [n_windows * n_ctx]
  const float* window(int64_t w) const;              // [scored, vocab]
  // Throws zebra::Error naming the file unless it was saved for this vocabulary, window size, BOS and
  // token stream (the first n_windows * n_ctx tokens of `tokens`).
  void check_matches(int64_t vocab, int64_t n_ctx, int32_t bos, const std::vector<int32_t>& tokens) const;

 private:
  std::unique_ptr<MappedFile> file_;
  LogitsHeader h_;
  const int32_t* tokens_ = nullptr;
  const float* logits_ = nullptr;
};

}  // namespace zebra
