// The tokenizer interface every model uses, whatever file it came from.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zebra {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// ChatML: plain <|im_start|>role\ncontent<|im_end|>\n turns.
// SmolLM: ChatML plus SmolLM2's default system prompt when the conversation has none (its HF template).
// Llama3: the Llama-3(.0) Instruct template (BOS text once, header ids, trimmed content, <|eot_id|>).
enum class ChatTemplateKind { None, ChatML, Llama3, SmolLM };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. add_bos prepends the BOS id when the tokenizer has one and its config asks for it
  // (add_bos = true means "as the model expects": SmolLM adds none, Llama/llama2.c add <s>).
  // parse_special: recognise special/added tokens written in the text (e.g. "<|im_start|>"); added
  // tokens that are not special (GGUF user-defined) are always recognised, as HF tokenizers does.
  // Never throws on odd text: each invalid UTF-8 byte is encoded on its own (byte-level BPE: its byte
  // token, or U+FFFD's tokens when the vocabulary has no token for that byte, e.g. 0xFF in SmolLM2;
  // SentencePiece: byte fallback), so decode(encode(x)) == x whenever those byte tokens exist.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // The raw bytes one token stands for (byte-level tokens mapped back to bytes, SentencePiece "▁" to
  // space, byte-fallback <0xNN> to the byte). Special tokens decode to their text.
  virtual std::string token_bytes(int32_t id) const = 0;
  // Convenience: concatenation of token_bytes, with SentencePiece's leading-space rule applied (the
  // dummy-prefix space is dropped from the first piece and from the piece right after BOS).
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual std::vector<int32_t> eos_ids() const { return {eos_id()}; }  // all stop tokens
  virtual bool adds_bos() const = 0;  // whether the model expects BOS at the start
  virtual bool is_special(int32_t id) const = 0;
  virtual std::string token_text(int32_t id) const = 0;  // the vocabulary string, for display/export
  // True for SentencePiece vocabularies whose pieces carry a dummy-prefix space (decode strips it).
  virtual bool strips_leading_space() const { return false; }

  ChatTemplateKind chat_template() const { return chat_template_; }
  void set_chat_template(ChatTemplateKind k) { chat_template_ = k; }
  // The Jinja source the kind was detected from ("" if none); kept for export.
  const std::string& chat_template_text() const { return chat_template_text_; }
  void set_chat_template_text(const std::string& jinja);  // also sets the kind via detect_chat_template

 protected:
  ChatTemplateKind chat_template_ = ChatTemplateKind::None;
  std::string chat_template_text_;
};

// Streaming decode: feed ids one at a time, get back the text that is complete UTF-8 so far
// (a multi-byte character split across tokens is held until it is whole). SentencePiece's leading
// space is dropped only from the piece right after BOS (llama2.c's rule), so feed BOS first when
// streaming a fresh generation, and a continuation keeps its spaces.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string flush();  // whatever is left (invalid bytes replaced by U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
  bool after_bos_ = false;
};

// Render a conversation with the template; add_generation_prompt appends the assistant header.
// Reproduces transformers' apply_chat_template(tokenize=False) for the model's own template; the
// result already holds any BOS text, so encode it with add_bos = false and parse_special = true.
std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);
// Guess the template kind from a Jinja chat_template string (tokenizer_config.json / GGUF metadata).
ChatTemplateKind detect_chat_template(const std::string& jinja);

// ---- Byte-level BPE (GPT-2 style: SmolLM2, Llama-3) ----

// Everything a byte-level BPE needs, as GGUF stores it (tokenizer.ggml.*).
struct BpeVocabSpec {
  std::vector<std::string> tokens;     // byte-level strings ("Ġthe"); control/user tokens as plain text
  std::vector<std::string> merges;     // "a b", rank = position
  std::vector<int32_t> token_types;    // GGUF: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
                                       // 6 byte; empty = all normal
  std::string pre;                     // GGUF tokenizer.ggml.pre: "smollm", "gpt2", "llama-bpe", ...
  int32_t bos = -1, eos = -1;
  std::vector<int32_t> extra_eos;      // more stop tokens (e.g. <|eot_id|>)
  bool add_bos = false;
  std::string chat_template;           // Jinja text
  // HF BPE "ignore_merges": a pre-token that is itself in the vocabulary is emitted whole (Llama-3).
  // make_byte_bpe sets it for the Llama-3 pre-tokenizers when the spec leaves it unset.
  int ignore_merges = -1;              // -1 = decide from `pre`, 0 = no, 1 = yes
  // Pre-tokenizer as explicit steps, each splitting every piece by a regex with HF "Isolated"
  // behaviour; when empty it is derived from `pre`. (load_hf_tokenizer fills it from tokenizer.json.)
  std::vector<std::string> pre_regexes;
};

// Throws zebra::Error for an inconsistent spec (merges naming unknown tokens, bad ids, unknown pre).
// The concrete class (with spec() for export) is ByteBpeTokenizer in tokenizer/bpe.h.
std::unique_ptr<Tokenizer> make_byte_bpe(const BpeVocabSpec& spec);

// HF layout: `path` is tokenizer.json or a directory holding it (+ optional tokenizer_config.json).
// Byte-level BPE (ByteLevel pre-tokenizer) gives a ByteBpeTokenizer; the Llama-2 legacy layout (BPE with
// byte_fallback, normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer) gives a SpmTokenizer
// whose scores are minus each piece's first merge rank, so it encodes as llama2.c / SentencePiece BPE.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);
// Writes dir/tokenizer.json + dir/tokenizer_config.json (each atomically) for a byte-level BPE tokenizer
// or a SentencePiece one (Llama-2 legacy layout, as transformers' LlamaConverter writes it; llama2.c's
// "\n<s>\n"/"\n</s>\n" become "<s>"/"</s>"); throws for other tokenizers.
void save_hf_tokenizer(const Tokenizer& tok, const std::string& dir);

// ---- SentencePiece-style BPE with byte fallback (llama2.c, GGUF "llama" vocabularies) ----

// pieces may use "▁" or " " for spaces; scores rank merges (higher first); token_types as GGUF
// (6 = byte "<0xNN>"; empty = guess bytes from the "<0xNN>" names).
std::unique_ptr<Tokenizer> make_spm(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                                    const std::vector<int32_t>& token_types, int32_t bos, int32_t eos,
                                    bool add_bos);
// llama2.c tokenizer.bin: int32 max_token_length, then per token float score, int32 len, bytes.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t vocab_size);

}  // namespace zebra
