// Atomic file output: the content is written to a temporary file in the destination's directory,
// flushed to disk (fsync), then renamed over the destination. A crash or an exception mid-write leaves
// either the old file or nothing, never a half-written file under the final name.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace zebra {

// Calls writer(stream) on a temporary file next to `path`, then publishes it as `path`. If the writer
// throws or any I/O fails, the temporary file is removed and zebra::Error (or the writer's exception) is
// thrown; `path` is left untouched.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& writer);

// Convenience: atomically writes `bytes` to `path`.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace zebra
