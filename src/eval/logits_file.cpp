#include "eval/logits_file.h"

#include <cstring>
#include <fstream>

#include "core/error.h"

namespace zebra {

namespace {

constexpr char kMagic[8] = {'Z', 'B', 'L', 'O', 'G', 'I', 'T', 'S'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 48;

template <class T>
void put(std::ostream& out, T v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

bool is_logits_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  return in.read(magic, sizeof magic) && std::memcmp(magic, kMagic, sizeof magic) == 0;
}

LogitsFileWriter::LogitsFileWriter(std::ostream& out, const LogitsHeader& h, const std::vector<int32_t>& tokens)
    : out_(out), h_(h) {
  ZEBRA_CHECK(static_cast<int64_t>(tokens.size()) == h.n_windows * h.n_ctx, "logits file: ", tokens.size(),
              " tokens for ", h.n_windows, " windows of ", h.n_ctx);
  out_.write(kMagic, sizeof kMagic);
  put<uint32_t>(out_, kVersion);
  put<uint32_t>(out_, static_cast<uint32_t>(h.vocab));
  put<uint32_t>(out_, static_cast<uint32_t>(h.n_ctx));
  put<uint32_t>(out_, static_cast<uint32_t>(h.scored));
  put<int32_t>(out_, h.bos);
  put<uint32_t>(out_, 0);
  put<uint64_t>(out_, static_cast<uint64_t>(h.n_windows));
  put<uint64_t>(out_, static_cast<uint64_t>(tokens.size()));
  out_.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
}

void LogitsFileWriter::write_window(const Tensor& logits) {
  ZEBRA_CHECK(logits.numel() == h_.scored * h_.vocab, "logits file: a window of ", logits.numel(),
              " logits, expected ", h_.scored, " x ", h_.vocab);
  ZEBRA_CHECK(written_ < h_.n_windows, "logits file: more than the ", h_.n_windows, " windows announced");
  out_.write(reinterpret_cast<const char*>(logits.ptr()), static_cast<std::streamsize>(logits.numel() * 4));
  written_ += 1;
}

LogitsFile::LogitsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const uint8_t* p = file_->data();
  const uint64_t size = file_->size();
  ZEBRA_CHECK(size >= kHeaderBytes && std::memcmp(p, kMagic, sizeof kMagic) == 0, path,
              ": not a zebra logits file (expected the magic ZBLOGITS, from zebra perplexity --save-logits)");
  const uint32_t version = get<uint32_t>(p + 8);
  ZEBRA_CHECK(version == kVersion, path, ": logits file version ", version, ", this zebra reads version ", kVersion);
  h_.vocab = get<uint32_t>(p + 12);
  h_.n_ctx = get<uint32_t>(p + 16);
  h_.scored = get<uint32_t>(p + 20);
  h_.bos = get<int32_t>(p + 24);
  const uint64_t n_windows = get<uint64_t>(p + 32), n_tokens = get<uint64_t>(p + 40);
  ZEBRA_CHECK(h_.vocab > 0 && h_.n_ctx >= 4 && h_.scored == h_.n_ctx - h_.n_ctx / 2 - 1, path,
              ": inconsistent header (vocab ", h_.vocab, ", n_ctx ", h_.n_ctx, ", scored ", h_.scored, ")");
  ZEBRA_CHECK(n_windows >= 1 && n_windows < (1ull << 32) && n_tokens == n_windows * h_.n_ctx, path,
              ": inconsistent header (", n_windows, " windows, ", n_tokens, " tokens, n_ctx ", h_.n_ctx, ")");
  h_.n_windows = static_cast<int64_t>(n_windows);
  const uint64_t expected = kHeaderBytes + n_tokens * 4 + n_windows * h_.scored * h_.vocab * 4;
  ZEBRA_CHECK(size == expected, path, ": ", size, " bytes, expected ", expected, " for ", n_windows, " windows of ",
              h_.scored, " x ", h_.vocab, " logits (truncated or corrupted?)");
  tokens_ = reinterpret_cast<const int32_t*>(p + kHeaderBytes);  // 4-byte aligned: the header is 48 bytes
  logits_ = reinterpret_cast<const float*>(p + kHeaderBytes + n_tokens * 4);
}

const float* LogitsFile::window(int64_t w) const {
  ZEBRA_CHECK(w >= 0 && w < h_.n_windows, file_->path(), ": window ", w, " of ", h_.n_windows);
  return logits_ + w * h_.scored * h_.vocab;
}

void LogitsFile::check_matches(int64_t vocab, int64_t n_ctx, int32_t bos, const std::vector<int32_t>& tokens) const {
  const std::string& path = file_->path();
  ZEBRA_CHECK(vocab == h_.vocab, path, ": saved for a vocabulary of ", h_.vocab, " tokens, the model has ", vocab);
  ZEBRA_CHECK(n_ctx == h_.n_ctx, path, ": saved with -c ", h_.n_ctx, ", this run uses -c ", n_ctx);
  ZEBRA_CHECK(bos == h_.bos, path, ": saved with BOS ", h_.bos, " at each window start, this model uses ", bos);
  const int64_t n = h_.n_windows * h_.n_ctx;
  ZEBRA_CHECK(static_cast<int64_t>(tokens.size()) / n_ctx == h_.n_windows, path, ": saved for ", h_.n_windows,
              " windows, this run has ", static_cast<int64_t>(tokens.size()) / n_ctx,
              " (same text and --chunks as the run that saved it?)");
  for (int64_t i = 0; i < n; ++i)
    ZEBRA_CHECK(tokens[i] == tokens_[i], path, ": token ", i, " is ", tokens_[i], " in the file but ", tokens[i],
                " in this text (a different text or tokenizer)");
}

}  // namespace zebra
