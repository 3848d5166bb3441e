#include "eval/task_file.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/log.h"

namespace zebra {

const char* task_schema_name(TaskSchema s) {
  switch (s) {
    case TaskSchema::MultipleChoice: return "multiple choice";
    case TaskSchema::PartialScoring: return "partial scoring";
    case TaskSchema::LanguageModelling: return "language modelling";
  }
  return "?";
}

const std::vector<std::string>& known_task_names() {
  static const std::vector<std::string> names = {"arc_easy",    "arc_challenge",  "piqa",  "openbook_qa",
                                                 "winogrande",  "lambada_openai", "boolq", "siqa",
                                                 "copa",        "commonsense_qa"};
  return names;
}

namespace {

using nlohmann::json;

// A string field; `where` is "file:line" for messages.
std::string string_field(const json& j, const char* key, const std::string& where) {
  ZEBRA_CHECK(j[key].is_string(), where, ": '", key, "' must be a string, got ", j[key].type_name());
  return j[key].get<std::string>();
}

std::vector<std::string> string_list_field(const json& j, const char* key, const std::string& where) {
  const json& a = j[key];
  ZEBRA_CHECK(a.is_array(), where, ": '", key, "' must be a list of strings, got ", a.type_name());
  ZEBRA_CHECK(!a.empty(), where, ": '", key, "' is empty (expected at least one)");
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    ZEBRA_CHECK(a[i].is_string(), where, ": ", key, "[", i, "] must be a string, got ", a[i].type_name());
    out.push_back(a[i].get<std::string>());
  }
  return out;
}

int64_t gold_field(const json& j, size_t n_options, const char* options_key, const std::string& where) {
  ZEBRA_CHECK(j["gold"].is_number_integer(), where, ": 'gold' must be an integer, got ", j["gold"].type_name());
  int64_t gold = j["gold"].get<int64_t>();
  ZEBRA_CHECK(gold >= 0 && gold < static_cast<int64_t>(n_options), where, ": gold ", gold, " is out of range for ",
              n_options, " ", options_key, " (expected 0..", n_options - 1, ")");
  return gold;
}

TaskSchema detect_schema(const json& j, const std::string& where) {
  ZEBRA_CHECK(j.is_object(), where, ": expected a JSON object, got ", j.type_name());
  if (j.contains("query") && j.contains("choices") && j.contains("gold")) return TaskSchema::MultipleChoice;
  if (j.contains("context_options") && j.contains("continuation") && j.contains("gold"))
    return TaskSchema::PartialScoring;
  if (j.contains("context") && j.contains("continuation")) return TaskSchema::LanguageModelling;
  fail(where, ": the item has none of the known key sets: {query, choices, gold} (multiple choice), "
       "{context_options, continuation, gold} (partial scoring) or {context, continuation} (language modelling)");
}

TaskItem parse_item(const json& j, TaskSchema schema, const std::string& where) {
  TaskItem item;
  switch (schema) {
    case TaskSchema::MultipleChoice: {
      std::string query = string_field(j, "query", where);
      item.continuations = string_list_field(j, "choices", where);
      for (size_t i = 0; i < item.continuations.size(); ++i)
        ZEBRA_CHECK(!item.continuations[i].empty(), where, ": choices[", i, "] is an empty string");
      item.contexts.assign(item.continuations.size(), query);
      item.gold = gold_field(j, item.continuations.size(), "choices", where);
      break;
    }
    case TaskSchema::PartialScoring: {
      item.contexts = string_list_field(j, "context_options", where);
      std::string cont = string_field(j, "continuation", where);
      ZEBRA_CHECK(!cont.empty(), where, ": 'continuation' is an empty string");
      item.continuations.assign(item.contexts.size(), cont);
      item.gold = gold_field(j, item.contexts.size(), "context_options", where);
      break;
    }
    case TaskSchema::LanguageModelling: {
      item.contexts = {string_field(j, "context", where)};
      item.continuations = {string_field(j, "continuation", where)};
      ZEBRA_CHECK(!item.continuations[0].empty(), where, ": 'continuation' is an empty string");
      break;
    }
  }
  return item;
}

}  // namespace

Task load_task_file(const std::string& name, const std::string& path, BadLinePolicy policy) {
  std::ifstream in(path, std::ios::binary);
  ZEBRA_CHECK(in.good(), "task '", name, "': cannot open ", path);
  Task task;
  task.name = name, task.path = path;
  bool have_schema = false;
  std::string text;
  for (int64_t line_no = 1; std::getline(in, text); ++line_no) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    try {
      json j;
      try {
        j = json::parse(text);
      } catch (const json::parse_error& e) {
        fail(where, ": not valid JSON (", e.what(), ")");
      }
      TaskSchema schema = detect_schema(j, where);
      if (!have_schema) {
        task.schema = schema, have_schema = true;
      } else {
        ZEBRA_CHECK(schema == task.schema, where, ": a ", task_schema_name(schema), " item in a file of ",
                    task_schema_name(task.schema), " items");
      }
      TaskItem item = parse_item(j, schema, where);
      item.line = line_no;
      task.items.push_back(std::move(item));
    } catch (const Error& e) {
      if (policy == BadLinePolicy::Stop) throw Error(std::string(e.what()) + " (--on-bad-line skip to skip such lines)");
      log_warn(e.what(), "; skipped");
      task.skipped_lines += 1;
    }
  }
  ZEBRA_CHECK(!task.items.empty(), "task '", name, "': ", path, " has no valid items");
  return task;
}

}  // namespace zebra
