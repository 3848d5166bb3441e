#include "model/loader.h"

#include <filesystem>
#include <fstream>

#include "core/log.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "model/hf_config.h"
#include "tokenizer/gguf_vocab.h"

namespace zebra {

namespace fs = std::filesystem;

const char* model_format_name(ModelFormat f) {
  switch (f) {
    case ModelFormat::HfDirectory: return "hf";
    case ModelFormat::Gguf: return "gguf";
    case ModelFormat::Llama2c: return "llama2c";
  }
  return "?";
}

ModelFormat detect_model_format(const std::string& path) {
  ZEBRA_CHECK(fs::exists(path), "model path ", path, " does not exist");
  if (fs::is_directory(path)) {
    ZEBRA_CHECK(fs::exists(fs::path(path) / "config.json"), "model directory ", path,
                " has no config.json (expected a Hugging Face model directory)");
    return ModelFormat::HfDirectory;
  }
  char magic[4] = {0, 0, 0, 0};
  std::ifstream in(path, std::ios::binary);
  in.read(magic, 4);
  if (in.gcount() == 4 && magic[0] == 'G' && magic[1] == 'G' && magic[2] == 'U' && magic[3] == 'F')
    return ModelFormat::Gguf;
  std::string ext = fs::path(path).extension().string();
  if (ext == ".bin") return ModelFormat::Llama2c;
  fail("cannot tell the format of ", path, ": expected a Hugging Face directory, a .gguf file (magic GGUF) "
       "or a llama2.c .bin");
}

// Meta/GGUF "interleaved" RoPE row order to Hugging Face rotate-half order, per head:
// hf row h*hd + j*(hd/2) + i  <-  interleaved row h*hd + 2*i + j.
static Tensor unpermute_rope_rows(const Tensor& w, int64_t n_heads) {
  const int64_t rows = w.dim(0), cols = w.dim(1), hd = rows / n_heads;
  Tensor out(w.shape);
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < hd / 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        std::copy_n(w.ptr() + (h * hd + 2 * i + j) * cols, cols, out.ptr() + (h * hd + j * (hd / 2) + i) * cols);
  return out;
}

// Reads a Llama's weights through `get(name, shape)`, which resolves Hugging Face names.
template <class Getter>
static std::unique_ptr<Model> build_llama(const LlamaConfig& cfg, Getter&& get, bool has_lm_head) {
  auto m = std::make_unique<Model>();
  m->config = cfg;
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  m->embed = get("model.embed_tokens.weight", std::vector<int64_t>{V, H});
  m->norm = get("model.norm.weight", std::vector<int64_t>{H});
  if (has_lm_head) m->lm_head = get("lm_head.weight", std::vector<int64_t>{V, H});
  m->layers.resize(cfg.num_layers);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    Layer& L = m->layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    L.kind = LayerKind::Attention;
    L.input_norm = get(p + "input_layernorm.weight", {H});
    L.post_norm = get(p + "post_attention_layernorm.weight", {H});
    L.attn.wq = get(p + "self_attn.q_proj.weight", {cfg.q_dim(), H});
    L.attn.wk = get(p + "self_attn.k_proj.weight", {cfg.kv_dim(), H});
    L.attn.wv = get(p + "self_attn.v_proj.weight", {cfg.kv_dim(), H});
    L.attn.wo = get(p + "self_attn.o_proj.weight", {H, cfg.q_dim()});
    L.mlp.gate = get(p + "mlp.gate_proj.weight", {I, H});
    L.mlp.up = get(p + "mlp.up_proj.weight", {I, H});
    L.mlp.down = get(p + "mlp.down_proj.weight", {H, I});
  }
  return m;
}

// ---- Zebra hybrid in AMD's layout (config.json + hybrid_config.json + safetensors; spec §7) ----------

static void load_mla_layer(Layer& L, const MlaDims& d, const TensorSource& st, const std::string& p) {
  const int64_t qd = d.n_heads * d.q_head_dim();
  if (d.q_rank > 0) {
    L.mla.q_a = st.load(p + "q_a_proj.weight", {d.q_rank, d.hidden});
    L.mla.q_b = st.load(p + "q_b_proj.weight", {qd, d.q_rank});
    if (d.lora_norm) L.mla.q_a_norm = st.load(p + "q_a_layernorm.weight", {d.q_rank});
  } else {
    L.mla.q_proj = st.load(p + "q_proj.weight", {qd, d.hidden});
  }
  L.mla.kv_a = st.load(p + "kv_a_proj_with_mqa.weight", {d.kv_rank + d.rope_dim, d.hidden});
  if (d.lora_norm) L.mla.kv_a_norm = st.load(p + "kv_a_layernorm.weight", {d.kv_rank});
  L.mla.kv_b = st.load(p + "kv_b_proj.weight", {d.kv_heads * (d.nope_dim + d.v_dim), d.kv_rank});
  L.mla.out_proj = st.load(p + "out_proj.weight", {d.hidden, d.n_heads * d.v_dim});
}

static void load_mamba_layer(Layer& L, const Mamba2Dims& d, const TensorSource& st, const std::string& p) {
  L.mamba.in_proj = st.load(p + "in_proj.weight", {d.in_proj_rows(), d.hidden});
  L.mamba.conv_w = st.load(p + "conv1d.weight", {d.conv_dim(), 1, d.d_conv});
  L.mamba.conv_w.shape = {d.conv_dim(), d.d_conv};  // drop the depthwise conv's singleton in-channel axis
  L.mamba.conv_b = st.load(p + "conv1d.bias", {d.conv_dim()});
  L.mamba.dt_bias = st.load(p + "dt_bias", {d.n_heads});
  L.mamba.A_log = st.load(p + "A_log", {d.n_heads});
  L.mamba.D = st.load(p + "D", {d.n_heads});
  L.mamba.norm = st.load(p + "norm.weight", {d.d_inner});
  L.mamba.out_proj = st.load(p + "out_proj.weight", {d.hidden, d.d_inner});
}

static std::unique_ptr<Model> build_hybrid(const LlamaConfig& cfg, const HybridConfig& h, const TensorSource& st,
                                           const std::string& dir) {
  auto m = std::make_unique<Model>();
  m->config = cfg;
  m->is_hybrid = true;
  m->hybrid = h;
  m->mamba_dims = h.mamba_dims(cfg);
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  m->embed = st.load("model.embed_tokens.weight", {V, H});
  m->norm = st.load("model.norm.weight", {H});
  // AMD's rule (spec §7.4): use lm_head.weight when present, tie only when it is absent.
  if (st.has("lm_head.weight")) m->lm_head = st.load("lm_head.weight", {V, H});
  m->layers.resize(cfg.num_layers);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    Layer& L = m->layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const bool mla = h.is_mla(i);
    // The config's layer list must agree with the tensors the file holds.
    const bool has_mla = st.has(p + "mla.kv_a_proj_with_mqa.weight"), has_mamba = st.has(p + "mamba.in_proj.weight");
    ZEBRA_CHECK(!(mla && has_mamba) && !(!mla && has_mla), dir, ": hybrid_config.json says layer ", i, " is ",
                mla ? "MLA" : "Mamba2", " but the weights hold a ", has_mla ? "MLA" : "Mamba2", " layer there");
    L.input_norm = st.load(p + "input_layernorm.weight", {H});
    L.post_norm = st.load(p + "post_attention_layernorm.weight", {H});
    if (mla) {
      L.kind = LayerKind::Mla;
      L.mla_dims = h.mla_dims(cfg, i);
      load_mla_layer(L, L.mla_dims, st, p + "mla.");
      L.mla_rope = make_mla_rope(h, L.mla_dims);
      check_mla_weights(L.mla_dims, L.mla, dir + " layer " + std::to_string(i));
    } else {
      L.kind = LayerKind::Mamba2;
      load_mamba_layer(L, m->mamba_dims, st, p + "mamba.");
      mamba2_check(m->mamba_dims, L.mamba);
    }
    L.mlp.gate = st.load(p + "mlp.gate_proj.weight", {I, H});
    L.mlp.up = st.load(p + "mlp.up_proj.weight", {I, H});
    L.mlp.down = st.load(p + "mlp.down_proj.weight", {H, I});
  }
  return m;
}

// ---- Hugging Face directory ----------------------------------------------------------------------

static LoadedModel load_hf_directory(const std::string& dir, const LoadOptions& opts) {
  LoadedModel out;
  LlamaConfig cfg = load_hf_llama_config((fs::path(dir) / "config.json").string());
  cfg.source_format = "hf";
  const fs::path hybrid_path = fs::path(dir) / "hybrid_config.json";
  SafetensorsDir st(dir);
  if (fs::exists(hybrid_path)) {
    cfg.source_format = "zebra";
    out.model = build_hybrid(cfg, load_hybrid_config(hybrid_path.string(), cfg), st, dir);
  } else {
    bool has_head = st.has("lm_head.weight");
    ZEBRA_CHECK(has_head || cfg.tie_word_embeddings, dir, ": config.json sets tie_word_embeddings = false but "
                "there is no lm_head.weight tensor");
    out.model = build_llama(cfg, [&](const std::string& name, const std::vector<int64_t>& shape) {
      return st.load(name, shape);
    }, has_head);
  }
  // Tokenizer: tokenizer.json, else --tokenizer, else a llama2.c tokenizer.bin stored beside the weights (a
  // hybrid of a llama2.c model: SentencePiece vocabularies have no HF tokenizer.json writer here).
  const fs::path beside_bin = fs::path(dir) / "tokenizer.bin";
  const auto vocab = static_cast<int32_t>(out.model->config.vocab_size);
  if (fs::exists(fs::path(dir) / "tokenizer.json")) {
    out.tokenizer = load_hf_tokenizer(dir);
  } else if (!opts.tokenizer_path.empty()) {
    out.tokenizer = load_llama2c_tokenizer(opts.tokenizer_path, vocab);
    out.llama2c_tokenizer_file = opts.tokenizer_path;
  } else if (fs::exists(beside_bin)) {
    out.tokenizer = load_llama2c_tokenizer(beside_bin.string(), vocab);
    out.llama2c_tokenizer_file = beside_bin.string();
  } else {
    ZEBRA_CHECK(!opts.need_tokenizer, "model directory ", dir, " has no tokenizer.json (nor a llama2.c "
                "tokenizer.bin); pass --tokenizer FILE");
  }
  return out;
}

// ---- GGUF -----------------------------------------------------------------------------------------

static std::string gguf_tensor_name(const std::string& hf) {
  // model.layers.N.<part> -> blk.N.<gguf part>
  static const std::pair<const char*, const char*> layer_parts[] = {
      {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) == 0) {
    size_t dot = hf.find('.', prefix.size());
    std::string idx = hf.substr(prefix.size(), dot - prefix.size());
    std::string part = hf.substr(dot + 1);
    for (auto& [h, g] : layer_parts)
      if (part == h) return "blk." + idx + "." + g;
  }
  fail("no GGUF name for tensor ", hf);
}

static LlamaConfig gguf_llama_config(const GgufFile& g) {
  const std::string arch = g.get_string("general.architecture");
  ZEBRA_CHECK(arch == "llama", g.describe(), ": general.architecture is '", arch,
              "'; only 'llama' GGUF models are supported");
  LlamaConfig c;
  c.source_format = "gguf";
  c.hidden_size = g.get_int("llama.embedding_length");
  c.num_layers = g.get_int("llama.block_count");
  c.intermediate_size = g.get_int("llama.feed_forward_length");
  c.num_heads = g.get_int("llama.attention.head_count");
  c.num_kv_heads = g.get_int("llama.attention.head_count_kv", c.num_heads);
  c.head_dim = g.get_int("llama.attention.key_length", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_position_embeddings = g.get_int("llama.context_length", 2048);
  c.rms_norm_eps = g.get_double("llama.attention.layer_norm_rms_epsilon", 1e-5);
  c.rope_theta = g.get_double("llama.rope.freq_base", 10000.0);
  const std::string scaling = g.get_string("llama.rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScaling::Type::Linear;
    c.rope_scaling.factor = g.get_double("llama.rope.scaling.factor");
  } else if (scaling == "yarn") {
    c.rope_scaling.type = RopeScaling::Type::Yarn;
    c.rope_scaling.factor = g.get_double("llama.rope.scaling.factor");
    c.rope_scaling.original_max_position_embeddings = g.get_int("llama.rope.scaling.original_context_length", 0);
  } else {
    ZEBRA_CHECK(scaling == "none", g.describe(), ": unsupported llama.rope.scaling.type '", scaling, "'");
  }
  if (const TensorView* ff = g.find("rope_freqs.weight")) {
    Tensor f = view_to_tensor(*ff);
    c.rope_scaling.freq_factors = f.data;
  }
  int64_t n_tokens = 0;
  if (const GgufValue* toks = g.find_value("tokenizer.ggml.tokens")) n_tokens = static_cast<int64_t>(toks->array.size());
  c.vocab_size = g.get_int("llama.vocab_size", n_tokens);
  c.bos_token_id = static_cast<int32_t>(g.get_int("tokenizer.ggml.bos_token_id", -1));
  int64_t eos = g.get_int("tokenizer.ggml.eos_token_id", -1);
  if (eos >= 0) c.eos_token_ids.push_back(static_cast<int32_t>(eos));
  c.tie_word_embeddings = g.find("output.weight") == nullptr;
  c.validate(g.describe());
  return c;
}

// llama2.c's header -> LlamaConfig, beside GGUF's on purpose: io/ only reads the formats, and every
// LlamaConfig is made in model/ (here, or from config.json in model/hf_config).
LlamaConfig llama2c_llama_config(const Llama2cHeader& h, const std::string& path) {
  LlamaConfig c;
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.max_position_embeddings = h.seq_len;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = h.shared_classifier;
  c.bos_token_id = h.vocab_size > 1 ? 1 : -1;
  if (h.vocab_size > 2) c.eos_token_ids = {2};
  c.source_format = "llama2c";
  c.validate(path);
  return c;
}

static LoadedModel load_gguf(const std::string& path, const LoadOptions& opts) {
  GgufFile g(path);
  LoadedModel out;
  LlamaConfig cfg = gguf_llama_config(g);
  out.model = build_llama(cfg, [&](const std::string& name, const std::vector<int64_t>& shape) {
    Tensor t = g.load(gguf_tensor_name(name), shape);
    // llama.cpp stores Q and K rows in interleaved RoPE order; the engine uses rotate-half.
    if (name.find("self_attn.q_proj") != std::string::npos) return unpermute_rope_rows(t, cfg.num_heads);
    if (name.find("self_attn.k_proj") != std::string::npos) return unpermute_rope_rows(t, cfg.num_kv_heads);
    return t;
  }, !cfg.tie_word_embeddings);
  if (opts.need_tokenizer || g.find_value("tokenizer.ggml.model")) out.tokenizer = tokenizer_from_gguf(g);
  return out;
}

// ---- llama2.c -------------------------------------------------------------------------------------

static std::string find_llama2c_tokenizer(const std::string& model_path) {
  fs::path dir = fs::path(model_path).parent_path();
  if (dir.empty()) dir = ".";
  if (fs::exists(dir / "tokenizer.bin")) return (dir / "tokenizer.bin").string();
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind("tok", 0) == 0 && e.path().extension() == ".bin") found.push_back(e.path().string());
  }
  if (found.size() == 1) return found[0];
  return "";
}

static LoadedModel load_llama2c_model(const std::string& path, const LoadOptions& opts) {
  Llama2cModel l = load_llama2c(path);
  const LlamaConfig cfg = llama2c_llama_config(l.header, path);
  LoadedModel out;
  out.model = build_llama(cfg, [&](const std::string& name, const std::vector<int64_t>& shape) {
    return l.tensors->load(name, shape);
  }, !cfg.tie_word_embeddings);
  std::string tok = opts.tokenizer_path.empty() ? find_llama2c_tokenizer(path) : opts.tokenizer_path;
  if (!tok.empty()) {
    out.tokenizer = load_llama2c_tokenizer(tok, static_cast<int32_t>(cfg.vocab_size));
    out.llama2c_tokenizer_file = tok;
  } else {
    ZEBRA_CHECK(!opts.need_tokenizer, path, ": a llama2.c model needs its tokenizer: pass --tokenizer FILE "
                "(no tokenizer.bin or tok*.bin found beside the model)");
  }
  return out;
}

LoadedModel load_model(const std::string& path, const LoadOptions& opts) {
  LoadedModel m;
  switch (detect_model_format(path)) {
    case ModelFormat::HfDirectory: m = load_hf_directory(path, opts); break;
    case ModelFormat::Gguf: m = load_gguf(path, opts); break;
    case ModelFormat::Llama2c: m = load_llama2c_model(path, opts); break;
  }
  m.model->path = path;
  if (m.tokenizer)
    ZEBRA_CHECK(m.tokenizer->vocab_size() <= m.model->config.vocab_size, path, ": tokenizer has ",
                m.tokenizer->vocab_size(), " tokens but the model's vocabulary is ", m.model->config.vocab_size);
  return m;
}

}  // namespace zebra
