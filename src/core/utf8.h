// UTF-8 helpers: the one validator (tokenizers, train/ data, the CLI; io/ may use it too) and the
// codepoint tools the tokenizers need.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace zebra::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there are not
// a complete, valid sequence (bad lead byte, bad continuation, overlong, surrogate, > U+10FFFF, cut off).
size_t valid_seq_len(std::string_view s, size_t i);
// Expected length from the lead byte alone (1..4), 0 for a continuation or invalid lead byte.
size_t lead_len(unsigned char c);
// Offset of the first byte where no valid sequence starts (what error messages report), npos if valid.
size_t first_invalid(std::string_view s);
bool is_valid(std::string_view s);
void append_codepoint(std::string& out, uint32_t cp);
// Decodes the valid sequence at s[i] (caller checked valid_seq_len > 0).
uint32_t decode_at(std::string_view s, size_t i, size_t len);
// Replaces every invalid byte by U+FFFD.
std::string sanitize(std::string_view s);

}  // namespace zebra::utf8

namespace zebra::utf8 {
// If s[i..] is a cut-off start of a sequence that more bytes could still complete, its length; else 0.
size_t incomplete_len(std::string_view s, size_t i);
}  // namespace zebra::utf8
