// GGUF v3 writer: metadata of every value type (nested arrays too) and tensors of any dtype GGUF can hold,
// laid out as ggml and gguf-py do (tensor data aligned to general.alignment, default 32, each tensor padded
// to it), written atomically (io/atomic_write.h). What GgufFile reads back is what was added.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"

namespace zebra {

// Metadata values for GgufWriter::set.
GgufValue gguf_u8(uint8_t v);
GgufValue gguf_i8(int8_t v);
GgufValue gguf_u16(uint16_t v);
GgufValue gguf_i16(int16_t v);
GgufValue gguf_u32(uint32_t v);
GgufValue gguf_i32(int32_t v);
GgufValue gguf_u64(uint64_t v);
GgufValue gguf_i64(int64_t v);
GgufValue gguf_f32(float v);
GgufValue gguf_f64(double v);
GgufValue gguf_bool(bool v);
GgufValue gguf_string(std::string v);
// An array of `elem` values (each of that type; nested arrays are ARRAY values).
GgufValue gguf_array(GgufType elem, std::vector<GgufValue> items);
GgufValue gguf_string_array(const std::vector<std::string>& items);

// DType to the GGML tensor type id stored in a tensor info (the inverse of ggml_type_to_dtype); throws
// for dtypes GGUF has no id for (U8, BOOL).
uint32_t dtype_to_ggml_type(DType t);

class GgufWriter {
 public:
  // Adds or replaces metadata key `key` (keys keep the order of their first set). "general.alignment"
  // must be a U32 power of two; it sets the data layout.
  void set(const std::string& key, GgufValue v);
  // Every key/value of `f`, in its (sorted) order.
  void copy_metadata(const GgufFile& f);
  bool has(const std::string& key) const;
  void erase(const std::string& key);

  // A tensor of `shape` (outermost first, as TensorView: a linear weight [out, in]) whose data is nbytes =
  // dtype_row_bytes(type, numel) bytes at `data`. The bytes are not copied: they must stay valid until
  // write() or to_bytes() returns. Throws on a duplicate or over-long name, more than 4 dimensions, an
  // inner dimension that is not a multiple of the block size, or a size mismatch.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape, const void* data,
                  size_t nbytes);
  // The same, keeping `data` alive in the writer.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                  std::shared_ptr<const std::vector<uint8_t>> data);

  size_t alignment() const { return alignment_; }
  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file atomically: `path` holds either its old content or the whole new file.
  void write(const std::string& path) const;
  // The file image in memory (tests, small files).
  std::string to_bytes() const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    const uint8_t* data;
    size_t nbytes;
    std::shared_ptr<const std::vector<uint8_t>> owner;
  };
  void write_to(std::ostream& out) const;

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
  size_t alignment_ = 32;
};

}  // namespace zebra
