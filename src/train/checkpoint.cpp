#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/atomic_write.h"
#include "io/safetensors.h"
#include "model/parameters.h"
#include "model/save_hybrid.h"

namespace zebra {

namespace fs = std::filesystem;

static std::string old_dir(const std::string& dir) { return dir + ".old"; }

bool checkpoint_exists(const std::string& dir) {
  return fs::exists(fs::path(dir) / "trainer_state.json") || fs::exists(fs::path(old_dir(dir)) / "trainer_state.json");
}

void save_checkpoint(const std::string& dir, const Model& m, const Tokenizer* tok, const AdamW& opt,
                     const TrainerState& state) {
  const std::string tmp = dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_hybrid(m, tok, tmp + "/model", DType::F32);

  // Optimiser moments, one tensor pair per parameter.
  std::vector<Tensor> moments;
  moments.reserve(2 * opt.params().size());
  std::vector<std::pair<std::string, const Tensor*>> named;
  for (size_t i = 0; i < opt.params().size(); ++i) {
    const ParamRef& p = opt.params()[i];
    Tensor mt({p.n}), vt({p.n});
    mt.data = opt.m(i), vt.data = opt.v(i);
    moments.push_back(std::move(mt));
    moments.push_back(std::move(vt));
  }
  for (size_t i = 0; i < opt.params().size(); ++i) {
    named.emplace_back("exp_avg." + opt.params()[i].name, &moments[2 * i]);
    named.emplace_back("exp_avg_sq." + opt.params()[i].name, &moments[2 * i + 1]);
  }
  write_safetensors(tmp + "/optimizer.safetensors", named, DType::F32,
                    {{"step_count", std::to_string(opt.step_count())}});

  nlohmann::json j = {{"stage", state.stage},           {"step", state.step},
                      {"samples_seen", state.samples_seen}, {"total_steps", state.total_steps},
                      {"seed", state.seed},             {"options", nlohmann::json::parse(state.options)}};
  write_file_atomic(tmp + "/trainer_state.json", j.dump(2) + "\n");

  // Swap: DIR -> DIR.old, tmp -> DIR, drop DIR.old.
  fs::remove_all(old_dir(dir));
  if (fs::exists(dir)) fs::rename(dir, old_dir(dir));
  fs::rename(tmp, dir);
  fs::remove_all(old_dir(dir));
}

TrainerState load_checkpoint(const std::string& dir_in, Model& m, AdamW& opt) {
  std::string dir = dir_in;
  if (!fs::exists(fs::path(dir) / "trainer_state.json") && fs::exists(fs::path(old_dir(dir)) / "trainer_state.json"))
    dir = old_dir(dir);  // a crash between the two renames of save_checkpoint
  const std::string state_path = dir + "/trainer_state.json";
  std::ifstream in(state_path);
  ZEBRA_CHECK(in.good(), "resume: no checkpoint at ", dir_in, " (", state_path, " is missing)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    fail("resume: ", state_path, " is not valid JSON: ", e.what());
  }
  TrainerState st;
  try {
    st.stage = j.at("stage").get<std::string>();
    st.step = j.at("step").get<int64_t>();
    st.samples_seen = j.at("samples_seen").get<int64_t>();
    st.total_steps = j.at("total_steps").get<int64_t>();
    st.seed = j.at("seed").get<uint64_t>();
    st.options = j.at("options").dump();
  } catch (const std::exception& e) {
    fail("resume: ", state_path, ": ", e.what());
  }

  // Weights, by name (conv1d.weight is stored [C, 1, K] and held [C, K]: same values).
  SafetensorsFile weights(dir + "/model/model.safetensors");
  for (NamedTensor& t : named_parameters(m)) {
    const TensorView* v = weights.find(t.name);
    ZEBRA_CHECK(v, "resume: ", dir, "/model/model.safetensors has no tensor ", t.name,
                " (the checkpoint is of a different model)");
    Tensor loaded = view_to_tensor(*v);
    ZEBRA_CHECK(loaded.numel() == t.tensor->numel(), "resume: tensor ", t.name, " has shape ", shape_str(loaded.shape),
                " in the checkpoint but ", shape_str(t.tensor->shape), " in the model");
    // Copy into the existing buffer: the optimiser holds pointers to it.
    std::copy(loaded.data.begin(), loaded.data.end(), t.tensor->data.begin());
  }

  SafetensorsFile moments(dir + "/optimizer.safetensors");
  std::vector<float> flat;
  flat.reserve(opt.state_floats());
  for (const ParamRef& p : opt.params()) {
    for (const char* kind : {"exp_avg.", "exp_avg_sq."}) {
      const TensorView* v = moments.find(kind + p.name);
      ZEBRA_CHECK(v && v->numel() == p.n, "resume: ", dir, "/optimizer.safetensors lacks ", kind, p.name,
                  " of ", p.n, " values");
      Tensor t = view_to_tensor(*v);
      flat.insert(flat.end(), t.data.begin(), t.data.end());
    }
  }
  auto it = moments.metadata().find("step_count");
  ZEBRA_CHECK(it != moments.metadata().end(), "resume: ", dir, "/optimizer.safetensors has no step_count");
  opt.load_state(flat, std::stoll(it->second));
  return st;
}

}  // namespace zebra
