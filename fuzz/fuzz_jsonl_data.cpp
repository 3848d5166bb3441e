// Fuzzes the training-data parsers: arbitrary bytes as a packing JSONL file ({"text"} / {"messages"}), as a
// DPO preference JSONL file (plain and chat forms, with tight max lengths), and as a .ztok token shard.
// Any input must give results that satisfy the invariants below or a zebra::Error, nothing else.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "train/packing.h"
#include "train/preference_data.h"
#include "train/token_shard.h"

namespace {

using namespace zebra;

// All 256 byte tokens, a few merges and ChatML's special tokens, with the ChatML template.
std::unique_ptr<Tokenizer> chat_bpe() {
  BpeVocabSpec s;
  s.pre = "smollm";
  for (int b = 0; b < 256; ++b) s.tokens.push_back(byte_level::encode(std::string(1, static_cast<char>(b))));
  const char* merges[] = {"Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r"};
  for (const char* m : merges) {
    std::string a(m, std::strchr(m, ' ') - m), b(std::strchr(m, ' ') + 1);
    s.tokens.push_back(a + b);
    s.merges.push_back(m);
  }
  s.token_types.assign(s.tokens.size(), 1);
  for (const char* sp : {"<|im_start|>", "<|im_end|>"}) {
    s.tokens.push_back(sp);
    s.token_types.push_back(3);
  }
  s.eos = static_cast<int32_t>(s.tokens.size()) - 1;
  s.bos = static_cast<int32_t>(s.tokens.size()) - 2;
  auto t = make_byte_bpe(s);
  t->set_chat_template(ChatTemplateKind::ChatML);
  return t;
}

// SentencePiece with BOS and no chat template.
std::unique_ptr<Tokenizer> plain_spm() {
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

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_jsonl_data: %s\n", what);
    __builtin_trap();
  }
}

void check_ids(const Tokenizer& t, const std::vector<int32_t>& ids, const char* what) {
  for (int32_t id : ids) check(id >= 0 && id < t.vocab_size(), what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<Tokenizer> chat = chat_bpe();
  static const std::unique_ptr<Tokenizer> spm = plain_spm();
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const Tokenizer& tok = (mode & 4) ? *spm : *chat;

  switch (mode % 4) {
    case 0: {  // packing JSONL
      try {
        for_each_jsonl_document(tok, text, "fuzz.jsonl", [&](std::vector<int32_t>&& ids) {
          check(!ids.empty() && ids.back() == tok.eos_id(), "document does not end with EOS");
          check_ids(tok, ids, "document id out of range");
        });
      } catch (const Error&) {
      }
      break;
    }
    case 1:
    case 2: {  // preferences, with tight limits so truncation runs
      PreferenceOptions o;
      o.max_length = (mode % 4 == 1) ? 24 : 1024;
      o.max_prompt_length = (mode % 4 == 1) ? 8 : 512;
      try {
        for (const PreferencePair& p : parse_preferences(tok, text, "fuzz.jsonl", o)) {
          check(!p.prompt.empty() && !p.chosen.empty() && !p.rejected.empty(), "empty part of a pair");
          check(static_cast<int64_t>(p.prompt.size() + std::max(p.chosen.size(), p.rejected.size())) <= o.max_length,
                "pair longer than max_length after truncation");
          check_ids(tok, p.prompt, "prompt id out of range");
          check_ids(tok, p.chosen, "chosen id out of range");
          check_ids(tok, p.rejected, "rejected id out of range");
        }
      } catch (const Error&) {
      }
      break;
    }
    case 3: {  // token shard bytes
      static const std::string path = [] {
        std::string d = std::filesystem::temp_directory_path() / ("zebra-fuzz-ztok-" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        return d + "/shard.ztok";
      }();
      {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
      }
      try {
        TokenShard s = TokenShard::open(path);
        check(static_cast<uint64_t>(s.tokens()) * 4 + 64 == text.size(), "shard size disagrees with its header");
        for (int64_t r = 0; r < s.rows(); ++r)
          for (int64_t c = 0; c < s.row_len(); ++c) check(s.row(r)[c] < s.vocab_size(), "shard token >= vocab");
      } catch (const Error&) {
      }
      break;
    }
  }
  return 0;
}
