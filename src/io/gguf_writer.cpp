#include "io/gguf_writer.h"

#include <bit>
#include <limits>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "io/atomic_write.h"

namespace zebra {

static_assert(std::endian::native == std::endian::little, "GGUF is written little-endian");

namespace {

constexpr uint32_t GGUF_VERSION = 3;
constexpr int GGML_MAX_DIMS = 4;
constexpr size_t GGML_MAX_NAME = 64;  // ggml rejects tensor names of 64 bytes or more

GgufValue scalar_int(GgufType t, int64_t i, uint64_t u) {
  GgufValue v;
  v.type = t;
  v.i = i;
  v.u = u;
  return v;
}

template <class T>
void put(std::ostream& out, T v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof(T));
}

void put_string(std::ostream& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

void pad(std::ostream& out, size_t n) {
  static const char zeros[64] = {};
  while (n > 0) {
    const size_t k = n < sizeof zeros ? n : sizeof zeros;
    out.write(zeros, static_cast<std::streamsize>(k));
    n -= k;
  }
}

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Checks that a value (recursively) is encodable: integers within their type, array elements of the
// array's type. `where` names the key in messages.
void validate(const GgufValue& v, const std::string& where) {
  auto range = [&](int64_t lo, int64_t hi) {
    ZEBRA_CHECK(v.i >= lo && v.i <= hi, "GGUF metadata '", where, "': ", gguf_type_name(v.type), " value ", v.i,
                " is out of range [", lo, ", ", hi, "]");
  };
  auto urange = [&](uint64_t hi) {
    ZEBRA_CHECK(v.u <= hi, "GGUF metadata '", where, "': ", gguf_type_name(v.type), " value ", v.u,
                " is out of range [0, ", hi, "]");
  };
  switch (v.type) {
    case GgufType::U8: urange(0xFF); break;
    case GgufType::U16: urange(0xFFFF); break;
    case GgufType::U32: urange(0xFFFFFFFFu); break;
    case GgufType::U64: break;
    case GgufType::I8: range(-128, 127); break;
    case GgufType::I16: range(-32768, 32767); break;
    case GgufType::I32: range(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()); break;
    case GgufType::I64: case GgufType::F32: case GgufType::F64: case GgufType::STRING: break;
    case GgufType::BOOL: range(0, 1); break;
    case GgufType::ARRAY:
      for (size_t k = 0; k < v.array.size(); ++k) {
        ZEBRA_CHECK(v.array[k].type == v.array_type, "GGUF metadata '", where, "': array of ",
                    gguf_type_name(v.array_type), " holds a ", gguf_type_name(v.array[k].type), " at index ", k);
        validate(v.array[k], where);
      }
      break;
    default: fail("GGUF metadata '", where, "': unknown value type ", static_cast<uint32_t>(v.type));
  }
}

// The value without its type tag (as inside an array).
void put_value(std::ostream& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: put<uint8_t>(out, static_cast<uint8_t>(v.u)); break;
    case GgufType::I8: put<int8_t>(out, static_cast<int8_t>(v.i)); break;
    case GgufType::U16: put<uint16_t>(out, static_cast<uint16_t>(v.u)); break;
    case GgufType::I16: put<int16_t>(out, static_cast<int16_t>(v.i)); break;
    case GgufType::U32: put<uint32_t>(out, static_cast<uint32_t>(v.u)); break;
    case GgufType::I32: put<int32_t>(out, static_cast<int32_t>(v.i)); break;
    case GgufType::U64: put<uint64_t>(out, v.u); break;
    case GgufType::I64: put<int64_t>(out, v.i); break;
    case GgufType::F32: put<float>(out, static_cast<float>(v.f)); break;
    case GgufType::F64: put<double>(out, v.f); break;
    case GgufType::BOOL: put<uint8_t>(out, v.i != 0 ? 1 : 0); break;
    case GgufType::STRING: put_string(out, v.str); break;
    case GgufType::ARRAY:
      put<uint32_t>(out, static_cast<uint32_t>(v.array_type));
      put<uint64_t>(out, v.array.size());
      for (const GgufValue& e : v.array) put_value(out, e);
      break;
  }
}

}  // namespace

GgufValue gguf_u8(uint8_t v) { return scalar_int(GgufType::U8, v, v); }
GgufValue gguf_i8(int8_t v) { return scalar_int(GgufType::I8, v, 0); }
GgufValue gguf_u16(uint16_t v) { return scalar_int(GgufType::U16, v, v); }
GgufValue gguf_i16(int16_t v) { return scalar_int(GgufType::I16, v, 0); }
GgufValue gguf_u32(uint32_t v) { return scalar_int(GgufType::U32, v, v); }
GgufValue gguf_i32(int32_t v) { return scalar_int(GgufType::I32, v, 0); }
GgufValue gguf_u64(uint64_t v) {
  // As the reader: i mirrors u where it fits.
  return scalar_int(GgufType::U64, v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? static_cast<int64_t>(v) : 0, v);
}
GgufValue gguf_i64(int64_t v) { return scalar_int(GgufType::I64, v, 0); }
GgufValue gguf_bool(bool v) { return scalar_int(GgufType::BOOL, v ? 1 : 0, v ? 1 : 0); }

GgufValue gguf_f32(float v) {
  GgufValue g;
  g.type = GgufType::F32;
  g.f = v;
  return g;
}

GgufValue gguf_f64(double v) {
  GgufValue g;
  g.type = GgufType::F64;
  g.f = v;
  return g;
}

GgufValue gguf_string(std::string v) {
  GgufValue g;
  g.type = GgufType::STRING;
  g.str = std::move(v);
  return g;
}

GgufValue gguf_array(GgufType elem, std::vector<GgufValue> items) {
  GgufValue g;
  g.type = GgufType::ARRAY;
  g.array_type = elem;
  g.array = std::move(items);
  return g;
}

GgufValue gguf_string_array(const std::vector<std::string>& items) {
  std::vector<GgufValue> v;
  v.reserve(items.size());
  for (const std::string& s : items) v.push_back(gguf_string(s));
  return gguf_array(GgufType::STRING, std::move(v));
}

uint32_t dtype_to_ggml_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q5_0: return 6;
    case DType::Q5_1: return 7;
    case DType::Q8_0: return 8;
    case DType::Q4_K: return 12;
    case DType::Q5_K: return 13;
    case DType::Q6_K: return 14;
    case DType::I8: return 24;
    case DType::I16: return 25;
    case DType::I32: return 26;
    case DType::I64: return 27;
    case DType::F64: return 28;
    case DType::BF16: return 30;
    case DType::U8: case DType::BOOL: break;
  }
  fail("dtype ", dtype_name(t), " has no GGUF tensor type");
}

void GgufWriter::set(const std::string& key, GgufValue v) {
  ZEBRA_CHECK(!key.empty(), "GGUF metadata key must not be empty");
  validate(v, key);
  if (key == "general.alignment") {
    ZEBRA_CHECK(v.type == GgufType::U32 && v.u != 0 && (v.u & (v.u - 1)) == 0, "GGUF general.alignment must be ",
                "a U32 power of two, got ", gguf_type_name(v.type), " ", v.type == GgufType::U32 ? cat(v.u) : cat(v.i));
    alignment_ = static_cast<size_t>(v.u);
  }
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::copy_metadata(const GgufFile& f) {
  for (const auto& [k, v] : f.metadata()) {
    // The reader accepts any integer alignment; ggml wants a U32.
    if (k == "general.alignment" && v.type != GgufType::U32) set(k, gguf_u32(static_cast<uint32_t>(v.as_int())));
    else set(k, v);
  }
}

bool GgufWriter::has(const std::string& key) const {
  for (const auto& kv : kv_)
    if (kv.first == key) return true;
  return false;
}

void GgufWriter::erase(const std::string& key) {
  for (size_t i = 0; i < kv_.size(); ++i)
    if (kv_[i].first == key) {
      kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(i));
      if (key == "general.alignment") alignment_ = 32;
      return;
    }
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape, const void* data,
                            size_t nbytes) {
  const std::string where = cat("GGUF tensor '", name, "'");
  ZEBRA_CHECK(!name.empty() && name.size() < GGML_MAX_NAME, where, ": a name must have 1 to ", GGML_MAX_NAME - 1,
              " bytes, this one has ", name.size());
  for (const Tensor& t : tensors_) ZEBRA_CHECK(t.name != name, where, " added twice");
  dtype_to_ggml_type(type);  // throws for dtypes GGUF cannot hold
  ZEBRA_CHECK(!shape.empty() && shape.size() <= GGML_MAX_DIMS, where, " has ", shape.size(),
              " dimensions, GGUF allows 1 to ", GGML_MAX_DIMS);
  int64_t numel = 1;
  for (int64_t d : shape) {
    ZEBRA_CHECK(d >= 0, where, " has a negative dimension in ", shape_str(shape));
    ZEBRA_CHECK(!__builtin_mul_overflow(numel, d, &numel), where, ": shape ", shape_str(shape), " overflows int64");
  }
  ZEBRA_CHECK(shape.back() % dtype_block_size(type) == 0, where, " of ", dtype_name(type), " has inner dimension ",
              shape.back(), ", not a multiple of the block size ", dtype_block_size(type));
  const size_t need = dtype_row_bytes(type, numel);
  ZEBRA_CHECK(nbytes == need, where, ": shape ", shape_str(shape), " of ", dtype_name(type), " needs ", need,
              " bytes, got ", nbytes);
  ZEBRA_CHECK(data != nullptr || nbytes == 0, where, " has no data");
  tensors_.push_back({name, type, shape, static_cast<const uint8_t*>(data), nbytes, nullptr});
}

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& shape,
                            std::shared_ptr<const std::vector<uint8_t>> data) {
  ZEBRA_CHECK(data != nullptr, "GGUF tensor '", name, "' has no data");
  add_tensor(name, type, shape, data->data(), data->size());
  tensors_.back().owner = std::move(data);
}

void GgufWriter::write_to(std::ostream& out) const {
  put<uint32_t>(out, 0x46554747);  // "GGUF"
  put<uint32_t>(out, GGUF_VERSION);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(out, k);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    put_value(out, v);
  }
  // Tensor infos: offsets within the data section, each aligned.
  size_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (size_t j = t.shape.size(); j-- > 0;) put<uint64_t>(out, static_cast<uint64_t>(t.shape[j]));
    put<uint32_t>(out, dtype_to_ggml_type(t.type));
    put<uint64_t>(out, offset);
    offset = align_up(offset + t.nbytes, alignment_);
  }
  const std::streamoff header = out.tellp();
  ZEBRA_CHECK(header >= 0, "GGUF writer: cannot tell the stream position");
  pad(out, align_up(static_cast<size_t>(header), alignment_) - static_cast<size_t>(header));
  for (const Tensor& t : tensors_) {
    out.write(reinterpret_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes));
    pad(out, align_up(t.nbytes, alignment_) - t.nbytes);
  }
}

void GgufWriter::write(const std::string& path) const {
  write_file_atomic(path, [&](std::ostream& out) { write_to(out); });
}

std::string GgufWriter::to_bytes() const {
  std::ostringstream out(std::ios::binary);
  write_to(out);
  return out.str();
}

}  // namespace zebra
