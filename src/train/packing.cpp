#include "train/packing.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/utf8.h"
#include "io/atomic_write.h"
#include "io/mapped_file.h"

namespace zebra {

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kManifestVersion = 1;
const char* kTrainFile = "train.ztok";
const char* kHoldoutFile = "holdout.ztok";
const char* kManifestFile = "manifest.json";

const char* template_name(ChatTemplateKind k) {
  switch (k) {
    case ChatTemplateKind::None: return "none";
    case ChatTemplateKind::ChatML: return "chatml";
    case ChatTemplateKind::Llama3: return "llama3";
    case ChatTemplateKind::SmolLM: return "smollm";
  }
  return "?";
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Runs make(i) for i in [0, n) on all threads, then consumes the results in order. An exception from
// make(i) is rethrown for the smallest such i (after the items before it were consumed), so errors are
// deterministic whatever the thread count.
void parallel_ordered(int64_t n, const std::function<std::vector<int32_t>(int64_t)>& make,
                      const std::function<void(int64_t, std::vector<int32_t>&&)>& consume) {
  constexpr int64_t kChunk = 512;
  std::vector<std::vector<int32_t>> out;
  std::vector<std::exception_ptr> err;
  for (int64_t start = 0; start < n; start += kChunk) {
    int64_t m = std::min(kChunk, n - start);
    out.assign(static_cast<size_t>(m), {});
    err.assign(static_cast<size_t>(m), nullptr);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t k = 0; k < m; ++k) {
      try {
        out[k] = make(start + k);
      } catch (...) {
        err[k] = std::current_exception();
      }
    }
    for (int64_t k = 0; k < m; ++k) {
      if (err[k]) std::rethrow_exception(err[k]);
      consume(start + k, std::move(out[k]));
    }
  }
}

struct SourceInfo {
  std::string path;      // as given
  std::string abs_path;  // absolute, normalised
  int64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t hash = 0;     // filled when read
};

SourceInfo stat_source(const std::string& path) {
  SourceInfo s;
  s.path = path;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  s.abs_path = (ec ? fs::path(path) : abs).lexically_normal().string();
  struct stat st {};
  ZEBRA_CHECK(::stat(path.c_str(), &st) == 0, "cannot read data file ", path, ": ", std::strerror(errno));
  ZEBRA_CHECK(S_ISREG(st.st_mode), "cannot read data file ", path, ": not a regular file");
  s.size = static_cast<int64_t>(st.st_size);
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

int64_t for_each_document_in(const Tokenizer& tok, const std::string& path, std::string_view content,
                             const std::string& doc_separator,
                             const std::function<void(std::vector<int32_t>&&)>& on_doc) {
  if (is_jsonl_path(path)) return for_each_jsonl_document(tok, content, path, on_doc);
  size_t bad = utf8::first_invalid(content);
  ZEBRA_CHECK(bad == std::string_view::npos, path, ": invalid UTF-8 at byte offset ", bad,
              " (text data files must be UTF-8)");
  if (doc_separator.empty()) {
    if (content.empty()) return 1;
    on_doc(tokenize_text_document(tok, content));
    return 0;
  }
  std::vector<std::string_view> pieces;
  int64_t empty = 0;
  for (size_t pos = 0;;) {
    size_t hit = content.find(doc_separator, pos);
    std::string_view piece = trim(content.substr(pos, hit == std::string_view::npos ? std::string_view::npos : hit - pos));
    if (piece.empty())
      ++empty;
    else
      pieces.push_back(piece);
    if (hit == std::string_view::npos) break;
    pos = hit + doc_separator.size();
  }
  parallel_ordered(
      static_cast<int64_t>(pieces.size()), [&](int64_t i) { return tokenize_text_document(tok, pieces[i]); },
      [&](int64_t, std::vector<int32_t>&& ids) { on_doc(std::move(ids)); });
  return empty;
}

json manifest_settings(const Tokenizer& tok, uint64_t fp, int64_t seq_len, const PackOptions& o) {
  json s;
  s["tokenizer_fingerprint"] = fingerprint_hex(fp);
  s["vocab_size"] = tok.vocab_size();
  s["chat_template"] = template_name(tok.chat_template());
  s["seq_len"] = seq_len;
  s["seed"] = o.seed;
  s["shuffle"] = o.shuffle;
  s["holdout_rows"] = o.holdout_rows;
  s["holdout_fraction"] = o.holdout_rows >= 0 ? 0.0 : o.holdout_fraction;
  s["doc_separator"] = o.doc_separator;
  return s;
}

json stats_json(const PackStats& st) {
  return json{{"files", st.files},       {"documents", st.documents},
              {"empty_documents", st.empty_documents}, {"tokens", st.tokens},
              {"rows", st.rows},         {"train_rows", st.train_rows},
              {"holdout_rows", st.holdout_rows},       {"dropped_tokens", st.dropped_tokens}};
}

PackStats stats_from_json(const json& j) {
  PackStats st;
  st.files = j.at("files").get<int64_t>();
  st.documents = j.at("documents").get<int64_t>();
  st.empty_documents = j.at("empty_documents").get<int64_t>();
  st.tokens = j.at("tokens").get<int64_t>();
  st.rows = j.at("rows").get<int64_t>();
  st.train_rows = j.at("train_rows").get<int64_t>();
  st.holdout_rows = j.at("holdout_rows").get<int64_t>();
  st.dropped_tokens = j.at("dropped_tokens").get<int64_t>();
  return st;
}

// Opens the shards named by a parsed manifest and checks they agree with it.
PackedData open_from_manifest(const std::string& dir, const json& m) {
  PackedData d;
  d.dir = dir;
  d.manifest_path = (fs::path(dir) / kManifestFile).string();
  d.train_path = (fs::path(dir) / kTrainFile).string();
  d.holdout_path = (fs::path(dir) / kHoldoutFile).string();
  d.stats = stats_from_json(m.at("stats"));
  d.seq_len = m.at("settings").at("seq_len").get<int64_t>();
  d.train = TokenShard::open(d.train_path);
  d.holdout = TokenShard::open(d.holdout_path);
  d.fingerprint = d.train.fingerprint();
  std::string fp = m.at("settings").at("tokenizer_fingerprint").get<std::string>();
  for (const TokenShard* s : {&d.train, &d.holdout}) {
    ZEBRA_CHECK(fingerprint_hex(s->fingerprint()) == fp, s->path(), ": tokenizer fingerprint ",
                fingerprint_hex(s->fingerprint()), " differs from the manifest's ", fp);
    ZEBRA_CHECK(s->row_len() == d.seq_len, s->path(), ": rows of ", s->row_len(), " tokens, the manifest says ",
                d.seq_len);
  }
  ZEBRA_CHECK(d.train.rows() == d.stats.train_rows && d.holdout.rows() == d.stats.holdout_rows, dir,
              ": the shards hold ", d.train.rows(), " + ", d.holdout.rows(), " rows, the manifest says ",
              d.stats.train_rows, " + ", d.stats.holdout_rows);
  return d;
}

}  // namespace

bool is_jsonl_path(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jsonl" || ext == ".ndjson";
}

std::vector<int32_t> tokenize_text_document(const Tokenizer& tok, std::string_view text) {
  ZEBRA_CHECK(tok.eos_id() >= 0, "the tokenizer has no EOS token to end documents with");
  std::vector<int32_t> ids = tok.encode(text, true, false);
  ids.push_back(tok.eos_id());
  return ids;
}

std::vector<int32_t> tokenize_chat_document(const Tokenizer& tok, const std::vector<ChatMessage>& messages) {
  ZEBRA_CHECK(tok.eos_id() >= 0, "the tokenizer has no EOS token to end documents with");
  ZEBRA_CHECK(tok.chat_template() != ChatTemplateKind::None,
              "chat data ('messages') needs a chat template, and this tokenizer has none");
  std::vector<int32_t> ids = tok.encode(render_chat(tok.chat_template(), messages, false), false, true);
  ids.push_back(tok.eos_id());
  return ids;
}

std::vector<ChatMessage> parse_chat_messages(const json& v, const std::string& where, const std::string& field) {
  ZEBRA_CHECK(v.is_array(), where, ": '", field, "' must be a list of {\"role\", \"content\"} objects, got ",
              v.type_name());
  ZEBRA_CHECK(!v.empty(), where, ": '", field, "' is an empty list");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& m = v[i];
    std::string name = cat(field, "[", i, "]");
    ZEBRA_CHECK(m.is_object(), where, ": '", name, "' must be an object with \"role\" and \"content\", got ",
                m.type_name());
    auto role = m.find("role");
    auto content = m.find("content");
    ZEBRA_CHECK(role != m.end(), where, ": '", name, "' has no \"role\"");
    ZEBRA_CHECK(role->is_string(), where, ": '", name, ".role' must be a string, got ", role->type_name());
    ZEBRA_CHECK(content != m.end(), where, ": '", name, "' has no \"content\"");
    ZEBRA_CHECK(content->is_string(), where, ": '", name, ".content' must be a string, got ", content->type_name());
    std::string r = role->get<std::string>();
    ZEBRA_CHECK(r == "system" || r == "user" || r == "assistant" || r == "tool", where, ": '", name, ".role' is '", r,
                "'; expected system, user, assistant or tool (ShareGPT-style 'human'/'gpt' data needs converting)");
    out.push_back({r, content->get<std::string>()});
  }
  return out;
}

int64_t for_each_jsonl_document(const Tokenizer& tok, std::string_view content, const std::string& where,
                                const std::function<void(std::vector<int32_t>&&)>& on_doc) {
  struct Line {
    std::string_view text;
    int64_t number;
  };
  std::vector<Line> lines;
  int64_t number = 0;
  for (size_t pos = 0; pos < content.size();) {
    size_t nl = content.find('\n', pos);
    std::string_view line = content.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    ++number;
    pos = nl == std::string_view::npos ? content.size() : nl + 1;
    if (!trim(line).empty()) lines.push_back({line, number});
  }
  int64_t empty = 0;
  std::vector<uint8_t> is_empty(lines.size(), 0);
  parallel_ordered(
      static_cast<int64_t>(lines.size()),
      [&](int64_t i) -> std::vector<int32_t> {
        const std::string at = cat(where, ":", lines[i].number);
        json j;
        try {
          j = json::parse(lines[i].text);
        } catch (const json::exception& e) {
          fail(at, ": not valid JSON (", e.what(), ")");
        }
        ZEBRA_CHECK(j.is_object(), at, ": expected a JSON object with \"text\" or \"messages\", got ", j.type_name());
        auto msgs = j.find("messages");
        if (msgs != j.end() && !msgs->is_null())
          return tokenize_chat_document(tok, parse_chat_messages(*msgs, at, "messages"));
        auto text = j.find("text");
        ZEBRA_CHECK(text != j.end() && !text->is_null(), at,
                    ": the object has neither \"text\" (a string) nor \"messages\" (a list of {role, content})");
        ZEBRA_CHECK(text->is_string(), at, ": 'text' must be a string, got ", text->type_name());
        const std::string& s = text->get_ref<const std::string&>();
        if (s.empty()) {
          is_empty[i] = 1;
          return {};
        }
        return tokenize_text_document(tok, s);
      },
      [&](int64_t i, std::vector<int32_t>&& ids) {
        if (is_empty[i])
          ++empty;
        else
          on_doc(std::move(ids));
      });
  return empty;
}

int64_t for_each_document(const Tokenizer& tok, const std::string& path, const std::string& doc_separator,
                          const std::function<void(std::vector<int32_t>&&)>& on_doc) {
  MappedFile f(path);
  std::string_view content(reinterpret_cast<const char*>(f.data()), f.size());
  return for_each_document_in(tok, path, content, doc_separator, on_doc);
}

PackedData pack_data(const Tokenizer& tok, const std::vector<std::string>& files, int64_t seq_len,
                     const std::string& dir, const PackOptions& opts) {
  ZEBRA_CHECK(!files.empty(), "no data files given");
  ZEBRA_CHECK(seq_len >= 2 && seq_len <= (int64_t{1} << 31), "the row length (--seq-len) must be at least 2, got ",
              seq_len);
  ZEBRA_CHECK(opts.holdout_rows >= 0 || (opts.holdout_fraction >= 0 && opts.holdout_fraction < 1),
              "the holdout fraction must be in [0, 1), got ", opts.holdout_fraction);
  ZEBRA_CHECK(tok.eos_id() >= 0, "the tokenizer has no EOS token to end documents with");
  std::vector<SourceInfo> sources;
  int64_t total_bytes = 0;
  for (const std::string& f : files) {
    sources.push_back(stat_source(f));
    total_bytes += sources.back().size;
  }
  const uint64_t fp = tokenizer_fingerprint(tok);

  std::error_code ec;
  fs::create_directories(dir, ec);
  ZEBRA_CHECK(fs::is_directory(dir), "cannot create the data directory ", dir,
              ec ? cat(": ", ec.message()) : std::string());
  PackedData d;
  d.dir = dir;
  d.manifest_path = (fs::path(dir) / kManifestFile).string();
  d.train_path = (fs::path(dir) / kTrainFile).string();
  d.holdout_path = (fs::path(dir) / kHoldoutFile).string();
  d.seq_len = seq_len;
  d.fingerprint = fp;
  fs::remove(d.manifest_path, ec);  // from here on the old cache is invalid

  // Tokenise every document into one stream.
  std::vector<uint32_t> stream;
  PackStats& st = d.stats;
  st.files = static_cast<int64_t>(files.size());
  {
    std::unique_ptr<Progress> bar;
    if (opts.show_progress) bar = std::make_unique<Progress>("tokenising", (total_bytes + 1023) / 1024, "KiB");
    int64_t done_bytes = 0;
    for (SourceInfo& s : sources) {
      MappedFile f(s.path);
      std::string_view content(reinterpret_cast<const char*>(f.data()), f.size());
      s.hash = hash64(f.data(), f.size());
      ZEBRA_CHECK(static_cast<int64_t>(f.size()) == s.size, "data file ", s.path, " changed while being read");
      st.empty_documents += for_each_document_in(tok, s.path, content, opts.doc_separator, [&](std::vector<int32_t>&& ids) {
        ++st.documents;
        for (int32_t id : ids) stream.push_back(static_cast<uint32_t>(id));
      });
      done_bytes += s.size;
      if (bar) bar->update((done_bytes + 1023) / 1024);
    }
  }
  st.tokens = static_cast<int64_t>(stream.size());
  ZEBRA_CHECK(st.tokens > 0, "the data hold no tokens: ", st.documents, " documents in ", files.size(),
              " file(s) (", st.empty_documents, " empty)");
  st.rows = st.tokens / seq_len;
  ZEBRA_CHECK(st.rows >= 1, "the data hold only ", st.tokens, " tokens (", st.documents,
              " documents, BOS/EOS included), fewer than one row of ", seq_len,
              " tokens: add data or lower --seq-len");
  st.dropped_tokens = st.tokens - st.rows * seq_len;

  int64_t holdout = 0;
  if (opts.holdout_rows >= 0)
    holdout = opts.holdout_rows;
  else if (opts.holdout_fraction > 0)
    holdout = std::max<int64_t>(1, std::llround(opts.holdout_fraction * static_cast<double>(st.rows)));
  ZEBRA_CHECK(holdout < st.rows, "a holdout of ", holdout, " rows leaves no training rows: the data make only ",
              st.rows, " rows of ", seq_len, " tokens (", st.tokens, " tokens)");
  st.holdout_rows = holdout;
  st.train_rows = st.rows - holdout;

  // Row order: Fisher-Yates over a splitmix64 stream (the same on every platform).
  std::vector<int64_t> order(static_cast<size_t>(st.rows));
  for (int64_t i = 0; i < st.rows; ++i) order[i] = i;
  if (opts.shuffle) {
    uint64_t state = opts.seed;
    auto next = [&state] {
      uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    for (int64_t i = st.rows - 1; i > 0; --i) {
      auto j = static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(i + 1)) >> 64);
      std::swap(order[i], order[j]);
    }
  }
  TokenShardHeader h;
  h.vocab_size = static_cast<uint32_t>(tok.vocab_size());
  h.fingerprint = fp;
  h.row_len = seq_len;
  h.bos_id = tok.bos_id();
  h.eos_id = tok.eos_id();
  h.rows = holdout;
  write_token_shard(d.holdout_path, h, [&](int64_t r) { return stream.data() + order[r] * seq_len; });
  h.rows = st.train_rows;
  write_token_shard(d.train_path, h, [&](int64_t r) { return stream.data() + order[holdout + r] * seq_len; });
  stream.clear();
  stream.shrink_to_fit();

  json m;
  m["format"] = "zebra packed data";
  m["version"] = kManifestVersion;
  m["settings"] = manifest_settings(tok, fp, seq_len, opts);
  json src = json::array();
  for (const SourceInfo& s : sources)
    src.push_back({{"path", s.path}, {"abs_path", s.abs_path}, {"size", s.size}, {"mtime_ns", s.mtime_ns},
                   {"hash64", fingerprint_hex(s.hash)}});
  m["sources"] = src;
  m["stats"] = stats_json(st);
  m["train"] = kTrainFile;
  m["holdout"] = kHoldoutFile;
  m["row_layout"] =
      "each row is seq_len consecutive tokens of the packed stream (documents concatenated, BOS at each start when the "
      "tokenizer uses one, EOS after each); inputs row[0..L-1], next-token targets row[1..L-1]";
  write_file_atomic(d.manifest_path, m.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

  d.train = TokenShard::open(d.train_path, false);
  d.holdout = TokenShard::open(d.holdout_path, false);
  log_info("packed ", st.documents, " documents (", st.tokens, " tokens) from ", st.files, " file(s) into ", st.rows,
           " rows of ", seq_len, ": ", st.train_rows, " train, ", st.holdout_rows, " held out, ", st.dropped_tokens,
           " tail tokens dropped", st.empty_documents ? cat(", ", st.empty_documents, " empty documents skipped") : "");
  return d;
}

PackedData prepare_data(const Tokenizer& tok, const std::vector<std::string>& files, int64_t seq_len,
                        const std::string& dir, const PackOptions& opts) {
  ZEBRA_CHECK(!files.empty(), "no data files given");
  const std::string manifest_path = (fs::path(dir) / kManifestFile).string();
  if (!opts.force && fs::exists(manifest_path)) {
    std::string why;
    try {
      json m = json::parse(std::ifstream(manifest_path, std::ios::binary));
      const uint64_t fp = tokenizer_fingerprint(tok);
      if (m.value("version", 0) != kManifestVersion) {
        why = "manifest version differs";
      } else if (m.at("settings") != manifest_settings(tok, fp, seq_len, opts)) {
        why = "settings differ (tokenizer, chat template, seq_len, seed, holdout or separator)";
      } else {
        const json& src = m.at("sources");
        if (src.size() != files.size()) why = "the list of data files differs";
        bool touched = false;
        for (size_t i = 0; why.empty() && i < files.size(); ++i) {
          SourceInfo s = stat_source(files[i]);
          const json& e = src[i];
          if (e.at("abs_path").get<std::string>() != s.abs_path) {
            why = cat("data file ", i + 1, " is ", s.abs_path, ", was ", e.at("abs_path").get<std::string>());
          } else if (e.at("size").get<int64_t>() != s.size) {
            why = cat(files[i], " changed size");
          } else if (e.at("mtime_ns").get<int64_t>() != s.mtime_ns) {
            if (fingerprint_hex(hash_file(files[i])) != e.at("hash64").get<std::string>())
              why = cat(files[i], " changed");
            else
              touched = true;
          }
        }
        if (why.empty()) {
          PackedData d = open_from_manifest(dir, m);
          d.reused = true;
          if (touched) {  // same content, new mtimes: record them so the next check is cheap again
            json& src_rw = m["sources"];
            for (size_t i = 0; i < files.size(); ++i) src_rw[i]["mtime_ns"] = stat_source(files[i]).mtime_ns;
            write_file_atomic(manifest_path, m.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
          }
          log_info("reusing packed data in ", dir, ": ", d.stats.train_rows, " train + ", d.stats.holdout_rows,
                   " held-out rows of ", d.seq_len, " tokens (", d.stats.documents, " documents)");
          return d;
        }
      }
    } catch (const std::exception& e) {  // an unreadable or inconsistent cache is rebuilt, never trusted
      why = cat("the cache is unusable: ", e.what());
    }
    log_info("repacking ", dir, ": ", why);
  }
  return pack_data(tok, files, seq_len, dir, opts);
}

PackedData open_packed_data(const std::string& dir, const Tokenizer* tok) {
  const std::string manifest_path = (fs::path(dir) / kManifestFile).string();
  ZEBRA_CHECK(fs::exists(manifest_path), "no packed data in ", dir, ": ", manifest_path,
              " is missing (run zebra data pack)");
  json m;
  try {
    m = json::parse(std::ifstream(manifest_path, std::ios::binary));
    ZEBRA_CHECK(m.value("version", 0) == kManifestVersion, manifest_path, ": unsupported manifest version");
  } catch (const json::exception& e) {
    fail(manifest_path, ": not a valid manifest (", e.what(), ")");
  }
  PackedData d;
  try {
    d = open_from_manifest(dir, m);
  } catch (const json::exception& e) {
    fail(manifest_path, ": not a valid manifest (", e.what(), ")");
  }
  if (tok) {
    d.train.check_tokenizer(*tok);
    ZEBRA_CHECK(m["settings"].value("chat_template", "") == template_name(tok->chat_template()), dir,
                ": packed with chat template '", m["settings"].value("chat_template", ""),
                "', the tokenizer's is '", template_name(tok->chat_template()), "'");
  }
  return d;
}

}  // namespace zebra
