#include "compose/placement.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace zebra {

namespace {

// Layouts decided without any spacing choice; returns false when the general rule must run.
bool trivial_layout(int64_t L, int64_t N, std::vector<int64_t>& out) {
  ZEBRA_CHECK(L >= 1, "MLA layout: the model must have at least one layer, got ", L);
  out.clear();
  if (N <= 0) return true;
  if (N == 1) {
    out = {0};
    return true;
  }
  if (N >= L) {
    for (int64_t i = 0; i < L; ++i) out.push_back(i);
    return true;
  }
  return false;
}

}  // namespace

std::vector<int64_t> default_mla_layout(int64_t n_layers, int64_t n_mla) {
  std::vector<int64_t> out;
  if (trivial_layout(n_layers, n_mla, out)) return out;
  // 2 <= N <= L-1, so the span L-2 holds N-1 gaps of at least one layer.
  const int64_t span = n_layers - 2, gaps = n_mla - 1;
  const int64_t small = span / gaps, n_big = span % gaps;
  int64_t pos = 0;
  out.push_back(pos);
  for (int64_t g = 0; g < gaps; ++g) {
    pos += small + (g >= gaps - n_big ? 1 : 0);
    out.push_back(pos);
  }
  return out;
}

std::vector<int64_t> smart_layout(const std::vector<double>& scores, int64_t n_layers, int64_t n_mla) {
  ZEBRA_CHECK(static_cast<int64_t>(scores.size()) == n_layers, "SMART layout: got ", scores.size(),
              " sensitivity scores for a model of ", n_layers, " layers");
  for (size_t i = 0; i < scores.size(); ++i)
    ZEBRA_CHECK(std::isfinite(scores[i]), "SMART layout: score of layer ", i, " is not finite (", scores[i], ")");
  std::vector<int64_t> out;
  if (trivial_layout(n_layers, n_mla, out)) return out;

  const int64_t last = (n_layers >= 3 && scores[n_layers - 1] > scores[n_layers - 2]) ? n_layers - 1 : n_layers - 2;
  const int64_t gaps = n_mla - 1;
  const int64_t lo = last / gaps, hi = (last + gaps - 1) / gaps;  // floor(G), ceil(G)
  ZEBRA_CHECK(lo >= 1, "SMART layout: ", n_mla, " MLA layers do not fit between layers 0 and ", last);

  // best[k][p]: the largest score sum of MLA layers 0..k with layer k at position p (-inf = unreachable).
  // from[k][p]: the gap that led there. On ties the larger gap wins, so backtracking from the end puts
  // the wide gaps last, as default_mla_layout does.
  const double NEG = -std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(n_mla, std::vector<double>(last + 1, NEG));
  std::vector<std::vector<int64_t>> from(n_mla, std::vector<int64_t>(last + 1, 0));
  best[0][0] = scores[0];
  for (int64_t k = 1; k < n_mla; ++k) {
    for (int64_t p = 1; p <= last; ++p) {
      for (int64_t gap : {hi, lo}) {
        if (p - gap < 0 || best[k - 1][p - gap] == NEG) continue;
        double v = best[k - 1][p - gap] + scores[p];
        if (v > best[k][p]) {
          best[k][p] = v;
          from[k][p] = gap;
        }
        if (lo == hi) break;
      }
    }
  }
  ZEBRA_CHECK(best[n_mla - 1][last] != NEG, "SMART layout: no placement of ", n_mla, " layers with gaps ", lo, "/",
              hi, " ends at layer ", last);
  out.assign(n_mla, 0);
  int64_t p = last;
  for (int64_t k = n_mla - 1; k >= 0; --k) {
    out[k] = p;
    if (k > 0) p -= from[k][p];
  }
  return out;
}

}  // namespace zebra
