// Zero-shot task files: JSONL, one item per line, in the three schemas of the shared benchmarks
// (../shared/assets/MANIFEST.md). Every item becomes a list of (context, continuation) texts to score:
//   multiple choice    {"query": str, "choices": [str, ...], "gold": int}   one request per choice
//   partial scoring    {"context_options": [str, ...], "continuation": str, "gold": int}  (WinoGrande)
//                                                                          one request per context option
//   language modelling {"context": str, "continuation": str}  (LAMBADA)    one request
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace zebra {

enum class TaskSchema { MultipleChoice, PartialScoring, LanguageModelling };
const char* task_schema_name(TaskSchema s);

struct TaskItem {
  int64_t line = 0;                        // 1-based line in the file, for messages
  std::vector<std::string> contexts;       // [n_requests] text before the continuation
  std::vector<std::string> continuations;  // [n_requests] scored text, as stored (no delimiter)
  int64_t gold = -1;                       // index of the right request; -1 for language modelling
};

struct Task {
  std::string name, path;
  TaskSchema schema = TaskSchema::MultipleChoice;
  std::vector<TaskItem> items;
  int64_t skipped_lines = 0;  // malformed lines dropped under BadLinePolicy::Skip
};

// What to do with a line that is not a valid item: stop with an error naming file:line, or warn and
// skip it.
enum class BadLinePolicy { Stop, Skip };

// Reads and validates a task file. Blank lines are ignored. Throws zebra::Error for a missing or empty
// file, and (under Stop) for the first bad line: malformed JSON, keys of no known schema, a schema other
// than the file's first item's, wrong value types, no choices or an empty choice string, gold out of range.
Task load_task_file(const std::string& name, const std::string& path, BadLinePolicy policy);

// The tasks of the shared benchmarks directory, by name: <name>.jsonl there.
const std::vector<std::string>& known_task_names();

}  // namespace zebra
