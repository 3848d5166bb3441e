// Preference pairs for DPO (spec §4.4): JSONL, one {"prompt", "chosen", "rejected"} object per line.
//
// Accepted forms (blank lines skipped; other fields ignored):
//   plain   {"prompt": "text", "chosen": "text", "rejected": "text"}
//           no chat template: prompt_ids = encode(prompt) with BOS when the tokenizer uses one.
//   chat    any of prompt/chosen/rejected is a list of {"role", "content"} messages; rendered with the
//           tokenizer's chat template (prompt with the assistant generation prompt):
//     - TRL conversational: "prompt" a message list, "chosen"/"rejected" the assistant message(s) that
//       follow it (a list) or the assistant reply as a string;
//     - ultrafeedback_binarized style: "chosen"/"rejected" are whole conversations (>= 2 messages) whose last
//       message is the assistant reply; the prompt is chosen[:-1], which must equal rejected[:-1] ("prompt",
//       if a string, is then ignored: it repeats the user turn);
//     - "prompt" a string with "chosen"/"rejected" as single assistant messages or strings: the prompt is
//       one user message.
//   Response messages must have role "assistant".
//
// Tokenisation. The response ids are the tokens the full text (prompt + response) adds after the prompt's
// ids, as TRL does, so merges across the boundary cannot desynchronise the two; in the rare case where the
// full encoding does not start with the prompt's ids, the response is encoded on its own. Chat responses
// are rendered as the template writes the assistant turn (ChatML: "content<|im_end|>\n"; Llama-3:
// "content<|eot_id|>"). EOS is appended to each response unless its last id already is a stop id
// (TRL 0.8.6 appends eos_token_id to chosen and rejected).
//
// Truncation (TRL 0.8.6 tokenize_row, truncation_mode "keep_end"): when len(prompt) + the longer response >
// max_length, the prompt keeps its LAST max_prompt_length ids (truncation from the left); if still too long,
// both responses keep their first max_length - max_prompt_length ids.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace zebra {

struct PreferencePair {
  std::vector<int32_t> prompt, chosen, rejected;  // the model reads prompt + chosen (or + rejected)
  int64_t line = 0;                              // 1-based line in the source file
  bool truncated = false;                        // prompt or responses were cut to fit
};

struct PreferenceOptions {
  int64_t max_length = 1024;        // prompt + response tokens (spec §4.4: 1024)
  int64_t max_prompt_length = 512;  // spec §4.4: 512
};

// Reads and tokenises a preference JSONL file. Errors name the file and line ("prefs.jsonl:4: ...").
std::vector<PreferencePair> load_preferences(const Tokenizer& tok, const std::string& path, int64_t max_length,
                                             int64_t max_prompt_length);
// The same over JSONL text in memory (`where` names it in errors).
std::vector<PreferencePair> parse_preferences(const Tokenizer& tok, std::string_view jsonl, const std::string& where,
                                              const PreferenceOptions& opts);
// The truncation rule alone (exposed for tests): cuts prompt/chosen/rejected in place; returns whether it cut.
bool truncate_preference(std::vector<int32_t>& prompt, std::vector<int32_t>& chosen, std::vector<int32_t>& rejected,
                         int64_t max_length, int64_t max_prompt_length);

}  // namespace zebra
