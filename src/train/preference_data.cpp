#include "train/preference_data.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/mapped_file.h"
#include "train/packing.h"

namespace zebra {

using json = nlohmann::json;

namespace {

bool ends_with_stop(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  if (ids.empty()) return false;
  std::vector<int32_t> stops = tok.eos_ids();
  return std::find(stops.begin(), stops.end(), ids.back()) != stops.end();
}

// The ids `full_text` adds after `prompt_ids` (see the header); `answer_text` is the response alone.
std::vector<int32_t> response_ids(const Tokenizer& tok, const std::vector<int32_t>& prompt_ids,
                                  const std::string& full_text, const std::string& answer_text, bool add_bos,
                                  bool special) {
  std::vector<int32_t> full = tok.encode(full_text, add_bos, special);
  std::vector<int32_t> out;
  if (full.size() >= prompt_ids.size() && std::equal(prompt_ids.begin(), prompt_ids.end(), full.begin()))
    out.assign(full.begin() + static_cast<std::ptrdiff_t>(prompt_ids.size()), full.end());
  else
    out = tok.encode(answer_text, false, special);
  if (!ends_with_stop(tok, out)) out.push_back(tok.eos_id());
  return out;
}

// A response given as a string or as a list of messages that must all be assistant turns.
std::vector<ChatMessage> response_messages(const json& v, const std::string& at, const char* field) {
  if (v.is_string()) return {{"assistant", v.get<std::string>()}};
  std::vector<ChatMessage> msgs = parse_chat_messages(v, at, field);
  for (size_t i = 0; i < msgs.size(); ++i)
    ZEBRA_CHECK(msgs[i].role == "assistant", at, ": '", field, "[", i, "].role' is '", msgs[i].role,
                "'; a response must be assistant messages (or put the whole conversation in '", field, "')");
  return msgs;
}

bool same_messages(const std::vector<ChatMessage>& a, const std::vector<ChatMessage>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].role != b[i].role || a[i].content != b[i].content) return false;
  return true;
}

PreferencePair parse_line(const Tokenizer& tok, std::string_view line, const std::string& at,
                          const PreferenceOptions& opts) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    fail(at, ": not valid JSON (", e.what(), ")");
  }
  ZEBRA_CHECK(j.is_object(), at, ": expected a JSON object with \"prompt\", \"chosen\" and \"rejected\", got ",
              j.type_name());
  auto get = [&](const char* key) -> const json* {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  const json* prompt = get("prompt");
  const json* chosen = get("chosen");
  const json* rejected = get("rejected");
  ZEBRA_CHECK(chosen, at, ": field 'chosen' is missing");
  ZEBRA_CHECK(rejected, at, ": field 'rejected' is missing");
  for (auto [v, name] : {std::pair{prompt, "prompt"}, std::pair{chosen, "chosen"}, std::pair{rejected, "rejected"}})
    ZEBRA_CHECK(!v || v->is_string() || v->is_array(), at, ": field '", name,
                "' must be a string or a list of {role, content} messages, got ", v->type_name());
  ZEBRA_CHECK(tok.eos_id() >= 0, "the tokenizer has no EOS token to end responses with");

  PreferencePair p;
  const bool chat = (prompt && prompt->is_array()) || chosen->is_array() || rejected->is_array();
  if (!chat) {
    ZEBRA_CHECK(prompt, at, ": field 'prompt' is missing");
    const std::string& ps = prompt->get_ref<const std::string&>();
    const std::string& cs = chosen->get_ref<const std::string&>();
    const std::string& rs = rejected->get_ref<const std::string&>();
    ZEBRA_CHECK(!cs.empty(), at, ": 'chosen' is empty");
    ZEBRA_CHECK(!rs.empty(), at, ": 'rejected' is empty");
    p.prompt = tok.encode(ps, true, false);
    ZEBRA_CHECK(!p.prompt.empty(), at, ": the prompt is empty and the tokenizer adds no BOS, so there is no "
                                       "context to score the response from");
    p.chosen = response_ids(tok, p.prompt, ps + cs, cs, true, false);
    p.rejected = response_ids(tok, p.prompt, ps + rs, rs, true, false);
  } else {
    ZEBRA_CHECK(tok.chat_template() != ChatTemplateKind::None, at,
                ": chat-style preference data needs a chat template, and this tokenizer has none");
    std::vector<ChatMessage> prompt_msgs, chosen_msgs, rejected_msgs;
    if (prompt && prompt->is_array()) {
      prompt_msgs = parse_chat_messages(*prompt, at, "prompt");
      chosen_msgs = response_messages(*chosen, at, "chosen");
      rejected_msgs = response_messages(*rejected, at, "rejected");
    } else if (chosen->is_array() && chosen->size() >= 2) {
      // Whole conversations: the prompt is everything before the last (assistant) message.
      std::vector<ChatMessage> c = parse_chat_messages(*chosen, at, "chosen");
      ZEBRA_CHECK(rejected->is_array(), at,
                  ": 'chosen' is a whole conversation, so 'rejected' must be one too, got a string");
      std::vector<ChatMessage> r = parse_chat_messages(*rejected, at, "rejected");
      ZEBRA_CHECK(c.back().role == "assistant", at, ": the last message of 'chosen' must be the assistant's, got '",
                  c.back().role, "'");
      ZEBRA_CHECK(r.back().role == "assistant", at, ": the last message of 'rejected' must be the assistant's, got '",
                  r.back().role, "'");
      prompt_msgs.assign(c.begin(), c.end() - 1);
      ZEBRA_CHECK(same_messages(prompt_msgs, std::vector<ChatMessage>(r.begin(), r.end() - 1)), at,
                  ": 'chosen' and 'rejected' must share the conversation before their last message");
      chosen_msgs = {c.back()};
      rejected_msgs = {r.back()};
    } else {
      ZEBRA_CHECK(prompt, at, ": field 'prompt' is missing (and 'chosen' is not a whole conversation)");
      prompt_msgs = {{"user", prompt->get<std::string>()}};
      chosen_msgs = response_messages(*chosen, at, "chosen");
      rejected_msgs = response_messages(*rejected, at, "rejected");
    }
    const ChatTemplateKind kind = tok.chat_template();
    const std::string prompt_text = render_chat(kind, prompt_msgs, true);
    p.prompt = tok.encode(prompt_text, false, true);
    ZEBRA_CHECK(!p.prompt.empty(), at, ": the prompt renders to no tokens");
    for (auto [msgs, ids, name] : {std::tuple{&chosen_msgs, &p.chosen, "chosen"},
                                   std::tuple{&rejected_msgs, &p.rejected, "rejected"}}) {
      std::vector<ChatMessage> all = prompt_msgs;
      all.insert(all.end(), msgs->begin(), msgs->end());
      std::string full = render_chat(kind, all, false);
      // The template renders the prompt turns identically whatever follows, and the generation prompt is
      // the start of the assistant turn (ChatML, Llama-3), so the response text is the remainder.
      ZEBRA_CHECK(full.compare(0, prompt_text.size(), prompt_text) == 0, at, ": the chat template does not render '",
                  name, "' as a continuation of the prompt");
      *ids = response_ids(tok, p.prompt, full, full.substr(prompt_text.size()), false, true);
    }
  }
  p.truncated = truncate_preference(p.prompt, p.chosen, p.rejected, opts.max_length, opts.max_prompt_length);
  return p;
}

}  // namespace

bool truncate_preference(std::vector<int32_t>& prompt, std::vector<int32_t>& chosen, std::vector<int32_t>& rejected,
                         int64_t max_length, int64_t max_prompt_length) {
  auto len = [](const std::vector<int32_t>& v) { return static_cast<int64_t>(v.size()); };
  bool cut = false;
  int64_t longer = std::max(len(chosen), len(rejected));
  if (len(prompt) + longer > max_length && len(prompt) > max_prompt_length) {
    prompt.erase(prompt.begin(), prompt.end() - max_prompt_length);  // keep the end
    cut = true;
  }
  if (len(prompt) + longer > max_length) {
    const int64_t keep = max_length - max_prompt_length;
    for (auto* r : {&chosen, &rejected})
      if (len(*r) > keep) {
        r->resize(static_cast<size_t>(keep));
        cut = true;
      }
  }
  return cut;
}

std::vector<PreferencePair> parse_preferences(const Tokenizer& tok, std::string_view jsonl, const std::string& where,
                                              const PreferenceOptions& opts) {
  ZEBRA_CHECK(opts.max_prompt_length >= 1 && opts.max_length > opts.max_prompt_length,
              "preference data: need 1 <= max_prompt_length < max_length, got max_prompt_length ",
              opts.max_prompt_length, " and max_length ", opts.max_length);
  std::vector<PreferencePair> out;
  int64_t number = 0;
  for (size_t pos = 0; pos < jsonl.size();) {
    size_t nl = jsonl.find('\n', pos);
    std::string_view line = jsonl.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? jsonl.size() : nl + 1;
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    PreferencePair p = parse_line(tok, line, cat(where, ":", number), opts);
    p.line = number;
    out.push_back(std::move(p));
  }
  ZEBRA_CHECK(!out.empty(), where, ": no preference pairs (the file has no non-blank lines)");
  return out;
}

std::vector<PreferencePair> load_preferences(const Tokenizer& tok, const std::string& path, int64_t max_length,
                                             int64_t max_prompt_length) {
  MappedFile f(path);
  PreferenceOptions o;
  o.max_length = max_length;
  o.max_prompt_length = max_prompt_length;
  return parse_preferences(tok, std::string_view(reinterpret_cast<const char*>(f.data()), f.size()), path, o);
}

}  // namespace zebra
