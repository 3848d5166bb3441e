#include "support.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace zebra::test {

namespace fs = std::filesystem;

std::string source_dir() { return ZEBRA_SOURCE_DIR; }
std::string fixture(const std::string& rel) { return source_dir() + "/tests/fixtures/" + rel; }

bool file_exists(const std::string& path) { return fs::exists(path); }

std::string shared_asset(const std::string& rel) {
  std::string p = source_dir() + "/../shared/assets/" + rel;
  return fs::exists(p) ? p : "";
}

std::string smollm_gguf() {
  std::string p = source_dir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  return fs::exists(p) ? p : "";
}

std::string zebra_binary() { return ZEBRA_BINARY; }

std::string temp_dir() {
  static std::atomic<int> counter{0};
  fs::path base = fs::temp_directory_path() /
                  ("zebra-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(base);
  fs::create_directories(base);
  return base.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected zebra::Error";
  return "";
}

int run_command(const std::string& cmd, std::string* out, std::string* err) {
  std::string errfile = temp_dir() + "/stderr.txt";
  std::string full = cmd + " 2>" + errfile + " </dev/null";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::string result;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.append(buf.data(), n);
  int status = pclose(pipe);
  if (out) *out = result;
  if (err) *err = read_file(errfile);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

CliRun zebra_cli(const std::string& args) {
  CliRun r;
  r.status = run_command(zebra_binary() + " " + args, &r.out, &r.err);
  return r;
}

}  // namespace zebra::test
