// Training data for distillation (spec §4.1): text and chat documents tokenised, concatenated and cut
// into rows of exactly seq_len tokens, shuffled by seed, split into train and held-out shards, and cached.
//
// Documents
//   * `.jsonl` / `.ndjson` files: one JSON object per line (blank lines skipped), either
//       {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": "..."}, ...]}
//     rendered with the tokenizer's chat template (render_chat, no generation prompt) and encoded with
//     special tokens parsed (the template's own BOS text included), or
//       {"text": "..."}
//     encoded as plain text (special-token text in it stays plain text). When a line has both, "messages"
//     is used. Other fields are ignored.
//   * every other file (.txt, ...): UTF-8 text, the whole file is ONE document (long files are fine: rows
//     are cut from the packed stream anyway), unless PackOptions::doc_separator is set, which splits the file
//     at each occurrence of that literal string (e.g. "<|endoftext|>" for TinyStories dumps); the separator
//     itself is dropped, each piece is trimmed of surrounding whitespace (spaces, tabs, newlines) and empty
//     pieces are skipped.
//   Each text document is encode(text, add_bos = true): BOS first when the tokenizer uses one. After every
//   document (text or chat) the EOS id is appended. Empty documents ("" text) are skipped and counted.
//
// Rows
//   Documents are concatenated in input order (files in the order given, documents in file order), with
//   no position reset, and the stream is cut into floor(total / seq_len) rows of exactly seq_len tokens;
//   the tail (< seq_len tokens) is dropped, as TRL's packing does. Rows are then shuffled (Fisher-Yates
//   with a splitmix64 stream seeded by `seed`: identical on every platform), the first `holdout` rows of
//   that order form the held-out shard and the rest the training shard. Row layout and targets: see
//   token_shard.h (the model reads all seq_len tokens; next-token targets are row[1..seq_len-1]).
//   Note: the split is by rows, so a document cut at a row boundary can have text on both sides.
//
// Cache directory
//   DIR/train.ztok, DIR/holdout.ztok (0 rows when no holdout) and DIR/manifest.json, which records the
//   settings (tokenizer fingerprint, chat template, seq_len, seed, shuffle, holdout, doc_separator) and each
//   source file (absolute path, size, mtime, 64-bit content hash) with the resulting counts. The manifest
//   is removed before packing and written last, so a crash never leaves a manifest describing other shards.
//   prepare_data reuses the shards when the manifest matches: same settings and the same files with the
//   same size and mtime; a file whose mtime changed but whose content hash is unchanged still matches.
//
// Memory: packing holds the whole token stream (4 bytes per token) in memory.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "train/token_shard.h"

namespace zebra {

struct PackOptions {
  double holdout_fraction = 0.0;  // share of rows held out, in [0, 1): round(fraction * rows), at least 1
                                  // when the fraction is > 0; used when holdout_rows < 0
  int64_t holdout_rows = -1;      // exact number of held-out rows (>= 0 overrides the fraction)
  uint64_t seed = 42;
  bool shuffle = true;            // false keeps rows in stream order (tests, inspection)
  std::string doc_separator;      // non-JSONL files: split documents at this literal string ("" = whole file)
  bool force = false;             // prepare_data: repack even when the manifest matches
  bool show_progress = true;      // progress bar on stderr while tokenising
};

struct PackStats {
  int64_t files = 0, documents = 0, empty_documents = 0;
  int64_t tokens = 0;          // total tokens of all documents, BOS/EOS included
  int64_t rows = 0, train_rows = 0, holdout_rows = 0;
  int64_t dropped_tokens = 0;  // the tail shorter than one row
};

struct PackedData {
  std::string dir, train_path, holdout_path, manifest_path;
  bool reused = false;  // true when prepare_data found a matching cache and tokenised nothing
  int64_t seq_len = 0;
  uint64_t fingerprint = 0;
  PackStats stats;
  TokenShard train, holdout;  // opened and validated
};

// Always tokenises and (re)writes DIR's shards and manifest (DIR is created if needed).
PackedData pack_data(const Tokenizer& tok, const std::vector<std::string>& files, int64_t seq_len,
                     const std::string& dir, const PackOptions& opts = {});
// Reuses DIR when its manifest matches (returns reused = true without tokenising), else pack_data.
PackedData prepare_data(const Tokenizer& tok, const std::vector<std::string>& files, int64_t seq_len,
                        const std::string& dir, const PackOptions& opts = {});
// Opens an existing packed directory (no source files needed); with `tok`, checks it made the shards.
PackedData open_packed_data(const std::string& dir, const Tokenizer* tok = nullptr);

// ---- Pieces, exposed for tests, the fuzz harness and other data tools ----

// One document's ids: [BOS if the tokenizer uses one] + encode(text) + [EOS].
std::vector<int32_t> tokenize_text_document(const Tokenizer& tok, std::string_view text);
// A conversation rendered with the tokenizer's chat template, encoded with special tokens, + [EOS].
// Throws when the tokenizer has no chat template.
std::vector<int32_t> tokenize_chat_document(const Tokenizer& tok, const std::vector<ChatMessage>& messages);
// A JSON array of {"role", "content"} objects as messages; errors name `where` and `field`
// ("data.jsonl:3: 'messages[1].role' must be a string, got number").
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& v, const std::string& where,
                                             const std::string& field);
// Calls on_doc(ids) for each document of JSONL text `content` (`where` names it in errors, as where:line).
// Returns the number of empty documents skipped.
int64_t for_each_jsonl_document(const Tokenizer& tok, std::string_view content, const std::string& where,
                                const std::function<void(std::vector<int32_t>&&)>& on_doc);
// Calls on_doc(ids) for each document of a data file (format by extension, see above).
// Returns the number of empty documents skipped.
int64_t for_each_document(const Tokenizer& tok, const std::string& path, const std::string& doc_separator,
                          const std::function<void(std::vector<int32_t>&&)>& on_doc);
bool is_jsonl_path(const std::string& path);

}  // namespace zebra
