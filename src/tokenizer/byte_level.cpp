#include "tokenizer/byte_level.h"

#include <array>

#include "core/utf8.h"

namespace zebra::byte_level {

namespace {

// Printable Latin-1 bytes map to themselves; the rest are shifted to 256 + n in byte order.
struct Tables {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};
  Tables() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? b : 256 + n++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;  // immutable after construction
  return t;
}

}  // namespace

uint32_t byte_to_codepoint(unsigned char b) { return tables().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) { return cp < tables().to_byte.size() ? tables().to_byte[cp] : -1; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append_codepoint(out, byte_to_codepoint(b));
  return out;
}

std::string decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8::valid_seq_len(text, i);
    if (n == 0) {
      out += text[i++];
      continue;
    }
    int b = codepoint_to_byte(utf8::decode_at(text, i, n));
    if (b >= 0) out += static_cast<char>(b);
    else out.append(text.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace zebra::byte_level
