// GPT-2's bytes_to_unicode: every byte gets a printable character so byte-level BPE vocabularies are
// plain strings ("Ġ" is the space byte 0x20).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace zebra::byte_level {

uint32_t byte_to_codepoint(unsigned char b);
// The byte a codepoint stands for, or -1 if it is not one of the 256 mapped characters.
int codepoint_to_byte(uint32_t cp);
// Bytes to their byte-level string (UTF-8 of the mapped characters).
std::string encode(std::string_view bytes);
// Byte-level string back to bytes; characters outside the mapping are copied through unchanged.
std::string decode(std::string_view text);

}  // namespace zebra::byte_level
