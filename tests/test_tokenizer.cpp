// Byte-level BPE (SmolLM2 from GGUF, Llama-3-style from tokenizer.json), HF export, chat templates and
// streaming decode, against fixtures made by scripts/reference/make_tokenizer_fixtures.py.
#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/utf8.h"
#include "io/gguf.h"
#include "support.h"
#include "tokenizer/bpe.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"

namespace zebra {
namespace {

using nlohmann::json;

json load_fixture(const std::string& rel) { return json::parse(test::read_file(test::fixture(rel))); }

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// The SmolLM2 tokenizer is built once (49k tokens, 49k merges).
const Tokenizer& smollm() {
  static std::unique_ptr<Tokenizer> tok = [] {
    GgufFile g(test::smollm_gguf());
    return make_byte_bpe(bpe_spec_from_gguf(g));
  }();
  return *tok;
}

TEST(SmolLM2Tokenizer, MatchesHfOnEveryCorpusString) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm();
  json fx = load_fixture("tokenizer/smollm2_ids.json");
  ASSERT_GE(fx["texts"].size(), 220u);
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_FALSE(tok.adds_bos());
  EXPECT_EQ(tok.chat_template(), ChatTemplateKind::SmolLM);
  int bad = 0;
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    std::vector<int32_t> want = ids_of(fx["ids"][i]);
    std::vector<int32_t> got = tok.encode(text, /*add_bos=*/true, /*parse_special=*/true);
    if (got != want) ++bad;
    EXPECT_EQ(got, want) << "string #" << i << ": " << text.substr(0, 80);
    EXPECT_EQ(tok.decode(got), text) << "round trip of string #" << i;
  }
  EXPECT_EQ(bad, 0);
  // parse_special = false: special-token text is ordinary text.
  for (auto it = fx["ids_no_special"].begin(); it != fx["ids_no_special"].end(); ++it) {
    std::string text = fx["texts"][std::stoi(it.key())];
    EXPECT_EQ(tok.encode(text, false, false), ids_of(it.value())) << text;
  }
}

TEST(SmolLM2Tokenizer, StopTokensAndSpecials) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm();
  auto eos = tok.eos_ids();
  EXPECT_EQ(eos.front(), 2);  // <|im_end|>
  EXPECT_NE(std::find(eos.begin(), eos.end(), 0), eos.end());  // <|endoftext|>
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(100));
  EXPECT_EQ(tok.token_text(1), "<|im_start|>");
  EXPECT_EQ(tok.token_bytes(1), "<|im_start|>");
  EXPECT_EQ(tok.token_text(216), "\xC4\xA0");  // "Ġ"
  EXPECT_EQ(tok.token_bytes(216), " ");
  EXPECT_THROW(tok.token_bytes(49152), Error);
  EXPECT_THROW(tok.token_bytes(-1), Error);
}

TEST(SmolLM2Tokenizer, InvalidUtf8IsEncodedAsBytes) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm();
  // Each invalid byte becomes its own byte token; valid text around it is tokenized normally.
  const std::vector<std::string> inputs = {"\xc3\xc3", "abc\x80" "def", "\xc3", "caf\xc3", "\xe6\x97", "\xed\xa0\x80",
                                           "\xe0\x80\xaf", "ok\x80\x80\x80ok", "\xf4\x90\x80\x80", std::string("a\0b", 3),
                                           "\xf0\x9f\x98", "<|im_start|>\xc3<|im_end|>"};
  for (const std::string& s : inputs) {
    std::vector<int32_t> ids = tok.encode(s, false, true);
    EXPECT_EQ(tok.decode(ids), s);
  }
  std::vector<int32_t> ids = tok.encode("\x80", false, true);
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok.token_bytes(ids[0]), "\x80");
  EXPECT_EQ(tok.encode("abc\x80" "def", false, true).size(),
            tok.encode("abc", false, true).size() + 1 + tok.encode("def", false, true).size());
  // SmolLM2 has no token for the bytes that never occur in UTF-8: they become U+FFFD.
  EXPECT_EQ(tok.decode(tok.encode("a\xff\xc0z", false, true)), "a\xEF\xBF\xBD\xEF\xBF\xBDz");
}

TEST(SmolLM2Tokenizer, OneMegabyteIsFast) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  ZEBRA_REQUIRE_ASSET(path, "text/tiny_shakespeare.txt");
  std::string text = test::read_file(path);
  ASSERT_GT(text.size(), 1000000u);
  const Tokenizer& tok = smollm();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = tok.encode(text, false, true);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 3.0) << "encoding 1 MB took " << secs << " s";
  EXPECT_GT(ids.size(), 200000u);
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(HfTokenizer, Llama3TinyMatchesTokenizers) {
  auto tok = load_hf_tokenizer(test::fixture("tokenizer/llama3_tiny"));
  json fx = load_fixture("tokenizer/llama3_tiny_ids.json");
  EXPECT_EQ(tok->vocab_size(), fx["vocab_size"].get<int>());
  EXPECT_TRUE(tok->adds_bos());
  EXPECT_EQ(tok->token_text(tok->bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(tok->token_text(tok->eos_id()), "<|eot_id|>");
  EXPECT_EQ(tok->chat_template(), ChatTemplateKind::Llama3);
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    std::vector<int32_t> got = tok->encode(text, false, true);
    EXPECT_EQ(got, ids_of(fx["ids"][i])) << "string #" << i << ": " << text.substr(0, 80);
    EXPECT_EQ(tok->decode(got), text);
    if (i < fx["ids_bos"].size()) EXPECT_EQ(tok->encode(text, true, true), ids_of(fx["ids_bos"][i])) << i;
  }
  // The tokenizer.json path works as well as the directory.
  auto tok2 = load_hf_tokenizer(test::fixture("tokenizer/llama3_tiny/tokenizer.json"));
  EXPECT_EQ(tok2->encode("Hello world", false, true), tok->encode("Hello world", false, true));
}

TEST(HfTokenizer, SaveLoadRoundTripOnSmolLM2) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm();
  std::string dir = test::temp_dir() + "/smollm_hf";
  save_hf_tokenizer(tok, dir);
  auto back = load_hf_tokenizer(dir);
  EXPECT_EQ(back->vocab_size(), tok.vocab_size());
  EXPECT_EQ(back->bos_id(), tok.bos_id());
  EXPECT_EQ(back->eos_id(), tok.eos_id());
  EXPECT_EQ(back->adds_bos(), tok.adds_bos());
  EXPECT_EQ(back->chat_template(), ChatTemplateKind::SmolLM);
  EXPECT_EQ(back->chat_template_text(), tok.chat_template_text());
  json fx = load_fixture("tokenizer/smollm2_ids.json");
  for (size_t i = 0; i < fx["texts"].size(); ++i) {
    std::string text = fx["texts"][i];
    EXPECT_EQ(back->encode(text, false, true), ids_of(fx["ids"][i])) << "string #" << i;
  }
  for (int32_t id = 0; id < tok.vocab_size(); id += 97) EXPECT_EQ(back->token_bytes(id), tok.token_bytes(id));
  // Saving what was loaded gives the same files again.
  std::string dir2 = test::temp_dir() + "/again";
  save_hf_tokenizer(*back, dir2);
  EXPECT_EQ(test::read_file(dir + "/tokenizer.json"), test::read_file(dir2 + "/tokenizer.json"));
}

TEST(HfTokenizer, SaveLoadRoundTripOnLlama3Tiny) {
  auto tok = load_hf_tokenizer(test::fixture("tokenizer/llama3_tiny"));
  std::string dir = test::temp_dir() + "/l3";
  save_hf_tokenizer(*tok, dir);
  auto back = load_hf_tokenizer(dir);
  json fx = load_fixture("tokenizer/llama3_tiny_ids.json");
  for (size_t i = 0; i < fx["texts"].size(); ++i)
    EXPECT_EQ(back->encode(fx["texts"][i].get<std::string>(), false, true), ids_of(fx["ids"][i])) << i;
  EXPECT_TRUE(back->adds_bos());
  EXPECT_EQ(back->bos_id(), tok->bos_id());
}

TEST(HfTokenizer, MalformedFilesGiveClearErrors) {
  std::string good = test::read_file(test::fixture("tokenizer/llama3_tiny/tokenizer.json"));
  std::string dir = test::temp_dir();
  auto load_text = [&](const std::string& text) {
    test::write_file(dir + "/tokenizer.json", text);
    return test::error_message([&] { load_hf_tokenizer(dir + "/tokenizer.json"); });
  };
  EXPECT_NE(test::error_message([&] { load_hf_tokenizer(dir + "/missing"); }).find("not found"), std::string::npos);
  EXPECT_NE(load_text(good.substr(0, good.size() / 2)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_text("[1, 2]").find("top level"), std::string::npos);
  EXPECT_NE(load_text("{}").find("model"), std::string::npos);
  json j = json::parse(good);
  auto with = [&](const std::function<void(json&)>& edit) {
    json k = j;
    edit(k);
    return load_text(k.dump());
  };
  EXPECT_NE(with([](json& k) { k["model"]["type"] = "WordPiece"; }).find("model.type 'WordPiece'"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["model"]["vocab"] = json::array(); }).find("model.vocab must be an object"),
            std::string::npos);
  EXPECT_NE(with([](json& k) { k["model"]["vocab"]["Ġthe"] = "x"; }).find("must be an integer"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["model"]["merges"] = 7; }).find("model.merges must be an array"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["model"]["merges"].push_back(json::array({"zzzqqq", "a"})); })
                .find("unknown token 'zzzqqq'"),
            std::string::npos);
  EXPECT_NE(with([](json& k) { k["model"]["merges"].push_back(42); }).find("model.merges["), std::string::npos);
  EXPECT_NE(with([](json& k) { k["pre_tokenizer"] = {{"type", "Whitespace"}}; }).find("'Whitespace'"),
            std::string::npos);
  EXPECT_NE(with([](json& k) { k["pre_tokenizer"] = nullptr; }).find("pre_tokenizer"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["normalizer"] = {{"type", "NFC"}}; }).find("normalizer 'NFC'"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["decoder"] = {{"type", "Metaspace"}}; }).find("decoder.type"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["added_tokens"][0]["id"] = 5000; }).find("not contiguous"), std::string::npos);
  EXPECT_NE(with([](json& k) { k["added_tokens"][0]["content"] = 3; }).find("content must be a string"),
            std::string::npos);
  EXPECT_NE(with([](json& k) { k["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; })
                .find("does not compile"),
            std::string::npos);
}

TEST(ByteBpe, BadSpecsAreRejected) {
  BpeVocabSpec s;
  s.pre = "gpt2";
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("empty vocabulary"), std::string::npos);
  s.tokens = {"a", "b", "ab"};
  s.merges = {"a c"};
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("unknown token 'c'"), std::string::npos);
  s.merges = {"a"};
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("two tokens"), std::string::npos);
  s.merges = {"b a"};
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("not in the vocabulary"), std::string::npos);
  s.merges = {"a b"};
  s.pre = "nonesuch";
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("'nonesuch'"), std::string::npos);
  s.pre = "gpt2";
  s.eos = 7;
  EXPECT_NE(test::error_message([&] { make_byte_bpe(s); }).find("eos id 7"), std::string::npos);
  s.eos = -1;
  auto tok = make_byte_bpe(s);
  EXPECT_EQ(tok->encode("ab", false, false), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->encode("ba", false, false), (std::vector<int32_t>{1, 0}));
  // Bytes with no token are dropped and their neighbours merge (HF BPE without unk does the same).
  EXPECT_EQ(tok->encode("axb", false, false), (std::vector<int32_t>{2}));
}

TEST(ChatTemplate, MatchesTransformers) {
  json fx = load_fixture("tokenizer/chat.json");
  EXPECT_EQ(detect_chat_template(fx["smollm_template"]), ChatTemplateKind::SmolLM);
  EXPECT_EQ(detect_chat_template(fx["llama3_template"]), ChatTemplateKind::Llama3);
  EXPECT_EQ(detect_chat_template("{% for m in messages %}<|im_start|>{{m.role}}{% endfor %}"), ChatTemplateKind::ChatML);
  EXPECT_EQ(detect_chat_template(""), ChatTemplateKind::None);
  for (const json& c : fx["cases"]) {
    std::vector<ChatMessage> msgs;
    for (const json& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    bool gen = c["add_generation_prompt"];
    EXPECT_EQ(render_chat(ChatTemplateKind::SmolLM, msgs, gen), c["smollm"].get<std::string>());
    EXPECT_EQ(render_chat(ChatTemplateKind::Llama3, msgs, gen), c["llama3"].get<std::string>());
    if (!test::smollm_gguf().empty())
      EXPECT_EQ(smollm().encode(c["smollm"].get<std::string>(), false, true), ids_of(c["smollm_ids"]));
  }
  EXPECT_EQ(render_chat(ChatTemplateKind::ChatML, {{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_THROW(render_chat(ChatTemplateKind::None, {{"user", "hi"}}, true), Error);
}

TEST(StreamDecoder, HoldsIncompleteUtf8) {
  ZEBRA_REQUIRE_SMOLLM(gguf);
  const Tokenizer& tok = smollm();
  std::string text = "emoji 😀😁 café 日本語 and \xff done";
  std::vector<int32_t> ids = tok.encode(text, false, true);
  StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    // Every chunk handed out is complete UTF-8.
    EXPECT_TRUE(utf8::is_valid(piece));
    out += piece;
  }
  out += dec.flush();
  EXPECT_EQ(out, "emoji 😀😁 café 日本語 and \xEF\xBF\xBD done");  // the invalid byte shown as U+FFFD
  // A lone lead byte is held until the stream ends.
  StreamDecoder d2(tok);
  std::vector<int32_t> e = tok.encode("😀", false, true);
  ASSERT_GT(e.size(), 1u);  // the emoji is split over byte tokens
  EXPECT_EQ(d2.push(e[0]), "");
  EXPECT_NE(d2.flush().find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_EQ(d2.flush(), "");
}

}  // namespace
}  // namespace zebra
