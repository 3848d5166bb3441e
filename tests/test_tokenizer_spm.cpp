// SentencePiece-style BPE: llama2.c's tok512.bin against an independent Python re-implementation of
// llama2.c's encode() (scripts/reference/llama2c_tokenizer.py), decoding rules, and bad files.
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support.h"
#include "tokenizer/tokenizer.h"

namespace zebra {
namespace {

using nlohmann::json;

TEST(Llama2cTokenizer, MatchesReferenceEncode) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->adds_bos());
  json fx = json::parse(test::read_file(test::fixture("tokenizer/tok512_ids.json")));
  ASSERT_GE(fx["texts"].size(), 50u);
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    auto want = fx["ids"][i].get<std::vector<int32_t>>();
    // parse_special = false is llama2.c's behaviour (it never looks for special tokens in text).
    EXPECT_EQ(tok->encode(text, true, false), want) << "string #" << i << ": " << text;
    EXPECT_EQ(tok->decode(want), text.empty() ? "\n<s>\n" : tok->token_bytes(1) + text) << i;
    std::vector<int32_t> no_bos(want.begin() + 1, want.end());
    EXPECT_EQ(tok->encode(text, false, false), no_bos);
    EXPECT_EQ(tok->decode(no_bos), text) << i;
  }
}

TEST(Llama2cTokenizer, GoldenStoryRoundTrips) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
      "saw a big, red ball. She wanted to play with it, but it was too high.";
  std::vector<int32_t> ids = tok->encode(story, true, false);
  ASSERT_EQ(ids[0], 1);
  // llama2.c streams after BOS: the first piece loses its dummy-prefix space.
  StreamDecoder dec(*tok);
  std::string out;
  for (size_t k = 1; k < ids.size(); ++k) {
    if (k == 1) dec.push(ids[0]);
    out += dec.push(ids[k]);
  }
  out += dec.flush();
  EXPECT_EQ(out, story);
  // Without BOS the stream keeps the space (a continuation).
  StreamDecoder cont(*tok);
  std::string out2;
  for (size_t k = 1; k < ids.size(); ++k) out2 += cont.push(ids[k]);
  EXPECT_EQ(out2, " " + story);
}

TEST(Llama2cTokenizer, ArbitraryBytesRoundTrip) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  for (std::string s : {std::string("\xff\xfe"), std::string("a\0b", 3), std::string("\xc3"), std::string("x\x80\x80y"),
                        std::string("😀 emoji"), std::string("\xf0\x9f\x98"), std::string("")}) {
    EXPECT_EQ(tok->decode(tok->encode(s, false, false)), s);
    EXPECT_EQ(tok->decode(tok->encode(s, true, false)), s.empty() ? tok->token_bytes(1) : tok->token_bytes(1) + s);
  }
  EXPECT_EQ(tok->token_bytes(3), std::string(1, '\0'));
  EXPECT_EQ(tok->token_bytes(3 + 0x41), "A");
  EXPECT_EQ(tok->token_text(3 + 0x41), "<0x41>");
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(300));
}

TEST(Llama2cTokenizer, BadFilesGiveClearErrors) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  std::string bytes = test::read_file(path);
  std::string dir = test::temp_dir();
  auto load = [&](const std::string& data, int32_t n) {
    test::write_file(dir + "/t.bin", data);
    return test::error_message([&] { load_llama2c_tokenizer(dir + "/t.bin", n); });
  };
  EXPECT_NE(load(bytes.substr(0, 2), 512).find("max_token_length"), std::string::npos);
  EXPECT_NE(load(bytes.substr(0, bytes.size() - 3), 512).find("token 511"), std::string::npos);
  EXPECT_NE(load(bytes, 513).find("truncated"), std::string::npos);
  EXPECT_NE(load(bytes, 0).find("vocab_size"), std::string::npos);
  std::string neg = bytes;
  int32_t bad_len = -5;
  std::memcpy(&neg[4 + 4], &bad_len, 4);  // token 0's length
  EXPECT_NE(load(neg, 512).find("length -5"), std::string::npos);
  std::string huge = bytes;
  int32_t big = 1 << 30;
  std::memcpy(&huge[4 + 4], &big, 4);
  EXPECT_NE(load(huge, 512).find("remain"), std::string::npos);
  EXPECT_NE(test::error_message([&] { load_llama2c_tokenizer(dir + "/nope.bin", 512); }).find("cannot open"), std::string::npos);
}

// tok512.bin -> tokenizer.json (Llama-2 layout) -> load_hf_tokenizer encodes and decodes as llama2.c.
TEST(Llama2cTokenizer, HfJsonRoundTripMatchesLlama2c) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  std::string dir = test::temp_dir();
  save_hf_tokenizer(*tok, dir);
  auto back = load_hf_tokenizer(dir);
  EXPECT_EQ(back->vocab_size(), 512);
  EXPECT_EQ(back->bos_id(), 1);
  EXPECT_EQ(back->eos_id(), 2);
  EXPECT_TRUE(back->adds_bos());
  EXPECT_EQ(back->token_text(1), "<s>");  // SentencePiece's name, not llama2.c's "\n<s>\n"
  json fx = json::parse(test::read_file(test::fixture("tokenizer/tok512_ids.json")));
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    auto want = fx["ids"][i].get<std::vector<int32_t>>();
    EXPECT_EQ(back->encode(text, true, false), want) << "string #" << i << ": " << text;
    std::vector<int32_t> no_bos(want.begin() + 1, want.end());
    EXPECT_EQ(back->encode(text, false, false), no_bos) << i;
    EXPECT_EQ(back->decode(no_bos), text) << i;
    EXPECT_EQ(back->decode(want), "<s>" + text) << i;
  }
  for (int32_t id = 3; id < 512; ++id) EXPECT_EQ(back->token_bytes(id), tok->token_bytes(id)) << id;
  // Saving the loaded tokenizer again gives the same files.
  std::string dir2 = test::temp_dir();
  save_hf_tokenizer(*back, dir2);
  EXPECT_EQ(json::parse(test::read_file(dir2 + "/tokenizer.json")), json::parse(test::read_file(dir + "/tokenizer.json")));
}

// zebra's export must stay the committed fixture, whose ids HF tokenizers computed
// (scripts/reference/make_spm_json_fixtures.py): HF's ids on it equal zebra's.
TEST(Llama2cTokenizer, HfTokenizersAgreeOnExport) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  std::string dir = test::temp_dir();
  save_hf_tokenizer(*tok, dir);
  std::string fx_dir = test::fixture("tokenizer/tok512_hf");
  EXPECT_EQ(json::parse(test::read_file(dir + "/tokenizer.json")),
            json::parse(test::read_file(fx_dir + "/tokenizer.json")));
  EXPECT_EQ(json::parse(test::read_file(dir + "/tokenizer_config.json")),
            json::parse(test::read_file(fx_dir + "/tokenizer_config.json")));
  auto back = load_hf_tokenizer(fx_dir);
  json fx = json::parse(test::read_file(test::fixture("tokenizer/tok512_hf_ids.json")));
  ASSERT_GE(fx["texts"].size(), 50u);
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    auto hf = fx["ids"][i].get<std::vector<int32_t>>();  // HF: add_special_tokens=True, specials parsed
    EXPECT_EQ(back->encode(text, true, true), hf) << "string #" << i << ": " << text;
    if (fx["has_special"][i].get<bool>()) continue;
    EXPECT_EQ(tok->encode(text, true, false), hf) << "llama2.c vs HF, string #" << i << ": " << text;
    // HF's decode of the ids after BOS (its Strip drops the dummy-prefix space).
    EXPECT_EQ(back->decode(std::vector<int32_t>(hf.begin() + 1, hf.end())), fx["decoded"][i].get<std::string>()) << i;
  }
}

TEST(Spm, HfJsonRejectsOtherNormalizers) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/tok512.bin");
  auto tok = load_llama2c_tokenizer(path, 512);
  std::string dir = test::temp_dir();
  save_hf_tokenizer(*tok, dir);
  json root = json::parse(test::read_file(dir + "/tokenizer.json"));
  auto load_with = [&](const json& r) {
    test::write_file(dir + "/tokenizer.json", r.dump());
    return test::error_message([&] { load_hf_tokenizer(dir); });
  };
  json r = root;
  r["normalizer"] = nullptr;
  EXPECT_NE(load_with(r).find("normalizer"), std::string::npos);
  r = root;
  r["normalizer"]["normalizers"].erase(0);
  EXPECT_NE(load_with(r).find("no Prepend"), std::string::npos);
  r = root;
  r["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
  EXPECT_NE(load_with(r).find("Metaspace"), std::string::npos);
  r = root;
  r["decoder"]["decoders"][1] = {{"type", "ByteLevel"}};
  EXPECT_NE(load_with(r).find("decoder step 1"), std::string::npos);
  r = root;
  r["model"]["merges"].push_back(json::array({"zz", "qq"}));
  EXPECT_NE(load_with(r).find("not in model.vocab"), std::string::npos);
}

TEST(Spm, GgufStylePiecesAndSpecials) {
  // A tiny GGUF "llama"-style vocabulary: pieces with "▁", byte tokens typed 6, control tokens typed 3.
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab",
                                   "\xE2\x96\x81" "ab"};
  std::vector<float> scores = {0, 0, 0, -1, -2, -3, -4, -5, -6};
  std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1, 1};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    toks.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  auto tok = make_spm(toks, scores, types, 1, 2, true);
  EXPECT_EQ(tok->encode("ab", true, false), (std::vector<int32_t>{1, 8}));
  EXPECT_EQ(tok->decode({1, 8}), "<s>ab");
  EXPECT_EQ(tok->encode("ab</s>", false, true), (std::vector<int32_t>{8, 2}));
  EXPECT_EQ(tok->encode("c", false, false), (std::vector<int32_t>{3, 9 + 'c'}));
  EXPECT_EQ(tok->decode(tok->encode("a c", false, false)), "a c");
  EXPECT_THROW(make_spm(toks, {0.0f}, types, 1, 2, true), Error);
  EXPECT_THROW(make_spm(toks, scores, types, 1, 9999, true), Error);
}

}  // namespace
}  // namespace zebra
