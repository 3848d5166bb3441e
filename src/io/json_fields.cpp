#include "io/json_fields.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <limits>

#include "core/error.h"

namespace zebra {

using json = nlohmann::json;

const json* json_member(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t json_int(const json& v, const std::string& where, const std::string& field) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      ZEBRA_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), where, ": field '", field,
                  "' is too large: ", u);
      return static_cast<int64_t>(u);
    }
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    // |d| < 9e15 keeps the value exactly representable and the cast defined.
    ZEBRA_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15, where, ": field '", field,
                "' must be an integer, got ", d);
    return static_cast<int64_t>(d);
  }
  fail(where, ": field '", field, "' must be an integer, got ", v.type_name(), " ", v.dump());
}

double json_double(const json& v, const std::string& where, const std::string& field) {
  ZEBRA_CHECK(v.is_number(), where, ": field '", field, "' must be a number, got ", v.type_name(), " ", v.dump());
  double d = v.get<double>();
  ZEBRA_CHECK(std::isfinite(d), where, ": field '", field, "' must be finite, got ", d);
  return d;
}

int64_t json_required_int(const json& j, const char* key, const std::string& where, const std::string& prefix) {
  const json* v = json_member(j, key);
  ZEBRA_CHECK(v != nullptr, where, ": field '", prefix, key, "' is missing");
  return json_int(*v, where, prefix + key);
}

int64_t json_optional_int(const json& j, const char* key, int64_t def, const std::string& where,
                          const std::string& prefix) {
  const json* v = json_member(j, key);
  return v ? json_int(*v, where, prefix + key) : def;
}

double json_required_double(const json& j, const char* key, const std::string& where, const std::string& prefix) {
  const json* v = json_member(j, key);
  ZEBRA_CHECK(v != nullptr, where, ": field '", prefix, key, "' is missing");
  return json_double(*v, where, prefix + key);
}

double json_optional_double(const json& j, const char* key, double def, const std::string& where,
                            const std::string& prefix) {
  const json* v = json_member(j, key);
  return v ? json_double(*v, where, prefix + key) : def;
}

bool json_optional_bool(const json& j, const char* key, bool def, const std::string& where,
                        const std::string& prefix) {
  const json* v = json_member(j, key);
  if (!v) return def;
  ZEBRA_CHECK(v->is_boolean(), where, ": field '", prefix, key, "' must be true or false, got ", v->type_name(), " ",
              v->dump());
  return v->get<bool>();
}

std::string json_optional_string(const json& j, const char* key, const std::string& where,
                                 const std::string& prefix) {
  const json* v = json_member(j, key);
  if (!v) return "";
  ZEBRA_CHECK(v->is_string(), where, ": field '", prefix, key, "' must be a string, got ", v->type_name(), " ",
              v->dump());
  return v->get<std::string>();
}

nlohmann::json read_json_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "cannot open ", what, " ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

}  // namespace zebra
