#include "tokenizer/gguf_vocab.h"

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace zebra {

namespace {

std::vector<int32_t> token_types(const GgufFile& g, size_t n) {
  if (!g.find_value("tokenizer.ggml.token_type")) return {};
  std::vector<int32_t> out;
  for (int64_t v : g.get_int_array("tokenizer.ggml.token_type")) out.push_back(static_cast<int32_t>(v));
  ZEBRA_CHECK(out.size() == n, g.describe(), ": tokenizer.ggml.token_type has ", out.size(), " entries, expected ", n,
              " (one per token)");
  return out;
}

int32_t token_id(const GgufFile& g, const char* key, size_t n) {
  int64_t v = g.get_int(key, -1);
  ZEBRA_CHECK(v >= -1 && v < static_cast<int64_t>(n), g.describe(), ": ", key, " = ", v, " is not a token id (vocab ",
              n, ")");
  return static_cast<int32_t>(v);
}

bool get_bool(const GgufFile& g, const char* key, bool def) {
  const GgufValue* v = g.find_value(key);
  return v ? v->as_int() != 0 : def;
}

}  // namespace

BpeVocabSpec bpe_spec_from_gguf(const GgufFile& g) {
  std::string model = g.get_string("tokenizer.ggml.model");
  ZEBRA_CHECK(model == "gpt2", g.describe(), ": tokenizer.ggml.model is '", model,
              "', expected 'gpt2' for a byte-level BPE vocabulary");
  BpeVocabSpec s;
  s.tokens = g.get_string_array("tokenizer.ggml.tokens");
  s.merges = g.get_string_array("tokenizer.ggml.merges");
  s.token_types = token_types(g, s.tokens.size());
  s.pre = g.get_string("tokenizer.ggml.pre", "default");
  s.bos = token_id(g, "tokenizer.ggml.bos_token_id", s.tokens.size());
  s.eos = token_id(g, "tokenizer.ggml.eos_token_id", s.tokens.size());
  for (const char* k : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = token_id(g, k, s.tokens.size());
    if (id >= 0 && id != s.eos) s.extra_eos.push_back(id);
  }
  s.add_bos = get_bool(g, "tokenizer.ggml.add_bos_token", false);
  s.chat_template = g.get_string("tokenizer.chat_template", "");
  add_conventional_stop_tokens(s);
  return s;
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& g) {
  std::string model = g.get_string("tokenizer.ggml.model");
  if (model == "gpt2") return make_byte_bpe(bpe_spec_from_gguf(g));
  ZEBRA_CHECK(model == "llama", g.describe(), ": tokenizer.ggml.model '", model,
              "' is not supported (expected 'gpt2' or 'llama')");
  std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
  std::vector<float> scores;
  if (g.find_value("tokenizer.ggml.scores")) {
    for (double d : g.get_double_array("tokenizer.ggml.scores")) scores.push_back(static_cast<float>(d));
  } else {
    scores.assign(tokens.size(), 0.0f);
  }
  ZEBRA_CHECK(scores.size() == tokens.size(), g.describe(), ": tokenizer.ggml.scores has ", scores.size(),
              " entries for ", tokens.size(), " tokens");
  auto tok = make_spm(tokens, scores, token_types(g, tokens.size()), token_id(g, "tokenizer.ggml.bos_token_id", tokens.size()),
                      token_id(g, "tokenizer.ggml.eos_token_id", tokens.size()),
                      get_bool(g, "tokenizer.ggml.add_bos_token", true));
  tok->set_chat_template_text(g.get_string("tokenizer.chat_template", ""));
  return tok;
}

}  // namespace zebra
