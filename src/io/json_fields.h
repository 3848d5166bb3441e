// Typed readers for fields of a parsed JSON object (config.json, hybrid_config.json, ...). Absent and
// null members count as missing. Errors name `where` (usually the file path), the field and what was
// expected vs found, e.g. "cfg.json: field 'rope_scaling.factor' must be a number, got string "2"".
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace zebra {

// A present, non-null member of `j`, or nullptr.
const nlohmann::json* json_member(const nlohmann::json& j, const char* key);

// An integer: JSON integers, or floats with an integral value (some exporters write 2048.0).
// `field` names the value in errors.
int64_t json_int(const nlohmann::json& v, const std::string& where, const std::string& field);
// A finite number.
double json_double(const nlohmann::json& v, const std::string& where, const std::string& field);

// Member readers: `prefix` is prepended to `key` in errors (e.g. "rope_scaling." for a nested dict).
// The optional ones return `def` (or "" for strings) when the member is absent or null.
int64_t json_required_int(const nlohmann::json& j, const char* key, const std::string& where,
                          const std::string& prefix = "");
int64_t json_optional_int(const nlohmann::json& j, const char* key, int64_t def, const std::string& where,
                          const std::string& prefix = "");
double json_required_double(const nlohmann::json& j, const char* key, const std::string& where,
                            const std::string& prefix = "");
double json_optional_double(const nlohmann::json& j, const char* key, double def, const std::string& where,
                            const std::string& prefix = "");
bool json_optional_bool(const nlohmann::json& j, const char* key, bool def, const std::string& where,
                        const std::string& prefix = "");
std::string json_optional_string(const nlohmann::json& j, const char* key, const std::string& where,
                                 const std::string& prefix = "");

// Reads and parses a whole JSON file; `what` names it in errors ("HF config", "hybrid config").
nlohmann::json read_json_file(const std::string& path, const char* what);

}  // namespace zebra
