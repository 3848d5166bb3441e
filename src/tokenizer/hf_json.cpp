// HF tokenizers' layout (tokenizer.json + tokenizer_config.json): load and save byte-level BPE
// (SmolLM2, Llama-3) and SentencePiece-style BPE with byte fallback (Llama-2/TinyLlama, llama2.c).
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_write.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/spm.h"

namespace zebra {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in, "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

const char* type_name(const json& j) { return j.type_name(); }

// Field access that names the file and field on failure.
struct Ctx {
  std::string path;
  const json& need(const json& obj, const std::string& key, const std::string& field) const {
    ZEBRA_CHECK(obj.is_object(), path, ": ", field, " must be an object, found ", type_name(obj));
    auto it = obj.find(key);
    ZEBRA_CHECK(it != obj.end(), path, ": missing field ", field, ".", key);
    return *it;
  }
  std::string str(const json& v, const std::string& field) const {
    ZEBRA_CHECK(v.is_string(), path, ": ", field, " must be a string, found ", type_name(v));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& key, bool def, const std::string& field) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return def;
    ZEBRA_CHECK(it->is_boolean(), path, ": ", field, ".", key, " must be a boolean, found ", type_name(*it));
    return it->get<bool>();
  }
  int64_t integer(const json& v, const std::string& field) const {
    ZEBRA_CHECK(v.is_number_integer(), path, ": ", field, " must be an integer, found ", type_name(v));
    return v.get<int64_t>();
  }
};

std::string quote_literal(const std::string& s) {
  std::string out = "\\Q";
  for (size_t p = 0; p < s.size(); ++p) {
    if (s.compare(p, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++p;
    } else {
      out += s[p];
    }
  }
  return out + "\\E";
}

// Collects the regex steps of a pre_tokenizer node; returns whether a ByteLevel step was seen.
void parse_pre(const Ctx& c, const json& node, const std::string& field, std::vector<std::string>& regexes,
               bool& byte_level) {
  std::string type = c.str(c.need(node, "type", field), field + ".type");
  if (type == "Sequence") {
    const json& list = c.need(node, "pretokenizers", field);
    ZEBRA_CHECK(list.is_array(), c.path, ": ", field, ".pretokenizers must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre(c, list[i], cat(field, ".pretokenizers[", i, "]"), regexes, byte_level);
    return;
  }
  ZEBRA_CHECK(!byte_level, c.path, ": ", field, " (", type, ") comes after ByteLevel; only steps before it are supported");
  if (type == "ByteLevel") {
    ZEBRA_CHECK(!c.boolean(node, "add_prefix_space", false, field), c.path, ": ", field,
                ".add_prefix_space = true is not supported");
    if (c.boolean(node, "use_regex", true, field)) regexes.push_back(kGpt2Regex);
    byte_level = true;
  } else if (type == "Digits") {
    regexes.push_back(c.boolean(node, "individual_digits", false, field) ? kDigitRegex : "\\p{N}+");
  } else if (type == "Split") {
    const json& pat = c.need(node, "pattern", field);
    std::string behavior = c.str(c.need(node, "behavior", field), field + ".behavior");
    ZEBRA_CHECK(behavior == "Isolated", c.path, ": ", field, ".behavior '", behavior,
                "' is not supported (only Isolated)");
    ZEBRA_CHECK(!c.boolean(node, "invert", false, field), c.path, ": ", field, ".invert = true is not supported");
    if (pat.contains("Regex")) regexes.push_back(c.str(pat["Regex"], field + ".pattern.Regex"));
    else if (pat.contains("String")) regexes.push_back(quote_literal(c.str(pat["String"], field + ".pattern.String")));
    else fail(c.path, ": ", field, ".pattern must hold Regex or String");
  } else {
    fail(c.path, ": ", field, ".type '", type, "' is not supported (ByteLevel, Digits, Split, Sequence)");
  }
}

// TemplateProcessing whose single template starts with a special token means "add BOS".
void parse_post(const Ctx& c, const json& node, const std::string& field, std::string& bos_text) {
  if (node.is_null()) return;
  std::string type = c.str(c.need(node, "type", field), field + ".type");
  if (type == "Sequence") {
    const json& list = c.need(node, "processors", field);
    ZEBRA_CHECK(list.is_array(), c.path, ": ", field, ".processors must be an array");
    for (size_t i = 0; i < list.size(); ++i) parse_post(c, list[i], cat(field, ".processors[", i, "]"), bos_text);
  } else if (type == "TemplateProcessing") {
    const json& single = c.need(node, "single", field);
    ZEBRA_CHECK(single.is_array(), c.path, ": ", field, ".single must be an array");
    if (!single.empty() && single[0].is_object() && single[0].contains("SpecialToken"))
      bos_text = c.str(c.need(single[0]["SpecialToken"], "id", field + ".single[0].SpecialToken"),
                       field + ".single[0].SpecialToken.id");
  } else if (type != "ByteLevel") {
    fail(c.path, ": ", field, ".type '", type, "' is not supported (ByteLevel, TemplateProcessing, Sequence)");
  }
}

// tokenizer_config.json's bos_token/eos_token: a string, {"content": ...} or null.
std::string token_field(const Ctx& c, const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_object()) return c.str(c.need(*it, "content", key), std::string(key) + ".content");
  return c.str(*it, key);
}

// chat_template: a string, or a list of {name, template} (the "default" one is used); else
// chat_template.jinja beside tokenizer.json.
std::string read_chat_template(const Ctx& c, const Ctx& cc, const json& cfg) {
  std::string out;
  if (cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string()) {
      out = t.get<std::string>();
    } else if (t.is_array()) {
      for (const json& e : t)
        if (e.is_object() && e.value("name", "") == "default") out = cc.str(e["template"], "chat_template.template");
    } else if (!t.is_null()) {
      fail(cc.path, ": chat_template must be a string or a list, found ", type_name(t));
    }
  }
  fs::path jinja = fs::path(c.path).parent_path() / "chat_template.jinja";
  if (out.empty() && fs::is_regular_file(jinja)) out = read_text(jinja.string());
  return out;
}

const char* const kSpace = "\xE2\x96\x81";  // "▁", SentencePiece's visible space

// A Replace step's pattern and content: {"type":"Replace","pattern":{"String":from},"content":to}.
bool is_replace(const json& n, const std::string& from, const std::string& to) {
  return n.is_object() && n.value("type", "") == "Replace" && n.contains("pattern") && n["pattern"].is_object() &&
         n["pattern"].value("String", std::string("\x01")) == from && n.value("content", std::string("\x01")) == to;
}

// The Llama-2 layout (model BPE + byte_fallback, normalizer Prepend("▁") + Replace(" ", "▁"), no
// pre-tokenizer) as a SentencePiece tokenizer: HF's merges are ranked by the merged piece's score, so a
// piece's score is minus the rank of the first merge that makes it, which orders merges exactly as
// llama2.c's score lookup does. Pieces no merge makes get a score below llama2.c's merge cut-off.
std::unique_ptr<Tokenizer> build_spm(const Ctx& c, const Ctx& cc, const json& root, const json& cfg,
                                     const BpeVocabSpec& spec) {
  const std::string& path = c.path;
  // normalizer: exactly Sequence[Prepend("▁"), Replace(" ", "▁")] (legacy Llama; what llama2.c does).
  const json* norm = root.contains("normalizer") ? &root["normalizer"] : nullptr;
  ZEBRA_CHECK(norm && norm->is_object(), path,
              ": byte_fallback BPE needs normalizer Sequence[Prepend(\"▁\"), Replace(\" \", \"▁\")], found none");
  std::vector<json> steps;
  if (norm->value("type", "") == "Sequence") {
    const json& list = c.need(*norm, "normalizers", "normalizer");
    ZEBRA_CHECK(list.is_array(), path, ": normalizer.normalizers must be an array");
    for (const json& n : list) steps.push_back(n);
  } else {
    steps.push_back(*norm);
  }
  bool prepend = false, replace = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& n = steps[i];
    std::string t = n.is_object() ? n.value("type", "?") : "?";
    if (t == "Prepend" && !prepend && !replace && n.value("prepend", "") == kSpace) {
      prepend = true;
    } else if (is_replace(n, " ", kSpace) && !replace) {
      replace = true;
    } else {
      fail(path, ": normalizer step ", i, " ('", t, "') is not supported; byte_fallback BPE needs exactly ",
           "Prepend(\"▁\") then Replace(\" \", \"▁\") (Llama-2 legacy layout)");
    }
  }
  ZEBRA_CHECK(prepend && replace, path, ": normalizer must hold both Prepend(\"▁\") and Replace(\" \", \"▁\"), found ",
              prepend ? "no Replace" : "no Prepend");
  ZEBRA_CHECK(!root.contains("pre_tokenizer") || root["pre_tokenizer"].is_null(), path, ": pre_tokenizer '",
              root["pre_tokenizer"].value("type", std::string("?")),
              "' is not supported with byte_fallback BPE (the Llama-2 layout has none)");
  if (root.contains("decoder") && !root["decoder"].is_null()) {
    const json& d = root["decoder"];
    std::vector<json> ds;
    if (d.value("type", "") == "Sequence") {
      const json& list = c.need(d, "decoders", "decoder");
      ZEBRA_CHECK(list.is_array(), path, ": decoder.decoders must be an array");
      for (const json& x : list) ds.push_back(x);
    } else {
      ds.push_back(d);
    }
    for (size_t i = 0; i < ds.size(); ++i) {
      std::string t = ds[i].is_object() ? ds[i].value("type", "?") : "?";
      bool ok = t == "ByteFallback" || t == "Fuse" || is_replace(ds[i], kSpace, " ") ||
                (t == "Strip" && ds[i].value("content", "") == " " && ds[i].value("start", -1) <= 1 &&
                 ds[i].value("stop", -1) == 0);
      ZEBRA_CHECK(ok, path, ": decoder step ", i, " ('", t, "') is not supported; expected Replace(\"▁\", \" \"), ",
                  "ByteFallback, Fuse, Strip(\" \", 1, 0)");
    }
  }

  const size_t n = spec.tokens.size();
  std::vector<int32_t> types = spec.token_types;
  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < n; ++i) {
    id_of.emplace(spec.tokens[i], static_cast<int32_t>(i));
    const std::string& t = spec.tokens[i];
    bool byte_name = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit((unsigned char)t[3]) &&
                     std::isxdigit((unsigned char)t[4]);
    if (types[i] == 1 && byte_name) types[i] = 6;
  }
  // model.unk_token is SentencePiece's unknown piece (type 2), still matched in text as HF does.
  if (auto it = c.need(root, "model", "tokenizer").find("unk_token"); it != root["model"].end() && it->is_string()) {
    auto u = id_of.find(it->get<std::string>());
    ZEBRA_CHECK(u != id_of.end(), path, ": model.unk_token '", it->get<std::string>(), "' is not in the vocabulary");
    types[u->second] = 2;
  }
  constexpr float kNoMerge = -1e30f;  // below llama2.c's -1e10 cut-off: never a merge result
  std::vector<float> scores(n, kNoMerge);
  ZEBRA_CHECK(spec.merges.size() < (1u << 24), path, ": ", spec.merges.size(),
              " merges; ranks above 2^24 cannot be kept exactly as float scores");
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const std::string& m = spec.merges[r];
    size_t sp = m.find(' ', 1);
    ZEBRA_CHECK(sp != std::string::npos, path, ": model.merges[", r, "] '", m, "' is not a pair");
    std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    ZEBRA_CHECK(id_of.count(a) && id_of.count(b), path, ": model.merges[", r, "] '", m,
                "' names a piece that is not in model.vocab");
    auto it = id_of.find(a + b);
    ZEBRA_CHECK(it != id_of.end(), path, ": model.merges[", r, "] '", m, "' makes '", a + b,
                "', which is not in model.vocab");
    float& s = scores[it->second];
    s = std::max(s, -static_cast<float>(r));
  }

  auto find_id = [&](const std::string& text, const std::string& field) -> int32_t {
    auto it = id_of.find(text);
    ZEBRA_CHECK(it != id_of.end(), path, ": ", field, " '", text, "' is not a token of the vocabulary");
    return it->second;
  };
  int32_t bos = -1, eos = -1;
  bool add_bos = false;
  std::string post_bos;
  if (root.contains("post_processor")) parse_post(c, root["post_processor"], "post_processor", post_bos);
  if (!post_bos.empty()) {
    bos = find_id(post_bos, "post_processor special token");
    add_bos = true;
  }
  std::string b = token_field(cc, cfg, "bos_token"), e = token_field(cc, cfg, "eos_token");
  if (!b.empty()) bos = find_id(b, "bos_token");
  if (!e.empty()) eos = find_id(e, "eos_token");
  add_bos = cc.boolean(cfg, "add_bos_token", add_bos, "tokenizer_config") && bos >= 0;
  auto tok = std::make_unique<SpmTokenizer>(spec.tokens, scores, types, bos, eos, add_bos);
  std::string jinja = read_chat_template(c, cc, cfg);
  if (!jinja.empty()) tok->set_chat_template_text(jinja);
  return tok;
}

std::unique_ptr<Tokenizer> load_hf_impl(const std::string& path) {
  std::string json_path = path, config_path;
  if (fs::is_directory(path)) {
    json_path = (fs::path(path) / "tokenizer.json").string();
    config_path = (fs::path(path) / "tokenizer_config.json").string();
  } else {
    config_path = (fs::path(path).parent_path() / "tokenizer_config.json").string();
  }
  ZEBRA_CHECK(fs::is_regular_file(json_path), "HF tokenizer: ", json_path, " not found");
  Ctx c{json_path};
  json root = parse_json(read_text(json_path), json_path);
  ZEBRA_CHECK(root.is_object(), json_path, ": top level must be an object, found ", type_name(root));

  const json& model = c.need(root, "model", "tokenizer");
  std::string mtype = model.contains("type") ? c.str(model["type"], "model.type") : "BPE";
  ZEBRA_CHECK(mtype == "BPE", json_path, ": model.type '", mtype, "' is not supported (only BPE)");
  // byte_fallback marks the SentencePiece-style (Llama-2) layout; otherwise byte-level BPE.
  const bool spm = c.boolean(model, "byte_fallback", false, "model");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(k);
    ZEBRA_CHECK(it == model.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty()), json_path,
                ": model.", k, " must be empty for BPE");
  }
  if (!spm && root.contains("normalizer") && !root["normalizer"].is_null())
    fail(json_path, ": normalizer '", root["normalizer"].value("type", std::string("?")),
         "' is not supported (byte-level BPE has none)");

  // Vocabulary: model.vocab plus added tokens, laid out by id without gaps.
  std::map<int64_t, std::string> by_id;
  const json& vocab = c.need(model, "vocab", "model");
  ZEBRA_CHECK(vocab.is_object(), json_path, ": model.vocab must be an object, found ", type_name(vocab));
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int64_t id = c.integer(it.value(), "model.vocab[\"" + it.key() + "\"]");
    ZEBRA_CHECK(id >= 0 && id < (1 << 30), json_path, ": model.vocab[\"", it.key(), "\"] has id ", id, " out of range");
    ZEBRA_CHECK(by_id.emplace(id, it.key()).second, json_path, ": model.vocab: id ", id, " is used twice");
  }
  std::map<int64_t, bool> added;  // id -> special
  auto add_token = [&](int64_t id, const std::string& content, bool special, const std::string& field) {
    ZEBRA_CHECK(id >= 0 && id < (1 << 30), json_path, ": ", field, " has id ", id, " out of range");
    auto [it, fresh] = by_id.emplace(id, content);
    ZEBRA_CHECK(fresh || it->second == content, json_path, ": ", field, " '", content, "' has id ", id,
                ", which model.vocab gives to '", it->second, "'");
    added[id] = special;
  };
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    ZEBRA_CHECK(list.is_array(), json_path, ": added_tokens must be an array");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string f = cat("added_tokens[", i, "]");
      ZEBRA_CHECK(!c.boolean(list[i], "single_word", false, f), json_path, ": ", f, ".single_word = true is not supported");
      ZEBRA_CHECK(!c.boolean(list[i], "lstrip", false, f) && !c.boolean(list[i], "rstrip", false, f), json_path, ": ",
                  f, ".lstrip/rstrip = true is not supported");
      add_token(c.integer(c.need(list[i], "id", f), f + ".id"), c.str(c.need(list[i], "content", f), f + ".content"),
                c.boolean(list[i], "special", false, f), f);
    }
  }

  json cfg = json::object();
  if (fs::is_regular_file(config_path)) {
    cfg = parse_json(read_text(config_path), config_path);
    ZEBRA_CHECK(cfg.is_object(), config_path, ": top level must be an object");
  }
  Ctx cc{config_path};
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
    for (auto it = cfg["added_tokens_decoder"].begin(); it != cfg["added_tokens_decoder"].end(); ++it) {
      std::string f = "added_tokens_decoder[\"" + it.key() + "\"]";
      int64_t id = 0;
      try {
        size_t used = 0;
        id = std::stoll(it.key(), &used);
        ZEBRA_CHECK(used == it.key().size(), "");
      } catch (...) {
        fail(config_path, ": ", f, ": key is not an integer id");
      }
      if (added.count(id)) continue;
      add_token(id, cc.str(cc.need(it.value(), "content", f), f + ".content"), cc.boolean(it.value(), "special", false, f), f);
    }
  }

  BpeVocabSpec spec;
  int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  ZEBRA_CHECK(static_cast<size_t>(n) == by_id.size(), json_path, ": token ids are not contiguous: ", by_id.size(),
              " tokens but the largest id is ", n - 1);
  spec.tokens.resize(n);
  spec.token_types.assign(n, 1);
  for (auto& [id, t] : by_id) spec.tokens[id] = t;
  for (auto& [id, special] : added) spec.token_types[id] = special ? 3 : 4;

  const json& merges = c.need(model, "merges", "model");
  ZEBRA_CHECK(merges.is_array(), json_path, ": model.merges must be an array, found ", type_name(merges));
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      spec.merges.push_back(m.get<std::string>());
    } else {
      ZEBRA_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), json_path, ": model.merges[",
                  i, "] must be \"a b\" or [\"a\", \"b\"]");
      spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }
  spec.ignore_merges = c.boolean(model, "ignore_merges", false, "model") ? 1 : 0;
  if (spm) return build_spm(c, cc, root, cfg, spec);

  bool byte_level = false;
  ZEBRA_CHECK(root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null(), json_path,
              ": pre_tokenizer is missing; byte-level BPE needs a ByteLevel pre-tokenizer");
  parse_pre(c, root["pre_tokenizer"], "pre_tokenizer", spec.pre_regexes, byte_level);
  ZEBRA_CHECK(byte_level, json_path, ": pre_tokenizer has no ByteLevel step (only byte-level BPE is supported)");
  if (spec.pre_regexes.empty()) spec.pre_regexes.push_back(R"([\s\S]+)");  // ByteLevel without regex: one piece
  if (root.contains("decoder") && !root["decoder"].is_null()) {
    std::string d = c.str(c.need(root["decoder"], "type", "decoder"), "decoder.type");
    ZEBRA_CHECK(d == "ByteLevel", json_path, ": decoder.type '", d, "' is not supported (only ByteLevel)");
  }
  spec.pre = "custom";

  auto find_id = [&](const std::string& text, const std::string& field) -> int32_t {
    for (int64_t i = 0; i < n; ++i)
      if (spec.tokens[i] == text) return static_cast<int32_t>(i);
    fail(json_path, ": ", field, " '", text, "' is not a token of the vocabulary");
  };
  std::string post_bos;
  if (root.contains("post_processor")) parse_post(c, root["post_processor"], "post_processor", post_bos);
  if (!post_bos.empty()) {
    spec.bos = find_id(post_bos, "post_processor special token");
    spec.add_bos = true;
  }
  std::string bos = token_field(cc, cfg, "bos_token"), eos = token_field(cc, cfg, "eos_token");
  if (!bos.empty()) spec.bos = find_id(bos, "bos_token");
  if (!eos.empty()) spec.eos = find_id(eos, "eos_token");
  spec.add_bos = cc.boolean(cfg, "add_bos_token", spec.add_bos, "tokenizer_config") && spec.bos >= 0;

  spec.chat_template = read_chat_template(c, cc, cfg);
  add_conventional_stop_tokens(spec);
  return make_byte_bpe(spec);
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  try {
    return load_hf_impl(path);
  } catch (const json::exception& e) {
    // Only reached for shapes the explicit checks above do not name (a wrong type deep inside).
    fail("HF tokenizer ", path, ": unexpected JSON structure: ", e.what());
  }
}

namespace {

// TemplateProcessing that prepends `b` (id `id`) to every sequence, as HF's Llama tokenizers do.
template <class J>
J bos_template(const std::string& b, int32_t id) {
  return J{{"type", "TemplateProcessing"},
           {"single", J::array({{{"SpecialToken", {{"id", b}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
           {"pair", J::array({{{"SpecialToken", {{"id", b}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", b}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
           {"special_tokens", {{b, {{"id", b}, {"ids", J::array({id})}, {"tokens", J::array({b})}}}}}};
}

template <class J>
void write_json_files(const std::string& dir, const J& root, const J& cfg) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  ZEBRA_CHECK(!ec, "save_hf_tokenizer: cannot create ", dir, ": ", ec.message());
  // Invalid UTF-8 in a token would make dump throw; replace it so the file is always written.
  write_file_atomic((fs::path(dir) / "tokenizer.json").string(), root.dump(2, ' ', false, J::error_handler_t::replace));
  write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(),
                    cfg.dump(2, ' ', false, J::error_handler_t::replace));
}

// The Llama-2 (legacy) layout transformers' LlamaConverter writes: BPE with byte_fallback and fuse_unk,
// vocab in id order, merges from SentencePieceExtractor's rule (every split of a normal piece into two
// vocabulary pieces, ordered by the piece's score, then id, then left length), normalizer
// Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, the SentencePiece decoder.
void save_spm(const SpmTokenizer& tok, const std::string& dir) {
  using oj = nlohmann::ordered_json;
  const int32_t n = tok.vocab_size();
  auto special = [&](int32_t i) { int32_t t = tok.token_type(i); return t == 2 || t == 3 || i == tok.bos_id() || i == tok.eos_id(); };
  // HF names: "▁" for spaces; llama2.c writes BOS/EOS as "\n<s>\n"/"\n</s>\n", SentencePiece's pieces are
  // "<s>"/"</s>", so specials lose the surrounding newlines.
  std::vector<std::string> names(n);
  for (int32_t i = 0; i < n; ++i) {
    std::string t = tok.token_text(i);
    if (special(i)) {
      size_t a = t.find_first_not_of('\n'), b = t.find_last_not_of('\n');
      names[i] = a == std::string::npos ? t : t.substr(a, b - a + 1);
    } else if (tok.token_type(i) != 6) {
      std::string r;
      for (char ch : t) r += ch == ' ' ? std::string(kSpace) : std::string(1, ch);
      names[i] = r;
    } else {
      names[i] = t;
    }
  }
  oj vocab = oj::object();
  std::unordered_map<std::string, int32_t> id_of;
  for (int32_t i = 0; i < n; ++i) {
    ZEBRA_CHECK(id_of.emplace(names[i], i).second, "save_hf_tokenizer: token ", i, " '", names[i],
                "' duplicates token ", id_of[names[i]], "; tokenizer.json needs distinct pieces");
    vocab[names[i]] = i;
  }
  struct Merge {
    float score;
    int32_t id;
    size_t left_len;
  };
  std::vector<Merge> ms;
  for (int32_t i = 0; i < n; ++i) {
    // llama2.c never merges into pieces scored at or below -1e10; SentencePiece only into normal ones.
    if (tok.token_type(i) != 1 || special(i) || !(tok.score(i) > -1e10f)) continue;
    const std::string& p = names[i];
    for (size_t k = 1; k < p.size(); ++k)
      if (id_of.count(p.substr(0, k)) && id_of.count(p.substr(k))) ms.push_back({tok.score(i), i, k});
  }
  std::stable_sort(ms.begin(), ms.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.id != b.id ? a.id < b.id : a.left_len < b.left_len;
  });
  oj merges = oj::array();
  for (const Merge& m : ms) merges.push_back(oj::array({names[m.id].substr(0, m.left_len), names[m.id].substr(m.left_len)}));

  oj added = oj::array(), decoder_cfg = oj::object();
  int32_t unk = -1;
  for (int32_t i = 0; i < n; ++i) {
    int32_t t = tok.token_type(i);
    if (t == 2 && unk < 0) unk = i;
    if (!(special(i) || t == 4)) continue;
    oj a = {{"id", i}, {"content", names[i]}, {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", false}, {"special", t != 4}};
    added.push_back(a);
    a.erase("id");
    decoder_cfg[std::to_string(i)] = a;
  }
  oj root = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added}};
  root["normalizer"] = {{"type", "Sequence"},
                        {"normalizers", oj::array({{{"type", "Prepend"}, {"prepend", kSpace}},
                                                   {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}})}};
  root["pre_tokenizer"] = nullptr;
  root["post_processor"] = tok.adds_bos() ? bos_template<oj>(names[tok.bos_id()], tok.bos_id()) : oj(nullptr);
  root["decoder"] = {{"type", "Sequence"},
                     {"decoders", oj::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                             {{"type", "ByteFallback"}},
                                             {{"type", "Fuse"}},
                                             {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  root["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk >= 0 ? oj(names[unk]) : oj(nullptr)},
                   {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", true},
                   {"byte_fallback", true}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}};
  auto name_or_null = [&](int32_t id) { return id >= 0 ? oj(names[id]) : oj(nullptr); };
  oj cfg = {{"add_bos_token", tok.adds_bos()},
            {"add_eos_token", false},
            {"added_tokens_decoder", decoder_cfg},
            {"bos_token", name_or_null(tok.bos_id())},
            {"clean_up_tokenization_spaces", false},
            {"eos_token", name_or_null(tok.eos_id())},
            {"legacy", true},
            {"model_max_length", 1000000000},
            {"pad_token", nullptr},
            {"sp_model_kwargs", oj::object()},
            {"tokenizer_class", "LlamaTokenizer"},
            {"unk_token", name_or_null(unk)},
            {"use_default_system_prompt", false}};
  if (!tok.chat_template_text().empty()) cfg["chat_template"] = tok.chat_template_text();
  write_json_files(dir, root, cfg);
}

}  // namespace

void save_hf_tokenizer(const Tokenizer& tok, const std::string& dir) {
  if (auto* sp = dynamic_cast<const SpmTokenizer*>(&tok)) return save_spm(*sp, dir);
  auto* bpe = dynamic_cast<const ByteBpeTokenizer*>(&tok);
  ZEBRA_CHECK(bpe, "save_hf_tokenizer: only byte-level BPE and SentencePiece tokenizers can be written in HF layout");
  const BpeVocabSpec& s = bpe->spec();
  auto type_of = [&](size_t i) { return s.token_types.empty() ? 1 : s.token_types[i]; };

  json vocab = json::object();
  json added = json::array();
  json decoder_cfg = json::object();
  for (size_t i = 0; i < s.tokens.size(); ++i) {
    int32_t t = type_of(i);
    bool is_added = t == 2 || t == 3 || t == 4;
    if (!vocab.contains(s.tokens[i])) vocab[s.tokens[i]] = i;
    else ZEBRA_CHECK(is_added, "save_hf_tokenizer: token ", i, " '", s.tokens[i], "' duplicates an earlier token");
    if (is_added) {
      json a = {{"id", i}, {"content", s.tokens[i]}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", t != 4}};
      added.push_back(a);
      json d = a;
      d.erase("id");
      decoder_cfg[std::to_string(i)] = d;
    }
  }
  json merges = json::array();
  for (const std::string& m : s.merges) {
    size_t sp = m.find(' ', 1);
    merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
  }
  json bytelevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json pre;
  const auto& r = s.pre_regexes;
  if (r.size() == 1 && r[0] == kGpt2Regex) {
    pre = bytelevel;
  } else if (r.size() == 2 && r[0] == kDigitRegex && r[1] == kGpt2Regex) {
    pre = {{"type", "Sequence"},
           {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, bytelevel})}};
  } else {
    json steps = json::array();
    for (const auto& p : r)
      steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
    json bl = bytelevel;
    bl["use_regex"] = false;
    steps.push_back(bl);
    pre = {{"type", "Sequence"}, {"pretokenizers", steps}};
  }
  json post = nullptr;
  if (s.add_bos && s.bos >= 0) post = bos_template<json>(s.tokens[s.bos], s.bos);
  json root = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added},
               {"normalizer", nullptr},
               {"pre_tokenizer", pre},
               {"post_processor", post},
               {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
               {"model",
                {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                 {"ignore_merges", s.ignore_merges == 1}, {"vocab", vocab}, {"merges", merges}}}};
  json cfg = {{"add_bos_token", s.add_bos},
              {"add_eos_token", false},
              {"added_tokens_decoder", decoder_cfg},
              {"bos_token", s.bos >= 0 ? json(s.tokens[s.bos]) : json(nullptr)},
              {"eos_token", s.eos >= 0 ? json(s.tokens[s.eos]) : json(nullptr)},
              {"clean_up_tokenization_spaces", false},
              {"model_max_length", 1000000000},
              {"tokenizer_class", "PreTrainedTokenizerFast"}};
  const std::string& jinja = tok.chat_template_text().empty() ? s.chat_template : tok.chat_template_text();
  if (!jinja.empty()) cfg["chat_template"] = jinja;

  write_json_files(dir, root, cfg);
}

}  // namespace zebra
