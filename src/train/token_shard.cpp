#include "train/token_shard.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <ostream>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/mapped_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"

static_assert(std::endian::native == std::endian::little, "token shards are read in place: little-endian hosts only");

namespace zebra {

namespace {

constexpr char kMagic[4] = {'Z', 'T', 'O', 'K'};

// FNV-1a over a byte stream, for the fingerprint (small inputs, order matters).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void u64(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(b, 8);
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
};

uint64_t rd_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t rd_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
int32_t rd_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t hash64(const void* data, size_t n, uint64_t seed) {
  // Four independent lanes of multiply-rotate over 8-byte words (several GB/s), folded at the end.
  const auto* p = static_cast<const unsigned char*>(data);
  constexpr uint64_t K1 = 0x9e3779b185ebca87ull, K2 = 0xc2b2ae3d27d4eb4full;
  uint64_t lane[4] = {seed ^ K1, seed ^ K2, seed + K1, seed - K2};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * l, 8);
      lane[l] = std::rotl(lane[l] ^ (w * K2), 31) * K1;
    }
  uint64_t h = mix64(lane[0]) ^ std::rotl(mix64(lane[1]), 17) ^ std::rotl(mix64(lane[2]), 34) ^
               std::rotl(mix64(lane[3]), 51);
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = std::rotl(h ^ (w * K2), 27) * K1;
  }
  for (; i < n; ++i) h = std::rotl(h ^ (p[i] * K1), 11) * K2;
  return mix64(h ^ static_cast<uint64_t>(n));
}

uint64_t hash_file(const std::string& path) {
  MappedFile f(path);
  return hash64(f.data(), f.size());
}

uint64_t tokenizer_fingerprint(const Tokenizer& tok) {
  Fnv f;
  f.str("zebra tokenizer fingerprint v1");
  const int32_t V = tok.vocab_size();
  f.i64(V);
  for (int32_t id = 0; id < V; ++id) {
    // A special token's text is only a label (llama2.c's tokenizer.bin calls BOS "\n<s>\n", its HF
    // tokenizer.json "<s>"): what it means is its id, so only ordinary pieces are hashed by content.
    const bool special = tok.is_special(id);
    f.str(special ? std::string() : tok.token_bytes(id));
    f.u64(special ? 1 : 0);
  }
  f.i64(tok.bos_id());
  f.i64(tok.eos_id());
  std::vector<int32_t> eos = tok.eos_ids();
  f.i64(static_cast<int64_t>(eos.size()));
  for (int32_t e : eos) f.i64(e);
  f.u64(tok.adds_bos() ? 1 : 0);
  f.u64(tok.strips_leading_space() ? 1 : 0);
  // What decides the merges: BPE merge list and pre-tokenisation, SentencePiece scores.
  if (const auto* bpe = dynamic_cast<const ByteBpeTokenizer*>(&tok)) {
    const BpeVocabSpec& spec = bpe->spec();
    f.str("bpe");
    f.i64(static_cast<int64_t>(spec.merges.size()));
    for (const std::string& m : spec.merges) f.str(m);
    f.i64(static_cast<int64_t>(spec.pre_regexes.size()));
    for (const std::string& r : spec.pre_regexes) f.str(r);
    f.str(spec.pre);
    f.i64(spec.ignore_merges);
  } else if (const auto* spm = dynamic_cast<const SpmTokenizer*>(&tok)) {
    // SentencePiece merges by score order, so the order is what is hashed: values differ between the
    // llama2.c tokenizer.bin and its tokenizer.json (shifted by one) while encoding is identical. Special and
    // byte-fallback pieces are never the result of a merge and are left out.
    f.str("spm");
    std::vector<int32_t> mergeable;
    for (int32_t id = 0; id < V; ++id)
      if (!tok.is_special(id) && tok.token_bytes(id).size() > 1) mergeable.push_back(id);
    std::stable_sort(mergeable.begin(), mergeable.end(),
                     [&](int32_t a, int32_t b) { return spm->score(a) > spm->score(b); });
    for (int32_t id : mergeable) f.i64(id);
  }
  // Encoding behaviour, which also covers tokenizer kinds not listed above.
  static const char* kProbe =
      "Hello, world! It's 2024-06-01: the quick brown fox jumps over 13 lazy dogs.\n\n  Indented\ttabs "
      "and   spaces... caf\xc3\xa9 na\xc3\xafve \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 don't we'll I'M "
      "12345678 3.14159 <b>tags</b> snake_case CamelCase http://example.com/a?b=c";
  for (bool bos : {false, true}) {
    std::vector<int32_t> ids = tok.encode(kProbe, bos, false);
    f.i64(static_cast<int64_t>(ids.size()));
    for (int32_t id : ids) f.i64(id);
  }
  return f.h;
}

std::string fingerprint_hex(uint64_t fp) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(fp));
  return buf;
}

TokenShard::TokenShard() = default;
TokenShard::~TokenShard() = default;
TokenShard::TokenShard(TokenShard&&) noexcept = default;
TokenShard& TokenShard::operator=(TokenShard&&) noexcept = default;

TokenShard TokenShard::open(const std::string& path, bool check_tokens) {
  TokenShard s;
  s.path_ = path;
  s.file_ = std::make_unique<MappedFile>(path);
  const uint8_t* p = s.file_->data();
  const uint64_t size = s.file_->size();
  ZEBRA_CHECK(size >= kTokenShardHeaderBytes, "token shard ", path, ": truncated: ", size,
              " bytes, smaller than the ", kTokenShardHeaderBytes, "-byte header");
  ZEBRA_CHECK(std::memcmp(p, kMagic, 4) == 0, "token shard ", path,
              ": wrong magic (expected \"ZTOK\"; not a zebra token shard)");
  TokenShardHeader& h = s.header_;
  h.version = static_cast<uint32_t>(rd_u32(p + 4));
  ZEBRA_CHECK(h.version == kTokenShardVersion, "token shard ", path, ": unsupported version ", h.version,
              " (this build reads version ", kTokenShardVersion, ")");
  uint64_t header_bytes = rd_u32(p + 8);
  ZEBRA_CHECK(header_bytes == kTokenShardHeaderBytes, "token shard ", path, ": header size ", header_bytes,
              ", expected ", kTokenShardHeaderBytes);
  h.vocab_size = static_cast<uint32_t>(rd_u32(p + 12));
  h.fingerprint = rd_u64(p + 16);
  uint64_t row_len = rd_u64(p + 24), rows = rd_u64(p + 32);
  h.bos_id = rd_i32(p + 40);
  h.eos_id = rd_i32(p + 44);
  ZEBRA_CHECK(h.vocab_size > 0, "token shard ", path, ": vocab_size is 0");
  ZEBRA_CHECK(row_len >= 1 && row_len <= (1ull << 31), "token shard ", path, ": row length ", row_len,
              " is out of range (1 .. 2^31)");
  ZEBRA_CHECK(rows <= (1ull << 40), "token shard ", path, ": row count ", rows, " is out of range");
  const uint64_t data_bytes = (size - kTokenShardHeaderBytes);
  // Compared by division, so no product can overflow.
  ZEBRA_CHECK(data_bytes % 4 == 0 && data_bytes / 4 % row_len == 0 && data_bytes / 4 / row_len == rows,
              "token shard ", path, ": size ", size, " bytes does not match the header (", rows, " rows of ",
              row_len, " tokens need ", kTokenShardHeaderBytes, " + 4 * ", rows, " * ", row_len,
              " bytes): the file is truncated or corrupt");
  h.row_len = static_cast<int64_t>(row_len);
  h.rows = static_cast<int64_t>(rows);
  s.data_ = rows > 0 ? reinterpret_cast<const uint32_t*>(p + kTokenShardHeaderBytes) : nullptr;
  if (check_tokens) {
    const uint64_t n = rows * row_len;
    for (uint64_t i = 0; i < n; ++i)
      if (s.data_[i] >= h.vocab_size)
        fail("token shard ", path, ": token ", s.data_[i], " at row ", i / row_len, ", column ", i % row_len,
             " is not below the vocabulary size ", h.vocab_size, " (corrupt shard)");
  }
  return s;
}

const uint32_t* TokenShard::row(int64_t i) const {
  ZEBRA_CHECK(i >= 0 && i < header_.rows, "token shard ", path_, ": row ", i, " out of range (", header_.rows,
              " rows)");
  return data_ + i * header_.row_len;
}

std::vector<int32_t> TokenShard::row_ids(int64_t i) const {
  const uint32_t* r = row(i);
  return std::vector<int32_t>(r, r + header_.row_len);
}

void TokenShard::check_tokenizer(const Tokenizer& tok) const {
  ZEBRA_CHECK(static_cast<int64_t>(header_.vocab_size) == tok.vocab_size(), "token shard ", path_,
              " was made with a different tokenizer (a vocabulary of ", header_.vocab_size,
              " tokens; this tokenizer has ", tok.vocab_size(), ")");
  uint64_t fp = tokenizer_fingerprint(tok);
  ZEBRA_CHECK(header_.fingerprint == fp, "token shard ", path_, " was made with a different tokenizer (fingerprint ",
              fingerprint_hex(header_.fingerprint), ", this tokenizer's is ", fingerprint_hex(fp), ")");
}

void write_token_shard(const std::string& path, const TokenShardHeader& h,
                       const std::function<const uint32_t*(int64_t row)>& row_at) {
  ZEBRA_CHECK(h.vocab_size > 0, "write_token_shard ", path, ": vocab_size must be > 0");
  ZEBRA_CHECK(h.row_len >= 1 && h.row_len <= (int64_t{1} << 31), "write_token_shard ", path, ": row length ",
              h.row_len, " out of range");
  ZEBRA_CHECK(h.rows >= 0, "write_token_shard ", path, ": negative row count");
  write_file_atomic(path, [&](std::ostream& out) {
    uint8_t hdr[kTokenShardHeaderBytes] = {};
    auto put32 = [&](size_t off, uint32_t v) { std::memcpy(hdr + off, &v, 4); };
    auto put64 = [&](size_t off, uint64_t v) { std::memcpy(hdr + off, &v, 8); };
    std::memcpy(hdr, kMagic, 4);
    put32(4, kTokenShardVersion);
    put32(8, static_cast<uint32_t>(kTokenShardHeaderBytes));
    put32(12, h.vocab_size);
    put64(16, h.fingerprint);
    put64(24, static_cast<uint64_t>(h.row_len));
    put64(32, static_cast<uint64_t>(h.rows));
    put32(40, static_cast<uint32_t>(h.bos_id));
    put32(44, static_cast<uint32_t>(h.eos_id));
    out.write(reinterpret_cast<const char*>(hdr), sizeof hdr);
    for (int64_t r = 0; r < h.rows; ++r) {
      const uint32_t* row = row_at(r);
      for (int64_t c = 0; c < h.row_len; ++c)
        ZEBRA_CHECK(row[c] < h.vocab_size, "write_token_shard ", path, ": token ", row[c], " at row ", r,
                    ", column ", c, " is not below the vocabulary size ", h.vocab_size);
      out.write(reinterpret_cast<const char*>(row), static_cast<std::streamsize>(h.row_len * 4));
    }
  });
}

void write_token_shard(const std::string& path, const TokenShardHeader& h, const std::vector<uint32_t>& tokens) {
  ZEBRA_CHECK(h.rows >= 0 && h.row_len >= 1 && static_cast<int64_t>(tokens.size()) == h.rows * h.row_len,
              "write_token_shard ", path, ": ", tokens.size(), " tokens for ", h.rows, " rows of ", h.row_len);
  write_token_shard(path, h, [&](int64_t r) { return tokens.data() + r * h.row_len; });
}

}  // namespace zebra
