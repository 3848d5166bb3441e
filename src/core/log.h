// Logging goes to stderr (results go to stdout). The verbosity is chosen once by the CLI.
#pragma once
#include <string>

#include "core/error.h"

namespace zebra {

enum class LogLevel { Quiet = 0, Info = 1, Debug = 2 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const std::string& message);

template <class... Parts>
void log_info(const Parts&... parts) {
  if (log_level() >= LogLevel::Info) log_line(LogLevel::Info, cat(parts...));
}
template <class... Parts>
void log_debug(const Parts&... parts) {
  if (log_level() >= LogLevel::Debug) log_line(LogLevel::Debug, cat(parts...));
}
// Warnings are printed unless quiet.
template <class... Parts>
void log_warn(const Parts&... parts) {
  if (log_level() >= LogLevel::Info) log_line(LogLevel::Info, cat("warning: ", parts...));
}

}  // namespace zebra
