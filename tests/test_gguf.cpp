// GGUF reader: files built in memory by a tiny test-only writer (every metadata type, nested arrays, v2/v3,
// custom alignment, hostile inputs), files written by ggml's gguf-py (fuzz/corpus/gguf/, made by
// scripts/reference/make_gguf_seeds.py), and the real SmolLM2 GGUF cross-checked against gguf-py's
// dequantisation (tests/fixtures/dequant/manifest.json, scripts/reference/make_dequant_fixtures.py).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "support.h"

namespace zebra {
namespace {

// ---- A tiny GGUF writer (test only) ----

template <class T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}
std::string gstr(const std::string& s) { return le<uint64_t>(s.size()) + s; }

// A metadata value: its type and its encoding without the type tag (as it appears inside an array).
struct Val {
  GgufType type;
  std::string raw;
};
template <class T>
Val scalar(GgufType t, T v) { return {t, le<T>(v)}; }
Val u8(uint8_t v) { return scalar(GgufType::U8, v); }
Val i8(int8_t v) { return scalar(GgufType::I8, v); }
Val u16(uint16_t v) { return scalar(GgufType::U16, v); }
Val i16(int16_t v) { return scalar(GgufType::I16, v); }
Val u32(uint32_t v) { return scalar(GgufType::U32, v); }
Val i32(int32_t v) { return scalar(GgufType::I32, v); }
Val u64(uint64_t v) { return scalar(GgufType::U64, v); }
Val i64(int64_t v) { return scalar(GgufType::I64, v); }
Val f32(float v) { return scalar(GgufType::F32, v); }
Val f64(double v) { return scalar(GgufType::F64, v); }
Val boolean(bool v) { return scalar(GgufType::BOOL, static_cast<uint8_t>(v)); }
Val str(const std::string& s) { return {GgufType::STRING, gstr(s)}; }
Val array(GgufType elem, const std::vector<Val>& items) {
  std::string raw = le<uint32_t>(static_cast<uint32_t>(elem)) + le<uint64_t>(items.size());
  for (const Val& v : items) raw += v.raw;
  return {GgufType::ARRAY, raw};
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first, as stored
  uint32_t ggml_type;
  std::string data;
  int64_t offset_override = -1;  // write this offset instead of the computed one
};

struct Builder {
  uint32_t version = 3;
  size_t align = 32;  // layout alignment; add general.alignment yourself when it is not 32
  std::vector<std::pair<std::string, Val>> kvs;
  std::vector<TensorSpec> tensors;

  Builder& kv(const std::string& key, Val v) {
    kvs.emplace_back(key, std::move(v));
    return *this;
  }
  Builder& tensor(TensorSpec t) {
    tensors.push_back(std::move(t));
    return *this;
  }

  std::string build() const {
    std::string out = "GGUF" + le<uint32_t>(version) + le<uint64_t>(tensors.size()) + le<uint64_t>(kvs.size());
    for (const auto& [k, v] : kvs) out += gstr(k) + le<uint32_t>(static_cast<uint32_t>(v.type)) + v.raw;
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const TensorSpec& t : tensors) {
      offsets.push_back(off);
      off += t.data.size();
      off = (off + align - 1) / align * align;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorSpec& t = tensors[i];
      out += gstr(t.name) + le<uint32_t>(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) out += le<uint64_t>(d);
      out += le<uint32_t>(t.ggml_type);
      out += le<uint64_t>(t.offset_override >= 0 ? static_cast<uint64_t>(t.offset_override) : offsets[i]);
    }
    if (tensors.empty()) return out;
    out.resize((out.size() + align - 1) / align * align, '\0');
    const size_t data_start = out.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      out.resize(data_start + offsets[i], '\0');
      out += tensors[i].data;
    }
    return out;
  }
};

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
GgufFile parse(const std::string& s) { return GgufFile(bytes(s), "mem.gguf"); }

std::string f32_data(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

// Expects parse(s) to throw zebra::Error whose message contains `needle`.
void expect_error(const std::string& s, const std::string& needle) {
  try {
    parse(s);
    ADD_FAILURE() << "expected zebra::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

// Same for a getter call.
template <class Fn>
void expect_getter_error(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected zebra::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// A small valid file with every metadata type and a few tensors; the last tensor ends the file.
Builder full_builder(uint32_t version) {
  Builder b;
  b.version = version;
  b.kv("general.architecture", str("llama"))
      .kv("t.u8", u8(255)).kv("t.i8", i8(-128)).kv("t.u16", u16(65535)).kv("t.i16", i16(-32768))
      .kv("t.u32", u32(0xFFFFFFFFu)).kv("t.i32", i32(std::numeric_limits<int32_t>::min()))
      .kv("t.u64", u64(std::numeric_limits<uint64_t>::max())).kv("t.i64", i64(std::numeric_limits<int64_t>::min()))
      .kv("t.f32", f32(1.5f)).kv("t.f64", f64(-2.25)).kv("t.bool", boolean(true)).kv("t.false", boolean(false))
      .kv("t.str", str("h\xc3\xa9llo")).kv("t.empty_str", str(""))
      .kv("t.strs", array(GgufType::STRING, {str("a"), str(""), str("ccc")}))
      .kv("t.ints", array(GgufType::I32, {i32(1), i32(-2), i32(3)}))
      .kv("t.floats", array(GgufType::F32, {f32(0.5f), f32(-4.0f)}))
      .kv("t.empty", array(GgufType::U8, {}))
      .kv("t.nested", array(GgufType::ARRAY, {array(GgufType::I16, {i16(1), i16(2)}),
                                              array(GgufType::STRING, {str("x")}),
                                              array(GgufType::ARRAY, {array(GgufType::U8, {u8(7)})})}));
  b.tensor({"w", {3, 2}, 0, f32_data({0, 1, 2, 3, 4, 5})});
  std::string h;  // F16 [1, 2, 0.5, -3]
  for (uint16_t v : {0x3C00, 0x4000, 0x3800, 0xC200}) h += le<uint16_t>(v);
  b.tensor({"h", {4}, 1, h});
  std::string q8 = le<uint16_t>(0x3800);  // Q8_0 one block, d = 0.5, q = -16..15
  for (int i = 0; i < 32; ++i) q8 += static_cast<char>(static_cast<int8_t>(i - 16));
  b.tensor({"q8", {32, 1, 1, 1}, 8, q8});
  return b;
}

// ---- Parsing valid files ----

class GgufVersions : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufVersions, ParsesEveryMetadataType) {
  GgufFile f = parse(full_builder(GetParam()).build());
  EXPECT_EQ(f.version(), GetParam());
  EXPECT_EQ(f.describe(), "mem.gguf");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 255);
  EXPECT_EQ(f.get_int("t.i8"), -128);
  EXPECT_EQ(f.get_int("t.u16"), 65535);
  EXPECT_EQ(f.get_int("t.i16"), -32768);
  EXPECT_EQ(f.get_int("t.u32"), 0xFFFFFFFFll);
  EXPECT_EQ(f.get_int("t.i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.find_value("t.u64")->u, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.find_value("t.u64")->type, GgufType::U64);
  expect_getter_error([&] { f.get_int("t.u64"); }, "does not fit in int64");
  EXPECT_EQ(f.get_double("t.u64"), 18446744073709551615.0);
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_double("t.f32"), 1.5);
  EXPECT_EQ(f.get_double("t.f64"), -2.25);
  EXPECT_EQ(f.get_double("t.i8"), -128.0);  // integers widen to double
  EXPECT_EQ(f.get_int("t.bool"), 1);
  EXPECT_EQ(f.get_int("t.false"), 0);
  EXPECT_TRUE(f.find_value("t.bool")->is_integer());
  EXPECT_EQ(f.get_string("t.str"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string("t.empty_str"), "");
  EXPECT_EQ(f.get_string_array("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_int_array("t.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_double_array("t.ints"), (std::vector<double>{1, -2, 3}));
  EXPECT_EQ(f.get_double_array("t.floats"), (std::vector<double>{0.5, -4.0}));
  EXPECT_TRUE(f.get_int_array("t.empty").empty());
  const GgufValue* nested = f.find_value("t.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type, GgufType::ARRAY);
  EXPECT_EQ(nested->array_type, GgufType::ARRAY);
  ASSERT_EQ(nested->array.size(), 3u);
  EXPECT_EQ(nested->array[0].array_type, GgufType::I16);
  EXPECT_EQ(nested->array[0].array[1].as_int(), 2);
  EXPECT_EQ(nested->array[1].array[0].as_string(), "x");
  EXPECT_EQ(nested->array[2].array[0].array[0].as_int(), 7);
  // Defaults apply only when the key is absent.
  EXPECT_EQ(f.get_int("absent", 42), 42);
  EXPECT_EQ(f.get_double("absent", 0.25), 0.25);
  EXPECT_EQ(f.get_string("absent", "d"), "d");
  EXPECT_EQ(f.get_int("t.u8", 0), 255);
  EXPECT_EQ(f.find_value("absent"), nullptr);
  EXPECT_EQ(f.metadata().size(), 20u);
}

TEST_P(GgufVersions, TensorsHaveReversedShapesAndData) {
  GgufFile f = parse(full_builder(GetParam()).build());
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "h", "q8"}));
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  const TensorView* w = f.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->nbytes, 24u);
  EXPECT_EQ(w->file, "mem.gguf");
  Tensor tw = f.load("w", {2, 3});
  EXPECT_EQ(tw.data, (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(f.load("h", {4}).data, (std::vector<float>{1, 2, 0.5f, -3}));
  const TensorView* q8 = f.find("q8");
  EXPECT_EQ(q8->shape, (std::vector<int64_t>{1, 1, 1, 32}));
  EXPECT_EQ(q8->dtype, DType::Q8_0);
  Tensor tq = f.load("q8", {1, 1, 1, 32});
  for (int i = 0; i < 32; ++i) EXPECT_EQ(tq.data[i], 0.5f * static_cast<float>(i - 16));
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_FALSE(f.has("missing"));
  EXPECT_THROW(f.load("w", {3, 2}), Error);
}

INSTANTIATE_TEST_SUITE_P(V2AndV3, GgufVersions, ::testing::Values(2u, 3u));

TEST(Gguf, CustomAlignment) {
  for (uint32_t align : {1u, 8u, 64u, 256u}) {
    SCOPED_TRACE(align);
    Builder b;
    b.align = align;
    b.kv("general.alignment", u32(align));
    b.tensor({"a", {3}, 0, f32_data({1, 2, 3})});
    b.tensor({"b", {1, 2}, 0, f32_data({4, 5})});
    GgufFile f = parse(b.build());
    EXPECT_EQ(f.alignment(), align);
    EXPECT_EQ(f.data_offset() % align, 0u);
    EXPECT_EQ(f.load("a", {3}).data, (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(f.load("b", {2, 1}).data, (std::vector<float>{4, 5}));
  }
}

TEST(Gguf, FileAndMemoryParseAlike) {
  std::string image = full_builder(3).build();
  std::string path = test::temp_dir() + "/x.gguf";
  test::write_file(path, image);
  GgufFile a(path);
  GgufFile b = parse(image);
  EXPECT_EQ(a.describe(), path);
  EXPECT_EQ(a.names(), b.names());
  EXPECT_EQ(a.metadata().size(), b.metadata().size());
  EXPECT_EQ(a.data_offset(), b.data_offset());
  EXPECT_EQ(a.load("w", {2, 3}).data, b.load("w", {2, 3}).data);
  EXPECT_THROW(GgufFile(test::temp_dir() + "/absent.gguf"), Error);
}

TEST(Gguf, NoTensors) {
  Builder b;
  b.kv("k", u32(1));
  GgufFile f = parse(b.build());
  EXPECT_TRUE(f.names().empty());
  EXPECT_EQ(f.get_int("k"), 1);
}

// ---- Getter type errors ----

TEST(Gguf, GettersNameKeyAndTypes) {
  GgufFile f = parse(full_builder(3).build());
  expect_getter_error([&] { f.get_string("nope"); }, "mem.gguf: metadata key 'nope' not found");
  expect_getter_error([&] { f.get_int("t.str"); }, "metadata key 't.str' has type STRING, expected an integer");
  expect_getter_error([&] { f.get_int("t.f32"); }, "has type F32, expected an integer");
  expect_getter_error([&] { f.get_string("t.u32"); }, "has type U32, expected STRING");
  expect_getter_error([&] { f.get_double("t.str"); }, "expected a number");
  expect_getter_error([&] { f.get_string_array("t.ints"); }, "has type ARRAY of I32, expected ARRAY of STRING");
  expect_getter_error([&] { f.get_int_array("t.floats"); }, "ARRAY of F32, expected an ARRAY of integers");
  expect_getter_error([&] { f.get_double_array("t.strs"); }, "expected an ARRAY of numbers");
  expect_getter_error([&] { f.get_int_array("t.u8"); }, "has type U8, expected an ARRAY of integers");
  expect_getter_error([&] { f.get_int("t.str", 3); }, "expected an integer");  // default does not hide a wrong type
  expect_getter_error([&] { f.get_string("t.u8", "x"); }, "expected STRING");
  expect_getter_error([&] { f.find_value("t.str")->as_int(); }, "STRING is not an integer");
  expect_getter_error([&] { f.find_value("t.u8")->as_string(); }, "U8 is not a string");
}

// ---- Hostile and broken files ----

TEST(GgufBad, EveryTruncationThrows) {
  for (uint32_t version : {2u, 3u}) {
    const std::string image = full_builder(version).build();
    parse(image);  // the whole file is valid
    for (size_t len = 0; len < image.size(); ++len) {
      try {
        parse(image.substr(0, len));
        ADD_FAILURE() << "prefix of " << len << " of " << image.size() << " bytes parsed without error";
      } catch (const Error&) {
      }
    }
  }
}

TEST(GgufBad, Header) {
  std::string good = full_builder(3).build();
  expect_error("", "too short for the magic");
  expect_error("GGU", "too short for the magic");
  expect_error("GGML" + good.substr(4), "bad magic 'GGML'");
  expect_error(std::string("\x00\x01GF", 4) + good.substr(4), "bad magic '\\x00\\x01GF'");
  expect_error("GGUF", "truncated: the version");
  Builder v1 = full_builder(1);
  expect_error(v1.build(), "GGUF version 1 is not supported");
  Builder v4 = full_builder(4);
  expect_error(v4.build(), "unsupported GGUF version 4");
  Builder be = full_builder(0x03000000);
  expect_error(be.build(), "big-endian");
  // Counts far beyond what the file can hold are rejected before anything is allocated.
  std::string huge_t = good;
  std::memcpy(huge_t.data() + 8, le<uint64_t>(uint64_t{1} << 60).data(), 8);
  expect_error(huge_t, "declares 1152921504606846976 tensors");
  std::string huge_kv = good;
  std::memcpy(huge_kv.data() + 16, le<uint64_t>(~uint64_t{0}).data(), 8);
  expect_error(huge_kv, "declares 18446744073709551615 metadata entries");
}

TEST(GgufBad, Metadata) {
  // String length past EOF (key and value).
  {
    std::string s = "GGUF" + le<uint32_t>(3) + le<uint64_t>(0) + le<uint64_t>(1) + le<uint64_t>(1000) +
                    std::string(40, 'a');
    expect_error(s, "the key of metadata entry 0 has length 1000");
    expect_error(s, "past the end of the file");
  }
  {
    Builder b;
    b.kv("k", {GgufType::STRING, le<uint64_t>(uint64_t{1} << 62) + "xy"});
    expect_error(b.build(), "a string value of metadata key 'k' has length 4611686018427387904");
  }
  {
    Builder b;
    b.kv("k", u32(1)).kv("k", u32(2));
    expect_error(b.build(), "duplicate metadata key 'k'");
  }
  {
    Builder b;
    b.kv("k", {static_cast<GgufType>(13), le<uint32_t>(0)});
    expect_error(b.build(), "metadata key 'k' has unknown value type 13");
  }
  {
    Builder b;
    b.kv("arr", {GgufType::ARRAY, le<uint32_t>(99) + le<uint64_t>(1)});
    expect_error(b.build(), "metadata key 'arr' has unknown value type 99");
  }
  {
    Builder b;  // 2^40 u32 elements in a tiny file
    b.kv("arr", {GgufType::ARRAY, le<uint32_t>(4) + le<uint64_t>(uint64_t{1} << 40) + le<uint32_t>(1)});
    expect_error(b.build(), "declares an array of 1099511627776 U32 elements");
  }
  {
    Builder b;  // each nested array needs >= 12 bytes, so this count is impossible too
    b.kv("arr", {GgufType::ARRAY, le<uint32_t>(9) + le<uint64_t>(1000) + std::string(100, '\0')});
    expect_error(b.build(), "declares an array of 1000 ARRAY elements");
  }
  {
    Val v = u8(1);  // 20 levels of nesting
    for (int i = 0; i < 20; ++i) v = array(v.type, {v});
    Builder b;
    b.kv("deep", v);
    expect_error(b.build(), "nests arrays deeper than 8 levels");
  }
  {
    Builder b;
    b.kv("flag", {GgufType::BOOL, std::string(1, '\x02')});
    expect_error(b.build(), "bool byte 2");
  }
}

TEST(GgufBad, Alignment) {
  for (uint32_t a : {0u, 48u, 3u}) {
    Builder b;
    b.kv("general.alignment", u32(a));
    expect_error(b.build(), "general.alignment must be a non-zero power of two");
  }
  Builder b;
  b.kv("general.alignment", str("32"));
  expect_error(b.build(), "'general.alignment' has type STRING, expected an integer");
  Builder neg;
  neg.kv("general.alignment", i32(-32));
  expect_error(neg.build(), "power of two");
}

TEST(GgufBad, TensorInfos) {
  auto one = [](TensorSpec t) {
    Builder b;
    b.tensor(std::move(t));
    return b.build();
  };
  const std::string d6 = f32_data({0, 1, 2, 3, 4, 5});
  expect_error(one({"t", {6}, 99, d6}), "tensor 't': unknown ggml tensor type id 99");
  expect_error(one({"t", {256}, 11, std::string(110, '\0')}), "ggml tensor type Q3_K (id 11) is not supported");
  expect_error(one({"t", {32}, 9, std::string(36, '\0')}), "Q8_1 (id 9) is not supported");
  expect_error(one({"t", {1, 1, 1, 1, 6}, 0, d6}), "tensor 't' has 5 dimensions, at most 4");
  expect_error(one({"t", {48}, 2, std::string(27, '\0')}),
               "tensor 't' has type Q4_0 with inner dimension ne[0] = 48, which is not a multiple of the block size 32");
  expect_error(one({"t", {1ull << 40, 1ull << 40}, 0, d6}), "overflow int64");
  expect_error(one({"t", {1ull << 40, 0, 1ull << 40}, 0, d6}), "overflow int64");  // zero does not excuse it
  expect_error(one({"t", {~0ull}, 0, d6}), "does not fit in int64");
  expect_error(one({"t", {1ull << 40}, 0, d6}), "more than the file size");
  expect_error(one({"t", {6}, 0, d6, 4}), "tensor 't' has data offset 4, which is not a multiple of the alignment 32");
  expect_error(one({"t", {6}, 0, d6, 64}), "tensor 't' data [64, 88)");
  expect_error(one({"t", {6}, 0, d6, 64}), "extends past the end of the file");
  expect_error(one({"t", {7}, 0, d6}), "extends past the end of the file");  // one float short
  {
    Builder b;
    b.tensor({"t", {6}, 0, d6}).tensor({"t", {6}, 0, d6});
    expect_error(b.build(), "duplicate tensor name 't'");
  }
  {
    std::string s = "GGUF" + le<uint32_t>(3) + le<uint64_t>(1) + le<uint64_t>(0) + le<uint64_t>(1u << 20) +
                    std::string(40, 't');
    expect_error(s, "the tensor name of tensor info 0 has length 1048576");
  }
}

// ---- Files from gguf-py's writer (independent implementation) ----

TEST(GgufPython, SmallV3) {
  GgufFile f(test::source_dir() + "/fuzz/corpus/gguf/small_v3.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 60000);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.find_value("t.u64")->u, (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t{1} << 62));
  EXPECT_EQ(f.get_double("t.f32"), 0.5);
  EXPECT_EQ(f.get_double("t.f64"), -1.25);
  EXPECT_EQ(f.get_int("t.bool"), 1);
  EXPECT_EQ(f.get_string("t.str"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string_array("t.strs"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(f.get_int_array("t.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_double_array("t.floats"), (std::vector<double>{0.25, -4.0}));
  EXPECT_EQ(f.get_int_array("t.bools"), (std::vector<int64_t>{1, 0}));
  const GgufValue* nested = f.find_value("t.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].array.size(), 2u);
  EXPECT_EQ(nested->array[1].array[0].as_int(), 3);

  EXPECT_EQ(f.names(), (std::vector<std::string>{"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"}));
  EXPECT_EQ(f.load("f32", {2, 3}).data, (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(f.load("f16", {4}).data, (std::vector<float>{1, -2, 0.5f, 65504}));
  EXPECT_EQ(f.load("bf16", {2, 2}).data, (std::vector<float>{1, -1.5f, 3, 0.125f}));
  EXPECT_EQ(f.find("q8_0")->shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(f.find("q8_0")->dtype, DType::Q8_0);
  EXPECT_EQ(f.find("q4_0")->shape, (std::vector<int64_t>{1, 32}));
  EXPECT_EQ(f.find("q4_k")->shape, (std::vector<int64_t>{1, 256}));
  EXPECT_EQ(f.find("q4_k")->nbytes, 144u);
  Tensor q4 = f.load("q4_0", {1, 32});  // quantised linspace(-1, 1): d = 1/8 and the grid -8d..7d clips +1 to 7/8
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(q4.data[i], -1.0 + 2.0 * i / 31, 0.1251) << i;
}

TEST(GgufPython, AlignedAndEmpty) {
  GgufFile a(test::source_dir() + "/fuzz/corpus/gguf/align64_v3.gguf");
  EXPECT_EQ(a.alignment(), 64u);
  EXPECT_EQ(a.data_offset() % 64, 0u);
  EXPECT_EQ(a.load("a", {3}).data, (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(a.load("b", {2, 1}).data, (std::vector<float>{4, 5}));
  GgufFile q(test::source_dir() + "/fuzz/corpus/gguf/quants_v3.gguf");
  const std::vector<std::pair<std::string, DType>> quants = {
      {"q4_1", DType::Q4_1}, {"q5_0", DType::Q5_0}, {"q5_1", DType::Q5_1}, {"q5_k", DType::Q5_K}, {"q6_k", DType::Q6_K}};
  for (const auto& [name, dtype] : quants) {
    SCOPED_TRACE(name);
    const TensorView* v = q.find(name);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->dtype, dtype);
    const int64_t n = dtype_block_size(dtype);
    EXPECT_EQ(v->shape, (std::vector<int64_t>{1, n}));
    Tensor t = q.load(name, {1, n});
    for (float x : t.data) EXPECT_TRUE(std::isfinite(x));
  }
  GgufFile e(test::source_dir() + "/fuzz/corpus/gguf/empty_v3.gguf");
  EXPECT_TRUE(e.names().empty());
  EXPECT_EQ(e.get_int("llama.block_count"), 2);
}

// ---- The real SmolLM2 file ----

TEST(GgufSmolLM, MetadataAndTensors) {
  ZEBRA_REQUIRE_SMOLLM(path);
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 49152u);
  EXPECT_GT(f.get_string_array("tokenizer.ggml.merges").size(), 40000u);
  EXPECT_NEAR(f.get_double("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  std::map<std::string, int> counts;
  for (const std::string& n : f.names()) counts[dtype_name(f.find(n)->dtype)]++;
  std::string summary;
  for (const auto& [t, c] : counts) summary += cat(t, "=", c, " ");
  std::cout << "SmolLM2 GGUF: " << f.names().size() << " tensors by dtype: " << summary << "\n";
  EXPECT_EQ(f.names().size(), 272u);
  int layers = 0;
  while (f.has(cat("blk.", layers, ".attn_q.weight"))) ++layers;
  EXPECT_EQ(layers, 30);
  EXPECT_EQ(f.find("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{576, 576}));
  EXPECT_EQ(f.find("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{192, 576}));

  // Every tensor converts; report how long the whole model's dequantisation takes.
  const auto t0 = std::chrono::steady_clock::now();
  int64_t total = 0;
  for (const std::string& n : f.names()) total += view_to_tensor(*f.find(n)).numel();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "dequantised " << total << " weights in " << secs << " s\n";
  EXPECT_GT(total, 130'000'000);
}

TEST(GgufSmolLM, DequantMatchesGgufPy) {
  ZEBRA_REQUIRE_SMOLLM(path);
  GgufFile f(path);
  nlohmann::json m = nlohmann::json::parse(test::read_file(test::fixture("dequant/manifest.json")));
  ASSERT_TRUE(m.contains("smollm"));
  ASSERT_GE(m["smollm"].size(), 3u);
  std::set<std::string> types;
  for (const auto& e : m["smollm"]) {
    const std::string name = e["name"];
    SCOPED_TRACE(name);
    const TensorView* v = f.find(name);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(dtype_name(v->dtype), e["type"].get<std::string>());
    types.insert(dtype_name(v->dtype));
    Tensor t = f.load(name, e["shape"].get<std::vector<int64_t>>());
    ASSERT_EQ(t.numel(), e["numel"].get<int64_t>());
    std::string first = test::read_file(test::fixture("dequant/" + e["first256"].get<std::string>()));
    const size_t n_first = std::min<size_t>(256, t.data.size());
    ASSERT_EQ(first.size(), n_first * 4);
    for (size_t i = 0; i < n_first; ++i) {
      float want;
      std::memcpy(&want, first.data() + i * 4, 4);
      ASSERT_EQ(t.data[i], want) << "element " << i;  // bit-exact
    }
    double sum = 0, sum_sq = 0;
    for (float x : t.data) {
      sum += x;
      sum_sq += static_cast<double>(x) * x;
    }
    // Only the summation order differs from numpy's, so the sums agree to near double precision.
    const double want_sum = e["sum"], want_sq = e["sum_sq"];
    EXPECT_NEAR(sum, want_sum, 1e-9 * want_sq + 1e-9);
    EXPECT_NEAR(sum_sq, want_sq, 1e-9 * want_sq);
  }
  EXPECT_GE(types.size(), 3u);  // three different dtypes covered
}

}  // namespace
}  // namespace zebra
