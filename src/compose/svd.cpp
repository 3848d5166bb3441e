#include "compose/svd.h"

#include <lapacke.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace zebra {

Svd thin_svd(const std::vector<double>& a, int64_t m, int64_t n, const char* what) {
  ZEBRA_CHECK(m > 0 && n > 0 && static_cast<int64_t>(a.size()) == m * n, "SVD of ", what, ": bad matrix ", m, " x ",
              n, " with ", a.size(), " values");
  Svd r;
  r.m = m, r.n = n, r.k = std::min(m, n);
  r.U.assign(m * r.k, 0.0);
  r.S.assign(r.k, 0.0);
  r.Vt.assign(r.k * n, 0.0);
  std::vector<double> work = a;  // dgesdd destroys its input
  lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', static_cast<lapack_int>(m), static_cast<lapack_int>(n),
                                   work.data(), static_cast<lapack_int>(n), r.S.data(), r.U.data(),
                                   static_cast<lapack_int>(r.k), r.Vt.data(), static_cast<lapack_int>(n));
  ZEBRA_CHECK(info == 0, "SVD of ", what, " (", m, " x ", n, ") failed: LAPACK dgesdd returned ", info,
              info > 0 ? " (did not converge; non-finite weights?)" : " (bad argument)");
  return r;
}

int64_t energy_rank(const std::vector<double>& s, double delta, int64_t divisor) {
  ZEBRA_CHECK(!s.empty(), "energy rank: no singular values");
  ZEBRA_CHECK(delta > 0 && delta <= 1, "energy ratio must be in (0, 1], got ", delta);
  ZEBRA_CHECK(divisor > 0, "energy rank: rank divisor must be positive, got ", divisor);
  double total = 0;
  for (double v : s) total += v * v;
  int64_t r = 0;
  if (total > 0) {
    double cum = 0;
    for (double v : s) {
      cum += v * v;
      if (cum / total <= delta) ++r;
      else break;  // the ratio only grows
    }
  }
  r = std::max<int64_t>(r, 1);
  r = (r + divisor - 1) / divisor * divisor;
  return std::min<int64_t>(r, static_cast<int64_t>(s.size()));
}

}  // namespace zebra
