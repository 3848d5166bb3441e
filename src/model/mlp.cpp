#include "model/mlp.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cpu/grad_ops.h"
#include "kernels/cpu/ops.h"

namespace zebra {

namespace {

void check_shape(const Tensor& t, int64_t rows, int64_t cols, const std::string& what) {
  ZEBRA_CHECK(t.rank() == 2 && t.dim(0) == rows && t.dim(1) == cols, "MLP ", what, ": expected [", rows, ", ", cols,
              "], got ", shape_str(t.shape));
}

void check_weights(const MlpWeights& w, int64_t hidden, int64_t inter, const char* which) {
  check_shape(w.gate, inter, hidden, std::string(which) + " gate");
  check_shape(w.up, inter, hidden, std::string(which) + " up");
  check_shape(w.down, hidden, inter, std::string(which) + " down");
}

}  // namespace

void mlp_forward(const MlpWeights& w, const float* x, float* out, int64_t n, int64_t hidden, int64_t inter) {
  std::vector<float> g(n * inter), u(n * inter);
  cpu::matmul_wt(x, w.gate.ptr(), g.data(), n, hidden, inter);  // [n, inter]
  cpu::matmul_wt(x, w.up.ptr(), u.data(), n, hidden, inter);    // [n, inter]
  cpu::silu_mul(g.data(), u.data(), g.data(), n * inter);
  cpu::matmul_wt(g.data(), w.down.ptr(), out, n, inter, hidden);  // [n, hidden]
}

int64_t mlp_activation_floats(int64_t n, int64_t inter) { return 2 * n * inter; }

void mlp_train_forward(const MlpWeights& w, const float* x, float* out, int64_t n, int64_t hidden, int64_t inter,
                       float* gate_act, float* up_act) {
  check_weights(w, hidden, inter, "weight");
  cpu::matmul_wt(x, w.gate.ptr(), gate_act, n, hidden, inter);  // [n, inter], saved
  cpu::matmul_wt(x, w.up.ptr(), up_act, n, hidden, inter);      // [n, inter], saved
  // h = silu(g) * u is cheap to recompute, so it is a step-local temporary rather than a third saved tensor.
  std::vector<float> h(n * inter);
  cpu::silu_mul(gate_act, up_act, h.data(), n * inter);
  cpu::matmul_wt(h.data(), w.down.ptr(), out, n, inter, hidden);  // [n, hidden]
}

void mlp_backward(const MlpWeights& w, const float* x, const float* gate_act, const float* up_act, const float* dout,
                  int64_t n, int64_t hidden, int64_t inter, float* dx, MlpWeights& grad) {
  check_weights(w, hidden, inter, "weight");
  check_weights(grad, hidden, inter, "gradient");
  const int64_t m = n * inter;
  std::vector<float> h(m), dh(m, 0.0f), du(m, 0.0f);
  cpu::silu_mul(gate_act, up_act, h.data(), m);  // h [n, inter], as in the forward
  // out = h · down^T:  dh = dout · down;  d(down) += dout^T · h
  cpu::linear_backward(h.data(), w.down.ptr(), dout, n, inter, hidden, dh.data(), grad.down.ptr());
  // h = silu(g) * u: h's buffer is free now and becomes dg.
  float* dg = h.data();
  std::fill(h.begin(), h.end(), 0.0f);
  cpu::silu_mul_backward(gate_act, up_act, dh.data(), m, dg, du.data());
  // g = x · gate^T, u = x · up^T: both feed dx.
  cpu::linear_backward(x, w.gate.ptr(), dg, n, hidden, inter, dx, grad.gate.ptr());
  cpu::linear_backward(x, w.up.ptr(), du.data(), n, hidden, inter, dx, grad.up.ptr());
}

}  // namespace zebra
