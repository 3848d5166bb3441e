// Token shards: packed training rows on disk, read by memory-mapping.
//
// File format (.ztok), little-endian, version 1:
//
//   offset  size  field
//        0     4  magic "ZTOK"
//        4     4  uint32 version (1)
//        8     4  uint32 header bytes (64; the token data starts here)
//       12     4  uint32 vocab_size (every token is < vocab_size)
//       16     8  uint64 tokenizer fingerprint (tokenizer_fingerprint(); 0 = unknown)
//       24     8  uint64 row_len (tokens per row, >= 1)
//       32     8  uint64 n_rows (>= 0)
//       40     4  int32  bos id of the tokenizer (-1 = none), informational
//       44     4  int32  eos id of the tokenizer (-1 = none), informational
//       48    16  zero (reserved)
//       64     .  uint32 tokens[n_rows * row_len], row-major
//
// The file size must be exactly 64 + 4 * n_rows * row_len. Shards are written atomically (a temporary
// file renamed into place), so a crash never leaves a half-written shard under the final name.
//
// What a row means to the trainer (spec §4.1, TRL packing): a row is row_len consecutive tokens of the
// packed stream (documents concatenated, BOS at each document start when the tokenizer uses one, EOS after
// each document, no position reset). The model reads row[0..row_len-1] at positions 0..row_len-1; KD/ILD
// use every position; next-token cross-entropy (and evaluation perplexity) predicts row[t+1] from
// position t, i.e. row_len-1 targets per row (the last position has no target, as in HF's shifted labels).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace zebra {

class Tokenizer;
class MappedFile;

constexpr uint32_t kTokenShardVersion = 1;
constexpr uint64_t kTokenShardHeaderBytes = 64;

struct TokenShardHeader {
  uint32_t version = kTokenShardVersion;
  uint32_t vocab_size = 0;
  uint64_t fingerprint = 0;
  int64_t row_len = 0;
  int64_t rows = 0;
  int32_t bos_id = -1, eos_id = -1;
};

// A 64-bit hash (FNV-1a) of everything that decides how text becomes ids: each token's bytes and special
// flag, bos/eos/stop ids, whether BOS is added, the SentencePiece space rule, the BPE merge list and
// pre-tokeniser or the SentencePiece scores, and the ids a fixed probe text encodes to. Loading the same
// tokenizer again gives the same value; it is stable across runs and machines.
uint64_t tokenizer_fingerprint(const Tokenizer& tok);
// "0x0123456789abcdef"
std::string fingerprint_hex(uint64_t fp);

// A read-only, memory-mapped shard. Movable; default-constructed = empty (no file, 0 rows).
class TokenShard {
 public:
  TokenShard();
  ~TokenShard();
  TokenShard(TokenShard&&) noexcept;
  TokenShard& operator=(TokenShard&&) noexcept;

  // Maps and validates `path` (magic, version, header fields, exact size; with check_tokens also every
  // token < vocab_size, one pass over the data). Throws zebra::Error naming the file and the problem.
  static TokenShard open(const std::string& path, bool check_tokens = true);

  int64_t rows() const { return header_.rows; }
  int64_t row_len() const { return header_.row_len; }
  int64_t tokens() const { return header_.rows * header_.row_len; }
  uint64_t fingerprint() const { return header_.fingerprint; }
  uint32_t vocab_size() const { return header_.vocab_size; }
  const TokenShardHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  // Row i (0 <= i < rows()): row_len() tokens, valid while the shard lives. Throws for i out of range.
  const uint32_t* row(int64_t i) const;
  // Row i as int32 ids (what Batch and the tokenizers take).
  std::vector<int32_t> row_ids(int64_t i) const;
  // Throws unless the shard was made with this tokenizer (same fingerprint and vocab size).
  void check_tokenizer(const Tokenizer& tok) const;

 private:
  std::unique_ptr<MappedFile> file_;
  TokenShardHeader header_;
  std::string path_;
  const uint32_t* data_ = nullptr;
};

// Writes a shard atomically. row_at(i) gives row i's header.row_len tokens for i in [0, header.rows);
// every token must be < header.vocab_size (checked; the error names the row and column).
void write_token_shard(const std::string& path, const TokenShardHeader& header,
                       const std::function<const uint32_t*(int64_t row)>& row_at);
// Convenience: rows stored contiguously in `tokens` (size must be rows * row_len).
void write_token_shard(const std::string& path, const TokenShardHeader& header, const std::vector<uint32_t>& tokens);

// 64-bit non-cryptographic content hash (for cache keys, not security); hash64 of equal bytes is equal
// everywhere. hash_file maps the file (throws naming it when unreadable).
uint64_t hash64(const void* data, size_t n, uint64_t seed = 0);
uint64_t hash_file(const std::string& path);

}  // namespace zebra
