// GGUF writer: files written by it read back through our reader (io/gguf) with every metadata type and
// value, every tensor dtype, the alignment of the data section and of each tensor, and the same bytes;
// the layout against a hand-built image; atomic replacement; and its errors. (Byte-for-byte agreement
// with llama.cpp's reader is exercised by test_quant's QuantizeLlamaCpp test, which feeds a file written
// here to llama-quantize.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "core/quantize.h"
#include "support.h"

namespace zebra {
namespace {

GgufFile parse(const std::string& s) { return GgufFile(std::vector<uint8_t>(s.begin(), s.end()), "mem.gguf"); }

// Every metadata type, extremes included, nested arrays.
GgufWriter metadata_writer() {
  GgufWriter w;
  w.set("general.architecture", gguf_string("llama"));
  w.set("t.u8", gguf_u8(255));
  w.set("t.i8", gguf_i8(-128));
  w.set("t.u16", gguf_u16(65535));
  w.set("t.i16", gguf_i16(-32768));
  w.set("t.u32", gguf_u32(0xFFFFFFFFu));
  w.set("t.i32", gguf_i32(std::numeric_limits<int32_t>::min()));
  w.set("t.u64", gguf_u64(std::numeric_limits<uint64_t>::max()));
  w.set("t.i64", gguf_i64(std::numeric_limits<int64_t>::min()));
  w.set("t.f32", gguf_f32(0.1f));
  w.set("t.f64", gguf_f64(-2.5e300));
  w.set("t.true", gguf_bool(true));
  w.set("t.false", gguf_bool(false));
  w.set("t.str", gguf_string("h\xc3\xa9llo"));
  w.set("t.empty_str", gguf_string(""));
  w.set("t.strs", gguf_string_array({"a", "", "ccc"}));
  w.set("t.ints", gguf_array(GgufType::I32, {gguf_i32(1), gguf_i32(-2), gguf_i32(3)}));
  w.set("t.floats", gguf_array(GgufType::F32, {gguf_f32(0.5f), gguf_f32(-4.0f)}));
  w.set("t.empty", gguf_array(GgufType::U8, {}));
  w.set("t.nested", gguf_array(GgufType::ARRAY, {gguf_array(GgufType::I16, {gguf_i16(1), gguf_i16(2)}),
                                                 gguf_string_array({"x"}),
                                                 gguf_array(GgufType::ARRAY, {gguf_array(GgufType::U8, {gguf_u8(7)})})}));
  return w;
}

TEST(GgufWriter, MetadataRoundTripsThroughTheReader) {
  GgufWriter w = metadata_writer();
  GgufFile f = parse(w.to_bytes());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 20u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 255);
  EXPECT_EQ(f.get_int("t.i8"), -128);
  EXPECT_EQ(f.get_int("t.u16"), 65535);
  EXPECT_EQ(f.get_int("t.i16"), -32768);
  EXPECT_EQ(f.get_int("t.u32"), 0xFFFFFFFFll);
  EXPECT_EQ(f.get_int("t.i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.find_value("t.u64")->u, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_int("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.find_value("t.f32")->type, GgufType::F32);
  EXPECT_EQ(static_cast<float>(f.get_double("t.f32")), 0.1f);
  EXPECT_EQ(f.get_double("t.f64"), -2.5e300);
  EXPECT_EQ(f.get_int("t.true"), 1);
  EXPECT_EQ(f.get_int("t.false"), 0);
  EXPECT_EQ(f.find_value("t.true")->type, GgufType::BOOL);
  EXPECT_EQ(f.get_string("t.str"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string("t.empty_str"), "");
  EXPECT_EQ(f.get_string_array("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_int_array("t.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.get_double_array("t.floats"), (std::vector<double>{0.5, -4.0}));
  EXPECT_TRUE(f.find_value("t.empty")->array.empty());
  EXPECT_EQ(f.find_value("t.empty")->array_type, GgufType::U8);
  const GgufValue& n = *f.find_value("t.nested");
  ASSERT_EQ(n.array.size(), 3u);
  EXPECT_EQ(n.array[0].array_type, GgufType::I16);
  EXPECT_EQ(n.array[0].array[1].i, 2);
  EXPECT_EQ(n.array[1].array[0].str, "x");
  EXPECT_EQ(n.array[2].array[0].array[0].u, 7u);

  // Reading back and copying gives the identical file (the reader's map order, so compare after a copy).
  GgufWriter again;
  again.copy_metadata(f);
  GgufWriter sorted;
  sorted.copy_metadata(parse(again.to_bytes()));
  EXPECT_EQ(again.to_bytes(), sorted.to_bytes());
}

// One tensor of every dtype GGUF holds, random bytes of the right size (finite values do not matter to
// the layout).
struct TensorCase {
  std::string name;
  DType type;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

std::vector<TensorCase> tensor_cases() {
  std::mt19937 rng(1);
  std::vector<TensorCase> out;
  auto add = [&](const std::string& name, DType t, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint8_t> bytes(dtype_row_bytes(t, n));
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    out.push_back({name, t, shape, bytes});
  };
  add("f32", DType::F32, {3, 5});
  add("f16", DType::F16, {7});
  add("bf16", DType::BF16, {2, 3});
  add("f64", DType::F64, {1, 1, 1, 3});
  add("i8", DType::I8, {9});
  add("i16", DType::I16, {5});
  add("i32", DType::I32, {2, 2});
  add("i64", DType::I64, {3});
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1})
    add(cat("blk.0.", dtype_name(t), ".weight"), t, {3, 64});
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) add(cat("blk.1.", dtype_name(t), ".weight"), t, {2, 512});
  add("empty", DType::F32, {0, 4});
  return out;
}

void expect_tensors(const GgufFile& f, const std::vector<TensorCase>& cases, size_t alignment) {
  ASSERT_EQ(f.names().size(), cases.size());
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorCase& c = cases[i];
    SCOPED_TRACE(c.name);
    EXPECT_EQ(f.names()[i], c.name);  // file order
    const TensorView* v = f.find(c.name);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->dtype, c.type);
    EXPECT_EQ(v->shape, c.shape);
    ASSERT_EQ(v->nbytes, c.data.size());
    EXPECT_EQ(std::memcmp(v->data, c.data.data(), c.data.size()), 0);
    EXPECT_EQ(static_cast<size_t>(v->data - f.find(cases[0].name)->data) % alignment, 0u);
  }
}

TEST(GgufWriter, TensorsOfEveryDtypeRoundTrip) {
  const std::vector<TensorCase> cases = tensor_cases();
  for (uint32_t alignment : {32u, 1u, 64u, 4096u}) {
    SCOPED_TRACE(cat("alignment ", alignment));
    GgufWriter w = metadata_writer();
    if (alignment != 32) w.set("general.alignment", gguf_u32(alignment));
    for (const TensorCase& c : cases) w.add_tensor(c.name, c.type, c.shape, c.data.data(), c.data.size());
    const std::string bytes = w.to_bytes();
    EXPECT_EQ(bytes.size() % alignment, 0u);  // the last tensor is padded too, as ggml and gguf-py do
    const GgufFile f = parse(bytes);
    expect_tensors(f, cases, alignment);
    EXPECT_EQ(f.get_string("t.str"), "h\xc3\xa9llo");
  }
}

TEST(GgufWriter, LayoutMatchesAHandBuiltImage) {
  // Header, one key, one tensor info, padding to 32, the data, padding to 32.
  GgufWriter w;
  w.set("k", gguf_u32(7));
  const float data[3] = {1.0f, -2.0f, 0.5f};
  w.add_tensor("w", DType::F32, {3}, data, sizeof data);
  std::string want = "GGUF";
  auto le = [&](auto v) { want.append(reinterpret_cast<const char*>(&v), sizeof v); };
  le(uint32_t{3});
  le(uint64_t{1});
  le(uint64_t{1});
  le(uint64_t{1});
  want += "k";
  le(uint32_t{4});  // U32
  le(uint32_t{7});
  le(uint64_t{1});
  want += "w";
  le(uint32_t{1});  // n_dims
  le(uint64_t{3});  // ne[0]
  le(uint32_t{0});  // F32
  le(uint64_t{0});  // offset
  ASSERT_EQ(want.size(), 74u);
  want.resize(96, '\0');  // the data section starts at a multiple of 32
  want.append(reinterpret_cast<const char*>(data), sizeof data);
  want.resize(128, '\0');  // and the tensor is padded to one
  EXPECT_EQ(w.to_bytes(), want);
}

TEST(GgufWriter, WritesFilesAtomically) {
  const std::string dir = test::temp_dir(), path = dir + "/m.gguf";
  test::write_file(path, "old content");
  const std::vector<TensorCase> cases = tensor_cases();
  GgufWriter w = metadata_writer();
  for (const TensorCase& c : cases) w.add_tensor(c.name, c.type, c.shape, std::make_shared<std::vector<uint8_t>>(c.data));
  w.write(path);
  expect_tensors(GgufFile(path), cases, 32);
  // A failed write leaves the old file and no temporary behind.
  EXPECT_THROW(w.write(dir + "/missing/m.gguf"), Error);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
  std::filesystem::remove_all(dir);
}

TEST(GgufWriter, QuantisedModelFileRoundTrip) {
  // What `zebra quantize` will do: quantise fp32 weights, write them, read the blocks back.
  std::mt19937 rng(2);
  std::normal_distribution<float> g;
  std::vector<float> w(64 * 512);
  for (float& v : w) v = g(rng);
  GgufWriter out;
  out.set("general.architecture", gguf_string("llama"));
  std::vector<std::shared_ptr<std::vector<uint8_t>>> keep;
  for (DType t : {DType::Q4_K, DType::Q8_0, DType::Q6_K}) {
    auto q = std::make_shared<std::vector<uint8_t>>(64 * dtype_row_bytes(t, 512));
    quantize_rows(t, w.data(), q->data(), 64, 512);
    out.add_tensor(cat("w.", dtype_name(t)), t, {64, 512}, q);
    keep.push_back(q);
  }
  const GgufFile f = parse(out.to_bytes());
  for (size_t i = 0; i < keep.size(); ++i) {
    const TensorView* v = f.find(f.names()[i]);
    ASSERT_EQ(v->nbytes, keep[i]->size());
    EXPECT_EQ(std::memcmp(v->data, keep[i]->data(), v->nbytes), 0);
  }
}

TEST(GgufWriter, RejectsWhatGgufCannotHold) {
  GgufWriter w;
  float x[64] = {};
  auto msg = [](const std::function<void()>& f) { return test::error_message(f); };
  EXPECT_NE(msg([&] { w.add_tensor("q", DType::Q4_0, {2, 48}, x, 54); }).find("not a multiple of the block size 32"),
            std::string::npos);
  EXPECT_NE(msg([&] { w.add_tensor("f", DType::F32, {4}, x, 12); }).find("needs 16 bytes, got 12"), std::string::npos);
  EXPECT_NE(msg([&] { w.add_tensor(std::string(64, 'n'), DType::F32, {1}, x, 4); }).find("1 to 63 bytes"),
            std::string::npos);
  EXPECT_NE(msg([&] { w.add_tensor("d", DType::F32, {1, 1, 1, 1, 1}, x, 4); }).find("GGUF allows 1 to 4"),
            std::string::npos);
  EXPECT_NE(msg([&] { w.add_tensor("u", DType::U8, {4}, x, 4); }).find("has no GGUF tensor type"), std::string::npos);
  w.add_tensor("a", DType::F32, {1}, x, 4);
  EXPECT_NE(msg([&] { w.add_tensor("a", DType::F32, {1}, x, 4); }).find("added twice"), std::string::npos);
  EXPECT_NE(msg([&] { w.set("general.alignment", gguf_u32(48)); }).find("power of two"), std::string::npos);
  EXPECT_NE(msg([&] { w.set("general.alignment", gguf_i32(64)); }).find("U32 power of two"), std::string::npos);
  GgufValue bad = gguf_u8(1);
  bad.u = 300;
  EXPECT_NE(msg([&] { w.set("k", bad); }).find("out of range [0, 255]"), std::string::npos);
  EXPECT_NE(msg([&] { w.set("k", gguf_array(GgufType::I32, {gguf_i32(1), gguf_u8(2)})); })
                .find("array of I32 holds a U8 at index 1"),
            std::string::npos);
  EXPECT_NE(msg([&] { w.set("", gguf_u8(1)); }).find("must not be empty"), std::string::npos);
  // Replacing a key keeps one entry; erase removes it.
  w.set("k", gguf_u8(1));
  w.set("k", gguf_string("two"));
  EXPECT_EQ(parse(w.to_bytes()).get_string("k"), "two");
  w.erase("k");
  EXPECT_FALSE(w.has("k"));
  EXPECT_EQ(parse(w.to_bytes()).metadata().size(), 0u);
}

}  // namespace
}  // namespace zebra
