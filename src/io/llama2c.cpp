#include "io/llama2c.h"

#include <cstring>
#include <limits>
#include <map>

#include "core/error.h"
#include "io/mapped_file.h"

namespace zebra {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42" of llama2.c's versioned exports
constexpr size_t kV1HeaderBytes = 256;

// Weights of a llama2.c file under HF names.
class Llama2cSource : public TensorSource {
 public:
  explicit Llama2cSource(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

  void add_mapped(const std::string& name, std::vector<int64_t> shape, size_t offset) {
    TensorView v;
    v.name = name;
    v.dtype = DType::F32;
    v.shape = std::move(shape);
    v.nbytes = static_cast<size_t>(v.numel()) * 4;
    v.data = file_->data() + offset;
    v.file = file_->path();
    add(std::move(v));
  }
  void add_owned(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
    owned_.push_back(std::make_unique<std::vector<float>>(std::move(values)));
    TensorView v;
    v.name = name;
    v.dtype = DType::F32;
    v.shape = std::move(shape);
    v.nbytes = owned_.back()->size() * 4;
    v.data = reinterpret_cast<const uint8_t*>(owned_.back()->data());
    v.file = file_->path();
    add(std::move(v));
  }
  const float* floats_at(size_t offset) const { return reinterpret_cast<const float*>(file_->data() + offset); }

  const TensorView* find(const std::string& name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &views_[it->second];
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [k, v] : index_) out.push_back(k);
    return out;
  }
  std::string describe() const override { return file_->path(); }

 private:
  void add(TensorView v) {
    index_[v.name] = views_.size();
    views_.push_back(std::move(v));
  }
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> views_;
  std::map<std::string, size_t> index_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_;  // permuted q/k (stable addresses)
};

// Overflow-checked product of header-derived sizes (header values are attacker-controlled int32s).
uint64_t mul(uint64_t a, uint64_t b, const std::string& path) {
  ZEBRA_CHECK(b == 0 || a <= std::numeric_limits<uint64_t>::max() / b, path,
              ": llama2.c header sizes overflow (corrupt header)");
  return a * b;
}

void check_header(const Llama2cHeader& h, const std::string& path) {
  auto pos = [&](int64_t v, const char* field) {
    ZEBRA_CHECK(v > 0, path, ": llama2.c header field ", field, " must be positive, got ", v);
  };
  pos(h.dim, "dim");
  pos(h.hidden_dim, "hidden_dim");
  pos(h.n_layers, "n_layers");
  pos(h.n_heads, "n_heads");
  pos(h.n_kv_heads, "n_kv_heads");
  pos(h.vocab_size, "vocab_size");
  pos(h.seq_len, "seq_len");
  ZEBRA_CHECK(h.dim % h.n_heads == 0, path, ": llama2.c header: dim ", h.dim, " is not divisible by n_heads ",
              h.n_heads);
  ZEBRA_CHECK(h.n_heads % h.n_kv_heads == 0, path, ": llama2.c header: n_kv_heads ", h.n_kv_heads,
              " does not divide n_heads ", h.n_heads);
  ZEBRA_CHECK((h.dim / h.n_heads) % 2 == 0, path, ": llama2.c header: head size ", h.dim / h.n_heads,
              " (dim / n_heads) must be even for RoPE");
}

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

std::vector<float> permute_rope_rows_meta_to_hf(const float* src, int64_t n_heads, int64_t rows, int64_t cols) {
  ZEBRA_CHECK(n_heads > 0 && rows % n_heads == 0 && (rows / n_heads) % 2 == 0,
              "permute_rope_rows_meta_to_hf: rows ", rows, " must be n_heads (", n_heads, ") * an even head_dim");
  const int64_t hd = rows / n_heads, half = hd / 2;
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const float* s = src + (h * hd + 2 * i + j) * cols;  // Meta row: pair i, element j
        std::memcpy(out.data() + (h * hd + j * half + i) * cols, s, static_cast<size_t>(cols) * 4);
      }
  return out;
}

Llama2cModel load_llama2c(const std::string& path) {
  auto file = std::make_unique<MappedFile>(path);
  const uint8_t* d = file->data();
  const uint64_t size = file->size();
  ZEBRA_CHECK(size >= 28, path, ": truncated llama2.c file: ", size, " bytes, the header alone needs 28");

  int version = 0;
  Llama2cHeader h;
  bool shared = true;
  size_t offset = 0;
  uint32_t magic;
  std::memcpy(&magic, d, 4);
  if (magic == kMagic) {
    ZEBRA_CHECK(size >= kV1HeaderBytes, path, ": truncated llama2.c file: ", size,
                " bytes, the versioned header needs ", kV1HeaderBytes);
    version = read_i32(d + 4);
    ZEBRA_CHECK(version == 1, path, ": llama2.c export version ", version,
                " is not supported (only the legacy format and fp32 version 1; version 2 is int8-quantised)");
    h = {read_i32(d + 8), read_i32(d + 12), read_i32(d + 16), read_i32(d + 20),
         read_i32(d + 24), read_i32(d + 28), read_i32(d + 32)};
    ZEBRA_CHECK(d[36] <= 1, path, ": llama2.c version 1 header: shared_classifier flag must be 0 or 1, got ",
                int(d[36]));
    shared = d[36] == 1;
    offset = kV1HeaderBytes;
  } else {
    h = {read_i32(d), read_i32(d + 4), read_i32(d + 8), read_i32(d + 12),
         read_i32(d + 16), read_i32(d + 20), read_i32(d + 24)};
    // Legacy: a negative vocab_size flags a separate classifier at the end.
    shared = h.vocab_size > 0;
    if (h.vocab_size < 0) h.vocab_size = -h.vocab_size;
    offset = 28;
  }
  check_header(h, path);

  const uint64_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers, vocab = h.vocab_size, seq = h.seq_len;
  const uint64_t head = dim / h.n_heads, kv_dim = head * h.n_kv_heads;
  // Floats per block, in file order for each version.
  const uint64_t emb = mul(vocab, dim, path);
  const uint64_t norm_l = mul(L, dim, path);
  const uint64_t wq = mul(L, mul(dim, dim, path), path);
  const uint64_t wk = mul(L, mul(kv_dim, dim, path), path);
  const uint64_t w13 = mul(L, mul(hidden, dim, path), path);
  const uint64_t freq = version == 0 ? mul(seq, head / 2, path) : 0;
  uint64_t floats = 0;
  for (uint64_t n : {emb, norm_l, wq, wk, wk, wq, norm_l, w13, w13, w13, dim, freq, freq}) {
    ZEBRA_CHECK(floats <= std::numeric_limits<uint64_t>::max() - n, path, ": llama2.c header sizes overflow");
    floats += n;
  }
  const uint64_t wcls = emb;
  ZEBRA_CHECK(floats <= (std::numeric_limits<uint64_t>::max() - offset) / 4 - wcls, path,
              ": llama2.c header sizes overflow");
  const uint64_t expected = offset + 4 * (floats + (shared ? 0 : wcls));
  ZEBRA_CHECK(size >= expected, path, ": truncated llama2.c file: header (dim ", h.dim, ", hidden ", h.hidden_dim,
              ", layers ", h.n_layers, ", heads ", h.n_heads, "/", h.n_kv_heads, ", vocab ", h.vocab_size, ", seq ",
              h.seq_len, shared ? ", shared classifier" : ", separate classifier", ") needs ", expected,
              " bytes, file has ", size);
  // llama2.c's own runner ignores a classifier written after a shared-classifier header; allow exactly that.
  ZEBRA_CHECK(size == expected || (shared && size == expected + 4 * wcls), path, ": llama2.c file has ",
              size - expected, " unexpected trailing bytes (header implies ", expected, " bytes, file has ", size,
              "); wrong header or not a llama2.c checkpoint");

  auto src = std::make_unique<Llama2cSource>(std::move(file));
  const int64_t D = h.dim, H = h.hidden_dim, KV = static_cast<int64_t>(kv_dim), V = h.vocab_size;
  // Per-layer tensors stored as [L, rows, cols] blocks.
  auto layers = [&](size_t base, int64_t rows, int64_t cols, const char* fmt_a, const char* fmt_b) {
    for (int64_t l = 0; l < h.n_layers; ++l) {
      std::string name = cat(fmt_a, l, fmt_b);
      size_t off = base + static_cast<size_t>(l * rows * cols) * 4;
      if (cols == 0) src->add_mapped(name, {rows}, base + static_cast<size_t>(l * rows) * 4);
      else src->add_mapped(name, {rows, cols}, off);
    }
  };
  auto qk = [&](size_t base, int64_t rows, int64_t n_heads, const char* proj) {
    for (int64_t l = 0; l < h.n_layers; ++l) {
      const float* w = src->floats_at(base + static_cast<size_t>(l * rows * D) * 4);
      src->add_owned(cat("model.layers.", l, ".self_attn.", proj, "_proj.weight"), {rows, D},
                     permute_rope_rows_meta_to_hf(w, n_heads, rows, D));
    }
  };

  size_t at = offset;
  auto take = [&](uint64_t n) {
    size_t here = at;
    at += static_cast<size_t>(n) * 4;
    return here;
  };
  if (version == 0) {
    src->add_mapped("model.embed_tokens.weight", {V, D}, take(emb));
    layers(take(norm_l), D, 0, "model.layers.", ".input_layernorm.weight");
    qk(take(wq), D, h.n_heads, "q");
    qk(take(wk), KV, h.n_kv_heads, "k");
    layers(take(wk), KV, D, "model.layers.", ".self_attn.v_proj.weight");
    layers(take(wq), D, D, "model.layers.", ".self_attn.o_proj.weight");
    layers(take(norm_l), D, 0, "model.layers.", ".post_attention_layernorm.weight");
    layers(take(w13), H, D, "model.layers.", ".mlp.gate_proj.weight");
    layers(take(w13), D, H, "model.layers.", ".mlp.down_proj.weight");
    layers(take(w13), H, D, "model.layers.", ".mlp.up_proj.weight");
    src->add_mapped("model.norm.weight", {D}, take(dim));
    take(freq);  // freq_cis_real: recomputed by the engine
    take(freq);  // freq_cis_imag
  } else {
    layers(take(norm_l), D, 0, "model.layers.", ".input_layernorm.weight");
    layers(take(norm_l), D, 0, "model.layers.", ".post_attention_layernorm.weight");
    src->add_mapped("model.norm.weight", {D}, take(dim));
    src->add_mapped("model.embed_tokens.weight", {V, D}, take(emb));
    qk(take(wq), D, h.n_heads, "q");
    qk(take(wk), KV, h.n_kv_heads, "k");
    layers(take(wk), KV, D, "model.layers.", ".self_attn.v_proj.weight");
    layers(take(wq), D, D, "model.layers.", ".self_attn.o_proj.weight");
    layers(take(w13), H, D, "model.layers.", ".mlp.gate_proj.weight");
    layers(take(w13), D, H, "model.layers.", ".mlp.down_proj.weight");
    layers(take(w13), H, D, "model.layers.", ".mlp.up_proj.weight");
  }
  if (!shared) src->add_mapped("lm_head.weight", {V, D}, take(wcls));

  Llama2cModel m;
  h.shared_classifier = shared;
  h.version = version;
  m.header = h;
  m.tensors = std::move(src);
  return m;
}

}  // namespace zebra
