// Chat templates rendered in C++ exactly as transformers' apply_chat_template renders the models' Jinja.
#include <string>
#include <vector>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

namespace {

const char* const kSmolLMSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

bool is_py_space(uint32_t cp) {
  // Python's str.isspace(), which Jinja's |trim (str.strip) uses.
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string py_strip(const std::string& s) {
  // Walk characters; keep the span between the first and last non-space.
  size_t begin = std::string::npos, end = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8::valid_seq_len(s, i);
    bool space = n > 0 && is_py_space(utf8::decode_at(s, i, n));
    if (n == 0) n = 1;
    if (!space) {
      if (begin == std::string::npos) begin = i;
      end = i + n;
    }
    i += n;
  }
  return begin == std::string::npos ? std::string() : s.substr(begin, end - begin);
}

}  // namespace

std::string render_chat(ChatTemplateKind kind, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  std::string out;
  switch (kind) {
    case ChatTemplateKind::ChatML:
    case ChatTemplateKind::SmolLM:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && kind == ChatTemplateKind::SmolLM && messages[0].role != "system")
          out += cat("<|im_start|>system\n", kSmolLMSystem, "<|im_end|>\n");
        out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    case ChatTemplateKind::Llama3:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += "<|begin_of_text|>";
        out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + py_strip(messages[i].content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatTemplateKind::None:
      break;
  }
  fail("render_chat: the tokenizer has no chat template (ChatTemplateKind::None)");
}

ChatTemplateKind detect_chat_template(const std::string& jinja) {
  if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatTemplateKind::Llama3;
  if (jinja.find("<|im_start|>") != std::string::npos)
    return jinja.find("named SmolLM") != std::string::npos ? ChatTemplateKind::SmolLM : ChatTemplateKind::ChatML;
  return ChatTemplateKind::None;
}

}  // namespace zebra
