// The distillation trainer's data layer: token shards, packing (text, JSONL, chat), the cache, preference
// pairs for DPO and the synthetic corpus sampler. Expected values are computed independently, from
// Tokenizer::encode, the chat template fixture made with transformers, and single-sequence generate().
#include <sys/stat.h>
#include <utime.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "model/generate.h"
#include "model/loader.h"
#include "support.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "train/packing.h"
#include "train/preference_data.h"
#include "train/synth.h"
#include "train/token_shard.h"

using namespace zebra;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

bool has(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

#define EXPECT_ERROR(stmt, ...)                                       \
  do {                                                                \
    std::string msg_ = test::error_message([&] { stmt; });            \
    for (const std::string& part : std::vector<std::string>{__VA_ARGS__})                      \
      EXPECT_TRUE(has(msg_, part)) << "message: " << msg_ << "\nmissing: " << part;            \
  } while (0)

const Tokenizer& stories_tok() {
  static std::unique_ptr<Tokenizer> t =
      load_llama2c_tokenizer(test::shared_asset("models/stories260K") + "/tok512.bin", 512);
  return *t;
}

const Tokenizer& smollm_tok() {
  static std::unique_ptr<Tokenizer> t = [] {
    GgufFile g(test::smollm_gguf());
    return tokenizer_from_gguf(g);
  }();
  return *t;
}

// The first `n` bytes of a text asset, cut back to the last newline (so UTF-8 stays whole).
std::string text_prefix(const std::string& path, size_t n) {
  std::string s = test::read_file(path).substr(0, n);
  return s.substr(0, s.rfind('\n') + 1);
}

std::vector<int32_t> doc_ids(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = tok.encode(text, true, false);
  ids.push_back(tok.eos_id());
  return ids;
}

std::vector<std::vector<uint32_t>> all_rows(const TokenShard& s) {
  std::vector<std::vector<uint32_t>> out;
  for (int64_t i = 0; i < s.rows(); ++i) out.emplace_back(s.row(i), s.row(i) + s.row_len());
  return out;
}

PackOptions quiet_opts() {
  PackOptions o;
  o.show_progress = false;
  return o;
}

json jmsgs(const std::vector<ChatMessage>& msgs) {
  json a = json::array();
  for (const ChatMessage& m : msgs) a.push_back({{"role", m.role}, {"content", m.content}});
  return a;
}

}  // namespace

// ---- Token shards -------------------------------------------------------------------------------------

TEST(TokenShard, RoundTrip) {
  std::string dir = test::temp_dir(), path = dir + "/a.ztok";
  TokenShardHeader h;
  h.vocab_size = 100;
  h.fingerprint = 0x1234567890abcdefull;
  h.row_len = 5;
  h.rows = 3;
  h.bos_id = 1;
  h.eos_id = 2;
  std::vector<uint32_t> toks(15);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<uint32_t>(i * 7 % 100);
  write_token_shard(path, h, toks);
  EXPECT_EQ(fs::file_size(path), 64u + 15 * 4);
  TokenShard s = TokenShard::open(path);
  EXPECT_EQ(s.rows(), 3);
  EXPECT_EQ(s.row_len(), 5);
  EXPECT_EQ(s.tokens(), 15);
  EXPECT_EQ(s.vocab_size(), 100u);
  EXPECT_EQ(s.fingerprint(), 0x1234567890abcdefull);
  EXPECT_EQ(s.header().bos_id, 1);
  EXPECT_EQ(s.header().eos_id, 2);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(s.row(r)[c], toks[r * 5 + c]);
  EXPECT_EQ(s.row_ids(2), (std::vector<int32_t>{70, 77, 84, 91, 98}));
  EXPECT_ERROR(s.row(3), "row 3 out of range", path.c_str());
  // Moving keeps the mapping valid.
  TokenShard moved = std::move(s);
  EXPECT_EQ(moved.row(1)[0], toks[5]);
  // A shard with no rows is valid (an empty holdout).
  h.rows = 0;
  write_token_shard(dir + "/empty.ztok", h, std::vector<uint32_t>{});
  EXPECT_EQ(TokenShard::open(dir + "/empty.ztok").rows(), 0);
}

TEST(TokenShard, BadFilesGiveClearErrorsNamingTheFile) {
  std::string dir = test::temp_dir(), good = dir + "/good.ztok";
  TokenShardHeader h;
  h.vocab_size = 10;
  h.row_len = 4;
  h.rows = 2;
  write_token_shard(good, h, std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 8});
  const std::string bytes = test::read_file(good);
  const std::string bad = dir + "/bad.ztok";
  // Every truncation.
  for (size_t n = 0; n < bytes.size(); ++n) {
    test::write_file(bad, bytes.substr(0, n));
    std::string msg = test::error_message([&] { TokenShard::open(bad); });
    EXPECT_TRUE(has(msg, bad)) << msg;
    EXPECT_TRUE(has(msg, n < 64 ? "truncated" : "does not match the header")) << n << ": " << msg;
  }
  test::write_file(bad, bytes + "x");
  EXPECT_ERROR(TokenShard::open(bad), "does not match the header", bad.c_str());
  std::string b = bytes;
  b[0] = 'X';
  test::write_file(bad, b);
  EXPECT_ERROR(TokenShard::open(bad), "wrong magic", bad.c_str());
  b = bytes;
  b[4] = 9;
  test::write_file(bad, b);
  EXPECT_ERROR(TokenShard::open(bad), "unsupported version 9", bad.c_str());
  b = bytes;
  b[64 + 4 * 6] = 10;  // row 1, column 2 := 10 = vocab size
  test::write_file(bad, b);
  EXPECT_ERROR(TokenShard::open(bad), "token 10 at row 1, column 2", "vocabulary size 10", bad.c_str());
  EXPECT_NO_THROW(TokenShard::open(bad, /*check_tokens=*/false));
  EXPECT_ERROR(TokenShard::open(dir + "/missing.ztok"), "cannot open", "missing.ztok");
  // The writer refuses out-of-vocabulary tokens and leaves nothing behind.
  EXPECT_ERROR(write_token_shard(dir + "/w.ztok", h, std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 12}),
               "token 12 at row 1, column 3");
  EXPECT_FALSE(fs::exists(dir + "/w.ztok"));
}

TEST(TokenShard, FingerprintIdentifiesTheTokenizer) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const Tokenizer& a = stories_tok();
  auto b = load_llama2c_tokenizer(sdir + "/tok512.bin", 512);
  EXPECT_EQ(tokenizer_fingerprint(a), tokenizer_fingerprint(*b));  // stable across loads
  // The same tokenizer from another file format (a hybrid composed from stories260K carries it as
  // tokenizer.json) has the same fingerprint, so a teacher's shards serve its student.
  auto hf = load_hf_tokenizer(test::fixture("tokenizer/tok512_hf"));
  EXPECT_EQ(tokenizer_fingerprint(*hf), tokenizer_fingerprint(a));
  // Same pieces, different merge scores or BOS rule: different fingerprints.
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>", " ", "a", "b", "ab", " a", " ab"};
  std::vector<float> s1 = {0, 0, 0, -1, -2, -3, -4, -5, -6}, s2 = {0, 0, 0, -1, -2, -3, -9, -5, -6};
  auto t1 = make_spm(toks, s1, {}, 1, 2, true), t2 = make_spm(toks, s2, {}, 1, 2, true),
       t3 = make_spm(toks, s1, {}, 1, 2, false);
  EXPECT_NE(tokenizer_fingerprint(*t1), tokenizer_fingerprint(*t2));
  EXPECT_NE(tokenizer_fingerprint(*t1), tokenizer_fingerprint(*t3));
  EXPECT_NE(tokenizer_fingerprint(*t1), tokenizer_fingerprint(a));
  EXPECT_EQ(fingerprint_hex(0xabcull), "0x0000000000000abc");
  if (!test::smollm_gguf().empty()) {
    EXPECT_NE(tokenizer_fingerprint(smollm_tok()), tokenizer_fingerprint(a));
  }
}

// ---- Packing ------------------------------------------------------------------------------------------

TEST(Packing, CountsAndRowsMatchIndependentTokenisation) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  ZEBRA_REQUIRE_ASSET(valid, "text/tinystories_valid.txt");
  const Tokenizer& tok = stories_tok();
  std::string dir = test::temp_dir();
  // a.txt: one document; b.jsonl: one paragraph per line (+ an empty text, skipped, and blank lines).
  std::string a = text_prefix(valid, 6000);
  test::write_file(dir + "/a.txt", a);
  std::string more = test::read_file(valid).substr(a.size(), 20000);
  std::vector<std::string> paras;
  for (size_t p = 0, q; (q = more.find("\n\n", p)) != std::string::npos && paras.size() < 25; p = q + 2)
    if (q > p) paras.push_back(more.substr(p, q - p));
  std::string jl;
  for (size_t i = 0; i < paras.size(); ++i) {
    jl += json{{"text", paras[i]}, {"id", i}}.dump() + "\n";
    if (i == 3) jl += "{\"text\": \"\"}\n\n";
  }
  test::write_file(dir + "/b.jsonl", jl);

  std::vector<int32_t> expected = doc_ids(tok, a);
  for (const std::string& p : paras) {
    std::vector<int32_t> d = doc_ids(tok, p);
    expected.insert(expected.end(), d.begin(), d.end());
  }
  EXPECT_EQ(expected.front(), tok.bos_id());  // llama2.c adds BOS to each document
  const int64_t L = 64;
  PackOptions o = quiet_opts();
  o.shuffle = false;
  PackedData d = pack_data(tok, {dir + "/a.txt", dir + "/b.jsonl"}, L, dir + "/plain", o);
  EXPECT_EQ(d.stats.files, 2);
  EXPECT_EQ(d.stats.documents, 1 + static_cast<int64_t>(paras.size()));
  EXPECT_EQ(d.stats.empty_documents, 1);
  EXPECT_EQ(d.stats.tokens, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(d.stats.rows, static_cast<int64_t>(expected.size()) / L);
  EXPECT_EQ(d.stats.dropped_tokens, static_cast<int64_t>(expected.size()) % L);
  EXPECT_EQ(d.stats.holdout_rows, 0);
  ASSERT_EQ(d.train.rows(), d.stats.rows);
  EXPECT_EQ(d.holdout.rows(), 0);
  EXPECT_EQ(d.train.fingerprint(), tokenizer_fingerprint(tok));
  for (int64_t r = 0; r < d.train.rows(); ++r)
    for (int64_t c = 0; c < L; ++c) ASSERT_EQ(d.train.row(r)[c], static_cast<uint32_t>(expected[r * L + c])) << r;

  // Shuffled with a holdout: the same rows, split 10% / 90%.
  o.shuffle = true;
  o.holdout_fraction = 0.1;
  PackedData s = pack_data(tok, {dir + "/a.txt", dir + "/b.jsonl"}, L, dir + "/shuf", o);
  EXPECT_EQ(s.stats.holdout_rows, std::llround(0.1 * d.stats.rows));
  EXPECT_EQ(s.train.rows() + s.holdout.rows(), d.stats.rows);
  auto want = all_rows(d.train), got = all_rows(s.train), held = all_rows(s.holdout);
  got.insert(got.end(), held.begin(), held.end());
  EXPECT_NE(got, want);  // shuffled
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  // The manifest records the sources and the counts.
  json m = json::parse(test::read_file(s.manifest_path));
  EXPECT_EQ(m["sources"].size(), 2u);
  EXPECT_EQ(m["sources"][1]["size"].get<int64_t>(), static_cast<int64_t>(jl.size()));
  EXPECT_EQ(m["stats"]["rows"].get<int64_t>(), d.stats.rows);
  EXPECT_EQ(m["settings"]["seq_len"].get<int64_t>(), L);
}

TEST(Packing, ShuffleIsDeterministicBySeed) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  ZEBRA_REQUIRE_ASSET(valid, "text/tinystories_valid.txt");
  std::string dir = test::temp_dir();
  test::write_file(dir + "/a.txt", text_prefix(valid, 20000));
  PackOptions o = quiet_opts();
  o.holdout_rows = 3;
  auto pack = [&](uint64_t seed, const std::string& out) {
    o.seed = seed;
    pack_data(stories_tok(), {dir + "/a.txt"}, 32, dir + "/" + out, o);
    return test::read_file(dir + "/" + out + "/train.ztok") + test::read_file(dir + "/" + out + "/holdout.ztok");
  };
  std::string s1 = pack(7, "x"), s2 = pack(7, "y"), s3 = pack(8, "z");
  EXPECT_EQ(s1, s2);
  EXPECT_NE(s1, s3);
  EXPECT_EQ(TokenShard::open(dir + "/x/holdout.ztok").rows(), 3);
}

TEST(Packing, DocumentSeparatorSplitsTextFiles) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  ZEBRA_REQUIRE_ASSET(train, "text/tinystories_train_2MiB.txt");
  const Tokenizer& tok = stories_tok();
  std::string text = test::read_file(train).substr(0, 30000);
  text = text.substr(0, text.rfind("<|endoftext|>") + 13) + "\n\n";  // ends with a separator and blank space
  std::string dir = test::temp_dir();
  test::write_file(dir + "/s.txt", text);
  std::vector<int32_t> expected;
  int64_t docs = 0;
  for (size_t p = 0;;) {
    size_t q = text.find("<|endoftext|>", p);
    std::string piece = text.substr(p, q == std::string::npos ? std::string::npos : q - p);
    size_t b = piece.find_first_not_of(" \t\r\n"), e = piece.find_last_not_of(" \t\r\n");
    if (b != std::string::npos) {
      std::vector<int32_t> d = doc_ids(tok, piece.substr(b, e - b + 1));
      expected.insert(expected.end(), d.begin(), d.end());
      ++docs;
    }
    if (q == std::string::npos) break;
    p = q + 13;
  }
  ASSERT_GT(docs, 5);
  PackOptions o = quiet_opts();
  o.shuffle = false;
  o.doc_separator = "<|endoftext|>";
  PackedData d = pack_data(tok, {dir + "/s.txt"}, 100, dir + "/out", o);
  EXPECT_EQ(d.stats.documents, docs);
  EXPECT_EQ(d.stats.empty_documents, 1);  // the whitespace after the last separator
  EXPECT_EQ(d.stats.tokens, static_cast<int64_t>(expected.size()));
  ASSERT_GT(d.train.rows(), 0);
  EXPECT_EQ(d.train.row_ids(d.train.rows() - 1),
            std::vector<int32_t>(expected.begin() + (d.train.rows() - 1) * 100, expected.begin() + d.train.rows() * 100));
  // Without the separator the file is one document and the separator is plain text.
  o.doc_separator.clear();
  PackedData whole = pack_data(tok, {dir + "/s.txt"}, 100, dir + "/whole", o);
  EXPECT_EQ(whole.stats.documents, 1);
  EXPECT_EQ(whole.stats.tokens, static_cast<int64_t>(doc_ids(tok, text).size()));
}

TEST(Packing, ChatDocumentsMatchTransformersRendering) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm_tok();
  ASSERT_EQ(tok.chat_template(), ChatTemplateKind::SmolLM);
  json fx = json::parse(test::read_file(test::fixture("tokenizer/chat.json")));
  std::string jl;
  std::vector<int32_t> expected;
  int64_t n = 0;
  for (const json& c : fx["cases"]) {
    if (c["add_generation_prompt"].get<bool>()) continue;
    jl += json{{"messages", c["messages"]}}.dump() + "\n";
    std::vector<int32_t> ids = c["smollm_ids"].get<std::vector<int32_t>>();  // transformers' ids
    ids.push_back(tok.eos_id());
    expected.insert(expected.end(), ids.begin(), ids.end());
    ++n;
    std::vector<ChatMessage> msgs;
    for (const json& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    EXPECT_EQ(tok.decode(tokenize_chat_document(tok, msgs)), c["smollm"].get<std::string>() + "<|im_end|>");
  }
  jl += json{{"text", "Plain text next to chat."}}.dump() + "\n";
  std::vector<int32_t> plain = doc_ids(tok, "Plain text next to chat.");
  EXPECT_EQ(plain.front(), tok.encode("Plain", false, false).front());  // SmolLM2 adds no BOS
  expected.insert(expected.end(), plain.begin(), plain.end());
  std::string dir = test::temp_dir();
  test::write_file(dir + "/chat.jsonl", jl);
  PackOptions o = quiet_opts();
  o.shuffle = false;
  PackedData d = pack_data(tok, {dir + "/chat.jsonl"}, 16, dir + "/out", o);
  EXPECT_EQ(d.stats.documents, n + 1);
  EXPECT_EQ(d.stats.tokens, static_cast<int64_t>(expected.size()));
  for (int64_t r = 0; r < d.train.rows(); ++r)
    EXPECT_EQ(d.train.row_ids(r), std::vector<int32_t>(expected.begin() + r * 16, expected.begin() + (r + 1) * 16));
}

TEST(Packing, Llama3ChatDocumentsCarryTheTemplatesBos) {
  auto tok = load_hf_tokenizer(test::fixture("tokenizer/llama3_tiny"));
  ASSERT_EQ(tok->chat_template(), ChatTemplateKind::Llama3);
  json fx = json::parse(test::read_file(test::fixture("tokenizer/chat.json")));
  for (const json& c : fx["cases"]) {
    if (c["add_generation_prompt"].get<bool>()) continue;
    std::vector<ChatMessage> msgs;
    for (const json& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    std::vector<int32_t> ids = tokenize_chat_document(*tok, msgs);
    std::vector<int32_t> want = tok->encode(c["llama3"].get<std::string>(), false, true);
    want.push_back(tok->eos_id());
    EXPECT_EQ(ids, want);
    EXPECT_EQ(ids.front(), tok->bos_id());
    EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->bos_id()), 1);  // BOS once: from the template only
  }
}

TEST(Packing, CacheIsReusedWhenTheManifestMatches) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  ZEBRA_REQUIRE_ASSET(valid, "text/tinystories_valid.txt");
  const Tokenizer& tok = stories_tok();
  std::string dir = test::temp_dir(), out = dir + "/cache";
  test::write_file(dir + "/a.txt", text_prefix(valid, 8000));
  test::write_file(dir + "/b.jsonl", "{\"text\": \"One more story.\"}\n");
  std::vector<std::string> files = {dir + "/a.txt", dir + "/b.jsonl"};
  PackOptions o = quiet_opts();
  o.holdout_fraction = 0.2;
  PackedData first = prepare_data(tok, files, 48, out, o);
  EXPECT_FALSE(first.reused);
  const std::string shard = test::read_file(first.train_path);
  PackedData second = prepare_data(tok, files, 48, out, o);
  EXPECT_TRUE(second.reused);  // nothing re-tokenised
  EXPECT_EQ(second.stats.tokens, first.stats.tokens);
  EXPECT_EQ(second.stats.train_rows, first.stats.train_rows);
  EXPECT_EQ(second.stats.holdout_rows, first.stats.holdout_rows);
  EXPECT_EQ(second.train.rows(), first.train.rows());
  EXPECT_EQ(test::read_file(second.train_path), shard);
  // A new mtime with the same content still matches (content hash).
  struct utimbuf t {1000000000, 1000000000};
  ASSERT_EQ(utime(files[0].c_str(), &t), 0);
  EXPECT_TRUE(prepare_data(tok, files, 48, out, o).reused);
  EXPECT_TRUE(prepare_data(tok, files, 48, out, o).reused);
  // Anything that changes the result repacks.
  EXPECT_FALSE(prepare_data(tok, files, 40, out, o).reused);
  EXPECT_TRUE(prepare_data(tok, files, 40, out, o).reused);
  PackOptions o2 = o;
  o2.seed = 1;
  EXPECT_FALSE(prepare_data(tok, files, 40, out, o2).reused);
  EXPECT_FALSE(prepare_data(tok, {files[0]}, 40, out, o2).reused);
  test::write_file(files[0], text_prefix(valid, 8000) + "An extra line.\n");
  EXPECT_FALSE(prepare_data(tok, {files[0]}, 40, out, o2).reused);
  o2.force = true;
  EXPECT_FALSE(prepare_data(tok, {files[0]}, 40, out, o2).reused);
  o2.force = false;
  // A damaged cache is rebuilt, never trusted.
  test::write_file(out + "/train.ztok", "ZTOK");
  PackedData rebuilt = prepare_data(tok, {files[0]}, 40, out, o2);
  EXPECT_FALSE(rebuilt.reused);
  EXPECT_GT(rebuilt.train.rows(), 0);
  // The trainer can open the directory on its own.
  PackedData opened = open_packed_data(out, &tok);
  EXPECT_EQ(opened.train.rows(), rebuilt.train.rows());
  EXPECT_EQ(opened.seq_len, 40);
  EXPECT_EQ(opened.stats.tokens, rebuilt.stats.tokens);
  if (!test::smollm_gguf().empty()) {
    EXPECT_ERROR(open_packed_data(out, &smollm_tok()), "different tokenizer");
  }
  EXPECT_ERROR(open_packed_data(dir + "/nothing"), "no packed data", "manifest.json");
}

TEST(Packing, BadInputGivesClearErrors) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const Tokenizer& tok = stories_tok();
  std::string dir = test::temp_dir();
  PackOptions o = quiet_opts();
  auto pack_text = [&](const std::string& name, const std::string& content, int64_t L = 16) {
    test::write_file(dir + "/" + name, content);
    pack_data(tok, {dir + "/" + name}, L, dir + "/out", o);
  };
  EXPECT_ERROR(pack_text("empty.txt", ""), "no tokens", "1 empty");
  EXPECT_ERROR(pack_text("empty.jsonl", "\n\n"), "no tokens");
  std::string shortdoc = "Once upon a time.";
  int64_t n = static_cast<int64_t>(doc_ids(tok, shortdoc).size());
  EXPECT_ERROR(pack_text("short.txt", shortdoc, 512), cat("only ", n, " tokens").c_str(),
               "fewer than one row of 512 tokens");
  EXPECT_ERROR(pack_data(tok, {dir + "/none.txt"}, 16, dir + "/out", o), "cannot read data file", "none.txt",
               "No such file");
  fs::create_directories(dir + "/adir");
  EXPECT_ERROR(pack_data(tok, {dir + "/adir"}, 16, dir + "/out", o), "adir", "not a regular file");
  EXPECT_ERROR(pack_data(tok, {}, 16, dir + "/out", o), "no data files");
  EXPECT_ERROR(pack_text("bad.txt", "ok \xff\xfe bad"), "bad.txt", "invalid UTF-8 at byte offset 3");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"\n"), "bad.jsonl:3", "not valid JSON");
  EXPECT_ERROR(pack_text("bad.jsonl", "[1, 2]\n"), "bad.jsonl:1", "expected a JSON object");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"txt\": \"a\"}\n"), "bad.jsonl:1", "neither \"text\"", "\"messages\"");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"text\": 5}\n"), "bad.jsonl:1", "'text' must be a string, got number");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"text\": \"a\"}\n{\"messages\": \"hi\"}\n"), "bad.jsonl:2",
               "'messages' must be a list");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": []}\n"), "bad.jsonl:1", "'messages' is an empty list");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": [{\"role\": 5, \"content\": \"x\"}]}\n"), "bad.jsonl:1",
               "'messages[0].role' must be a string, got number");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"human\", "
                                      "\"content\": \"y\"}]}\n"),
               "bad.jsonl:1", "'messages[1].role' is 'human'", "system, user, assistant");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n"), "'messages[0]' has no \"content\"");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}\n"),
               "'messages[0].content' must be a string, got array");
  EXPECT_ERROR(pack_text("bad.jsonl", "{\"messages\": [\"hello\"]}\n"), "'messages[0]' must be an object");
  // stories260K's tokenizer has no chat template.
  EXPECT_ERROR(pack_text("chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"),
               "needs a chat template");
  // Settings.
  test::write_file(dir + "/ok.txt", "Once upon a time there was a big dog who liked to run and play in the park.");
  EXPECT_ERROR(pack_data(tok, {dir + "/ok.txt"}, 1, dir + "/out", o), "at least 2");
  PackOptions h = o;
  h.holdout_rows = 100;
  EXPECT_ERROR(pack_data(tok, {dir + "/ok.txt"}, 8, dir + "/out", h), "holdout of 100 rows leaves no training rows");
  h.holdout_rows = -1;
  h.holdout_fraction = 1.0;
  EXPECT_ERROR(pack_data(tok, {dir + "/ok.txt"}, 8, dir + "/out", h), "holdout fraction must be in [0, 1)");
  EXPECT_NO_THROW(pack_data(tok, {dir + "/ok.txt"}, 8, dir + "/out", o));
}

// ---- Preference data ----------------------------------------------------------------------------------

TEST(Preferences, PlainPairsTokeniseAsPromptPlusResponse) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const Tokenizer& tok = stories_tok();
  std::string dir = test::temp_dir();
  const std::string prompt = "Once upon a time, there was a little dog.", chosen = " He liked to play.",
                    rejected = " The end";
  test::write_file(dir + "/p.jsonl", "\n" + json{{"prompt", prompt}, {"chosen", chosen}, {"rejected", rejected}}.dump() + "\n");
  std::vector<PreferencePair> pairs = load_preferences(tok, dir + "/p.jsonl", 1024, 512);
  ASSERT_EQ(pairs.size(), 1u);
  const PreferencePair& p = pairs[0];
  EXPECT_EQ(p.line, 2);
  EXPECT_FALSE(p.truncated);
  EXPECT_EQ(p.prompt, tok.encode(prompt, true, false));
  EXPECT_EQ(p.prompt.front(), tok.bos_id());
  for (auto [ids, text] : {std::pair{&p.chosen, chosen}, std::pair{&p.rejected, rejected}}) {
    std::vector<int32_t> full = tok.encode(prompt + text, true, false);
    std::vector<int32_t> want(full.begin() + static_cast<std::ptrdiff_t>(p.prompt.size()), full.end());
    want.push_back(tok.eos_id());
    EXPECT_EQ(*ids, want);
    std::vector<int32_t> all(p.prompt.begin() + 1, p.prompt.end());  // decode shows BOS as "\n<s>\n"
    all.insert(all.end(), ids->begin(), ids->end() - 1);
    EXPECT_EQ(tok.decode(all), prompt + text);
  }
}

TEST(Preferences, TruncationKeepsTheEndOfThePrompt) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const Tokenizer& tok = stories_tok();
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "The cat sat on the mat number " + std::to_string(i) + ". ";
  std::string chosen = "And then the sun came out and everybody was happy for a very long time.";
  PreferenceOptions o;
  o.max_length = 64;
  o.max_prompt_length = 16;
  json line = {{"prompt", prompt}, {"chosen", chosen}, {"rejected", "No."}};
  std::vector<PreferencePair> pairs = parse_preferences(tok, line.dump(), "mem", o);
  ASSERT_EQ(pairs.size(), 1u);
  const PreferencePair& p = pairs[0];
  EXPECT_TRUE(p.truncated);
  std::vector<int32_t> full_prompt = tok.encode(prompt, true, false);
  ASSERT_GT(full_prompt.size(), 16u);
  EXPECT_EQ(p.prompt, std::vector<int32_t>(full_prompt.end() - 16, full_prompt.end()));  // from the left
  EXPECT_LE(p.prompt.size() + std::max(p.chosen.size(), p.rejected.size()), 64u);
  // A short pair is untouched.
  json small = {{"prompt", "Hi."}, {"chosen", " Yes."}, {"rejected", " No."}};
  EXPECT_FALSE(parse_preferences(tok, small.dump(), "mem", o)[0].truncated);

  // TRL's rule on bare ids: prompt to its last max_prompt_length, then responses to max_length - that.
  std::vector<int32_t> pr(10), ch(30), rj(5);
  for (int i = 0; i < 10; ++i) pr[i] = i;
  for (int i = 0; i < 30; ++i) ch[i] = 100 + i;
  EXPECT_TRUE(truncate_preference(pr, ch, rj, 20, 4));
  EXPECT_EQ(pr, (std::vector<int32_t>{6, 7, 8, 9}));
  EXPECT_EQ(ch.size(), 16u);
  EXPECT_EQ(ch.front(), 100);
  EXPECT_EQ(rj.size(), 5u);
  std::vector<int32_t> pr2(10, 1), ch2(8, 2), rj2(3, 3);  // 10 + 8 <= 20: nothing cut
  EXPECT_FALSE(truncate_preference(pr2, ch2, rj2, 20, 4));
  EXPECT_EQ(pr2.size(), 10u);
  std::vector<int32_t> pr3(10, 1), ch3(12, 2), rj3(3, 3);  // prompt cut to 4, then 4 + 12 fits
  EXPECT_TRUE(truncate_preference(pr3, ch3, rj3, 20, 4));
  EXPECT_EQ(pr3.size(), 4u);
  EXPECT_EQ(ch3.size(), 12u);
}

TEST(Preferences, ChatFormsAgreeAndFollowTheTemplate) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm_tok();
  std::vector<ChatMessage> prompt = {{"system", "Be brief."}, {"user", "Name a colour."}};
  ChatMessage good{"assistant", "Blue."}, bad{"assistant", "I like turtles."};
  std::vector<json> forms = {
      // TRL conversational: prompt messages, responses as assistant message lists.
      {{"prompt", jmsgs(prompt)}, {"chosen", jmsgs({good})}, {"rejected", jmsgs({bad})}},
      // Responses as strings.
      {{"prompt", jmsgs(prompt)}, {"chosen", good.content}, {"rejected", bad.content}},
      // ultrafeedback_binarized: whole conversations (the string prompt is ignored).
      {{"prompt", "Name a colour."},
       {"chosen", jmsgs({prompt[0], prompt[1], good})},
       {"rejected", jmsgs({prompt[0], prompt[1], bad})}},
  };
  std::string jl;
  for (const json& f : forms) jl += f.dump() + "\n";
  PreferenceOptions o;
  std::vector<PreferencePair> pairs = parse_preferences(tok, jl, "mem", o);
  ASSERT_EQ(pairs.size(), 3u);
  const std::string prompt_text = render_chat(tok.chat_template(), prompt, true);
  EXPECT_EQ(pairs[0].prompt, tok.encode(prompt_text, false, true));
  for (auto [ids, msg] : {std::pair{&pairs[0].chosen, good}, std::pair{&pairs[0].rejected, bad}}) {
    std::vector<ChatMessage> all = prompt;
    all.push_back(msg);
    std::vector<int32_t> seq = pairs[0].prompt;
    seq.insert(seq.end(), ids->begin(), ids->end());
    EXPECT_EQ(tok.decode(seq), render_chat(tok.chat_template(), all, false) + "<|im_end|>");  // + EOS
    EXPECT_EQ(ids->back(), tok.eos_id());
  }
  for (size_t i = 1; i < pairs.size(); ++i) {
    EXPECT_EQ(pairs[i].prompt, pairs[0].prompt) << i;
    EXPECT_EQ(pairs[i].chosen, pairs[0].chosen) << i;
    EXPECT_EQ(pairs[i].rejected, pairs[0].rejected) << i;
  }
  // A prompt string with assistant-message responses is one user turn.
  json single = {{"prompt", "Hi"}, {"chosen", jmsgs({good})}, {"rejected", bad.content}};
  PreferencePair s = parse_preferences(tok, single.dump(), "mem", o)[0];
  EXPECT_EQ(s.prompt, tok.encode(render_chat(tok.chat_template(), {{"user", "Hi"}}, true), false, true));
}

TEST(Preferences, Llama3ResponsesEndAtTheTemplatesStopToken) {
  auto tok = load_hf_tokenizer(test::fixture("tokenizer/llama3_tiny"));
  json line = {{"prompt", jmsgs({{"user", "hello"}})}, {"chosen", "hi there"}, {"rejected", "go away"}};
  PreferencePair p = parse_preferences(*tok, line.dump(), "mem", PreferenceOptions{})[0];
  EXPECT_EQ(p.prompt.front(), tok->bos_id());
  std::vector<int32_t> stops = tok->eos_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), p.chosen.back()), stops.end());
  std::vector<int32_t> seq = p.prompt;
  seq.insert(seq.end(), p.chosen.begin(), p.chosen.end());
  std::string want = render_chat(ChatTemplateKind::Llama3, {{"user", "hello"}, {"assistant", "hi there"}}, false);
  std::string got = tok->decode(seq);
  EXPECT_EQ(got.substr(0, want.size()), want);  // + EOS unless the turn already ends with a stop id
}

TEST(Preferences, BadInputGivesClearErrors) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const Tokenizer& tok = stories_tok();
  PreferenceOptions o;
  auto parse = [&](const std::string& jl) { parse_preferences(tok, jl, "prefs.jsonl", o); };
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n\n{\"prompt\": \"a\"\n"),
               "prefs.jsonl:3", "not valid JSON");
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"rejected\": \"c\"}"), "prefs.jsonl:1", "'chosen' is missing");
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"chosen\": \"c\"}"), "'rejected' is missing");
  EXPECT_ERROR(parse("{\"chosen\": \"b\", \"rejected\": \"c\"}"), "'prompt' is missing");
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"chosen\": 3, \"rejected\": \"c\"}"),
               "'chosen' must be a string or a list", "got number");
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"chosen\": \"\", \"rejected\": \"c\"}"), "'chosen' is empty");
  EXPECT_ERROR(parse("\n"), "no preference pairs");
  EXPECT_ERROR(parse("[]"), "expected a JSON object");
  // Chat forms need a template (stories260K has none).
  EXPECT_ERROR(parse("{\"prompt\": [{\"role\": \"user\", \"content\": \"a\"}], \"chosen\": \"b\", \"rejected\": \"c\"}"),
               "prefs.jsonl:1", "needs a chat template");
  o.max_prompt_length = 1024;
  EXPECT_ERROR(parse("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}"),
               "max_prompt_length < max_length");
  EXPECT_ERROR(load_preferences(tok, "/nonexistent/prefs.jsonl", 1024, 512), "cannot open", "prefs.jsonl");
  if (test::smollm_gguf().empty()) return;
  const Tokenizer& chat = smollm_tok();
  PreferenceOptions co;
  auto cparse = [&](const json& j) { parse_preferences(chat, j.dump(), "c.jsonl", co); };
  EXPECT_ERROR(cparse({{"prompt", jmsgs({{"user", "a"}})}, {"chosen", jmsgs({{"user", "b"}})}, {"rejected", "c"}}),
               "'chosen[0].role' is 'user'", "assistant");
  EXPECT_ERROR(cparse({{"chosen", jmsgs({{"user", "a"}, {"assistant", "b"}})},
                       {"rejected", jmsgs({{"user", "x"}, {"assistant", "c"}})}}),
               "must share the conversation");
  EXPECT_ERROR(cparse({{"chosen", jmsgs({{"user", "a"}, {"assistant", "b"}})}, {"rejected", "c"}}),
               "'rejected' must be one too");
  EXPECT_ERROR(cparse({{"chosen", jmsgs({{"user", "a"}, {"user", "b"}})},
                       {"rejected", jmsgs({{"user", "a"}, {"assistant", "c"}})}}),
               "last message of 'chosen' must be the assistant's");
  EXPECT_ERROR(cparse({{"prompt", json::array({{{"role", 1}, {"content", "a"}}})}, {"chosen", "b"}, {"rejected", "c"}}),
               "'prompt[0].role' must be a string, got number");
}

// ---- Synthetic corpus ---------------------------------------------------------------------------------

namespace {
const LoadedModel& stories_model() {
  static LoadedModel m = load_model(test::shared_asset("models/stories260K") + "/stories260K.bin");
  return m;
}
}  // namespace

TEST(Synth, GreedyBatchesEqualSingleSequenceGeneration) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const LoadedModel& lm = stories_model();
  SynthOptions o;
  o.n_docs = 5;  // 3 prompts cycled over 2 slots: slots are reused mid-run, prefill and decode mix
  o.batch = 2;
  o.max_tokens = 40;
  o.sampling.temperature = 0;
  o.prompts = {"Once upon a time", "The dog", "Lily and Ben went"};
  std::vector<SynthDoc> docs = synthesize(*lm.model, *lm.tokenizer, o);
  ASSERT_EQ(docs.size(), 5u);
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string& p = o.prompts[i % 3];
    std::vector<int32_t> prompt = lm.tokenizer->encode(p, true, false);
    Cache cache = lm.model->make_cache(1, 256);
    SamplerParams sp;
    sp.temperature = 0;
    Sampler sampler(sp);
    std::vector<int32_t> want =
        generate(*lm.model, cache, 0, 0, prompt, 40, sampler, lm.tokenizer->eos_ids(), nullptr);
    EXPECT_EQ(docs[i].prompt, p);
    EXPECT_EQ(docs[i].prompt_ids, prompt);
    EXPECT_EQ(docs[i].ids, want) << "document " << i;
    std::vector<int32_t> all(prompt.begin() + 1, prompt.end());  // without BOS, which decodes as "\n<s>\n"
    all.insert(all.end(), want.begin(), want.end());
    EXPECT_EQ(p + docs[i].completion, lm.tokenizer->decode(all));
  }
}

TEST(Synth, DeterministicBySeedAndTheOutputRetokenises) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const LoadedModel& lm = stories_model();
  const Tokenizer& tok = *lm.tokenizer;
  SynthOptions o;
  o.n_docs = 6;
  o.batch = 4;
  o.max_tokens = 48;
  o.sampling.seed = 11;
  auto run = [&] {
    std::string out;
    for (const SynthDoc& d : synthesize(*lm.model, tok, o)) out += d.jsonl(false) + "\n";
    return out;
  };
  std::string a = run(), b = run();
  EXPECT_EQ(a, b);
  o.sampling.seed = 12;
  EXPECT_NE(run(), a);
  o.sampling.seed = 11;
  std::vector<SynthDoc> docs = synthesize(*lm.model, tok, o);
  int64_t distinct = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    const SynthDoc& d = docs[i];
    EXPECT_EQ(d.prompt_ids, std::vector<int32_t>{tok.bos_id()});  // from BOS
    EXPECT_LE(d.ids.size(), 48u);
    EXPECT_TRUE(d.hit_stop || d.ids.size() == 48u);
    EXPECT_EQ(tok.decode(d.ids), d.completion);  // decodes to exactly the text written
    std::vector<int32_t> re = tok.encode(d.completion, false, false);
    EXPECT_EQ(tok.decode(re), d.completion);  // and retokenises losslessly
    json j = json::parse(d.jsonl(false));
    EXPECT_EQ(j["text"].get<std::string>(), d.completion);
    if (i > 0 && d.ids != docs[0].ids) ++distinct;
  }
  EXPECT_GT(distinct, 0);  // per-document seeds
  // The corpus packs.
  std::string dir = test::temp_dir();
  test::write_file(dir + "/c.jsonl", a);
  PackOptions po = quiet_opts();
  PackedData d = pack_data(tok, {dir + "/c.jsonl"}, 16, dir + "/out", po);
  EXPECT_EQ(d.stats.documents + d.stats.empty_documents, 6);
}

TEST(Synth, ChatPromptsUseTheTemplateAndWriteMessages) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  const LoadedModel& lm = stories_model();
  SynthOptions o;
  o.chat = true;
  o.prompts = {"hi"};
  EXPECT_ERROR(synthesize(*lm.model, *lm.tokenizer, o), "needs a chat template");
  o.chat = false;
  o.max_tokens = 0;
  EXPECT_ERROR(synthesize(*lm.model, *lm.tokenizer, o), "--max-tokens must be >= 1");
  SynthDoc d;
  d.prompt = "Q";
  d.completion = "A \xff";
  json j = json::parse(d.jsonl(true));
  EXPECT_EQ(j["messages"][0]["role"], "user");
  EXPECT_EQ(j["messages"][1]["content"], "A \xef\xbf\xbd");
  EXPECT_EQ(json::parse(d.jsonl(false))["text"], "QA \xef\xbf\xbd");
}

TEST(Synth, PromptsFile) {
  std::string dir = test::temp_dir();
  test::write_file(dir + "/p.txt", "first prompt\r\n\n  \nsecond\n");
  EXPECT_EQ(read_prompts_file(dir + "/p.txt"), (std::vector<std::string>{"first prompt", "second"}));
  test::write_file(dir + "/p.jsonl", "{\"text\": \"a\\nb\"}\n{\"prompt\": \"c\"}\n");
  EXPECT_EQ(read_prompts_file(dir + "/p.jsonl"), (std::vector<std::string>{"a\nb", "c"}));
  test::write_file(dir + "/bad.jsonl", "{\"text\": \"a\"}\n{\"x\": 1}\n");
  EXPECT_ERROR(read_prompts_file(dir + "/bad.jsonl"), "bad.jsonl:2", "neither \"text\" nor \"prompt\"");
  test::write_file(dir + "/empty.txt", "\n\n");
  EXPECT_ERROR(read_prompts_file(dir + "/empty.txt"), "no prompts");
}

// ---- The command line ---------------------------------------------------------------------------------

TEST(DataCli, SynthThenPackThenInfo) {
  ZEBRA_REQUIRE_ASSET(sdir, "models/stories260K");
  std::string dir = test::temp_dir(), bin = test::zebra_binary(), model = sdir + "/stories260K.bin";
  std::string out, err;
  std::string synth = bin + " synth -m " + model + " -n 6 --max-tokens 40 --batch 3 --seed 5 -o ";
  ASSERT_EQ(test::run_command(synth + dir + "/a.jsonl", &out, &err), 0) << err;
  ASSERT_EQ(test::run_command(synth + dir + "/b.jsonl", &out, &err), 0) << err;
  EXPECT_TRUE(has(err, "docs/s")) << err;
  EXPECT_TRUE(has(err, "tokens/s")) << err;
  EXPECT_EQ(test::read_file(dir + "/a.jsonl"), test::read_file(dir + "/b.jsonl"));
  std::string pack = bin + " data pack -m " + model + " --data " + dir + "/a.jsonl --seq-len 16 --holdout-rows 1 -o " +
                     dir + "/packed --json";
  ASSERT_EQ(test::run_command(pack, &out, &err), 0) << err;
  json j = json::parse(out);
  EXPECT_FALSE(j["reused"].get<bool>());
  EXPECT_EQ(j["holdout_rows"].get<int64_t>(), 1);
  ASSERT_EQ(test::run_command(pack, &out, &err), 0) << err;
  EXPECT_TRUE(json::parse(out)["reused"].get<bool>());
  ASSERT_EQ(test::run_command(bin + " data info " + dir + "/packed -m " + model + " --show 8 --json", &out, &err), 0)
      << err;
  json info = json::parse(out);
  EXPECT_EQ(info[0]["rows"].get<int64_t>(), j["train_rows"].get<int64_t>());
  EXPECT_TRUE(info[0].contains("first_row_text"));
  // Errors: message on stderr, exit status 1.
  int rc = test::run_command(bin + " data pack -m " + model + " --data " + dir + "/missing.txt --seq-len 16 -o " + dir +
                                 "/x",
                             &out, &err);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(has(err, "error: cannot read data file")) << err;
  // Preference check.
  test::write_file(dir + "/p.jsonl", "{\"prompt\": \"Once\", \"chosen\": \" upon a time\", \"rejected\": \" more\"}\n");
  ASSERT_EQ(test::run_command(bin + " data prefs -m " + model + " " + dir + "/p.jsonl --json", &out, &err), 0) << err;
  EXPECT_EQ(json::parse(out)["pairs"].get<int64_t>(), 1);
}
