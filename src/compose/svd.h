// Thin SVD in double precision (LAPACK dgesdd) and the energy-ratio rank rule (spec §2.1).
#pragma once
#include <cstdint>
#include <vector>

namespace zebra {

// A = U diag(S) Vt for a row-major m x n matrix A, k = min(m, n): U is m x k, S has k values
// (descending), Vt is k x n, all row-major.
struct Svd {
  int64_t m = 0, n = 0, k = 0;
  std::vector<double> U, S, Vt;
};

// `what` names the matrix in error messages (LAPACK failure to converge).
Svd thin_svd(const std::vector<double>& a, int64_t m, int64_t n, const char* what);

// X-EcoMLA's dynamic rank: #{k : sum_{i<=k} s_i^2 / sum_i s_i^2 <= delta}, at least 1, rounded up to a
// multiple of `divisor`, capped at the number of singular values (the matrix rank bound).
// delta must be in (0, 1]; s must be descending and non-negative.
int64_t energy_rank(const std::vector<double>& s, double delta, int64_t divisor);

}  // namespace zebra
