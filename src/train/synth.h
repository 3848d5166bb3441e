// Synthetic corpora sampled from a teacher (MambaInLlama-style pseudo-labels): N documents, each from BOS
// or from a prompt, several sequences per forward pass.
//
// Determinism: document i uses prompt prompts[i % P] and its own sampler seeded from (seed, i), so the
// output depends only on the model, the prompts, the sampling settings and the seed — not on which slot or
// step a document runs in. (Batched and one-at-a-time runs take the same tokens unless two candidates'
// probabilities differ only in the last float bits, since GEMMs of different batch shapes round
// differently; the same settings, including --batch, always reproduce the same corpus.)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

struct SynthOptions {
  int64_t n_docs = 100;
  int64_t max_tokens = 256;  // generated tokens per document (stops earlier at EOS / a stop id)
  int64_t batch = 8;         // sequences decoded together (cache slots)
  int64_t ctx = 0;           // cache context; 0 = longest prompt + max_tokens, at most the model's maximum
  SamplerParams sampling{1.0f, 0, 1.0f, 0.0f, 0};  // pure sampling at temperature 1 by default
  std::vector<std::string> prompts;  // empty: every document starts from BOS
  bool chat = false;  // prompts are user messages rendered with the chat template + generation prompt
};

struct SynthDoc {
  std::string prompt;                // the prompt text ("" from BOS)
  std::string completion;            // the generated text (decoded; invalid UTF-8 replaced by U+FFFD)
  std::vector<int32_t> prompt_ids, ids;  // ids: generated tokens (the stop token excluded)
  bool hit_stop = false;             // ended at EOS / a stop id (else max_tokens or the context)
  // The document as a JSONL line (no newline): {"text": prompt + completion}, or with chat
  // {"messages": [{"role": "user", ...}, {"role": "assistant", "content": completion}]}.
  std::string jsonl(bool chat) const;
};

// Per-document seed: a splitmix64 mix of (seed, i).
uint64_t synth_doc_seed(uint64_t seed, int64_t i);

// Samples opts.n_docs documents. on_progress(docs_done, tokens_generated) is called as documents finish.
std::vector<SynthDoc> synthesize(const Model& model, const Tokenizer& tok, const SynthOptions& opts,
                                 const std::function<void(int64_t, int64_t)>& on_progress = {});

// Prompts from a file: .jsonl/.ndjson lines {"text": ...} (or {"prompt": ...}); otherwise one prompt per
// non-empty line (with "\n" escapes kept literally). Errors name file:line.
std::vector<std::string> read_prompts_file(const std::string& path);

}  // namespace zebra
