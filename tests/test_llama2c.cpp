// llama2.c checkpoints: layout, HF naming, the Meta -> HF RoPE permutation, and malformed files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "io/llama2c.h"
#include "io/mapped_file.h"
#include "model/loader.h"
#include "support.h"

using namespace zebra;

namespace {

struct Dims {
  int32_t dim, hidden, layers, heads, kv_heads, vocab, seq;
};

// Floats in the legacy layout, in file order, for the given dims.
int64_t legacy_floats(const Dims& d, bool with_wcls) {
  int64_t D = d.dim, H = d.hidden, L = d.layers, V = d.vocab, hs = D / d.heads, kv = hs * d.kv_heads;
  int64_t n = V * D + L * D + L * D * D + 2 * L * kv * D + L * D * D + L * D + 3 * L * H * D + D + 2 * d.seq * hs / 2;
  return n + (with_wcls ? V * D : 0);
}

// A legacy file whose k-th float is k (exact below 2^24), so every tensor's position can be checked.
std::string make_legacy(const Dims& d, bool separate_classifier) {
  int32_t header[7] = {d.dim, d.hidden, d.layers, d.heads, d.kv_heads,
                       separate_classifier ? -d.vocab : d.vocab, d.seq};
  std::string out(reinterpret_cast<const char*>(header), sizeof header);
  int64_t n = legacy_floats(d, separate_classifier);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  out.append(reinterpret_cast<const char*>(v.data()), n * 4);
  return out;
}

std::string make_v1(const Dims& d, bool shared) {
  std::string out(256, '\0');
  uint32_t magic = 0x616b3432;
  int32_t version = 1;
  int32_t header[7] = {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.vocab, d.seq};
  std::memcpy(&out[0], &magic, 4);
  std::memcpy(&out[4], &version, 4);
  std::memcpy(&out[8], header, sizeof header);
  out[36] = shared ? 1 : 0;
  int64_t n = legacy_floats(d, !shared) - 2 * d.seq * (d.dim / d.heads) / 2;  // no freq_cis in v1
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i);
  out.append(reinterpret_cast<const char*>(v.data()), n * 4);
  return out;
}

std::string write_temp(const std::string& bytes, const std::string& name = "model.bin") {
  std::string path = test::temp_dir() + "/" + name;
  test::write_file(path, bytes);
  return path;
}

std::string load_error(const std::string& bytes) {
  std::string path = write_temp(bytes);
  try {
    load_llama2c(path);
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    return m;
  }
  return "";
}

const float* f32(const TensorSource& s, const std::string& name) {
  const TensorView* v = s.find(name);
  EXPECT_NE(v, nullptr) << name;
  return v ? reinterpret_cast<const float*>(v->data) : nullptr;
}

constexpr Dims kTiny = {8, 12, 2, 2, 1, 6, 4};  // head_size 4, kv_dim 4

// Meta (llama2.c / Meta Llama) RoPE: rotates adjacent pairs (2i, 2i+1) of each head by pos * theta^(-2i/hd).
void rope_meta(std::vector<double>& q, int64_t n_heads, int64_t hd, int64_t pos, double theta) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      double a = pos * std::pow(theta, -2.0 * i / hd);
      double& x = q[h * hd + 2 * i];
      double& y = q[h * hd + 2 * i + 1];
      double nx = x * std::cos(a) - y * std::sin(a), ny = x * std::sin(a) + y * std::cos(a);
      x = nx, y = ny;
    }
}

// HF rotate-half RoPE: q * cos + rotate_half(q) * sin, rotating (i, i + hd/2) by the same angles.
void rope_hf(std::vector<double>& q, int64_t n_heads, int64_t hd, int64_t pos, double theta) {
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i) {
      double a = pos * std::pow(theta, -2.0 * i / hd);
      double& x = q[h * hd + i];
      double& y = q[h * hd + i + hd / 2];
      double nx = x * std::cos(a) - y * std::sin(a), ny = y * std::cos(a) + x * std::sin(a);
      x = nx, y = ny;
    }
}

std::vector<double> matvec(const float* w, int64_t rows, int64_t cols, const std::vector<double>& x) {
  std::vector<double> y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += w[r * cols + c] * x[c];
  return y;
}

}  // namespace

TEST(Llama2c, Stories260KConfigAndTensors) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/stories260K.bin");
  Llama2cModel m = load_llama2c(path);
  const LlamaConfig c = llama2c_llama_config(m.header, path);
  EXPECT_EQ(m.header.version, 0);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 172);
  EXPECT_EQ(c.num_layers, 5);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_position_embeddings, 512);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(c.source_format, "llama2c");
  const TensorSource& s = *m.tensors;
  EXPECT_FALSE(s.has("lm_head.weight"));
  EXPECT_EQ(s.names().size(), 2u + 9 * 5);
  EXPECT_EQ(s.find("model.embed_tokens.weight")->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(s.find("model.layers.4.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(s.find("model.layers.4.mlp.down_proj.weight")->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(s.find("model.layers.4.mlp.up_proj.weight")->shape, (std::vector<int64_t>{172, 64}));
  // Embedding row 0 is the first 64 floats after the 28-byte header.
  MappedFile raw(path);
  const float* file = reinterpret_cast<const float*>(raw.data() + 28);
  Tensor emb = s.load("model.embed_tokens.weight", {512, 64});
  for (int i = 0; i < 64; ++i) EXPECT_EQ(emb.data[i], file[i]);
}

// The permuted q/k projections followed by HF's rotate-half RoPE must give the same rotated vectors as
// the file's Meta-layout projections followed by interleaved RoPE, up to the same fixed channel order.
TEST(Llama2c, Stories260KPermutationMatchesRopeConventions) {
  ZEBRA_REQUIRE_ASSET(path, "models/stories260K/stories260K.bin");
  Llama2cModel m = load_llama2c(path);
  const LlamaConfig c = llama2c_llama_config(m.header, path);
  const int64_t D = c.hidden_size, L = c.num_layers, V = c.vocab_size, hd = c.head_dim, kv = c.kv_dim();
  MappedFile raw(path);
  const float* file = reinterpret_cast<const float*>(raw.data() + 28);
  const float* wq_meta = file + V * D + L * D;  // after token_embedding and rms_att
  const float* wk_meta = wq_meta + L * D * D;

  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  for (int64_t layer : {0L, L - 1}) {
    for (int64_t pos : {0L, 1L, 5L, 137L, 511L}) {
      std::vector<double> x(D);
      for (double& v : x) v = nd(rng);
      struct Case {
        const char* proj;
        const float* meta;
        int64_t rows, heads;
      } cases[] = {{"q", wq_meta + layer * D * D, D, c.num_heads}, {"k", wk_meta + layer * kv * D, kv, c.num_kv_heads}};
      for (const Case& cs : cases) {
        std::string name = "model.layers." + std::to_string(layer) + ".self_attn." + cs.proj + "_proj.weight";
        std::vector<double> a = matvec(cs.meta, cs.rows, D, x);
        std::vector<double> b = matvec(f32(*m.tensors, name), cs.rows, D, x);
        rope_meta(a, cs.heads, hd, pos, c.rope_theta);
        rope_hf(b, cs.heads, hd, pos, c.rope_theta);
        // Meta channel 2i+j of head h is HF channel j*hd/2 + i.
        for (int64_t h = 0; h < cs.heads; ++h)
          for (int64_t i = 0; i < hd / 2; ++i)
            for (int64_t j = 0; j < 2; ++j)
              EXPECT_NEAR(a[h * hd + 2 * i + j], b[h * hd + j * hd / 2 + i], 1e-9)
                  << name << " pos " << pos << " head " << h << " pair " << i;
        // And q.k dot products (what attention sees) agree without any reordering.
        double na = 0, nb = 0;
        for (int64_t r = 0; r < cs.rows; ++r) na += a[r] * a[r], nb += b[r] * b[r];
        EXPECT_NEAR(na, nb, 1e-9 * (1 + na));
      }
    }
  }
  // v is not permuted: the file's bytes as they are.
  EXPECT_EQ(std::memcmp(f32(*m.tensors, "model.layers.0.self_attn.v_proj.weight"), wk_meta + L * kv * D, kv * D * 4), 0);
}

TEST(Llama2c, LegacyLayoutSharedAndSeparateClassifier) {
  const Dims d = kTiny;
  const int64_t D = d.dim, H = d.hidden, L = d.layers, V = d.vocab, hs = D / d.heads, kv = hs * d.kv_heads;
  for (bool separate : {false, true}) {
    const std::string path = write_temp(make_legacy(d, separate));
    Llama2cModel m = load_llama2c(path);
    const LlamaConfig c = llama2c_llama_config(m.header, path);
    const TensorSource& s = *m.tensors;
    EXPECT_EQ(c.tie_word_embeddings, !separate);
    EXPECT_EQ(c.vocab_size, V);
    EXPECT_EQ(c.max_position_embeddings, d.seq);
    // First float of each tensor = its offset (in floats) in the data.
    int64_t at = 0;
    auto expect_at = [&](const std::string& name, int64_t size) {
      EXPECT_EQ(f32(s, name)[0], static_cast<float>(at)) << name;
      at += size;
    };
    expect_at("model.embed_tokens.weight", V * D);
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".input_layernorm.weight", D);
    at += L * D * D + L * kv * D;  // q, k: permuted, checked below
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".self_attn.v_proj.weight", kv * D);
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".self_attn.o_proj.weight", D * D);
    for (int64_t l = 0; l < L; ++l)
      expect_at("model.layers." + std::to_string(l) + ".post_attention_layernorm.weight", D);
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".mlp.gate_proj.weight", H * D);
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".mlp.down_proj.weight", D * H);
    for (int64_t l = 0; l < L; ++l) expect_at("model.layers." + std::to_string(l) + ".mlp.up_proj.weight", H * D);
    expect_at("model.norm.weight", D);
    at += 2 * d.seq * hs / 2;
    if (separate) expect_at("lm_head.weight", V * D);
    EXPECT_EQ(s.has("lm_head.weight"), separate);
    // q of layer 1, head 1: HF row j*hs/2 + i holds Meta row 2i + j.
    const int64_t q1 = V * D + L * D + D * D;
    Tensor q = s.load("model.layers.1.self_attn.q_proj.weight", {D, D});
    for (int64_t h = 0; h < d.heads; ++h)
      for (int64_t i = 0; i < hs / 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          for (int64_t col = 0; col < D; ++col)
            EXPECT_EQ(q.data[(h * hs + j * hs / 2 + i) * D + col], q1 + (h * hs + 2 * i + j) * D + col);
    const int64_t k0 = V * D + L * D + L * D * D;
    Tensor k = s.load("model.layers.0.self_attn.k_proj.weight", {kv, D});
    EXPECT_EQ(k.data[(hs / 2) * D], k0 + 1 * D);  // HF row hs/2 (j=1, i=0) = Meta row 1
    EXPECT_EQ(k.data[1 * D], k0 + 2 * D);         // HF row 1 (j=0, i=1) = Meta row 2
  }
}

TEST(Llama2c, Version1Layout) {
  const Dims d = kTiny;
  const int64_t D = d.dim, L = d.layers, V = d.vocab, H = d.hidden, hs = D / d.heads, kv = hs * d.kv_heads;
  for (bool shared : {true, false}) {
    const std::string path = write_temp(make_v1(d, shared));
    Llama2cModel m = load_llama2c(path);
    EXPECT_EQ(m.header.version, 1);
    EXPECT_EQ(llama2c_llama_config(m.header, path).tie_word_embeddings, shared);
    const TensorSource& s = *m.tensors;
    EXPECT_EQ(f32(s, "model.layers.0.input_layernorm.weight")[0], 0.0f);
    EXPECT_EQ(f32(s, "model.layers.0.post_attention_layernorm.weight")[0], float(L * D));
    EXPECT_EQ(f32(s, "model.norm.weight")[0], float(2 * L * D));
    const int64_t emb = 2 * L * D + D;
    EXPECT_EQ(f32(s, "model.embed_tokens.weight")[0], float(emb));
    const int64_t v0 = emb + V * D + L * D * D + L * kv * D;
    EXPECT_EQ(f32(s, "model.layers.0.self_attn.v_proj.weight")[0], float(v0));
    EXPECT_EQ(f32(s, "model.layers.1.mlp.up_proj.weight")[0],
              float(v0 + L * kv * D + L * D * D + 2 * L * H * D + H * D));
    if (!shared) EXPECT_EQ(f32(s, "lm_head.weight")[0], float(v0 + L * kv * D + L * D * D + 3 * L * H * D));
  }
  std::string v2 = make_v1(d, true);
  v2[4] = 2;
  EXPECT_NE(load_error(v2).find("version 2 is not supported"), std::string::npos);
  std::string bad_flag = make_v1(d, true);
  bad_flag[36] = 7;
  EXPECT_NE(load_error(bad_flag).find("shared_classifier"), std::string::npos);
}

TEST(Llama2c, EveryTruncationIsAnError) {
  for (bool separate : {false, true}) {
    std::string full = make_legacy(kTiny, separate);
    EXPECT_EQ(load_error(full), "");
    for (size_t n = 0; n < full.size(); ++n) {
      std::string e = load_error(full.substr(0, n));
      EXPECT_NE(e.find("truncated"), std::string::npos) << n << ": " << e;
      if (n >= 28) EXPECT_NE(e.find("file has " + std::to_string(n)), std::string::npos) << e;
      if (n >= 28) EXPECT_NE(e.find("needs " + std::to_string(full.size())), std::string::npos) << e;
    }
  }
  std::string v1 = make_v1(kTiny, false);
  for (size_t n = 0; n < v1.size(); n += 3) EXPECT_NE(load_error(v1.substr(0, n)), "") << n;
}

TEST(Llama2c, TrailingBytes) {
  const Dims d = kTiny;
  std::string shared = make_legacy(d, false);
  // A classifier after a shared-classifier header is tolerated (llama2.c's runner ignores it).
  std::string with_wcls = shared + std::string(d.vocab * d.dim * 4, '\0');
  const std::string path = write_temp(with_wcls);
  Llama2cModel m = load_llama2c(path);
  EXPECT_TRUE(llama2c_llama_config(m.header, path).tie_word_embeddings);
  EXPECT_FALSE(m.tensors->has("lm_head.weight"));
  EXPECT_NE(load_error(shared + "abcd").find("4 unexpected trailing bytes"), std::string::npos);
  EXPECT_NE(load_error(make_legacy(d, true) + std::string(d.vocab * d.dim * 4, '\0')).find("trailing"),
            std::string::npos);
}

TEST(Llama2c, BadHeaders) {
  auto with_field = [](int index, int32_t value) {
    std::string b = make_legacy(kTiny, false);
    std::memcpy(&b[index * 4], &value, 4);
    return b;
  };
  const char* fields[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    if (i == 5) {
      EXPECT_NE(load_error(with_field(i, 0)).find("vocab_size must be positive"), std::string::npos);
      continue;
    }
    EXPECT_NE(load_error(with_field(i, -3)).find(std::string(fields[i]) + " must be positive"), std::string::npos)
        << fields[i];
    EXPECT_NE(load_error(with_field(i, 0)).find(std::string(fields[i]) + " must be positive"), std::string::npos)
        << fields[i];
  }
  // n_kv_heads (3) not dividing n_heads (2).
  EXPECT_NE(load_error(with_field(4, 3)).find("n_kv_heads 3 does not divide n_heads 2"), std::string::npos);
  EXPECT_NE(load_error(with_field(3, 3)).find("not divisible by n_heads"), std::string::npos);  // dim 8, 3 heads
  EXPECT_NE(load_error(with_field(3, 8)).find("must be even"), std::string::npos);             // head size 1
  // Huge sizes: no overflow, just a clear truncation error.
  EXPECT_NE(load_error(with_field(1, 0x7fffffff)).find("truncated"), std::string::npos);
  std::string huge = with_field(0, 0x7ffffffc);
  std::memcpy(&huge[4], "\xff\xff\xff\x7f", 4);
  std::memcpy(&huge[8], "\xff\xff\xff\x7f", 4);
  std::memcpy(&huge[12], "\x02\0\0\0", 4);
  std::memcpy(&huge[16], "\x02\0\0\0", 4);
  std::string e = load_error(huge);
  EXPECT_TRUE(e.find("truncated") != std::string::npos || e.find("overflow") != std::string::npos) << e;
  // Unknown magic-like header / garbage.
  EXPECT_NE(load_error(std::string(100, '\xff')), "");
  EXPECT_NE(load_error("ak42"), "");
  EXPECT_NE(load_error(""), "");
}

TEST(Llama2c, PermutationHelper) {
  // 2 heads of head_dim 4, 1 column: rows [0..7] -> [0,2,1,3, 4,6,5,7].
  std::vector<float> w = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(permute_rope_rows_meta_to_hf(w.data(), 2, 8, 1), (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_THROW(permute_rope_rows_meta_to_hf(w.data(), 3, 8, 1), Error);
}
