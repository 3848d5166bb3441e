#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/atomic_write.h"

namespace zebra {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation refuses headers above 100 MB; so do we (it also bounds JSON work).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  const char* name;
  DType dtype;
  int64_t itemsize;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", DType::F32, 4}, {"F16", DType::F16, 2}, {"BF16", DType::BF16, 2}, {"F64", DType::F64, 8},
    {"I8", DType::I8, 1},   {"I16", DType::I16, 2}, {"I32", DType::I32, 4},   {"I64", DType::I64, 8},
    {"U8", DType::U8, 1},   {"BOOL", DType::BOOL, 1},
};

const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes)
    if (s == d.name) return &d;
  return nullptr;
}

const DtypeInfo* find_dtype(DType t) {
  for (const auto& d : kDtypes)
    if (t == d.dtype) return &d;
  return nullptr;
}

// A non-negative JSON integer (not a float, not a bool) as uint64; false otherwise.
bool json_uint(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
    return true;
  }
  return false;
}

std::string short_dump(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace

std::string safetensors_dtype_name(DType t) {
  const DtypeInfo* d = find_dtype(t);
  ZEBRA_CHECK(d != nullptr, "dtype ", dtype_name(t), " cannot be stored in safetensors");
  return d->name;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  file_ = std::make_unique<MappedFile>(path);
  parse(file_->data(), file_->size());
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* data, size_t size,
                                                              const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->parse(data, size);
  return f;
}

void SafetensorsFile::parse(const uint8_t* data, size_t size) {
  const std::string& p = path_;
  ZEBRA_CHECK(size >= 8, p, ": not a safetensors file: ", size, " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  const uint64_t avail = size - 8;
  ZEBRA_CHECK(header_len <= avail, p, ": safetensors header length ", header_len, " exceeds the ", avail,
              " bytes that follow it (truncated file or not safetensors)");
  ZEBRA_CHECK(header_len <= kMaxHeaderBytes, p, ": safetensors header length ", header_len,
              " is larger than the 100 MB limit");
  ZEBRA_CHECK(header_len >= 2 && data[8] == '{', p, ": safetensors header does not start with '{'");

  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hbegin, hbegin + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(p, ": safetensors header is not valid JSON: ", e.what());
  }
  ZEBRA_CHECK(header.is_object(), p, ": safetensors header must be a JSON object");

  const uint8_t* data_section = data + 8 + header_len;
  const uint64_t data_size = avail - header_len;

  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      ZEBRA_CHECK(v.is_object(), p, ": __metadata__ must be an object of strings, got ", short_dump(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        ZEBRA_CHECK(m.value().is_string(), p, ": __metadata__ entry '", m.key(), "' must be a string, got ",
                    short_dump(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    ZEBRA_CHECK(v.is_object(), p, ": tensor '", name, "': header entry must be an object, got ", short_dump(v));
    auto dt = v.find("dtype");
    ZEBRA_CHECK(dt != v.end() && dt->is_string(), p, ": tensor '", name, "': missing or non-string 'dtype'");
    const std::string dts = dt->get<std::string>();
    const DtypeInfo* info = find_dtype(dts);
    ZEBRA_CHECK(info != nullptr, p, ": tensor '", name, "': unsupported dtype '", dts,
                "' (supported: F32 F16 BF16 F64 I8 I16 I32 I64 U8 BOOL)");

    auto sh = v.find("shape");
    ZEBRA_CHECK(sh != v.end() && sh->is_array(), p, ": tensor '", name, "': missing or non-array 'shape'");
    TensorView view;
    view.name = name;
    view.dtype = info->dtype;
    view.file = p;
    // numel with overflow checks; any dimension above 2^62 cannot be real.
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      uint64_t n = 0;
      ZEBRA_CHECK(json_uint(d, &n) && n <= (uint64_t{1} << 62), p, ": tensor '", name,
                  "': shape entries must be non-negative integers, got ", short_dump(*sh));
      view.shape.push_back(static_cast<int64_t>(n));
      ZEBRA_CHECK(n == 0 || numel <= std::numeric_limits<uint64_t>::max() / n, p, ": tensor '", name,
                  "': shape ", short_dump(*sh), " has too many elements");
      numel *= n;
    }
    ZEBRA_CHECK(numel <= std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(info->itemsize), p,
                ": tensor '", name, "': shape ", short_dump(*sh), " has too many elements");
    const uint64_t nbytes = numel * static_cast<uint64_t>(info->itemsize);

    auto off = v.find("data_offsets");
    ZEBRA_CHECK(off != v.end() && off->is_array() && off->size() == 2, p, ": tensor '", name,
                "': 'data_offsets' must be an array [begin, end]");
    uint64_t begin = 0, end = 0;
    ZEBRA_CHECK(json_uint((*off)[0], &begin) && json_uint((*off)[1], &end), p, ": tensor '", name,
                "': data_offsets must be non-negative integers, got ", short_dump(*off));
    ZEBRA_CHECK(end >= begin, p, ": tensor '", name, "': data_offsets end ", end, " < begin ", begin);
    ZEBRA_CHECK(end <= data_size, p, ": tensor '", name, "': data_offsets [", begin, ", ", end,
                "] run past the data section of ", data_size, " bytes (truncated file?)");
    ZEBRA_CHECK(end - begin == nbytes, p, ": tensor '", name, "': data_offsets span ", end - begin,
                " bytes but shape ", shape_str(view.shape), " of ", dts, " needs ", nbytes);
    view.data = data_section + begin;
    view.nbytes = static_cast<size_t>(nbytes);
    ranges.push_back({begin, end, tensors_.size()});
    tensors_.push_back(std::move(view));
  }

  // Tensors must not share bytes (a writer bug would otherwise alias two weights silently).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t prev_end = 0;
  size_t prev = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    if (r.end == r.begin) continue;  // empty tensors occupy no bytes
    ZEBRA_CHECK(i == 0 || r.begin >= prev_end, p, ": tensors '", tensors_[prev].name, "' and '",
                tensors_[r.tensor].name, "' overlap in the data section");
    prev_end = r.end;
    prev = r.tensor;
  }

  // Store in file order so tensors() walks the file sequentially.
  std::vector<TensorView> ordered;
  ordered.reserve(tensors_.size());
  for (const Range& r : ranges) ordered.push_back(std::move(tensors_[r.tensor]));
  tensors_ = std::move(ordered);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [k, v] : index_) out.push_back(k);
  return out;
}

// ---------------------------------------------------------------------------------------------------

namespace {

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "cannot open ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

}  // namespace

SafetensorsDir::SafetensorsDir(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  ZEBRA_CHECK(fs::is_directory(dir, ec), dir, ": not a directory");
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";

  std::vector<std::string> shard_names;  // file names inside dir
  std::map<std::string, std::string> weight_map;
  bool have_index = fs::exists(index_path, ec);
  if (have_index) {
    const std::string ip = index_path.string();
    nlohmann::json index = read_json_file(ip);
    ZEBRA_CHECK(index.is_object(), ip, ": must be a JSON object");
    auto wm = index.find("weight_map");
    ZEBRA_CHECK(wm != index.end() && wm->is_object(), ip, ": missing or non-object 'weight_map'");
    std::set<std::string> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      ZEBRA_CHECK(it.value().is_string(), ip, ": weight_map entry '", it.key(), "' must be a file name string");
      std::string shard = it.value().get<std::string>();
      // Shards live next to the index; refuse paths that would escape the directory.
      ZEBRA_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..", ip,
                  ": weight_map entry '", it.key(), "' names '", shard, "', which is not a plain file name");
      ZEBRA_CHECK(fs::is_regular_file(root / shard, ec), ip, ": weight_map names shard '", shard,
                  "' for tensor '", it.key(), "' but ", (root / shard).string(), " does not exist");
      weight_map[it.key()] = shard;
      shards.insert(shard);
    }
    ZEBRA_CHECK(!shards.empty(), ip, ": weight_map is empty");
    shard_names.assign(shards.begin(), shards.end());
  } else if (fs::is_regular_file(root / "model.safetensors", ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    for (const auto& e : fs::directory_iterator(root, ec)) {
      if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) shard_names.push_back(e.path().filename().string());
    }
    std::sort(shard_names.begin(), shard_names.end());
    ZEBRA_CHECK(!shard_names.empty(), dir, ": no model.safetensors.index.json, model.safetensors or *.safetensors files");
  }

  for (const std::string& s : shard_names) {
    files_.push_back(std::make_unique<SafetensorsFile>((root / s).string()));
    const SafetensorsFile& f = *files_.back();
    for (const TensorView& v : f.tensors()) {
      auto [it, inserted] = index_.emplace(v.name, &v);
      ZEBRA_CHECK(inserted, dir, ": tensor '", v.name, "' appears in both ", it->second->file, " and ", v.file);
      if (have_index) {
        auto w = weight_map.find(v.name);
        ZEBRA_CHECK(w == weight_map.end() || w->second == s, dir, ": index puts tensor '", v.name, "' in '",
                    w->second, "' but it is in '", s, "'");
      }
    }
  }
  for (const auto& [name, shard] : weight_map)
    ZEBRA_CHECK(index_.count(name), dir, ": index puts tensor '", name, "' in '", shard,
                "' but that shard does not contain it");
}

std::vector<std::string> SafetensorsDir::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->describe());
  return out;
}

std::string SafetensorsDir::file_of(const std::string& name) const {
  const TensorView* v = find(name);
  return v ? v->file : std::string();
}

const TensorView* SafetensorsDir::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [k, v] : index_) out.push_back(k);
  return out;
}

// ---------------------------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       DType out_dtype, const std::map<std::string, std::string>& metadata) {
  ZEBRA_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16 || out_dtype == DType::F16, path,
              ": safetensors output dtype must be F32, BF16 or F16, got ", dtype_name(out_dtype));
  const int64_t itemsize = out_dtype == DType::F32 ? 4 : 2;
  const std::string dts = safetensors_dtype_name(out_dtype);

  // ordered_json keeps __metadata__ first and tensors in the caller's order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    ZEBRA_CHECK(!name.empty() && name != "__metadata__", path, ": invalid tensor name '", name, "'");
    ZEBRA_CHECK(seen.insert(name).second, path, ": tensor '", name, "' given twice");
    ZEBRA_CHECK(t != nullptr, path, ": tensor '", name, "' is null");
    ZEBRA_CHECK(Tensor::count(t->shape) == t->numel(), path, ": tensor '", name, "' has shape ",
                shape_str(t->shape), " but ", t->numel(), " values");
    for (int64_t d : t->shape) ZEBRA_CHECK(d >= 0, path, ": tensor '", name, "' has a negative dimension");
    const uint64_t bytes = static_cast<uint64_t>(t->numel()) * itemsize;
    header[name] = {{"dtype", dts}, {"shape", t->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string hjson = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as huggingface/safetensors does).
  hjson.append((8 - hjson.size() % 8) % 8, ' ');

  write_file_atomic(path, [&](std::ostream& out) {
    const uint64_t n = hjson.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(hjson.data(), static_cast<std::streamsize>(hjson.size()));
    std::vector<uint16_t> half;
    for (const auto& [name, t] : tensors) {
      if (out_dtype == DType::F32) {
        out.write(reinterpret_cast<const char*>(t->ptr()), static_cast<std::streamsize>(t->numel() * 4));
        continue;
      }
      constexpr int64_t kChunk = 1 << 16;  // convert in chunks to bound the extra memory
      for (int64_t i = 0; i < t->numel(); i += kChunk) {
        const int64_t n_i = std::min(kChunk, t->numel() - i);
        half.resize(static_cast<size_t>(n_i));
        for (int64_t j = 0; j < n_i; ++j)
          half[j] = out_dtype == DType::BF16 ? f32_to_bf16(t->data[i + j]) : f32_to_f16(t->data[i + j]);
        out.write(reinterpret_cast<const char*>(half.data()), static_cast<std::streamsize>(n_i * 2));
      }
    }
  });
}

}  // namespace zebra
