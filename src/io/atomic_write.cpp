#include "io/atomic_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace zebra {

namespace {

// fsync a path opened read-only (works for regular files and, on Linux, directories).
bool fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer) {
  namespace fs = std::filesystem;
  fs::path target(path);
  ZEBRA_CHECK(!target.filename().empty(), "cannot write '", path, "': not a file name");
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  ZEBRA_CHECK(fs::is_directory(dir, ec), "cannot write ", path, ": directory ", dir.string(),
              " does not exist");

  // mkstemp gives a unique name in the same directory (same file system, so rename is atomic).
  std::string tmp_name(".");  // built piecewise: GCC 12 warns falsely on "." + std::string
  tmp_name += target.filename().string();
  tmp_name += ".tmp.XXXXXX";
  std::string tmpl = (dir / tmp_name).string();
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkstemp(name.data());
  ZEBRA_CHECK(fd >= 0, "cannot create a temporary file for ", path, ": ", std::strerror(errno));
  ::close(fd);
  std::string tmp(name.data());
  // mkstemp creates 0600; give the file the usual permissions (umask applies to 0666).
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::chmod(tmp.c_str(), 0666 & ~mask);

  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      ZEBRA_CHECK(out.good(), "cannot open temporary file ", tmp, " for ", path);
      writer(out);
      out.flush();
      ZEBRA_CHECK(out.good(), "write error while writing ", path, " (disk full?)");
      out.close();
      ZEBRA_CHECK(!out.fail(), "write error while closing ", path);
    }
    ZEBRA_CHECK(fsync_path(tmp, false), "cannot flush ", tmp, " to disk: ", std::strerror(errno));
    ZEBRA_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path, ": ",
                std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; failure here is not fatal (the data is already complete).
  fsync_path(dir.string(), true);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

}  // namespace zebra
