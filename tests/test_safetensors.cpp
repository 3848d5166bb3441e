// safetensors reader/writer, sharded directories and atomic writes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <map>
#include <random>
#include <set>

#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "model/hf_config.h"
#include "support.h"

using namespace zebra;
namespace fs = std::filesystem;

namespace {

// Builds a safetensors byte string from a JSON header and a data section (header not padded).
std::string make_file(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  uint64_t n = h.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + h + data;
}

std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// The message of the zebra::Error thrown by parsing `bytes`, or "" if it parsed.
std::string parse_error(const std::string& bytes) {
  try {
    SafetensorsFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

nlohmann::json two_tensor_header() {
  return {{"__metadata__", {{"format", "pt"}}},
          {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
          {"b", {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {24, 32}}}}};
}

Tensor make_tensor(std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (float& x : t.data) x = nd(rng);
  return t;
}

}  // namespace

TEST(Safetensors, ParsesHeaderMetadataAndData) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3f80, 0x4000, 0xc040, 0x0000};  // 1, 2, -3, 0 in bf16
  std::string data = floats_bytes(a) + std::string(reinterpret_cast<const char*>(b.data()), 8);
  std::string bytes = make_file(two_tensor_header(), data);
  auto f = SafetensorsFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b"}));
  const TensorView* va = f->find("a");
  ASSERT_NE(va, nullptr);
  EXPECT_EQ(va->dtype, DType::F32);
  EXPECT_EQ(va->shape, (std::vector<int64_t>{2, 3}));
  Tensor ta = f->load("a", {2, 3});
  EXPECT_EQ(ta.data, a);
  Tensor tb = f->load("b", {4});
  EXPECT_EQ(tb.data, (std::vector<float>{1, 2, -3, 0}));
  EXPECT_EQ(f->find("c"), nullptr);
  EXPECT_THROW(f->load("a", {3, 2}), Error);
}

TEST(Safetensors, AllDtypesAndEmptyTensors) {
  nlohmann::json h = nlohmann::json::object();
  uint64_t off = 0;
  const std::pair<const char*, int> types[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I8", 1},
                                               {"I16", 2}, {"I32", 4},  {"I64", 8},  {"U8", 1},  {"BOOL", 1}};
  for (auto [name, size] : types) {
    h[std::string("t_") + name] = {{"dtype", name}, {"shape", {3}}, {"data_offsets", {off, off + 3 * size}}};
    off += 3 * size;
  }
  h["empty"] = {{"dtype", "F32"}, {"shape", {0, 5}}, {"data_offsets", {off, off}}};
  h["scalar"] = {{"dtype", "F32"}, {"shape", nlohmann::json::array()}, {"data_offsets", {off, off + 4}}};
  std::string bytes = make_file(h, std::string(off + 4, '\0'));
  EXPECT_EQ(parse_error(bytes), "");
  auto f = SafetensorsFile::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
  EXPECT_EQ(f->find("t_I64")->dtype, DType::I64);
  EXPECT_EQ(f->find("t_BOOL")->nbytes, 3u);
  EXPECT_EQ(f->find("empty")->numel(), 0);
  EXPECT_EQ(f->find("scalar")->numel(), 1);
}

TEST(Safetensors, RejectsMalformedHeaders) {
  std::string data(32, '\0');
  auto with = [&](const char* tensor, const nlohmann::json& entry) {
    nlohmann::json h = two_tensor_header();
    h[tensor] = entry;
    return make_file(h, data);
  };
  auto expect_error = [](const std::string& bytes, const std::string& needle) {
    std::string e = parse_error(bytes);
    EXPECT_NE(e.find(needle), std::string::npos) << "error '" << e << "' lacks '" << needle << "'";
    EXPECT_NE(e.find("mem.safetensors"), std::string::npos) << e;
  };
  expect_error("", "too short");
  expect_error(std::string("\x10\0\0\0\0\0\0\0{}", 10), "exceeds");
  expect_error(std::string("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10), "exceeds");
  expect_error(make_file(nlohmann::json::array(), ""), "does not start with '{'");
  {
    std::string bad = "{\"a\": ";
    uint64_t n = bad.size();
    expect_error(std::string(reinterpret_cast<const char*>(&n), 8) + bad, "not valid JSON");
  }
  expect_error(with("a", 5), "'a'");
  expect_error(with("a", {{"dtype", "Q4"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}), "unsupported dtype 'Q4'");
  expect_error(with("a", {{"dtype", 4}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}), "dtype");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {-2, 3}}, {"data_offsets", {0, 24}}}), "shape");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2.0, 3}}, {"data_offsets", {0, 24}}}), "shape");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", "2x3"}, {"data_offsets", {0, 24}}}), "shape");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 3}}}), "data_offsets");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0}}}), "data_offsets");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {24, 0}}}), "end 0 < begin 24");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 20}}}), "needs 24");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 4}}, {"data_offsets", {8, 40}}}), "run past");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {4, 28}}}), "overlap");
  expect_error(with("a", {{"dtype", "F32"}, {"shape", {uint64_t{1} << 40, uint64_t{1} << 40}},
                          {"data_offsets", {0, 24}}}),
               "too many elements");
  expect_error(with("__metadata__", {{"k", 1}}), "__metadata__");
  expect_error(with("__metadata__", "x"), "__metadata__");
}

TEST(Safetensors, EveryTruncationIsAnError) {
  std::string bytes = make_file(two_tensor_header(), std::string(32, '\0'));
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_NE(parse_error(bytes.substr(0, n)), "") << "truncated to " << n << " bytes parsed";
  EXPECT_EQ(parse_error(bytes), "");
}

TEST(Safetensors, WriterRoundTripsAllOutputDtypes) {
  std::string dir = test::temp_dir();
  Tensor a = make_tensor({3, 5}, 1), b = make_tensor({7}, 2), empty({0, 4});
  a.data[0] = 1.0f + 1.0f / 256.0f;  // a bf16 tie: rounds to even (1.0)
  a.data[1] = 1.0f + 3.0f / 256.0f;  // tie upwards to 1 + 4/256
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    std::string path = dir + "/out_" + dtype_name(dt) + ".safetensors";
    write_safetensors(path, {{"w.a", &a}, {"w.b", &b}, {"w.empty", &empty}}, dt, {{"format", "pt"}, {"k", "v"}});
    SafetensorsFile f(path);
    EXPECT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata().at("k"), "v");
    // 8 + header length is a multiple of 8, as huggingface/safetensors writes it.
    std::string raw = test::read_file(path);
    uint64_t hlen;
    std::memcpy(&hlen, raw.data(), 8);
    EXPECT_EQ(hlen % 8, 0u);
    EXPECT_EQ(raw.size(), 8 + hlen + (a.numel() + b.numel()) * (dt == DType::F32 ? 4 : 2));
    Tensor ra = f.load("w.a", {3, 5}), rb = f.load("w.b", {7});
    EXPECT_EQ(f.find("w.a")->dtype, dt);
    EXPECT_EQ(f.load("w.empty", {0, 4}).numel(), 0);
    for (int64_t i = 0; i < a.numel(); ++i) {
      float expect = dt == DType::F32 ? a.data[i]
                     : dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(a.data[i]))
                                         : f16_to_f32(f32_to_f16(a.data[i]));
      EXPECT_EQ(ra.data[i], expect) << i;
      EXPECT_NEAR(ra.data[i], a.data[i], std::fabs(a.data[i]) * (dt == DType::BF16 ? 4e-3 : 1e-3));
    }
    for (int64_t i = 0; i < b.numel(); ++i) EXPECT_NEAR(rb.data[i], b.data[i], std::fabs(b.data[i]) * 4e-3);
    if (dt == DType::BF16) {
      EXPECT_EQ(ra.data[0], 1.0f);
      EXPECT_EQ(ra.data[1], 1.0f + 4.0f / 256.0f);
    }
  }
  // No metadata -> no __metadata__ key.
  write_safetensors(dir + "/plain.safetensors", {{"x", &b}}, DType::F32);
  EXPECT_EQ(test::read_file(dir + "/plain.safetensors").find("__metadata__"), std::string::npos);
}

TEST(Safetensors, WriterRejectsBadInput) {
  std::string dir = test::temp_dir();
  Tensor a = make_tensor({2, 2}, 3);
  Tensor bad({2, 2});
  bad.data.resize(3);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"a", &a}, {"a", &a}}, DType::F32), Error);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"", &a}}, DType::F32), Error);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"__metadata__", &a}}, DType::F32), Error);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"a", &bad}}, DType::F32), Error);
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", {{"a", &a}}, DType::I32), Error);
  EXPECT_THROW(write_safetensors(dir + "/no/such/dir/x.safetensors", {{"a", &a}}, DType::F32), Error);
  EXPECT_FALSE(fs::exists(dir + "/x.safetensors"));
}

TEST(AtomicWrite, ReplacesOrLeavesUntouched) {
  std::string dir = test::temp_dir();
  std::string path = dir + "/out.txt";
  write_file_atomic(path, std::string("first"));
  EXPECT_EQ(test::read_file(path), "first");
  write_file_atomic(path, std::string("second"));
  EXPECT_EQ(test::read_file(path), "second");
  // A writer that fails halfway leaves the old content and no temporary file behind.
  EXPECT_THROW(write_file_atomic(path,
                                 [](std::ostream& out) {
                                   out << "partial";
                                   throw Error("disk on fire");
                                 }),
               Error);
  EXPECT_EQ(test::read_file(path), "second");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

// --- directories ---------------------------------------------------------------------------------

TEST(SafetensorsDir, OpensShardedBf16TinyLlama) {
  std::string dir = test::fixture("tiny_llama/model");
  SafetensorsDir st(dir);
  EXPECT_EQ(st.files().size(), 3u);  // >= 2 shards; logits.safetensors is not part of the model
  EXPECT_FALSE(st.has("seq0.logits"));
  LlamaConfig c = load_hf_llama_config(dir + "/config.json");
  const int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  std::map<std::string, std::vector<int64_t>> expect = {
      {"model.embed_tokens.weight", {V, D}}, {"model.norm.weight", {D}}, {"lm_head.weight", {V, D}}};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    expect[p + "input_layernorm.weight"] = {D};
    expect[p + "post_attention_layernorm.weight"] = {D};
    expect[p + "self_attn.q_proj.weight"] = {c.q_dim(), D};
    expect[p + "self_attn.k_proj.weight"] = {c.kv_dim(), D};
    expect[p + "self_attn.v_proj.weight"] = {c.kv_dim(), D};
    expect[p + "self_attn.o_proj.weight"] = {D, c.q_dim()};
    expect[p + "mlp.gate_proj.weight"] = {F, D};
    expect[p + "mlp.up_proj.weight"] = {F, D};
    expect[p + "mlp.down_proj.weight"] = {D, F};
  }
  std::vector<std::string> names;
  for (const auto& [n, s] : expect) names.push_back(n);
  EXPECT_EQ(st.names(), names);
  std::set<std::string> files_used;
  for (const auto& [n, shape] : expect) {
    const TensorView* v = st.find(n);
    ASSERT_NE(v, nullptr) << n;
    EXPECT_EQ(v->dtype, DType::BF16) << n;
    EXPECT_EQ(v->shape, shape) << n;
    files_used.insert(st.file_of(n));
  }
  EXPECT_EQ(files_used.size(), 3u);
  // The fixture's RMSNorm weights were drawn in [0.5, 1.5] (scripts/reference/make_tiny_llama.py).
  Tensor norm = st.load("model.norm.weight", {D});
  for (float x : norm.data) {
    EXPECT_GE(x, 0.5f);
    EXPECT_LE(x, 1.5f);
  }
}

TEST(SafetensorsDir, SingleFileAndGlobFallback) {
  for (const char* sub : {"linear", "dynamic", "yarn"}) {
    SafetensorsDir st(test::fixture(std::string("tiny_llama/") + sub));
    EXPECT_EQ(st.files().size(), 1u);
    EXPECT_EQ(st.find("model.embed_tokens.weight")->dtype, DType::F32);
    EXPECT_EQ(st.names().size(), 3u + 2 * 9);  // embed, norm, lm_head + 9 per layer
  }
  // Without index and model.safetensors: every *.safetensors, sorted; duplicates are an error.
  std::string dir = test::temp_dir();
  Tensor a = make_tensor({2}, 1), b = make_tensor({3}, 2);
  write_safetensors(dir + "/b.safetensors", {{"y", &b}}, DType::F32);
  write_safetensors(dir + "/a.safetensors", {{"x", &a}}, DType::BF16);
  test::write_file(dir + "/notes.txt", "not a shard");
  SafetensorsDir st(dir);
  EXPECT_EQ(st.files(), (std::vector<std::string>{dir + "/a.safetensors", dir + "/b.safetensors"}));
  EXPECT_EQ(st.names(), (std::vector<std::string>{"x", "y"}));
  write_safetensors(dir + "/c.safetensors", {{"x", &a}}, DType::F32);
  try {
    SafetensorsDir dup(dir);
    ADD_FAILURE() << "duplicate tensor accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'x' appears in both"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SafetensorsDir(test::temp_dir()), Error);  // empty directory
  EXPECT_THROW(SafetensorsDir(dir + "/a.safetensors"), Error);  // not a directory
}

TEST(SafetensorsDir, IndexMustMatchShards) {
  std::string dir = test::temp_dir();
  Tensor a = make_tensor({2}, 1), b = make_tensor({3}, 2);
  write_safetensors(dir + "/s1.safetensors", {{"x", &a}}, DType::F32);
  write_safetensors(dir + "/s2.safetensors", {{"y", &b}}, DType::F32);
  auto expect_error = [&](const nlohmann::json& index, const std::string& needle) {
    test::write_file(dir + "/model.safetensors.index.json", index.dump());
    try {
      SafetensorsDir st(dir);
      ADD_FAILURE() << "accepted index " << index.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  test::write_file(dir + "/model.safetensors.index.json",
                   nlohmann::json({{"metadata", {{"total_size", 20}}},
                                   {"weight_map", {{"x", "s1.safetensors"}, {"y", "s2.safetensors"}}}})
                       .dump());
  {
    SafetensorsDir st(dir);
    EXPECT_EQ(st.files().size(), 2u);
    EXPECT_EQ(st.file_of("y"), dir + "/s2.safetensors");
  }
  expect_error({{"weight_map", {{"x", "s2.safetensors"}, {"y", "s2.safetensors"}}}}, "index puts tensor 'x'");
  expect_error({{"weight_map", {{"x", "s1.safetensors"}, {"y", "s3.safetensors"}}}}, "s3.safetensors");
  expect_error({{"weight_map", {{"x", "s1.safetensors"}, {"z", "s2.safetensors"}}}}, "does not contain it");
  expect_error({{"weight_map", {{"x", "../s1.safetensors"}}}}, "not a plain file name");
  expect_error({{"weight_map", {{"x", 3}}}}, "weight_map entry 'x'");
  expect_error({{"metadata", {}}}, "weight_map");
  test::write_file(dir + "/model.safetensors.index.json", "{not json");
  EXPECT_THROW(SafetensorsDir{dir}, Error);
}
