#include "model/save_hybrid.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "model/parameters.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"

namespace zebra {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: fail("save_hybrid: tensors can be written as F32, BF16 or F16, not ", dtype_name(t));
  }
}

ojson rope_scaling_json(const RopeScaling& r) {
  switch (r.type) {
    case RopeScaling::Type::None:
      if (!r.freq_factors.empty())
        log_warn("save_hybrid: the teacher's GGUF RoPE frequency factors have no config.json form; writing "
                 "rope_scaling = null (the hybrid's MLA layers use hybrid_config.json's YaRN)");
      return nullptr;
    case RopeScaling::Type::Linear: return {{"factor", r.factor}, {"rope_type", "linear"}};
    case RopeScaling::Type::Dynamic: {
      ojson j = {{"factor", r.factor}, {"rope_type", "dynamic"}};
      if (r.original_max_position_embeddings > 0)
        j["original_max_position_embeddings"] = r.original_max_position_embeddings;
      return j;
    }
    case RopeScaling::Type::Llama3:
      return {{"factor", r.factor},
              {"high_freq_factor", r.high_freq_factor},
              {"low_freq_factor", r.low_freq_factor},
              {"original_max_position_embeddings", r.original_max_position_embeddings},
              {"rope_type", "llama3"}};
    case RopeScaling::Type::Yarn: {
      ojson j = {{"factor", r.factor}};
      if (r.original_max_position_embeddings > 0)
        j["original_max_position_embeddings"] = r.original_max_position_embeddings;
      j["beta_fast"] = r.beta_fast;
      j["beta_slow"] = r.beta_slow;
      if (r.mscale != 1.0) j["mscale"] = r.mscale;
      if (r.mscale_all_dim != 0.0) j["mscale_all_dim"] = r.mscale_all_dim;
      if (r.attention_factor > 0) j["attention_factor"] = r.attention_factor;
      j["rope_type"] = "yarn";
      return j;
    }
  }
  return nullptr;
}

// Named tensors in AMD's layout; `owned` keeps reshaped copies alive.
std::vector<std::pair<std::string, const Tensor*>> hybrid_tensors(const Model& m, std::vector<Tensor>& owned) {
  const HybridConfig& h = m.hybrid;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& l = m.layers[i];
    const bool mla = h.is_mla(static_cast<int64_t>(i));
    ZEBRA_CHECK(l.kind == (mla ? LayerKind::Mla : LayerKind::Mamba2), "save_hybrid: layer ", i, " is ",
                layer_kind_name(l.kind), " but hybrid_config's mla_layers makes it ", mla ? "mla" : "mamba2");
    ZEBRA_CHECK(l.kind != LayerKind::Mamba2 || l.mamba.conv_w.rank() == 2, "save_hybrid: layer ", i,
                " conv1d weight has shape ", shape_str(l.mamba.conv_w.shape), ", expected [conv_dim, d_conv]");
  }
  std::vector<std::pair<std::string, const Tensor*>> out = named_parameters(m);
  // The conv1d.weight copies must not move once their addresses are taken.
  owned.clear();
  owned.reserve(m.layers.size());
  for (auto& [name, t] : out) {
    if (name.size() > 19 && name.compare(name.size() - 19, 19, "mamba.conv1d.weight") == 0) {
      Tensor conv = *t;
      conv.shape = {t->dim(0), 1, t->dim(1)};  // PyTorch's depthwise Conv1d layout
      owned.push_back(std::move(conv));
      t = &owned.back();
    }
  }
  return out;
}

std::string temp_dir_name(const fs::path& target) {
  static std::atomic<uint64_t> counter{0};
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return cat(".", target.filename().string(), ".tmp-", ::getpid(), "-", now, "-", counter++);
}

}  // namespace

std::string hybrid_llama_config_json(const Model& m, DType dtype) {
  const LlamaConfig& c = m.config;
  ojson j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = rope_scaling_json(c.rope_scaling);
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = m.lm_head.empty();
  j["bos_token_id"] = c.bos_token_id >= 0 ? ojson(c.bos_token_id) : ojson(nullptr);
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (c.eos_token_ids.empty()) j["eos_token_id"] = nullptr;
  else j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = torch_dtype_name(dtype);
  j["initializer_range"] = 0.02;
  j["pretraining_tp"] = 1;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

void save_hybrid(const Model& m, const Tokenizer* tok, const std::string& dir, DType dtype) {
  ZEBRA_CHECK(m.is_hybrid, "save_hybrid: the model is not a Zebra hybrid");
  ZEBRA_CHECK(!dir.empty(), "save_hybrid: no output directory given");
  ZEBRA_CHECK(static_cast<int64_t>(m.layers.size()) == m.config.num_layers, "save_hybrid: model has ",
              m.layers.size(), " layers but its config says ", m.config.num_layers);
  torch_dtype_name(dtype);  // rejects other dtypes before anything is written
  m.hybrid.validate(m.config, "save_hybrid");
  std::vector<Tensor> owned;
  const auto tensors = hybrid_tensors(m, owned);

  fs::path target = fs::path(dir);
  if (target.filename().empty()) target = target.parent_path();  // "out/" -> "out"
  fs::path parent = target.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  fs::create_directories(parent, ec);
  ZEBRA_CHECK(!ec, "save_hybrid: cannot create ", parent.string(), ": ", ec.message());
  const bool exists = fs::exists(target, ec);
  if (exists) {
    ZEBRA_CHECK(fs::is_directory(target, ec), "save_hybrid: ", target.string(), " exists and is not a directory");
    for (const auto& e : fs::directory_iterator(target)) {
      const std::string n = e.path().filename().string();
      const bool shard = e.path().extension() == ".safetensors" || n == "model.safetensors.index.json";
      ZEBRA_CHECK(!shard || n == "model.safetensors", "save_hybrid: ", target.string(), " already holds ", n,
                  "; a loader would mix it with the new model.safetensors (remove it or choose another directory)");
    }
  }

  const fs::path tmp = parent / temp_dir_name(target);
  fs::create_directory(tmp, ec);
  ZEBRA_CHECK(!ec, "save_hybrid: cannot create temporary directory ", tmp.string(), ": ", ec.message());
  try {
    write_file_atomic((tmp / "config.json").string(), hybrid_llama_config_json(m, dtype));
    save_hybrid_config((tmp / "hybrid_config.json").string(), m.hybrid, m.config);
    write_safetensors((tmp / "model.safetensors").string(), tensors, dtype, {{"format", "pt"}});
    if (tok == nullptr) {
      log_warn("save_hybrid: no tokenizer given; ", target.string(), " will have no tokenizer.json");
    } else if (dynamic_cast<const ByteBpeTokenizer*>(tok) == nullptr && dynamic_cast<const SpmTokenizer*>(tok) == nullptr) {
      log_warn("save_hybrid: the teacher's tokenizer is neither byte-level BPE nor SentencePiece and cannot be "
               "written as tokenizer.json; copy the teacher's tokenizer next to ", target.string(), " yourself");
    } else {
      save_hf_tokenizer(*tok, tmp.string());
    }
    if (!exists) {
      fs::rename(tmp, target, ec);
      ZEBRA_CHECK(!ec, "save_hybrid: cannot rename ", tmp.string(), " to ", target.string(), ": ", ec.message());
    } else {
      // Each rename replaces one file atomically (the directory as a whole is not; renaming over a
      // non-empty directory is impossible). Weights go last: an interrupted update leaves the old weights.
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(tmp)) files.push_back(e.path());
      std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
        return (a.filename() == "model.safetensors") < (b.filename() == "model.safetensors") ||
               ((a.filename() == "model.safetensors") == (b.filename() == "model.safetensors") && a < b);
      });
      for (const fs::path& f : files) {
        fs::rename(f, target / f.filename(), ec);
        ZEBRA_CHECK(!ec, "save_hybrid: cannot move ", f.string(), " into ", target.string(), ": ", ec.message());
      }
      fs::remove(tmp, ec);
    }
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  log_info("wrote ", target.string(), " (", tensors.size(), " tensors, ", dtype_name(dtype), ")");
}

}  // namespace zebra
