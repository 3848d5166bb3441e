// Tokenizers from GGUF metadata (tokenizer.ggml.*), as llama.cpp's converters write them.
#pragma once
#include <memory>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace zebra {

// tokenizer.ggml.model must be "gpt2" (byte-level BPE); throws zebra::Error naming the key otherwise.
BpeVocabSpec bpe_spec_from_gguf(const GgufFile& gguf);
// Any supported GGUF vocabulary: "gpt2" -> byte-level BPE, "llama" -> SentencePiece-style BPE.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& gguf);

}  // namespace zebra
