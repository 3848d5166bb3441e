// Errors with context. Every failure a user can cause (bad file, bad flag, bad tensor) is reported by
// throwing zebra::Error with a message that names the file/tensor/field and what was expected; the CLI
// catches it at the top, prints it on stderr and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace zebra {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates its arguments with operator<< into one message.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(cat(parts...));
}

}  // namespace zebra

// ZEBRA_CHECK(cond, "file ", path, ": expected ...") throws zebra::Error with the message if !cond.
#define ZEBRA_CHECK(cond, ...)                       \
  do {                                               \
    if (!(cond)) ::zebra::fail(__VA_ARGS__);         \
  } while (0)
