#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/log.h"

namespace zebra {

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
  tty_ = isatty(STDERR_FILENO);
  enabled_ = log_level() >= LogLevel::Info;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(int64_t done) {
  done_ = done;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  // Redraw a terminal bar at most 10x a second; print a plain line every 10 s when not a terminal.
  if ((tty_ && since >= 0.1) || (!tty_ && since >= 10.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

static std::string format_seconds(double s) {
  char buf[32];
  if (s < 0 || s > 1e7) return "?";
  int total = static_cast<int>(s + 0.5);
  std::snprintf(buf, sizeof buf, "%d:%02d", total / 60, total % 60);
  return buf;
}

void Progress::draw(bool final) {
  if (!enabled_) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  double eta = (total_ > 0 && rate > 0) ? (total_ - done_) / rate : -1;
  if (tty_) {
    const int width = 30;
    int filled = total_ > 0 ? static_cast<int>(width * static_cast<double>(done_) / total_) : 0;
    if (filled > width) filled = width;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %s, %.1f %s/s, %s %s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(), rate,
                 unit_.c_str(), final ? "elapsed" : "ETA", format_seconds(final ? elapsed : eta).c_str());
    if (final) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "%s: %lld/%lld %s, %.1f %s/s, %s %s\n", label_.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(), rate,
                 unit_.c_str(), final ? "elapsed" : "ETA", format_seconds(final ? elapsed : eta).c_str());
  }
  std::fflush(stderr);
}

}  // namespace zebra
