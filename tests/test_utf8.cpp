// core/utf8: the one UTF-8 validator. first_invalid must report the offset the CLI's own validator
// (replaced by it) reported, so that validator is kept here as an oracle and compared exhaustively.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "core/utf8.h"

using namespace zebra;

namespace {

// tools/zebra/common.cpp's valid_utf8 before it was replaced by utf8::first_invalid.
bool cli_valid_utf8(const std::string& s, size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xC0) == 0x80;
    if (ok && len == 2) ok = c >= 0xC2;
    if (ok && len == 3) {
      unsigned cp = ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
      ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok && len == 4) {
      unsigned cp = ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
      ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    if (!ok) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

// Same verdict and, when invalid, the same offset; is_valid agrees with first_invalid.
void expect_same(const std::string& s) {
  size_t bad = 0;
  const bool ok = cli_valid_utf8(s, &bad);
  const size_t got = utf8::first_invalid(s);
  ASSERT_EQ(got, ok ? std::string::npos : bad) << testing::PrintToString(s);
  ASSERT_EQ(utf8::is_valid(s), ok) << testing::PrintToString(s);
}

}  // namespace

TEST(Utf8, FirstInvalidReportsTheOffset) {
  EXPECT_EQ(utf8::first_invalid(""), std::string::npos);
  EXPECT_EQ(utf8::first_invalid("plain ascii"), std::string::npos);
  EXPECT_EQ(utf8::first_invalid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string::npos);
  EXPECT_EQ(utf8::first_invalid("ok \xff\xfe bad"), 3u);           // what zebra data / the CLI report
  EXPECT_EQ(utf8::first_invalid("ab\xC0\xAF"), 2u);                // overlong '/'
  EXPECT_EQ(utf8::first_invalid("a\xE0\x80\xAF"), 1u);             // overlong 3-byte
  EXPECT_EQ(utf8::first_invalid("\xC3\xA9\xED\xA0\x80"), 2u);      // surrogate U+D800
  EXPECT_EQ(utf8::first_invalid("\xF4\x90\x80\x80"), 0u);          // above U+10FFFF
  EXPECT_EQ(utf8::first_invalid("xyz\xE2\x82"), 3u);               // cut off at the end
  EXPECT_EQ(utf8::first_invalid("\x80"), 0u);                      // lone continuation byte
}

TEST(Utf8, AgreesWithTheFormerCliValidatorOnEveryShortString) {
  std::string s;
  for (int a = 0; a < 256; ++a) {
    expect_same(std::string(1, static_cast<char>(a)));
    for (int b = 0; b < 256; ++b) {
      s = {static_cast<char>(a), static_cast<char>(b)};
      expect_same(s);
      for (int c = 0; c < 256; ++c) {
        s = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        expect_same(s);
      }
    }
  }
}

TEST(Utf8, AgreesWithTheFormerCliValidatorOnBoundaryAndRandomStrings) {
  // Every 4-byte string over the bytes where UTF-8's rules change.
  const unsigned char edges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4,
                                 0xF5, 0xF7, 0xF8, 0xFF};
  for (unsigned char a : edges)
    for (unsigned char b : edges)
      for (unsigned char c : edges)
        for (unsigned char d : edges)
          expect_same({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)});
  // Longer strings: valid text with random bytes mixed in, so the first bad offset is past the start.
  std::mt19937 rng(11);
  const std::string valid = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";
  for (int t = 0; t < 200000; ++t) {
    std::string s;
    const int parts = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < parts; ++k) {
      if (rng() % 3) s += valid.substr(rng() % valid.size(), rng() % 5);
      else s += static_cast<char>(rng() % 256);
    }
    expect_same(s);
  }
}
