// Tokenizer::decode and the streaming decoder, shared by every tokenizer.
#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  const bool strip = strips_leading_space();
  for (size_t k = 0; k < ids.size(); ++k) {
    std::string piece = token_bytes(ids[k]);
    // SentencePiece's dummy prefix: drop the space at the start of the text and right after BOS.
    if (strip && (k == 0 || ids[k - 1] == bos_id()) && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
  }
  return out;
}

void Tokenizer::set_chat_template_text(const std::string& jinja) {
  chat_template_text_ = jinja;
  chat_template_ = detect_chat_template(jinja);
}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_bytes(id);
  if (tok_.strips_leading_space() && after_bos_ && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  after_bos_ = id == tok_.bos_id();
  first_ = false;
  pending_ += piece;
  // Emit every complete character; a definitely invalid byte becomes U+FFFD, a cut-off tail waits.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    size_t n = utf8::valid_seq_len(pending_, i);
    if (n > 0) {
      out.append(pending_, i, n);
      i += n;
    } else if (utf8::incomplete_len(pending_, i) > 0) {
      break;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace zebra
