#include "model/mlp.h"

#include <vector>

#include "kernels/cpu/ops.h"

namespace zebra {

void mlp_forward(const MlpWeights& w, const float* x, float* out, int64_t n, int64_t hidden, int64_t inter) {
  std::vector<float> g(n * inter), u(n * inter);
  cpu::matmul_wt(x, w.gate.ptr(), g.data(), n, hidden, inter);  // [n, inter]
  cpu::matmul_wt(x, w.up.ptr(), u.data(), n, hidden, inter);    // [n, inter]
  cpu::silu_mul(g.data(), u.data(), g.data(), n * inter);
  cpu::matmul_wt(g.data(), w.down.ptr(), out, n, inter, hidden);  // [n, hidden]
}

}  // namespace zebra
