#include "core/log.h"

#include <atomic>
#include <cstdio>

namespace zebra {

// The one process-wide setting: how chatty stderr is.
static std::atomic<int> g_log_level{static_cast<int>(LogLevel::Info)};

void set_log_level(LogLevel level) { g_log_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_log_level.load()); }

void log_line(LogLevel, const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
}

}  // namespace zebra
