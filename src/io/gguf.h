// GGUF v2/v3 reader (llama.cpp's model file): metadata key/values of every type (nested arrays too),
// tensor infos with alignment, and the tensors as TensorViews into the memory-mapped file.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_view.h"

namespace zebra {

// GGUF metadata value types, numbered as in the file format.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::U8;
  // Scalars are widened: integers (and bool) into i64/u64, floats into f64.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string str;
  GgufType array_type = GgufType::U8;  // element type when type == ARRAY
  std::vector<GgufValue> array;

  bool is_integer() const;  // any integer type or bool
  int64_t as_int() const;   // throws zebra::Error if not an integer
  double as_double() const; // integers or floats
  const std::string& as_string() const;
};

class GgufFile : public TensorSource {
 public:
  explicit GgufFile(const std::string& path);  // parses and validates; throws zebra::Error with context
  // Parses an in-memory image (the fuzzer, tests); `name` stands in for the path in messages. The same
  // parser as the file constructor; the object keeps the bytes and its views point into them.
  GgufFile(std::vector<uint8_t> bytes, const std::string& name);

  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find_value(const std::string& key) const;  // nullptr if absent
  // Typed getters: throw zebra::Error naming the file and key if absent or of the wrong type.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_double_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  // Getters with a default when the key is absent (still throw on a wrong type).
  std::string get_string(const std::string& key, const std::string& def) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_double(const std::string& key, double def) const;

  // TensorSource: names are the GGUF names ("blk.0.attn_q.weight"); shapes are reversed ne[] (outermost
  // first), so a GGUF linear weight with ne = [in, out] has shape [out, in].
  const TensorView* find(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return path_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }

 private:
  void parse();  // fills everything below from base_/size_

  std::unique_ptr<MappedFile> file_;   // set when reading a file
  std::vector<uint8_t> bytes_;         // set when parsing an in-memory image
  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  size_t alignment_ = 32, data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
};

// "U32", "STRING", ... for messages; unknown ids print as "type(N)".
std::string gguf_type_name(GgufType t);

// GGML tensor type id (as stored in GGUF tensor infos) to DType; throws for unsupported ids with the id.
DType ggml_type_to_dtype(uint32_t ggml_type, const std::string& where);

}  // namespace zebra
