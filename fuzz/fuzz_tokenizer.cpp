// Fuzzes the tokenizers: arbitrary bytes through a small built-in byte-level BPE (every pre-tokenizer
// kind) and the SentencePiece tokenizer (tok512.bin when found, else a tiny built vocabulary), checking
// decode(encode(x)) == x where every byte has a token; and arbitrary text as tokenizer.json.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace zebra;

// All 256 byte tokens, a few merges, and special tokens, under one pre-tokenizer.
std::unique_ptr<Tokenizer> tiny_bpe(const std::string& pre) {
  BpeVocabSpec s;
  s.pre = pre;
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_level::encode(std::string(1, static_cast<char>(b))));
  const char* merges[] = {"Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "Ġ Ġ", "ĠĠ ĠĠ", "1 2", "Ã ©"};
  for (const char* m : merges) {
    std::string a(m, std::strchr(m, ' ') - m), b(std::strchr(m, ' ') + 1);
    s.tokens.push_back(a + b);
    s.merges.push_back(m);
  }
  s.token_types.assign(s.tokens.size(), 1);
  for (const char* sp : {"<|im_start|>", "<|im_end|>", "<|im"}) {
    s.tokens.push_back(sp);
    s.token_types.push_back(3);
  }
  s.tokens.push_back("<user>");
  s.token_types.push_back(4);
  s.eos = static_cast<int32_t>(s.tokens.size()) - 3;
  return make_byte_bpe(s);
}

std::unique_ptr<Tokenizer> spm() {
  for (const char* p : {"../shared/assets/models/stories260K/tok512.bin", "../../shared/assets/models/stories260K/tok512.bin",
                        "/work/shared/assets/models/stories260K/tok512.bin"})
    if (std::filesystem::exists(p)) return load_llama2c_tokenizer(p, 512);
  std::vector<std::string> toks = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    toks.push_back(name);
  }
  for (const char* p : {" ", "a", "b", " a", "ab", " ab", "e", " the", "t", "h", "th", " t"}) toks.push_back(p);
  std::vector<float> scores(toks.size());
  for (size_t i = 0; i < toks.size(); ++i) scores[i] = -static_cast<float>(i);
  return make_spm(toks, scores, {}, 1, 2, true);
}

struct Tokenizers {
  std::vector<std::unique_ptr<Tokenizer>> bpe;
  std::unique_ptr<Tokenizer> sp;
  Tokenizers() {
    for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) bpe.push_back(tiny_bpe(pre));
    sp = spm();
  }
};

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers toks;  // built once; read-only afterwards
  if (size == 0) return 0;
  uint8_t mode = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);

  if (mode % 4 == 3) {
    // tokenizer.json parsing: any text must give a tokenizer or a zebra::Error, nothing else.
    static const std::string dir = [] {
      std::string d = std::filesystem::temp_directory_path() / ("zebra-fuzz-tok-" + std::to_string(getpid()));
      std::filesystem::create_directories(d);
      return d;
    }();
    {
      std::ofstream out(dir + "/tokenizer.json", std::ios::binary | std::ios::trunc);
      out << text;
    }
    try {
      auto t = load_hf_tokenizer(dir + "/tokenizer.json");
      auto ids = t->encode("Hello world 123 <|x|>", true, true);
      for (int32_t id : ids) check(id >= 0 && id < t->vocab_size(), "hf: id out of range");
      (void)t->decode(ids);
    } catch (const Error&) {
    }
    return 0;
  }

  bool special = mode & 4;
  for (const auto& t : toks.bpe) {
    std::vector<int32_t> ids = t->encode(text, mode & 8, special);
    for (int32_t id : ids) check(id >= 0 && id < t->vocab_size(), "bpe: id out of range");
    // Every byte has a token, so the round trip is exact for any input.
    check(t->decode(ids) == text, "bpe: decode(encode(x)) != x");
    StreamDecoder sd(*t);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.push(id);
    streamed += sd.flush();
    check(utf8::is_valid(streamed), "bpe: stream produced invalid UTF-8");
    if (utf8::is_valid(text)) check(streamed == text, "bpe: stream != text for valid UTF-8");
  }
  std::vector<int32_t> ids = toks.sp->encode(text, false, special);
  for (int32_t id : ids) check(id >= 0 && id < toks.sp->vocab_size(), "spm: id out of range");
  if (!special) check(toks.sp->decode(ids) == text, "spm: decode(encode(x)) != x");
  return 0;
}
