#include "train/synth.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/utf8.h"
#include "io/mapped_file.h"
#include "model/batch.h"
#include "train/packing.h"

namespace zebra {

using json = nlohmann::json;

uint64_t synth_doc_seed(uint64_t seed, int64_t i) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string SynthDoc::jsonl(bool chat) const {
  json j;
  if (chat)
    j["messages"] = json::array({json{{"role", "user"}, {"content", prompt}},
                                 json{{"role", "assistant"}, {"content", completion}}});
  else
    j["text"] = prompt + completion;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<SynthDoc> synthesize(const Model& model, const Tokenizer& tok, const SynthOptions& o,
                                 const std::function<void(int64_t, int64_t)>& on_progress) {
  ZEBRA_CHECK(o.n_docs >= 1, "synth: the number of documents must be >= 1, got ", o.n_docs);
  ZEBRA_CHECK(o.max_tokens >= 1, "synth: --max-tokens must be >= 1, got ", o.max_tokens);
  ZEBRA_CHECK(o.batch >= 1, "synth: --batch must be >= 1, got ", o.batch);
  ZEBRA_CHECK(!o.chat || tok.chat_template() != ChatTemplateKind::None,
              "synth --chat needs a chat template, and this model's tokenizer has none");

  // Distinct prompts, tokenised once.
  std::vector<std::string> prompts = o.prompts.empty() ? std::vector<std::string>{""} : o.prompts;
  std::vector<std::vector<int32_t>> prompt_ids;
  int64_t longest = 0;
  for (const std::string& p : prompts) {
    std::vector<int32_t> ids;
    if (o.chat)
      ids = tok.encode(render_chat(tok.chat_template(), {{"user", p}}, true), false, true);
    else if (!p.empty())
      ids = tok.encode(p, true, false);
    if (ids.empty()) {
      ZEBRA_CHECK(tok.bos_id() >= 0, "synth: an empty prompt starts from BOS, and this tokenizer has none "
                                     "(give --prompts)");
      ids.push_back(tok.bos_id());
    }
    longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
    prompt_ids.push_back(std::move(ids));
  }
  const int64_t max_pos = model.config.max_position_embeddings > 0 ? model.config.max_position_embeddings : 1 << 20;
  const int64_t ctx = o.ctx > 0 ? o.ctx : std::min<int64_t>(longest + o.max_tokens, max_pos);
  ZEBRA_CHECK(longest < ctx, "synth: a prompt has ", longest, " tokens, which leaves no room to generate in a context of ",
              ctx, " tokens");
  const int64_t slots = std::min(o.batch, o.n_docs);
  Cache cache = model.make_cache(slots, ctx);
  const std::vector<int32_t> stops = tok.eos_ids();
  const int64_t V = model.config.vocab_size;

  struct Active {
    int64_t doc = -1;
    int32_t pos = 0;  // tokens of this document in the cache
    bool prefill = true;
    int32_t last = 0;
    std::unique_ptr<Sampler> sampler;
    std::vector<int32_t> ids;
  };
  std::vector<Active> act(static_cast<size_t>(slots));
  std::vector<SynthDoc> docs(static_cast<size_t>(o.n_docs));
  int64_t next_doc = 0, finished = 0, generated = 0;

  auto start = [&](Active& a) {
    a = Active{};
    if (next_doc >= o.n_docs) return;
    a.doc = next_doc++;
    SamplerParams sp = o.sampling;
    sp.seed = synth_doc_seed(o.sampling.seed, a.doc);
    a.sampler = std::make_unique<Sampler>(sp);
  };
  auto finish = [&](Active& a, bool hit_stop) {
    const size_t k = static_cast<size_t>(a.doc) % prompts.size();
    SynthDoc& d = docs[static_cast<size_t>(a.doc)];
    d.prompt = prompts[k];
    d.prompt_ids = prompt_ids[k];
    d.ids = std::move(a.ids);
    d.hit_stop = hit_stop;
    StreamDecoder dec(tok);
    // SentencePiece drops the space of the first piece after BOS: let the decoder see a leading BOS.
    if (d.prompt_ids.back() == tok.bos_id()) dec.push(tok.bos_id());
    std::string text;
    for (int32_t id : d.ids) text += dec.push(id);
    text += dec.flush();
    d.completion = utf8::sanitize(text);
    ++finished;
    if (on_progress) on_progress(finished, generated);
    start(a);
  };
  for (Active& a : act) start(a);

  Batch b;
  std::vector<size_t> logit_slot;
  while (true) {
    b.clear();
    logit_slot.clear();
    for (size_t s = 0; s < act.size(); ++s) {
      Active& a = act[s];
      if (a.doc < 0) continue;
      if (a.prefill) {
        const std::vector<int32_t>& p = prompt_ids[static_cast<size_t>(a.doc) % prompts.size()];
        for (size_t t = 0; t < p.size(); ++t)
          b.add(p[t], static_cast<int32_t>(s), static_cast<int32_t>(t), t + 1 == p.size());
      } else {
        b.add(a.last, static_cast<int32_t>(s), a.pos, true);
      }
      logit_slot.push_back(s);
    }
    if (logit_slot.empty()) break;
    Tensor logits = model.forward(b, cache);
    for (size_t r = 0; r < logit_slot.size(); ++r) {
      Active& a = act[logit_slot[r]];
      if (a.prefill) {
        a.pos = static_cast<int32_t>(prompt_ids[static_cast<size_t>(a.doc) % prompts.size()].size());
        a.prefill = false;
      } else {
        ++a.pos;
      }
      int32_t next = a.sampler->sample(logits.ptr() + static_cast<int64_t>(r) * V, V);
      if (std::find(stops.begin(), stops.end(), next) != stops.end()) {
        finish(a, true);
        continue;
      }
      a.ids.push_back(next);
      a.last = next;
      ++generated;
      if (static_cast<int64_t>(a.ids.size()) >= o.max_tokens || a.pos >= ctx) finish(a, false);
    }
  }
  return docs;
}

std::vector<std::string> read_prompts_file(const std::string& path) {
  MappedFile f(path);
  std::string_view content(reinterpret_cast<const char*>(f.data()), f.size());
  std::vector<std::string> out;
  const bool jsonl = is_jsonl_path(path);
  int64_t number = 0;
  for (size_t pos = 0; pos < content.size();) {
    size_t nl = content.find('\n', pos);
    std::string_view line = content.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? content.size() : nl + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string at = cat(path, ":", number);
    if (jsonl) {
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        fail(at, ": not valid JSON (", e.what(), ")");
      }
      ZEBRA_CHECK(j.is_object(), at, ": expected a JSON object with \"text\" or \"prompt\", got ", j.type_name());
      const char* key = j.contains("text") ? "text" : "prompt";
      ZEBRA_CHECK(j.contains(key), at, ": the object has neither \"text\" nor \"prompt\"");
      ZEBRA_CHECK(j[key].is_string(), at, ": '", key, "' must be a string, got ", j[key].type_name());
      out.push_back(j[key].get<std::string>());
    } else {
      ZEBRA_CHECK(utf8::is_valid(line), at, ": invalid UTF-8");
      out.emplace_back(line);
    }
  }
  ZEBRA_CHECK(!out.empty(), path, ": no prompts (the file has no non-blank lines)");
  return out;
}

}  // namespace zebra
