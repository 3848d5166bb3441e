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

enum class ChatTemplateKind { None, ChatML, Llama3 };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. add_bos prepends the BOS id when the tokenizer has one and its config asks for it
  // (add_bos = true means "as the model expects": SmolLM adds none, Llama/llama2.c add <s>).
  // parse_special: recognise special/added tokens written in the text (e.g. "<|im_start|>").
  // Throws zebra::Error on invalid UTF-8 for byte-level BPE? No: invalid bytes are encoded as bytes.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // The raw bytes one token stands for (byte-level tokens mapped back to bytes, SentencePiece "▁" to
  // space, byte-fallback <0xNN> to the byte). Special tokens decode to their text.
  virtual std::string token_bytes(int32_t id) const = 0;
  // Convenience: concatenation of token_bytes, with SentencePiece's leading-space rule applied.
  virtual std::string decode(const std::vector<int32_t>& ids) const;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  virtual std::vector<int32_t> eos_ids() const { return {eos_id()}; }  // all stop tokens
  virtual bool adds_bos() const = 0;  // whether the model expects BOS at the start
  virtual bool is_special(int32_t id) const = 0;
  virtual std::string token_text(int32_t id) const = 0;  // the vocabulary string, for display/export

  ChatTemplateKind chat_template() const { return chat_template_; }
  void set_chat_template(ChatTemplateKind k) { chat_template_ = k; }

 protected:
  ChatTemplateKind chat_template_ = ChatTemplateKind::None;
};

// Streaming decode: feed ids one at a time, get back the text that is complete UTF-8 so far
// (a multi-byte character split across tokens is held until it is whole).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);
  std::string flush();  // whatever is left (invalid bytes replaced by U+FFFD)

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

// Render a conversation with the template; add_generation_prompt appends the assistant header.
std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);
// Guess the template kind from a Jinja chat_template string (tokenizer_config.json / GGUF metadata).
ChatTemplateKind detect_chat_template(const std::string& jinja);

}  // namespace zebra
