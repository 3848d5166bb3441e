#include "io/gguf.h"

#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"

namespace zebra {

static_assert(std::endian::native == std::endian::little, "GGUF is read as little-endian");

namespace {

constexpr uint32_t GGUF_MAGIC = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int GGML_MAX_DIMS = 4;
// Nested arrays deeper than this are rejected (real files nest at most once; unbounded depth would let a
// hostile file exhaust the stack).
constexpr int MAX_ARRAY_DEPTH = 8;
// Upper bound on metadata values in one file, so a file of N bytes cannot make us build ~100x N bytes of
// GgufValues. Real tokenizers hold well under a million entries.
constexpr uint64_t MAX_METADATA_VALUES = uint64_t{1} << 24;

// Smallest encoding of one value of each type: bounds element counts against the bytes left.
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::STRING: return 8;      // u64 length
    case GgufType::ARRAY: return 4 + 8;   // element type + count
  }
  return 1;
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

// Bounds-checked little-endian cursor over the file image.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path) : p_(data), size_(size), path_(path) {}

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  void set_context(std::string c) { context_ = std::move(c); }
  const std::string& context() const { return context_; }

  void need(uint64_t n, const char* what) {
    if (n > left())
      fail(path_, ": file truncated: ", what, " of ", context_, " needs ", n, " bytes at offset ", pos_,
           " but only ", left(), " remain (file size ", size_, ")");
  }

  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const uint64_t n = read<uint64_t>(what);
    if (n > left())
      fail(path_, ": ", what, " of ", context_, " has length ", n, " at offset ", pos_ - 8,
           ", past the end of the file (", left(), " bytes remain)");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  std::string context_ = "the header";
};

struct ValueParser {
  Reader& r;
  const std::string& path;
  uint64_t n_values = 0;

  GgufType read_type(const char* what) {
    const uint32_t t = r.read<uint32_t>(what);
    if (!valid_type(t))
      fail(path, ": ", r.context(), " has unknown value type ", t, " (valid types are 0..12)");
    return static_cast<GgufType>(t);
  }

  void count_values(uint64_t n) {
    n_values += n;
    if (n_values > MAX_METADATA_VALUES)
      fail(path, ": metadata holds more than ", MAX_METADATA_VALUES, " values (at ", r.context(),
           "); refusing to load it");
  }

  GgufValue read(GgufType t, int depth) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufType::U8: v.u = r.read<uint8_t>("a u8 value"); v.i = static_cast<int64_t>(v.u); break;
      case GgufType::I8: v.i = r.read<int8_t>("an i8 value"); break;
      case GgufType::U16: v.u = r.read<uint16_t>("a u16 value"); v.i = static_cast<int64_t>(v.u); break;
      case GgufType::I16: v.i = r.read<int16_t>("an i16 value"); break;
      case GgufType::U32: v.u = r.read<uint32_t>("a u32 value"); v.i = static_cast<int64_t>(v.u); break;
      case GgufType::I32: v.i = r.read<int32_t>("an i32 value"); break;
      case GgufType::U64:
        v.u = r.read<uint64_t>("a u64 value");
        // i mirrors u where it fits; as_int() rejects the rest.
        v.i = v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? static_cast<int64_t>(v.u) : 0;
        break;
      case GgufType::I64: v.i = r.read<int64_t>("an i64 value"); break;
      case GgufType::F32: v.f = r.read<float>("an f32 value"); break;
      case GgufType::F64: v.f = r.read<double>("an f64 value"); break;
      case GgufType::BOOL: {
        const uint8_t b = r.read<uint8_t>("a bool value");
        if (b > 1) fail(path, ": ", r.context(), " has bool byte ", int{b}, " at offset ", r.pos() - 1, ", expected 0 or 1");
        v.i = b;
        v.u = b;
        break;
      }
      case GgufType::STRING: v.str = r.read_string("a string value"); break;
      case GgufType::ARRAY: {
        if (depth >= MAX_ARRAY_DEPTH)
          fail(path, ": ", r.context(), " nests arrays deeper than ", MAX_ARRAY_DEPTH, " levels");
        v.array_type = read_type("an array element type");
        const uint64_t n = r.read<uint64_t>("an array length");
        const uint64_t min = min_value_bytes(v.array_type);
        if (n > r.left() / min)
          fail(path, ": ", r.context(), " declares an array of ", n, " ", gguf_type_name(v.array_type),
               " elements at offset ", r.pos() - 8, ", more than the ", r.left(), " bytes left can hold");
        count_values(n);
        v.array.reserve(static_cast<size_t>(n));
        for (uint64_t k = 0; k < n; ++k) v.array.push_back(read(v.array_type, depth + 1));
        break;
      }
    }
    return v;
  }
};

// Metadata getters share one lookup that names the file and key in every failure.
const GgufValue& require(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find_value(key);
  if (!v) fail(f.describe(), ": metadata key '", key, "' not found");
  return *v;
}

[[noreturn]] void wrong_type(const GgufFile& f, const std::string& key, const GgufValue& v, const char* expected) {
  std::string found = gguf_type_name(v.type);
  if (v.type == GgufType::ARRAY) found += cat(" of ", gguf_type_name(v.array_type));
  fail(f.describe(), ": metadata key '", key, "' has type ", found, ", expected ", expected);
}

bool is_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}

bool fits_int64(const GgufValue& v) {
  return v.type != GgufType::U64 || v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

}  // namespace

std::string gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "U8";
    case GgufType::I8: return "I8";
    case GgufType::U16: return "U16";
    case GgufType::I16: return "I16";
    case GgufType::U32: return "U32";
    case GgufType::I32: return "I32";
    case GgufType::F32: return "F32";
    case GgufType::BOOL: return "BOOL";
    case GgufType::STRING: return "STRING";
    case GgufType::ARRAY: return "ARRAY";
    case GgufType::U64: return "U64";
    case GgufType::I64: return "I64";
    case GgufType::F64: return "F64";
  }
  return cat("type(", static_cast<uint32_t>(t), ")");
}

bool GgufValue::is_integer() const { return is_integer_type(type); }

int64_t GgufValue::as_int() const {
  ZEBRA_CHECK(is_integer(), "GGUF value of type ", gguf_type_name(type), " is not an integer");
  ZEBRA_CHECK(fits_int64(*this), "GGUF u64 value ", u, " does not fit in int64");
  return i;
}

double GgufValue::as_double() const {
  if (is_float(type)) return f;
  ZEBRA_CHECK(is_integer(), "GGUF value of type ", gguf_type_name(type), " is not a number");
  return type == GgufType::U64 ? static_cast<double>(u) : static_cast<double>(i);
}

const std::string& GgufValue::as_string() const {
  ZEBRA_CHECK(type == GgufType::STRING, "GGUF value of type ", gguf_type_name(type), " is not a string");
  return str;
}

DType ggml_type_to_dtype(uint32_t ggml_type, const std::string& where) {
  switch (ggml_type) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 6: return DType::Q5_0;
    case 7: return DType::Q5_1;
    case 8: return DType::Q8_0;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 24: return DType::I8;
    case 25: return DType::I16;
    case 26: return DType::I32;
    case 27: return DType::I64;
    case 28: return DType::F64;
    case 30: return DType::BF16;
    default: break;
  }
  // Known ggml types that this reader does not decode, named so the user knows what to re-quantise.
  const char* name = nullptr;
  switch (ggml_type) {
    case 4: name = "Q4_2 (removed from ggml)"; break;
    case 5: name = "Q4_3 (removed from ggml)"; break;
    case 9: name = "Q8_1"; break;
    case 10: name = "Q2_K"; break;
    case 11: name = "Q3_K"; break;
    case 15: name = "Q8_K"; break;
    case 16: name = "IQ2_XXS"; break;
    case 17: name = "IQ2_XS"; break;
    case 18: name = "IQ3_XXS"; break;
    case 19: name = "IQ1_S"; break;
    case 20: name = "IQ4_NL"; break;
    case 21: name = "IQ3_S"; break;
    case 22: name = "IQ2_S"; break;
    case 23: name = "IQ4_XS"; break;
    case 29: name = "IQ1_M"; break;
    case 34: name = "TQ1_0"; break;
    case 35: name = "TQ2_0"; break;
    case 39: name = "MXFP4"; break;
    default: break;
  }
  if (name)
    fail(where, ": ggml tensor type ", name, " (id ", ggml_type, ") is not supported; supported: F32, F16, "
         "BF16, F64, I8, I16, I32, I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K");
  fail(where, ": unknown ggml tensor type id ", ggml_type);
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)), path_(path) {
  base_ = file_->data();
  size_ = file_->size();
  parse();
}

GgufFile::GgufFile(std::vector<uint8_t> bytes, const std::string& name) : bytes_(std::move(bytes)), path_(name) {
  base_ = bytes_.data();
  size_ = bytes_.size();
  parse();
}

void GgufFile::parse() {
  const std::string& path = path_;
  Reader r(base_, size_, path);

  // Header: magic, version, tensor count, key/value count.
  ZEBRA_CHECK(size_ >= 4, path, ": not a GGUF file: ", size_, " bytes, too short for the magic");
  const uint32_t magic = r.read<uint32_t>("the magic");
  if (magic != GGUF_MAGIC) {
    std::string got;
    for (int k = 0; k < 4; ++k) {
      const unsigned char c = base_[k];
      char buf[8];
      std::snprintf(buf, sizeof buf, (c >= 32 && c < 127) ? "%c" : "\\x%02x", c);
      got += buf;
    }
    fail(path, ": not a GGUF file: bad magic '", got, "' (expected 'GGUF')");
  }
  version_ = r.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) {
    if (version_ == 1) fail(path, ": GGUF version 1 is not supported (re-convert the model; need v2 or v3)");
    if (version_ == 0x02000000 || version_ == 0x03000000)
      fail(path, ": big-endian GGUF files are not supported (version field reads ", version_, ")");
    fail(path, ": unsupported GGUF version ", version_, " (supported: 2, 3)");
  }
  const uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  const uint64_t n_kv = r.read<uint64_t>("the metadata count");
  // Each key/value needs at least 13 bytes (key length, type, one value byte) and each tensor info 24
  // (name length, n_dims, type, offset): reject impossible counts before reserving anything.
  ZEBRA_CHECK(n_kv <= r.left() / 13, path, ": header declares ", n_kv, " metadata entries but only ", r.left(),
              " bytes follow the header");
  ZEBRA_CHECK(n_tensors <= r.left() / 24, path, ": header declares ", n_tensors, " tensors but only ",
              r.left(), " bytes follow the header");

  // Metadata.
  ValueParser vp{r, path};
  for (uint64_t k = 0; k < n_kv; ++k) {
    r.set_context(cat("metadata entry ", k));
    std::string key = r.read_string("the key");
    r.set_context(cat("metadata key '", key, "'"));
    const GgufType t = vp.read_type("the value type");
    vp.count_values(1);
    GgufValue v = vp.read(t, 0);
    if (!metadata_.emplace(key, std::move(v)).second) fail(path, ": duplicate metadata key '", key, "'");
  }

  // Alignment of the data section and of every tensor offset.
  alignment_ = 32;
  if (const GgufValue* a = find_value("general.alignment")) {
    if (!a->is_integer() || a->type == GgufType::BOOL) wrong_type(*this, "general.alignment", *a, "an integer");
    const uint64_t al = a->type == GgufType::U64 ? a->u : static_cast<uint64_t>(a->i);
    ZEBRA_CHECK(a->i >= 0 && al != 0 && (al & (al - 1)) == 0 && al <= (uint64_t{1} << 30), path,
                ": general.alignment must be a non-zero power of two (at most 2^30), found ",
                a->type == GgufType::U64 ? cat(a->u) : cat(a->i));
    alignment_ = static_cast<size_t>(al);
  }

  // Tensor infos: name, n_dims, ne[n_dims] (innermost first), ggml type, offset in the data section.
  struct Info {
    std::vector<uint64_t> ne;
    uint64_t offset;
  };
  std::vector<Info> infos;
  infos.reserve(static_cast<size_t>(n_tensors));
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    r.set_context(cat("tensor info ", k));
    TensorView view;
    view.file = path;
    view.name = r.read_string("the tensor name");
    const std::string where = cat(path, ": tensor '", view.name, "'");
    r.set_context(cat("tensor '", view.name, "'"));
    ZEBRA_CHECK(index_.find(view.name) == index_.end(), path, ": duplicate tensor name '", view.name, "'");
    const uint32_t n_dims = r.read<uint32_t>("n_dims");
    ZEBRA_CHECK(n_dims <= GGML_MAX_DIMS, where, " has ", n_dims, " dimensions, at most ", GGML_MAX_DIMS,
                " are allowed");
    Info info;
    info.ne.resize(n_dims);
    // The product of the non-zero dimensions must fit in int64: then the element count fits whatever
    // order later code multiplies the shape in (a zero dimension does not excuse huge others).
    int64_t nonzero = 1;
    bool has_zero = false;
    for (uint32_t j = 0; j < n_dims; ++j) {
      const uint64_t d = r.read<uint64_t>("a dimension");
      ZEBRA_CHECK(d <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, " has dimension ",
                  j, " = ", d, ", which does not fit in int64");
      if (d == 0) has_zero = true;
      else ZEBRA_CHECK(!__builtin_mul_overflow(nonzero, static_cast<int64_t>(d), &nonzero), where,
                       " has too many elements (the dimensions overflow int64)");
      info.ne[j] = d;
    }
    const int64_t numel = has_zero ? 0 : nonzero;
    view.dtype = ggml_type_to_dtype(r.read<uint32_t>("the ggml type"), where);
    info.offset = r.read<uint64_t>("the data offset");

    const int64_t bs = dtype_block_size(view.dtype);
    const int64_t inner = n_dims > 0 ? static_cast<int64_t>(info.ne[0]) : 1;
    ZEBRA_CHECK(inner % bs == 0, where, " has type ", dtype_name(view.dtype), " with inner dimension ne[0] = ",
                inner, ", which is not a multiple of the block size ", bs);
    ZEBRA_CHECK(info.offset % alignment_ == 0, where, " has data offset ", info.offset,
                ", which is not a multiple of the alignment ", alignment_);
    const uint64_t blocks = static_cast<uint64_t>(numel / bs), bb = static_cast<uint64_t>(dtype_block_bytes(view.dtype));
    ZEBRA_CHECK(blocks <= size_ / bb, where, " needs ", blocks, " blocks of ", bb, " bytes, more than the file size ",
                size_);
    view.nbytes = static_cast<size_t>(blocks * bb);
    for (uint32_t j = n_dims; j-- > 0;) view.shape.push_back(static_cast<int64_t>(info.ne[j]));

    index_.emplace(view.name, tensors_.size());
    tensors_.push_back(std::move(view));
    infos.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment; every tensor must lie inside the file.
  const size_t end_of_infos = r.pos();
  data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    TensorView& view = tensors_[k];
    const uint64_t off = infos[k].offset;
    const uint64_t avail = data_offset_ <= size_ ? size_ - data_offset_ : 0;
    if (data_offset_ > size_ || off > avail || view.nbytes > avail - off)
      fail(path, ": tensor '", view.name, "' data [", off, ", ", off + view.nbytes, ") of the data section at ",
           data_offset_, " extends past the end of the file (size ", size_, ")");
    view.data = base_ + data_offset_ + off;
  }
}

const GgufValue* GgufFile::find_value(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::STRING) wrong_type(*this, key, v, "STRING");
  return v.str;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_type(*this, key, v, "an integer");
  ZEBRA_CHECK(fits_int64(v), describe(), ": metadata key '", key, "' = ", v.u, " does not fit in int64");
  return v.i;
}

double GgufFile::get_double(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer() && !is_float(v.type)) wrong_type(*this, key, v, "a number");
  return v.as_double();
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::ARRAY || v.array_type != GgufType::STRING) wrong_type(*this, key, v, "ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(v.array.size());
  for (const GgufValue& e : v.array) out.push_back(e.str);
  return out;
}

std::vector<double> GgufFile::get_double_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::ARRAY || !(is_float(v.array_type) || is_integer_type(v.array_type)))
    wrong_type(*this, key, v, "an ARRAY of numbers");
  std::vector<double> out;
  out.reserve(v.array.size());
  for (const GgufValue& e : v.array) out.push_back(e.as_double());
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufType::ARRAY || !is_integer_type(v.array_type))
    wrong_type(*this, key, v, "an ARRAY of integers");
  std::vector<int64_t> out;
  out.reserve(v.array.size());
  for (const GgufValue& e : v.array) {
    ZEBRA_CHECK(fits_int64(e), describe(), ": metadata key '", key, "' holds ", e.u, ", which does not fit in int64");
    out.push_back(e.i);
  }
  return out;
}

std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  return find_value(key) ? get_string(key) : def;
}

int64_t GgufFile::get_int(const std::string& key, int64_t def) const {
  return find_value(key) ? get_int(key) : def;
}

double GgufFile::get_double(const std::string& key, double def) const {
  return find_value(key) ? get_double(key) : def;
}

const TensorView* GgufFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> GgufFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const TensorView& t : tensors_) out.push_back(t.name);
  return out;
}

}  // namespace zebra
