// The activation arena of a training step: one allocation, planned up front from the floats each layer's
// training forward says it will save (mla_activation_floats, mamba2_activation_floats, ...), handed out as
// slices during the forward and released all at once by reset() before the next step. No allocation
// happens inside a step, and the CUDA trainer can plan its device buffer the same way.
// A core facility (not train/'s): model/'s layers take their saved activations from it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace zebra {

class Arena {
 public:
  // Allocates room for `floats` values (keeps the larger of this and any earlier plan).
  void plan(int64_t floats) {
    if (floats > static_cast<int64_t>(buf_.size())) buf_.assign(static_cast<size_t>(floats), 0.0f);
  }
  // The next n floats (uninitialised from an earlier step). Throws when the plan was too small: that is a
  // bug in some *_activation_floats, never a reason to reallocate (pointers already handed out stay valid).
  float* take(int64_t n, const char* what) {
    ZEBRA_CHECK(n >= 0 && used_ + n <= static_cast<int64_t>(buf_.size()), "activation arena: '", what, "' needs ",
                n, " floats but only ", static_cast<int64_t>(buf_.size()) - used_, " of ",
                static_cast<int64_t>(buf_.size()), " are left (the plan is too small)");
    float* p = buf_.data() + used_;
    used_ += n;
    return p;
  }
  void reset() { used_ = 0; }
  int64_t used() const { return used_; }
  int64_t capacity() const { return static_cast<int64_t>(buf_.size()); }

 private:
  std::vector<float> buf_;
  int64_t used_ = 0;
};

}  // namespace zebra
