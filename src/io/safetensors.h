// Hugging Face safetensors: one file (8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range within the data section, then the data section), a directory of
// shards with model.safetensors.index.json, and an atomic writer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"
#include "io/tensor_view.h"

namespace zebra {

class SafetensorsFile : public TensorSource {
 public:
  // Maps and parses the file; throws zebra::Error naming the path and the offending tensor/field.
  explicit SafetensorsFile(const std::string& path);
  // Parses bytes already in memory (not copied: they must outlive the object). `name` is used in error
  // messages. Same validation code path as the file constructor (used by the fuzzer and tests).
  static std::unique_ptr<SafetensorsFile> from_memory(const uint8_t* data, size_t size, const std::string& name);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensors in file order (ascending data offset).
  const std::vector<TensorView>& tensors() const { return tensors_; }

  const TensorView* find(const std::string& name) const override;
  std::vector<std::string> names() const override;  // sorted
  std::string describe() const override { return path_; }

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* data, size_t size);

  std::unique_ptr<MappedFile> file_;
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
};

// A Hugging Face model directory: model.safetensors.index.json (weight_map: tensor -> shard file), else
// model.safetensors, else every *.safetensors in the directory (sorted by name). A tensor name may occur
// only once across all files.
class SafetensorsDir : public TensorSource {
 public:
  explicit SafetensorsDir(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // The shard files opened, in the order they were opened (sorted by file name).
  std::vector<std::string> files() const;
  // The file holding tensor `name` ("" if absent).
  std::string file_of(const std::string& name) const;

  const TensorView* find(const std::string& name) const override;
  std::vector<std::string> names() const override;  // sorted
  std::string describe() const override { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Writes `tensors` (in the given order) to one safetensors file, converting fp32 data to out_dtype
// (F32, BF16 with round-to-nearest-even, or F16). The header is padded with spaces to a multiple of 8
// bytes as the reference implementation does, so every tensor's data is 8-byte aligned within the file
// when tensor sizes allow it. metadata goes into "__metadata__" (omitted when empty). The file is written
// atomically (temporary file + fsync + rename). Throws on duplicate or empty names, shape/data mismatch.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       DType out_dtype, const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string ("F32", "BF16", ...) of a plain dtype; throws for block formats.
std::string safetensors_dtype_name(DType t);

}  // namespace zebra
