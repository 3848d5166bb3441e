// Shared helpers for tests: where the fixtures, the shared assets and the downloaded model live.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace zebra::test {

std::string source_dir();                         // the repository root
std::string fixture(const std::string& rel);      // tests/fixtures/<rel>
std::string shared_asset(const std::string& rel); // ../shared/assets/<rel>, "" if absent
std::string smollm_gguf();                        // models/SmolLM2-135M-Instruct.Q4_1.gguf, "" if absent
std::string zebra_binary();                       // path of the built CLI
std::string temp_dir();                           // a fresh directory under the build tree
bool file_exists(const std::string& path);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);

// Runs f and returns the zebra::Error message it throws (a test failure if it throws none).
std::string error_message(const std::function<void()>& f);

// Runs a shell command, returns its exit status; stdout and stderr are captured into out/err.
int run_command(const std::string& cmd, std::string* out, std::string* err = nullptr);

// Runs the zebra CLI with `args`: its exit status, stdout and stderr.
struct CliRun {
  int status;
  std::string out, err;
};
CliRun zebra_cli(const std::string& args);

}  // namespace zebra::test

#define ZEBRA_REQUIRE_ASSET(var, rel)                                                          \
  std::string var = ::zebra::test::shared_asset(rel);                                          \
  if (var.empty()) GTEST_SKIP() << "skipped: ../shared/assets/" << rel                         \
                                << " not found (a clone outside the workplace has no ../shared)"

#define ZEBRA_REQUIRE_SMOLLM(var)                                                              \
  std::string var = ::zebra::test::smollm_gguf();                                              \
  if (var.empty()) GTEST_SKIP() << "skipped: models/SmolLM2-135M-Instruct.Q4_1.gguf not found " \
                                   "(run scripts/fetch_models.sh)"
