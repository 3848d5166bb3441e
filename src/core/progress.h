// Progress for long work: a bar with rate and ETA on a terminal, a periodic plain line otherwise.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace zebra {

class Progress {
 public:
  // label: what is counted ("tokens", "windows"); total: how many units in all (0 = unknown).
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();
  void update(int64_t done);  // absolute count of finished units
  void add(int64_t n) { update(done_ + n); }
  void finish();

 private:
  void draw(bool final);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool tty_, finished_ = false, enabled_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace zebra
